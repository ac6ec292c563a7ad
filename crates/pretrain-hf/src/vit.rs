//! ViT (`ViTModel`, the encoder of `ViTFor*` models under `vit.`) to and from [`Vit`]; the
//! encoder of a ViT-MAE (`ViTMAEModel`, or `ViTMAEForPreTraining` without its decoder) too.
//!
//! Names differ module by module (a table in [`hf_name`]); `nn.Linear` weights are transposed,
//! the patch projection (`Conv2d`, `[out, in, k, k]` in both) is not. A `ViTModel`'s pooler
//! (dense + tanh on the class token) has no counterpart in the ViT here: it is not imported,
//! and the result says so; the export leaves it out (load it with `add_pooling_layer=False`).

use pretrain_models::FusedBackend;
use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use pretrain_models::pos_embed::sincos_2d;
use pretrain_models::{Pooling, PositionEmbedding, Vit, VitConfig};
use serde_json::{Map, Value, json};

use crate::checkpoint::{self, CONFIG_FILE, HfCheckpoint, HfTensor, WEIGHTS_FILE};
use crate::error::{HfError, Result};
use crate::gpt2::{field, one_of};
use crate::mapping::{self, PRETRAIN_ONLY, Source};

/// The prefix of the encoder in `ViTFor*` and `ViTMAEForPreTraining` models.
pub(crate) const PREFIX: &str = "vit.";
/// The checkpoint's position table (learned in a ViT, the fixed sin-cos table in a ViT-MAE).
const POSITIONS: &str = "embeddings.position_embeddings";

/// The feed-forward width `intermediate` over `width` as the ratio a [`VitConfig`] or
/// [`pretrain_models::MaeConfig`] takes; refused (naming `name`) when no ratio gives it back.
pub(crate) fn mlp_ratio(width: usize, intermediate: usize, name: &str, path: &Path) -> Result<f64> {
    let ratio = intermediate as f64 / width.max(1) as f64;
    if (width as f64 * ratio).round() as usize != intermediate {
        return Err(HfError::config(
            path,
            name,
            format!("{intermediate} is not a width the blocks here build from {width}"),
        ));
    }
    Ok(ratio)
}

/// The encoder fields a ViT and a ViT-MAE `config.json` share, as a [`VitConfig`] with
/// `position` embeddings and class-token pooling; a value [`Vit`] cannot reproduce is refused
/// naming the field.
pub(crate) fn encoder_config(
    config: &Value,
    path: &Path,
    position: PositionEmbedding,
) -> Result<VitConfig> {
    let refuse = |name: &str, message: String| Err(HfError::config(path, name, message));
    one_of(
        config,
        "hidden_act",
        &["gelu"],
        "the ViT here uses the exact GELU",
        path,
    )?;
    if !field(config, "qkv_bias", true, path)? {
        return refuse("qkv_bias", "only true is supported".into());
    }
    for name in ["hidden_dropout_prob", "attention_probs_dropout_prob"] {
        let rate: f64 = field(config, name, 0.0, path)?;
        if rate != 0.0 {
            return refuse(name, format!("{rate}: the ViT here has no dropout"));
        }
    }
    let hidden: usize = field(config, "hidden_size", 768, path)?;
    let intermediate = field(config, "intermediate_size", 3_072, path)?;
    // A side, or `[height, width]`.
    let [height, width] = match config.get("image_size") {
        Some(Value::Array(_)) => field(config, "image_size", [224; 2], path)?,
        _ => [field(config, "image_size", 224, path)?; 2],
    };
    Ok(VitConfig::new(
        height,
        field(config, "patch_size", 16, path)?,
        field(config, "num_channels", 3, path)?,
        hidden,
        field(config, "num_hidden_layers", 12, path)?,
        field(config, "num_attention_heads", 12, path)?,
    )
    .with_mlp_ratio(mlp_ratio(hidden, intermediate, "intermediate_size", path)?)
    .with_position(position)
    .with_pooling(Pooling::Cls)
    .with_norm_eps(field(config, "layer_norm_eps", 1e-12, path)?)
    .with_image_width((width != height).then_some(width)))
}

/// The `config.json` fields of `config`'s encoder that a ViT and a ViT-MAE share.
pub(crate) fn encoder_config_to_hf(config: &VitConfig) -> Map<String, Value> {
    let fields = json!({
        "hidden_size": config.d_model,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.mlp_width(),
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": config.norm_eps,
        "image_size": match config.image_width {
            Some(width) => json!([config.image_size, width]),
            None => json!(config.image_size),
        },
        "patch_size": config.patch_size,
        "num_channels": config.channels,
        "qkv_bias": true,
    });
    let Value::Object(fields) = fields else {
        unreachable!("a JSON object literal")
    };
    fields
}

