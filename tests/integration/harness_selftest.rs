//! Tests of the fixtures and the harness, without rtrace: every fixture
//! builds in every variant it supports and, untraced, prints exactly what
//! its header comment says; the variants really differ the way they claim;
//! the process checks catch what they are meant to catch.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use goblin::elf::{header, program_header, Elf};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::fixtures::*;

/// Runs `name args` untraced in every variant it supports and checks the
/// exact stdout and exit status.
fn check_all_variants(name: &str, args: &[&str], stdout: &str, code: i32) {
    for variant in Variant::ALL {
        if !supports(name, variant) {
            continue;
        }
        let run = run_untraced(&fixture(name, variant), args);
        assert_eq!(
            (run.stdout.as_str(), run.code()),
            (stdout, code),
            "{name} {args:?} ({variant}): {run:?}"
        );
    }
}

/// What `fills` prints, untraced (three rounds).
pub const FILLS_OUTPUT: &str =
    "r=0 0 0 0 0 1 1 2 0 0 1 0 0 -2 -2 -3 -2 -1 0 1 -2 -2 -1 -2 -2\nready\n\
r=1 2 2 3 2 2 2 3 2 2 2 2 2 -4 -4 -6 -4 -1 -1 0 -4 -4 -1 -4 -4\n\
r=2 4 4 6 4 3 3 4 4 4 3 4 4 -6 -6 -9 -6 -1 -2 4294967295 -6 -6 -1 -6 -6\n\
sum=4294967263\ndone\n";

#[test]
fn fills_computes_its_values() {
    check_all_variants("fills", &[], FILLS_OUTPUT, 0);
}

#[test]
fn hot_prints_its_calls() {
    check_all_variants("hot", &[], "ready\nstarted\ncalls=1000 sum=1000000\n", 0);
    check_all_variants(
        "hot",
        &["3", "100"],
        "ready\nstarted\ncalls=300 sum=30000\n",
        0,
    );
}

#[test]
fn litter_prints_its_children() {
    check_all_variants("litter", &[], "forked 10\ndone 110000\n", 0);
    check_all_variants("litter", &["3"], "forked 3\ndone 40000\n", 0);
}

#[test]
fn inlined_prints_its_sum() {
    check_all_variants("inlined", &[], "sum=60\n", 0);
    check_all_variants("inlined", &["50"], "sum=7350\n", 0);
}

#[test]
fn count_prints_sum_and_exits_with_requested_status() {
    check_all_variants("count", &["5", "3"], "sum=25\ntwice=41\n", 3);
    check_all_variants("count", &[], "sum=100\ntwice=41\n", 0);
}

/// The stdout of `typed`, whose `point=` line holds an address.
pub fn typed_stdout_without_point(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with("point="))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What `typed` prints apart from its `point=ADDR` line.
pub const TYPED_STDOUT: &str = "narrow=64945\nwide=-9000000007\nwide_max=18446744073709551615\n\
negate=-1\nmeasure=5,100,0,9\nupper=65\npaint=5,42\nname=green\nflip=0\nmove=4\narea=6\n\
mixed=3\neight=-11\nnothing\n";

#[test]
fn typed_prints_every_result() {
    for variant in Variant::ALL {
        let run = run_untraced(&fixture("typed", variant), &[]);
        assert_eq!(run.code(), 0, "typed ({variant}): {run:?}");
        assert_eq!(
            typed_stdout_without_point(&run.stdout),
            TYPED_STDOUT,
            "typed ({variant})"
        );
        let point = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("point=0x"))
            .unwrap_or_else(|| panic!("typed ({variant}): no point= line: {run:?}"));
        assert!(
            u64::from_str_radix(point, 16).is_ok(),
            "typed ({variant}): point={point}"
        );
    }
}

/// What `abi` prints, its two address lines (`in_memory_at=`, `res_at=`)
/// replaced by `NAME=ADDR`.
pub const ABI_STDOUT: &str = "wide_on_stack=80\naligned_on_stack=91\npair=4,5\nwide_ret=1:7\n\
in_memory_at=ADDR\nin_memory=36\nres_at=ADDR\nmake_big=7,8,9\nmixed_regs=45\n";

/// `abi`'s stdout with its addresses replaced by `ADDR`, and the addresses
/// (`in_memory_at`, `res_at`), checked to be hex.
pub fn abi_stdout(stdout: &str) -> (String, Vec<String>) {
    let mut addrs = Vec::new();
    let mut text = String::new();
    for l in stdout.lines() {
        match l.split_once("=0x") {
            Some((name, hex)) if u64::from_str_radix(hex, 16).is_ok() => {
                addrs.push(format!("0x{hex}"));
                text.push_str(&format!("{name}=ADDR\n"));
            }
            _ => text.push_str(&format!("{l}\n")),
        }
    }
    (text, addrs)
}

#[test]
fn abi_prints_every_result() {
    for variant in Variant::ALL {
        let run = run_untraced(&fixture("abi", variant), &[]);
        assert_eq!(run.code(), 0, "abi ({variant}): {run:?}");
        let (text, addrs) = abi_stdout(&run.stdout);
        assert_eq!(text, ABI_STDOUT, "abi ({variant})");
        assert_eq!(addrs.len(), 2, "abi ({variant}): {run:?}");
    }
}

#[test]
fn lazyifunc_prints_its_string() {
    check_all_variants("lazyifunc", &[], "abccc -1\n", 0);
}

