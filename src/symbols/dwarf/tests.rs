use std::sync::Arc;

use super::sysv::{self, Loc};
use super::*;
use crate::symbols::elf::ElfFile;
use crate::symbols::test_support::compile;

/// Functions with every shape of parameter the readers and the ABI placement
/// must handle. Compiled with gcc in each test.
const SOURCE: &str = r#"
#include <stdbool.h>
#include <stdint.h>
typedef const char *name_t;
enum e { A = 1, B = -2 };
struct pt { int x, y; };
struct dbl { double d; long l; };
struct big { long a, b, c; };
struct two { float f, g; };
union u { int i; float f; };
__attribute__((noipa)) int ints(int8_t a, uint16_t b, int32_t c, uint64_t d, long long e) { return 0; }
__attribute__((noipa)) bool strs(const char *a, char *b, unsigned char *c, name_t d, void *e, int *f) { return 0; }
__attribute__((noipa)) enum e en(enum e x, bool y, char z) { return x; }
__attribute__((noipa)) void aggs(struct pt a, struct dbl b, struct big c, struct two d, union u e, int f) {}
__attribute__((noipa)) struct big ret_big(int a) { struct big b = {0}; return b; }
__attribute__((noipa)) long many(int a, int b, int c, int d, int e, struct pt f, int g, __int128 h, long i) { return 0; }
__attribute__((noipa)) int var(const char *fmt, ...) { return 0; }
__attribute__((noipa)) double fl(float a, double b, long double c, int d) { return 0; }
struct node { struct node *a, *b, *c, *d, *e, *f, *g, *h; struct node **pp; int v; };
__attribute__((noipa)) int walk(struct node n, struct node *p, const struct node *q) { return 0; }
int main(void) { return 0; }
"#;

fn build(flags: &[&str]) -> Arc<ElfFile> {
    let exe = compile("dwarfsig", "sig.c", SOURCE, flags);
    Arc::new(ElfFile::open(&exe).expect("parse"))
}

fn sig(elf: &Arc<ElfFile>, cache: &mut Signatures, name: &str) -> Option<Arc<Signature>> {
    let addr = elf.function_named(name).expect(name).addr;
    cache.get(elf, addr)
}

fn param(name: &str, ty: Type) -> Param {
    Param {
        name: Some(name.into()),
        ty,
    }
}

fn int(size: u64, signed: bool) -> Type {
    Type::Int { size, signed }
}

#[test]
fn integer_and_string_parameters() {
    for dwarf in ["-gdwarf-5", "-gdwarf-4"] {
        let elf = build(&["-O0", dwarf]);
        let mut cache = Signatures::new();
        let s = sig(&elf, &mut cache, "ints").expect("ints has DWARF");
        assert_eq!(
            s.params,
            vec![
                param("a", int(1, true)),
                param("b", int(2, false)),
                param("c", int(4, true)),
                param("d", int(8, false)),
                param("e", int(8, true)),
            ],
            "{dwarf}"
        );
        assert_eq!(s.ret, int(4, true));
        assert!(!s.variadic);
        let s = sig(&elf, &mut cache, "strs").unwrap();
        let kinds: Vec<&Type> = s.params.iter().map(|p| &p.ty).collect();
        let string = Type::Pointer { string: true };
        let other = Type::Pointer { string: false };
        assert_eq!(
            kinds,
            vec![&string, &string, &string, &string, &other, &other]
        );
        assert_eq!(s.ret, Type::Bool { size: 1 });
    }
}

#[test]
fn enums_bool_char_variadic() {
    let elf = build(&["-O0", "-g"]);
    let mut cache = Signatures::new();
    let s = sig(&elf, &mut cache, "en").unwrap();
    let e = Type::Enum {
        size: 4,
        signed: true,
        values: vec![(1, "A".into()), (0xffff_fffe, "B".into())],
    };
    assert_eq!(
        s.params,
        vec![
            param("x", e.clone()),
            param("y", Type::Bool { size: 1 }),
            param("z", Type::Char)
        ]
    );
    assert_eq!(s.ret, e);
    let s = sig(&elf, &mut cache, "var").unwrap();
    assert_eq!(s.params, vec![param("fmt", Type::Pointer { string: true })]);
    assert!(s.variadic);
    let s = sig(&elf, &mut cache, "fl").unwrap();
    assert!(matches!(s.params[2].ty, Type::Float { x87: true, .. }));
}

