//! Running a strategy over labeled subsets (`k` labels per class, several seeds) and
//! measuring it on the test split.

use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use std::path::Path;
use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::backend::Backend;
use pretrain_data::split::k_per_class;
use pretrain_data::{Labeled, Named};
use serde::{Deserialize, Serialize};

use crate::backbone::{Backbone, LabeledBatch};
use crate::classifier::Classifier;
use crate::error::{FinetuneError, Result};
use crate::finetune::{FinetuneSettings, Trainable, prepare_classifier, train_classifier};
use crate::knn::{KnnConfig, knn_predict};
use crate::metrics::ClassificationReport;
use crate::params::ParamCount;
use crate::probe::{
    Features, LinearProbeConfig, LogisticRegression, Standardizer, argmax_rows, extract_features,
    labels_of,
};
use crate::report::{FinetuneReport, SeedResult};

pretrain_data::named_enum! {
    /// The evaluation strategies, named in kebab case (`linear-probe`; [`Named`]).
    pub enum Strategy {
        /// Logistic regression on frozen, cached features.
        LinearProbe,
        /// Weighted kNN on frozen, cached features.
        Knn,
        /// Every parameter trains, with a new head.
        Full,
        /// The lower part stays frozen.
        Partial,
        /// Bottleneck adapters and the head train.
        Adapter,
        /// LoRA updates and the head train.
        Lora,
    }
}

impl Strategy {
    /// Parses a name, listing the valid ones on failure.
    pub fn parse(name: &str) -> Result<Self> {
        Self::from_name(name).map_err(|message| FinetuneError::Config {
            field: "strategy",
            message,
        })
    }

    /// Whether the strategy works on frozen cached features (no training of the encoder).
    pub fn is_frozen(self) -> bool {
        matches!(self, Self::LinearProbe | Self::Knn)
    }
}

/// Settings of every strategy (serde; each part has defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StrategySettings {
    /// Linear probe.
    pub linear_probe: LinearProbeConfig,
    /// kNN.
    pub knn: KnnConfig,
    /// Training of `full`, `partial`, `adapter` and `lora`.
    pub finetune: FinetuneSettings,
    /// What `partial` freezes.
    pub partial: crate::finetune::FreezeSpec,
    /// Adapter layout.
    pub adapter: crate::peft::AdapterSettings,
    /// LoRA layout.
    pub lora: crate::peft::LoraSettings,
}

impl StrategySettings {
    /// What trains under a fine-tuning `strategy`; `None` for the frozen ones.
    pub fn trainable(&self, strategy: Strategy) -> Option<Trainable> {
        match strategy {
            Strategy::LinearProbe | Strategy::Knn => None,
            Strategy::Full => Some(Trainable::All),
            Strategy::Partial => Some(Trainable::Partial(self.partial.clone())),
            Strategy::Adapter => Some(Trainable::Adapters(self.adapter.clone())),
            Strategy::Lora => Some(Trainable::Lora(self.lora.clone())),
        }
    }
}

/// A labeled task: training and test items and the number of classes.
#[derive(Debug, Clone)]
pub struct LabeledTask<I> {
    /// Name of the data set (reports).
    pub name: String,
    /// Training split (labeled subsets are drawn from it).
    pub train: Vec<I>,
    /// Held-out test split.
    pub test: Vec<I>,
    /// Number of classes.
    pub num_classes: usize,
}

impl<I: Labeled> LabeledTask<I> {
    /// Indices of the training items used by `seed`: `k` per class, or all.
    pub fn subset(&self, labels_per_class: Option<usize>, seed: u64) -> Result<Vec<usize>> {
        match labels_per_class {
            None => Ok((0..self.train.len()).collect()),
            Some(k) => {
                let labels: Vec<Option<usize>> = self.train.iter().map(|i| i.label()).collect();
                k_per_class(&labels, k, seed).map_err(|e| FinetuneError::Labels(e.to_string()))
            }
        }
    }
}

