//! `pretrain bench step` (`cargo xtask bench step`): timed training steps (forward, backward, optimizer update, the
//! objective's after-step hook) of the four reference workloads on any compiled backend. The
//! batch is built once from the shipped real data and reused, so the numbers are the step
//! alone; the data pipeline has its own benchmark (`benches/data_pipeline.rs`).

use pretrain::models::FusedAutodiffBackend;
use std::sync::Arc;
use std::time::Instant;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::data::dataset::{Dataset, InMemDataset};
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::{TextBatcher, ViewsBatcher};
use pretrain::data::mask::MaskedImageBatcher;
use pretrain::data::packed::{CausalBatcher, PackedWindows, pack_texts};
use pretrain::data::text_dataset::MlmDataset;
use pretrain::data::tokenizer::{TextTokenizer, TokenizerKind, TokenizerTrainConfig};
use pretrain::data::{TextItem, samples};
use pretrain::models::{BertConfig, GptConfig, ImageEncoderConfig, MaeConfig, SmallCnnConfig};
use pretrain::objectives::{
    CausalLmConfig, MaeObjectiveConfig, MaskedImageConfig, MlmConfig, SimClrConfig,
};
use pretrain::train::{LrSchedule, Precision, Stepper, TrainConfig, TrainObjective};
use serde::{Deserialize, Serialize};

use pretrain::data::Named;
use pretrain_recipes::{RecipeError, Result};

pretrain::data::named_enum! {
    /// A benchmarked training step, named in kebab case on the command line and in the output
    /// ([`Named`]).
    pub enum StepModel {
        /// MAE on ViT-tiny-28 (4x4 patches), 75% of the patches masked.
        MaeVitTiny,
        /// BERT-tiny masked language modeling, 128 tokens, 8,192-token vocabulary.
        BertTinyMlm,
        /// SimCLR with the small CNN, two 28x28 views per image.
        SimclrCnn,
        /// GPT-mini causal language modeling: windows of 128 predicted tokens, 8,192-token
        /// byte-level BPE vocabulary.
        GptMiniClm,
    }
}

impl StepModel {
    /// Parses a `--model` value, listing the valid ones on failure.
    pub fn parse(name: &str) -> Result<Self> {
        Self::from_name(name).map_err(|message| RecipeError::option("--model", message))
    }

    /// The batch of the reference workload (images, or sequences for BERT).
    pub fn default_batch(self) -> usize {
        match self {
            Self::MaeVitTiny | Self::SimclrCnn => 256,
            Self::BertTinyMlm | Self::GptMiniClm => 32,
        }
    }
}

/// Tokens per BERT sequence, and predicted tokens per GPT window.
pub const BERT_SEQUENCE: usize = 128;
/// BERT and GPT vocabulary (the tokenizers are trained to this size on Moby Dick).
pub const BERT_VOCAB: usize = 8192;

/// What to time.
#[derive(Debug, Clone)]
pub struct StepBenchConfig {
    /// The workload.
    pub model: StepModel,
    /// Backend (must be compiled in).
    pub backend: BackendKind,
    /// Batch size; `None`: the workload's reference batch.
    pub batch: Option<usize>,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (allocations, autotuning, caches).
    pub warmup: usize,
}

/// One benchmark's measurements (the JSON line `bench step` prints; PyTorch's side of
/// `bench compare` prints the same keys).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepBenchResult {
    /// [`StepModel::name`].
    pub model: String,
    /// Backend name.
    pub backend: String,
    /// Batch size.
    pub batch: usize,
    /// Threads of the CPU backends' pool (rayon).
    pub threads: usize,
    /// `batch / median step time`.
    pub samples_per_sec: f64,
    /// Median of the timed steps.
    pub ms_per_step_median: f64,
    /// Peak resident memory of the process so far (Linux `VmHWM`); `None` elsewhere.
    pub peak_rss_mb: Option<f64>,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
}

/// Runs the benchmark on the configured backend.
pub fn bench_step(config: &StepBenchConfig) -> Result<StepBenchResult> {
    if config.steps == 0 {
        return Err(RecipeError::option("--steps", "must be at least 1"));
    }
    let batch = config.batch.unwrap_or(config.model.default_batch());
    if batch == 0 {
        return Err(RecipeError::option("--batch", "must be at least 1"));
    }
    let task = StepTask { config, batch };
    let times = pretrain::dispatch_backend!(config.backend, Precision::F32, task)??;
    let median = median(&times);
    Ok(StepBenchResult {
        model: config.model.to_string(),
        backend: config.backend.to_string(),
        batch,
        threads: rayon::current_num_threads(),
        samples_per_sec: batch as f64 / median,
        ms_per_step_median: 1e3 * median,
        peak_rss_mb: peak_rss_mb(),
        steps: config.steps,
        warmup: config.warmup,
    })
}

/// Sets the CPU backends' thread count (the global rayon pool); call before any tensor work.
pub fn set_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| RecipeError::option("--threads", format!("cannot set {threads}: {e}")))
}

