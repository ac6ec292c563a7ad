//! # pretrain-fuzz
//!
//! Every reader and loader that takes a file from outside the program, as a fuzz target: a
//! function of arbitrary bytes that must return (an error is a fine answer) without panicking,
//! quickly, and without allocating far beyond the input's size.
//!
//! - [`targets`]: the targets, each with seed inputs made from the shipped samples;
//! - [`mutate`]: a seeded byte mutator;
//! - [`smoke`]: the stable-toolchain smoke run `cargo xtask test` includes (every seed, every
//!   committed regression input, then a few thousand seeded mutations per target).
//!
//! libFuzzer runs the same targets through the cargo-fuzz package in `fuzz/` (`cargo xtask
//! fuzz <target> --minutes M`); the `fuzz-seeds` binary writes its starting corpora.

pub mod mutate;
pub mod smoke;
pub mod targets;

pub use smoke::{Crash, SmokeReport, regressions, smoke};
pub use targets::{TARGETS, Target, fuzz, run, target};
