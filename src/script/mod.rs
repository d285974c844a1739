//! Scripted handlers: `--script FILE` and `-x 'PROBE { … }'`, in Rhai.
//!
//! A script is a list of blocks, each a header and a body of
//! [Rhai](https://rhai.rs) code (a pure-Rust language, sandboxed: no file or
//! network access, no imports):
//!
//! ```text
//! BEGIN { let limit = 3; }                    // once, before tracing starts
//! libc:openat { str(arg(1)).starts_with("/etc") }   // at each entry
//! libc:openat:return /retval < 0/ { @failed[str(arg(1))] = count() }
//! work:return { @ns = hist(duration) }        // when the call returns
//! interval:1s { print(@failed); clear(@failed) }   // every second
//! END { print(`${@failed.len()} paths failed`) }   // once, at the end
//! ```
//!
//! A probe block runs on the [`Handler`] path like any other handler: on the
//! tracer's thread, with the hitting thread stopped. It sees `tid`, `pid`,
//! `comm`, `probe` (the spec), `func` (the function), `time` and `nsecs`
//! (nanoseconds since rtrace started), `arg(n)` (the SysV integer arguments
//! at the entry, also in a return block), `ustack`, and in a `:return`
//! block `retval` and `duration` (nanoseconds). `str(ptr)` and `str(ptr,
//! max)` read a C string from the tracee, `read(ptr, len)` bytes, `hex(n)`
//! formats an address. `print(x)` and `printf(fmt, …)` write a line to the
//! trace output. Interval blocks run on the tracer's thread from the
//! listener's [`Handler::on_idle`].
//!
//! **Filtering.** The call is printed as `-s` prints it when a block returns
//! `true`, and not otherwise (a block that returns `false`, or no value,
//! prints nothing): with an entry block, its value decides at the entry; with
//! only a `:return` block, the return block's value decides, and the whole
//! call is printed then. A spec also given with `-s` is printed by `-s`.
//!
//! **Maps and aggregations.** `@name` (the front end, `source`, makes it a
//! global `Table`) is a map: `@n` its entry of no key, `@m[k]` and `@m[a,
//! b]` keyed ones. `count()`, `sum(x)`, `avg(x)`, `min(x)`, `max(x)`,
//! `hist(x)` and `lhist(x, min, max, step)` are bpftrace's aggregations
//! (`Agg`). When tracing is over, END blocks run, then every non-empty
//! map is printed as bpftrace prints it. A name assigned without `@` or
//! `let` is a deprecated map, with a warning; any other unknown name is an
//! error with a did-you-mean. Variables declared in `BEGIN` (`let limit =
//! 3;`) are global too, and not printed.
//!
//! **Errors and limits.** A script that does not compile is refused before
//! anything is traced, with its line and column. An error while a block runs (a type
//! mismatch, an unreadable pointer) is reported once per block with the
//! script line, counted, and the hit goes on unprinted; the total is reported
//! at the end. A block that runs past its operations budget (a runaway loop,
//! [`Limits::operations`]) is an error that ends tracing: rtrace detaches and
//! the tracee runs on unharmed. A map holds at most [`MAX_MAP_KEYS`] keys.
//!
//! **Stopping.** Every [`STOP_CHECK_OPS`] operations a block asks whether
//! SIGINT, SIGTERM or SIGHUP arrived ([`crate::sys::signal::stop_requested`]):
//! with no budget (`--script-ops 0`) a loop that never ends would otherwise
//! keep the tracer from ever detaching, the hit thread stopped for good. A
//! probe block stopped that way ends like a block that returned nothing (the
//! hit is not printed), says where it was stopped, and the tracer detaches as
//! for any SIGINT. END runs after that detach; a further signal stops it.
//! BEGIN runs before rtrace installs its signal handlers (nothing is traced
//! yet): SIGINT ends rtrace there as it ends any program.
//!
//! This module owns the script language's surface; the engine knows nothing
//! of it: a script is a [`Handler`] on each probe it names ([`ScriptProbe`])
//! and a listener ([`ScriptListener`]).

mod printf;
mod source;

pub use source::{Block, Header, SyntaxError};

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, ParseErrorType, Scope, AST, INT};

use crate::addr::{Pid, RuntimeAddr};
use crate::arch::Regs;
use crate::error::{Error, Result};
use crate::handler::{Event, Handler, Hit, ProbeKind, Return};
use crate::output::render::{Known, Number, Renderer};
use crate::output::{LinearHist, Log2Hist, Printer, ScriptHist, ScriptItem, ScriptValue};

/// A script's text and the name its errors use (a file's path, `-x #2`).
#[derive(Clone, Debug)]
pub struct ScriptSource {
    /// `trace.rhai`, `-x #1`.
    pub name: String,
    /// The script.
    pub text: String,
}

/// The safety limits of every block's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Rhai operations one block may take per run (a runaway loop ends
    /// tracing): [`Limits::DEFAULT_OPERATIONS`] unless `--script-ops` says.
    pub operations: u64,
    /// Bytes `str(ptr)` reads at most (`--string-limit`).
    pub string: usize,
    /// Frames `ustack` shows at most (`--stack-depth`).
    pub stack: usize,
}

impl Limits {
    /// 100,000: far beyond what a filter or a map update takes (tens), small
    /// enough that a loop that never ends is stopped in about a millisecond.
    pub const DEFAULT_OPERATIONS: u64 = 100_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            operations: Limits::DEFAULT_OPERATIONS,
            string: crate::output::DEFAULT_STRING_LIMIT,
            stack: crate::unwind::DEFAULT_DEPTH,
        }
    }
}

/// The most bytes `read(ptr, len)` returns.
const MAX_READ: usize = 1 << 20;

/// The most keys one map holds (as many as a Rhai object map may): a block
/// that keys a map by something without bound (an address, a time) fails
/// there rather than grow rtrace without end.
pub const MAX_MAP_KEYS: usize = 1 << 16;

/// How often (in Rhai operations) a running block asks whether a signal
/// asked rtrace to stop: a few microseconds of a loop.
pub const STOP_CHECK_OPS: u64 = 1024;

/// The token of a run ended by a stop request (`EvalAltResult::ErrorTerminated`).
const STOPPED: &str = "rtrace: stop requested";

/// Names a probe block sees, set for each run.
const HIT_VARS: [&str; 7] = ["tid", "pid", "probe", "func", "time", "nsecs", "comm"];
/// Names only a `:return` block sees.
const RETURN_VARS: [&str; 2] = ["retval", "duration"];
/// The functions rtrace adds to Rhai's, for did-you-means.
const FUNCTIONS: [&str; 19] = [
    "arg", "str", "read", "hex", "print", "printf", "exit", "ustack", "count", "sum", "avg", "min",
    "max", "hist", "lhist", "clear", "zero", "len", "delete",
];

/// A key of a script map: what a value is compared and printed as.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    /// The entry of no key: `@n`.
    Unit,
    Bool(bool),
    Int(INT),
    Text(String),
    Tuple(Vec<Key>),
}

impl Key {
    fn of(v: &Dynamic) -> Key {
        if v.is_unit() {
            Key::Unit
        } else if let Ok(i) = v.as_int() {
            Key::Int(i)
        } else if let Ok(b) = v.as_bool() {
            Key::Bool(b)
        } else if v.is_array() {
            // `@m[k]` is `_m_m[[k]]` (see `source`): one value is its own key.
            let items = v.clone().into_array().unwrap_or_default();
            match &items[..] {
                [one] => Key::of(one),
                _ => Key::Tuple(items.iter().map(Key::of).collect()),
            }
        } else if v.is_string() {
            Key::Text(v.clone().into_string().unwrap_or_default())
        } else {
            Key::Text(v.to_string())
        }
    }
}

impl Key {
    /// How the key is printed; None for the entry of no key.
    fn value(&self) -> Option<ScriptValue> {
        Some(match self {
            Key::Unit => return None,
            Key::Bool(b) => ScriptValue::Bool(*b),
            Key::Int(i) => ScriptValue::Int(*i),
            Key::Text(_) | Key::Tuple(_) => ScriptValue::Text(self.to_string()),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Unit => Ok(()),
            Key::Bool(b) => write!(f, "{b}"),
            Key::Int(i) => write!(f, "{i}"),
            Key::Text(s) => f.write_str(s),
            Key::Tuple(items) => {
                for (i, k) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}")?;
                }
                Ok(())
            }
        }
    }
}

/// A script map (bpftrace's `@name[key]`): any value as key, ordered; `@n`
/// is its entry of no key ([`Key::Unit`]). A value is a number, a string…,
/// or an [`Agg`] that the next aggregation of its kind adds to.
#[derive(Clone, Debug, Default)]
struct Table {
    /// As printed: `@count`, or `count` for a map without its `@`.
    name: String,
    entries: BTreeMap<Key, Dynamic>,
}