#[test]
fn clones_prints_its_sum() {
    check_all_variants("clones", &[], "36\n", 0);
    check_all_variants("clones", &["2"], "18\n", 0);
}

#[test]
fn sigtrap_handles_its_own_traps() {
    check_all_variants("sigtrap", &[], "traps=5\n", 0);
}

#[test]
fn sigtrap_default_dies_by_sigtrap() {
    check_all_variants("sigtrap", &["default"], "", 128 + 5);
    let run = run_untraced(&fixture("sigtrap", Variant::Pie), &["default"]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(run.status.signal(), Some(libc::SIGTRAP));
    assert!(!run.status.core_dumped(), "core dumps should be off");
}

#[test]
fn signals_are_each_delivered_once() {
    check_all_variants("signals", &[], "usr1=5\nusr2=1\n", 0);
}

#[test]
fn threads_sum_every_call() {
    check_all_variants("threads", &[], "total=4000000\n", 0);
    check_all_variants("threads", &["3", "10"], "total=300\n", 0);
}

#[test]
fn leaker_keeps_its_four_blocks() {
    check_all_variants("leaker", &[], "kept 4 blocks\n", 0);
}

#[test]
fn opener_opens_and_fails_as_documented() {
    let path = source_dir().join("opener.c");
    check_all_variants("opener", &[path.to_str().unwrap()], "ok\n", 0);
    let run = run_untraced(&fixture("opener", Variant::Pie), &["/nonexistent/y"]);
    assert_eq!(run.code(), 1, "{run:?}");
}

#[test]
fn forker_child_exits_7() {
    check_all_variants("forker", &[], "child=7\n", 0);
}

#[test]
fn execer_runs_its_program_after_its_own_work() {
    let count = fixture("count", Variant::Pie);
    check_all_variants(
        "execer",
        &[count.to_str().unwrap(), "5", "3"],
        "before=207\nsum=25\ntwice=41\n",
        3,
    );
    let run = run_untraced(&fixture("execer", Variant::Pie), &["/nonexistent/prog"]);
    assert_eq!((run.stdout.as_str(), run.code()), ("before=207\n", 127));
}

#[test]
fn faulter_recovers_from_its_faults_or_dies() {
    check_all_variants("faulter", &[], "faults=3 sum=15\n", 0);
    check_all_variants("faulter", &["retry"], "faults=3 sum=15 off_site=0\n", 0);
    let run = run_untraced(&fixture("faulter", Variant::Pie), &["crash"]);
    assert_eq!(run.stdout, "crashing\n");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&run.status),
        Some(libc::SIGSEGV),
        "{run:?}"
    );
}

#[test]
fn sigstorm_receives_every_signal() {
    check_all_variants("sigstorm", &["500", "2000"], "received=500 calls=2000\n", 0);
    check_all_variants("sigqueuer", &["4", "400"], "received=400 bad=0\n", 0);
    check_all_variants(
        "orphaner",
        &["fork", "50"],
        "parent done\nchild sum=2500\n",
        0,
    );
    check_all_variants(
        "orphaner",
        &["vm", "50"],
        "parent done\nchild sum=2500\n",
        0,
    );
}

#[test]
fn waves_counts_every_thread() {
    check_all_variants("waves", &[], "threads=20 total=200000\n", 0);
}

#[test]
fn exitrace_exits_7() {
    check_all_variants("exitrace", &[], "", 7);
    check_all_variants("exitrace", &["fork"], "", 7);
}

#[test]
fn exiter_exits_3() {
    check_all_variants("exiter", &[], "exiting\n", 3);
}

#[test]
fn blocker_wakes_its_blocked_threads() {
    check_all_variants("blocker", &["100"], "read=x cond=1 sum=10000\n", 0);
}

#[test]
fn spawner_children_exit_as_documented() {
    check_all_variants("spawner", &["fork"], "child=7\n", 0);
    check_all_variants("spawner", &["vfork"], "child=8\n", 0);
    check_all_variants("spawner", &["clone"], "child=9\n", 0);
    check_all_variants("spawner", &["clonevm"], "child=10\n", 0);
    let count = fixture("count", Variant::Pie);
    let count = count.to_str().unwrap();
    for mode in ["vforkexec", "spawn", "system"] {
        check_all_variants(
            "spawner",
            &[mode, count, "3", "5"],
            "sum=9\ntwice=41\nchild=5\n",
            0,
        );
    }
    check_all_variants(
        "spawner",
        &["popen", count, "3", "5"],
        "read: sum=9\nread: twice=41\nchild=5\n",
        0,
    );
    // A child that cannot exec reports 127, as the shell does.
    check_all_variants(
        "spawner",
        &["vforkexec", "/nonexistent/program"],
        "child=127\n",
        0,
    );
    let run = run_untraced(&fixture("spawner", Variant::Pie), &["nosuchmode"]);
    assert_eq!(run.code(), 64, "{run:?}");
}

#[test]
fn threadexec_runs_its_program_from_a_second_thread() {
    let count = fixture("count", Variant::Pie);
    let count = count.to_str().unwrap();
    let expected = "main=7\nthread=12\nsum=9\ntwice=41\n";
    check_all_variants("threadexec", &[count, "3", "5"], expected, 5);
    check_all_variants(
        "threadexec",
        &["--leader-exits", count, "3", "5"],
        expected,
        5,
    );
    check_all_variants(
        "threadexec",
        &["--leader-exits", "/nonexistent/program"],
        "main=7\nthread=12\n",
        127,
    );
}