#[test]
fn aggregates_are_classified_like_the_abi() {
    let elf = build(&["-O0", "-g"]);
    let mut cache = Signatures::new();
    let s = sig(&elf, &mut cache, "aggs").unwrap();
    let passing: Vec<Passing> = s.params.iter().map(|p| sysv::passing(&p.ty)).collect();
    use Class::*;
    assert_eq!(
        passing,
        vec![
            Passing::Regs(vec![Integer]),
            Passing::Regs(vec![Sse, Integer]),
            Passing::Memory { size: 24, align: 8 },
            Passing::Regs(vec![Sse]),
            Passing::Regs(vec![Integer]),
            Passing::Regs(vec![Integer]),
        ]
    );
    let Type::Aggregate { keyword, name, .. } = &s.params[0].ty else {
        panic!("{:?}", s.params[0]);
    };
    assert_eq!((*keyword, name.as_deref()), ("struct", Some("pt")));
    assert!(matches!(
        &s.params[4].ty,
        Type::Aggregate {
            keyword: "union",
            ..
        }
    ));
    // a: rdi; b: xmm0 + rsi; c: stack; d: xmm1; e: rdx; f: rcx.
    assert_eq!(
        sysv::locate(&s),
        vec![
            Loc::Gp(vec![0]),
            Loc::Split(vec![None, Some(1)]),
            Loc::Stack {
                offset: 0,
                size: 24
            },
            Loc::Split(vec![None]),
            Loc::Gp(vec![2]),
            Loc::Gp(vec![3]),
        ]
    );
}

#[test]
fn stack_arguments_and_hidden_return_pointer() {
    let elf = build(&["-O0", "-g"]);
    let mut cache = Signatures::new();
    // A struct returned in memory takes rdi for its address.
    let s = sig(&elf, &mut cache, "ret_big").unwrap();
    assert!(sysv::returns_in_memory(&s.ret));
    assert_eq!(sysv::locate(&s), vec![Loc::Gp(vec![1])]);
    // a..e: five registers; f (8 bytes, INTEGER): the sixth; g: stack 0;
    // h (__int128, needs two registers, none left): stack, 16-aligned at 16;
    // i: stack 32.
    let s = sig(&elf, &mut cache, "many").unwrap();
    assert_eq!(
        sysv::locate(&s),
        vec![
            Loc::Gp(vec![0]),
            Loc::Gp(vec![1]),
            Loc::Gp(vec![2]),
            Loc::Gp(vec![3]),
            Loc::Gp(vec![4]),
            Loc::Gp(vec![5]),
            Loc::Stack { offset: 0, size: 4 },
            Loc::Stack {
                offset: 16,
                size: 16
            },
            Loc::Stack {
                offset: 32,
                size: 8
            },
        ]
    );
    // Floats take vector registers, xmm0 and xmm1; the long double goes on
    // the stack; d is still the first integer register.
    let s = sig(&elf, &mut cache, "fl").unwrap();
    assert_eq!(
        sysv::locate(&s),
        vec![
            Loc::Vector(0),
            Loc::Vector(1),
            Loc::Stack {
                offset: 0,
                size: 16
            },
            Loc::Gp(vec![0]),
        ]
    );
}

#[test]
fn self_referential_structs_are_not_expanded_through_pointers() {
    let elf = build(&["-O0", "-g"]);
    let s = sig(&elf, &mut Signatures::new(), "walk").unwrap();
    assert!(matches!(
        &s.params[0].ty,
        Type::Aggregate {
            passing: Passing::Memory { size: 80, align: 8 },
            ..
        }
    ));
    assert_eq!(s.params[1].ty, Type::Pointer { string: false });
    assert_eq!(s.params[2].ty, Type::Pointer { string: false });
    assert_eq!(
        sysv::locate(&s),
        vec![
            Loc::Stack {
                offset: 0,
                size: 80
            },
            Loc::Gp(vec![0]),
            Loc::Gp(vec![1]),
        ]
    );
}

/// C++ classes: plain ones are passed by value, others cannot be placed
/// (GCC does not say how they are passed).
const CXX: &str = r#"
struct P { int x, y; };
struct N { P p; long l; };
struct Q { int x; ~Q() {} };
struct R { int x; R(int v) : x(v) {} R(const R &o) : x(o.x) {} };
struct S { R r; };
__attribute__((noipa)) int plain(P p, N n, int z) { return p.x + (int)n.l + z; }
__attribute__((noipa)) int dtor(int a, Q q, int z) { return a + q.x + z; }
__attribute__((noipa)) int copy(R r, int z) { return r.x + z; }
__attribute__((noipa)) int nested(S s, int z) { return s.r.x + z; }
int main() { Q q{3}; return plain(P{1, 2}, N{P{1, 2}, 3}, 4) + dtor(0, q, 4) + copy(R{3}, 4) + nested(S{R{1}}, 2); }
"#;

