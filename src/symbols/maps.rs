//! `/proc/PID/maps`: the tracee's address space as the kernel reports it.
//!
//! Owns the text format of proc(5)'s maps file and nothing else: which mappings
//! form a module, and at what bias, is `modules`' business. Parsing is lenient
//! (a line it does not understand is skipped, never fatal), because the file is
//! read while the tracee may be changing it and because new kernels may add
//! pseudo-paths.
use std::io;
use std::path::PathBuf;

use crate::addr::{FileOffset, Pid, RuntimeAddr};
use crate::error::{Error, Result};

/// What the kernel appends to the pathname of a file unlinked after it was mapped.
const DELETED_SUFFIX: &str = " (deleted)";

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First byte.
    pub start: RuntimeAddr,
    /// One past the last byte.
    pub end: RuntimeAddr,
    /// `r` permission.
    pub read: bool,
    /// `w` permission.
    pub write: bool,
    /// `x` permission.
    pub exec: bool,
    /// File offset of `start`.
    pub offset: FileOffset,
    /// Device, as printed (`fd:01`).
    pub dev: String,
    /// Inode (0 for anonymous mappings).
    pub inode: u64,
    /// The pathname column, as printed (`/usr/lib/…/libc.so.6`, `[stack]`, empty …),
    /// with a ` (deleted)` suffix removed.
    pub name: String,
}

impl Mapping {
    /// The file behind the mapping, for file-backed mappings (inode != 0, absolute path).
    ///
    /// Pseudo-files such as `[vdso]`, `[heap]` or anonymous shared memory have no
    /// usable path, so they answer `None`.
    pub fn path(&self) -> Option<PathBuf> {
        (self.inode != 0 && self.name.starts_with('/')).then(|| PathBuf::from(&self.name))
    }
}

/// Parses the text of a maps file. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

/// Parses one line: `start-end perms offset dev inode   pathname`.
///
/// The first five fields are separated by single spaces; the kernel then pads to a
/// column before the pathname, which runs to the end of the line and may itself
/// contain spaces.
fn parse_line(line: &str) -> Option<Mapping> {
    let (range, rest) = line.split_once(' ')?;
    let (perms, rest) = rest.split_once(' ')?;
    let (offset, rest) = rest.split_once(' ')?;
    let (dev, rest) = rest.split_once(' ')?;
    let (inode, name) = rest.split_once(' ').unwrap_or((rest, ""));

    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end < start {
        return None;
    }
    let perms = perms.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    let flag = |i: usize, c: u8| perms.get(i) == Some(&c);
    let offset = u64::from_str_radix(offset, 16).ok()?;
    let inode = inode.parse::<u64>().ok()?;
    let name = name.trim_start_matches(' ');
    let name = name.strip_suffix(DELETED_SUFFIX).unwrap_or(name);
    Some(Mapping {
        start: RuntimeAddr(start),
        end: RuntimeAddr(end),
        read: flag(0, b'r'),
        write: flag(1, b'w'),
        exec: flag(2, b'x'),
        offset: FileOffset(offset),
        dev: dev.to_string(),
        inode,
        name: name.to_string(),
    })
}

