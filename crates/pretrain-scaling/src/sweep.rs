//! The sweep: each model size trained at each compute budget (and learning rate and seed) from
//! one causal-LM recipe, each run in its own directory under `OUT/runs/`. A budget buys
//! `floor(C / (FLOPs per token x tokens per step))` steps; the cosine schedule spans exactly
//! those steps. A run that finished is read back instead of trained again, an interrupted one
//! resumes from its checkpoint, so a stopped sweep continues where it stopped.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pretrain::backend::BackendKind;
use pretrain::data::Named;
use pretrain::models::GptConfig;
use pretrain::train::{LrSchedule, TrainError};
use pretrain_recipes::heldout::HeldOutReport;
use pretrain_recipes::models::{self, DataInputs, ModelConfig, TextInputs};
use pretrain_recipes::pretrain::HELDOUT_FILE;
use pretrain_recipes::{ObjectiveKind, Preset, PretrainOptions, Recipe, RecipeError};
use serde::{Deserialize, Serialize};

use crate::cost::ModelCost;
use crate::error::{Result, ScalingError};

/// Where each run records what the sweep reads back.
pub const RUN_FILE: &str = "scaling-run.json";

/// One model size of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SizeSpec {
    /// A named GPT preset (`gpt-nano`, `gpt-micro`...), the recipe's other overrides kept.
    Preset(Preset),
    /// The recipe's architecture at another width and depth: `WIDTHxLAYERS[xHEADS]` (heads
    /// default to one per 32 channels, at least one).
    Ladder {
        /// `d_model`.
        width: usize,
        /// Blocks.
        layers: usize,
        /// Attention heads.
        heads: usize,
    },
}

impl SizeSpec {
    /// The name of the size (its directory under `runs/`).
    pub fn label(&self) -> String {
        match self {
            Self::Preset(p) => p.name().to_string(),
            Self::Ladder {
                width,
                layers,
                heads,
            } => format!("{width}x{layers}x{heads}"),
        }
    }
}

impl FromStr for SizeSpec {
    type Err = ScalingError;

    fn from_str(s: &str) -> Result<Self> {
        if let Ok(preset) = Preset::from_name(s) {
            return Ok(Self::Preset(preset));
        }
        let bad = |why: &str| {
            ScalingError::option(
                "--sizes",
                format!(
                    "{s:?} {why}: give a preset ({}) or WIDTHxLAYERS[xHEADS] such as 128x4",
                    Preset::names()
                ),
            )
        };
        let numbers: Vec<usize> = s
            .split('x')
            .map(|part| part.parse::<usize>().map_err(|_| bad("is not a size")))
            .collect::<Result<_>>()?;
        let (width, layers, heads) = match numbers[..] {
            [w, l] => (w, l, (w / 32).max(1)),
            [w, l, h] => (w, l, h),
            _ => return Err(bad("is not a size")),
        };
        if width == 0 || layers == 0 || heads == 0 || !width.is_multiple_of(heads) {
            return Err(bad("needs positive sizes and heads dividing the width"));
        }
        Ok(Self::Ladder {
            width,
            layers,
            heads,
        })
    }
}

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Model sizes.
    pub sizes: Vec<SizeSpec>,
    /// Compute budgets in training FLOPs.
    pub flops: Vec<f64>,
    /// Peak learning rates tried at each point (the best kept); empty: the recipe's.
    pub lrs: Vec<f64>,
    /// Seeds per point (the recipe's seed, plus one, ...).
    pub seeds: usize,
    /// The sweep's directory.
    pub out: PathBuf,
    /// Backend of the runs.
    pub backend: BackendKind,
    /// No progress bars.
    pub quiet: bool,
    /// Raised (by Ctrl-C) to stop the current run with a checkpoint and end the sweep.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What one run of the sweep measured (`runs/<size>/<budget>/.../scaling-run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The size's label.
    pub size: String,
    /// The compute budget asked for.
    pub budget: f64,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed of the run.
    pub seed: u64,
    /// Parameters and FLOPs per token.
    pub cost: ModelCost,
    /// Optimizer steps.
    pub steps: usize,
    /// Training tokens (`steps x tokens per step`).
    pub tokens: u64,
    /// FLOPs the run spent by the shape count (at most the budget).
    pub flops: f64,
    /// Kaplan's `6 N D` for the same run.
    pub kaplan_flops: f64,
    /// Held-out bits per byte at the end.
    pub heldout_bits_per_byte: f64,
    /// Held-out nats per token at the end.
    pub heldout_nats_per_token: f64,
    /// The run's directory.
    pub run_dir: PathBuf,
}

/// A point of the sweep that did not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The size's label.
    pub size: String,
    /// The budget (absent when the size itself failed).
    pub budget: Option<f64>,
    /// Why.
    pub reason: String,
}

/// Every run and every skipped point of a sweep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepRuns {
    /// Runs that finished.
    pub runs: Vec<RunRecord>,
    /// Points that could not run.
    pub skipped: Vec<Skipped>,
}