#[test]
fn cplusplus_plain_classes_by_value_others_unknown() {
    let exe = compile("cxxsig", "sig.cpp", CXX, &["-O0", "-g"]);
    let elf = Arc::new(ElfFile::open(&exe).unwrap());
    let mut cache = Signatures::new();
    let s = sig(&elf, &mut cache, "_Z5plain1P1Ni").unwrap();
    assert_eq!(
        sysv::locate(&s),
        vec![Loc::Gp(vec![0]), Loc::Gp(vec![1, 2]), Loc::Gp(vec![3])]
    );
    for (name, known) in [("_Z4dtori1Qi", 1), ("_Z4copy1Ri", 0), ("_Z6nested1Si", 0)] {
        let s = sig(&elf, &mut cache, name).unwrap();
        let locs = sysv::locate(&s);
        assert!(
            locs[..known].iter().all(|l| matches!(l, Loc::Gp(_))),
            "{name}: {locs:?}"
        );
        assert!(
            locs[known..].iter().all(|l| *l == Loc::Unavailable),
            "{name}: {locs:?}"
        );
    }
}

#[test]
fn an_unknown_type_makes_later_arguments_unavailable() {
    let s = Signature {
        params: vec![
            param("a", int(4, true)),
            param("b", Type::Unknown),
            param("c", int(4, true)),
        ],
        variadic: false,
        ret: Type::Void,
        described: None,
        located: Default::default(),
    };
    assert_eq!(
        sysv::locate(&s),
        vec![Loc::Gp(vec![0]), Loc::Unavailable, Loc::Unavailable]
    );
}

#[test]
fn optimized_code_and_missing_aranges() {
    let elf = build(&["-O2", "-g"]);
    let mut cache = Signatures::new();
    let s = sig(&elf, &mut cache, "ints").expect("O2 keeps the signature");
    assert_eq!(s.params.len(), 5);
    // Without .debug_aranges the units' own ranges are scanned.
    let exe = compile("noaranges", "sig.c", SOURCE, &["-O0", "-g"]);
    let stripped = exe.with_file_name("noaranges");
    let ok = std::process::Command::new("objcopy")
        .args(["--remove-section", ".debug_aranges"])
        .arg(&exe)
        .arg(&stripped)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let elf = Arc::new(ElfFile::open(&stripped).unwrap());
        assert!(elf.debug_section(".debug_aranges").unwrap().is_empty());
        let s = sig(&elf, &mut Signatures::new(), "ints").expect("found by unit ranges");
        assert_eq!(s.params.len(), 5);
    }
}

#[test]
fn no_debug_info_is_no_signature_and_is_cached() {
    let elf = build(&["-O0"]);
    let mut cache = Signatures::new();
    assert!(sig(&elf, &mut cache, "ints").is_none());
    assert!(sig(&elf, &mut cache, "ints").is_none());
    // main has DWARF in a -g build, but not at an address no function starts at.
    let elf = build(&["-O0", "-g"]);
    let main = elf.function_named("main").unwrap().addr;
    assert!(cache.get(&elf, main.offset(1)).is_none());
    let a = cache
        .get(&elf, elf.function_named("ints").unwrap().addr)
        .unwrap();
    let b = cache
        .get(&elf, elf.function_named("ints").unwrap().addr)
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b), "the second lookup is the cached one");
    // The same path parsed again (a new process, a rebuilt file): asked afresh.
    let again = Arc::new(ElfFile::open(elf.path()).unwrap());
    let c = cache
        .get(&again, again.function_named("ints").unwrap().addr)
        .unwrap();
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(a, c);
}

#[test]
fn corrupt_dwarf_never_panics() {
    let exe = compile("baddwarfsig", "sig.c", SOURCE, &["-O0", "-g"]);
    let full = std::fs::read(&exe).unwrap();
    let elf = goblin::elf::Elf::parse(&full).unwrap();
    let names = ["ints", "strs", "en", "aggs", "many", "fl"];
    let good = ElfFile::parse(&exe, full.clone()).unwrap();
    let addrs: Vec<_> = names
        .iter()
        .map(|n| good.function_named(n).unwrap().addr)
        .collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for sh in &elf.section_headers {
        let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("");
        if !matches!(
            name,
            ".debug_info" | ".debug_abbrev" | ".debug_aranges" | ".debug_str"
        ) {
            continue;
        }
        let (start, len) = (sh.sh_offset as usize, sh.sh_size as usize);
        for i in 0..len.min(300) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes = full.clone();
            bytes[start + (seed as usize) % len] ^= (seed >> 32) as u8 | 1;
            if i % 2 == 0 {
                bytes[start + i] ^= 0xff;
            }
            let file = Arc::new(ElfFile::parse(&exe, bytes).unwrap());
            let mut cache = Signatures::new();
            for &a in &addrs {
                let _ = cache.get(&file, a);
            }
        }
    }
}

