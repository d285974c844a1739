use super::lines::nearest_lines;
use super::*;
use crate::symbols::test_support::{compile, compile_in, temp_dir, LINES_C};

const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";
/// A small real executable, for the corruption tests.
const SMALL: &str = "/bin/true";

/// A function of this test binary, to find in its own symbol table (by the
/// mangled name's substring: `no_mangle` is refused under `deny(unsafe_code)`).
#[inline(never)]
fn rtrace_elf_test_marker(x: u64) -> u64 {
    x.wrapping_mul(3)
}

fn open(path: &str) -> ElfFile {
    ElfFile::open(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_sorted_unique(functions: &[Symbol]) {
    assert!(!functions.is_empty());
    assert!(
        functions.windows(2).all(|w| w[0].addr < w[1].addr),
        "functions must be sorted by address, one per address"
    );
    assert!(functions
        .iter()
        .all(|f| f.kind.is_function() && f.addr.get() != 0));
}

#[test]
fn own_executable() {
    let elf = open("/proc/self/exe");
    assert_sorted_unique(elf.functions());
    assert_eq!(elf.interpreter(), Some(LD_SO));
    let marker = elf
        .functions()
        .iter()
        .find(|f| f.name.contains("rtrace_elf_test_marker"))
        .expect("marker");
    assert_eq!(marker.kind, SymKind::Func);
    assert!(marker.size > 0);
    let (f, off) = elf.function_at(marker.addr.offset(1)).expect("inside");
    assert_eq!((f, off), (marker, 1));
    let code = elf
        .bytes_at(marker.addr, marker.size as usize)
        .expect("code");
    assert_eq!(code.len() as u64, marker.size);
    assert!(elf.is_code(marker.addr));
    // Its bytes are where the segment table says.
    let seg = elf
        .segments()
        .iter()
        .find(|s| s.contains(marker.addr))
        .expect("seg");
    let file_off = seg.offset.get() + (marker.addr.get() - seg.vaddr.get());
    assert_eq!(
        elf.link_addr_of_offset(FileOffset(file_off)),
        Some(marker.addr)
    );
    assert_eq!(
        elf.offset_of_link_addr(marker.addr),
        Some(FileOffset(file_off))
    );
    assert_eq!(elf.offset_of_link_addr(LinkAddr(u64::MAX)), None);
    let f: fn(u64) -> u64 = rtrace_elf_test_marker;
    assert_eq!(std::hint::black_box(f)(1), 3);
}

#[test]
fn libc_symbols() {
    let elf = open(LIBC);
    assert!(elf.is_dyn());
    assert_sorted_unique(elf.functions());
    let openat = elf.symbols_named("openat");
    assert!(!openat.is_empty());
    assert!(openat.iter().all(|s| s.name == "openat"));
    assert!(openat.iter().any(|s| s.kind == SymKind::Func));
    // Aliases are all findable by name, even if `functions` lists another name.
    for name in ["getpid", "__getpid", "write", "__write", "malloc", "printf"] {
        assert!(elf.function_named(name).is_some(), "{name}");
    }
    // glibc's string functions are IFUNCs.
    assert_eq!(
        elf.function_named("strlen").map(|s| s.kind),
        Some(SymKind::IFunc)
    );
    // Versioned names are stripped.
    assert!(elf.symbols().iter().all(|s| !s.name.contains('@')));
    assert!(elf.symbols_named("no_such_symbol_here").is_empty());
    // The first PT_LOAD of a shared object maps offset 0 at address 0.
    assert_eq!(elf.link_addr_of_offset(FileOffset(0)), Some(LinkAddr(0)));
    // function_at is consistent with the function list.
    for f in elf.functions().iter().step_by(97) {
        let (g, off) = elf.function_at(f.addr).expect("its own start");
        assert_eq!((g.addr, off), (f.addr, 0));
    }
}

#[test]
fn dynamic_linker_debug_symbols() {
    let elf = open(LD_SO);
    assert!(elf.is_dyn());
    assert!(elf.interpreter().is_none());
    let state = elf.symbols_named("_dl_debug_state");
    assert!(state.iter().any(|s| s.kind == SymKind::Func), "{state:?}");
    let r_debug = elf.symbols_named("_r_debug");
    assert!(
        r_debug.iter().any(|s| s.kind == SymKind::Other),
        "{r_debug:?}"
    );
    assert_ne!(elf.entry(), LinkAddr(0));
}

#[test]
fn bytes_at_stays_in_file_part() {
    let elf = open(SMALL);
    let seg = *elf.segments().last().expect("segments");
    let end = seg.vaddr.get() + seg.filesz;
    assert!(elf.bytes_at(LinkAddr(end - 1), 1).is_some());
    assert!(elf.bytes_at(LinkAddr(end - 1), 2).is_none());
    assert!(elf.bytes_at(LinkAddr(u64::MAX), 2).is_none());
    assert!(elf
        .bytes_at(LinkAddr(seg.vaddr.get()), usize::MAX)
        .is_none());
    assert!(elf.link_addr_of_offset(FileOffset(u64::MAX)).is_none());
    assert!(elf.function_at(LinkAddr(u64::MAX)).is_none());
    assert!(elf.function_at(LinkAddr(0)).is_none());
}

#[test]
fn version_suffixes_and_aliases_in_symtab() {
    // A .symver'ed definition appears in .symtab as `name@VERSION`.
    let dir = temp_dir("symver");
    std::fs::write(dir.join("v.map"), "V_1 { global: vfun; local: *; };\n").unwrap();
    let src = "\
int vfun_impl(void) { return 1; }
__asm__(\".symver vfun_impl, vfun@@V_1\");
int helper(void) { return 2; }
int alias_helper(void) __attribute__((weak, alias(\"helper\")));
";
    let so = compile_in(
        &dir,
        "v.c",
        src,
        &["-shared", "-fPIC", "-Wl,--version-script=v.map"],
    );
    let elf = ElfFile::open(&so).expect("parse .so");
    assert!(elf.function_named("vfun").is_some(), "{:?}", elf.symbols());
    assert!(elf.symbols().iter().all(|s| !s.name.contains('@')));
    // Two names at one address: the global one wins in `functions`.
    let helper = elf.function_named("helper").expect("helper");
    let alias = elf.function_named("alias_helper").expect("alias");
    assert_eq!(helper.addr, alias.addr);
    let (f, _) = elf.function_at(helper.addr).expect("at helper");
    assert_eq!(f.name, "helper");
}

#[test]
fn the_default_version_of_a_name_wins() {
    // vfun@V_1 (an old copy, at the lower address) and vfun@@V_2 (the
    // default, what a program links to), in .symtab and in .dynsym.
    let dir = temp_dir("symver2");
    std::fs::write(
        dir.join("v.map"),
        "V_1 { global: vfun; local: *; };\nV_2 { global: vfun; } V_1;\n",
    )
    .unwrap();
    let src = "\
int vfun_old(void) { return 1; }
__asm__(\".symver vfun_old, vfun@V_1\");
int vfun_new(void) { return 2; }
__asm__(\".symver vfun_new, vfun@@V_2\");
";
    let so = compile_in(
        &dir,
        "v.c",
        src,
        &["-shared", "-fPIC", "-Wl,--version-script=v.map"],
    );
    for stripped in [false, true] {
        let path = if stripped {
            let out = dir.join("v-stripped.so");
            let ok = std::process::Command::new("strip")
                .arg("-o")
                .arg(&out)
                .arg(&so)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            out
        } else {
            so.clone()
        };
        let elf = ElfFile::open(&path).expect("parse .so");
        let new = elf.function_named("vfun_new").map(|s| s.addr);
        let chosen = elf.function_named("vfun").expect("vfun").addr;
        if stripped {
            // Only .dynsym is left: the two copies, told apart by .gnu.version.
            let copies: Vec<_> = elf.symbols().iter().filter(|s| s.name == "vfun").collect();
            assert_eq!(copies.len(), 2, "{copies:?}");
            let high = copies.iter().map(|s| s.addr).max().unwrap();
            assert_eq!(chosen, high, "the default version is the second copy");
        } else {
            assert_eq!(Some(chosen), new, "{:?}", elf.symbols());
        }
    }
    // The same in libc, for a name with a compat version.
    let libc = ElfFile::open(Path::new("/lib/x86_64-linux-gnu/libc.so.6")).unwrap();
    let out = std::process::Command::new("nm")
        .args(["-D", "/lib/x86_64-linux-gnu/libc.so.6"])
        .output()
        .unwrap();
    let default = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with(" pthread_cond_signal@@GLIBC_2.3.2"))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .expect("pthread_cond_signal@@GLIBC_2.3.2 in nm -D");
    assert_eq!(
        libc.function_named("pthread_cond_signal").unwrap().addr,
        LinkAddr(default)
    );
}

fn corrupt_or_not_elf(r: Result<ElfFile>) -> bool {
    matches!(r, Err(Error::CorruptElf { .. }) | Err(Error::NotElf { .. }))
}

#[test]
fn non_elf_inputs() {
    let p = Path::new("/x");
    assert!(matches!(
        ElfFile::parse(p, vec![]),
        Err(Error::NotElf { .. })
    ));
    assert!(matches!(
        ElfFile::parse(p, b"hello".to_vec()),
        Err(Error::NotElf { .. })
    ));
    assert!(matches!(
        ElfFile::parse(p, b"\x7fEL".to_vec()),
        Err(Error::NotElf { .. })
    ));
    assert!(matches!(
        ElfFile::parse(p, b"\x7fELF".to_vec()),
        Err(Error::CorruptElf { .. })
    ));
    // open() refuses on the magic alone, and reports missing files as I/O errors.
    let dir = temp_dir("notelf");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(ElfFile::open(&empty), Err(Error::NotElf { .. })));
    let text = dir.join("text");
    std::fs::write(&text, b"hello, world").unwrap();
    assert!(matches!(ElfFile::open(&text), Err(Error::NotElf { .. })));
    assert!(matches!(
        ElfFile::open(&dir.join("missing")),
        Err(Error::Io { .. })
    ));
    assert!(matches!(ElfFile::open(&dir), Err(Error::Io { .. })));
    // A FIFO is not waited on (nobody may ever write to it).
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(matches!(ElfFile::open(&fifo), Err(Error::NotElf { .. })));
    assert!(matches!(
        ElfFile::open(Path::new("/dev/null")),
        Err(Error::NotElf { .. })
    ));
}

#[test]
fn other_architectures_are_refused() {
    let mut bytes = std::fs::read(SMALL).unwrap();
    let said = |bytes: &[u8]| match ElfFile::parse(Path::new("/x"), bytes.to_vec()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("parsed"),
    };
    bytes[4] = 1; // ELFCLASS32
    assert_eq!(
        said(&bytes),
        "/x: a 32-bit ELF file: rtrace traces 64-bit x86-64 programs only"
    );
    bytes[4] = 3; // no such class
    assert!(matches!(ElfFile::parse(Path::new("/x"), bytes.clone()),
        Err(Error::CorruptElf { reason, .. }) if reason.contains("class")));
    bytes[4] = 2;
    bytes[5] = 2; // big-endian
    assert_eq!(
        said(&bytes),
        "/x: a big-endian ELF file: rtrace traces 64-bit x86-64 programs only"
    );
    bytes[5] = 1;
    bytes[18] = 183; // EM_AARCH64
    bytes[19] = 0;
    assert_eq!(
        said(&bytes),
        "/x: an ELF file for AARCH64: rtrace traces 64-bit x86-64 programs only"
    );
    bytes[18] = 62;
    bytes[16] = 1; // ET_REL
    assert!(matches!(ElfFile::parse(Path::new("/x"), bytes),
        Err(Error::CorruptElf { reason, .. }) if reason.contains("not an executable")));
}

#[test]
fn truncated_files_are_errors() {
    let full = std::fs::read(SMALL).unwrap();
    assert!(ElfFile::parse(Path::new(SMALL), full.clone()).is_ok());
    let mut lengths: Vec<usize> = vec![20, 64, 100, 1000, full.len() / 2, full.len() - 1];
    lengths.extend((0..2048).step_by(7));
    lengths.extend((2048..full.len()).step_by(331));
    for len in lengths {
        let r = ElfFile::parse(Path::new(SMALL), full[..len].to_vec());
        // The section header table is at the end, so every truncation loses it.
        assert!(corrupt_or_not_elf(r), "truncated at {len}");
    }
}

/// A deterministic xorshift generator: reproducible "random" corruption.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Uses every query on a file that parsed, so lazily parsed parts get exercised.
fn exercise(elf: &ElfFile) {
    for f in elf.functions().iter().take(50) {
        let _ = elf.function_at(f.addr.offset(1));
        let _ = elf.bytes_at(f.addr, f.size.min(4096) as usize);
    }
    let _ = elf.symbols_named("main");
    let _ = elf.link_addr_of_offset(FileOffset(0x1000));
    let _ = elf.line_addresses("x.c", 5);
}

#[test]
fn random_bytes_after_the_magic() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for round in 0..300 {
        let len = (rng.next() % 4096) as usize;
        let mut bytes: Vec<u8> = ELF_MAGIC.to_vec();
        bytes.extend((0..len).map(|_| rng.next() as u8));
        // Half the rounds get a plausible x86-64 header so parsing goes deeper.
        if round % 2 == 0 && bytes.len() >= 20 {
            bytes[4] = 2;
            bytes[5] = 1;
            bytes[16] = 3;
            bytes[18] = 62;
            bytes[19] = 0;
        }
        if let Ok(elf) = ElfFile::parse(Path::new("/random"), bytes) {
            exercise(&elf);
        }
    }
}

#[test]
fn flipped_header_bytes_never_panic() {
    let full = std::fs::read(SMALL).unwrap();
    let shoff = u64::from_le_bytes(full[0x28..0x30].try_into().unwrap()) as usize;
    let mut rng = Rng(42);
    // Every byte of the ELF header and program headers, and of the section
    // header table, set to a few interesting values.
    let targets = (0..0x40 + 13 * 56).chain(shoff..full.len());
    for i in targets {
        for v in [0x00u8, 0xff, 0x7f, rng.next() as u8] {
            let mut bytes = full.clone();
            bytes[i] = v;
            if let Ok(elf) = ElfFile::parse(Path::new(SMALL), bytes) {
                exercise(&elf);
            }
        }
    }
}

/// Uses every query that reads the tables goblin parses (symbols and their
/// versions, relocations, the dynamic section, notes) and the code scan.
fn exercise_tables(elf: &ElfFile) {
    exercise(elf);
    let _ = elf.symbols().len();
    let _ = elf.function_named("vfun");
    let _ = elf.relocations().len();
    let _ = elf.tls_offset_slot("errno");
    let _ = elf.dependencies().needed.len();
    let _ = elf.build_id();
    let _ = elf.debug_link();
    if let Some(f) = elf.functions().first() {
        let _ = elf.code_ref_into(f.addr, f.addr.offset(5));
    }
}

#[test]
fn truncated_at_every_header_offset_never_panics() {
    let full = std::fs::read(SMALL).unwrap();
    let shoff = u64::from_le_bytes(full[0x28..0x30].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(full[0x38..0x3a].try_into().unwrap()) as usize;
    // Every length inside the ELF header and the program headers, and inside
    // the section header table (at the end of the file).
    for len in (0..0x40 + phnum * 56).chain(shoff..full.len()) {
        let r = ElfFile::parse(Path::new(SMALL), full[..len].to_vec());
        assert!(corrupt_or_not_elf(r), "truncated at {len}");
    }
}

#[test]
fn flipped_table_bytes_never_panic() {
    // Every byte of the tables goblin reads (symbol tables, their strings and
    // versions, relocations, the dynamic section, notes) of a real
    // executable and a library with versioned symbols, each set to a few
    // values; the files that still parse are queried throughout.
    let dir = temp_dir("fliptables");
    std::fs::write(dir.join("v.map"), "V_1 { global: vfun; local: *; };\n").unwrap();
    let so = compile_in(
        &dir,
        "v.c",
        "int vfun(void) { return 1; }\n__thread int errno_like;\nint *tls(void) { return &errno_like; }\n",
        &["-shared", "-fPIC", "-Wl,--version-script=v.map"],
    );
    let mut rng = Rng(0x5eed);
    for path in [Path::new(SMALL), so.as_path()] {
        let full = std::fs::read(path).unwrap();
        let good = ElfFile::parse(path, full.clone()).unwrap();
        exercise_tables(&good);
        let tables: Vec<(usize, usize)> = good
            .sections
            .iter()
            .filter(|s| {
                matches!(
                    s.kind,
                    section_header::SHT_SYMTAB
                        | section_header::SHT_DYNSYM
                        | section_header::SHT_STRTAB
                        | section_header::SHT_GNU_VERSYM
                        | section_header::SHT_RELA
                        | section_header::SHT_DYNAMIC
                        | section_header::SHT_NOTE
                )
            })
            .map(|s| (s.offset as usize, (s.size as usize).min(4096)))
            .collect();
        assert!(tables.len() >= 6, "{path:?}: {tables:?}");
        for (start, len) in tables {
            for i in start..start + len {
                for v in [0xffu8, rng.next() as u8] {
                    let mut bytes = full.clone();
                    bytes[i] = v;
                    if let Ok(elf) = ElfFile::parse(path, bytes) {
                        exercise_tables(&elf);
                    }
                }
            }
        }
    }
}

/// goblin's whole-file parser, asked the same questions: the relocations,
/// the dynamic section's libraries and search paths, and `errno`'s
/// thread-pointer slot (as rtrace computed it before reading with goblin's
/// pieces) agree with what [`ElfFile`] reads.
#[test]
fn agrees_with_goblins_whole_file_parse() {
    use goblin::elf::{reloc, sym, Elf};
    for path in [LIBC, LD_SO, SMALL, "/usr/bin/python3"] {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let full = Elf::parse(&bytes).unwrap();
        let elf = open(path);
        // Relocations: .rela.dyn then .rela.plt, as their sections come.
        let theirs: Vec<(u64, u32, i64)> = full
            .dynrelas
            .iter()
            .chain(full.pltrelocs.iter())
            .map(|r| (r.r_offset, r.r_type, r.r_addend.unwrap_or(0)))
            .collect();
        let ours: Vec<(u64, u32, i64)> = elf
            .relocations()
            .iter()
            .map(|r| (r.offset.get(), r.kind, r.addend))
            .collect();
        assert_eq!(ours, theirs, "{path}");
        for (r, g) in elf
            .relocations()
            .iter()
            .zip(full.dynrelas.iter().chain(full.pltrelocs.iter()))
        {
            let name = (g.r_sym != 0)
                .then(|| full.dynsyms.get(g.r_sym))
                .flatten()
                .and_then(|s| full.dynstrtab.get_at(s.st_name));
            assert_eq!(r.symbol.as_deref(), name, "{path} at {:#x}", g.r_offset);
        }
        let deps = elf.dependencies();
        assert_eq!(deps.needed, full.libraries, "{path}");
        assert_eq!(deps.rpath, full.rpaths, "{path}");
        assert_eq!(deps.runpath, full.runpaths, "{path}");
        // errno's slot, the way it was found from goblin's whole parse.
        let tls_value = |index: usize| -> Option<(u64, bool)> {
            let s = full.dynsyms.get(index)?;
            let is_errno = full.dynstrtab.get_at(s.st_name) == Some("errno");
            (s.st_type() == sym::STT_TLS || index == 0).then_some((s.st_value, is_errno))
        };
        let slot = (0..full.dynsyms.len())
            .filter_map(tls_value)
            .find(|(_, is_errno)| *is_errno)
            .and_then(|(errno_value, _)| {
                full.dynrelas
                    .iter()
                    .filter(|r| r.r_type == reloc::R_X86_64_TPOFF64)
                    .find(|r| {
                        let base = if r.r_sym == 0 {
                            Some(0)
                        } else {
                            tls_value(r.r_sym).map(|(v, _)| v)
                        };
                        base.map(|b| b.wrapping_add(r.r_addend.unwrap_or(0) as u64))
                            == Some(errno_value)
                    })
                    .map(|r| LinkAddr(r.r_offset))
            });
        assert_eq!(elf.tls_offset_slot("errno"), slot, "{path}");
        if path == LIBC {
            assert!(slot.is_some(), "libc's errno has a TPOFF64 slot");
        }
    }
}

/// Where gcc puts the lines of [`LINES_C`] at -O0 without CET (hand-computed
/// from the code gcc emits; `objdump --dwarf=decodedline` agrees):
/// - line 4 `{` is `work`'s prologue: `push rbp; mov rbp,rsp; mov [rbp-0x14],edi`
///   (1 + 3 + 3 bytes), so line 5 starts 7 bytes in;
/// - line 10 `{` is `main`'s first instruction.
fn check_line_table(elf: &ElfFile, file: &str) {
    let work = elf.function_named("work").expect("work").addr;
    let main = elf.function_named("main").expect("main").addr;
    assert_eq!(elf.line_addresses(file, 4).unwrap(), vec![work]);
    assert_eq!(elf.line_addresses(file, 5).unwrap(), vec![work.offset(7)]);
    assert_eq!(elf.line_addresses(file, 10).unwrap(), vec![main]);
    let l12 = elf.line_addresses(file, 12).unwrap();
    assert_eq!(l12.len(), 1);
    let (f, off) = elf.function_at(l12[0]).unwrap();
    assert_eq!(f.name, "main");
    assert!(off > 0);
    // Lines with code: 4 5 6 7, 10, 12 13 14.
    for (no_code, nearest) in [
        (1, vec![4, 5]),
        (2, vec![4, 5]),
        (8, vec![7, 10]),
        (11, vec![10, 12]),
        (15, vec![13, 14]),
        (1000, vec![13, 14]),
    ] {
        match elf.line_addresses(file, no_code) {
            Err(Error::NoCodeAtLine {
                file: f,
                line,
                nearest: n,
            }) => assert_eq!((f.as_str(), line, n), (file, no_code, nearest)),
            other => panic!("line {no_code}: {other:?}"),
        }
    }
}

#[test]
fn no_code_error_names_the_nearest_lines() {
    let e = Error::NoCodeAtLine {
        file: "count.c".into(),
        line: 3,
        nearest: vec![20, 21],
    };
    assert_eq!(
        e.to_string(),
        "no code at count.c:3; nearest lines with code: 20, 21"
    );
    assert!(e.hint().is_none());
    let e = Error::NoCodeAtLine {
        file: "x.c".into(),
        line: 9,
        nearest: vec![4],
    };
    assert_eq!(e.to_string(), "no code at x.c:9; nearest line with code: 4");
    assert_eq!(nearest_lines(&[], 5), Vec::<u32>::new());
    assert_eq!(nearest_lines(&[7], 5), vec![7]);
    assert_eq!(nearest_lines(&[3], 5), vec![3]);
    assert_eq!(nearest_lines(&[1, 2, 3], 5), vec![2, 3]);
    assert_eq!(nearest_lines(&[6, 8, 9], 5), vec![6, 8]);
    assert_eq!(nearest_lines(&[1, 4, 6, 9], 5), vec![4, 6]);
}

/// A line of a function inlined into two callers, and a `for` line whose code
/// is in three places of one function. Line numbers matter.
const INLINED_C: &str = "\
#include <stdio.h>

static inline __attribute__((always_inline)) int helper(int x)
{
return x * 3;
}

int first(int x)
{
return helper(x) + 1;
}

int second(int x)
{
return helper(x) - 1;
}

int main(void)
{
int s = 0;
for (int i = 0; i < 3; i++)
    s += first(i) + second(i);
printf(\"%d\\n\", s);
return 0;
}
";

#[test]
fn a_line_in_several_functions_gives_one_address_in_each() {
    for opt in ["-O0", "-O1"] {
        let exe = compile("inlined", "x.c", INLINED_C, &[opt, "-g"]);
        let elf = ElfFile::open(&exe).unwrap();
        let addrs = elf.line_addresses("x.c", 5).unwrap();
        let names: Vec<&str> = addrs
            .iter()
            .map(|&a| elf.function_at(a).expect("in a function").0.name.as_str())
            .collect();
        assert_eq!(names, ["first", "second"], "{opt}: {addrs:?}");
    }
    // The `for` line has code for the initialisation, the increment and the
    // test, all in main: one address, the lowest.
    let exe = compile("forline", "x.c", INLINED_C, &["-O0", "-g"]);
    let elf = ElfFile::open(&exe).unwrap();
    let addrs = elf.line_addresses("x.c", 21).unwrap();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    let main = elf.function_named("main").unwrap();
    let (f, _) = elf.function_at(addrs[0]).unwrap();
    assert_eq!(f, main);
}

#[test]
fn line_table_dwarf5_and_dwarf4() {
    for version in ["-gdwarf-5", "-gdwarf-4"] {
        let exe = compile("lines", "fixtures/x.c", LINES_C, &["-O0", version]);
        let elf = ElfFile::open(&exe).unwrap();
        check_line_table(&elf, "x.c");
        check_line_table(&elf, "fixtures/x.c");
        check_line_table(&elf, "./fixtures/x.c");
        let abs = exe.parent().unwrap().join("fixtures/x.c");
        check_line_table(&elf, abs.to_str().unwrap());
        // Whole components only.
        assert!(matches!(
            elf.line_addresses("tures/x.c", 5),
            Err(Error::NoLineInfo { .. })
        ));
        assert!(matches!(
            elf.line_addresses("y.c", 5),
            Err(Error::NoLineInfo { .. })
        ));
        assert!(matches!(
            elf.line_addresses("", 5),
            Err(Error::NoLineInfo { .. })
        ));
    }
}

#[test]
fn line_table_agrees_with_addr2line() {
    let exe = compile("addr2line", "x.c", LINES_C, &["-O0", "-g"]);
    let elf = ElfFile::open(&exe).unwrap();
    for line in [4, 5, 6, 7, 10, 12, 13, 14] {
        let addrs = elf.line_addresses("x.c", line).unwrap();
        assert_eq!(addrs.len(), 1, "line {line}");
        let out = std::process::Command::new("addr2line")
            .arg("-e")
            .arg(&exe)
            .arg(format!("{:#x}", addrs[0].get()))
            .output()
            .expect("addr2line");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.trim_end().ends_with(&format!("x.c:{line}")),
            "line {line}: {text}"
        );
    }
}

#[test]
fn no_debug_info_is_no_line_info() {
    let exe = compile("nodebug", "x.c", LINES_C, &["-O0"]);
    let elf = ElfFile::open(&exe).unwrap();
    assert!(matches!(
        elf.line_addresses("x.c", 5),
        Err(Error::NoLineInfo { .. })
    ));
    // Stripped: no .symtab, but .dynsym and segments still work.
    let stripped = exe.with_file_name("stripped");
    let ok = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&exe)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let elf = ElfFile::open(&stripped).unwrap();
        assert!(elf.function_named("work").is_none());
        assert!(matches!(
            elf.line_addresses("x.c", 5),
            Err(Error::NoLineInfo { .. })
        ));
    }
}

/// Runs `prog args`, panicking with its stderr when it fails.
fn run_tool(prog: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn compressed_debug_sections_are_inflated() {
    // SHF_COMPRESSED (what Debian's debug files use) and GNU .zdebug_*.
    for flag in ["-gz=zlib", "-gz=zlib-gnu"] {
        let exe = compile("zdebug", "x.c", LINES_C, &["-O0", "-g", flag]);
        let elf = ElfFile::open(&exe).unwrap();
        assert!(elf.has_dwarf(), "{flag}");
        check_line_table(&elf, "x.c");
    }
}

#[test]
fn unsupported_compression_is_reported() {
    let exe = compile("zstd", "x.c", LINES_C, &["-O0", "-g"]);
    let mut bytes = std::fs::read(&exe).unwrap();
    let good = ElfFile::parse(&exe, bytes.clone()).unwrap();
    // Mark .debug_line compressed with method 2 (zstd).
    let idx = good
        .sections
        .iter()
        .position(|s| s.name == ".debug_line")
        .unwrap();
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    let flags_at = shoff + idx * 64 + 8;
    let flags = u64::from_le_bytes(bytes[flags_at..flags_at + 8].try_into().unwrap())
        | u64::from(section_header::SHF_COMPRESSED);
    bytes[flags_at..flags_at + 8].copy_from_slice(&flags.to_le_bytes());
    let at = good.sections[idx].offset as usize;
    bytes[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let elf = ElfFile::parse(&exe, bytes.clone()).unwrap();
    match elf.line_addresses("x.c", 5) {
        Err(Error::CorruptElf { reason, .. }) => {
            assert!(reason.contains("only zlib"), "{reason}")
        }
        other => panic!("expected an unsupported-compression error, got {other:?}"),
    }
    // The failure is cached and reported again, not re-parsed into a panic.
    assert!(matches!(
        elf.line_addresses("x.c", 6),
        Err(Error::CorruptElf { .. })
    ));
    // A zlib header whose stream is garbage, or whose size lies.
    bytes[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
    for size in [0u64, 3, u64::MAX] {
        bytes[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        let elf = ElfFile::parse(&exe, bytes.clone()).unwrap();
        assert!(
            matches!(elf.line_addresses("x.c", 5), Err(Error::CorruptElf { .. })),
            "size {size}"
        );
    }
}

/// Builds [`LINES_C`] with `-g`, moves its DWARF into `x.debug` with
/// `objcopy --only-keep-debug`, strips it from the binary and links the two
/// with `--add-gnu-debuglink`. Returns (binary, debug file).
fn split_debug(tag: &str) -> (PathBuf, PathBuf) {
    let exe = compile(tag, "x.c", LINES_C, &["-O0", "-g"]);
    let dir = exe.parent().unwrap().to_path_buf();
    let debug = dir.join("x.debug");
    run_tool(
        "objcopy",
        &["--only-keep-debug".as_ref(), exe.as_ref(), debug.as_ref()],
    );
    run_tool("objcopy", &["--strip-debug".as_ref(), exe.as_ref()]);
    // objcopy records the name and CRC of the file as given, found by name
    // from the current directory: use an absolute path.
    let link = format!("--add-gnu-debuglink={}", debug.display());
    run_tool("objcopy", &[link.as_ref(), exe.as_ref()]);
    (exe, debug)
}

#[test]
fn debuglink_next_to_the_binary() {
    let (exe, debug) = split_debug("debuglink");
    let elf = ElfFile::open(&exe).unwrap();
    assert!(!has_dwarf(&elf.sections), "the binary lost its DWARF");
    assert_eq!(elf.debug_link().map(|l| l.name.as_str()), Some("x.debug"));
    // Nothing is looked for before DWARF is needed.
    assert!(elf.debug_file.get().is_none());
    check_line_table(&elf, "x.c");
    assert_eq!(elf.separate_debug_file(), Some(debug.as_path()));
    assert!(elf.has_dwarf());
    // Symbols still come from the binary's own .symtab.
    assert!(elf.function_named("work").is_some());
}

#[test]
fn debuglink_naming_a_fifo_is_passed_over() {
    let (exe, debug) = split_debug("fifo");
    std::fs::remove_file(&debug).unwrap();
    run_tool("mkfifo", &[debug.as_ref()]);
    let elf = ElfFile::open(&exe).unwrap();
    assert!(matches!(
        elf.line_addresses("x.c", 5),
        Err(Error::NoLineInfo { .. })
    ));
    assert_eq!(elf.separate_debug_file(), None);
}

#[test]
fn debuglink_in_dot_debug_subdirectory() {
    let (exe, debug) = split_debug("dotdebug");
    let sub = exe.parent().unwrap().join(".debug");
    std::fs::create_dir_all(&sub).unwrap();
    let moved = sub.join("x.debug");
    std::fs::rename(&debug, &moved).unwrap();
    let elf = ElfFile::open(&exe).unwrap();
    check_line_table(&elf, "x.c");
    assert_eq!(elf.separate_debug_file(), Some(moved.as_path()));
}

#[test]
fn debuglink_with_wrong_crc_is_not_used() {
    let (exe, debug) = split_debug("badcrc");
    // Same name, other contents: a debug file from another build.
    let mut bytes = std::fs::read(&debug).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&debug, bytes).unwrap();
    let elf = ElfFile::open(&exe).unwrap();
    assert!(matches!(
        elf.line_addresses("x.c", 5),
        Err(Error::NoLineInfo { .. })
    ));
    assert_eq!(elf.separate_debug_file(), None);
    assert!(!elf.has_dwarf());
}

#[test]
fn corrupt_debug_file_never_panics() {
    let (exe, debug) = split_debug("baddebug");
    let full = std::fs::read(&debug).unwrap();
    let mut rng = Rng(99);
    let mut lengths: Vec<usize> = (0..full.len()).step_by(97).collect();
    lengths.push(full.len() - 1);
    for round in 0..120 {
        let mut bytes = full.clone();
        if round % 2 == 0 {
            bytes.truncate(lengths[round % lengths.len()]);
        } else {
            for _ in 0..8 {
                let i = (rng.next() as usize) % bytes.len();
                bytes[i] ^= (rng.next() as u8) | 1;
            }
        }
        // A corrupt file never passes the CRC check: parse it directly.
        if let Some(file) = DebugFile::parse(&debug, bytes) {
            for s in &file.sections {
                let _ = section_bytes(&file.bytes, s, &corrupt_elf(&debug));
            }
        }
    }
    // Through the lookup: a corrupt file in place of the real one.
    std::fs::write(&debug, &full[..full.len() / 2]).unwrap();
    let elf = ElfFile::open(&exe).unwrap();
    let _ = elf.line_addresses("x.c", 5);
    assert_eq!(elf.separate_debug_file(), None);
}

#[test]
fn libc_dwarf_from_build_id_debug_file() {
    // Debian's libc6-dbg installs /usr/lib/debug/.build-id/xx/yyyy.debug for
    // the libc it was built with (.ci/run installs it).
    let elf = open(LIBC);
    let id = elf.build_id().expect("libc has a build-id");
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let expected = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &hex[..2],
        &hex[2..]
    ));
    assert!(
        expected.is_file(),
        "{} is missing: install libc6-dbg (apt-get install libc6-dbg)",
        expected.display()
    );
    assert!(elf.has_dwarf());
    assert_eq!(elf.separate_debug_file(), Some(expected.as_path()));
    // fputs (alias _IO_fputs) is defined in libio/iofputs.c; its first line
    // with code is its own first address.
    let fputs = elf.function_named("fputs").expect("fputs").addr;
    let lines = elf.line_addresses("iofputs.c", 33).unwrap();
    assert!(lines.contains(&fputs), "{lines:?} vs fputs at {fputs}");
    let lines = elf.line_addresses("libio/iofputs.c", 33).unwrap();
    assert!(lines.contains(&fputs));
    // Internal functions are only in the debug file's .symtab: found by
    // name, and naming their addresses; globs and `functions()` stay
    // with libc's own tables.
    let internal = elf
        .function_named("__libc_start_call_main")
        .expect("in libc6-dbg's .symtab")
        .clone();
    assert!(elf.functions().iter().all(|f| f.addr != internal.addr));
    let (f, off) = elf.function_at(internal.addr.offset(1)).unwrap();
    assert_eq!((f.name.as_str(), off), ("__libc_start_call_main", 1));
}

#[test]
fn a_relative_compilation_directory_is_not_doubled() {
    // Debian builds libc with -fdebug-prefix-map, leaving relative
    // compilation directories (`./stdio-common`), which DWARF 5 repeats as
    // directory 0 of the line table: gdb shows ./stdio-common/printf.c.
    let printf = open(LIBC).function_named("printf").expect("printf").addr;
    let (file, _) = open(LIBC).line_of(printf).expect("libc6-dbg has lines");
    assert_eq!(file, Path::new("./stdio-common/printf.c"));
    for version in ["-gdwarf-5", "-gdwarf-4"] {
        let dir = temp_dir("reldir");
        let map = format!("-fdebug-prefix-map={}=./sub", dir.display());
        let exe = compile_in(&dir, "x.c", LINES_C, &["-O0", version, &map]);
        let elf = ElfFile::open(&exe).unwrap();
        let work = elf.function_named("work").unwrap().addr;
        assert_eq!(
            elf.line_of(work),
            Some((PathBuf::from("./sub/x.c"), 4)),
            "{version}"
        );
    }
}

#[test]
fn corrupt_dwarf_is_an_error_not_a_panic() {
    let exe = compile("baddwarf", "x.c", LINES_C, &["-O0", "-g"]);
    let full = std::fs::read(&exe).unwrap();
    let good = ElfFile::parse(&exe, full.clone()).unwrap();
    let mut rng = Rng(7);
    for name in [
        ".debug_line",
        ".debug_info",
        ".debug_abbrev",
        ".debug_line_str",
        ".debug_str",
    ] {
        let Some(s) = good.sections.iter().find(|s| s.name == name) else {
            continue;
        };
        let (start, len) = (s.offset as usize, s.size as usize);
        for i in 0..len.min(400) {
            let mut bytes = full.clone();
            bytes[start + i] ^= (rng.next() as u8) | 1;
            let elf = ElfFile::parse(&exe, bytes).unwrap();
            let _ = elf.line_addresses("x.c", 5);
        }
        // Truncating the section's declared size.
        let mut bytes = full.clone();
        let elf_shdr = good.sections.iter().position(|x| x.name == name).unwrap();
        let shoff = u64::from_le_bytes(full[0x28..0x30].try_into().unwrap()) as usize;
        let size_at = shoff + elf_shdr * 64 + 0x20;
        bytes[size_at..size_at + 8].copy_from_slice(&((len / 3) as u64).to_le_bytes());
        let elf = ElfFile::parse(&exe, bytes).unwrap();
        let _ = elf.line_addresses("x.c", 5);
    }
}

#[test]
fn cache_parses_once() {
    let mut cache = ElfCache::new();
    let a = cache.get(Path::new(SMALL)).unwrap();
    let b = cache.get(Path::new(SMALL)).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(cache.get(Path::new("/nonexistent/file")).is_err());
    assert!(matches!(
        cache.get(Path::new("/etc/hostname")),
        Err(Error::NotElf { .. }) | Err(Error::Io { .. })
    ));
}

/// CFA = register + offset, as a rule says.
fn cfa_of(rule: &FrameRule) -> (u16, i64) {
    match rule.cfa {
        crate::symbols::cfi::CfaRule::RegisterOffset { register, offset } => (register, offset),
        ref other => panic!("not register + offset: {other:?}"),
    }
}

#[test]
fn frame_rules_of_optimised_code_without_frame_pointers() {
    use crate::symbols::cfi::RegisterRule;
    let exe = compile(
        "cfi-o2",
        "x.c",
        LINES_C,
        &["-O2", "-fomit-frame-pointer", "-g"],
    );
    let elf = ElfFile::open(&exe).unwrap();
    for name in ["work", "main"] {
        let f = elf.function_named(name).unwrap().clone();
        let entry = elf.frame_rule(f.addr).expect("an FDE covers the entry");
        assert_eq!(cfa_of(&entry), (7, 8), "{name}: CFA = rsp + 8 at entry");
        assert_eq!(entry.register(16), Some(&RegisterRule::Offset(-8)));
        // Asked again: the same rule, from the cache.
        let again = elf.frame_rule(f.addr).unwrap();
        assert!(Arc::ptr_eq(&entry, &again));
    }
    // main calls printf with its stack realigned (`sub $8,%rsp`): somewhere
    // in it the CFA is rsp + 16, never rbp-based (no frame pointer).
    let main = elf.function_named("main").unwrap().clone();
    let cfas: Vec<(u16, i64)> = (0..main.size)
        .filter_map(|k| elf.frame_rule(main.addr.offset(k as i64)))
        .map(|r| cfa_of(&r))
        .collect();
    assert_eq!(
        cfas.len() as u64,
        main.size,
        "every byte of main is covered"
    );
    assert!(cfas.contains(&(7, 16)), "{cfas:?}");
    assert!(cfas.iter().all(|&(reg, _)| reg == 7), "{cfas:?}");
    // Outside any FDE: no rule.
    assert!(elf.frame_rule(LinkAddr(0x10)).is_none());
}

#[test]
fn line_at_agrees_with_addr2line_on_every_byte() {
    for opt in ["-O0", "-O2"] {
        let exe = compile("line-at", "x.c", LINES_C, &[opt, "-g"]);
        let elf = ElfFile::open(&exe).unwrap();
        let mut addrs = Vec::new();
        for name in ["work", "main"] {
            let f = elf.function_named(name).unwrap();
            addrs.extend((0..f.size).map(|k| f.addr.get() + k));
        }
        let out = std::process::Command::new("addr2line")
            .arg("-e")
            .arg(&exe)
            .args(addrs.iter().map(|a| format!("{a:#x}")))
            .output()
            .expect("run addr2line");
        let text = String::from_utf8_lossy(&out.stdout);
        let expected: Vec<&str> = text.lines().collect();
        assert_eq!(expected.len(), addrs.len());
        for (a, want) in addrs.iter().zip(expected) {
            // `/dir/x.c:5`, maybe followed by ` (discriminator 1)`.
            let want = want.split(' ').next().unwrap();
            let got = match elf.line_at(LinkAddr(*a)) {
                Some((file, line)) => format!("{}:{line}", file.display()),
                None => "??:0".to_string(),
            };
            assert_eq!(got, want, "{opt} at {a:#x}");
        }
    }
}

#[test]
fn debug_frame_in_the_file_and_in_its_separate_debug_file() {
    let flags = [
        "-O0",
        "-g",
        "-fno-asynchronous-unwind-tables",
        "-fno-unwind-tables",
    ];
    let exe = compile("debug-frame", "x.c", LINES_C, &flags);
    let check = |elf: &ElfFile| {
        let work = elf.function_named("work").unwrap().clone();
        // After `push %rbp; mov %rsp,%rbp` (-O0 keeps the frame pointer).
        let rule = elf
            .frame_rule(work.addr.offset(4))
            .expect("from .debug_frame");
        assert_eq!(cfa_of(&rule), (6, 16));
        assert_eq!(cfa_of(&elf.frame_rule(work.addr).unwrap()), (7, 8));
    };
    let elf = ElfFile::open(&exe).unwrap();
    assert!(!elf
        .section_data(".debug_frame", &corrupt_elf(elf.path()))
        .unwrap()
        .is_empty());
    check(&elf);

    let dir = exe.parent().unwrap().to_path_buf();
    let debug = dir.join("x.debug");
    run_tool(
        "objcopy",
        &["--only-keep-debug".as_ref(), exe.as_ref(), debug.as_ref()],
    );
    run_tool("objcopy", &["--strip-debug".as_ref(), exe.as_ref()]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    run_tool("objcopy", &[link.as_ref(), exe.as_ref()]);
    let elf = ElfFile::open(&exe).unwrap();
    assert!(
        !elf.sections.iter().any(|s| s.name == ".debug_frame"),
        "stripped"
    );
    check(&elf);
    assert_eq!(elf.separate_debug_file(), Some(debug.as_path()));
}
