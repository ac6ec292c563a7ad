//! ViT-MAE (`ViTMAEForPreTraining`: encoder under `vit.`, decoder under `decoder.`) to and
//! from [`Mae`]. The encoder's names are the ViT's ([`crate::vit`]); the decoder's layers are
//! named like the encoder's, under `decoder.decoder_layers.{i}.` (what transformers 4 wrote and
//! every version reads; transformers 5 writes `decoder.decoder_encoder.layer.{i}.`, read too).
//! Both position tables are the fixed 2-D sin-cos table, which the MAE here computes: an import
//! checks them, an export writes them.

use pretrain_models::FusedBackend;
use std::path::Path;

use burn::tensor::backend::Backend;
use pretrain_models::{Mae, MaeConfig, PositionEmbedding};
use serde_json::{Value, json};

use crate::checkpoint::{self, CONFIG_FILE, HfCheckpoint, WEIGHTS_FILE};
use crate::error::Result;
use crate::gpt2::{field, one_of};
use crate::mapping::PRETRAIN_ONLY;
use crate::mapping::{self, Source};
use crate::vit::{self, PREFIX};

/// The decoder's prefix.
const DECODER: &str = "decoder.";
/// Where transformers 4 keeps decoder layer `i` (`{DECODER_LAYERS}{i}.`).
const DECODER_LAYERS: &str = "decoder.decoder_layers.";
/// Where transformers 5 writes them.
const DECODER_LAYERS_V5: &str = "decoder.decoder_encoder.layer.";
/// The decoder's fixed position table.
const DECODER_POSITIONS: &str = "decoder.decoder_pos_embed";

/// What a ViT-MAE's config says about its pre-training beside the model: the share of
/// patches hidden and whether targets are normalized per patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaeTraining {
    /// Share of patches masked (`mask_ratio`).
    pub mask_ratio: f64,
    /// Pixel targets normalized per patch (`norm_pix_loss`).
    pub norm_pix_loss: bool,
}

/// Patches `ViTMAEForPreTraining` keeps visible of `patches` at `mask_ratio`:
/// `int(patches * (1 - mask_ratio))`.
pub fn kept_patches(patches: usize, mask_ratio: f64) -> usize {
    (patches as f64 * (1.0 - mask_ratio)) as usize
}

/// The masking `ViTMAEForPreTraining` applies for `noise` (`patches` values per image, images
/// one after another): each image's patches sorted by noise, the first [`kept_patches`] kept.
/// Returns the kept patch indices (`[images, kept]`, flattened) and each patch's position in
/// kept ++ masked (`[images, patches]`): what [`Mae::forward`] takes as `keep` and `restore`.
pub fn masking_from_noise(noise: &[f32], patches: usize, mask_ratio: f64) -> (Vec<i64>, Vec<i64>) {
    let kept = kept_patches(patches, mask_ratio);
    let (mut keep, mut restore) = (Vec::new(), Vec::new());
    for row in noise.chunks(patches.max(1)) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        // Stable, as torch.argsort on distinct values; NaN sorts last.
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
        let mut rank = vec![0; row.len()];
        for (r, &p) in order.iter().enumerate() {
            rank[p] = r as i64;
        }
        keep.extend(order[..kept.min(row.len())].iter().map(|&p| p as i64));
        restore.extend(rank);
    }
    (keep, restore)
}

