//! The recording's bytes (see docs/RECORDING.md for the layout): a magic
//! number and version, then frames, each a kind byte, a 32-bit length and
//! that many bytes of payload. Integers are little-endian. The reader
//! trusts nothing: every length is checked against what is left, every
//! count against the bytes it would need, and a frame that ends past the
//! end of the file is the cut of a recording that was stopped (rtrace
//! killed): reading ends there, with what came before it.

use std::io::Write;

/// The file's first bytes: binary (a text tool shows `\x7f`), named, and
/// ending in a newline that a transfer in text mode would change.
pub const MAGIC: &[u8; 8] = b"\x7fRTRACE\n";

/// The version of the layout this rtrace writes and reads.
pub const VERSION: u32 = 1;

/// The most bytes one frame may hold (a header, a site, a list of
/// modules, or an event with its captures).
pub const MAX_FRAME: u32 = 16 << 20;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The recording's header (JSON): the first frame, once.
    Header = 1,
    /// A probe site (JSON), before the first event of it.
    Site = 2,
    /// The modules of a process (JSON), before the first event that needs
    /// them, and again when they change.
    Modules = 3,
    /// A function's entry, or an instruction probe's hit.
    Entry = 4,
    /// A function's return.
    Return = 5,
    /// A lifecycle event (JSON).
    Event = 6,
    /// The name of a process or thread (JSON), before its first event.
    Name = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Header,
            2 => Kind::Site,
            3 => Kind::Modules,
            4 => Kind::Entry,
            5 => Kind::Return,
            6 => Kind::Event,
            7 => Kind::Name,
            _ => return None,
        })
    }
}

/// Writes the magic number and the version.
pub fn write_start(out: &mut impl Write) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())
}

/// Writes one frame.
pub fn write_frame(out: &mut impl Write, kind: Kind, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("a record too large for the file"))?;
    out.write_all(&[kind as u8])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(payload)
}

/// Why a file cannot be read as a recording.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFile {
    #[error("it is not an rtrace recording (its first bytes are not rtrace's)")]
    Foreign,
    #[error(
        "it was written by a newer rtrace (format version {0}; this one reads version {VERSION})"
    )]
    Version(u32),
    #[error("it is damaged: {what} at byte {at}")]
    Corrupt { what: String, at: usize },
}

/// The frames of a recording, in order.
pub struct Frames<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The file ends inside a frame (set once reading reaches it).
    pub truncated: bool,
}

impl<'a> Frames<'a> {
    /// The frames of `bytes`, checked to begin as a recording.
    pub fn new(bytes: &'a [u8]) -> Result<Frames<'a>, BadFile> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(BadFile::Foreign);
        }
        let Some(v) = bytes.get(8..12) else {
            return Err(BadFile::Corrupt {
                what: "the version is cut".into(),
                at: 8,
            });
        };
        let version = u32::from_le_bytes(v.try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(BadFile::Version(version));
        }
        Ok(Frames {
            bytes,
            at: 12,
            truncated: false,
        })
    }

    /// Where the next frame begins.
    pub fn offset(&self) -> usize {
        self.at
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(Kind, usize, &'a [u8]), BadFile>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes[self.at..];
        if rest.is_empty() || self.truncated {
            return None;
        }
        if rest.len() < 5 {
            self.truncated = true;
            return None;
        }
        let at = self.at;
        let Some(kind) = Kind::from_u8(rest[0]) else {
            // Nothing more is believed.
            self.at = self.bytes.len();
            return Some(Err(BadFile::Corrupt {
                what: format!("a record of unknown kind {}", rest[0]),
                at,
            }));
        };
        let len = u32::from_le_bytes(rest[1..5].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            self.at = self.bytes.len();
            return Some(Err(BadFile::Corrupt {
                what: format!("a record of {len} bytes"),
                at,
            }));
        }
        let Some(payload) = rest.get(5..5 + len as usize) else {
            self.truncated = true;
            return None;
        };
        self.at += 5 + len as usize;
        Some(Ok((kind, at, payload)))
    }
}

