//! Supervised fine-tuning through the pre-training engine: full, partial (frozen lower
//! blocks), adapters and LoRA, each one way of choosing what trains.

use pretrain_models::FusedAutodiffBackend;
use std::collections::HashSet;
use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::module::AutodiffModule;
use pretrain_data::Labeled;
use pretrain_train::{LrSchedule, OptimizerConfig, Pretrainer, RunOptions, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::backbone::{Backbone, LabeledBatch};
use crate::classifier::{ClassificationTask, Classifier};
use crate::error::{FinetuneError, Result};
use crate::params::{Depth, ParamCount, count_params, freeze_where, num_blocks, param_depths};
use crate::peft::{AdapterSettings, LoraSettings, add_adapters, add_lora, is_adapter_tensor};

/// What part of the model trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Trainable {
    /// Everything (full fine-tuning).
    All,
    /// Everything except the frozen lower part (partial fine-tuning).
    Partial(FreezeSpec),
    /// Bottleneck adapters in every block, and the head.
    Adapters(AdapterSettings),
    /// LoRA updates on the chosen projections, and the head.
    Lora(LoraSettings),
}

/// The lower part of an encoder kept frozen by partial fine-tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreezeSpec {
    /// Freeze the embeddings (everything before the first block: patch/token embeddings,
    /// CLS token, positions, CNN stem).
    pub embeddings: bool,
    /// Freeze the first `blocks` blocks.
    pub blocks: usize,
}

impl Default for FreezeSpec {
    fn default() -> Self {
        Self {
            embeddings: true,
            blocks: 0,
        }
    }
}

/// How supervised fine-tuning trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneSettings {
    /// Optimizer, schedule (with warmup), steps, batch size, clipping.
    pub train: TrainConfig,
    /// When set, `train.steps` is replaced by this many passes over the labeled set.
    pub epochs: Option<usize>,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Layer-wise learning-rate decay (1 = off; MAE and BEiT fine-tune ViTs with 0.65-0.75).
    pub layer_decay: f64,
    /// Largest stochastic-depth rate, reached at the last residual block of a ViT, ResNet or
    /// BERT (0 = off; the small CNN and autoencoders have no residual branches and ignore it).
    pub drop_path: f64,
}

impl Default for FinetuneSettings {
    fn default() -> Self {
        Self {
            train: TrainConfig {
                steps: 200,
                batch_size: 64,
                lr: 1e-3,
                schedule: LrSchedule::WarmupCosine {
                    warmup_steps: 20,
                    min_lr_ratio: 0.0,
                },
                optimizer: OptimizerConfig::default(),
                clip_grad_norm: Some(5.0),
                checkpoint_every: 1_000_000,
                keep_checkpoints: 1,
                ..TrainConfig::default()
            },
            epochs: None,
            label_smoothing: 0.1,
            layer_decay: 1.0,
            drop_path: 0.0,
        }
    }
}

