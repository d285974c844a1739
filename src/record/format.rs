//! The recording's bytes (see docs/RECORDING.md for the layout): a magic
//! number and version, then frames, each a kind byte, a length (a varint)
//! and that many bytes of payload. Fixed-size integers are little-endian;
//! a varint is LEB128 (7 bits a byte, low bits first). The reader
//! trusts nothing: every length is checked against what is left, every
//! count against the bytes it would need, and a frame that ends past the
//! end of the file is the cut of a recording that was stopped (rtrace
//! killed): reading ends there, with what came before it.

use std::io::Write;

/// The file's first bytes: binary (a text tool shows `\x7f`), named, and
/// ending in a newline that a transfer in text mode would change.
pub const MAGIC: &[u8; 8] = b"\x7fRTRACE\n";

/// The version of the layout this rtrace writes (and the newest it
/// reads). Version 2 ends a whole recording with an [`Kind::End`] frame.
pub const VERSION: u32 = 2;

/// The oldest version this rtrace reads (version 1: without the end).
pub const OLDEST: u32 = 1;

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
    /// A thread's number (binary), before its first call: the calls'
    /// records name their thread by it.
    Thread = 8,
    /// The end of the recording (JSON: the entries and returns written),
    /// the last frame, written when tracing ends: a file without it was
    /// cut (rtrace killed) wherever its last frame ends.
    End = 9,
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
            8 => Kind::Thread,
            9 => Kind::End,
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
    if payload.len() > MAX_FRAME as usize {
        return Err(std::io::Error::other("a record too large for the file"));
    }
    let mut head = Put::default();
    head.u8(kind as u8).var(payload.len() as u64);
    out.write_all(&head.0)?;
    out.write_all(payload)
}