/// Builds a binary payload.
#[derive(Default)]
pub struct Put(pub Vec<u8>);

impl Put {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A length (u32), then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads a binary payload; every read is checked against what is left.
pub struct Get<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// A payload shorter than what it says it holds.
#[derive(Debug)]
pub struct Short;

impl<'a> Get<'a> {
    pub fn new(bytes: &'a [u8]) -> Get<'a> {
        Get { bytes, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.at.checked_add(n).ok_or(Short)?;
        let v = self.bytes.get(self.at..end).ok_or(Short)?;
        self.at = end;
        Ok(v)
    }
    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items of at least `each` bytes, checked against what is
    /// left (a damaged count cannot ask for more than the payload holds).
    pub fn count(&mut self, each: usize) -> Result<usize, Short> {
        let n = self.u32()? as usize;
        match n.checked_mul(each.max(1)) {
            Some(need) if need <= self.bytes.len() - self.at => Ok(n),
            _ => Err(Short),
        }
    }
    /// True when every byte was read.
    pub fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(frames: &[(Kind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        write_start(&mut out).unwrap();
        for (k, p) in frames {
            write_frame(&mut out, *k, p).unwrap();
        }
        out
    }

    #[test]
    fn frames_come_back_as_written_and_a_cut_one_ends_the_reading() {
        let bytes = file(&[(Kind::Header, b"{}"), (Kind::Entry, &[1, 2, 3])]);
        let frames: Vec<_> = Frames::new(&bytes).unwrap().map(Result::unwrap).collect();
        assert_eq!(
            frames,
            [
                (Kind::Header, 12, &b"{}"[..]),
                (Kind::Entry, 19, &[1, 2, 3][..])
            ]
        );
        // Cut anywhere inside the second frame: the first alone, truncated.
        for cut in 20..bytes.len() {
            let mut f = Frames::new(&bytes[..cut]).unwrap();
            assert_eq!(f.next().unwrap().unwrap().0, Kind::Header, "{cut}");
            assert!(f.next().is_none(), "{cut}");
            assert!(f.truncated, "{cut}");
        }
        let mut whole = Frames::new(&bytes).unwrap();
        assert_eq!(whole.by_ref().count(), 2);
        assert!(!whole.truncated);
    }

    #[test]
    fn a_foreign_or_damaged_file_is_refused() {
        assert_eq!(
            Frames::new(b"\x7fELF\x02\x01\x01\0\0\0\0\0").err(),
            Some(BadFile::Foreign)
        );
        assert_eq!(Frames::new(b"").err(), Some(BadFile::Foreign));
        let mut v = file(&[]);
        v[8] = 2;
        assert_eq!(Frames::new(&v).err(), Some(BadFile::Version(2)));
        let mut bad = file(&[(Kind::Header, b"{}")]);
        bad[12] = 99;
        let got: Vec<_> = Frames::new(&bad).unwrap().collect();
        assert!(
            matches!(got[..], [Err(BadFile::Corrupt { at: 12, .. })]),
            "{got:?}"
        );
        let mut huge = file(&[(Kind::Header, b"{}")]);
        huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        let got: Vec<_> = Frames::new(&huge).unwrap().collect();
        assert!(matches!(got[..], [Err(BadFile::Corrupt { .. })]), "{got:?}");
    }

    #[test]
    fn payload_reads_never_pass_its_end() {
        let mut p = Put::default();
        p.u8(7).u32(3).u64(9).bytes(b"abc");
        let mut g = Get::new(&p.0);
        assert_eq!(g.u8().unwrap(), 7);
        assert_eq!(g.u32().unwrap(), 3);
        assert_eq!(g.u64().unwrap(), 9);
        assert_eq!(g.bytes().unwrap(), b"abc");
        assert!(g.done());
        assert!(g.u8().is_err());
        // A count larger than the payload could hold.
        let mut p = Put::default();
        p.u32(u32::MAX);
        assert!(Get::new(&p.0).count(8).is_err());
        let mut p = Put::default();
        p.u32(u32::MAX);
        assert!(Get::new(&p.0).bytes().is_err());
    }
}