/// Checks what a sweep is asked before anything runs.
fn check_options(recipe: &Recipe, options: &SweepOptions) -> Result<()> {
    if recipe.objective.kind != ObjectiveKind::Clm {
        return Err(ScalingError::option(
            "recipe",
            format!(
                "{} pre-trains with {}; scaling sweeps run causal-LM (clm) recipes, whose \
                 FLOPs per token and held-out loss they measure",
                recipe.name, recipe.objective.kind
            ),
        ));
    }
    if recipe.data.holdout() <= 0.0 {
        return Err(ScalingError::option(
            "recipe",
            format!(
                "{}: data.holdout is 0; a sweep needs held-out documents",
                recipe.name
            ),
        ));
    }
    if options.sizes.is_empty() {
        return Err(ScalingError::option("--sizes", "give at least one size"));
    }
    if options.flops.is_empty() || options.flops.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
        return Err(ScalingError::option(
            "--flops",
            "give at least one positive, finite budget",
        ));
    }
    if options.lrs.iter().any(|lr| !(lr.is_finite() && *lr > 0.0)) {
        return Err(ScalingError::option(
            "--lrs",
            "learning rates must be positive",
        ));
    }
    if options.seeds == 0 {
        return Err(ScalingError::option("--seeds", "must be at least 1"));
    }
    Ok(())
}

/// `recipe` at `size`: the preset replaced, or the width, depth and heads overridden.
fn sized(recipe: &Recipe, size: &SizeSpec) -> Recipe {
    let mut recipe = recipe.clone();
    match size {
        SizeSpec::Preset(preset) => recipe.model.preset = *preset,
        SizeSpec::Ladder {
            width,
            layers,
            heads,
        } => {
            let mut overrides = match recipe.model.overrides.take() {
                serde_json::Value::Object(map) => map,
                _ => Default::default(),
            };
            overrides.insert("d_model".into(), (*width).into());
            overrides.insert("n_layer".into(), (*layers).into());
            overrides.insert("n_head".into(), (*heads).into());
            recipe.model.overrides = serde_json::Value::Object(overrides);
        }
    }
    recipe
}

/// The GPT a sized recipe builds for `vocab_size` tokens, checked buildable.
fn gpt_of(recipe: &Recipe, vocab_size: usize) -> Result<GptConfig> {
    let inputs = DataInputs::Text(TextInputs {
        vocab_size,
        max_tokens: recipe.data.max_tokens(),
    });
    match models::resolve(&recipe.model, inputs)? {
        ModelConfig::Decoder(config) => {
            config.validate()?;
            pretrain::models::size::check("GPT", config.num_params())?;
            Ok(config)
        }
        _ => Err(RecipeError::field(
            "model.preset",
            format!("{} is not a GPT; clm trains a decoder", recipe.model.preset),
        )
        .into()),
    }
}

/// Runs every point of the sweep (reusing finished runs), adding what ran and what could not
/// to `out` as it goes; a failing run stops the sweep with its error, `out` holding what
/// finished before it.
pub fn run_sweep(recipe: &Recipe, options: &SweepOptions, out: &mut SweepRuns) -> Result<()> {
    check_options(recipe, options)?;
    // The tokenizer every run trains the same way: its vocabulary sizes the models.
    let vocab_size = pretrain_recipes::data::pretrain_texts(&recipe.data)?
        .tokenizer()
        .vocab_size();
    let tokens_per_step =
        recipe.train.batch_size * recipe.train.accumulation.max(1) * recipe.data.max_tokens();
    let lrs = if options.lrs.is_empty() {
        vec![recipe.train.lr]
    } else {
        options.lrs.clone()
    };
    for size in &options.sizes {
        let label = size.label();
        let sized = sized(recipe, size);
        let config = match gpt_of(&sized, vocab_size) {
            Ok(config) => config,
            Err(e) => {
                out.skipped.push(Skipped {
                    size: label,
                    budget: None,
                    reason: format!("cannot build this size: {e}"),
                });
                continue;
            }
        };
        let cost = ModelCost::gpt(&config, recipe.data.max_tokens());
        let step_flops = cost.flops_per_token * tokens_per_step as f64;
        for &budget in &options.flops {
            let steps = (budget / step_flops).floor() as usize;
            if steps == 0 {
                out.skipped.push(Skipped {
                    size: label.clone(),
                    budget: Some(budget),
                    reason: format!(
                        "budget {budget:.3e} is below one step of this size ({step_flops:.3e} \
                         FLOPs)"
                    ),
                });
                continue;
            }
            for &lr in &lrs {
                for s in 0..options.seeds as u64 {
                    let point = Point {
                        label: &label,
                        budget,
                        lr,
                        seed: recipe.seed + s,
                        steps,
                        cost,
                        tokens: steps as u64 * tokens_per_step as u64,
                    };
                    out.runs.push(run_point(&sized, &point, options)?);
                }
            }
        }
    }
    Ok(())
}