#[test]
fn issue_four_fixtures_print_what_they_document() {
    check_all_variants("deep", &[], "depth=10000\n", 0);
    check_all_variants("tailcall", &[], "tail=106,108,101\n", 0);
    check_all_variants("chain", &[], "chain=1203000\n", 0);
    check_all_variants("tailsym", &[], "found=1000\n", 0);
    check_all_variants("forktail", &[], "children=3 ok=3\n", 0);
    check_all_variants("symlayer", &[], "found=1000\n", 0);
    check_all_variants("retaddr", &[], "inside=3\n", 0);
    check_all_variants("sleepers", &["2", "3"], "ready\ntotal=6006\n", 0);
    check_all_variants("forkin", &[], "child=18 work=3\n", 0);
    check_all_variants(
        "thrower",
        &[],
        "outer=-1,3,5,-1,9,11\ncleanups=6\nrethrown=2\n",
        0,
    );
    check_all_variants("catcher", &[], "s=87\n", 0);
    check_all_variants("coroutine", &[], "co s=6\nt=12 yields=3\n", 0);
    check_all_variants("stalejmp", &["0"], "ready\nnapped=42 naps=1\nend\n", 0);
    check_all_variants("stalejmp", &["1"], "ready\nchild ok\nparent=105\nend\n", 0);
}

#[test]
fn recurse_computes_factorial() {
    check_all_variants("recurse", &[], "fact=120\n", 0);
    check_all_variants("recurse", &["10"], "fact=3628800\n", 0);
}

#[test]
fn peeker_peeks_without_reading() {
    check_all_variants("peeker", &[], "peeks=6\n", 0);
    check_all_variants("peeker", &["3"], "peeks=18\n", 0);
}

#[test]
fn longjmper_jumps_three_times() {
    check_all_variants("longjmper", &[], "jumps=3\nwork=15\n", 0);
}

/// What `insns` prints: one line per function, as its header says.
pub const INSNS_OUTPUT: &str = "rip=42\ncall=11\njmp=3\njcc=4\nret=5\npush=6\nendbr=7\nframe=8\n\
sub=9\nstore=10\nlea=42\nicall=12\nijmp=13\nsyscall=1\nrep=14\njnc=15\nxor=16\npushf=17\nnop=18\n";

#[test]
fn insns_first_instructions_compute_their_values() {
    check_all_variants("insns", &[], INSNS_OUTPUT, 0);
}

/// The sites of `shapes` and its control, `plain`.
const SHAPES_SITES: [&str; 9] = [
    "ret1", "three", "loop2", "call0", "call2", "jtab", "push1", "evict", "plain",
];

/// What `shapes launch 10` prints for every site (the values shapes.S's
/// header says); `one`; `attach` with nothing on its stdin (end of file:
/// it stops at once); and `far`, whose filling of the space around its
/// code leaves no gap (else it exits 3), with nothing on its stdin.
#[test]
fn shapes_and_far_print_their_values() {
    let mut args = vec!["launch", "10"];
    args.extend(SHAPES_SITES);
    let out = "ret1 calls=80 sum=554 bad=0\nthree calls=80 sum=554 bad=0\n\
               loop2 calls=80 sum=2736 bad=0\ncall0 calls=80 sum=1354 bad=0\n\
               call2 calls=80 sum=1354 bad=0\njtab calls=80 sum=2732 bad=0\n\
               push1 calls=80 sum=2736 bad=0\nevict calls=80 sum=2736 bad=0\n\
               plain calls=80 sum=1188 bad=0\n";
    check_all_variants("shapes", &args, out, 0);
    check_all_variants(
        "shapes",
        &["one", "5", "jtab"],
        "jtab calls=5 sum=147 bad=0\n",
        0,
    );
    check_all_variants(
        "shapes",
        &["attach", "ret1", "jtab"],
        "ready\ndone bad=0\n",
        0,
    );
    check_all_variants("far", &["10"], "ready\ndone\n", 0);
}

/// The size of function symbol `name` in the ELF file `path` (`.symtab`,
/// then `.dynsym`).
fn symbol_size(path: &Path, name: &str) -> u64 {
    let bytes = elf_bytes(path);
    let elf = Elf::parse(&bytes).unwrap();
    let in_symtab = elf
        .syms
        .iter()
        .find(|sym| elf.strtab.get_at(sym.st_name) == Some(name));
    let in_dynsym = || {
        elf.dynsyms
            .iter()
            .find(|sym| elf.dynstrtab.get_at(sym.st_name) == Some(name))
    };
    in_symtab
        .or_else(in_dynsym)
        .map(|sym| sym.st_size)
        .unwrap_or_else(|| panic!("no symbol {name} in {}", path.display()))
}