/// Reads and parses `/proc/PID/maps`.
///
/// A process that is gone (no `/proc/PID`, or ESRCH while reading) is
/// [`Error::NoSuchProcess`]; anything else (EACCES, …) is an I/O error.
pub fn read(pid: Pid) -> Result<Vec<Mapping>> {
    let path = format!("/proc/{pid}/maps");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            Err(Error::NoSuchProcess { pid })
        }
        Err(e) => Err(Error::io(format!("cannot read {path}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines taken from a real `/proc/self/maps` (a PIE `cat` on x86-64).
    const SAMPLE: &str = "\
5581b6a4c000-5581b6a4e000 r--p 00000000 fd:01 2883612                    /usr/bin/cat
5581b6a4e000-5581b6a53000 r-xp 00002000 fd:01 2883612                    /usr/bin/cat
5581b6a53000-5581b6a55000 r--p 00007000 fd:01 2883612                    /usr/bin/cat
5581b6a56000-5581b6a57000 rw-p 00009000 fd:01 2883612                    /usr/bin/cat
5581b7d6e000-5581b7d8f000 rw-p 00000000 00:00 0                          [heap]
7f3c1a600000-7f3c1a628000 r--p 00000000 fd:01 2890291                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3c1a628000-7f3c1a7bd000 r-xp 00028000 fd:01 2890291                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3c1a815000-7f3c1a822000 rw-p 00000000 00:00 0 
7ffd5c2d1000-7ffd5c2f2000 rw-p 00000000 00:00 0                          [stack]
7ffd5c3b2000-7ffd5c3b6000 r--p 00000000 00:00 0                          [vvar]
7ffd5c3b6000-7ffd5c3b8000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_a_real_sample() {
        let maps = parse(SAMPLE);
        assert_eq!(maps.len(), 12);
        let text = &maps[1];
        assert_eq!(text.start, RuntimeAddr(0x5581b6a4e000));
        assert_eq!(text.end, RuntimeAddr(0x5581b6a53000));
        assert!(text.read && !text.write && text.exec);
        assert_eq!(text.offset, FileOffset(0x2000));
        assert_eq!(text.dev, "fd:01");
        assert_eq!(text.inode, 2883612);
        assert_eq!(text.name, "/usr/bin/cat");
        assert_eq!(text.path(), Some(PathBuf::from("/usr/bin/cat")));

        assert_eq!(maps[4].name, "[heap]");
        assert_eq!(maps[4].path(), None);
        // An anonymous mapping: no name at all (the kernel leaves a trailing space).
        assert_eq!(maps[7].name, "");
        assert_eq!(maps[7].inode, 0);
        assert_eq!(maps[7].path(), None);
        assert_eq!(maps[10].name, "[vdso]");
        assert_eq!(maps[10].path(), None);
        assert_eq!(maps[11].end, RuntimeAddr(0xffffffffff601000));
        assert!(!maps[11].read && maps[11].exec);
    }

    #[test]
    fn anonymous_line_without_trailing_space() {
        let maps = parse("7f3c1a815000-7f3c1a822000 rw-p 00000000 00:00 0\n");
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].name, "");
        assert_eq!(maps[0].path(), None);
    }

    #[test]
    fn path_with_spaces_and_deleted_suffix() {
        let maps = parse(
            "7f0000000000-7f0000001000 r-xp 00001000 08:02 42    /tmp/my dir/lib  two.so (deleted)\n\
             7f0000001000-7f0000002000 r--p 00002000 08:02 43    /tmp/a b\n",
        );
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].name, "/tmp/my dir/lib  two.so");
        assert_eq!(
            maps[0].path(),
            Some(PathBuf::from("/tmp/my dir/lib  two.so"))
        );
        assert_eq!(maps[1].name, "/tmp/a b");
    }

    #[test]
    fn pseudo_names_with_an_inode() {
        // memfd and SysV shared memory have inodes too. A memfd name looks absolute
        // (opening it then fails, and the module map skips it); SysV's does not.
        let maps = parse(
            "7f0000000000-7f0000001000 rw-s 00000000 00:01 1234  /memfd:buffer (deleted)\n\
             7f0000001000-7f0000002000 rw-s 00000000 00:05 99    SYSV00000000\n",
        );
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].name, "/memfd:buffer");
        assert_eq!(maps[1].name, "SYSV00000000");
        assert_eq!(maps[1].path(), None);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "\
garbage
1000-zz r-xp 00000000 fd:01 1 /x
2000-1000 r-xp 00000000 fd:01 1 /backwards
1000-2000 r-x 00000000 fd:01 1 /short-perms
1000-2000 r-xp 0000000g fd:01 1 /bad-offset
1000-2000 r-xp 00000000 fd:01 x /bad-inode
1000-2000 r-xp 00000000 fd:01

1000-2000 r-xp 00000000 fd:01 7 /good
";
        let maps = parse(text);
        assert_eq!(maps.len(), 1, "{maps:?}");
        assert_eq!(maps[0].name, "/good");
    }

    #[test]
    fn reads_our_own_maps() {
        let maps = read(Pid::this()).expect("own maps");
        let exe = std::fs::read_link("/proc/self/exe").expect("own exe");
        assert!(maps
            .iter()
            .any(|m| m.path().as_deref() == Some(exe.as_path())));
        assert!(maps.iter().any(|m| m.name == "[stack]"));
    }

    #[test]
    fn missing_process_is_no_such_process() {
        // Pids are at most 2^22 on Linux, so this one cannot exist.
        let pid = Pid::from_raw(i32::MAX);
        assert!(matches!(read(pid), Err(Error::NoSuchProcess { pid: p }) if p == pid));
    }
}