impl Table {
    fn named(name: String) -> Table {
        Table {
            name,
            entries: BTreeMap::new(),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match v.read_lock::<Agg>() {
                Some(a) => write!(f, "{k}: {}", *a)?,
                None => write!(f, "{k}: {v}")?,
            }
        }
        f.write_str("}")
    }
}

/// A map entry's aggregation, bpftrace's `count()`, `sum(x)`, `avg(x)`,
/// `min(x)`, `max(x)`, `hist(x)` and `lhist(x, min, max, step)`: assigned
/// to an entry that holds one of its kind, it adds to it.
#[derive(Clone, Debug)]
enum Agg {
    Count(INT),
    Sum(INT),
    Avg { sum: i128, n: INT },
    Min(INT),
    Max(INT),
    Hist(Box<Log2Hist>),
    Lhist(Box<LinearHist>),
}

impl Agg {
    fn kind(&self) -> &'static str {
        match self {
            Agg::Count(_) => "count()",
            Agg::Sum(_) => "sum()",
            Agg::Avg { .. } => "avg()",
            Agg::Min(_) => "min()",
            Agg::Max(_) => "max()",
            Agg::Hist(_) => "hist()",
            Agg::Lhist(_) => "lhist()",
        }
    }

    /// Adds `new` (one value's aggregation) to this one.
    fn merge(&mut self, new: Agg) -> std::result::Result<(), Box<EvalAltResult>> {
        match (self, new) {
            (Agg::Count(a), Agg::Count(b)) | (Agg::Sum(a), Agg::Sum(b)) => *a = a.wrapping_add(b),
            (Agg::Avg { sum, n }, Agg::Avg { sum: s, n: m }) => {
                *sum += s;
                *n += m;
            }
            (Agg::Min(a), Agg::Min(b)) => *a = (*a).min(b),
            (Agg::Max(a), Agg::Max(b)) => *a = (*a).max(b),
            (Agg::Hist(a), Agg::Hist(b)) => {
                for bucket in b.buckets() {
                    for _ in 0..bucket.count {
                        a.add(bucket.low.unwrap_or(-1));
                    }
                }
            }
            (Agg::Lhist(a), Agg::Lhist(b)) => {
                if !a.merge(&b) {
                    let (min, max, step) = a.shape();
                    return Err(runtime_error(format!(
                        "this entry is an lhist(x, {min}, {max}, {step}): the same min, max and step each time"
                    )));
                }
            }
            (old, new) => {
                return Err(runtime_error(format!(
                    "this entry holds a {}; it cannot take a {}",
                    old.kind(),
                    new.kind()
                )))
            }
        }
        Ok(())
    }

    /// The value of a count, sum, avg (the integer mean), min or max.
    fn scalar(&self) -> Option<INT> {
        match self {
            Agg::Count(v) | Agg::Sum(v) | Agg::Min(v) | Agg::Max(v) => Some(*v),
            Agg::Avg { sum, n } => Some(if *n == 0 {
                0
            } else {
                (sum / *n as i128) as INT
            }),
            Agg::Hist(_) | Agg::Lhist(_) => None,
        }
    }

    /// bpftrace's `zero()`: the aggregation of nothing.
    fn zero(&mut self) {
        match self {
            Agg::Count(v) | Agg::Sum(v) | Agg::Min(v) | Agg::Max(v) => *v = 0,
            Agg::Avg { sum, n } => {
                *sum = 0;
                *n = 0;
            }
            Agg::Hist(h) => **h = Log2Hist::default(),
            Agg::Lhist(h) => h.zero(),
        }
    }

    fn hist(&self) -> Option<ScriptHist> {
        match self {
            Agg::Hist(h) => Some(ScriptHist::Log2(h.clone())),
            Agg::Lhist(h) => Some(ScriptHist::Linear((**h).clone())),
            _ => None,
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.scalar(), self.hist()) {
            (Some(v), _) => write!(f, "{v}"),
            (None, Some(h)) => f.write_str(&h.render()),
            (None, None) => Ok(()),
        }
    }
}

/// What one block's run left to print, in order.
enum Printed {
    Line(String),
    Warning(String),
    /// `print(@map)`.
    Item(ScriptItem),
}

/// What the registered functions see of the current run.
#[derive(Default)]
struct Ctx {
    /// The process whose memory `str` and `read` read; None in BEGIN and END.
    pid: Option<Pid>,
    /// What a recorded hit holds of that memory (a replay's, or a return
    /// taken from the return stub's record): `str` and `read` read it, and
    /// nothing else.
    recorded: Option<crate::handler::Captured>,
    /// The entry's argument registers; None in BEGIN and END.
    args: Option<[u64; 6]>,
    /// The current block's name, for `hist(x)`.
    block: String,
    /// What `print` and `printf` wrote during the run.
    printed: Vec<Printed>,
    /// The hit's stack as `ustack` shows it, when a block of the probe uses it.
    ustack: Option<String>,
    hists: BTreeMap<String, Log2Hist>,
    string_limit: usize,
    /// Frames `ustack` shows at most.
    stack_depth: usize,
}

type Shared = Rc<RefCell<Ctx>>;

fn runtime_error(msg: String) -> Box<EvalAltResult> {
    msg.into()
}

fn mem_read(
    ctx: &Shared,
    addr: INT,
    buf: &mut [u8],
) -> std::result::Result<(), Box<EvalAltResult>> {
    if let Some(c) = &ctx.borrow().recorded {
        let bytes = c
            .read_bytes(RuntimeAddr(addr as u64), buf.len())
            .map_err(|_| not_recorded(addr))?;
        buf.copy_from_slice(&bytes);
        return Ok(());
    }
    let pid = ctx
        .borrow()
        .pid
        .ok_or_else(|| runtime_error("tracee memory can only be read in a probe block".into()))?;
    crate::sys::mem::read_process(pid, RuntimeAddr(addr as u64), buf)
        .map_err(|_| runtime_error(format!("cannot read tracee memory at {:#x}", addr as u64)))
}

/// A read of memory a recorded hit does not hold.
fn not_recorded(addr: INT) -> Box<EvalAltResult> {
    runtime_error(format!(
        "tracee memory at {:#x} is not in the record of this hit (a recording keeps what the \
         printers show of a call: its string and buffer arguments)",
        addr as u64
    ))
}

