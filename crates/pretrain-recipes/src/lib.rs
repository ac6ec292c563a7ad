//! # pretrain-recipes
//!
//! Recipes: TOML files that say what to pre-train (data set, model preset and overrides,
//! objective, optimizer, schedule, steps, batch size, seed) and how to evaluate the result
//! (strategies, labels per class, seeds). The code that runs them lives here so `cargo xtask`,
//! the `pretrain` binary, the examples and a user's own program share one path:
//!
//! - [`recipe`]: the file format, the built-in recipes (`recipes/*.toml`, compiled in);
//! - [`pretrain`]: `run_pretrain`, on any compiled backend and precision;
//! - [`finetune`]: `run_finetune` on a run directory's encoder;
//! - [`generate`]: `run_generate`, text from a causal-LM run;
//! - [`few_shot`]: `run_few_shot`, a causal-LM run prompted with labeled examples;
//! - [`heldout`]: a causal LM's held-out bits per byte beside n-gram baselines;
//! - [`hf`], [`hf_import`]: runs to and from Hugging Face checkpoints (`export-hf`, `embed`,
//!   `import-hf`);
//! - [`objective`]: the objective kinds a recipe may name;
//! - [`models`], [`dataset`], [`data`]: the presets, the built-in data sets, and a recipe's
//!   data (built-in sets or a user's own sources);
//! - [`prepare`]: what `pretrain data prepare` turns into shards;
//! - [`overrides`]: preset configurations with a recipe's changes merged in, typos refused.

//!
//! A recipe pre-trained, then evaluated as its `[evaluate]` section says:
//!
//! ```no_run
//! use pretrain::backend::BackendKind;
//! use pretrain_recipes::{
//!     BuiltinDataset, FinetuneOptions, PretrainOptions, Recipe, run_finetune, run_pretrain,
//! };
//!
//! let mut recipe = Recipe::load("mae-fashion-mnist")?;
//! recipe.data.dataset = Some(BuiltinDataset::FashionMnistSample); // the shipped 100 images
//! recipe.train.steps = 20;
//! let options = PretrainOptions {
//!     out: "target/runs/mae-quick".into(),
//!     ..PretrainOptions::default()
//! };
//! let summary = run_pretrain(&recipe, BackendKind::Flex, &options)?;
//! let reports = run_finetune(&recipe, &recipe.evaluate, BackendKind::Flex, &FinetuneOptions {
//!     from: Some(summary.run_dir.clone()),
//!     out: summary.run_dir.join("finetune"),
//!     quiet: true,
//! })?;
//! for report in &reports {
//!     println!("{} {:?}: {:.3}", report.strategy, report.labels_per_class, report.accuracy_mean);
//! }
//! # Ok::<(), pretrain_recipes::RecipeError>(())
//! ```

pub mod data;
pub mod dataset;
pub mod error;
pub mod few_shot;
pub mod finetune;
pub mod generate;
pub mod heldout;
pub mod hf;
pub mod hf_import;
pub mod models;
pub mod objective;
pub mod overrides;
pub mod prepare;
pub mod pretrain;
pub mod recipe;

pub use dataset::BuiltinDataset;
pub use error::{RecipeError, Result};
pub use finetune::{FinetuneOptions, load_backbone, recipe_of_run, run_finetune};
pub use models::Preset;
pub use objective::ObjectiveKind;
pub use pretrain::{PretrainOptions, PretrainSummary, run_pretrain};
pub use recipe::{EvaluateSpec, Recipe};
