//! Separate debug files: where the DWARF of a stripped binary lives, found the
//! way gdb finds it ("Debugging Information in Separate Files" in the gdb
//! manual).
//!
//! Owns the lookup rules and the small parsers they need (the build-id note,
//! read with goblin; the `.gnu_debuglink` section; the CRC-32 that checks
//! it). It never opens the binary itself and knows nothing of sections beyond
//! their bytes: `elf` reads the files, asks here which paths to try, and checks each candidate with
//! [`Candidate::accepts`] before using it.
//!
//! Two ways, tried in this order, in each debug directory (by default
//! `/usr/lib/debug`; `RTRACE_DEBUG_FILE_DIRECTORY`, a colon-separated list,
//! replaces it, like gdb's `set debug-file-directory`):
//!
//! 1. **build-id**: `DIR/.build-id/xx/yyyy….debug`, where `xxyyyy…` is the
//!    hex of the binary's `NT_GNU_BUILD_ID` note. Accepted only when the
//!    candidate carries the same build-id.
//! 2. **debuglink**: the file named by `.gnu_debuglink`, looked for next to the
//!    binary (`BINDIR/NAME`), in `BINDIR/.debug/NAME`, and in `DIR/BINDIR/NAME`
//!    for each debug directory, `BINDIR` being the directory of the binary's
//!    real path. Accepted only when the CRC-32 of the whole candidate equals the
//!    one recorded in the section.
//!
//! Every input here may come from a corrupt or hostile file: parsers return
//! `None` rather than panic, and a debuglink name with a `/` is refused so that
//! it cannot point outside the directories above.

use std::path::{Path, PathBuf};

/// The default debug directory, as in gdb and Debian's `-dbg`/`-dbgsym` packages.
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// The environment variable that replaces [`DEFAULT_DEBUG_DIR`]: a
/// colon-separated list of directories.
pub const DEBUG_DIR_ENV: &str = "RTRACE_DEBUG_FILE_DIRECTORY";

/// `NT_GNU_BUILD_ID`, the note type of a build-id (owner `GNU`).
use goblin::elf::note::NT_GNU_BUILD_ID;

/// The contents of a `.gnu_debuglink` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugLink {
    /// The debug file's name (no directory).
    pub name: String,
    /// The CRC-32 of the whole debug file.
    pub crc: u32,
}

impl DebugLink {
    /// Parses a `.gnu_debuglink` section: a NUL-terminated file name, zero
    /// padding to a multiple of four bytes, then the CRC-32 (little-endian on
    /// x86-64). `None` when it is malformed or names anything but a plain file.
    pub fn parse(section: &[u8]) -> Option<DebugLink> {
        let nul = section.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(section.get(..nul)?).ok()?;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return None;
        }
        let crc_at = nul.checked_add(4)? & !3;
        let crc = section.get(crc_at..crc_at.checked_add(4)?)?;
        Some(DebugLink {
            name: name.to_owned(),
            crc: u32::from_le_bytes(crc.try_into().ok()?),
        })
    }
}

/// The build-id in a note section or segment (`SHT_NOTE` bytes): the descriptor
/// of the first note owned by `GNU` with type `NT_GNU_BUILD_ID`. Notes are read
/// with goblin, 4-byte aligned (as GNU notes of x86-64 are); a malformed note
/// ends the search.
pub fn parse_build_id(notes: &[u8]) -> Option<Vec<u8>> {
    let ctx = goblin::container::Ctx::new(
        goblin::container::Container::Big,
        goblin::container::Endian::Little,
    );
    let iter = goblin::elf::note::NoteDataIterator {
        data: notes,
        size: notes.len(),
        offset: 0,
        ctx: (4, ctx),
    };
    for note in iter {
        let note = note.ok()?;
        if note.n_type == NT_GNU_BUILD_ID && note.name == "GNU" {
            return (!note.desc.is_empty()).then(|| note.desc.to_vec());
        }
    }
    None
}

/// The CRC-32 of `.gnu_debuglink` (binutils' `gnu_debuglink_crc32`: the
/// IEEE 802.3 polynomial, reflected, as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (n, entry) in (0u32..).zip(table.iter_mut()) {
            let mut c = n;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        table
    });
    let mut crc = !0u32;
    for &b in bytes {
        let index = usize::from((crc as u8) ^ b);
        crc = table.get(index).copied().unwrap_or(0) ^ (crc >> 8);
    }
    !crc
}

/// What a candidate must prove before it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Found by build-id: it must carry this build-id.
    BuildId(Vec<u8>),
    /// Found by debuglink: its CRC-32 must be this.
    Crc(u32),
}

/// A path that may hold the debug file, and how to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Where to look.
    pub path: PathBuf,
    /// What it must prove.
    pub expect: Expect,
}

impl Candidate {
    /// True when the file's `bytes`, whose own build-id is `build_id`, are the
    /// debug file this candidate stands for.
    pub fn accepts(&self, bytes: &[u8], build_id: Option<&[u8]>) -> bool {
        match &self.expect {
            Expect::BuildId(want) => build_id == Some(want.as_slice()),
            Expect::Crc(want) => crc32(bytes) == *want,
        }
    }
}

/// The debug directories in force: [`DEBUG_DIR_ENV`] when it is set (empty
/// entries ignored), else [`DEFAULT_DEBUG_DIR`].
pub fn debug_dirs() -> Vec<PathBuf> {
    match std::env::var_os(DEBUG_DIR_ENV) {
        Some(list) => std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => vec![PathBuf::from(DEFAULT_DEBUG_DIR)],
    }
}

