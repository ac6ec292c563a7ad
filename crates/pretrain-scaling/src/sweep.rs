//! The sweep: each model size trained at each compute budget (and learning rate and seed) from
//! one recipe, each run in its own directory under `OUT/runs/`. A budget buys
//! `floor(C / (FLOPs per sample x samples per step))` steps; the cosine schedule spans exactly
//! those steps. A causal LM is measured by its held-out bits per byte, a masked autoencoder's
//! encoder by its linear-probe error at a fixed label budget. A run that finished is read back
//! instead of trained again, an interrupted one resumes from its checkpoint, so a stopped sweep
//! continues where it stopped.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pretrain::backend::BackendKind;
use pretrain::data::Named;
use pretrain::data::mask::masked_count;
use pretrain::finetune::Strategy;
use pretrain::models::{ImageEncoderConfig, MaeConfig};
use pretrain::objectives::MaeObjectiveConfig;
use pretrain::train::{LrSchedule, TrainError};
use pretrain_recipes::heldout::HeldOutReport;
use pretrain_recipes::models::{self, DataInputs, ModelConfig, TextInputs};
use pretrain_recipes::overrides::apply;
use pretrain_recipes::pretrain::HELDOUT_FILE;
use pretrain_recipes::{
    EvaluateSpec, FinetuneOptions, ObjectiveKind, Preset, PretrainOptions, Recipe, RecipeError,
};
use serde::{Deserialize, Serialize};

use crate::cost::ModelCost;
use crate::error::{Result, ScalingError};

/// Where each run records what the sweep reads back.
pub const RUN_FILE: &str = "scaling-run.json";

/// One model size of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SizeSpec {
    /// A named preset of the recipe's model family (`gpt-nano`, `gpt-micro`... or a ViT), the
    /// recipe's other overrides kept.
    Preset(Preset),
    /// The recipe's architecture at another width and depth: `WIDTHxLAYERS[xHEADS]` (heads
    /// default to one per 32 channels, at least one); for a ViT, the encoder's.
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

/// What a sweep measures at the end of each run: the loss its fits use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub enum Measure {
    /// A causal LM's held-out bits per byte; data counted in tokens.
    #[default]
    HeldOutBitsPerByte,
    /// A masked autoencoder's encoder: linear-probe error (1 - accuracy, mean over the
    /// recipe's evaluation seeds) with `labels_per_class` labels per class; data counted in
    /// images.
    ProbeError {
        /// Labeled training examples per class of the probe.
        labels_per_class: usize,
    },
}

impl Measure {
    /// What `recipe` is measured by in a sweep run with `options`; recipes of other
    /// objectives are refused.
    pub fn of(recipe: &Recipe, options: &SweepOptions) -> Result<Self> {
        match recipe.objective.kind {
            ObjectiveKind::Clm => {
                if options.probe_labels.is_some() {
                    return Err(ScalingError::option(
                        "--probe-labels",
                        format!(
                            "{} is a causal LM, measured by held-out bits per byte; probes \
                             measure image encoders (mae recipes)",
                            recipe.name
                        ),
                    ));
                }
                Ok(Self::HeldOutBitsPerByte)
            }
            ObjectiveKind::Mae => {
                let default = recipe.evaluate.labels_per_class.iter().min().copied();
                match options.probe_labels.or(default).unwrap_or(10) {
                    0 => Err(ScalingError::option("--probe-labels", "must be at least 1")),
                    labels_per_class => Ok(Self::ProbeError { labels_per_class }),
                }
            }
            other => Err(ScalingError::option(
                "recipe",
                format!(
                    "{} pre-trains with {other}; scaling sweeps run causal-LM (clm) recipes, \
                     measured by held-out bits per byte, and masked-autoencoder (mae) recipes, \
                     measured by linear-probe error",
                    recipe.name
                ),
            )),
        }
    }

    /// The measure, as axis labels and tables name it.
    pub fn name(&self) -> String {
        match self {
            Self::HeldOutBitsPerByte => "held-out bits per byte".into(),
            Self::ProbeError { labels_per_class } => {
                format!("linear-probe error ({labels_per_class} labels per class)")
            }
        }
    }