/// The [`MaeConfig`] and training settings a ViT-MAE `config.json` describes; a value [`Mae`]
/// cannot reproduce is refused naming the field. `path` names the file.
pub fn config_from_hf(config: &Value, path: &Path) -> Result<(MaeConfig, MaeTraining)> {
    one_of(
        config,
        "model_type",
        &["vit_mae"],
        "this import reads ViT-MAE checkpoints",
        path,
    )?;
    let encoder = vit::encoder_config(config, path, PositionEmbedding::SinCos)?;
    let width: usize = field(config, "decoder_hidden_size", 512, path)?;
    let intermediate = field(config, "decoder_intermediate_size", 2_048, path)?;
    let model = MaeConfig::new(encoder)
        .with_decoder_dim(width)
        .with_decoder_depth(field(config, "decoder_num_hidden_layers", 8, path)?)
        .with_decoder_heads(field(config, "decoder_num_attention_heads", 16, path)?)
        .with_decoder_mlp_ratio(vit::mlp_ratio(
            width,
            intermediate,
            "decoder_intermediate_size",
            path,
        )?);
    let training = MaeTraining {
        mask_ratio: field(config, "mask_ratio", 0.75, path)?,
        norm_pix_loss: field(config, "norm_pix_loss", false, path)?,
    };
    Ok((model, training))
}

/// The `config.json` of `config` as a `ViTMAEForPreTraining` trained with `training`.
pub fn config_to_hf(config: &MaeConfig, training: MaeTraining) -> Value {
    let mut fields = vit::encoder_config_to_hf(&config.encoder);
    for (name, value) in [
        ("architectures", json!(["ViTMAEForPreTraining"])),
        ("model_type", json!("vit_mae")),
        ("decoder_hidden_size", json!(config.decoder_dim)),
        ("decoder_num_hidden_layers", json!(config.decoder_depth)),
        ("decoder_num_attention_heads", json!(config.decoder_heads)),
        (
            "decoder_intermediate_size",
            json!(config.decoder_mlp_width()),
        ),
        ("mask_ratio", json!(training.mask_ratio)),
        ("norm_pix_loss", json!(training.norm_pix_loss)),
    ] {
        fields.insert(name.into(), value);
    }
    Value::Object(fields)
}

