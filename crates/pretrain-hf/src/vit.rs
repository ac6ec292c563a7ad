//! ViT (`ViTModel`, the encoder of `ViTFor*` models under `vit.`) to [`Vit`].
//!
//! Names differ module by module (a table in [`hf_name`]); `nn.Linear` weights are transposed,
//! the patch projection (`Conv2d`, `[out, in, k, k]` in both) is not. A `ViTModel`'s pooler
//! (dense + tanh on the class token) has no counterpart in the ViT here: it is not imported,
//! and the result says so.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use pretrain_models::{Pooling, PositionEmbedding, Vit, VitConfig};
use serde_json::Value;

use crate::checkpoint::{CONFIG_FILE, HfCheckpoint, HfTensor, WEIGHTS_FILE};
use crate::error::{HfError, Result};
use crate::gpt2::{field, one_of};
use crate::mapping::{self, Source};

/// The prefix of the encoder in `ViTFor*` models.
const PREFIX: &str = "vit.";

/// The [`VitConfig`] a ViT `config.json` describes (learned positions, class-token pooling);
/// a value [`Vit`] cannot reproduce is refused naming the field. `path` names the file.
pub fn config_from_hf(config: &Value, path: &Path) -> Result<VitConfig> {
    let refuse = |name: &str, message: String| Err(HfError::config(path, name, message));
    one_of(
        config,
        "model_type",
        &["vit"],
        "this import reads ViT checkpoints",
        path,
    )?;
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
    let intermediate: usize = field(config, "intermediate_size", 3_072, path)?;
    let ratio = intermediate as f64 / hidden.max(1) as f64;
    if (hidden as f64 * ratio).round() as usize != intermediate {
        return refuse(
            "intermediate_size",
            format!("{intermediate} is not a width the ViT here builds from {hidden}"),
        );
    }
    Ok(VitConfig::new(
        field(config, "image_size", 224, path)?,
        field(config, "patch_size", 16, path)?,
        field(config, "num_channels", 3, path)?,
        hidden,
        field(config, "num_hidden_layers", 12, path)?,
        field(config, "num_attention_heads", 12, path)?,
    )
    .with_mlp_ratio(ratio)
    .with_position(PositionEmbedding::Learned)
    .with_pooling(Pooling::Cls)
    .with_norm_eps(field(config, "layer_norm_eps", 1e-12, path)?))
}

/// The checkpoint's name of one of [`Vit`]'s tensors (without `vit.`).
fn hf_name(ours: &str) -> String {
    let (module, leaf) = ours.rsplit_once('.').unwrap_or(("", ours));
    let leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    let module = match module {
        "" => {
            return match leaf {
                "cls_token" => "embeddings.cls_token".into(),
                "pos_embed" => "embeddings.position_embeddings".into(),
                other => format!("(pretrain-only) {other}"),
            };
        }
        "patch_embed" => "embeddings.patch_embeddings.projection".into(),
        "norm" => "layernorm".into(),
        other => match other
            .strip_prefix("blocks.")
            .and_then(|r| r.split_once('.'))
        {
            Some((i, rest)) => {
                let part = match rest {
                    "norm1" => "layernorm_before",
                    "attn.query" => "attention.attention.query",
                    "attn.key" => "attention.attention.key",
                    "attn.value" => "attention.attention.value",
                    "attn.output" => "attention.output.dense",
                    "norm2" => "layernorm_after",
                    "mlp.fc1" => "intermediate.dense",
                    "mlp.fc2" => "output.dense",
                    other => return format!("(pretrain-only) blocks.{i}.{other}.{leaf}"),
                };
                format!("encoder.layer.{i}.{part}")
            }
            None => format!("(pretrain-only) {other}"),
        },
    };
    format!("{module}.{leaf}")
}

/// A ViT checkpoint read into a [`Vit`].
pub struct ImportedVit<B: Backend> {
    /// Its configuration.
    pub config: VitConfig,
    /// The model.
    pub model: Vit<B>,
    /// Checkpoint tensors not imported: a `ViTModel`'s pooler, which the ViT here lacks.
    pub not_imported: Vec<String>,
}

/// Reads the ViT checkpoint in `dir` into a [`Vit`] on `device`: every weight the config
/// implies must be present with its shape, and no other tensor but the pooler's (a missing,
/// misshapen or unexpected tensor is refused naming it).
pub fn load<B: Backend>(dir: &Path, device: &B::Device) -> Result<ImportedVit<B>> {
    let checkpoint = HfCheckpoint::read(dir)?;
    let config = config_from_hf(&checkpoint.config, &dir.join(CONFIG_FILE))?;
    let mut not_imported = Vec::new();
    let tensors: BTreeMap<String, HfTensor> = mapping::without_prefix(checkpoint.tensors, PREFIX)
        .filter(|(name, _)| {
            let pooler = name.starts_with("pooler.");
            if pooler {
                not_imported.push(name.clone());
            }
            !pooler
        })
        .collect();
    let weights = dir.join(WEIGHTS_FILE);
    let architecture = "ViT (ViTModel)";
    mapping::check_fits(config.num_params(), &tensors, &weights, architecture)?;
    let model = config.init::<B>(device)?;
    let source = |name: &str| {
        let hf = hf_name(name);
        Source {
            transposed: hf.ends_with(".weight")
                && !hf.contains("layernorm")
                && !hf.contains("patch_embeddings"),
            name: hf,
            optional_head: None,
        }
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
        let pixels = flat(&json_file(&dir.join("inputs.json"))["pixel_values"]);
        let images =
            Tensor::<B, 4>::from_data(TensorData::new(pixels, [2, 3, 12, 12]), &Default::default());
        let hidden: Vec<f32> = imported
            .model
            .forward_tokens(images)
            .into_data()
            .to_vec()
            .unwrap();
        let want = flat(&json_file(&dir.join("expected.json"))["last_hidden_state"]);
        let diff = max_diff(&hidden, &want);
        assert!(diff < 1e-4, "{diff}");
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
        let err = load_edited(&|c, _| c["image_size"] = json!([12, 16]));
        assert!(err.contains("field image_size: [12,16]"), "{err}");
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
