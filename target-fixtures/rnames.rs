//! rnames: Rust functions to probe by their demangled paths.
//!
//! Exercises: `rnames::parse` (legacy mangling: `_ZN6rnames5parse17h…E`)
//! matched with and without its hash, `rnames::inner::step` through a glob
//! (`rnames::inner::*`), and demangled names in the output.
//!
//! Calls, exactly: rnames::parse 3 times, rnames::inner::step 2 times.
//!
//! Usage: rnames   (no arguments)
//! Output (stdout), exactly:
//!     total=21
//! Exit status 0.

#[inline(never)]
#[no_mangle]
pub extern "C" fn rnames_c_marker(x: u64) -> u64 {
    x
}

#[inline(never)]
fn parse(s: &str) -> u64 {
    std::hint::black_box(s.len() as u64)
}

mod inner {
    #[inline(never)]
    pub fn step(x: u64) -> u64 {
        std::hint::black_box(x * 3)
    }
}

fn main() {
    let mut total = 0;
    for s in ["a", "bb", "ccc"] {
        total += parse(s); // 1 + 2 + 3 = 6
    }
    total += inner::step(2) + inner::step(3); // 6 + 9 = 15
    total = rnames_c_marker(total);
    println!("total={total}");
}