/// Each site of `shapes` has the bytes shapes.S's header gives it (a
/// call's displacement aside), starts on a 16-byte boundary, and is
/// followed by its padding up to the next one: int3 fill after `three`,
/// nops after the others.
#[test]
fn shapes_sites_have_their_bytes() {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    // None: a call's displacement, which the link decides.
    let b = |v: &[u8]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
    let call = |before: &[u8], after: &[u8]| {
        let mut v = b(before);
        v.push(Some(0xe8));
        v.extend([None; 4]);
        v.extend(b(after));
        v
    };
    let sites: [(&str, Vec<Option<u8>>); 8] = [
        ("ret1", b(&[0xc3])),
        ("three", b(&[0x89, 0xf8, 0xc3])),
        (
            "loop2",
            b(&[0x31, 0xc0, 0x01, 0xf8, 0xff, 0xcf, 0x75, 0xfa, 0xc3]),
        ),
        ("call0", call(&[], &[0x01, 0xf8, 0xc3])),
        ("call2", call(&[0x89, 0xfa], &[0x01, 0xd0, 0xc3])),
        (
            "jtab",
            b(&[
                0x89, 0xf8, 0x83, 0xe0, 0x03, 0x48, 0x8d, 0x15, 0x00, 0x00, 0x00, 0x00,
            ]),
        ),
        (
            "push1",
            b(&[
                0x53, 0x31, 0xdb, 0x01, 0xfb, 0xff, 0xcf, 0x75, 0xfa, 0x89, 0xd8, 0x5b, 0xc3,
            ]),
        ),
        (
            "evict",
            b(&[
                0x53, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfe, 0xff, 0xcf, 0x75, 0xf5, 0x89, 0xf0,
                0x5b, 0xc3,
            ]),
        ),
    ];
    for variant in Variant::ALL {
        let path = fixture("shapes", variant);
        let bytes = elf_bytes(&path);
        for (name, want) in &sites {
            let what = format!("shapes ({variant}) {name}");
            let addr = symbol_value(&path, name);
            let size = symbol_size(&path, name);
            assert_eq!(addr % 16, 0, "{what}: at {addr:#x}");
            let code = code_at_symbol(&path, &bytes, name, 16);
            let mut got: Vec<Option<u8>> = b(&code[..want.len()]);
            for (g, w) in got.iter_mut().zip(want) {
                if w.is_none() {
                    *g = None;
                }
            }
            // jtab: its whole size, the table's displacement aside.
            if *name == "jtab" {
                assert_eq!(size, 37, "{what}");
                got[8..12].fill(Some(0));
            } else {
                assert_eq!(size as usize, want.len(), "{what}");
            }
            assert_eq!(&got, want, "{what}: {code:02x?}");
            let code = code_at_symbol(&path, &bytes, name, 48);
            let padding = &code[size as usize..16 * (size as usize).div_ceil(16)];
            if *name == "three" {
                assert!(padding.iter().all(|&x| x == 0xcc), "{what}: {padding:02x?}");
            } else {
                let mut decoder = Decoder::with_ip(64, padding, 0, DecoderOptions::NONE);
                while decoder.can_decode() {
                    let insn = decoder.decode();
                    assert_eq!(insn.mnemonic(), Mnemonic::Nop, "{what}: {padding:02x?}");
                }
            }
        }
        // evict's pun would jump into the program's code, where nothing
        // can be mapped.
        let target = symbol_value(&path, "evict") + 0xc0;
        let elf = Elf::parse(&bytes).unwrap();
        assert!(
            elf.program_headers
                .iter()
                .any(|ph| ph.p_type == program_header::PT_LOAD
                    && ph.is_executable()
                    && (ph.p_vaddr..ph.p_vaddr + ph.p_memsz).contains(&target)),
            "shapes ({variant}): evict+0xc0 is not in its code"
        );
    }
}

/// Each filter of `seccomp` holds: the call it forbids, made last, kills
/// the program (SIGSYS, or SIGKILL in strict mode) or fails with EPERM.
#[test]
fn seccomp_filters_hold_to_the_end() {
    let out = "ready\nsum=100\n";
    check_all_variants("seccomp", &["none", "10"], out, 3);
    check_all_variants("seccomp", &["memfd", "10"], out, 128 + libc::SIGSYS);
    let wx = "ready\nsum=100\nexec mmap: EPERM\n";
    check_all_variants("seccomp", &["wx", "10"], wx, 3);
    check_all_variants("seccomp", &["allow", "10"], out, 128 + libc::SIGSYS);
    check_all_variants("seccomp", &["strict", "10"], out, 128 + libc::SIGKILL);
}

/// stdfds writes what it saw of fds 0-2 and its sum to its file, and
/// nothing to stdout or stderr; a closed fd 2 is seen as closed.
#[test]
fn stdfds_writes_its_report_to_its_file() {
    for variant in Variant::ALL {
        let path = crate::events::temp_path(&format!("stdfds_selftest_{variant}.txt"));
        let run = run_untraced(
            &fixture("stdfds", variant),
            &[path.to_str().unwrap(), "4", "6"],
        );
        assert_eq!(
            (run.stdout.as_str(), run.stderr.as_str(), run.code()),
            ("", "", 6)
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "fd0=open fd1=open fd2=open write2=ok\nsum=16\n",
            "stdfds ({variant})"
        );
    }
    let path = crate::events::temp_path("stdfds_selftest_closed.txt");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$@\" 2>&-", "sh"])
        .arg(fixture("stdfds", Variant::Pie))
        .arg(&path);
    assert_eq!(run_command(cmd, TIMEOUT).code(), 0);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "fd0=open fd1=open fd2=closed write2=EBADF\nsum=100\n"
    );
}

