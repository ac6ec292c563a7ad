//! # pretrain-train
//!
//! The training engine: runs any objective on any model and backend with burn's optimizers and
//! schedules, gradient clipping and accumulation, EMA target updates, a non-finite guard, and
//! atomic, resumable checkpoints.

pub mod atomic;

pub use atomic::{WriteError, write_atomic};