/// Training and test features of a frozen encoder, extracted once and shared by every probe
/// and kNN evaluation.
#[derive(Debug, Clone)]
pub struct FrozenFeatures<B: Backend> {
    /// Training split.
    pub train: Features<B>,
    /// Test split.
    pub test: Features<B>,
    /// Architecture of the encoder.
    pub architecture: &'static str,
    /// Parameters of the encoder.
    pub encoder_params: usize,
}

impl<B: FusedBackend> FrozenFeatures<B> {
    /// Runs `encoder` over both splits of `task`.
    pub fn extract<I, T>(
        encoder: &Backbone<B>,
        task: &LabeledTask<I>,
        batcher: &T,
        batch_size: usize,
        device: &B::Device,
    ) -> Result<Self>
    where
        I: Labeled + Clone,
        T: Batcher<B, I, LabeledBatch<B>>,
    {
        Ok(Self {
            train: extract_features(encoder, &task.train, batcher, batch_size, device)?,
            test: extract_features(encoder, &task.test, batcher, batch_size, device)?,
            architecture: encoder.architecture(),
            encoder_params: encoder.num_params(),
        })
    }
}

/// Evaluates a frozen-feature strategy (`linear-probe`, `knn`) with `labels_per_class` labels
/// per class for each seed; with every label (`None`) once, under the first seed.
pub fn evaluate_frozen<B: FusedBackend, I: Labeled>(
    strategy: Strategy,
    features: &FrozenFeatures<B>,
    task: &LabeledTask<I>,
    labels_per_class: Option<usize>,
    seeds: &[u64],
    settings: &StrategySettings,
) -> Result<FinetuneReport> {
    let started = Instant::now();
    let classes = task.num_classes;
    let dim = features.train.x.dims()[1];
    // With every label there is no subset to draw, and both frozen strategies are
    // deterministic given their data: one run says all (the report lists one seed).
    let seeds = match labels_per_class {
        None => &seeds[..seeds.len().min(1)],
        Some(_) => seeds,
    };
    let mut runs = Vec::new();
    for &seed in seeds {
        let seed_started = Instant::now();
        let subset = features.train.select(&task.subset(labels_per_class, seed)?);
        let mut weight_decay = None;
        let predictions = match strategy {
            Strategy::LinearProbe => {
                let probe = &settings.linear_probe;
                let wd = probe.select_weight_decay(&subset.x, &subset.labels, classes)?;
                weight_decay = Some(wd);
                let config = LinearProbeConfig {
                    weight_decay: wd,
                    ..probe.clone()
                };
                let scaler = Standardizer::fit(&subset.x);
                LogisticRegression::fit(
                    &scaler.apply(subset.x.clone()),
                    &subset.labels,
                    classes,
                    &config,
                )?
                .predict(scaler.apply(features.test.x.clone()))
            }
            Strategy::Knn => knn_predict(
                &subset.x,
                &subset.labels,
                features.test.x.clone(),
                classes,
                &settings.knn,
            )?,
            other => {
                return Err(FinetuneError::Config {
                    field: "strategy",
                    message: format!("{} trains the encoder; use evaluate_finetune", other.name()),
                });
            }
        };
        runs.push(SeedResult {
            seed,
            train_examples: subset.len(),
            metrics: ClassificationReport::compute(&predictions, &features.test.labels, classes)?,
            seconds: seed_started.elapsed().as_secs_f64(),
            weight_decay,
        });
    }
    let (trainable, strategy_settings) = match strategy {
        Strategy::LinearProbe => (
            dim * classes + classes,
            serde_json::to_value(&settings.linear_probe),
        ),
        _ => (0, serde_json::to_value(&settings.knn)),
    };
    Ok(FinetuneReport::new(
        strategy,
        features.architecture,
        labels_per_class,
        ParamCount {
            trainable,
            total: features.encoder_params + trainable,
        },
        strategy_settings.expect("settings serialize"),
        runs,
        started.elapsed().as_secs_f64(),
    ))
}