/// Aggregates aligned beyond 8 bytes on the stack: by an `__int128` member,
/// a member's `_Alignas`, the type's own `aligned` attribute; and one aligned
/// past 16, whose stack place the ABI leaves to the compiler's target.
const ALIGNED: &str = r#"
struct w { __int128 v; };
struct al { _Alignas(16) long a; long b; };
struct __attribute__((aligned(16))) at { long a, b; };
struct big32 { _Alignas(32) long a; long b, c, d; };
__attribute__((noipa)) long g(long a, long b, long c, long d, long e, long f, int s, struct w x, int h) { return a + s + (long)x.v + h; }
__attribute__((noipa)) long m(long a, long b, long c, long d, long e, long f, int s, struct al x, struct at y, short h) { return a + s + x.a + y.a + h; }
__attribute__((noipa)) long k(long a, long b, long c, long d, long e, long f, int s, struct big32 x, int t, long r) { return a + s + x.a + t + r; }
__attribute__((noipa)) long k2(int s, struct big32 x, int t) { return s + x.a + t; }
int main(void) { return 0; }
"#;

#[test]
fn stack_arguments_keep_their_types_alignment() {
    let exe = compile("alignsig", "al.c", ALIGNED, &["-O0", "-g"]);
    let elf = Arc::new(ElfFile::open(&exe).unwrap());
    let mut cache = Signatures::new();
    let regs: Vec<Loc> = (0..6).map(|n| Loc::Gp(vec![n])).collect();
    let stack = |offset, size| Loc::Stack { offset, size };
    // s: 0; x (16-aligned): 16, not 8; h: 32.
    let s = sig(&elf, &mut cache, "g").unwrap();
    assert!(matches!(s.params[7].ty, Type::Aggregate { align: 16, .. }));
    let mut want = regs.clone();
    want.extend([stack(0, 4), stack(16, 16), stack(32, 4)]);
    assert_eq!(s.locations(), want);
    let s = sig(&elf, &mut cache, "m").unwrap();
    assert!(matches!(s.params[7].ty, Type::Aggregate { align: 16, .. }));
    assert!(matches!(s.params[8].ty, Type::Aggregate { align: 16, .. }));
    let mut want = regs.clone();
    want.extend([stack(0, 4), stack(16, 16), stack(32, 16), stack(48, 2)]);
    assert_eq!(s.locations(), want);
    // Aligned to 32: where it goes depends on the compiler's target (GCC
    // caps it at 16 without AVX, 32 with it), so it and every later stack
    // argument are unknown; registers still are.
    let s = sig(&elf, &mut cache, "k").unwrap();
    let mut want = regs.clone();
    want.extend([
        stack(0, 4),
        Loc::Unavailable,
        Loc::Unavailable,
        Loc::Unavailable,
    ]);
    assert_eq!(s.locations(), want);
    let s = sig(&elf, &mut cache, "k2").unwrap();
    assert_eq!(
        s.locations(),
        vec![Loc::Gp(vec![0]), Loc::Unavailable, Loc::Gp(vec![1])]
    );
}

/// Debug info that does not say what a function's parameters are: a
/// function is refused (None: a prototype or raw registers instead), never
/// shown as taking none or taking `void`s.
const UNDESCRIBED: &str = r#"
__attribute__((noipa)) int narrow(signed char a, unsigned char b, short c) { return a + b + c; }
__attribute__((noipa)) int knr() { return 1; }
__attribute__((noipa)) int none(void) { return 2; }
int main(void) { return narrow(1, 2, 3) + knr() + none(); }
"#;

