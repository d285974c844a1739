/* Shared by every fixture in this directory.
 *
 * PROBED marks a function that tests put probes on. `noipa` (GCC >= 8) is
 * stronger than `noinline`: it also forbids cloning (work.constprop.0) and
 * interprocedural assumptions, so at -O2 the function keeps its own symbol
 * and every call stays a real `call`. It is not static, so `-rdynamic`
 * exports it into .dynsym for the Stripped variant.
 *
 * BARRIER() is an empty asm the compiler must keep; it stops -O2 from
 * folding a probed function's body into a constant. */
#ifndef RTRACE_FIXTURE_H
#define RTRACE_FIXTURE_H

#define PROBED __attribute__((noipa, used))
#define BARRIER() __asm__ volatile("" ::: "memory")

#endif
