//! Rendering of arguments and return values, shared by the text and JSON printers.
//!
//! This file owns the mapping from raw register values to the strings a user
//! reads: C strings quoted and escaped like strace, `open(2)` flags by name,
//! signed integers, raw hex. It knows a few libc prototypes by name (the table
//! [`PROTOTYPES`]); every other function gets its six SysV argument registers in
//! hex, as ltrace shows a function it has no prototype for. DWARF-typed
//! arguments will slot in as another source of [`Arg`] lists.
//!
//! It must not fail: tracee memory that cannot be read renders as the pointer
//! in hex, never as an error, because a bad pointer passed by the tracee is
//! exactly what a user may be tracing for.

use crate::error::Result;
use crate::handler::{Hit, Return};

/// How many bytes of a C string are shown, like strace's `-s`.
pub(crate) const STRING_LIMIT: usize = 256;

/// Reads a C string of at most `max` bytes from tracee memory; the flag is true
/// when the terminating NUL was found. [`Hit::read_cstr`](crate::Hit::read_cstr)
/// and [`Return::read_cstr`](crate::Return::read_cstr) have this shape.
pub(crate) type ReadCstr<'a> = &'a dyn Fn(u64, usize) -> Result<(Vec<u8>, bool)>;

/// How one argument is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    /// A C `int`: the low 32 bits, signed.
    Int,
    /// A directory fd for the `*at` calls: `AT_FDCWD` or an int.
    DirFd,
    /// A `const char *`: quoted and escaped.
    Str,
    /// A pointer shown as an address (`NULL` when 0).
    Ptr,
    /// A `size_t`: unsigned decimal.
    Size,
    /// `open(2)` flags by name.
    OpenFlags,
    /// A `mode_t` in octal.
    Mode,
    /// The `mode_t` of `open`/`openat`: only passed, and so only shown, when the
    /// flags (the previous argument) ask for a file to be created.
    OpenMode,
    /// The mode of `access(2)`: `F_OK` or `R_OK|W_OK|X_OK`.
    AccessMode,
}

/// How a return value is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    /// A C `int`.
    Int,
    /// A `ssize_t`.
    Long,
    /// A `size_t`.
    Size,
    /// A `char *`: the string it points to.
    Str,
}

/// A known function's signature: name, arguments, return value.
type Prototype = (&'static str, &'static [Arg], Ret);

/// Built-in prototypes for common libc functions, used when a module has no
/// debug info for them (libc never has).
const PROTOTYPES: &[Prototype] = {
    use Arg::*;
    const OPENAT: &[Arg] = &[DirFd, Str, OpenFlags, OpenMode];
    const OPEN: &[Arg] = &[Str, OpenFlags, OpenMode];
    const RW: &[Arg] = &[Int, Ptr, Size];
    &[
        ("openat", OPENAT, Ret::Int),
        ("openat64", OPENAT, Ret::Int),
        ("open", OPEN, Ret::Int),
        ("open64", OPEN, Ret::Int),
        ("creat", &[Str, Mode], Ret::Int),
        ("read", RW, Ret::Long),
        ("write", RW, Ret::Long),
        ("close", &[Int], Ret::Int),
        ("strlen", &[Str], Ret::Size),
        ("puts", &[Str], Ret::Int),
        ("getenv", &[Str], Ret::Str),
        ("unlink", &[Str], Ret::Int),
        ("access", &[Str, AccessMode], Ret::Int),
    ]
};

fn prototype(symbol: &str) -> Option<(&'static [Arg], Ret)> {
    // A versioned name (`openat@@GLIBC_2.2.5`) is the same function.
    let name = symbol.split('@').next().unwrap_or(symbol);
    PROTOTYPES
        .iter()
        .find(|p| p.0 == name)
        .map(|&(_, args, ret)| (args, ret))
}