fn read_str(
    ctx: &Shared,
    addr: INT,
    max: usize,
) -> std::result::Result<String, Box<EvalAltResult>> {
    if addr == 0 {
        return Ok("(null)".into());
    }
    if let Some(c) = &ctx.borrow().recorded {
        let (bytes, _) = c
            .read_cstr(RuntimeAddr(addr as u64), max)
            .map_err(|_| not_recorded(addr))?;
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let mut out = Vec::new();
    let mut at = addr as u64;
    // A page at a time, so a short string before an unmapped page reads.
    while out.len() < max {
        let want = ((4096 - at % 4096) as usize).min(max - out.len());
        let mut chunk = vec![0u8; want];
        mem_read(ctx, at as INT, &mut chunk)?;
        if let Some(nul) = chunk.iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&chunk);
        at += want as u64;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn new_engine(ctx: &Shared, limits: Limits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_strict_variables(true)
        .set_max_operations(limits.operations)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(1 << 20)
        .set_max_array_size(1 << 16)
        .set_max_map_size(1 << 16);
    // With or without an operations budget: SIGINT must always end a run.
    engine.on_progress(|ops| {
        (ops % STOP_CHECK_OPS == 0 && crate::sys::signal::stop_requested())
            .then(|| Dynamic::from(STOPPED))
    });
    let c = ctx.clone();
    engine.on_print(move |s| c.borrow_mut().printed.push(Printed::Line(s.to_string())));
    let c = ctx.clone();
    engine.on_debug(move |s, _, _| c.borrow_mut().printed.push(Printed::Line(s.to_string())));

    let c = ctx.clone();
    engine.register_fn(
        "arg",
        move |n: INT| -> std::result::Result<INT, Box<EvalAltResult>> {
            let args = c
                .borrow()
                .args
                .ok_or_else(|| runtime_error("arg(n) is only known in a probe block".into()))?;
            usize::try_from(n)
                .ok()
                .and_then(|n| args.get(n).copied())
                .map(|v| v as INT)
                .ok_or_else(|| {
                    runtime_error(format!("arg({n}): the arguments are arg(0) to arg(5)"))
                })
        },
    );
    let c = ctx.clone();
    engine.register_fn("str", move |p: INT| {
        let max = c.borrow().string_limit;
        read_str(&c, p, max)
    });
    let c = ctx.clone();
    engine.register_fn("str", move |p: INT, max: INT| {
        read_str(&c, p, usize::try_from(max).unwrap_or(0).min(MAX_READ))
    });
    let c = ctx.clone();
    engine.register_fn(
        "read",
        move |p: INT, len: INT| -> std::result::Result<rhai::Blob, Box<EvalAltResult>> {
            let len = usize::try_from(len).unwrap_or(0);
            if len > MAX_READ {
                return Err(runtime_error(format!(
                    "read(ptr, {len}): at most {MAX_READ} bytes"
                )));
            }
            let mut buf = vec![0u8; len];
            mem_read(&c, p, &mut buf)?;
            Ok(buf)
        },
    );
    engine.register_fn("hex", |v: INT| format!("{:#x}", v as u64));
    // A predicate (`/PRED/`, laid as `if(_truthy(PRED))` by `source`) holds
    // as bpftrace's does: true, a non-zero number, a non-empty string; not
    // false, 0, "" or an unset map entry (`()`).
    engine.register_fn(
        "_truthy",
        |v: Dynamic| -> std::result::Result<bool, Box<EvalAltResult>> {
            if let Ok(b) = v.as_bool() {
                Ok(b)
            } else if let Ok(i) = v.as_int() {
                Ok(i != 0)
            } else if let Ok(f) = v.as_float() {
                Ok(f != 0.0)
            } else if v.is_unit() {
                Ok(false)
            } else if v.is_string() {
                Ok(!v.into_immutable_string().unwrap_or_default().is_empty())
            } else {
                Err(runtime_error(format!(
                    "a predicate is a number, a string or true/false, not {}",
                    v.type_name()
                )))
            }
        },
    );
    // bpftrace's exit(): tracing ends as if rtrace had a SIGTERM, once this
    // hit is done (END runs, a launched program gets the SIGTERM).
    engine.register_fn("exit", crate::sys::signal::request_exit);
    // printf(fmt, …), up to six values: one printed line (a last \n ends
    // it).
    macro_rules! printf {
        ($($a:ident),*) => {{
            let c = ctx.clone();
            engine.register_fn(
                "printf",
                move |fmt: &str $(, $a: Dynamic)*| -> std::result::Result<(), Box<EvalAltResult>> {
                    let line = printf::format(fmt, &[$($a),*]).map_err(runtime_error)?;
                    let line = line.strip_suffix('\n').unwrap_or(&line).to_string();
                    c.borrow_mut().printed.push(Printed::Line(line));
                    Ok(())
                },
            );
        }};
    }
    printf!();
    printf!(a);
    printf!(a, b);
    printf!(a, b, c3);
    printf!(a, b, c3, d);
    printf!(a, b, c3, d, e);
    printf!(a, b, c3, d, e, f);
    // The older statement forms: a histogram named after the block, or
    // the name given (the front end renames the first `_block_hist`).
    let c = ctx.clone();
    engine.register_fn("_block_hist", move |v: INT| {
        let mut ctx = c.borrow_mut();
        let name = ctx.block.clone();
        ctx.hists.entry(name).or_default().add(v);
    });
    let c = ctx.clone();
    engine.register_fn("hist", move |name: &str, v: INT| {
        c.borrow_mut()
            .hists
            .entry(name.to_string())
            .or_default()
            .add(v);
    });

    // bpftrace's aggregations: the value of one hit, which the map's
    // entry adds to what it holds.
    engine
        .register_type_with_name::<Agg>("aggregation")
        .register_fn("to_string", |a: &mut Agg| a.to_string())
        .register_fn("to_debug", |a: &mut Agg| a.to_string())
        .register_fn("count", || Agg::Count(1))
        .register_fn("sum", |v: INT| Agg::Sum(v))
        .register_fn("avg", |v: INT| Agg::Avg {
            sum: i128::from(v),
            n: 1,
        })
        .register_fn("min", |v: INT| Agg::Min(v))
        .register_fn("max", |v: INT| Agg::Max(v))
        .register_fn("hist", |v: INT| {
            let mut h = Log2Hist::default();
            h.add(v);
            Agg::Hist(Box::new(h))
        })
        .register_fn(
            "lhist",
            |v: INT, min: INT, max: INT, step: INT| -> std::result::Result<Agg, Box<EvalAltResult>> {
                let mut h = LinearHist::new(min, max, step).ok_or_else(|| {
                    runtime_error(format!(
                        "lhist(x, {min}, {max}, {step}): needs min < max, a step > 0, and at most 1000 steps"
                    ))
                })?;
                h.add(v);
                Ok(Agg::Lhist(Box::new(h)))
            },
        );
    let c = ctx.clone();
    engine.register_fn(
        "ustack",
        move || -> std::result::Result<String, Box<EvalAltResult>> {
            c.borrow()
                .ustack
                .clone()
                .ok_or_else(|| runtime_error("ustack is only known in a probe block".into()))
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "ustack",
        move |n: INT| -> std::result::Result<String, Box<EvalAltResult>> {
            let stack = c
                .borrow()
                .ustack
                .clone()
                .ok_or_else(|| runtime_error("ustack is only known in a probe block".into()))?;
            let n = usize::try_from(n).unwrap_or(0);
            let mut lines: Vec<&str> = stack.lines().skip(1).take(n).collect();
            lines.insert(0, "");
            Ok(lines.join("\n") + "\n")
        },
    );
    // print(@map): the map as it is, as at the end.
    let c = ctx.clone();
    engine.register_fn("_print_map", move |t: &mut Table| {
        let items = table_items(t);
        c.borrow_mut()
            .printed
            .extend(items.into_iter().map(Printed::Item));
    });

    // Maps: global variables that start empty.
    engine
        .register_type_with_name::<Table>("map")
        .register_indexer_get_set(
            |t: &mut Table, k: Dynamic| match t.entries.get(&Key::of(&k)) {
                Some(v) => match v.read_lock::<Agg>().and_then(|a| a.scalar()) {
                    Some(n) => Dynamic::from(n),
                    None => v.clone(),
                },
                // bpftrace's maps read 0 where nothing was stored (`if @n
                // == 5` before the first `@n = count()`); a map without
                // its `@` reads `()`, as it always did.
                None if t.name.starts_with('@') => Dynamic::from(0 as INT),
                None => Dynamic::UNIT,
            },
            |t: &mut Table,
             k: Dynamic,
             v: Dynamic|
             -> std::result::Result<(), Box<EvalAltResult>> {
                let k = Key::of(&k);
                if t.entries.len() >= MAX_MAP_KEYS && !t.entries.contains_key(&k) {
                    return Err(runtime_error(format!(
                        "this map has {MAX_MAP_KEYS} keys, as many as a map may hold"
                    )));
                }
                if v.is::<Agg>() {
                    if let Some(mut old) = t.entries.get_mut(&k).and_then(|o| o.write_lock::<Agg>())
                    {
                        let new = v.cast::<Agg>();
                        return old.merge(new);
                    }
                }
                t.entries.insert(k, v);
                Ok(())
            },
        )
        .register_fn("len", |t: &mut Table| t.entries.len() as INT)
        .register_fn("contains", |t: &mut Table, k: Dynamic| {
            t.entries.contains_key(&Key::of(&k))
        })
        .register_fn("remove", |t: &mut Table, k: Dynamic| {
            t.entries.remove(&Key::of(&k)).unwrap_or(Dynamic::UNIT)
        })
        .register_fn("delete", |t: &mut Table, k: Dynamic| {
            t.entries.remove(&Key::of(&k));
        })
        .register_fn("clear", |t: &mut Table| t.entries.clear())
        .register_fn("zero", |t: &mut Table| {
            for v in t.entries.values_mut() {
                if let Some(mut a) = v.write_lock::<Agg>() {
                    a.zero();
                    continue;
                }
                if v.is_int() {
                    *v = Dynamic::from(0 as INT);
                } else if v.is_float() {
                    *v = Dynamic::from(0.0 as rhai::FLOAT);
                }
            }
        })
        .register_fn("to_string", |t: &mut Table| t.to_string())
        .register_fn("to_debug", |t: &mut Table| t.to_string());
    // A map entry or a global not yet set is `()`, which counts as nothing:
    // `count[k] += 1` and `n += 1` work from the first time.
    engine
        .register_fn("+", |_: (), b: INT| b)
        .register_fn("+", |_: (), b: rhai::FLOAT| b)
        .register_fn("+", |_: (), b: rhai::ImmutableString| b)
        .register_fn("-", |_: (), b: INT| -b)
        .register_fn("+", |t: &mut Table, b: INT| first_value(t, b))
        .register_fn("+", |t: &mut Table, b: rhai::FLOAT| first_value(t, b))
        .register_fn("-", |t: &mut Table, b: INT| first_value(t, -b));
    engine
}

/// `n += 1` on a global that starts as an empty map makes it a number.
fn first_value<T>(t: &mut Table, v: T) -> std::result::Result<T, Box<EvalAltResult>> {
    match t.entries.is_empty() {
        true => Ok(v),
        false => Err(runtime_error(
            "this variable is a map: index it (`m[key] += 1`)".into(),
        )),
    }
}

/// The items that print table `t`: one map of its numbers (sorted by
/// value, smallest first, as bpftrace prints them; by key where the values
/// are no numbers), then its histograms (by their totals, smallest first).
fn table_items(t: &Table) -> Vec<ScriptItem> {
    let mut scalars: Vec<(Option<ScriptValue>, ScriptValue)> = Vec::new();
    let mut hists: Vec<(Option<ScriptValue>, ScriptHist)> = Vec::new();
    for (k, v) in &t.entries {
        match v.read_lock::<Agg>() {
            Some(a) => match (a.scalar(), a.hist()) {
                (Some(n), _) => scalars.push((k.value(), ScriptValue::Int(n))),
                (None, Some(h)) => hists.push((k.value(), h)),
                (None, None) => {}
            },
            None => scalars.push((k.value(), value(v))),
        }
    }
    if scalars
        .iter()
        .all(|(_, v)| matches!(v, ScriptValue::Int(_)))
    {
        // Stable: equal values stay in key order.
        scalars.sort_by_key(|(_, v)| match v {
            ScriptValue::Int(i) => *i,
            ScriptValue::Float(_) | ScriptValue::Bool(_) | ScriptValue::Text(_) => 0,
        });
    }
    hists.sort_by_key(|(_, h)| h.total());
    let mut items = Vec::new();
    if !scalars.is_empty() {
        items.push(ScriptItem::Map {
            name: t.name.clone(),
            entries: scalars,
        });
    }
    for (key, hist) in hists {
        items.push(ScriptItem::Hist {
            name: t.name.clone(),
            key,
            hist: Box::new(hist),
        });
    }
    items
}

/// A compiled block.
struct Compiled {
    source: usize,
    /// Where its header is.
    line: usize,
    column: usize,
    header: Header,
    ast: AST,
    /// The front end's block, to map Rhai's positions to the script's.
    block: Block,
    /// Errors while running, and whether the first was reported.
    errors: u64,
}

impl Compiled {
    /// `work:return`, `BEGIN`: the block's name in messages and `hist(x)`.
    fn name(&self) -> String {
        match &self.header {
            Header::Begin => "BEGIN".into(),
            Header::End => "END".into(),
            Header::Entry(spec) => spec.clone(),
            Header::Return(spec) => format!("{spec}:return"),
            Header::Interval(p) => format!("interval:{}", period(*p)),
        }
    }

    /// The script's line and column of Rhai's `pos` (the header's when
    /// Rhai has none).
    fn at(&self, pos: rhai::Position) -> (usize, usize) {
        match (pos.line(), pos.position()) {
            (Some(l), Some(c)) => self.block.position(l, c),
            (Some(l), None) => (l, 1),
            _ => (self.line, self.column),
        }
    }
}

/// `1s`, `500ms`, `250us`: an interval's period as it is written.
fn period(p: Duration) -> String {
    let us = p.as_micros();
    if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1000) {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

/// An interval block's next run.
struct Due {
    block: usize,
    period: Duration,
    next: Instant,
}

/// A compiled script, its global variables and its histograms. Shared
/// (`Rc<RefCell<Script>>`) by its [`ScriptProbe`]s and its [`ScriptListener`].
pub struct Script {
    engine: Engine,
    ctx: Shared,
    /// Globals: BEGIN's variables, then the maps the blocks use.
    scope: Scope<'static>,
    /// The maps, as Rhai names them (`_m_count`), in the order printed.
    maps: Vec<String>,
    /// The bare globals that started empty (maps without their `@`, and
    /// numbers; deprecated), printed at the end after the maps.
    auto: Vec<String>,
    names: Vec<String>,
    blocks: Vec<Compiled>,
    /// BEGIN's output, printed once tracing begins.
    begun: Vec<Printed>,
    /// What the compiler warns of (deprecated forms), one line each.
    warnings: Vec<String>,
    /// The interval blocks' next runs, from the attach.
    intervals: Vec<Due>,
    ended: bool,
    /// A BEGIN block called `exit()`.
    exited_in_begin: bool,
    /// `comm` of each process seen (`/proc/PID/comm`), read once (again
    /// after an exec).
    comms: std::collections::HashMap<Pid, String>,
    /// A replay's names of processes, as they were recorded: `comm` is
    /// theirs, not `/proc`'s.
    recorded_names: Option<crate::record::Names>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("sources", &self.names)
            .field(
                "blocks",
                &self.blocks.iter().map(Compiled::name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The name of process `pid` (`/proc/PID/comm`, as bpftrace's `comm`),
/// read once per process.
fn comm_of(comms: &mut std::collections::HashMap<Pid, String>, pid: Pid) -> String {
    comms
        .entry(pid)
        .or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim_end_matches('\n').to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// `script line 3, column 5: …`: where in a script something is.
fn at(name: &str, (line, column): (usize, usize), msg: impl fmt::Display) -> String {
    format!("{name} line {line}, column {column}: {msg}")
}

/// A script error before tracing: `script line 3, column 5: …`.
fn located(name: &str, pos: (usize, usize), msg: impl fmt::Display) -> Error {
    Error::Script(at(name, pos, msg))
}

/// The names a script may mean by an unknown one: the built-in variables
/// and functions, its locals and its maps.
fn candidates(names: &source::Names, globals: &[String]) -> Vec<String> {
    HIT_VARS
        .iter()
        .chain(&RETURN_VARS)
        .chain(&FUNCTIONS)
        .map(|s| s.to_string())
        .chain(names.locals.iter().cloned())
        .chain(globals.iter().cloned())
        .chain(names.maps.iter().map(|(m, _)| format!("@{m}")))
        .collect()
}

/// ` (did you mean tid?)`, when a candidate is close to `word`.
fn did_you_mean(word: &str, candidates: &[String]) -> String {
    // A map is compared without its sigil: `totl` is a typo of `@total`.
    let bare: Vec<&str> = candidates
        .iter()
        .map(|c| c.strip_prefix('@').unwrap_or(c))
        .collect();
    let word = word.strip_prefix('@').unwrap_or(word);
    crate::symbols::modules::closest(word, bare.iter().copied())
        .and_then(|c| bare.iter().position(|b| *b == c))
        .map(|i| format!(" (did you mean {}?)", candidates[i]))
        .unwrap_or_default()
}

impl Script {
    /// Splits and compiles the sources, runs their BEGIN blocks (their output
    /// is kept for [`ScriptListener`] to print once tracing begins), and
    /// checks every probe spec and every name.
    pub fn compile(sources: &[ScriptSource], limits: Limits) -> Result<Script> {
        let ctx: Shared = Rc::new(RefCell::new(Ctx {
            string_limit: limits.string,
            stack_depth: limits.stack,
            ..Ctx::default()
        }));
        let engine = new_engine(&ctx, limits);
        let mut script = Script {
            engine,
            ctx,
            scope: Scope::new(),
            maps: Vec::new(),
            auto: Vec::new(),
            names: sources.iter().map(|s| s.name.clone()).collect(),
            blocks: Vec::new(),
            begun: Vec::new(),
            warnings: Vec::new(),
            intervals: Vec::new(),
            ended: false,
            exited_in_begin: false,
            comms: Default::default(),
            recorded_names: None,
        };
        let mut all = Vec::new();
        let mut names = Vec::new();
        for (i, src) in sources.iter().enumerate() {
            let (blocks, n) = source::parse(&src.text)
                .map_err(|e| located(&src.name, (e.line, e.column), e.message))?;
            if blocks.is_empty() {
                return Err(Error::Script(format!(
                    "{}: no blocks; a script is `PROBE {{ … }}` blocks",
                    src.name
                )));
            }
            for pos in &n.old_hists {
                script.warnings.push(at(
                    &src.name,
                    *pos,
                    "hist(x) without a map is deprecated; write @name = hist(x)",
                ));
            }
            all.extend(blocks.into_iter().map(|b| (i, b)));
            names.push(n);
        }
        // A map no block assigns is a typo: bpftrace refuses it too.
        let assigned: Vec<String> = names
            .iter()
            .flat_map(|n| n.assigned.iter().map(|m| format!("@{m}")))
            .collect();
        for (i, n) in names.iter().enumerate() {
            for (map, pos) in &n.maps {
                if !assigned.contains(&format!("@{map}")) {
                    return Err(located(
                        &sources[i].name,
                        *pos,
                        format!(
                            "unknown map \"@{map}\": no block assigns it{}",
                            did_you_mean(map, &assigned)
                        ),
                    ));
                }
            }
        }
        // The maps, by name (as bpftrace prints them), each once.
        let mut maps: Vec<&String> = names
            .iter()
            .flat_map(|n| n.maps.iter().map(|(m, _)| m))
            .collect();
        maps.sort();
        maps.dedup();
        for m in maps {
            let var = format!("_m_{m}");
            script
                .scope
                .push(var.clone(), Table::named(format!("@{m}")));
            script.maps.push(var);
        }
        // BEGIN first (it declares globals the others may use), END last (it
        // sees every map the probe blocks made).
        let rank = |h: &Header| match h {
            Header::Begin => 0,
            Header::End => 2,
            Header::Entry(_) | Header::Return(_) | Header::Interval(_) => 1,
        };
        all.sort_by_key(|(_, b)| rank(&b.header));
        for (source, block) in all {
            let pos = (block.line, block.column);
            if let Header::Entry(spec) | Header::Return(spec) = &block.header {
                let parsed: crate::ProbeSpec = spec
                    .parse()
                    .map_err(|e| located(&sources[source].name, pos, e))?;
                if matches!(block.header, Header::Return(_)) && !parsed.is_function() {
                    return Err(located(
                        &sources[source].name,
                        pos,
                        format!("{spec} is not a function probe: it has no return"),
                    ));
                }
            }
            if block.ustack && !matches!(block.header, Header::Entry(_) | Header::Return(_)) {
                return Err(located(
                    &sources[source].name,
                    pos,
                    "ustack is only known in a probe block",
                ));
            }
            let compiled = script.compile_block(source, block, &names[source])?;
            if let Header::Interval(period) = compiled.header {
                script.intervals.push(Due {
                    block: script.blocks.len(),
                    period,
                    next: Instant::now(),
                });
            }
            script.blocks.push(compiled);
            if script
                .blocks
                .last()
                .is_some_and(|b| b.header == Header::Begin)
            {
                let i = script.blocks.len() - 1;
                let printed = script.run_global(i)?;
                script.begun.extend(printed);
                // BEGIN runs before rtrace's signal handlers are installed
                // (module docs), so a request to stop now is its exit().
                script.exited_in_begin |= crate::sys::signal::detach_requested().is_some();
            }
        }
        Ok(script)
    }

    /// Runs over a replay: `comm` is the recorded name of the process
    /// (`names`), and memory is what each hit's record holds.
    pub fn replaying(&mut self, names: crate::record::Names) {
        self.recorded_names = Some(names);
    }

    /// Whether the script has interval blocks (which run on a live run's
    /// clock).
    pub fn has_intervals(&self) -> bool {
        !self.intervals.is_empty()
    }

    /// `comm` of process `pid`.
    fn comm(&mut self, pid: Pid) -> String {
        match &self.recorded_names {
            Some(names) => names
                .get(crate::output::timeline::Named::Process(pid))
                .unwrap_or_default(),
            None => comm_of(&mut self.comms, pid),
        }
    }

    /// Whether a BEGIN block called `exit()`: as in bpftrace, the script
    /// ends before any probe fires: nothing is launched or attached to,
    /// END runs and the maps are printed
    /// ([`ScriptListener::end_before_tracing`]).
    pub fn exited_in_begin(&self) -> bool {
        self.exited_in_begin
    }

    /// What the compiler warns of (deprecated forms): `script line 1,
    /// column 8: …`, one line each, for the command line to say at once.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Hands the compiler's warnings to [`ScriptListener`], which prints
    /// them (as `warning` events in JSON) once tracing has begun, before
    /// BEGIN's output.
    pub fn defer_warnings(&mut self) {
        let warnings = std::mem::take(&mut self.warnings);
        let begun = std::mem::take(&mut self.begun);
        self.begun = warnings
            .into_iter()
            .map(Printed::Warning)
            .chain(begun)
            .collect();
    }

    fn compile_block(
        &mut self,
        source: usize,
        block: Block,
        names: &source::Names,
    ) -> Result<Compiled> {
        let name = self.names[source].clone();
        let (hit_vars, return_vars): (&[&str], &[&str]) = match block.header {
            Header::Begin | Header::End | Header::Interval(_) => (&[], &[]),
            Header::Entry(_) => (&HIT_VARS, &[]),
            Header::Return(_) => (&HIT_VARS, &RETURN_VARS),
        };
        let ast = loop {
            let mut scope = self.scope.clone();
            // Variables, not constants: the optimizer would fold a constant's
            // placeholder value into the code.
            for v in hit_vars.iter().chain(return_vars) {
                scope.push(*v, ());
            }
            match self.engine.compile_with_scope(&scope, &block.code) {
                Ok(ast) => break ast,
                Err(e) => {
                    let pos = e.position();
                    let pos = match (pos.line(), pos.position()) {
                        (Some(l), Some(c)) => block.position(l, c),
                        (Some(l), None) => (l, 1),
                        _ => (block.line, block.column),
                    };
                    match e.err_type() {
                        ParseErrorType::VariableUndefined(v) => {
                            if HIT_VARS.contains(&v.as_str()) || RETURN_VARS.contains(&v.as_str()) {
                                let only = if RETURN_VARS.contains(&v.as_str()) {
                                    "a :return block"
                                } else {
                                    "a probe block"
                                };
                                return Err(located(
                                    &name,
                                    pos,
                                    format!("`{v}` is only known in {only}"),
                                ));
                            }
                            match names.bare_assigned.iter().find(|(n, _)| n == v) {
                                // Assigned without `let`: a map without its
                                // `@`, as scripts wrote them before.
                                Some((_, first)) => {
                                    self.warnings.push(at(
                                        &name,
                                        *first,
                                        format!(
                                            "map \"{v}\" without its @ is deprecated; write @{v}"
                                        ),
                                    ));
                                    self.scope.push(v.clone(), Table::named(v.clone()));
                                    self.auto.push(v.clone());
                                }
                                None => {
                                    let globals: Vec<String> = self
                                        .scope
                                        .iter_raw()
                                        .map(|(n, _, _)| n.to_string())
                                        .filter(|n| !n.starts_with('_'))
                                        .collect();
                                    let candidates = candidates(names, &globals);
                                    return Err(located(
                                        &name,
                                        pos,
                                        format!(
                                            "unknown name \"{v}\"{}",
                                            did_you_mean(v, &candidates)
                                        ),
                                    ));
                                }
                            }
                        }
                        other => return Err(located(&name, pos, other)),
                    }
                }
            }
        };
        Ok(Compiled {
            source,
            line: block.line,
            column: block.column,
            header: block.header.clone(),
            ast,
            block,
            errors: 0,
        })
    }

    /// The probe specs the script names, each once, in order, with whether
    /// it has entry and return blocks.
    pub fn probes(&self) -> Vec<(String, bool, bool)> {
        let mut out: Vec<(String, bool, bool)> = Vec::new();
        for b in &self.blocks {
            let (spec, entry) = match &b.header {
                Header::Entry(s) => (s, true),
                Header::Return(s) => (s, false),
                Header::Begin | Header::End | Header::Interval(_) => continue,
            };
            match out.iter_mut().find(|(s, _, _)| s == spec) {
                Some(p) if entry => p.1 = true,
                Some(p) => p.2 = true,
                None => out.push((spec.clone(), entry, !entry)),
            }
        }
        out
    }

    /// True when a block of probe `header` may read the tracee's memory
    /// (`str(…)`, `read(…)`): a return block that does needs the thread
    /// stopped at the return. (A name that merely ends so, `mystr(`,
    /// counts too: a stop is never wrong.)
    fn reads_memory(&self, header: &Header) -> bool {
        let reads = |code: &str| {
            ["str", "read"].iter().any(|f| {
                code.match_indices(f)
                    .any(|(at, _)| code[at + f.len()..].trim_start().starts_with('('))
            })
        };
        self.blocks
            .iter()
            .any(|b| &b.header == header && reads(&b.block.code))
    }

    /// True when a block of probe `header` uses `ustack`.
    fn uses_ustack(&self, header: &Header) -> bool {
        self.blocks
            .iter()
            .any(|b| &b.header == header && b.block.ustack)
    }

    /// Runs block `i` with the globals, keeping what it declares (BEGIN).
    fn run_global(&mut self, i: usize) -> Result<Vec<Printed>> {
        {
            let mut ctx = self.ctx.borrow_mut();
            ctx.pid = None;
            ctx.recorded = None;
            ctx.args = None;
            ctx.ustack = None;
            ctx.block = self.blocks[i].name();
        }
        let r = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &self.blocks[i].ast);
        let mut printed: Vec<Printed> = self.ctx.borrow_mut().printed.drain(..).collect();
        if let Err(e) = r {
            let b = &self.blocks[i];
            if stopped(&e) {
                printed.push(Printed::Warning(self.stopped_at(b, &e)));
                return Ok(printed);
            }
            return match fatal(&e) {
                true => Err(self.limit_error(b, &e)),
                false => {
                    printed.push(Printed::Warning(self.describe(b, &e)));
                    Ok(printed)
                }
            };
        }
        Ok(printed)
    }

    /// Runs the interval blocks whose time has come (each once, however
    /// many periods went by), unless tracing is ending.
    fn run_intervals(&mut self, now: Instant) -> Result<Vec<Printed>> {
        let mut printed = Vec::new();
        for d in 0..self.intervals.len() {
            if self.ended || crate::sys::signal::detach_requested().is_some() {
                break;
            }
            let due = &mut self.intervals[d];
            if now < due.next {
                continue;
            }
            // Periods are at most a day (source::MAX_INTERVAL), so these
            // sums stay far inside `Instant`; they are checked all the same
            // (an overflow would panic), a deadline past its end being due
            // at once.
            due.next = match due.next.checked_add(due.period) {
                Some(next) if next > now => next,
                _ => now.checked_add(due.period).unwrap_or(now),
            };
            let i = due.block;
            printed.extend(self.run_global(i)?);
        }
        Ok(printed)
    }

    /// Starts the interval blocks' clocks (tracing begins).
    fn start_intervals(&mut self, now: Instant) {
        for d in &mut self.intervals {
            d.next = now.checked_add(d.period).unwrap_or(now);
        }
    }

    /// The shortest interval, if the script has interval blocks.
    fn shortest_interval(&self) -> Option<Duration> {
        self.intervals.iter().map(|d| d.period).min()
    }

    /// `script line 1, column 8: block work stopped by SIGINT`: where a run
    /// was when a signal asked rtrace to stop.
    fn stopped_at(&self, b: &Compiled, e: &EvalAltResult) -> String {
        let by = crate::sys::signal::detach_requested()
            .map_or_else(|| "a request to stop".into(), crate::sys::signal::name);
        at(
            &self.names[b.source],
            b.at(e.position()),
            format!("block {} stopped by {by}", b.name()),
        )
    }

    fn describe(&self, b: &Compiled, e: &EvalAltResult) -> String {
        at(&self.names[b.source], b.at(e.position()), message(e))
    }

    fn limit_error(&self, b: &Compiled, e: &EvalAltResult) -> Error {
        let what = match e {
            EvalAltResult::ErrorTooManyOperations(_) => format!(
                "ran past its limit of {} operations (a loop that never ends?); \
                 raise --script-ops if it is meant to",
                self.engine.max_operations()
            ),
            _ => format!("ran past a script limit: {}", message(e)),
        };
        located(
            &self.names[b.source],
            b.at(e.position()),
            format!("block {} {what}", b.name()),
        )
    }

    /// Runs every block with `header` for one hit, with `vars` set; true when
    /// one of them returned `true`.
    fn run_probe(&mut self, header: &Header, run: &Run<'_>) -> Result<(bool, Vec<Printed>)> {
        let mut show = false;
        let mut printed = Vec::new();
        for i in 0..self.blocks.len() {
            if &self.blocks[i].header != header {
                continue;
            }
            {
                let mut ctx = self.ctx.borrow_mut();
                ctx.pid = Some(run.mem_pid);
                // (Live, memory is the process's: a return taken from the
                // stub's record has only what the printers asked of it.)
                ctx.recorded = match self.recorded_names {
                    Some(_) => run.recorded.cloned(),
                    None => None,
                };
                ctx.args = Some(run.args);
                ctx.ustack = run.ustack.clone();
                ctx.block = self.blocks[i].name();
            }
            let base = self.scope.len();
            let comm = self.comm(run.pid);
            self.scope
                .push_constant("tid", INT::from(run.tid.as_raw()))
                .push_constant("pid", INT::from(run.pid.as_raw()))
                .push_constant("probe", run.probe.to_string())
                .push_constant("func", run.func.to_string())
                .push_constant("time", nanos(run.time))
                .push_constant("nsecs", nanos(run.time))
                .push_constant("comm", comm);
            if let Some((retval, duration)) = run.ret {
                self.scope
                    .push_constant("retval", retval)
                    .push_constant("duration", nanos(duration));
            }
            let r = self
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut self.scope, &self.blocks[i].ast);
            self.scope.rewind(base);
            printed.append(&mut self.ctx.borrow_mut().printed);
            match r {
                Ok(v) => show |= v.as_bool() == Ok(true),
                Err(e) if stopped(&e) => {
                    // Tracing is ending: the other blocks of this hit do not run.
                    printed.push(Printed::Warning(self.stopped_at(&self.blocks[i], &e)));
                    return Ok((false, printed));
                }
                Err(e) if fatal(&e) => return Err(self.limit_error(&self.blocks[i], &e)),
                Err(e) => {
                    let b = &self.blocks[i];
                    if b.errors == 0 {
                        printed.push(Printed::Warning(format!(
                            "{} (reported once for this block; later errors are counted)",
                            self.describe(b, &e)
                        )));
                    }
                    self.blocks[i].errors += 1;
                }
            }
        }
        Ok((show, printed))
    }

    /// Runs the END blocks and lists what is left to print: their output,
    /// the maps, the global numbers and the histograms, and the error counts.
    fn finish(&mut self) -> Result<Vec<ScriptItem>> {
        let mut items = Vec::new();
        if std::mem::replace(&mut self.ended, true) {
            return Ok(items);
        }
        for i in 0..self.blocks.len() {
            if self.blocks[i].header == Header::End {
                // After a stop request, the END blocks left are not begun:
                // what the maps hold is printed at once.
                if crate::sys::signal::stop_requested() {
                    break;
                }
                for p in self.run_global(i)? {
                    items.push(printed_item(p, None));
                }
            }
        }
        for var in self.maps.iter().chain(&self.auto) {
            let Some(v) = self.scope.get(var) else {
                continue;
            };
            if let Some(t) = v.read_lock::<Table>() {
                items.extend(table_items(&t));
            } else if !v.is_unit() {
                items.push(ScriptItem::Global {
                    name: var.clone(),
                    value: value(v),
                });
            }
        }
        for (name, hist) in std::mem::take(&mut self.ctx.borrow_mut().hists) {
            items.push(ScriptItem::Hist {
                name,
                key: None,
                hist: Box::new(ScriptHist::Log2(Box::new(hist))),
            });
        }
        for b in &self.blocks {
            if b.errors > 1 {
                items.push(ScriptItem::Warning(at(
                    &self.names[b.source],
                    (b.line, b.column),
                    format!("block {} failed {} times", b.name(), b.errors),
                )));
            }
        }
        Ok(items)
    }
}

fn printed_item(p: Printed, run: Option<&Run<'_>>) -> ScriptItem {
    match p {
        Printed::Line(text) => ScriptItem::Print {
            pid: run.map(|r| r.pid),
            tid: run.map(|r| r.tid),
            text,
        },
        Printed::Warning(w) => ScriptItem::Warning(w),
        Printed::Item(item) => item,
    }
}

/// Rhai's message without the position it appends (the line is said first).
/// Errors from rtrace's own functions (`str`, `arg`…) lose Rhai's
/// `Runtime error: ` prefix: they say what went wrong themselves.
fn message(e: &EvalAltResult) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" (line ") {
        Some(at) => &msg[..at],
        None => &msg,
    };
    msg.strip_prefix("Runtime error: ")
        .unwrap_or(msg)
        .to_string()
}

/// True for a run ended by a stop request (see [`STOP_CHECK_OPS`]).
fn stopped(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorTerminated(token, _) => {
            token.clone().into_string().is_ok_and(|t| t == STOPPED)
        }
        _ => false,
    }
}

/// True for errors that mean the script must stop: its limits.
fn fatal(e: &EvalAltResult) -> bool {
    matches!(
        e,
        EvalAltResult::ErrorTooManyOperations(_)
            | EvalAltResult::ErrorStackOverflow(_)
            | EvalAltResult::ErrorDataTooLarge(..)
    )
}

fn nanos(d: Duration) -> INT {
    INT::try_from(d.as_nanos()).unwrap_or(INT::MAX)
}

fn value(v: &Dynamic) -> ScriptValue {
    if let Ok(i) = v.as_int() {
        ScriptValue::Int(i)
    } else if let Ok(f) = v.as_float() {
        ScriptValue::Float(f)
    } else if let Ok(b) = v.as_bool() {
        ScriptValue::Bool(b)
    } else {
        ScriptValue::Text(v.to_string())
    }
}

/// What one run of the probe blocks sees.
struct Run<'a> {
    pid: Pid,
    /// Whose memory `str` and `read` read (the address space's process).
    mem_pid: Pid,
    /// What the hit's record holds of that memory, when it is a record.
    recorded: Option<&'a crate::handler::Captured>,
    tid: crate::addr::Tid,
    probe: &'a str,
    func: &'a str,
    time: Duration,
    args: [u64; 6],
    ret: Option<(INT, Duration)>,
    /// The stack at the entry, as `ustack` shows it, when a block uses it.
    ustack: Option<String>,
}

/// What an entry leaves for the return, in the probe's data slot.
struct Call {
    regs: Regs,
    /// The function's signature, for the typed return value.
    known: Known,
    time: Duration,
    /// The entry block's verdict (None: the probe has no entry block).
    show: Option<bool>,
    /// The printer's own data for the call, when its entry was printed.
    printed: Option<Box<dyn Any>>,
    /// The stack at the entry (with the depth the printer shows), for a call
    /// the return block may print whole: at the return it is gone.
    stack: Option<(usize, Rc<crate::unwind::Stack>)>,
    /// The entry's `ustack`, for the return block.
    ustack: Option<String>,
    /// What a replayed entry's record holds of memory: the return block
    /// reads it too (after the return's own).
    recorded: Option<crate::handler::Captured>,
}

/// A stack as bpftrace's `ustack` prints it: a newline, then one frame a
/// line, `func+offset` (decimal) indented by 8, or the address where no
/// symbol covers the code.
fn ustack_text(stack: &crate::unwind::Stack) -> String {
    let mut s = String::from("\n");
    for f in &stack.frames {
        match &f.symbol {
            Some(sym) => s.push_str(&format!("        {sym}+{}\n", f.offset)),
            None => s.push_str(&format!("        {}\n", f.address)),
        }
    }
    s
}

/// The handler of one probe spec of a script: runs its entry and return
/// blocks, and hands the calls they let through to the printer.
pub struct ScriptProbe {
    script: Rc<RefCell<Script>>,
    printer: Rc<RefCell<Printer>>,
    entry: Option<Header>,
    ret: Option<Header>,
    /// False when `-s` prints this spec already.
    print_calls: bool,
    /// Signatures, for `retval` as the function's type reads it.
    renderer: Renderer,
}

impl ScriptProbe {
    /// The handler of `spec`'s blocks in `script`; `print_calls` is false when
    /// the calls are printed by another probe (`-s` with the same spec).
    pub fn new(
        script: Rc<RefCell<Script>>,
        spec: &str,
        printer: Rc<RefCell<Printer>>,
        print_calls: bool,
    ) -> ScriptProbe {
        let (entry, ret) = {
            let s = script.borrow();
            let has = |h: &Header| s.blocks.iter().any(|b| &b.header == h);
            let e = Header::Entry(spec.to_string());
            let r = Header::Return(spec.to_string());
            (has(&e).then_some(e), has(&r).then_some(r))
        };
        ScriptProbe {
            script,
            printer,
            entry,
            ret,
            print_calls,
            renderer: Renderer::new(0),
        }
    }

    fn emit(&self, printed: Vec<Printed>, run: &Run<'_>) -> Result<()> {
        let mut printer = self.printer.borrow_mut();
        for p in printed {
            printer.script(&printed_item(p, Some(run)), run.time)?;
        }
        Ok(())
    }
}

/// The return value as its type reads it (an `int` -1 is -1, not
/// 4294967295), as JSON's `retval`; rax as a signed integer when unknown.
fn typed_retval(renderer: &Renderer, known: &Known, ret: &Return<'_>) -> INT {
    match renderer.retval(Some(known), ret).number {
        Number::Signed(v) => v,
        Number::Unsigned(v) => v as INT,
        Number::None => ret.retval(),
    }
}

fn args_of(regs: &Regs) -> [u64; 6] {
    std::array::from_fn(|n| regs.arg(n).unwrap_or(0))
}

impl Handler for ScriptProbe {
    fn fast(
        &mut self,
        _: &crate::handler::Site,
        _: Option<&crate::symbols::Module>,
    ) -> crate::handler::Fast {
        crate::handler::Fast::No("a script may read any memory of the stopped thread".into())
    }

    /// A return is taken from the return stub's record unless the return
    /// block reads memory (`str(retval)`), or the whole call may be
    /// printed at its return (only a return block decides), whose entry's
    /// strings are read then. What the printer needs of it otherwise.
    fn returns(
        &mut self,
        site: &crate::handler::Site,
        module: Option<&crate::symbols::Module>,
    ) -> crate::handler::Returns {
        use crate::handler::Returns;
        if let Some(h) = &self.ret {
            if self.script.borrow().reads_memory(h) || (self.entry.is_none() && self.print_calls) {
                return Returns::Stop;
            }
        }
        let nothing = Returns::Record {
            string: 0,
            errno: false,
        };
        match self.print_calls {
            true => Returns::both(nothing, self.printer.borrow_mut().returns(site, module)),
            false => nothing,
        }
    }

    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        let site = hit.site().clone();
        let ustack = {
            let s = self.script.borrow();
            let uses = |h: &Option<Header>| h.as_ref().is_some_and(|h| s.uses_ustack(h));
            (uses(&self.entry) || uses(&self.ret))
                .then(|| ustack_text(&hit.user_stack(s.ctx.borrow().stack_depth)))
        };
        let run = Run {
            pid: hit.pid(),
            mem_pid: hit.mem.live().map_or(hit.pid, |m| m.pid()),
            recorded: hit.mem.captured(),
            tid: hit.tid(),
            probe: &site.probe,
            func: &site.symbol,
            time: hit.time(),
            args: args_of(hit.regs()),
            ret: None,
            ustack,
        };
        let show = match &self.entry {
            Some(h) => {
                // What was printed before this hit is out before the block
                // runs (a block may run long: a loop until Ctrl-C; the
                // returns the ring held were printed just now).
                self.printer.borrow_mut().flush()?;
                let (show, printed) = self.script.borrow_mut().run_probe(h, &run)?;
                self.emit(printed, &run)?;
                Some(show)
            }
            None => None,
        };
        let mut printed = None;
        if self.print_calls && show == Some(true) {
            self.printer.borrow_mut().on_entry(hit)?;
            printed = hit.data.take();
        }
        let returns = site.kind == (ProbeKind::Function { returns: true });
        if returns && (self.ret.is_some() || printed.is_some()) {
            let known = match self.ret {
                Some(_) => self.renderer.known(hit),
                None => Known::Raw,
            };
            let may_print_at_return = show.is_none() && self.print_calls && self.ret.is_some();
            let depth = self.printer.borrow().stack_depth();
            let stack = match depth {
                Some(d) if may_print_at_return => Some((d, hit.user_stack(d))),
                _ => None,
            };
            let replaying = self.script.borrow().recorded_names.is_some();
            hit.set_data(Call {
                regs: *hit.regs(),
                known,
                time: hit.time(),
                show,
                printed,
                stack,
                ustack: run.ustack.clone(),
                recorded: hit.mem.captured().filter(|_| replaying).cloned(),
            });
        }
        Ok(())
    }

    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        let Some(call) = ret.take_data::<Call>() else {
            // The entry was not seen (a call in flight when a child was forked).
            return Ok(());
        };
        let site = ret.site().clone();
        // A replayed call's memory: the return's record, then the entry's.
        let both = call.recorded.as_ref().map(|entry| {
            let mut both = ret.mem.captured().cloned().unwrap_or_default();
            both.strings.extend(entry.strings.iter().cloned());
            both.buffers.extend(entry.buffers.iter().cloned());
            if both.stack.is_none() {
                both.stack = entry.stack.clone();
            }
            both
        });
        let run = Run {
            pid: ret.pid(),
            mem_pid: ret.mem.live().map_or(ret.pid, |m| m.pid()),
            recorded: both.as_ref().or(ret.mem.captured()),
            tid: ret.tid(),
            probe: &site.probe,
            func: &site.symbol,
            time: ret.time(),
            args: args_of(&call.regs),
            ret: Some((
                typed_retval(&self.renderer, &call.known, ret),
                ret.duration(),
            )),
            ustack: call.ustack.clone(),
        };
        let show_return = match &self.ret {
            Some(h) => {
                self.printer.borrow_mut().flush()?;
                let (show, printed) = self.script.borrow_mut().run_probe(h, &run)?;
                self.emit(printed, &run)?;
                show
            }
            None => false,
        };
        let mut printer = self.printer.borrow_mut();
        match call.show {
            Some(true) if self.print_calls => {
                ret.data = call.printed;
                printer.on_return(ret)
            }
            None if self.print_calls && show_return => {
                // Printed whole now: the entry as it was, then the return.
                let mut regs = call.regs;
                let mut dirty = false;
                let mut data = None;
                let mut hit = Hit {
                    pid: ret.pid,
                    tid: ret.tid,
                    site: ret.site,
                    regs: &mut regs,
                    regs_dirty: &mut dirty,
                    mem: ret.mem,
                    modules: ret.modules,
                    time: call.time,
                    data: &mut data,
                    returns: Default::default(),
                    stack: RefCell::new(call.stack),
                };
                printer.on_entry(&mut hit)?;
                ret.data = data;
                printer.on_return(ret)
            }
            _ => Ok(()),
        }
    }
}

/// A replay under a script: each recorded call goes to the script's probes
/// that name it (by the spec it was recorded under, or its function's
/// name, as `-s` filters a replay), every one of them, as a live run's
/// calls go to each probe on their address; the calls of the probes the
/// script does not name are not shown, as `rtrace -x` traces only the
/// script's.
pub struct ScriptReplay {
    printer: Rc<RefCell<Printer>>,
    /// Each spec of the script, its handler, and whether it named a call.
    probes: Vec<(String, ScriptProbe, bool)>,
    listener: ScriptListener,
    /// The script's specs, parsed once.
    parsed: Vec<Option<crate::symbols::ProbeSpec>>,
    /// The probes that name each site seen, by (probe id, address,
    /// offset), with the site's symbol and module they were found for.
    named: std::collections::HashMap<(usize, u64, u64), Named>,
}

/// The probes of a [`ScriptReplay`] that name one site.
struct Named {
    symbol: String,
    module: std::path::PathBuf,
    probes: Vec<usize>,
}

/// Whether probe spec `spec` names recorded site `site`: the spec it was
/// recorded under, its function's name, or what the spec would have
/// resolved to live (`libc:open` names `open` in `libc.so.6`, `str*`
/// names `strlen`, `work+0x8` that instruction of `work`).
fn names_site(
    spec: &str,
    parsed: Option<&crate::symbols::ProbeSpec>,
    site: &crate::handler::Site,
) -> bool {
    use crate::symbols::Target;
    if [&site.probe, &site.symbol, &site.name].contains(&&spec.to_string()) {
        return true;
    }
    let Some(parsed) = parsed else {
        return false;
    };
    let module = parsed
        .module
        .as_deref()
        .is_none_or(|q| crate::symbols::modules::qualifies(q, &site.module));
    let function = |f: &str| {
        crate::symbols::glob::matches(f, &site.symbol)
            || crate::symbols::glob::matches(f, &site.name)
    };
    module
        && match &parsed.target {
            Target::Function { name } => site.offset == 0 && function(name),
            Target::Offset {
                function: f,
                offset,
            } => site.offset == *offset && function(f),
            _ => false,
        }
}

/// What each probe of a [`ScriptReplay`] replay kept of a call at its entry,
/// by the probe's place.
struct Kept(Vec<(usize, Option<Box<dyn Any>>)>);

impl ScriptReplay {
    /// The replay of `script`'s probes, printing through `printer`.
    pub fn new(script: Script, printer: Rc<RefCell<Printer>>) -> ScriptReplay {
        let specs = script.probes();
        let script = Rc::new(RefCell::new(script));
        let probes: Vec<(String, ScriptProbe, bool)> = specs
            .into_iter()
            .map(|(spec, _, _)| {
                let handler = ScriptProbe::new(script.clone(), &spec, printer.clone(), true);
                (spec, handler, false)
            })
            .collect();
        let parsed = probes
            .iter()
            .map(|(spec, _, _)| spec.parse().ok())
            .collect();
        ScriptReplay {
            listener: ScriptListener::new(script, printer.clone()),
            printer,
            probes,
            parsed,
            named: Default::default(),
        }
    }

    /// The specs of the script that named no call, at the end.
    pub fn unmatched(&self) -> Vec<&str> {
        self.probes
            .iter()
            .filter(|(_, _, matched)| !matched)
            .map(|(spec, _, _)| spec.as_str())
            .collect()
    }

    /// The places of the script's probes that name `site`.
    fn naming(&mut self, site: &crate::handler::Site) -> Vec<usize> {
        let key = (site.id.0, site.address.get(), site.offset);
        if let Some(n) = self.named.get(&key) {
            if n.symbol == site.symbol && n.module == site.module {
                return n.probes.clone();
            }
        }
        let mut out = Vec::new();
        for (i, (spec, _, matched)) in self.probes.iter_mut().enumerate() {
            if names_site(spec, self.parsed[i].as_ref(), site) {
                *matched = true;
                out.push(i);
            }
        }
        let named = Named {
            symbol: site.symbol.clone(),
            module: site.module.clone(),
            probes: out.clone(),
        };
        self.named.insert(key, named);
        out
    }
}

impl Handler for ScriptReplay {
    fn on_entry(&mut self, hit: &mut Hit<'_>) -> Result<()> {
        // (The attach may have been left out by --from.)
        self.listener.begin(hit.time())?;
        let mut kept = Vec::new();
        for i in self.naming(hit.site()) {
            *hit.data = None;
            let handler = &mut self.probes[i].1;
            handler.on_entry(hit)?;
            handler.on_post(hit)?;
            kept.push((i, hit.data.take()));
        }
        if !kept.is_empty() {
            hit.set_data(Kept(kept));
        }
        Ok(())
    }
    fn on_return(&mut self, ret: &mut Return<'_>) -> Result<()> {
        self.listener.begin(ret.time())?;
        let Some(Kept(kept)) = ret.take_data::<Kept>() else {
            return Ok(());
        };
        for (i, data) in kept {
            ret.data = data;
            self.probes[i].1.on_return(ret)?;
        }
        Ok(())
    }
    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        if !matches!(event, Event::Attached { .. }) {
            self.listener.begin(time)?;
        }
        self.printer.borrow_mut().on_event(event, time)?;
        self.listener.on_event(event, time)
    }
    fn on_finish(&mut self) -> Result<()> {
        let time = self.printer.borrow().last_time();
        self.listener.begin(time)?;
        self.printer.borrow_mut().on_finish()?;
        self.listener.on_finish()
    }
}