/// The comparison table: one row per workload with `(ours, pytorch)` results, the ratio
/// ours/PyTorch of samples per second (>= 1: ours is at least as fast) and of peak memory.
pub fn compare_markdown(rows: &[(StepBenchResult, StepBenchResult)], threads: usize) -> String {
    let mb = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
    let mut out = format!(
        "| model | batch | ours ({}) samples/s | PyTorch samples/s | ratio ours/PyTorch | \
         ours peak RSS (MB) | PyTorch peak RSS (MB) | RSS ratio |\n|---|---|---|---|---|---|---|---|\n",
        rows.first().map_or("?", |(o, _)| o.backend.as_str())
    );
    for (ours, torch) in rows {
        let rss_ratio = match (ours.peak_rss_mb, torch.peak_rss_mb) {
            (Some(o), Some(t)) if t > 0.0 => format!("{:.2}", o / t),
            _ => "n/a".into(),
        };
        out += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {} | {} | {} |\n",
            ours.model,
            ours.batch,
            ours.samples_per_sec,
            torch.samples_per_sec,
            ours.samples_per_sec / torch.samples_per_sec,
            mb(ours.peak_rss_mb),
            mb(torch.peak_rss_mb),
            rss_ratio
        );
    }
    out += &format!(
        "\n{threads} threads each; {} against {}; median of timed training steps \
         (forward, backward, AdamW), best of the rounds.\n",
        rows.first().map_or("?", |(o, _)| o.backend.as_str()),
        rows.first().map_or("?", |(_, t)| t.backend.as_str()),
    );
    out
}

fn median(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Peak resident set size of this process in MB, from `/proc/self/status`.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct StepTask<'a> {
    config: &'a StepBenchConfig,
    batch: usize,
}

impl BackendTask for StepTask<'_> {
    type Output = Result<Vec<f64>>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let StepTask { config, batch } = self;
        let mut step = prepare_step::<B>(config.model, batch, 0, &device)?;
        let mut times = Vec::with_capacity(config.steps);
        for i in 0..config.warmup + config.steps {
            let started = Instant::now();
            step()?;
            if i >= config.warmup {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        Ok(times)
    }
}

/// One training step of a workload, ready to call repeatedly.
pub type PreparedStep = Box<dyn FnMut() -> Result<()>>;

/// The first `n` items of `data`, wrapping around (the shipped samples are small).
fn cycled<I, D: Dataset<I>>(data: &D, n: usize) -> Vec<I> {
    (0..n).filter_map(|i| data.get(i % data.len())).collect()
}

/// Builds `model`'s objective (burn's generator seeded with `seed` first, so every caller
/// times the same weights), an AdamW optimizer and one batch of `batch` items from the
/// shipped real data (Fashion-MNIST sample, Moby Dick); each call of the returned closure is
/// one training step (forward, backward, update at lr 1e-4, after-step hook) with the device
/// synchronized at its end (GPU backends run asynchronously).
pub fn prepare_step<B: FusedAutodiffBackend>(
    model: StepModel,
    batch: usize,
    seed: u64,
    device: &B::Device,
) -> Result<PreparedStep> {
    B::seed(device, seed);
    let images = || samples::fashion_mnist().map(InMemDataset::new);
    Ok(match model {
        StepModel::MaeVitTiny => {
            let mae = MaeObjectiveConfig::new(MaeConfig::mae_vit_tiny_28());
            let pipeline = Pipeline::eval(Normalize::fashion_mnist());
            let data = mae.masked_data(images()?, pipeline, seed)?;
            let batch = MaskedImageBatcher.batch(cycled(&data, batch), device);
            stepper(mae.init::<B>(device)?, batch, device)
        }
        StepModel::SimclrCnn => {
            let encoder = ImageEncoderConfig::SmallCnn(SmallCnnConfig::small_cnn_28());
            let simclr = SimClrConfig::simclr(encoder);
            let views = MultiView::two_views(Pipeline::simclr(28, Normalize::fashion_mnist()));
            let data = AugmentedDataset::new(images()?, views, seed)?;
            let batch = ViewsBatcher.batch(cycled(&data, batch), device);
            stepper(simclr.init::<B>(device)?, batch, device)
        }
        StepModel::BertTinyMlm => {
            let docs = samples::moby_dick_paragraphs()?;
            let tokenizer = TextTokenizer::train(
                &docs,
                &TokenizerTrainConfig {
                    vocab_size: BERT_VOCAB,
                    ..Default::default()
                },
            )?;
            let items = InMemDataset::new(TextItem::unlabeled(&docs));
            let data = MlmDataset::new(items, &tokenizer, BERT_SEQUENCE, Default::default(), seed)?;
            let batch = TextBatcher.batch(cycled(&data, batch), device);
            let bert = BertConfig::bert_tiny(BERT_VOCAB).with_max_position(BERT_SEQUENCE);
            stepper(MlmConfig::new(bert).init::<B>(device)?, batch, device)
        }
        StepModel::GptMiniClm => {
            let docs = samples::moby_dick_paragraphs()?;
            let tokenizer = TextTokenizer::train(
                &docs,
                &TokenizerTrainConfig {
                    kind: TokenizerKind::ByteLevelBpe,
                    vocab_size: BERT_VOCAB,
                    ..Default::default()
                },
            )?;
            let eot = tokenizer.specials().sep.unwrap_or_default();
            let texts: Vec<&str> = docs.iter().map(String::as_str).collect();
            let stream = Arc::new(pack_texts(&tokenizer, &texts, eot)?);
            let data = PackedWindows::new(stream.clone(), 0..stream.len(), BERT_SEQUENCE)?;
            let batch = CausalBatcher.batch(cycled(&data, batch), device);
            let gpt = GptConfig {
                block_size: BERT_SEQUENCE,
                ..GptConfig::gpt_mini(tokenizer.vocab_size())
            };
            // Every position's prediction counts, as on PyTorch's side.
            stepper(CausalLmConfig::new(gpt).init::<B>(device)?, batch, device)
        }
    })
}

