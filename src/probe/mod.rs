//! The kprobes mirror: probe table, probe sites, return instances.
//!
//! No system calls here: these are the data structures the engine consults on
//! every hit, testable without a process.
//!
//! | kernel | rtrace |
//! | --- | --- |
//! | `kprobe_table[64]`, `hash_ptr(addr, 6)` | [`ProbeTable`] |
//! | aggregate kprobe | [`ProbeSite`] holding several probes behind one breakpoint |
//! | `return_instance` | [`ReturnInstance`] |
//! | `cleanup_return_instances` | [`ReturnStack::pop_returning`] dropping abandoned frames |

mod retstack;
mod site;
mod table;

pub use retstack::{HandlerData, ReturnInstance, ReturnStack, Watch};
pub use site::{Owner, ProbeSite};
pub use table::ProbeTable;