/// The checkpoint's name of one of [`Mae`]'s tensors.
fn hf_name(ours: &str) -> String {
    if let Some(encoder) = ours.strip_prefix("encoder.") {
        return format!("{PREFIX}{}", vit::hf_name(encoder));
    }
    let (module, leaf) = ours.rsplit_once('.').unwrap_or(("", ours));
    let leaf = vit::leaf_name(leaf);
    match module {
        "" if leaf == "mask_token" => format!("{DECODER}mask_token"),
        "decoder_embed" | "decoder_norm" | "decoder_pred" => format!("{DECODER}{module}.{leaf}"),
        other => match other
            .strip_prefix("decoder_blocks.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(i, rest)| Some((i, vit::block_part(rest)?)))
        {
            Some((i, part)) => format!("{DECODER_LAYERS}{i}.{part}.{leaf}"),
            None => format!("{PRETRAIN_ONLY}{ours}"),
        },
    }
}

/// Writes `model` (built from `config`, trained with `training`) to `dir` as a
/// `ViTMAEForPreTraining` checkpoint: `config.json` and `model.safetensors`, the fixed
/// position tables included. A model carrying LoRA updates or adapters is refused.
pub fn save<B: FusedBackend>(
    model: &Mae<B>,
    config: &MaeConfig,
    training: MaeTraining,
    dir: &Path,
) -> Result<()> {
    let weights = dir.join(WEIGHTS_FILE);
    let mut tensors = vit::hf_tensors(model, hf_name, "ViTMAEForPreTraining", &weights)?;
    let encoder = &config.encoder;
    tensors
        .entry(format!("{PREFIX}{}", vit::hf_name("pos_embed")))
        .or_insert_with(|| vit::sincos_tensor(encoder.grid(), encoder.d_model));
    tensors.insert(
        DECODER_POSITIONS.into(),
        vit::sincos_tensor(encoder.grid(), config.decoder_dim),
    );
    checkpoint::write(dir, &config_to_hf(config, training), &tensors)
}

/// A ViT-MAE checkpoint read into an [`Mae`].
pub struct ImportedMae<B: Backend> {
    /// Its configuration.
    pub config: MaeConfig,
    /// Its pre-training settings.
    pub training: MaeTraining,
    /// The model.
    pub model: Mae<B>,
}

/// Reads the `ViTMAEForPreTraining` checkpoint in `dir` into an [`Mae`] on `device`: every
/// weight the config implies must be present with its shape, both position tables must be the
/// fixed sin-cos table, and no other tensor may be there (a missing, misshapen or unexpected
/// tensor is refused naming it; a `ViTMAEModel`, which has no decoder, is read by
/// [`crate::vit::load`]).
pub fn load<B: FusedBackend>(dir: &Path, device: &B::Device) -> Result<ImportedMae<B>> {
    let checkpoint = HfCheckpoint::read(dir)?;
    let (config, training) = config_from_hf(&checkpoint.config, &dir.join(CONFIG_FILE))?;
    let weights = dir.join(WEIGHTS_FILE);
    let mut tensors = checkpoint.tensors;
    // Messages name the decoder layers as the file does.
    let layers = match tensors.keys().any(|n| n.starts_with(DECODER_LAYERS_V5)) {
        true => DECODER_LAYERS_V5,
        false => DECODER_LAYERS,
    };
    let grid = config.encoder.grid();
    let encoder_positions = format!("{PREFIX}{}", vit::hf_name("pos_embed"));
    vit::take_sincos(
        &mut tensors,
        &encoder_positions,
        grid,
        config.encoder.d_model,
        &weights,
    )?;
    vit::take_sincos(
        &mut tensors,
        DECODER_POSITIONS,
        grid,
        config.decoder_dim,
        &weights,
    )?;
    let architecture = "ViT-MAE (ViTMAEForPreTraining)";
    mapping::check_fits(config.num_params(), &tensors, &weights, architecture)?;
    let model = config.init::<B>(device)?;
    let source = |name: &str| Source {
        transposed: vit::is_linear_weight(name),
        name: hf_name(name).replacen(DECODER_LAYERS, layers, 1),
        optional_head: None,
    };
    let (model, _) = mapping::load_mapped(model, tensors, source, &weights, architecture)?;
    Ok(ImportedMae {
        config,
        training,
        model,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::backend::Flex;
    use burn::tensor::{Int, Tensor, TensorData};
    use serde_json::json;

    use super::*;
    use crate::checkpoint::HfTensor;
    use crate::testing::{fixture, flat, json_file, max_diff};

    type B = Flex;

    /// The fixture's images, and the kept and restore indices its noise gives.
    fn inputs(dir: &Path, mask_ratio: f64) -> (Tensor<B, 4>, Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let device = Default::default();
        let inputs = json_file(&dir.join("inputs.json"));
        let pixels = flat(&inputs["pixel_values"]);
        let images = Tensor::from_data(TensorData::new(pixels, [2, 3, 12, 12]), &device);
        let (keep, restore) = masking_from_noise(&flat(&inputs["noise"]), 9, mask_ratio);
        (
            images,
            Tensor::from_data(
                TensorData::new(keep, [2, kept_patches(9, mask_ratio)]),
                &device,
            ),
            Tensor::from_data(TensorData::new(restore, [2, 9]), &device),
        )
    }

    #[test]
    fn a_transformers_checkpoint_gives_transformers_outputs() {
        let dir = fixture("vit-mae-odd");
        let imported = load::<B>(&dir, &Default::default()).unwrap();
        assert_eq!(
            imported.training,
            MaeTraining {
                mask_ratio: 0.5,
                norm_pix_loss: true
            }
        );
        assert_eq!(
            (
                imported.config.decoder_dim,
                imported.config.decoder_mlp_width()
            ),
            (8, 12)
        );
        let (images, keep, restore) = inputs(&dir, imported.training.mask_ratio);
        let (latent, logits) = imported.model.forward_with_latent(images, keep, restore);
        let expected = json_file(&dir.join("expected.json"));
        for (name, got) in [
            ("last_hidden_state", latent.into_data()),
            ("logits", logits.into_data()),
        ] {
            let got: Vec<f32> = got.to_vec().unwrap();
            let diff = max_diff(&got, &flat(&expected[name]));
            assert!(diff < 1e-4, "{name}: {diff}");
        }
    }

    #[test]
    fn the_encoder_alone_reads_as_a_vit() {
        let dir = fixture("vit-mae-odd");
        let imported = vit::load::<B>(&dir, &Default::default()).unwrap();
        assert_eq!(imported.config.position, PositionEmbedding::SinCos);
        assert!(imported.not_imported.iter().all(|n| n.starts_with(DECODER)));
        let full = load::<B>(&dir, &Default::default()).unwrap();
        let (images, keep, _) = inputs(&dir, 0.5);
        let a: Vec<f32> = imported
            .model
            .forward_visible(images.clone(), keep.clone())
            .into_data()
            .to_vec()
            .unwrap();
        let b: Vec<f32> = full
            .model
            .encoder
            .forward_visible(images, keep)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn an_export_reads_back_as_the_same_model() {
        let dir = fixture("vit-mae-odd");
        let imported = load::<B>(&dir, &Default::default()).unwrap();
        let out = tempfile::tempdir().unwrap();
        save(
            &imported.model,
            &imported.config,
            imported.training,
            out.path(),
        )
        .unwrap();
        let written = HfCheckpoint::read(out.path()).unwrap();
        let original = HfCheckpoint::read(&dir).unwrap();
        // transformers 5 wrote the fixture's decoder layers under another name.
        let renamed: BTreeMap<String, HfTensor> = original
            .tensors
            .into_iter()
            .map(|(n, t)| (n.replace(DECODER_LAYERS_V5, DECODER_LAYERS), t))
            .collect();
        assert_eq!(
            written.tensors.keys().collect::<Vec<_>>(),
            renamed.keys().collect::<Vec<_>>()
        );
        for (name, tensor) in &written.tensors {
            let diff = max_diff(&tensor.values, &renamed[name].values);
            assert!(diff < 1e-6, "{name}: {diff}");
        }
        for field in ["decoder_intermediate_size", "mask_ratio", "layer_norm_eps"] {
            assert_eq!(written.config[field], original.config[field], "{field}");
        }
    }

    #[test]
    fn bad_checkpoints_are_refused_naming_the_tensor_or_field() {
        let load_edited = |edit: &dyn Fn(&mut Value, &mut BTreeMap<String, HfTensor>)| {
            crate::testing::load_edited("vit-mae-odd", edit, |dir| {
                load::<B>(dir, &Default::default())
            })
            .unwrap_err()
        };
        let err = load_edited(&|_, t| {
            t.get_mut(DECODER_POSITIONS).unwrap().values[20] += 0.5;
        });
        assert!(
            err.contains("decoder.decoder_pos_embed: is not the fixed 2-D sin-cos table"),
            "{err}"
        );
        let err = load_edited(&|_, t| {
            t.remove("decoder.mask_token");
        });
        assert!(err.contains("tensor decoder.mask_token: missing"), "{err}");
        let err = load_edited(&|c, _| c["decoder_intermediate_size"] = json!(99));
        assert!(
            err.contains(
                "decoder.decoder_encoder.layer.0.intermediate.dense.bias: has shape [12], but \
                 config.json describes [99]"
            ),
            "{err}"
        );
        let err = load_edited(&|c, _| c["model_type"] = json!("vit"));
        assert!(err.contains("field model_type: \"vit\""), "{err}");
        let err = load_edited(&|_, t| {
            t.insert(
                "decoder.extra".into(),
                HfTensor {
                    shape: vec![1],
                    values: vec![0.0],
                },
            );
        });
        assert!(err.contains("decoder.extra: unexpected"), "{err}");
    }
}
