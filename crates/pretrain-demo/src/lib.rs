//! # pretrain-demo
//!
//! The project's acceptance demo (`pretrain demo`, `cargo xtask demo`), apart from the library
//! crates so that none of them pulls in plotting: recipes pre-trained on unlabeled data, then
//! compared at few labels against raw pixels, random initialization and training from scratch,
//! with the bars the project sets itself.
//!
//! - [`run`]: [`run_demo`], the comparison and `report.json`;
//! - [`baseline`]: raw-pixel logistic regression, the floor an image encoder must beat;
//! - [`causal`]: the causal-LM section (bits per byte against n-gram baselines, generations,
//!   few-shot prompting);
//! - [`checks`]: the bars and whether they held;
//! - [`report`]: the `report.md` a person reads;
//! - [`plots`]: the PNG plots (accuracy against labels, loss curves);
//! - [`pipeline`]: the data-pipeline demo (`pretrain data demo`).

pub mod baseline;
pub mod causal;
pub mod checks;
pub mod pipeline;
pub mod plots;
pub mod report;
pub mod run;

pub use checks::{Check, failed_bars, passed};
pub use report::markdown;
pub use run::{DemoConfig, DemoReport, DemoResult, Method, run_demo};