#[test]
fn every_listed_fixture_builds_in_every_variant_it_supports() {
    for name in PROGRAMS {
        for variant in Variant::ALL {
            if supports(name, variant) {
                assert!(fixture(name, variant).is_file(), "{name} ({variant})");
            }
        }
    }
    for name in LIBRARIES {
        for variant in Variant::ALL {
            if variant.allows_library() {
                assert!(library(name, variant).is_file(), "{name} ({variant})");
            }
        }
    }
}

#[test]
fn dlopener_loads_libplug() {
    for variant in Variant::ALL {
        if !supports("dlopener", variant) {
            continue;
        }
        let lib_variant = if variant.allows_library() {
            variant
        } else {
            Variant::Pie
        };
        let lib = library("libplug", lib_variant);
        let run = run_untraced(&fixture("dlopener", variant), &[lib.to_str().unwrap()]);
        assert_eq!(
            (run.stdout.as_str(), run.code()),
            ("plug=306\n", 0),
            "dlopener ({variant}) with {}: {run:?}",
            lib.display()
        );
    }
}

#[test]
fn interposer_forwards_to_libc_through_rtld_next() {
    check_all_variants("interposer", &[], "interposed=3\n", 0);
}

/// libloader finds libsecond next to itself, through its RUNPATH alone:
/// with libsecond elsewhere, the same load fails.
#[test]
fn pluginhost_loads_through_the_loaders_origin() {
    for variant in Variant::ALL {
        if !supports("pluginhost", variant) {
            continue;
        }
        let lib_variant = if variant.allows_library() {
            variant
        } else {
            Variant::Pie
        };
        library("libsecond", lib_variant);
        let loader = library("libloader", lib_variant);
        let run = run_untraced(&fixture("pluginhost", variant), &[loader.to_str().unwrap()]);
        assert_eq!(
            (run.stdout.as_str(), run.code()),
            ("second=42 again=42\n", 0),
            "pluginhost ({variant}) with {}: {run:?}",
            loader.display()
        );
    }
    // A copy of the loader alone in a directory finds no libsecond.so.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lonely-loader");
    fs::create_dir_all(&dir).unwrap();
    let lonely = dir.join("libloader.so");
    fs::copy(library("libloader", Variant::Pie), &lonely).unwrap();
    let run = run_untraced(
        &fixture("pluginhost", Variant::Pie),
        &[lonely.to_str().unwrap()],
    );
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr.starts_with("load_plugin: "), "{run:?}");
}

/// Checks the output of a spin or stopper run that ended by SIGTERM.
fn check_terminated(run: &Run, pid: i32, middle: &str) {
    let expected_start = format!("pid={pid}\nready\n{middle}calls=");
    assert!(run.stdout.starts_with(&expected_start), "{run:?}");
    let rest = &run.stdout[expected_start.len()..];
    let (calls, tail) = rest.split_once('\n').expect("calls line");
    assert!(calls.parse::<u64>().is_ok(), "{run:?}");
    assert_eq!(tail, "done\n", "{run:?}");
    assert_eq!(run.code(), 0, "{run:?}");
}

#[test]
fn spin_runs_until_sigterm() {
    for variant in Variant::ALL {
        let spin = Spawned::start(&fixture("spin", variant), &[]);
        let pid = spin.pid();
        assert_eq!(threads_of(pid), vec![pid]);
        check_terminated(&spin.terminate(), pid, "");
    }
}

#[test]
fn spin_threads_runs_n_threads() {
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &["threads", "3"]);
    let pid = spin.pid();
    assert_eq!(threads_of(pid).len(), 4, "main thread and 3 workers");
    check_terminated(&spin.terminate(), pid, "");
}

#[test]
fn stopper_survives_sigstop_and_counts_sigcont() {
    for variant in Variant::ALL {
        let stopper = Spawned::start(&fixture("stopper", variant), &[]);
        let pid = Pid::from_raw(stopper.pid());
        stopper.signal(Signal::SIGSTOP);
        // It is our child: waitpid reports the stop itself, no polling.
        assert_eq!(
            waitpid(pid, Some(WaitPidFlag::WUNTRACED)),
            Ok(WaitStatus::Stopped(pid, Signal::SIGSTOP))
        );
        assert_eq!(process_state(pid.as_raw()), Some('T'));
        stopper.signal(Signal::SIGCONT);
        assert_eq!(
            waitpid(pid, Some(WaitPidFlag::WCONTINUED)),
            Ok(WaitStatus::Continued(pid))
        );
        check_terminated(&stopper.terminate(), pid.as_raw(), "conts=1\n");
    }
}

// ---------------------------------------------------------------------------
// The variants are what they say
// ---------------------------------------------------------------------------

fn elf_bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn section_names<'a>(elf: &'a Elf) -> Vec<&'a str> {
    elf.section_headers
        .iter()
        .filter_map(|sh| elf.shdr_strtab.get_at(sh.sh_name))
        .collect()
}

fn has_interp(elf: &Elf) -> bool {
    elf.program_headers
        .iter()
        .any(|ph| ph.p_type == program_header::PT_INTERP)
}