/// The script's listener: prints BEGIN's output once tracing has begun, and
/// at the end runs END and prints the maps and histograms. Add it after the
/// printer's own listener, so that BEGIN's output follows the attach line.
pub struct ScriptListener {
    script: Rc<RefCell<Script>>,
    printer: Rc<RefCell<Printer>>,
    /// Tracing began (the attach event came): END runs at the end only then.
    attached: bool,
}

impl ScriptListener {
    /// The listener of `script`, printing through `printer`.
    pub fn new(script: Rc<RefCell<Script>>, printer: Rc<RefCell<Printer>>) -> ScriptListener {
        ScriptListener {
            script,
            printer,
            attached: false,
        }
    }

    /// Ends a script whose BEGIN called `exit()` with no tracing at all:
    /// prints BEGIN's output, runs END and prints the maps, as the attach
    /// event and the end of tracing would have.
    pub fn end_before_tracing(&mut self) -> Result<()> {
        self.attached = true;
        let begun = std::mem::take(&mut self.script.borrow_mut().begun);
        {
            let mut printer = self.printer.borrow_mut();
            let time = printer.last_time();
            for p in begun {
                printer.script(&printed_item(p, None), time)?;
            }
        }
        self.on_finish()
    }

    /// Tracing has begun (the attach, or a replay's first call when its
    /// filters left the attach out): BEGIN's output is printed, the
    /// interval blocks' clocks start, and END will run at the end. Once.
    pub fn begin(&mut self, time: Duration) -> Result<()> {
        if self.attached {
            return Ok(());
        }
        self.attached = true;
        self.script.borrow_mut().start_intervals(Instant::now());
        let begun = std::mem::take(&mut self.script.borrow_mut().begun);
        let mut printer = self.printer.borrow_mut();
        for p in begun {
            printer.script(&printed_item(p, None), time)?;
        }
        Ok(())
    }