/// The [`VitConfig`] a ViT `config.json` describes (`model_type` `vit`: learned positions;
/// `vit_mae`: the fixed sin-cos positions), class-token pooling; a value [`Vit`] cannot
/// reproduce is refused naming the field. `path` names the file.
pub fn config_from_hf(config: &Value, path: &Path) -> Result<VitConfig> {
    let kind = one_of(
        config,
        "model_type",
        &["vit", "vit_mae"],
        "this import reads ViT and ViT-MAE checkpoints",
        path,
    )?;
    let position = match kind.as_str() {
        "vit" => PositionEmbedding::Learned,
        _ => PositionEmbedding::SinCos,
    };
    encoder_config(config, path, position)
}

/// The `config.json` of `config` as a `ViTModel`.
pub fn config_to_hf(config: &VitConfig) -> Value {
    let mut fields = encoder_config_to_hf(config);
    fields.insert("architectures".into(), json!(["ViTModel"]));
    fields.insert("model_type".into(), json!("vit"));
    Value::Object(fields)
}

/// The checkpoint's name of a transformer block's module (`norm1`, `attn.query`, ...) inside
/// a ViT layer, the same in a ViT-MAE's decoder layers; `None` for one it has no place for.
pub(crate) fn block_part(module: &str) -> Option<&'static str> {
    Some(match module {
        "norm1" => "layernorm_before",
        "attn.query" => "attention.attention.query",
        "attn.key" => "attention.attention.key",
        "attn.value" => "attention.attention.value",
        "attn.output" => "attention.output.dense",
        "norm2" => "layernorm_after",
        "mlp.fc1" => "intermediate.dense",
        "mlp.fc2" => "output.dense",
        _ => return None,
    })
}

/// PyTorch's name of a parameter leaf (`gamma`/`beta` of a burn layer norm are `weight`/`bias`).
pub(crate) fn leaf_name(leaf: &str) -> &str {
    match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    }
}

/// Whether one of this workspace's tensor names (`ours`) is a linear layer's weight, stored
/// transposed in PyTorch (layer norms name theirs `gamma`, the patch projection is a conv).
pub(crate) fn is_linear_weight(ours: &str) -> bool {
    ours.ends_with(".weight") && !ours.contains("patch_embed.")
}