/// Renders the arguments of a call to `symbol`, given the six SysV argument
/// registers at its entry.
pub(crate) fn render_args(symbol: &str, regs: [u64; 6], read: ReadCstr<'_>) -> Vec<String> {
    let Some((kinds, _)) = prototype(symbol) else {
        return regs.iter().map(|v| format!("{v:#x}")).collect();
    };
    let mut out = Vec::with_capacity(kinds.len());
    for (i, (&kind, &v)) in kinds.iter().zip(regs.iter()).enumerate() {
        let s = match kind {
            Arg::Int => (v as i32).to_string(),
            Arg::DirFd => dirfd(v),
            Arg::Str => cstr_arg(v, read),
            Arg::Ptr => pointer(v),
            Arg::Size => v.to_string(),
            Arg::OpenFlags => open_flags(v),
            Arg::Mode => mode(v),
            Arg::OpenMode => {
                let flags = if i > 0 { regs[i - 1] } else { 0 };
                if flags & (O_CREAT | O_TMPFILE) == 0 {
                    continue;
                }
                mode(v)
            }
            Arg::AccessMode => access_mode(v),
        };
        out.push(s);
    }
    out
}

/// Renders the value a call to `symbol` returned (rax).
pub(crate) fn render_retval(symbol: &str, rax: u64, read: ReadCstr<'_>) -> String {
    match prototype(symbol).map(|(_, ret)| ret) {
        Some(Ret::Int) => (rax as i32).to_string(),
        Some(Ret::Long) => (rax as i64).to_string(),
        Some(Ret::Size) => rax.to_string(),
        Some(Ret::Str) => cstr_arg(rax, read),
        None => {
            // Without a prototype we do not know the width: a value that reads as
            // a small signed number most likely is one (an int, an error code);
            // anything else is more likely a pointer or a mask.
            let v = rax as i64;
            if (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&v) {
                v.to_string()
            } else {
                format!("{rax:#x}")
            }
        }
    }
}

/// The arguments of the call `hit` stopped at, rendered.
pub(crate) fn hit_args(hit: &Hit<'_>) -> Vec<String> {
    let regs: [u64; 6] = std::array::from_fn(|n| hit.arg(n).unwrap_or(0));
    render_args(&hit.site().symbol, regs, &|addr, max| {
        hit.read_cstr(addr, max)
    })
}

/// The value the call `ret` stopped at returns, rendered.
pub(crate) fn ret_value(ret: &Return<'_>) -> String {
    let rax = ret.retval() as u64;
    render_retval(&ret.site().symbol, rax, &|addr, max| {
        ret.read_cstr(addr, max)
    })
}

