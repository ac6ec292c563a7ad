//! Parameter-efficient fine-tuning: LoRA on chosen projections and bottleneck adapters in the
//! transformer blocks, with merging, unmerging and adapter-only checkpoints.

use pretrain_models::FusedBackend;
use std::path::Path;

use pretrain_data::Named;
use pretrain_models::store::{load_safetensors_where, save_safetensors_where};
use pretrain_models::{AdaptableBlock, AdapterConfig, LoraConfig, Projection, ProjectionRole};
use serde::{Deserialize, Serialize};

use crate::backbone::Backbone;
use crate::classifier::Classifier;
use crate::error::{FinetuneError, Result};

/// A projection of the transformer block that LoRA can adapt (GPT's query, key and value
/// share its fused `c_attn`: naming any of them adapts it, as PEFT's GPT-2 default does).
pub type LoraTarget = ProjectionRole;

/// LoRA settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank of each update.
    pub rank: usize,
    /// Scale numerator: updates are multiplied by `alpha / rank`.
    pub alpha: f64,
    /// Dropout on the LoRA branch input.
    pub dropout: f64,
    /// Projections that get an update (query and value by default, as the LoRA paper).
    pub targets: Vec<LoraTarget>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec![LoraTarget::Query, LoraTarget::Value],
        }
    }
}

/// Adapter settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterSettings {
    /// Bottleneck width of each adapter.
    pub bottleneck: usize,
}

impl Default for AdapterSettings {
    fn default() -> Self {
        Self { bottleneck: 64 }
    }
}

/// Adds fresh LoRA updates (identity at init) to the `targets` of every block; a layer that
/// serves several targets (GPT's `c_attn`) gets one update.
pub fn add_lora<B: FusedBackend>(
    mut encoder: Backbone<B>,
    settings: &LoraSettings,
    device: &B::Device,
) -> Result<Backbone<B>> {
    if settings.targets.is_empty() {
        return Err(FinetuneError::Config {
            field: "lora.targets",
            message: "name at least one of query, key, value, output, fc1, fc2".into(),
        });
    }
    let config = LoraConfig::new()
        .with_rank(settings.rank)
        .with_alpha(settings.alpha)
        .with_dropout(settings.dropout);
    config.validate()?;
    for block in encoder.adaptable_blocks("LoRA")? {
        for_each_layer(block, &settings.targets, |projection| {
            projection.add_lora(&config, device)
        })?;
    }
    Ok(encoder)
}

/// Calls `f` once on each distinct layer serving one of `roles` in `block` (layers are told
/// apart by address: a fused one comes back for several roles).
fn for_each_layer<B: FusedBackend, E>(
    block: &mut dyn AdaptableBlock<B>,
    roles: &[LoraTarget],
    mut f: impl FnMut(&mut Projection<B>) -> Result<(), E>,
) -> Result<(), E> {
    let mut done: Vec<*const Projection<B>> = Vec::new();
    for &role in roles {
        let projection = block.projection_mut(role);
        let address = projection as *const Projection<B>;
        if !done.contains(&address) {
            done.push(address);
            f(projection)?;
        }
    }
    Ok(())
}

/// Inserts fresh adapters (identity at init) after the attention and MLP sublayers of every
/// block.
pub fn add_adapters<B: FusedBackend>(
    mut encoder: Backbone<B>,
    settings: &AdapterSettings,
    device: &B::Device,
) -> Result<Backbone<B>> {
    let config = AdapterConfig::new().with_bottleneck(settings.bottleneck);
    for block in encoder.adaptable_blocks("adapters")? {
        block.add_adapters(&config, device)?;
    }
    Ok(encoder)
}

fn map_projections<B: FusedBackend>(
    mut encoder: Backbone<B>,
    f: impl Fn(&mut Projection<B>),
) -> Backbone<B> {
    if let Ok(blocks) = encoder.adaptable_blocks("LoRA") {
        for block in blocks {
            let Ok(()) = for_each_layer(block, LoraTarget::all(), |projection| {
                f(projection);
                Ok::<(), std::convert::Infallible>(())
            });
        }
    }
    encoder
}