/// Steps of the engine's own [`Stepper`] (so the benchmark times what training runs: guards,
/// clipping, multipliers, after-step hooks) with AdamW at lr 1e-4, always on `batch`.
fn stepper<B: FusedAutodiffBackend, O: TrainObjective<B> + 'static>(
    objective: O,
    batch: O::Batch,
    device: &B::Device,
) -> PreparedStep
where
    O::Batch: Clone,
{
    let config = TrainConfig {
        lr: 1e-4,
        steps: usize::MAX,
        schedule: LrSchedule::Constant { warmup_steps: 0 },
        loss_spike_factor: None,
        ..TrainConfig::default()
    };
    let optimizer = config.optimizer.build::<B, O>(config.clip_grad_value);
    let mut stepper = Stepper::new(&config, &objective, optimizer);
    let mut state = stepper.initial_state(serde_json::Value::Null);
    let device = device.clone();
    let mut objective = Some(objective);
    Box::new(move || {
        let current = objective
            .take()
            .ok_or_else(|| RecipeError::option("step", "an earlier step failed"))?;
        let (updated, _) = stepper.step(current, &mut state, || Ok(batch.clone()))?;
        objective = Some(updated);
        B::sync(&device).map_err(|e| {
            RecipeError::option("--backend", format!("device failed during the step: {e:?}"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_takes_timed_steps_on_flex() {
        for &model in StepModel::all() {
            let result = bench_step(&StepBenchConfig {
                model,
                backend: BackendKind::Flex,
                batch: Some(4),
                steps: 2,
                warmup: 1,
            })
            .unwrap();
            assert_eq!((result.model.as_str(), result.batch), (model.name(), 4));
            assert!(result.ms_per_step_median > 0.0, "{result:?}");
            let implied = 4.0 / (result.ms_per_step_median / 1e3);
            assert!((result.samples_per_sec - implied).abs() < 1e-6 * implied);
            assert!(result.peak_rss_mb.is_some_and(|mb| mb > 1.0), "{result:?}");
        }
    }

    #[test]
    fn bad_arguments_are_refused_with_the_choices() {
        pretrain::data::names::assert_serde_names::<StepModel>();
        let err = StepModel::parse("gpt-2").unwrap_err().to_string();
        assert!(
            err.contains("mae-vit-tiny, bert-tiny-mlm, simclr-cnn, gpt-mini-clm"),
            "{err}"
        );
        let config = StepBenchConfig {
            model: StepModel::SimclrCnn,
            backend: BackendKind::Flex,
            batch: Some(0),
            steps: 1,
            warmup: 0,
        };
        assert!(
            bench_step(&config)
                .unwrap_err()
                .to_string()
                .contains("--batch")
        );
    }

    #[test]
    fn comparison_table_states_the_ratios() {
        let result = |backend: &str, sps: f64, rss: f64| StepBenchResult {
            model: "simclr-cnn".into(),
            backend: backend.into(),
            batch: 256,
            threads: 2,
            samples_per_sec: sps,
            ms_per_step_median: 256_000.0 / sps,
            peak_rss_mb: Some(rss),
            steps: 10,
            warmup: 3,
        };
        let table = compare_markdown(
            &[(
                result("flex", 300.0, 900.0),
                result("pytorch", 400.0, 600.0),
            )],
            2,
        );
        assert!(
            table.contains("| simclr-cnn | 256 | 300.0 | 400.0 | 0.75 | 900 | 600 | 1.50 |"),
            "{table}"
        );
        // The JSON line round-trips, so `compare` can read both sides' output.
        let line = serde_json::to_string(&result("flex", 1.0, 2.0)).unwrap();
        let back: StepBenchResult = serde_json::from_str(&line).unwrap();
        assert_eq!(back.samples_per_sec, 1.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
