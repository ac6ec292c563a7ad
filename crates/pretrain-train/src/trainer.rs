//! The training loop: any [`Objective`] on any backend, with learning-rate schedule, gradient
//! accumulation and clipping, EMA/queue updates after each optimizer step, a non-finite guard,
//! periodic atomic checkpoints, exact resume, per-step metrics and a progress bar.

use pretrain_models::FusedAutodiffBackend;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use pretrain_data::rng::EpochSeeded;
use pretrain_models::save_safetensors;
use pretrain_objectives::Objective;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::checkpoint::{self, positional_ids};
use crate::error::{Result, TrainError, io_error};
use crate::loader::{BatchOrder, Prefetcher};
use crate::optimizer::OptimizerConfig;
use crate::parallel::DataParallel;
use crate::precision::Precision;
use crate::schedule::LrSchedule;
use crate::step::{StepKind, Stepper};

/// Everything about how a run trains (serde; every field has a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Items per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = `batch_size * accumulation`). The
    /// objective's after-step update receives the last micro-batch's carry (MoCo enqueues
    /// that micro-batch's keys).
    pub accumulation: usize,
    /// Peak learning rate (before `lr_reference_batch` scaling).
    pub lr: f64,
    /// With a value, the peak learning rate is `lr * effective batch / lr_reference_batch`
    /// (MAE: 256).
    pub lr_reference_batch: Option<usize>,
    /// Schedule of the learning rate.
    pub schedule: LrSchedule,
    /// Optimizer.
    pub optimizer: OptimizerConfig,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f64>,
    /// Clip every gradient entry to `[-v, v]` (burn's value clipping).
    pub clip_grad_value: Option<f32>,
    /// Consecutive bad steps (non-finite loss or gradient, or a loss spike) after which the
    /// run stops.
    pub max_bad_steps: usize,
    /// A finite loss above `mean + factor * |mean|` of the last applied steps' losses (a
    /// window of 20, once 5 are in) is a spike: the step is skipped and counted as bad. `None`
    /// turns the check off.
    pub loss_spike_factor: Option<f64>,
    /// Steps between checkpoints (a final one is always written).
    pub checkpoint_every: usize,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Seed of the batch order.
    pub seed: u64,
    /// Float precision; must match the backend's float type. `f16` turns on dynamic loss
    /// scaling.
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 256,
            accumulation: 1,
            lr: 1e-3,
            lr_reference_batch: None,
            schedule: LrSchedule::default(),
            optimizer: OptimizerConfig::default(),
            clip_grad_norm: None,
            clip_grad_value: None,
            max_bad_steps: 10,
            loss_spike_factor: Some(10.0),
            checkpoint_every: 500,
            keep_checkpoints: 2,
            seed: 0,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let fail =
            |field: &'static str, message: String| Err(TrainError::Config { field, message });
        if self.steps == 0 {
            return fail("steps", "must be > 0".into());
        }
        if self.batch_size == 0 || self.accumulation == 0 {
            return fail("batch_size/accumulation", "must be > 0".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail("lr", format!("{} must be a positive number", self.lr));
        }
        if let Some(n) = self.clip_grad_norm.filter(|n| n.is_nan() || *n <= 0.0) {
            return fail("clip_grad_norm", format!("{n} must be > 0"));
        }
        if let Some(v) = self.clip_grad_value.filter(|v| v.is_nan() || *v <= 0.0) {
            return fail("clip_grad_value", format!("{v} must be > 0"));
        }
        if let Some(f) = self
            .loss_spike_factor
            .filter(|f| !(f.is_finite() && *f > 0.0))
        {
            return fail(
                "loss_spike_factor",
                format!("{f} must be a positive number"),
            );
        }
        if self.max_bad_steps == 0 || self.checkpoint_every == 0 {
            return fail("max_bad_steps/checkpoint_every", "must be > 0".into());
        }
        if let Some(message) = self
            .optimizer
            .f16_hazard()
            .filter(|_| self.precision == Precision::F16)
        {
            return fail("optimizer.epsilon", message);
        }
        self.schedule.validate().or_else(|m| fail("schedule", m))?;
        self.optimizer.validate().or_else(|m| fail("optimizer", m))
    }

    /// Effective batch size.
    pub fn effective_batch(&self) -> usize {
        self.batch_size * self.accumulation
    }

    /// Optimizer steps that make `epochs` passes over `len` items.
    pub fn steps_for_epochs(&self, epochs: usize, len: usize) -> usize {
        (epochs * (len / self.batch_size.max(1)) / self.accumulation.max(1)).max(1)
    }
}