    /// What the training data are counted in.
    pub fn unit(&self) -> &'static str {
        match self {
            Self::HeldOutBitsPerByte => "tokens",
            Self::ProbeError { .. } => "images",
        }
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
    /// Labels per class of an image recipe's linear probe (default: the recipe's smallest
    /// `evaluate.labels_per_class`, else 10).
    pub probe_labels: Option<usize>,
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
    /// Parameters and FLOPs per sample.
    pub cost: ModelCost,
    /// Optimizer steps.
    pub steps: usize,
    /// Training samples (`steps x samples per step`): tokens, or images.
    #[serde(alias = "tokens")]
    pub samples: u64,
    /// FLOPs the run spent by the shape count (at most the budget).
    pub flops: f64,
    /// Kaplan's `6 N D` for the same run (language models only).
    pub kaplan_flops: Option<f64>,
    /// The measure at the end (what the fits use): held-out bits per byte, or linear-probe
    /// error.
    #[serde(alias = "heldout_bits_per_byte")]
    pub loss: f64,
    /// Held-out nats per token at the end (language models).
    pub heldout_nats_per_token: Option<f64>,
    /// Linear-probe accuracy (image encoders).
    pub probe_accuracy: Option<f64>,
    /// What `loss` is (records of language models from before image sweeps lack it).
    #[serde(default)]
    pub measure: Measure,
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
    let measure = Measure::of(recipe, options)?;
    if measure == Measure::HeldOutBitsPerByte && recipe.data.holdout() <= 0.0 {
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
            // The field names of the family's configuration (GptConfig, VitConfig).
            let (depth, heads_field) = match recipe.objective.kind {
                ObjectiveKind::Clm => ("n_layer", "n_head"),
                _ => ("depth", "n_heads"),
            };
            overrides.insert("d_model".into(), (*width).into());
            overrides.insert(depth.into(), (*layers).into());
            overrides.insert(heads_field.into(), (*heads).into());
            recipe.model.overrides = serde_json::Value::Object(overrides);
        }
    }
    recipe
}

/// The cost of the model a sized recipe builds for `inputs`, checked buildable.
fn cost_of(recipe: &Recipe, inputs: DataInputs) -> Result<ModelCost> {
    let not_family = |family: &str| -> ScalingError {
        RecipeError::field(
            "model.preset",
            format!(
                "{} is not a {family}; {} trains one",
                recipe.model.preset, recipe.objective.kind
            ),
        )
        .into()
    };
    match (
        recipe.objective.kind,
        models::resolve(&recipe.model, inputs)?,
    ) {
        (ObjectiveKind::Clm, ModelConfig::Decoder(config)) => {
            config.validate()?;
            Ok(ModelCost::gpt(&config, recipe.data.max_tokens()))
        }
        (ObjectiveKind::Clm, _) => Err(not_family("GPT")),
        (_, ModelConfig::Image(ImageEncoderConfig::Vit(vit))) => {
            // As the pre-training builds it: the recipe's objective overrides applied.
            let objective: MaeObjectiveConfig = apply(
                &MaeObjectiveConfig::new(MaeConfig::new(vit)),
                &recipe.objective.overrides,
                "objective.overrides",
            )?;
            objective.model.validate()?;
            let patches = objective.model.encoder.num_patches();
            let hidden = masked_count(patches, objective.mask_ratio)
                .map_err(|e| RecipeError::field("objective.overrides.mask_ratio", e.to_string()))?;
            Ok(ModelCost::mae(&objective.model, patches - hidden))
        }
        _ => Err(not_family("ViT")),
    }
}

/// What the models of a sweep are built for, and the samples (tokens or images) one
/// optimizer step trains on.
fn inputs_of(recipe: &Recipe, measure: Measure) -> Result<(DataInputs, usize)> {
    let batch = recipe.train.batch_size * recipe.train.accumulation.max(1);
    Ok(match measure {
        Measure::HeldOutBitsPerByte => {
            // The tokenizer every run trains the same way: its vocabulary sizes the models.
            let vocab_size = pretrain_recipes::data::pretrain_texts(&recipe.data, None)?
                .tokenizer()
                .vocab_size();
            let max_tokens = recipe.data.max_tokens();
            let inputs = DataInputs::Text(TextInputs {
                vocab_size,
                max_tokens,
            });
            (inputs, batch * max_tokens)
        }
        Measure::ProbeError { .. } => {
            let shape = pretrain_recipes::data::pretrain_images(&recipe.data)?.shape;
            (DataInputs::Images(shape), batch)
        }
    })
}

/// The most optimizer steps one point of a sweep may take: a budget beyond it (`--flops 1e40`
/// saturated the step count and trained for ever) is refused.
pub const MAX_STEPS: usize = 1_000_000_000;

