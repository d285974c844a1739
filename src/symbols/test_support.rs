//! Test fixtures for the symbols layer: small C programs built from source on
//! demand, and fabricated maps for files that are not running.
//!
//! Fixtures are built into a fresh temporary directory per call (nothing is
//! committed, nothing is shared between tests running in parallel).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::elf::ElfFile;
use super::maps::Mapping;
use crate::addr::{FileOffset, RuntimeAddr};

/// The line-table fixture. Line numbers matter: tests refer to them.
pub const LINES_C: &str = "\
#include <stdio.h>

int work(int x)
{
    int y = x * 2;
    return y + 1;
}

int main(void)
{
    /* no code on this line */
    printf(\"%d\\n\", work(20));
    return 0;
}
";

/// A fresh, empty temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rtrace-symbols-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Compiles `source` (written to `dir/rel_src`) with gcc and `flags`, running gcc
/// in `dir` so that DWARF records `dir` as the compilation directory and `rel_src`
/// as the file name. Returns the executable's path.
pub fn compile_in(dir: &Path, rel_src: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(rel_src);
    if let Some(parent) = src.parent() {
        std::fs::create_dir_all(parent).expect("create source dir");
    }
    std::fs::write(&src, source).expect("write source");
    let out = dir.join("a.out");
    let status = Command::new("gcc")
        .current_dir(dir)
        // No endbr64 and no frame-pointer surprises: tests compute offsets by hand.
        .args(["-fcf-protection=none", "-fno-omit-frame-pointer"])
        .args(flags)
        .arg(rel_src)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run gcc");
    assert!(status.success(), "gcc {flags:?} {rel_src} failed");
    out
}

/// Compiles `source` in a fresh directory; see [`compile_in`].
pub fn compile(tag: &str, rel_src: &str, source: &str, flags: &[&str]) -> PathBuf {
    compile_in(&temp_dir(tag), rel_src, source, flags)
}

/// The mappings the kernel and ld.so would create for `elf`'s PT_LOAD segments at
/// load bias `bias` (page-granular, as in `/proc/PID/maps`).
pub fn fake_maps(elf: &ElfFile, bias: u64) -> Vec<Mapping> {
    const PAGE: u64 = 4096;
    elf.segments()
        .iter()
        .map(|s| {
            let start = s.vaddr.get() & !(PAGE - 1);
            let end = (s.vaddr.get() + s.memsz).div_ceil(PAGE) * PAGE;
            Mapping {
                start: RuntimeAddr(start + bias),
                end: RuntimeAddr(end + bias),
                read: true,
                write: !s.exec,
                exec: s.exec,
                offset: FileOffset(s.offset.get() & !(PAGE - 1)),
                dev: "fd:01".into(),
                inode: 1234,
                name: elf.path().display().to_string(),
            }
        })
        .collect()
}