#[test]
fn functions_whose_parameters_are_not_described_are_refused() {
    let build = |tag, flags: &[&str]| {
        let exe = compile(tag, "u.c", UNDESCRIBED, flags);
        Arc::new(ElfFile::open(&exe).unwrap())
    };
    let mut cache = Signatures::new();
    // -g: a K&R definition says nothing of its parameters; (void) says none.
    let elf = build("undescribed", &["-O0", "-g"]);
    assert!(sig(&elf, &mut cache, "knr").is_none());
    let none = sig(&elf, &mut cache, "none").expect("prototyped (void)");
    assert!(none.params.is_empty() && !none.variadic);
    assert_eq!(sig(&elf, &mut cache, "narrow").unwrap().params.len(), 3);
    // -g1: functions are listed, with neither parameters nor types.
    let elf = build("g1", &["-O0", "-g1"]);
    for name in ["narrow", "knr", "none", "main"] {
        assert!(sig(&elf, &mut cache, name).is_none(), "-g1 {name}");
    }
    // LTO: the out-of-line function refers to its declaration in another
    // unit (DW_FORM_ref_addr). Refused; or, should a compiler write it
    // all in one unit, right.
    let elf = build("lto", &["-O0", "-g", "-flto"]);
    if let Some(s) = sig(&elf, &mut cache, "narrow") {
        let names: Vec<Option<&str>> = s.params.iter().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [Some("a"), Some("b"), Some("c")]);
        assert_eq!(s.params[0].ty, int(1, true));
    }
    assert!(sig(&elf, &mut cache, "knr").is_none());
}

#[test]
fn assembler_units_describe_no_parameters() {
    const ASM: &str = ".text\n.globl f\n.type f,@function\nf:\n ret\n.size f,.-f\n\
.globl main\n.type main,@function\nmain:\n xor %eax,%eax\n ret\n.size main,.-main\n\
.section .note.GNU-stack,\"\",@progbits\n";
    let exe = compile("asmsig", "a.S", ASM, &["-g"]);
    let elf = Arc::new(ElfFile::open(&exe).unwrap());
    assert!(elf.has_dwarf());
    assert!(sig(&elf, &mut Signatures::new(), "f").is_none());
    // glibc's string functions and syscall() are assembler (libc6-dbg).
    let libc = Arc::new(
        ElfFile::open(std::path::Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")).unwrap(),
    );
    assert!(libc.has_dwarf(), "install libc6-dbg");
    let mut cache = Signatures::new();
    for name in ["syscall", "__memmove_avx_unaligned_erms", "__strncat_avx2"] {
        if let Some(f) = libc.function_named(name) {
            assert!(cache.get(&libc, f.addr).is_none(), "{name}");
        }
    }
    let printf = sig(&libc, &mut cache, "printf").expect("printf is C");
    assert_eq!(printf.params[0].name.as_deref(), Some("format"));
    assert!(printf.variadic);
}

/// GCC's clones at -O2: each parameter where the clone's debug info says.
const CLONES: &str = r#"
struct cfg { int a; int b; long pad[8]; };
static __attribute__((noinline)) int scale(int unused, const struct cfg *c, int k) { (void)unused; return c->b * k; }
static __attribute__((noinline)) int pick(int mode, int v) { return mode == 3 ? v * 2 : v - 1; }
int main(int argc, char **argv) {
  (void)argv;
  struct cfg c = {1, argc + 4, {0}};
  int r = 0;
  for (int i = 0; i < 3; i++) r += scale(i, &c, i + 1) + pick(3, i);
  return r;
}
"#;

#[test]
fn clones_are_placed_by_their_own_debug_info() {
    let exe = compile("clonesig", "c.c", CLONES, &["-O2", "-g"]);
    let elf = Arc::new(ElfFile::open(&exe).unwrap());
    let mut cache = Signatures::new();
    let scale = sig(&elf, &mut cache, "scale.constprop.0.isra.0").expect("the clone has DWARF");
    let names: Vec<&str> = scale
        .params
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
    assert_eq!(names, ["unused", "c", "k"], "the declared order");
    // unused, c: values the caller computes (DW_OP_GNU_parameter_ref); k:
    // rsi (DWARF register 4).
    assert_eq!(
        scale.locations(),
        vec![Loc::Unavailable, Loc::Unavailable, Loc::Reg(4)]
    );
    // IPA-SRA may drop the return value: not typed.
    assert_eq!(scale.ret, Type::Unknown);
    let pick = sig(&elf, &mut cache, "pick.constprop.0").unwrap();
    assert_eq!(pick.locations(), vec![Loc::Const(3), Loc::Reg(5)]);
    assert_eq!(pick.ret, int(4, true));
    assert!(is_clone("f.part.0") && is_clone("g.isra.1") && !is_clone("h.cold"));
    assert!(!is_clone("main") && !is_clone("x.lto_priv.0"));
}