/// The most bytes a frame's length takes (a varint of at most
/// [`MAX_FRAME`]).
const LEN_BYTES: usize = 4;

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
    /// The version of its layout.
    pub version: u32,
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
        if version > VERSION {
            return Err(BadFile::Version(version));
        }
        if version < OLDEST {
            return Err(BadFile::Corrupt {
                what: format!("format version {version}"),
                at: 8,
            });
        }
        Ok(Frames {
            bytes,
            at: 12,
            truncated: false,
            version,
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
        let at = self.at;
        let Some(kind) = Kind::from_u8(rest[0]) else {
            // Nothing more is believed.
            self.at = self.bytes.len();
            return Some(Err(BadFile::Corrupt {
                what: format!("a record of unknown kind {}", rest[0]),
                at,
            }));
        };
        let mut g = Get::new(&rest[1..rest.len().min(1 + LEN_BYTES)]);
        let len = match g.var() {
            Ok(len) if len <= u64::from(MAX_FRAME) => len as usize,
            // A length cut by the end of the file.
            Err(Short) if rest.len() < 1 + LEN_BYTES => {
                self.truncated = true;
                return None;
            }
            _ => {
                self.at = self.bytes.len();
                return Some(Err(BadFile::Corrupt {
                    what: "a record longer than 16 MiB".into(),
                    at,
                }));
            }
        };
        let head = 1 + g.at;
        let Some(payload) = rest.get(head..head + len) else {
            self.truncated = true;
            return None;
        };
        self.at += head + len;
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
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A length (a varint), then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.var(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    /// A varint: LEB128, 7 bits a byte, low bits first (1 byte under 128,
    /// at most 10).
    pub fn var(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
    /// A signed difference, zigzagged into a varint (small either way).
    pub fn delta(&mut self, from: u64, to: u64) -> &mut Self {
        self.var(zigzag(from, to))
    }
}

/// The difference from `from` to `to`, zigzagged: 0, -1, 1, -2… become
/// 0, 1, 2, 3…
pub fn zigzag(from: u64, to: u64) -> u64 {
    let d = to.wrapping_sub(from) as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

/// Writes `v` as a varint into `out` at `at` (room for 10 bytes there);
/// returns where it ends.
pub fn put_var(out: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[at] = v as u8 | 0x80;
        v >>= 7;
        at += 1;
    }
    out[at] = v as u8;
    at + 1
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
    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Short> {
        let n = usize::try_from(self.var()?).map_err(|_| Short)?;
        self.take(n)
    }
    /// A varint ([`Put::var`]); one longer than 10 bytes, or past 64 bits,
    /// is damage.
    pub fn var(&mut self) -> Result<u64, Short> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(Short);
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Short)
    }
    /// The value `from` plus a difference ([`Put::delta`]).
    pub fn delta(&mut self, from: u64) -> Result<u64, Short> {
        let z = self.var()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        Ok(from.wrapping_add(d as u64))
    }
    /// A count of items of at least `each` bytes, checked against what is
    /// left (a damaged count cannot ask for more than the payload holds).
    pub fn count(&mut self, each: usize) -> Result<usize, Short> {
        let n = usize::try_from(self.var()?).map_err(|_| Short)?;
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
                (Kind::Entry, 16, &[1, 2, 3][..])
            ]
        );
        // Cut anywhere inside the second frame: the first alone, truncated.
        for cut in 17..bytes.len() {
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
        v[8] = VERSION as u8 + 1;
        assert_eq!(Frames::new(&v).err(), Some(BadFile::Version(VERSION + 1)));
        // The oldest version read, and none before it.
        v[8] = OLDEST as u8;
        assert!(Frames::new(&v).is_ok());
        v[8] = 0;
        assert_eq!(
            Frames::new(&v).err(),
            Some(BadFile::Corrupt {
                what: "format version 0".into(),
                at: 8
            })
        );
        let mut bad = file(&[(Kind::Header, b"{}")]);
        bad[12] = 99;
        let got: Vec<_> = Frames::new(&bad).unwrap().collect();
        assert!(
            matches!(got[..], [Err(BadFile::Corrupt { at: 12, .. })]),
            "{got:?}"
        );
        // A length over 16 MiB, or a varint that does not end.
        for len in [
            &[0x80, 0x80, 0x80, 0x09][..],
            &[0xff, 0xff, 0xff, 0xff, 0x7f],
        ] {
            let mut huge = file(&[]);
            huge.push(Kind::Entry as u8);
            huge.extend_from_slice(len);
            huge.extend_from_slice(&[0; 8]);
            let got: Vec<_> = Frames::new(&huge).unwrap().collect();
            assert!(matches!(got[..], [Err(BadFile::Corrupt { .. })]), "{got:?}");
        }
    }

    #[test]
    fn payload_reads_never_pass_its_end() {
        let mut p = Put::default();
        p.u8(7).var(300).u64(9).bytes(b"abc").var(u64::MAX);
        p.delta(1000, 990).delta(5, u64::MAX).delta(0, 1 << 40);
        let mut g = Get::new(&p.0);
        assert_eq!(g.u8().unwrap(), 7);
        assert_eq!(g.var().unwrap(), 300);
        assert_eq!(g.u64().unwrap(), 9);
        assert_eq!(g.bytes().unwrap(), b"abc");
        assert_eq!(g.var().unwrap(), u64::MAX);
        assert_eq!(g.delta(1000).unwrap(), 990);
        assert_eq!(g.delta(5).unwrap(), u64::MAX);
        assert_eq!(g.delta(0).unwrap(), 1 << 40);
        assert!(g.done());
        assert!(g.u8().is_err());
        // Varints: one byte under 128; past 64 bits, or unended, refused.
        assert_eq!(Put::default().var(127).0.len(), 1);
        assert!(Get::new(&[0xff; 9]).var().is_err());
        assert!(
            Get::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .var()
                .is_err()
        );
        // A count larger than the payload could hold.
        let mut p = Put::default();
        p.var(u64::from(u32::MAX));
        assert!(Get::new(&p.0).count(8).is_err());
        assert!(Get::new(&p.0).bytes().is_err());
    }
}