/// Predictions of `model` on `items`, in batches.
pub fn predict<B, I, T>(
    model: &Classifier<B>,
    items: &[I],
    batcher: &T,
    batch_size: usize,
    device: &B::Device,
) -> Result<Vec<usize>>
where
    B: FusedBackend,
    I: Clone,
    T: Batcher<B, I, LabeledBatch<B>>,
{
    let mut predictions = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch_size.max(1)) {
        let batch = batcher.batch(chunk.to_vec(), device);
        predictions.extend(argmax_rows(model.forward(batch.inputs)?));
    }
    Ok(predictions)
}

/// Evaluates a fine-tuning strategy (`full`, `partial`, `adapter`, `lora`): for each seed, a
/// fresh encoder from `make_encoder` gets a head and is trained on the seed's labeled subset
/// (run directory `work_dir/<strategy>-<labels>-seed<seed>`), then measured on the test split.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_finetune<B, I, T>(
    strategy: Strategy,
    make_encoder: impl Fn() -> Result<Backbone<B>>,
    feature_dim: usize,
    task: &LabeledTask<I>,
    batcher: &T,
    labels_per_class: Option<usize>,
    seeds: &[u64],
    settings: &StrategySettings,
    work_dir: &Path,
    quiet: bool,
    device: &B::Device,
) -> Result<FinetuneReport>
where
    B: FusedAutodiffBackend,
    I: Labeled + Clone + Send + Sync + std::fmt::Debug + 'static,
    T: Batcher<B, I, LabeledBatch<B>>
        + Batcher<B::InnerBackend, I, LabeledBatch<B::InnerBackend>>
        + Clone
        + 'static,
{
    let trainable = settings
        .trainable(strategy)
        .ok_or_else(|| FinetuneError::Config {
            field: "strategy",
            message: format!(
                "{} uses frozen features; use evaluate_frozen",
                strategy.name()
            ),
        })?;
    let started = Instant::now();
    let test_labels = labels_of(&task.test)?;
    let mut runs = Vec::new();
    let mut params = None;
    let mut architecture = "";
    for &seed in seeds {
        let seed_started = Instant::now();
        B::seed(device, seed);
        let encoder = make_encoder()?;
        architecture = encoder.architecture();
        let (classifier, count) = prepare_classifier(
            encoder,
            feature_dim,
            task.num_classes,
            &trainable,
            &settings.finetune,
            device,
        )?;
        params = Some(count);
        let items: Vec<I> = task
            .subset(labels_per_class, seed)?
            .into_iter()
            .map(|i| task.train[i].clone())
            .collect();
        let train_examples = items.len();
        let mut finetune = settings.finetune.clone();
        finetune.train.seed = seed;
        let labels = labels_per_class.map_or("all".to_string(), |k| k.to_string());
        let run_dir = work_dir.join(format!("{}-{labels}-seed{seed}", strategy.name()));
        let model = train_classifier(
            classifier,
            items,
            batcher.clone(),
            &finetune,
            &run_dir,
            quiet,
            device,
        )?;
        let predictions = predict(
            &model,
            &task.test,
            batcher,
            settings.finetune.train.batch_size,
            device,
        )?;
        runs.push(SeedResult {
            seed,
            train_examples,
            metrics: ClassificationReport::compute(&predictions, &test_labels, task.num_classes)?,
            seconds: seed_started.elapsed().as_secs_f64(),
            weight_decay: None,
        });
    }
    let strategy_settings = serde_json::json!({
        "trainable": trainable,
        "finetune": settings.finetune,
    });
    Ok(FinetuneReport::new(
        strategy,
        architecture,
        labels_per_class,
        params.unwrap_or(ParamCount {
            trainable: 0,
            total: 0,
        }),
        strategy_settings,
        runs,
        started.elapsed().as_secs_f64(),
    ))
}