/// The checkpoint's name of one of [`Vit`]'s tensors (without `vit.`).
pub(crate) fn hf_name(ours: &str) -> String {
    let (module, leaf) = ours.rsplit_once('.').unwrap_or(("", ours));
    let leaf = leaf_name(leaf);
    let module = match module {
        "" => {
            return match leaf {
                "cls_token" => "embeddings.cls_token".into(),
                "pos_embed" => POSITIONS.into(),
                other => format!("{PRETRAIN_ONLY}{other}"),
            };
        }
        "patch_embed" => "embeddings.patch_embeddings.projection".into(),
        "norm" => "layernorm".into(),
        other => match other
            .strip_prefix("blocks.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(i, rest)| Some((i, block_part(rest)?)))
        {
            Some((i, part)) => format!("encoder.layer.{i}.{part}"),
            None => return format!("{PRETRAIN_ONLY}{ours}"),
        },
    };
    format!("{module}.{leaf}")
}

/// Removes the fixed sin-cos position table `name` (`[1, 1 + patches, dim]` for a `grid` of
/// `[rows, columns]` patches, the class token's row zero) from `tensors`, refusing one that is
/// missing, misshapen or holds other values: the MAE here computes that table rather than
/// storing it (`weights` names the file).
pub(crate) fn take_sincos(
    tensors: &mut BTreeMap<String, HfTensor>,
    name: &str,
    grid: [usize; 2],
    dim: usize,
    weights: &Path,
) -> Result<()> {
    let tensor = tensors.remove(name).ok_or_else(|| {
        HfError::tensor(
            weights,
            name,
            "missing: a ViT-MAE stores its fixed positions",
        )
    })?;
    let HfTensor {
        shape,
        values: table,
    } = sincos_tensor(grid, dim);
    if tensor.shape != shape {
        return Err(HfError::tensor(
            weights,
            name,
            format!(
                "has shape {:?}, but config.json describes {shape:?}",
                tensor.shape
            ),
        ));
    }
    let worst = table
        .iter()
        .zip(&tensor.values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // A NaN is refused too.
    if worst > 1e-5 || tensor.values.iter().any(|v| v.is_nan()) {
        return Err(HfError::tensor(
            weights,
            name,
            format!(
                "is not the fixed 2-D sin-cos table of a ViT-MAE (largest difference {worst:.3e}); the MAE here computes its positions, it does not learn them"
            ),
        ));
    }
    Ok(())
}

/// The sin-cos table of a MAE of width `dim` on a `grid` of `[rows, columns]` patches, as a
/// ViT-MAE stores it.
pub(crate) fn sincos_tensor(grid: [usize; 2], dim: usize) -> HfTensor {
    HfTensor {
        shape: vec![1, grid[0] * grid[1] + 1, dim],
        values: sincos_2d(grid, dim, true),
    }
}

/// `model`'s tensors named as a checkpoint of `architecture` holds them (through `hf_name`,
/// linear weights transposed); a tensor with no place there (LoRA, adapters) is refused.
pub(crate) fn hf_tensors<B: FusedBackend, M: burn::module::Module<B>>(
    model: &M,
    hf_name: impl Fn(&str) -> String,
    architecture: &str,
    weights: &Path,
) -> Result<BTreeMap<String, HfTensor>> {
    let mut tensors = BTreeMap::new();
    for (name, tensor) in mapping::model_tensors(model, weights)? {
        let hf = hf_name(&name);
        if hf.starts_with(PRETRAIN_ONLY) {
            return Err(mapping::fine_tuning_addition(weights, &name, architecture));
        }
        let tensor = match is_linear_weight(&name) {
            true => tensor.transposed().expect("linear weights are matrices"),
            false => tensor,
        };
        tensors.insert(hf, tensor);
    }
    Ok(tensors)
}

/// Writes `model` (built from `config`) to `dir` as a `ViTModel` checkpoint without a pooler
/// (`ViTModel.from_pretrained(dir, add_pooling_layer=False)` loads it with no missing or
/// unexpected keys): fixed sin-cos positions are written as the table they compute.
pub fn save<B: FusedBackend>(model: &Vit<B>, config: &VitConfig, dir: &Path) -> Result<()> {
    let weights = dir.join(WEIGHTS_FILE);
    let mut tensors = hf_tensors(model, hf_name, "ViTModel", &weights)?;
    tensors
        .entry(POSITIONS.into())
        .or_insert_with(|| sincos_tensor(config.grid(), config.d_model));
    checkpoint::write(dir, &config_to_hf(config), &tensors)
}

/// A ViT checkpoint read into a [`Vit`].
pub struct ImportedVit<B: Backend> {
    /// Its configuration.
    pub config: VitConfig,
    /// The model.
    pub model: Vit<B>,
    /// Checkpoint tensors not imported: a `ViTModel`'s pooler, a `ViTMAEForPreTraining`'s
    /// decoder (see [`crate::vit_mae`] for the whole MAE).
    pub not_imported: Vec<String>,
}

/// Reads the ViT or ViT-MAE checkpoint in `dir` into a [`Vit`] on `device`: every weight the
/// config implies must be present with its shape, a ViT-MAE's positions must be the fixed
/// sin-cos table, and no other tensor may be there but a pooler or a MAE decoder (a missing,
/// misshapen or unexpected tensor is refused naming it).
pub fn load<B: FusedBackend>(dir: &Path, device: &B::Device) -> Result<ImportedVit<B>> {
    let checkpoint = HfCheckpoint::read(dir)?;
    let config = config_from_hf(&checkpoint.config, &dir.join(CONFIG_FILE))?;
    let weights = dir.join(WEIGHTS_FILE);
    let mae = config.position == PositionEmbedding::SinCos;
    let mut not_imported = Vec::new();
    let mut tensors: BTreeMap<String, HfTensor> = checkpoint
        .tensors
        .into_iter()
        .filter(|(name, _)| {
            let other = name.starts_with("pooler.") || (mae && name.starts_with("decoder."));
            if other {
                not_imported.push(name.clone());
            }
            !other
        })
        .collect();
    tensors = mapping::without_prefix(tensors, PREFIX).collect();
    if mae {
        take_sincos(
            &mut tensors,
            POSITIONS,
            config.grid(),
            config.d_model,
            &weights,
        )?;
    }
    let architecture = if mae {
        "ViT-MAE encoder (ViTMAEModel)"
    } else {
        "ViT (ViTModel)"
    };
    mapping::check_fits(config.num_params(), &tensors, &weights, architecture)?;
    let model = config.init::<B>(device)?;
    let source = |name: &str| Source {
        transposed: is_linear_weight(name),
        name: hf_name(name),
        optional_head: None,
    };
    let (model, _) = mapping::load_mapped(model, tensors, source, &weights, architecture)?;
    Ok(ImportedVit {
        config,
        model,
        not_imported,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};
    use serde_json::json;

    use super::*;
    use crate::testing::{fixture, flat, json_file, max_diff};

    type B = Flex;

    /// `model`'s last hidden states on fixture `dir`'s images of `[height, width]`, and their
    /// largest difference from transformers'.
    fn hidden_diff(model: &Vit<B>, dir: &Path, [height, width]: [usize; 2]) -> f32 {
        let pixels = flat(&json_file(&dir.join("inputs.json"))["pixel_values"]);
        let images = Tensor::<B, 4>::from_data(
            TensorData::new(pixels, [2, 3, height, width]),
            &Default::default(),
        );
        let hidden: Vec<f32> = model.forward_tokens(images).into_data().to_vec().unwrap();
        let want = flat(&json_file(&dir.join("expected.json"))["last_hidden_state"]);
        max_diff(&hidden, &want)
    }

    #[test]
    fn a_transformers_checkpoint_gives_transformers_outputs() {
        let dir = fixture("vit-odd");
        let imported = load::<B>(&dir, &Default::default()).unwrap();
        assert_eq!(
            imported.not_imported,
            ["pooler.dense.bias", "pooler.dense.weight"]
        );
        assert_eq!(
            (imported.config.mlp_ratio, imported.config.norm_eps),
            (20.0 / 12.0, 1e-6)
        );
        let diff = hidden_diff(&imported.model, &dir, [12, 12]);
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn a_model_carrying_lora_is_refused_on_export() {
        let mut imported = load::<B>(&fixture("vit-odd"), &Default::default()).unwrap();
        let config = pretrain_models::LoraConfig::new().with_rank(2);
        imported.model.blocks[1]
            .attn
            .query
            .add_lora(&config, &Default::default())
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let err = save(&imported.model, &imported.config, out.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("tensor blocks.1.attn.query.lora.") && err.contains("merge LoRA"),
            "{err}"
        );
    }

    #[test]
    fn images_that_are_not_square_import_and_export() {
        let dir = fixture("vit-wide");
        let imported = load::<B>(&dir, &Default::default()).unwrap();
        assert_eq!(imported.config.image_hw(), [12, 16]);
        let diff = hidden_diff(&imported.model, &dir, [12, 16]);
        assert!(diff < 1e-4, "{diff}");
        // Written back (without the pooler) and read again: the same model.
        let out = tempfile::tempdir().unwrap();
        save(&imported.model, &imported.config, out.path()).unwrap();
        let written = HfCheckpoint::read(out.path()).unwrap();
        assert_eq!(written.config["image_size"], json!([12, 16]));
        let original = HfCheckpoint::read(&dir).unwrap();
        for (name, tensor) in &written.tensors {
            assert_eq!(tensor, &original.tensors[name], "{name}");
        }
        assert_eq!(written.tensors.len() + 2, original.tensors.len());
        let again = load::<B>(out.path(), &Default::default()).unwrap();
        assert!(again.not_imported.is_empty());
        assert_eq!(hidden_diff(&again.model, &dir, [12, 16]), diff);
    }

    #[test]
    fn bad_checkpoints_are_refused_naming_the_tensor_or_field() {
        let load_edited = |edit: &dyn Fn(&mut Value, &mut BTreeMap<String, HfTensor>)| {
            crate::testing::load_edited("vit-odd", edit, |dir| load::<B>(dir, &Default::default()))
                .unwrap_err()
        };
        let err = load_edited(&|_, t| {
            t.remove("embeddings.cls_token");
        });
        assert!(
            err.contains("tensor embeddings.cls_token: missing"),
            "{err}"
        );
        let err = load_edited(&|c, _| c["image_size"] = json!(16));
        assert!(
            err.contains("embeddings.position_embeddings: has shape [1, 10, 12], but config.json describes [1, 17, 12]"),
            "{err}"
        );
        let err = load_edited(&|c, _| c["image_size"] = json!([12, 16, 2]));
        assert!(err.contains("field image_size: [12,16,2]"), "{err}");
        let err = load_edited(&|c, _| c["qkv_bias"] = json!(false));
        assert!(err.contains("field qkv_bias"), "{err}");
        let err = load_edited(&|c, _| c["hidden_dropout_prob"] = json!(0.1));
        assert!(err.contains("field hidden_dropout_prob: 0.1"), "{err}");
        let err = load_edited(&|c, _| c["intermediate_size"] = json!(7));
        assert!(
            err.contains(
                "encoder.layer.0.intermediate.dense.bias: has shape [20], but config.json \
                 describes [7]"
            ),
            "{err}"
        );
    }
}