/// Folds every LoRA update into its base weight (faster inference); reversible with
/// [`unmerge_lora`].
pub fn merge_lora<B: FusedBackend>(encoder: Backbone<B>) -> Backbone<B> {
    map_projections(encoder, Projection::merge_lora)
}

/// Takes merged LoRA updates back out of the base weights.
pub fn unmerge_lora<B: FusedBackend>(encoder: Backbone<B>) -> Backbone<B> {
    map_projections(encoder, Projection::unmerge_lora)
}

/// Merges and drops every LoRA update: the plain architecture, loadable without LoRA.
pub fn into_merged<B: FusedBackend>(encoder: Backbone<B>) -> Backbone<B> {
    map_projections(encoder, Projection::drop_lora_merged)
}

/// Whether a tensor belongs to what parameter-efficient fine-tuning trains: LoRA updates,
/// adapters and the classification head.
pub fn is_adapter_tensor(path: &str, _container: &str) -> bool {
    path.contains(".lora.") || path.contains("_adapter.") || path.starts_with("head.")
}

/// Saves only the LoRA updates, adapters and head of `model`: a small file that, with the
/// pre-trained base, restores the fine-tuned model.
pub fn save_adapter<B: FusedBackend>(model: &Classifier<B>, path: &Path) -> Result<()> {
    Ok(save_safetensors_where(model, path, is_adapter_tensor)?)
}