/// One run's settings.
struct Point<'a> {
    label: &'a str,
    budget: f64,
    lr: f64,
    seed: u64,
    steps: usize,
    cost: ModelCost,
    tokens: u64,
}

impl Point<'_> {
    fn run_dir(&self, out: &Path, lrs: usize, seeds: usize) -> PathBuf {
        let mut dir = out
            .join("runs")
            .join(self.label)
            .join(format!("{:.3e}", self.budget));
        if lrs > 1 {
            dir = dir.join(format!("lr-{:e}", self.lr));
        }
        if seeds > 1 {
            dir = dir.join(format!("seed-{}", self.seed));
        }
        dir
    }
}

fn run_point(recipe: &Recipe, point: &Point, options: &SweepOptions) -> Result<RunRecord> {
    let run_dir = point.run_dir(&options.out, options.lrs.len(), options.seeds);
    let record_path = run_dir.join(RUN_FILE);
    let mut recipe = recipe.clone();
    recipe.name = format!("{}-{}-{:.3e}", recipe.name, point.label, point.budget);
    recipe.seed = point.seed;
    recipe.train.lr = point.lr;
    recipe.train.steps = point.steps;
    recipe.train.checkpoint_every = recipe.train.checkpoint_every.min(point.steps).max(1);
    // Warmup at most a tenth of the run, so the schedule fits the short runs too.
    if let LrSchedule::WarmupCosine { warmup_steps, .. } | LrSchedule::Constant { warmup_steps } =
        &mut recipe.train.schedule
    {
        *warmup_steps = (*warmup_steps).min(point.steps / 10);
    }
    // Few-shot prompting and evaluations are not part of a sweep.
    recipe.few_shot = None;
    if let Ok(text) = std::fs::read_to_string(&record_path) {
        // Reused only when it ran exactly this recipe (never a silently different point).
        let saved = pretrain_recipes::recipe_of_run(&run_dir)?;
        if saved != recipe {
            return Err(ScalingError::io(
                &run_dir.join(pretrain_recipes::pretrain::RECIPE_FILE),
                "this finished run was made with another recipe or settings than the sweep \
                 asks for now; remove its folder to run it again, or give another --out",
            ));
        }
        return serde_json::from_str(&text)
            .map_err(|e| ScalingError::io(&record_path, format!("unreadable: {e}")));
    }
    let run_options = PretrainOptions {
        out: run_dir.clone(),
        resume: run_dir
            .join(pretrain_recipes::pretrain::RECIPE_FILE)
            .is_file(),
        quiet: options.quiet,
        stop: options.stop.clone(),
        ..Default::default()
    };
    let heldout = match pretrain_recipes::run_pretrain(&recipe, options.backend, &run_options) {
        Ok(summary) if !summary.finished => return Err(ScalingError::Stopped { run_dir }),
        Ok(summary) => summary.heldout,
        // Finished before its record was written: the held-out report is on disk.
        Err(RecipeError::Train(TrainError::AlreadyDone { .. })) => None,
        Err(e) => return Err(e.into()),
    };
    let heldout = match heldout {
        Some(report) => report,
        None => read_heldout(&run_dir.join(HELDOUT_FILE))?,
    };
    let record = RunRecord {
        size: point.label.to_string(),
        budget: point.budget,
        lr: point.lr,
        seed: point.seed,
        cost: point.cost,
        steps: point.steps,
        tokens: point.tokens,
        flops: point.cost.flops_per_token * point.tokens as f64,
        kaplan_flops: point.cost.kaplan_flops_per_token() * point.tokens as f64,
        heldout_bits_per_byte: heldout.model_bits_per_byte,
        heldout_nats_per_token: heldout.model_bits_per_byte
            * heldout.bytes_per_token
            * std::f64::consts::LN_2,
        run_dir,
    };
    let text = serde_json::to_string_pretty(&record).expect("records serialize");
    std::fs::write(&record_path, text).map_err(|e| ScalingError::io(&record_path, e))?;
    Ok(record)
}

fn read_heldout(path: &Path) -> Result<HeldOutReport> {
    let text = std::fs::read_to_string(path).map_err(|e| ScalingError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ScalingError::io(path, format!("unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_presets_and_ladders_and_refuse_the_rest() {
        assert_eq!(
            "gpt-micro".parse::<SizeSpec>().unwrap(),
            SizeSpec::Preset(Preset::GptMicro)
        );
        assert_eq!(
            "128x4".parse::<SizeSpec>().unwrap(),
            SizeSpec::Ladder {
                width: 128,
                layers: 4,
                heads: 4
            }
        );
        assert_eq!("48x2x3".parse::<SizeSpec>().unwrap().label(), "48x2x3");
        assert_eq!("16x1".parse::<SizeSpec>().unwrap().label(), "16x1x1");
        for bad in ["", "big", "128", "0x2", "48x2x5", "1x2x3x4"] {
            let err = bad.parse::<SizeSpec>().unwrap_err().to_string();
            assert!(
                err.starts_with("--sizes:") && err.contains("WIDTHxLAYERS"),
                "{err}"
            );
        }
    }
}