/// How this call runs (not part of the saved configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// No progress bar.
    pub quiet: bool,
    /// Continue from the run directory's latest checkpoint, if any.
    pub resume: bool,
    /// Set (e.g. by a Ctrl-C handler) to stop after the current step with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
    /// Stop after this many completed steps, with a checkpoint (as an interruption would).
    pub stop_after: Option<usize>,
    /// This process's worker of a data-parallel run: it reads its slice of every batch, and
    /// only rank 0 writes the run directory and shows progress.
    pub parallel: Option<DataParallel>,
}

/// What a run produced.
#[derive(Debug)]
pub struct TrainOutcome<O> {
    /// The trained objective (encoder, heads, targets).
    pub objective: O,
    /// Steps completed.
    pub steps_done: usize,
    /// Steps skipped by the non-finite guard.
    pub skipped_steps: usize,
    /// Whether all configured steps ran (false when stopped early).
    pub finished: bool,
    /// The newest checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// Loss of each step this call ran (NaN for skipped steps).
    pub losses: Vec<f64>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Serialize)]
struct StepRecord<'a> {
    step: usize,
    epoch: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    samples_per_sec: f64,
    skipped: bool,
    /// Data-parallel runs: seconds spent all-reducing gradients and metrics.
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_seconds: Option<f64>,
    #[serde(flatten)]
    metrics: std::collections::BTreeMap<&'a str, f64>,
}

/// What the engine needs of an objective: an [`Objective`] whose batches cross threads (the
/// loader prepares them in the background).
pub trait TrainObjective<B: FusedAutodiffBackend>: Objective<B, Batch: Send + 'static> {}

impl<B: FusedAutodiffBackend, O: Objective<B, Batch: Send + 'static>> TrainObjective<B> for O {}

/// What the engine needs of a dataset: burn's [`Dataset`] with a per-epoch seed (augmentations
/// and masks drawn anew each epoch), owned by the loader thread.
pub trait TrainData<I>: Dataset<I> + EpochSeeded + 'static {}

impl<I, D: Dataset<I> + EpochSeeded + 'static> TrainData<I> for D {}

/// A pre-training run, configured step by step and started with [`Pretrainer::run`]:
///
/// ```ignore
/// let outcome = Pretrainer::new(objective, data, batcher)
///     .config(&train)
///     .objective_config(&objective_config)
///     .run_dir("runs/mae")
///     .run(&device)?;
/// ```
///
/// It trains `config.steps` optimizer steps, writing `config.json`, `metrics.jsonl`,
/// `checkpoints/` and, at the end, `encoder.safetensors` into the run directory. The objective
/// configuration (any `Serialize` value) is saved with each checkpoint and must match on resume.
pub struct Pretrainer<B: AutodiffBackend, O, I, D, T> {
    objective: O,
    data: Arc<D>,
    batcher: T,
    config: TrainConfig,
    objective_config: std::result::Result<serde_json::Value, String>,
    run_dir: Option<PathBuf>,
    options: RunOptions,
    _types: PhantomData<fn() -> (B, I)>,
}

