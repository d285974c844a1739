//! rtrace integration tests: one test binary, one module per area.
//!
//! `fixtures` builds the programs in `target-fixtures/` and runs them;
//! `harness_selftest` checks the fixtures and the harness themselves, so a
//! tracer test that fails points at the tracer.

mod events;
mod fixtures;
mod harness_selftest;

mod args;
mod attach;
mod callers;
mod cli;
mod concurrency;
mod debuginfo;
mod doc_examples;
mod errors;
mod examples;
mod fast;
mod generate;
mod handlers;
mod hist;
mod inject;
mod launch;
mod library;
mod lossless;
mod names;
mod oracle;
mod padding;
mod processes;
mod progress;
mod proto;
mod recording;
mod returns;
mod runaway;
mod safety;
mod scripts;
mod seccomp;
mod shapes;
mod signals;
mod stacks;
mod step;
mod timeline;
mod tui;
mod variants;