/// Every place to look for the debug file of `binary`, in gdb's order: build-id
/// paths first (in each debug directory), then the debuglink name next to the
/// binary, in its `.debug/` subdirectory, and under each debug directory. The
/// binary itself is never a candidate.
pub fn candidates(
    binary: &Path,
    build_id: Option<&[u8]>,
    link: Option<&DebugLink>,
    debug_dirs: &[PathBuf],
) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() >= 2) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let (head, tail) = hex.split_at(2);
        for dir in debug_dirs {
            out.push(Candidate {
                path: dir
                    .join(".build-id")
                    .join(head)
                    .join(format!("{tail}.debug")),
                expect: Expect::BuildId(id.to_vec()),
            });
        }
    }
    if let Some(link) = link {
        // The real path: a binary reached through a symlink keeps its debug file
        // next to the file itself.
        let real = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
        if let Some(bin_dir) = real.parent() {
            let mut dirs = vec![bin_dir.to_path_buf(), bin_dir.join(".debug")];
            let relative = bin_dir.strip_prefix("/").unwrap_or(bin_dir);
            dirs.extend(debug_dirs.iter().map(|d| d.join(relative)));
            for dir in dirs {
                let path = dir.join(&link.name);
                if path != real {
                    out.push(Candidate {
                        path,
                        expect: Expect::Crc(link.crc),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_known_values() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xe8b7_be43);
    }

    #[test]
    fn debuglink_parse() {
        let mut s = b"count.debug\0".to_vec();
        s.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        assert_eq!(
            DebugLink::parse(&s),
            Some(DebugLink {
                name: "count.debug".into(),
                crc: 0x1234_5678
            })
        );
        // Name of length 4n-1 + NUL: no padding needed.
        let mut s = b"abc\0".to_vec();
        s.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(DebugLink::parse(&s).map(|l| l.crc), Some(7));
        // Padding: "ab\0" + one byte.
        let mut s = b"ab\0\0".to_vec();
        s.extend_from_slice(&9u32.to_le_bytes());
        assert_eq!(DebugLink::parse(&s).map(|l| l.crc), Some(9));
        for bad in [
            &b""[..],
            b"no-nul",
            b"x\0\0\0",
            b"\0\0\0\0\x01\0\0\0",
            b"../x\0\0\0\0\x01\0\0\0",
            b"..\0\0\x01\0\0\0",
        ] {
            assert_eq!(DebugLink::parse(bad), None, "{bad:?}");
        }
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn build_id_parse() {
        let id = [0xde, 0xad, 0xbe, 0xef, 0x01];
        let mut notes = note(b"GNU\0", 5, &[1, 2, 3, 4]); // a property note first
        notes.extend(note(b"GNU\0", NT_GNU_BUILD_ID, &id));
        assert_eq!(parse_build_id(&notes), Some(id.to_vec()));
        assert_eq!(parse_build_id(&note(b"XYZ\0", 3, &id)), None);
        assert_eq!(parse_build_id(&[]), None);
        // Truncated anywhere before the end of the descriptor: no panic, no id
        // (the padding after it is not needed).
        let full = note(b"GNU\0", NT_GNU_BUILD_ID, &id);
        for len in 0..12 + 4 + id.len() {
            assert_eq!(parse_build_id(&full[..len]), None, "len {len}");
        }
        // Sizes that overflow.
        let mut huge = full.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_build_id(&huge), None);
        huge[0..4].copy_from_slice(&4u32.to_le_bytes());
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_build_id(&huge), None);
    }

    #[test]
    fn candidate_order_is_gdbs() {
        let dirs = [PathBuf::from("/dbg")];
        let link = DebugLink {
            name: "prog.debug".into(),
            crc: 5,
        };
        let c = candidates(
            Path::new("/no/such/dir/prog"),
            Some(&[0xab, 0xcd, 0xef]),
            Some(&link),
            &dirs,
        );
        let paths: Vec<&Path> = c.iter().map(|c| c.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/dbg/.build-id/ab/cdef.debug"),
                Path::new("/no/such/dir/prog.debug"),
                Path::new("/no/such/dir/.debug/prog.debug"),
                Path::new("/dbg/no/such/dir/prog.debug"),
            ]
        );
        assert_eq!(c[0].expect, Expect::BuildId(vec![0xab, 0xcd, 0xef]));
        assert!(c[1..].iter().all(|c| c.expect == Expect::Crc(5)));
        // A one-byte build-id has no path; no link, no debuglink paths.
        assert!(candidates(Path::new("/x/p"), Some(&[1]), None, &dirs).is_empty());
        // The binary is never its own debug file.
        let same = DebugLink {
            name: "p".into(),
            crc: 0,
        };
        let c = candidates(Path::new("/no/such/p"), None, Some(&same), &dirs);
        assert!(c.iter().all(|c| c.path != Path::new("/no/such/p")));
    }

    #[test]
    fn acceptance() {
        let by_id = Candidate {
            path: "/x".into(),
            expect: Expect::BuildId(vec![1, 2]),
        };
        assert!(by_id.accepts(b"anything", Some(&[1, 2])));
        assert!(!by_id.accepts(b"anything", Some(&[1, 3])));
        assert!(!by_id.accepts(b"anything", None));
        let by_crc = Candidate {
            path: "/x".into(),
            expect: Expect::Crc(0xcbf4_3926),
        };
        assert!(by_crc.accepts(b"123456789", None));
        assert!(!by_crc.accepts(b"12345678", None));
    }
}
