//! # pretrain-train
//!
//! The training engine: runs any objective on any model and backend with burn's optimizers
//! (AdamW, Adam, SGD; plus LARS), weight decay that skips biases and norms, warmup-cosine /
//! constant / step schedules with MAE's batch scaling rule, global-norm and value gradient
//! clipping, gradient accumulation, EMA target updates, a non-finite guard, and atomic,
//! exactly resumable checkpoints.
//!
//! - [`trainer`]: the [`Pretrainer`] builder, [`TrainConfig`], [`RunOptions`];
//! - [`step`]: one optimizer step ([`Stepper`]), shared by the loop and the benchmarks;
//! - [`optimizer`], [`schedule`], [`grads`]: the pieces burn lacks;
//! - [`precision`]: f32/bf16/f16 runs and dynamic loss scaling;
//! - [`checkpoint`], [`atomic`]: crash-safe checkpoints;
//! - [`loader`]: deterministic, prefetched batch order.

pub mod atomic;
pub mod checkpoint;
pub mod error;
pub mod grads;
pub mod interrupt;
pub mod launch;
pub mod loader;
pub mod msgpack;
pub mod optimizer;
pub mod parallel;
pub mod precision;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use atomic::{WriteError, write_atomic};
pub use error::{Result, TrainError};
pub use interrupt::stop_on_ctrl_c;
pub use optimizer::OptimizerConfig;
pub use parallel::DataParallel;
pub use precision::{LossScaler, Precision};
pub use schedule::{LrSchedule, scaled_lr};
pub use step::{StepKind, StepReport, Stepper};
pub use trainer::{Pretrainer, RunOptions, TrainConfig, TrainData, TrainObjective, TrainOutcome};

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod testing;