fn pointer(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

/// `AT_FDCWD` (-100, `linux/fcntl.h`) or the fd.
fn dirfd(v: u64) -> String {
    match v as i32 {
        -100 => "AT_FDCWD".into(),
        fd => fd.to_string(),
    }
}

fn mode(v: u64) -> String {
    // strace's style: octal with a leading 0, at least three digits.
    format!("0{:03o}", v as u32)
}

fn access_mode(v: u64) -> String {
    let v = v as u32;
    if v == 0 {
        return "F_OK".into();
    }
    let mut parts = Vec::new();
    for (bit, name) in [(4, "R_OK"), (2, "W_OK"), (1, "X_OK")] {
        if v & bit != 0 {
            parts.push(name.to_string());
        }
    }
    let rest = v & !7;
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// A `const char *` argument: `NULL`, the quoted string, or the pointer in hex
/// when it cannot be read.
fn cstr_arg(ptr: u64, read: ReadCstr<'_>) -> String {
    if ptr == 0 {
        return "NULL".into();
    }
    match read(ptr, STRING_LIMIT) {
        Ok((bytes, complete)) => quote(&bytes, !complete),
        Err(_) => format!("{ptr:#x}"),
    }
}

/// Quotes bytes as strace does: `"…"`, with `...` after the closing quote when the
/// string was cut.
pub(crate) fn quote(bytes: &[u8], cut: bool) -> String {
    let mut s = String::with_capacity(bytes.len() + 5);
    s.push('"');
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    if cut {
        s.push_str("...");
    }
    s
}

// open(2) flags as the x86-64 kernel ABI defines them (asm-generic/fcntl.h). They
// are spelled out here rather than taken from `libc` because glibc's headers
// define O_LARGEFILE as 0 on 64-bit targets, while the tracee's libc does pass
// the kernel's bit.
const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_DSYNC: u64 = 0o10000;
const O_DIRECTORY: u64 = 0o200000;
const O_SYNC: u64 = 0o4000000 | O_DSYNC;
const O_TMPFILE: u64 = 0o20000000 | O_DIRECTORY;

/// Flag names in the order they are shown (after the access mode).
const OPEN_FLAGS: &[(u64, &str)] = &[
    (O_CREAT, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (O_DSYNC, "O_DSYNC"),
    (O_DIRECTORY, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o2000000, "O_CLOEXEC"),
    (O_SYNC, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (O_TMPFILE, "O_TMPFILE"),
    (0o100000, "O_LARGEFILE"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o1000000, "O_NOATIME"),
];

/// `O_RDONLY|O_CLOEXEC|…`, with unknown bits in hex at the end.
pub(crate) fn open_flags(v: u64) -> String {
    let flags = v & 0xffff_ffff;
    let mut parts = vec![match flags & O_ACCMODE {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    // O_SYNC and O_TMPFILE are several bits, one of which is a flag of its own
    // (O_DSYNC, O_DIRECTORY): names claim bits widest first so that O_SYNC is not
    // shown as O_DSYNC plus a stray bit; they are then listed in table order.
    let mut rest = flags & !O_ACCMODE;
    let mut by_width: Vec<&(u64, &str)> = OPEN_FLAGS.iter().collect();
    by_width.sort_by_key(|(bits, _)| std::cmp::Reverse(bits.count_ones()));
    let mut matched = Vec::new();
    for &(bits, name) in by_width {
        if rest & bits == bits {
            rest &= !bits;
            matched.push(name);
        }
    }
    for (_, name) in OPEN_FLAGS {
        if matched.contains(name) {
            parts.push((*name).to_string());
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// Seconds with microseconds, like `strace -T`: `0.000011`.
pub(crate) fn seconds(d: std::time::Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::RuntimeAddr;
    use crate::error::Error;
    use nix::errno::Errno;

    fn no_memory(addr: u64, _max: usize) -> Result<(Vec<u8>, bool)> {
        Err(Error::Memory {
            pid: nix::unistd::getpid(),
            addr: RuntimeAddr(addr),
            errno: Errno::EFAULT,
        })
    }

    fn fixed(s: &'static [u8]) -> impl Fn(u64, usize) -> Result<(Vec<u8>, bool)> {
        move |_, max| {
            let n = s.len().min(max);
            Ok((s[..n].to_vec(), s.len() <= max))
        }
    }

    #[test]
    fn unknown_function_shows_six_registers_in_hex() {
        let args = render_args("work", [0x29, 0, 1, 2, 3, u64::MAX], &no_memory);
        assert_eq!(
            args,
            ["0x29", "0x0", "0x1", "0x2", "0x3", "0xffffffffffffffff"]
        );
    }

    #[test]
    fn unknown_function_retval_is_decimal_when_it_fits_an_int() {
        assert_eq!(render_retval("work", 83, &no_memory), "83");
        assert_eq!(render_retval("work", (-1i64) as u64, &no_memory), "-1");
        assert_eq!(render_retval("work", 0x7fff_ffff, &no_memory), "2147483647");
        assert_eq!(render_retval("work", 0x8000_0000, &no_memory), "0x80000000");
        assert_eq!(
            render_retval("work", 0x55d0_c6a0_d141, &no_memory),
            "0x55d0c6a0d141"
        );
        assert_eq!(
            render_retval("work", (i64::from(i32::MIN)) as u64, &no_memory),
            "-2147483648"
        );
    }

    #[test]
    fn openat_with_fdcwd_and_flags() {
        let read = fixed(b"/etc/hostname");
        let args = render_args(
            "openat",
            [(-100i64) as u64, 0x1000, 0x80000, 0, 0, 0],
            &read,
        );
        assert_eq!(
            args,
            ["AT_FDCWD", "\"/etc/hostname\"", "O_RDONLY|O_CLOEXEC"]
        );
    }

    #[test]
    fn openat_shows_mode_only_when_creating() {
        let read = fixed(b"out.txt");
        // O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0644
        let flags = 0o1 | 0o100 | 0o1000 | 0o2000000;
        let args = render_args("openat", [3, 0x1000, flags, 0o644, 0, 0], &read);
        assert_eq!(
            args,
            [
                "3",
                "\"out.txt\"",
                "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC",
                "0644"
            ]
        );
        let args = render_args("open", [0x1000, 0o2, 0o644, 0, 0, 0], &read);
        assert_eq!(args, ["\"out.txt\"", "O_RDWR"]);
        let args = render_args(
            "open64@GLIBC_2.2.5",
            [0x1000, 0o2 | O_TMPFILE, 0o600, 0, 0, 0],
            &read,
        );
        assert_eq!(args, ["\"out.txt\"", "O_RDWR|O_TMPFILE", "0600"]);
        let args = render_args("creat", [0x1000, 0o755, 9, 9, 9, 9], &read);
        assert_eq!(args, ["\"out.txt\"", "0755"]);
    }

    #[test]
    fn open_flags_by_name() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags(0o100000), "O_RDONLY|O_LARGEFILE");
        assert_eq!(open_flags(O_SYNC | 1), "O_WRONLY|O_SYNC");
        assert_eq!(open_flags(O_DSYNC | 1), "O_WRONLY|O_DSYNC");
        assert_eq!(
            open_flags(O_DIRECTORY | 0o2000000),
            "O_RDONLY|O_DIRECTORY|O_CLOEXEC"
        );
        assert_eq!(
            open_flags(0o4 | 0o200 | 0o100),
            "O_RDONLY|O_CREAT|O_EXCL|0x4"
        );
        assert_eq!(open_flags(3), "O_ACCMODE");
    }

    #[test]
    fn strings_escaped_like_strace() {
        assert_eq!(
            quote(b"a\nb\tc\"d\\e\x01\xff", false),
            r#""a\nb\tc\"d\\e\x01\xff""#
        );
        assert_eq!(quote(b"abc", true), "\"abc\"...");
    }

    #[test]
    fn string_arguments_null_unreadable_and_cut() {
        assert_eq!(
            render_args("strlen", [0, 0, 0, 0, 0, 0], &no_memory),
            ["NULL"]
        );
        assert_eq!(
            render_args("strlen", [0xdead_0000, 0, 0, 0, 0, 0], &no_memory),
            ["0xdead0000"]
        );
        let long = [b'x'; 300];
        let read = move |_: u64, max: usize| -> Result<(Vec<u8>, bool)> {
            Ok((long[..max.min(300)].to_vec(), max > 300))
        };
        let args = render_args("puts", [0x1000, 0, 0, 0, 0, 0], &read);
        assert_eq!(args[0], format!("\"{}\"...", "x".repeat(STRING_LIMIT)));
    }

    #[test]
    fn libc_prototypes() {
        let read = fixed(b"HOME");
        assert_eq!(
            render_args("read", [3, 0x7ffd_1000, 4096, 0, 0, 0], &read),
            ["3", "0x7ffd1000", "4096"]
        );
        assert_eq!(
            render_args("write", [1, 0, 5, 0, 0, 0], &read),
            ["1", "NULL", "5"]
        );
        assert_eq!(
            render_args("close", [(-1i64) as u64, 7, 7, 7, 7, 7], &read),
            ["-1"]
        );
        assert_eq!(
            render_args("getenv", [0x1000, 7, 7, 7, 7, 7], &read),
            ["\"HOME\""]
        );
        assert_eq!(
            render_args("unlink", [0x1000, 7, 7, 7, 7, 7], &read),
            ["\"HOME\""]
        );
        assert_eq!(
            render_args("access", [0x1000, 6, 7, 7, 7, 7], &read),
            ["\"HOME\"", "R_OK|W_OK"]
        );
        assert_eq!(
            render_args("access", [0x1000, 0, 7, 7, 7, 7], &read),
            ["\"HOME\"", "F_OK"]
        );
        assert_eq!(render_retval("read", (-1i64) as u64, &read), "-1");
        assert_eq!(render_retval("close", 0xffff_ffff, &read), "-1");
        assert_eq!(render_retval("strlen", 4, &read), "4");
        assert_eq!(render_retval("getenv", 0, &read), "NULL");
        assert_eq!(
            render_retval("getenv", 0x1000, &fixed(b"/root")),
            "\"/root\""
        );
    }

    #[test]
    fn seconds_like_strace_t() {
        assert_eq!(seconds(std::time::Duration::from_nanos(11_400)), "0.000011");
        assert_eq!(seconds(std::time::Duration::from_millis(2500)), "2.500000");
    }
}