/// Loads an adapter file onto `model` (a base with the same LoRA/adapter layout, e.g. built by
/// [`add_lora`] on a fresh copy of the pre-trained encoder). Every adapter tensor of the model
/// must be in the file and the file must hold nothing else.
pub fn load_adapter<B: FusedBackend>(model: Classifier<B>, path: &Path) -> Result<Classifier<B>> {
    Ok(load_safetensors_where(model, path, is_adapter_tensor)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::Inputs;
    use crate::finetune::{FinetuneSettings, Trainable, prepare_classifier, train_classifier};
    use crate::params::count_params;
    use crate::testing::{Ad, B, backbone, batcher, digits_task, seeded, vit_config};
    use burn::data::dataloader::batcher::Batcher;
    use burn::module::AutodiffModule;
    use burn::tensor::Tensor;
    use pretrain_models::{load_safetensors, save_safetensors};

    fn images(n: usize) -> Inputs<B> {
        let task = digits_task();
        let batch: crate::backbone::LabeledBatch<B> =
            batcher().batch(task.test[..n].to_vec(), &Default::default());
        batch.inputs
    }

    fn max_diff(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn fresh_lora_and_adapters_leave_the_base_outputs_unchanged() {
        let dev = Default::default();
        let _guard = seeded(21);
        let base = backbone::<B>(&vit_config());
        let x = images(16);
        let reference = base.features(x.clone()).unwrap();
        let lora = add_lora(base.clone(), &LoraSettings::default(), &dev).unwrap();
        assert_eq!(
            max_diff(lora.features(x.clone()).unwrap(), reference.clone()),
            0.0
        );
        let adapted = add_adapters(base, &AdapterSettings { bottleneck: 8 }, &dev).unwrap();
        assert_eq!(max_diff(adapted.features(x).unwrap(), reference), 0.0);
    }

    #[test]
    fn only_peft_parameters_and_head_train_with_the_expected_counts() {
        let dev = Default::default();
        let _guard = seeded(22);
        let settings = FinetuneSettings::default();
        let (d, blocks, classes, rank) = (32, 2, 10, 4);
        let lora = LoraSettings {
            rank,
            ..LoraSettings::default()
        };
        let (_, count) = prepare_classifier(
            backbone::<Ad>(&vit_config()),
            d,
            classes,
            &Trainable::Lora(lora),
            &settings,
            &dev,
        )
        .unwrap();
        let head = d * classes + classes;
        // Query and value: A [d, r] and B [r, d] each, per block.
        assert_eq!(count.trainable, blocks * 2 * (2 * d * rank) + head);
        let (_, count) = prepare_classifier(
            backbone::<Ad>(&vit_config()),
            d,
            classes,
            &Trainable::Adapters(AdapterSettings { bottleneck: 8 }),
            &settings,
            &dev,
        )
        .unwrap();
        // Two adapters per block: down (d*8 + 8) and up (8*d + d).
        assert_eq!(count.trainable, blocks * 2 * (d * 8 + 8 + 8 * d + d) + head);
        let base_total = count_params(&backbone::<Ad>(&vit_config())).total;
        assert_eq!(
            count.total,
            base_total + blocks * 2 * (d * 8 + 8 + 8 * d + d) + head
        );
    }

    #[test]
    fn trained_lora_merges_unmerges_and_its_adapter_file_restores_the_model() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let task = digits_task();
        let base_path = dir.path().join("pretrained.safetensors");
        let _guard = seeded(23);
        save_safetensors(&backbone::<Ad>(&vit_config()), &base_path).unwrap();
        let pretrained = || load_safetensors(backbone::<Ad>(&vit_config()), &base_path).unwrap();

        let mut settings = FinetuneSettings::default();
        settings.train.steps = 8;
        settings.train.batch_size = 32;
        settings.train.lr = 1e-2;
        let lora = LoraSettings {
            rank: 4,
            targets: vec![LoraTarget::Query, LoraTarget::Value, LoraTarget::Fc1],
            ..LoraSettings::default()
        };
        let (classifier, _) = prepare_classifier(
            pretrained(),
            32,
            10,
            &Trainable::Lora(lora.clone()),
            &settings,
            &dev,
        )
        .unwrap();
        let trained = train_classifier(
            classifier,
            task.train[..128].to_vec(),
            batcher(),
            &settings,
            &dir.path().join("run"),
            true,
            &dev,
        )
        .unwrap();
        let x = images(32);
        let unmerged = trained.forward(x.clone()).unwrap();
        let untrained_base = pretrained().valid().features(x.clone()).unwrap();
        assert!(max_diff(trained.encoder.features(x.clone()).unwrap(), untrained_base) > 1e-4);

        // Merge and unmerge.
        let merged = Classifier {
            encoder: merge_lora(trained.encoder.clone()),
            head: trained.head.clone(),
        };
        assert!(max_diff(merged.forward(x.clone()).unwrap(), unmerged.clone()) < 1e-5);
        let back = Classifier {
            encoder: unmerge_lora(merged.encoder.clone()),
            head: merged.head.clone(),
        };
        assert!(max_diff(back.forward(x.clone()).unwrap(), unmerged.clone()) < 1e-5);
        let exported = into_merged(trained.encoder.clone());
        let exported_path = dir.path().join("merged.safetensors");
        save_safetensors(&exported, &exported_path).unwrap();
        // The merged export loads into the plain architecture.
        let plain = load_safetensors(backbone::<B>(&vit_config()), &exported_path).unwrap();
        let plain = Classifier {
            encoder: plain,
            head: trained.head.clone(),
        };
        assert!(max_diff(plain.forward(x.clone()).unwrap(), unmerged.clone()) < 1e-5);

        // The adapter file alone, onto a fresh copy of the pre-trained base.
        let adapter_path = dir.path().join("adapter.safetensors");
        save_adapter(&trained, &adapter_path).unwrap();
        let adapter_bytes = std::fs::metadata(&adapter_path).unwrap().len();
        let base_bytes = std::fs::metadata(&base_path).unwrap().len();
        assert!(
            adapter_bytes * 3 < base_bytes,
            "{adapter_bytes} vs {base_bytes}"
        );
        let (fresh, _) = prepare_classifier(
            pretrained(),
            32,
            10,
            &Trainable::Lora(lora),
            &settings,
            &dev,
        )
        .unwrap();
        let restored = load_adapter(fresh.valid(), &adapter_path).unwrap();
        assert!(max_diff(restored.forward(x).unwrap(), unmerged) < 1e-6);

        // An adapter file does not fit a model without LoRA.
        let (plain_fresh, _) =
            prepare_classifier(pretrained(), 32, 10, &Trainable::All, &settings, &dev).unwrap();
        let err = load_adapter(plain_fresh.valid(), &adapter_path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("adapter.safetensors") && err.contains("unexpected tensor"),
            "{err}"
        );
    }
}