/// The first bytes of function `name` in the file.
fn code_at_symbol(path: &Path, bytes: &[u8], name: &str, len: usize) -> Vec<u8> {
    let elf = Elf::parse(bytes).unwrap();
    let vaddr = symbol_value(path, name);
    let load = elf
        .program_headers
        .iter()
        .find(|ph| {
            ph.p_type == program_header::PT_LOAD
                && (ph.p_vaddr..ph.p_vaddr + ph.p_filesz).contains(&vaddr)
        })
        .expect("symbol in a PT_LOAD segment");
    let offset = (vaddr - load.p_vaddr + load.p_offset) as usize;
    bytes[offset..offset + len].to_vec()
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

#[test]
fn variants_have_the_promised_elf_shape() {
    for variant in Variant::ALL {
        let path = fixture("count", variant);
        let bytes = elf_bytes(&path);
        let elf = Elf::parse(&bytes).unwrap();
        let sections = section_names(&elf);
        let has = |name: &str| sections.contains(&name);
        let ctx = format!("count ({variant}) sections {sections:?}");
        match variant {
            Variant::Pie
            | Variant::O2
            | Variant::NoDebug
            | Variant::Stripped
            | Variant::Cet
            | Variant::Debuglink
            | Variant::BindNow
            | Variant::NoPlt => {
                assert_eq!(elf.header.e_type, header::ET_DYN, "{ctx}");
                assert!(has_interp(&elf), "{ctx}");
            }
            Variant::StaticPie => {
                assert_eq!(elf.header.e_type, header::ET_DYN, "{ctx}");
                assert!(!has_interp(&elf), "{ctx}");
            }
            Variant::NoPie => {
                assert_eq!(elf.header.e_type, header::ET_EXEC, "{ctx}");
                assert!(has_interp(&elf), "{ctx}");
            }
            Variant::Static => {
                assert_eq!(elf.header.e_type, header::ET_EXEC, "{ctx}");
                assert!(!has_interp(&elf), "{ctx}");
            }
        }
        match variant {
            Variant::Pie
            | Variant::NoPie
            | Variant::Static
            | Variant::O2
            | Variant::Cet
            | Variant::StaticPie
            | Variant::BindNow
            | Variant::NoPlt => {
                assert!(has(".symtab") && has(".debug_info"), "{ctx}");
                assert!(!has(".gnu_debuglink"), "{ctx}");
            }
            Variant::Debuglink => {
                assert!(has(".symtab") && has(".gnu_debuglink"), "{ctx}");
                assert!(!has(".debug_info") && !has(".debug_line"), "{ctx}");
                let debug = elf_bytes(&debug_file_of(&path));
                let debug = Elf::parse(&debug).unwrap();
                let debug_sections = section_names(&debug);
                assert!(
                    debug_sections.contains(&".debug_info")
                        && debug_sections.contains(&".debug_line"),
                    "{ctx}; debug file {debug_sections:?}"
                );
            }
            Variant::NoDebug => assert!(has(".symtab") && !has(".debug_info"), "{ctx}"),
            Variant::Stripped => {
                assert!(!has(".symtab") && !has(".debug_info"), "{ctx}");
                assert!(elf.syms.is_empty(), "{ctx}");
                for name in ["work", "twice"] {
                    assert!(
                        elf.dynsyms
                            .iter()
                            .any(|sym| elf.dynstrtab.get_at(sym.st_name) == Some(name)),
                        "{name} not in .dynsym: {ctx}"
                    );
                }
            }
        }
        let starts_with_endbr = code_at_symbol(&path, &bytes, "work", 4) == ENDBR64;
        assert_eq!(starts_with_endbr, variant == Variant::Cet, "{ctx}");
        // Bind-now: DT_FLAGS has DF_BIND_NOW or DT_FLAGS_1 has DF_1_NOW.
        let dynamic = elf.dynamic.as_ref().map(|d| &d.dyns[..]).unwrap_or(&[]);
        let bind_now = dynamic.iter().any(|d| {
            (d.d_tag == goblin::elf::dynamic::DT_FLAGS
                && d.d_val & goblin::elf::dynamic::DF_BIND_NOW != 0)
                || (d.d_tag == goblin::elf::dynamic::DT_FLAGS_1
                    && d.d_val & goblin::elf::dynamic::DF_1_NOW != 0)
        });
        if variant == Variant::BindNow {
            assert!(bind_now, "{ctx}: not bind-now");
        }
        // -fno-plt: main calls printf through the GOT, there is no .plt stub
        // for it (`.plt` may still exist for other reasons, e.g. IRELATIVE).
        let plt_calls = elf
            .pltrelocs
            .iter()
            .filter_map(|r| elf.dynsyms.get(r.r_sym))
            .filter_map(|sym| elf.dynstrtab.get_at(sym.st_name))
            .any(|name| name == "printf");
        if variant == Variant::NoPlt {
            assert!(!plt_calls, "{ctx}: printf has a PLT slot");
        } else if matches!(variant, Variant::Pie | Variant::BindNow) {
            assert!(plt_calls, "{ctx}: printf has no PLT slot");
        }
    }
}

#[test]
fn stripped_tools_agree_no_symtab_but_dynsym() {
    // Cross-check with binutils, independently of goblin.
    let path = fixture("count", Variant::Stripped);
    let nm = Command::new("nm").arg(&path).output().expect("run nm");
    let nm_err = String::from_utf8_lossy(&nm.stderr);
    assert!(nm_err.contains("no symbols"), "nm: {nm_err}");
    let nm_d = Command::new("nm")
        .arg("-D")
        .arg(&path)
        .output()
        .expect("run nm -D");
    let dynamic = String::from_utf8_lossy(&nm_d.stdout);
    assert!(
        dynamic.lines().any(|line| line.ends_with(" T work")),
        "nm -D: {dynamic}"
    );
}

#[test]
fn stacker_prints_its_results_without_frame_pointers() {
    check_all_variants("stacker", &[], "sum=9\nfp=12\nsorted=1,2\n", 0);
    check_all_variants("stacker", &["4"], "sum=36\nfp=12\nsorted=1,2\n", 0);
    for variant in Variant::ALL {
        let path = fixture("stacker", variant);
        let bytes = elf_bytes(&path);
        for name in ["a", "b", "c", "cmp"] {
            let code = code_at_symbol(&path, &bytes, name, 5);
            let first = if code.starts_with(&ENDBR64) {
                code[4]
            } else {
                code[0]
            };
            // 0x55 is `push %rbp`, the start of a frame-pointer prologue.
            assert_ne!(
                first, 0x55,
                "stacker {name} ({variant}) sets up a frame pointer"
            );
        }
        // through_fp is the one with a frame pointer and no CFI.
        let code = code_at_symbol(&path, &bytes, "through_fp", 4);
        assert_eq!(
            code,
            [0x55, 0x48, 0x89, 0xe5],
            "stacker through_fp ({variant})"
        );
    }
}

#[test]
fn o2_keeps_work_as_a_real_function() {
    let path = fixture("count", Variant::O2);
    let bytes = elf_bytes(&path);
    let elf = Elf::parse(&bytes).unwrap();
    let work = elf
        .syms
        .iter()
        .find(|sym| elf.strtab.get_at(sym.st_name) == Some("work"))
        .expect("work survives -O2 under its own name");
    assert!(
        work.st_size >= 4,
        "work should keep several instructions, is {} bytes",
        work.st_size
    );
}

#[test]
fn libplug_exports_plugin_fn() {
    for variant in Variant::ALL {
        if !variant.allows_library() {
            continue;
        }
        let path = library("libplug", variant);
        let bytes = elf_bytes(&path);
        let elf = Elf::parse(&bytes).unwrap();
        assert_eq!(elf.header.e_type, header::ET_DYN);
        assert!(
            elf.dynsyms
                .iter()
                .any(|sym| elf.dynstrtab.get_at(sym.st_name) == Some("plugin_fn")),
            "libplug ({variant})"
        );
    }
}

#[test]
fn symbol_value_of_nopie_is_a_fixed_address() {
    let value = symbol_value(&fixture("count", Variant::NoPie), "work");
    assert!(value >= 0x400000, "{value:#x}");
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

#[test]
fn fixture_is_built_once_and_reused() {
    let first = fixture("count", Variant::Pie);
    let modified = fs::metadata(&first).unwrap().modified().unwrap();
    let second = fixture("count", Variant::Pie);
    assert_eq!(first, second);
    assert_eq!(fs::metadata(&second).unwrap().modified().unwrap(), modified);
    assert!(first.starts_with(build_dir().join("pie")));
}

#[test]
fn freshness_follows_inputs_and_recipe() {
    // Per process: concurrent test runs must not touch each other's files.
    let dir = build_dir().join(format!("selftest-freshness-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.c");
    let out = dir.join("out");
    let stamp = dir.join("out.recipe");
    fs::write(&input, "int x;\n").unwrap();
    fs::write(&out, "binary").unwrap();
    fs::write(&stamp, "gcc a\n").unwrap();
    // The output was written after the input.
    assert!(is_fresh(&out, &stamp, "gcc a\n", &[&input]));
    assert!(
        !is_fresh(&out, &stamp, "gcc b\n", &[&input]),
        "recipe changed"
    );
    let later = fs::metadata(&out).unwrap().modified().unwrap() + Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(&input)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(!is_fresh(&out, &stamp, "gcc a\n", &[&input]), "input newer");
    assert!(!is_fresh(
        &dir.join("missing"),
        &stamp,
        "gcc a\n",
        &[&input]
    ));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[should_panic(expected = "did not finish within")]
fn run_command_kills_what_overruns_its_timeout() {
    let cmd = Command::new(fixture("spin", Variant::Pie));
    run_command(cmd, Duration::from_millis(300));
}

#[test]
fn exit_code_maps_signals_like_a_shell() {
    let run = run_untraced(Path::new("/bin/sh"), &["-c", "kill -TERM $$"]);
    assert_eq!(exit_code(run.status), 128 + 15);
    let run = run_untraced(Path::new("/bin/sh"), &["-c", "exit 42"]);
    assert_eq!(exit_code(run.status), 42);
}

#[test]
fn spawned_is_killed_and_reaped_on_drop() {
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &[]);
    let pid = spin.pid();
    assert!(process_state(pid).is_some());
    drop(spin);
    assert_eq!(process_state(pid), None, "pid {pid} still exists");
}

#[test]
fn spawned_reports_missing_line_with_output() {
    let result = std::panic::catch_unwind(|| {
        let mut cmd = Command::new(fixture("count", Variant::Pie));
        cmd.arg("2");
        let mut spawned = Spawned::command(cmd);
        spawned.wait_stdout_line(|line| line == "ready");
    });
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("Eof"), "{message}");
    assert!(message.contains("sum=4\ntwice=41\n"), "{message}");
}

#[test]
fn code_matches_files_on_an_untraced_process() {
    for variant in [Variant::Pie, Variant::Static, Variant::Stripped] {
        let spin = Spawned::start(&fixture("spin", variant), &[]);
        assert_eq!(code_matches_files(spin.pid()), Ok(()), "{variant}");
    }
}

#[test]
fn code_matches_files_catches_a_poked_byte() {
    let prog = fixture("spin", Variant::Pie);
    let spin = Spawned::start(&prog, &[]);
    let pid = spin.pid();
    let prog_path = fs::canonicalize(&prog).unwrap();
    let text = maps(pid)
        .unwrap()
        .into_iter()
        .find(|m| m.perms == "r-xp" && Path::new(&m.path) == prog_path)
        .expect("spin's own text mapping");
    // The last byte of the file inside the text mapping is padding after
    // .fini: never executed, so changing it cannot crash spin.
    let file_len = fs::metadata(&prog_path).unwrap().len();
    let last = text.start + (text.end - text.start).min(file_len - text.offset) - 1;
    let original = read_memory(pid, last, 1).unwrap()[0];

    poke(pid, last, original ^ 0xff);
    let err = code_matches_files(pid).expect_err("a changed byte must be found");
    assert!(
        err.contains(prog_path.to_str().unwrap()) && err.contains(&format!("{last:#x}")),
        "{err}"
    );

    poke(pid, last, original);
    assert_eq!(code_matches_files(pid), Ok(()));
    assert_eq!(spin.terminate().code(), 0);
}

/// Writes one byte into `pid`'s text. Plain `/proc/PID/mem` writes work on
/// kernels that force them (the default, `CONFIG_PROC_MEM_ALWAYS_FORCE`);
/// where only a tracer may force them (`PROC_MEM_FORCE_PTRACE`), attach
/// with ptrace around the write.
fn poke(pid: i32, addr: u64, byte: u8) {
    if write_memory(pid, addr, &[byte]).is_ok() {
        return;
    }
    let target = Pid::from_raw(pid);
    nix::sys::ptrace::attach(target).expect("ptrace attach");
    assert!(matches!(
        waitpid(target, None),
        Ok(WaitStatus::Stopped(_, Signal::SIGSTOP))
    ));
    let written = write_memory(pid, addr, &[byte]);
    nix::sys::ptrace::detach(target, None).expect("ptrace detach");
    written.expect("write /proc/PID/mem while attached");
}

#[test]
fn maps_lines_parse() {
    let spin = Spawned::start(&fixture("spin", Variant::Pie), &[]);
    let maps = maps(spin.pid()).unwrap();
    assert!(maps.iter().any(|m| m.path == "[stack]"));
    assert!(maps.iter().all(|m| m.start < m.end && m.perms.len() == 4));
}

#[test]
fn normalize_replaces_what_varies() {
    assert_eq!(
        normalize("[pid 4242] work(41) = 83 <0.000002>\n"),
        "[pid N] work(41) = 83 <T>\n"
    );
    assert_eq!(
        normalize("rtrace: attached to pid 77 (4 threads), 2 probes armed"),
        "rtrace: attached to pid N (4 threads), 2 probes armed"
    );
    assert_eq!(
        normalize("buf=0x7ffd1234abcd at 0x401136, flags=0x80000 small=0x10 work+0x8"),
        "buf=0xADDR at 0xADDR, flags=0x80000 small=0x10 work+0x8"
    );
    assert_eq!(
        normalize(
            r#"{"event":"return","time_ns":123,"pid":9,"tid":10,"retval":-2,"duration_ns": 55}"#
        ),
        r#"{"event":"return","time_ns":T,"pid":N,"tid":N,"retval":-2,"duration_ns": T}"#
    );
    assert_eq!(
        normalize(r#"{"event":"fork","child":31337,"kind":"fork","address":"0x55d0c0de1139"}"#),
        r#"{"event":"fork","child":N,"kind":"fork","address":"0xADDR"}"#
    );
    // Left alone: numbers that are part of the result, and non-ASCII text.
    assert_eq!(
        normalize("rapid 5 <5> <a.b> 0x12345g é"),
        "rapid 5 <5> <a.b> 0x12345g é"
    );
    assert_eq!(normalize("+++ exited with 0 +++"), "+++ exited with 0 +++");
}

/// An in-process tracing session that never ends (spin runs until SIGTERM,
/// and nobody sends it) fails its test when the bound passes, saying so,
/// and its tracee is killed: the tracer, left running on its own thread,
/// then sees it die by SIGKILL.
#[test]
fn a_tracing_session_past_its_bound_fails_and_kills_its_tracee() {
    let prog = fixture("spin", Variant::Pie);
    let (tx, outcome) = std::sync::mpsc::channel();
    let caught = std::panic::catch_unwind(move || {
        bounded_for(Duration::from_secs(1), move |session| {
            let mut tracer = session
                .launch(&Command::new(&prog), rtrace::Options::default())
                .expect("launch");
            let _ = tx.send(tracer.run().expect("run"));
        })
    });
    let message = match caught {
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "a panic without a message".into()),
        Ok(()) => panic!("a session that never ends passed its bound"),
    };
    assert!(
        message.contains("in-process tracing did not finish within 1s; killed its tracees"),
        "{message}"
    );
    let outcome = outcome
        .recv_timeout(TIMEOUT)
        .expect("the tracer ends once its tracee is killed");
    assert_eq!(
        outcome,
        rtrace::Outcome::Killed {
            signal: Signal::SIGKILL as i32,
            core_dumped: false
        }
    );
}