/// Runs every point of the sweep (reusing finished runs), adding what ran and what could not
/// to `out` as it goes; a failing run stops the sweep with its error, `out` holding what
/// finished before it.
pub fn run_sweep(recipe: &Recipe, options: &SweepOptions, out: &mut SweepRuns) -> Result<()> {
    check_options(recipe, options)?;
    let measure = Measure::of(recipe, options)?;
    let (inputs, samples_per_step) = inputs_of(recipe, measure)?;
    let lrs = if options.lrs.is_empty() {
        vec![recipe.train.lr]
    } else {
        options.lrs.clone()
    };
    // Every size's cost first: a budget too large for any of them is refused before a run.
    let sizes: Vec<_> = options
        .sizes
        .iter()
        .map(|size| {
            let sized = sized(recipe, size);
            let cost = cost_of(&sized, inputs);
            (size.label(), sized, cost)
        })
        .collect();
    for (label, _, cost) in &sizes {
        let Ok(cost) = cost else { continue };
        let step_flops = cost.flops_per_sample * samples_per_step as f64;
        if let Some(&budget) = options
            .flops
            .iter()
            .find(|&&budget| budget / step_flops > MAX_STEPS as f64)
        {
            return Err(ScalingError::option(
                "--flops",
                format!(
                    "{budget:.3e} is more than {MAX_STEPS} steps of size {label} \
                     ({step_flops:.3e} FLOPs a step)"
                ),
            ));
        }
    }
    for (label, sized, cost) in sizes {
        let cost = match cost {
            Ok(cost) => cost,
            Err(e) => {
                out.skipped.push(Skipped {
                    size: label,
                    budget: None,
                    reason: format!("cannot build this size: {e}"),
                });
                continue;
            }
        };
        let step_flops = cost.flops_per_sample * samples_per_step as f64;
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
                        samples: steps as u64 * samples_per_step as u64,
                        measure,
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
    samples: u64,
    measure: Measure,
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
    // Few-shot prompting is not part of a sweep (an image encoder's probe is, below).
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
        let record: RunRecord = serde_json::from_str(&text)
            .map_err(|e| ScalingError::io(&record_path, format!("unreadable: {e}")))?;
        // Measured otherwise (another probe label budget): measured again, not retrained.
        if record.measure == point.measure {
            return Ok(record);
        }
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
        // Finished before its record was written: measured again below (the held-out report
        // is on disk; a probe is deterministic).
        Err(RecipeError::Train(TrainError::AlreadyDone { .. })) => None,
        Err(e) => return Err(e.into()),
    };
    let flops = point.cost.flops_per_sample * point.samples as f64;
    let mut record = RunRecord {
        size: point.label.to_string(),
        budget: point.budget,
        lr: point.lr,
        seed: point.seed,
        cost: point.cost,
        steps: point.steps,
        samples: point.samples,
        flops,
        kaplan_flops: None,
        loss: f64::NAN,
        heldout_nats_per_token: None,
        probe_accuracy: None,
        measure: point.measure,
        run_dir: run_dir.clone(),
    };
    match point.measure {
        Measure::HeldOutBitsPerByte => {
            let heldout = match heldout {
                Some(report) => report,
                None => read_heldout(&run_dir.join(HELDOUT_FILE))?,
            };
            record.kaplan_flops = Some(point.cost.kaplan_flops_per_token() * point.samples as f64);
            record.loss = heldout.model_bits_per_byte;
            record.heldout_nats_per_token = Some(
                heldout.model_bits_per_byte * heldout.bytes_per_token * std::f64::consts::LN_2,
            );
        }
        Measure::ProbeError { labels_per_class } => {
            let accuracy = probe(&recipe, &run_dir, labels_per_class, options)?;
            record.loss = 1.0 - accuracy;
            record.probe_accuracy = Some(accuracy);
        }
    }
    let text = serde_json::to_string_pretty(&record).expect("records serialize");
    std::fs::write(&record_path, text).map_err(|e| ScalingError::io(&record_path, e))?;
    Ok(record)
}

/// Linear-probe accuracy of the encoder pre-trained in `run_dir` with `labels_per_class`
/// labels per class (mean over the recipe's evaluation seeds); reports in `run_dir/probe`.
fn probe(
    recipe: &Recipe,
    run_dir: &Path,
    labels_per_class: usize,
    options: &SweepOptions,
) -> Result<f64> {
    let evaluate = EvaluateSpec {
        strategies: vec![Strategy::LinearProbe],
        labels_per_class: vec![labels_per_class],
        all_labels: false,
        ..recipe.evaluate.clone()
    };
    let finetune = FinetuneOptions {
        from: Some(run_dir.to_path_buf()),
        out: run_dir.join("probe"),
        quiet: options.quiet,
    };
    let reports = pretrain_recipes::run_finetune(recipe, &evaluate, options.backend, &finetune)?;
    Ok(reports
        .first()
        .expect("one strategy at one label budget gives one report")
        .accuracy_mean)
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