    /// As if tracing had begun (a test's listener made after the attach).
    #[cfg(test)]
    pub(crate) fn begun(mut self) -> ScriptListener {
        self.attached = true;
        self
    }
}

impl Handler for ScriptListener {
    fn on_event(&mut self, event: &Event, time: Duration) -> Result<()> {
        // A new image has a new name.
        if let Event::Exec { pid, .. } = event {
            self.script.borrow_mut().comms.remove(pid);
        }
        if let Event::Attached { .. } = event {
            self.begin(time)?;
        }
        Ok(())
    }

    /// Runs the interval blocks whose time has come.
    fn on_idle(&mut self) -> Result<()> {
        if !self.attached {
            return Ok(());
        }
        let printed = self.script.borrow_mut().run_intervals(Instant::now())?;
        if printed.is_empty() {
            return Ok(());
        }
        let mut printer = self.printer.borrow_mut();
        let time = printer.last_time();
        for p in printed {
            printer.script(&printed_item(p, None), time)?;
        }
        printer.flush()
    }

    /// With interval blocks: [`Handler::on_idle`] at least every shortest
    /// period, even when the program does not stop.
    fn tick_interval(&self) -> Option<Duration> {
        self.script.borrow().shortest_interval()
    }

    /// With interval blocks, no flush before every wait on their account
    /// (the printer says how often it wants one).
    fn idle_interval(&self) -> Option<Duration> {
        self.script.borrow().shortest_interval()
    }

    fn on_finish(&mut self) -> Result<()> {
        // Setup failed (a probe that cannot be placed, before tracing
        // began): nothing ran, and END, which sums up a run, does not either.
        if !self.attached {
            return Ok(());
        }
        let items = self.script.borrow_mut().finish()?;
        let mut printer = self.printer.borrow_mut();
        let time = printer.last_time();
        for item in &items {
            printer.script(item, time)?;
        }
        printer.flush()
    }
}

#[cfg(test)]
mod tests;