impl FinetuneSettings {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let fail = |field, message| Err(FinetuneError::Config { field, message });
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return fail(
                "label_smoothing",
                format!("{} must lie in [0, 1)", self.label_smoothing),
            );
        }
        if !(self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            return fail(
                "layer_decay",
                format!("{} must lie in (0, 1]", self.layer_decay),
            );
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return fail(
                "drop_path",
                format!("{} must lie in [0, 1)", self.drop_path),
            );
        }
        if self.epochs == Some(0) {
            return fail("epochs", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Builds the classifier a strategy trains: the head for `num_classes`, LoRA or adapters when
/// asked for, drop-path, and the frozen parameters. Returns it with its parameter counts.
pub fn prepare_classifier<B: FusedAutodiffBackend>(
    encoder: Backbone<B>,
    feature_dim: usize,
    num_classes: usize,
    trainable: &Trainable,
    settings: &FinetuneSettings,
    device: &B::Device,
) -> Result<(Classifier<B>, ParamCount)> {
    settings.validate()?;
    let mut encoder = match trainable {
        Trainable::Adapters(a) => add_adapters(encoder, a, device)?,
        Trainable::Lora(l) => add_lora(encoder, l, device)?,
        Trainable::All | Trainable::Partial(_) => encoder,
    };
    if settings.drop_path > 0.0 {
        // The small CNN has no residual branches to drop: documented as ignored there.
        encoder.set_drop_path_rate(settings.drop_path);
    }
    let classifier = Classifier::new(encoder, feature_dim, num_classes, device);
    let classifier = match trainable {
        Trainable::All => classifier,
        Trainable::Partial(spec) => freeze_lower(classifier, spec)?,
        Trainable::Adapters(_) | Trainable::Lora(_) => {
            freeze_where(classifier, |path| !is_adapter_tensor(path, ""))
        }
    };
    let count = count_params(&classifier);
    Ok((classifier, count))
}

fn freeze_lower<B: FusedAutodiffBackend>(
    classifier: Classifier<B>,
    spec: &FreezeSpec,
) -> Result<Classifier<B>> {
    let depths = param_depths(&classifier.encoder);
    let blocks = num_blocks(&depths);
    if spec.blocks > blocks {
        return Err(FinetuneError::Config {
            field: "freeze.blocks",
            message: format!(
                "{} but the {} encoder has {blocks} blocks",
                spec.blocks,
                classifier.encoder.architecture()
            ),
        });
    }
    let frozen: HashSet<String> = depths
        .into_iter()
        .filter(|(_, _, depth)| match depth {
            Depth::Embedding => spec.embeddings,
            Depth::Block(i) => *i < spec.blocks,
            Depth::Top => false,
        })
        .map(|(_, path, _)| format!("encoder.{path}"))
        .collect();
    Ok(freeze_where(classifier, |path| frozen.contains(path)))
}

/// Checks that every label is below the head's `num_classes`.
pub fn check_labels(labels: &[usize], num_classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| l >= num_classes) {
        Some(bad) => Err(FinetuneError::Labels(format!(
            "found class {bad}, but the head predicts {num_classes} classes (0..{num_classes}); \
             set the number of classes to at least {}",
            bad + 1
        ))),
        None => Ok(()),
    }
}

/// Trains `classifier` on the labeled `items` with the engine (run directory `run_dir`) and
/// returns it ready for inference.
pub fn train_classifier<B, I, T>(
    classifier: Classifier<B>,
    items: Vec<I>,
    batcher: T,
    settings: &FinetuneSettings,
    run_dir: &Path,
    quiet: bool,
    device: &B::Device,
) -> Result<Classifier<B::InnerBackend>>
where
    B: FusedAutodiffBackend,
    I: Labeled + Clone + Send + Sync + std::fmt::Debug + 'static,
    T: Batcher<B, I, LabeledBatch<B>> + 'static,
{
    settings.validate()?;
    let labels = crate::probe::labels_of(&items)?;
    check_labels(&labels, classifier.num_classes())?;
    let mut train = settings.train.clone();
    train.batch_size = train.batch_size.min(items.len());
    if let Some(epochs) = settings.epochs {
        train.steps = train.steps_for_epochs(epochs, items.len());
    }
    let task = ClassificationTask::new(classifier, settings.label_smoothing, settings.layer_decay);
    let outcome = Pretrainer::new(task, InMemDataset::new(items), batcher)
        .config(&train)
        .objective_config(settings)
        .run_dir(run_dir)
        .options(RunOptions {
            quiet,
            ..RunOptions::default()
        })
        .run(device)?;
    Ok(outcome.objective.model.valid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{Strategy, StrategySettings, evaluate_finetune};
    use crate::testing::{
        Ad, backbone, batcher, cnn_config, digits_task, seeded, snapshot, vit_config,
    };

    fn quick_settings(steps: usize) -> FinetuneSettings {
        let mut settings = FinetuneSettings::default();
        settings.train.steps = steps;
        settings.train.batch_size = 32;
        settings.train.lr = 3e-3;
        settings.train.schedule = LrSchedule::WarmupCosine {
            warmup_steps: 2,
            min_lr_ratio: 0.0,
        };
        settings
    }

    #[test]
    fn partial_freezing_keeps_frozen_weights_bit_identical() {
        let task = digits_task();
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let settings = quick_settings(10);
        let spec = FreezeSpec {
            embeddings: true,
            blocks: 1,
        };
        let (classifier, count) = {
            let _guard = seeded(3);
            prepare_classifier(
                backbone::<Ad>(&vit_config()),
                32,
                10,
                &Trainable::Partial(spec),
                &settings,
                &dev,
            )
            .unwrap()
        };
        assert!(
            count.trainable < count.total && count.trainable > 0,
            "{count:?}"
        );
        let before = snapshot(&classifier);
        let trained = train_classifier(
            classifier,
            task.train[..200].to_vec(),
            batcher(),
            &settings,
            dir.path(),
            true,
            &dev,
        )
        .unwrap();
        let after = snapshot(&trained);
        let frozen = |path: &str| {
            ["patch_embed", "cls_token", "pos_embed", "blocks.0."]
                .iter()
                .any(|p| path.contains(p))
        };
        let mut checked = (0, 0);
        for (path, old) in &before {
            let new = &after[path];
            if frozen(path) {
                assert!(old == new, "{path} changed although frozen");
                checked.0 += 1;
            } else if path.contains("blocks.1.") && path.ends_with("weight") {
                assert!(old != new, "{path} did not train");
                checked.1 += 1;
            }
        }
        assert!(checked.0 >= 8 && checked.1 >= 4, "{checked:?}");
    }

    #[test]
    fn few_label_full_finetuning_learns_and_reports() {
        let task = digits_task();
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = StrategySettings {
            finetune: quick_settings(60),
            ..StrategySettings::default()
        };
        settings.finetune.train.lr = 1e-2;
        let _guard = seeded(1);
        let report = evaluate_finetune::<Ad, _, _>(
            Strategy::Full,
            || Ok(backbone(&cnn_config())),
            32,
            &task,
            &batcher(),
            Some(10),
            &[0, 1],
            &settings,
            dir.path(),
            true,
            &dev,
        )
        .unwrap();
        assert_eq!(report.seeds, vec![0, 1]);
        assert_eq!(report.runs[0].train_examples, 100);
        // Batch-norm running statistics (mean and variance of 16 + 32 channels) do not train.
        assert_eq!(report.params.trainable, report.params.total - 2 * 48);
        // 100 labels of 10 classes: far above chance (0.1).
        assert!(report.accuracy_mean > 0.5, "{:?}", report.runs);
        assert!(report.runs.iter().all(|r| r.metrics.confusion.len() == 10));
        let json = serde_json::to_string(&report).unwrap();
        let back: crate::report::FinetuneReport = serde_json::from_str(&json).unwrap();
        // (Settings hold f32 optimizer constants, which JSON round-trips only approximately.)
        assert_eq!((back.runs, back.params), (report.runs, report.params));
        assert!(dir.path().join("full-10-seed0/metrics.jsonl").is_file());
    }

    #[test]
    fn wrong_inputs_give_clear_errors() {
        let task = digits_task();
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let settings = quick_settings(2);
        // A head for 5 classes on 10-class data.
        let (classifier, _) = prepare_classifier(
            backbone::<Ad>(&cnn_config()),
            32,
            5,
            &Trainable::All,
            &settings,
            &dev,
        )
        .unwrap();
        let err = train_classifier(
            classifier,
            task.train.clone(),
            batcher(),
            &settings,
            dir.path(),
            true,
            &dev,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("head predicts 5 classes") && err.contains("found class"),
            "{err}"
        );
        // Adapters and LoRA on a CNN.
        for trainable in [
            Trainable::Adapters(AdapterSettings::default()),
            Trainable::Lora(LoraSettings::default()),
        ] {
            let err = prepare_classifier(
                backbone::<Ad>(&cnn_config()),
                32,
                10,
                &trainable,
                &settings,
                &dev,
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("small-cnn encoder") && err.contains("no transformer blocks"),
                "{err}"
            );
        }
        // Freezing more blocks than there are.
        let err = prepare_classifier(
            backbone::<Ad>(&vit_config()),
            32,
            10,
            &Trainable::Partial(FreezeSpec {
                embeddings: false,
                blocks: 3,
            }),
            &settings,
            &dev,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("freeze.blocks") && err.contains("has 2 blocks"),
            "{err}"
        );
        // Unlabeled items.
        let mut unlabeled = task.train[..4].to_vec();
        unlabeled[2].label = None;
        let (classifier, _) = prepare_classifier(
            backbone::<Ad>(&cnn_config()),
            32,
            10,
            &Trainable::All,
            &settings,
            &dev,
        )
        .unwrap();
        let err = train_classifier(
            classifier,
            unlabeled,
            batcher(),
            &settings,
            dir.path(),
            true,
            &dev,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("item 2 has no label"), "{err}");
        // A checkpoint of another architecture.
        let path = dir.path().join("vit.safetensors");
        pretrain_models::save_safetensors(&backbone::<crate::testing::B>(&vit_config()), &path)
            .unwrap();
        let err =
            pretrain_models::load_safetensors(backbone::<crate::testing::B>(&cnn_config()), &path)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("vit.safetensors") && err.contains("does not match the model"),
            "{err}"
        );
        assert!(
            crate::evaluate::Strategy::parse("prompt")
                .unwrap_err()
                .to_string()
                .contains("linear-probe, knn")
        );
        pretrain_data::names::assert_serde_names::<crate::evaluate::Strategy>();
    }
}