impl<B, O, I, D, T> Pretrainer<B, O, I, D, T>
where
    B: FusedAutodiffBackend,
    O: TrainObjective<B>,
    I: Send + 'static,
    D: TrainData<I>,
    T: Batcher<B, I, O::Batch> + 'static,
{
    /// A run of `objective` on `data`, batched by `batcher`, with the default [`TrainConfig`].
    pub fn new(objective: O, data: D, batcher: T) -> Self {
        Self {
            objective,
            data: Arc::new(data),
            batcher,
            config: TrainConfig::default(),
            objective_config: Ok(serde_json::Value::Null),
            run_dir: None,
            options: RunOptions::default(),
            _types: PhantomData,
        }
    }

    /// How the run trains.
    pub fn config(mut self, config: &TrainConfig) -> Self {
        self.config = config.clone();
        self
    }

    /// The objective and model configuration, saved with every checkpoint; a resume must
    /// match it.
    pub fn objective_config(mut self, config: &impl Serialize) -> Self {
        self.objective_config = serde_json::to_value(config).map_err(|e| e.to_string());
        self
    }

    /// The folder the run writes (required).
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }

    /// Progress bar, resume, stop signal.
    pub fn options(mut self, options: RunOptions) -> Self {
        self.options = options;
        self
    }

    /// Runs on `device`.
    pub fn run(self, device: &B::Device) -> Result<TrainOutcome<O>> {
        let Self {
            objective,
            data,
            batcher,
            config,
            objective_config,
            run_dir,
            options,
            _types,
        } = self;
        let objective_config = objective_config.map_err(|message| TrainError::Config {
            field: "objective_config",
            message: format!("does not serialize: {message}"),
        })?;
        let run_dir = run_dir.ok_or_else(|| TrainError::Config {
            field: "run_dir",
            message: "is not set".into(),
        })?;
        let (config, run_dir) = (&config, run_dir.as_path());
        config.validate()?;
        config
            .precision
            .check_backend(<B::FloatElem as burn::tensor::Element>::dtype())
            .map_err(|message| TrainError::Config {
                field: "precision",
                message,
            })?;
        let parallel = options.parallel.clone();
        if let Some(parallel) = &parallel {
            parallel.check_batch(config.batch_size)?;
        }
        let leader = parallel.as_ref().is_none_or(DataParallel::is_leader);
        std::fs::create_dir_all(run_dir).map_err(io_error(run_dir))?;
        // Positional ids also make every data-parallel worker's ids agree (burn all-reduces
        // gradients in id order).
        let mut objective = positional_ids(objective);
        let mut optimizer = config.optimizer.build::<B, O>(config.clip_grad_value);
        let mut state = None;
        let mut last_checkpoint = None;
        if options.resume
            && let Some(dir) = checkpoint::latest(run_dir)?
        {
            let (o, opt, s) =
                checkpoint::load(&dir, objective, optimizer, &objective_config, device)?;
            if s.step >= config.steps {
                return Err(TrainError::AlreadyDone {
                    run_dir: run_dir.to_path_buf(),
                    done: s.step,
                    steps: config.steps,
                });
            }
            tracing::info!(step = s.step, dir = %dir.display(), "resumed");
            (objective, optimizer, state) = (o, opt, Some(s));
            last_checkpoint = Some(dir);
        }
        let mut stepper = Stepper::new(config, &objective, optimizer);
        if let Some(parallel) = &parallel {
            parallel.join::<B>(device)?;
            parallel.check_same_weights(&objective, device)?;
            stepper = stepper.data_parallel(parallel.clone(), device);
        }
        let mut state = state.unwrap_or_else(|| stepper.initial_state(objective_config.clone()));
        let metrics_path = run_dir.join("metrics.jsonl");
        let mut metrics_file = if leader {
            let full_config = serde_json::json!({ "train": config, "objective": objective_config });
            write_atomic(
                &run_dir.join(crate::checkpoint::RUN_CONFIG),
                &serde_json::to_vec_pretty(&full_config).expect("config serializes"),
            )?;
            Some(open_metrics(&metrics_path, state.step)?)
        } else {
            None
        };

        let order = BatchOrder {
            len: data.len(),
            batch_size: config.batch_size,
            seed: config.seed,
            shard: parallel
                .as_ref()
                .map_or((0, 1), |p| (p.rank(), p.workers())),
        };
        let per_epoch = order.per_epoch()?;
        let accumulation = config.accumulation;
        let mut loader = Prefetcher::start::<B, I, D, T>(
            data,
            batcher,
            order,
            state.step * accumulation..config.steps * accumulation,
            device.clone(),
        )?;
        let progress = progress_bar(options.quiet || !leader, config.steps, state.step);
        let mut bad_in_a_row = 0;
        let mut losses = Vec::new();
        let start_step = state.step;

        while state.step < config.steps {
            let step = state.step;
            let started = Instant::now();
            let (next, report) = stepper.step(objective, &mut state, || loader.next_batch())?;
            objective = next;
            let applied = report.kind == StepKind::Applied;
            match report.kind {
                StepKind::Applied => bad_in_a_row = 0,
                StepKind::Overflow => {}
                StepKind::Bad => bad_in_a_row += 1,
            }
            losses.push(if applied { report.loss } else { f64::NAN });

            let elapsed = started.elapsed().as_secs_f64();
            let record = StepRecord {
                step: state.step,
                epoch: step * accumulation / per_epoch,
                loss: report.loss,
                lr: report.lr,
                grad_norm: report.grad_norm,
                samples_per_sec: config.effective_batch() as f64 / elapsed.max(1e-9),
                skipped: !applied,
                sync_seconds: report.sync_seconds,
                metrics: report
                    .metrics
                    .iter()
                    .filter(|(n, _)| *n != "loss")
                    .collect(),
            };
            if let Some(file) = metrics_file.as_mut() {
                let line = serde_json::to_string(&record).unwrap_or_else(|_| "{}".into());
                writeln!(file, "{line}").map_err(io_error(&metrics_path))?;
            }
            progress.set_position(state.step as u64);
            progress.set_message(format!(
                "loss {:.4}  lr {:.2e}  {:.0} samples/s",
                report.loss, report.lr, record.samples_per_sec
            ));

            if bad_in_a_row >= config.max_bad_steps {
                progress.abandon();
                return Err(TrainError::Diverged {
                    step: state.step,
                    bad_steps: bad_in_a_row,
                    last_checkpoint,
                });
            }
            let mut interrupted = options
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst));
            if let Some(parallel) = &parallel {
                // A stop seen by any worker stops all of them after the same step.
                interrupted = parallel
                    .collective()
                    .any::<B::InnerBackend>(interrupted, device)?;
            }
            interrupted |= options.stop_after.is_some_and(|n| state.step >= n);
            let last = state.step == config.steps;
            let due = interrupted || last || state.step.is_multiple_of(config.checkpoint_every);
            if let Some(file) = metrics_file.as_mut().filter(|_| due) {
                file.flush().map_err(io_error(&metrics_path))?;
                let dir = checkpoint::save(
                    run_dir,
                    &objective,
                    stepper.optimizer(),
                    &state,
                    config.keep_checkpoints,
                )?;
                tracing::info!(step = state.step, dir = %dir.display(), "checkpoint written");
                last_checkpoint = Some(dir);
            }
            if interrupted && !last {
                progress.abandon_with_message(format!("stopped at step {}", state.step));
                break;
            }
        }
        drop(loader);
        if let Some(parallel) = &parallel {
            parallel.leave::<B>()?;
        }
        let finished = state.step == config.steps;
        if finished && leader {
            save_safetensors(objective.encoder(), &run_dir.join("encoder.safetensors"))?;
            progress.finish();
            tracing::info!(
                steps = state.step - start_step,
                skipped = state.skipped_steps,
                "pre-training finished"
            );
        }
        Ok(TrainOutcome {
            objective,
            steps_done: state.step,
            skipped_steps: state.skipped_steps,
            finished,
            checkpoint: last_checkpoint,
            losses,
        })
    }
}

/// Opens `metrics.jsonl` for appending, first dropping the lines of steps past `step` (written
/// after the checkpoint a resume starts from) and a torn last line (a kill mid-append). Other
/// lines are kept as they are, decodable or not: the history is never thrown away.
fn open_metrics(path: &Path, step: usize) -> Result<std::fs::File> {
    if step == 0 {
        return std::fs::File::create(path).map_err(io_error(path));
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut kept = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break; // torn
        }
        let later = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["step"].as_u64())
            .is_some_and(|s| s as usize > step);
        if !later {
            kept.extend_from_slice(line);
        }
    }
    write_atomic(path, &kept)?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error(path))
}

fn progress_bar(quiet: bool, total: usize, position: usize) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64).with_position(position as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
            .expect("valid template"),
    );
    bar
}
