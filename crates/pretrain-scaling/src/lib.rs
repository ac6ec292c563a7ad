//! Scaling laws measured from a user's own runs: `pretrain scaling <recipe> --sizes ...
//! --flops ...` trains each model size at each compute budget ([`sweep`]) of a causal-LM or
//! masked-autoencoder recipe, counts FLOPs from the shapes ([`cost`]), fits Chinchilla's parametric law and IsoFLOP parabolas ([`fit`]) and
//! writes `scaling.json`, `scaling.md` and plots ([`report`]).
//!
//! ```no_run
//! use pretrain_scaling::{SweepOptions, run_scaling};
//!
//! let recipe = pretrain_recipes::Recipe::load("clm-shakespeare")?;
//! let options = SweepOptions {
//!     sizes: vec!["32x1".parse()?, "64x2".parse()?, "128x4".parse()?],
//!     flops: vec![1e12, 1e13],
//!     lrs: Vec::new(),
//!     seeds: 1,
//!     probe_labels: None,
//!     out: "target/scaling".into(),
//!     backend: pretrain::backend::BackendKind::Flex,
//!     quiet: true,
//!     stop: None,
//! };
//! let report = run_scaling(&recipe, &options, 200)?;
//! println!("{}", pretrain_scaling::report::markdown(&report));
//! # Ok::<(), pretrain_scaling::ScalingError>(())
//! ```

pub mod cost;
pub mod error;
pub mod fit;
pub mod report;
pub mod sweep;

pub use error::{Result, ScalingError};
pub use report::{ScalingReport, analyze};
pub use sweep::{Measure, SizeSpec, SweepOptions, SweepRuns, run_sweep};

use pretrain_recipes::Recipe;

/// Runs the sweep, fits what it measured (`resamples` bootstrap resamples) and writes the
/// report into `options.out`. When a run fails, the report of the runs before it is written
/// first, then the error returned.
pub fn run_scaling(
    recipe: &Recipe,
    options: &SweepOptions,
    resamples: usize,
) -> Result<ScalingReport> {
    let measure = Measure::of(recipe, options)?;
    let mut runs = SweepRuns::default();
    let outcome = run_sweep(recipe, options, &mut runs);
    let report = analyze(&recipe.name, measure, &runs, resamples, recipe.seed);
    report::write(&report, &options.out)?;
    outcome.map(|()| report)
}
