//! GPT-2 (`GPT2Model`, `GPT2LMHeadModel`) to and from [`Gpt`].
//!
//! The module trees match (`wte`, `wpe`, `h.N.attn.c_attn`, `h.N.mlp.c_proj`, `ln_f`) and
//! GPT-2's `Conv1D` stores weights `[in, out]` as burn's `Linear` does; what differs: layer
//! norms (`weight`/`bias` there, `gamma`/`beta` here), `GPT2LMHeadModel`'s `transformer.`
//! prefix, the causal-mask buffers some checkpoints carry (`h.N.attn.bias`,
//! `h.N.attn.masked_bias`, skipped), and an untied `lm_head` (`nn.Linear`, `[vocab, d]`,
//! transposed).

use pretrain_models::FusedBackend;
use std::collections::BTreeMap;
use std::path::Path;

use pretrain_models::{Gpt, GptConfig, GptPositions};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::checkpoint::{self, CONFIG_FILE, HfCheckpoint, HfTensor, WEIGHTS_FILE};
use crate::error::{HfError, Result};
use crate::mapping::{self, Source};

/// The prefix `GPT2LMHeadModel` puts before the `GPT2Model` weights.
const PREFIX: &str = "transformer.";
/// The untied output layer's name (both sides).
const LM_HEAD: &str = "lm_head.weight";
/// GELU variants equal to [`Gpt`]'s tanh approximation.
const TANH_GELU: [&str; 2] = ["gelu_new", "gelu_pytorch_tanh"];

/// A `config.json` field, or `default` (transformers' `GPT2Config` default) when absent.
pub(crate) fn field<T: DeserializeOwned>(
    config: &Value,
    name: &str,
    default: T,
    path: &Path,
) -> Result<T> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| {
            HfError::config(path, name, format!("{value} is not what it holds ({e})"))
        }),
    }
}

/// A string `config.json` field that must be one of `supported` (the first is transformers'
/// default); otherwise refused with `why`.
pub(crate) fn one_of(
    config: &Value,
    name: &str,
    supported: &[&str],
    why: &str,
    path: &Path,
) -> Result<String> {
    let value: String = field(config, name, supported[0].to_string(), path)?;
    if supported.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(HfError::config(
            path,
            name,
            format!(
                "{value:?} is not supported: {why} ({})",
                supported.join(", ")
            ),
        ))
    }
}

/// The [`GptConfig`] a GPT-2 `config.json` describes; a value [`Gpt`] cannot reproduce is
/// refused naming the field. `path` names the file in messages.
pub fn config_from_hf(config: &Value, path: &Path) -> Result<GptConfig> {
    one_of(
        config,
        "model_type",
        &["gpt2"],
        "this import reads GPT-2 checkpoints",
        path,
    )?;
    let why = "the GPT here uses the tanh-approximated GELU";
    one_of(config, "activation_function", &TANH_GELU, why, path)?;
    let d_model: usize = field(config, "n_embd", 768, path)?;
    // Attention variants the GPT here does not implement.
    for (name, default, supported) in [
        ("scale_attn_weights", true, true),
        ("scale_attn_by_inverse_layer_idx", false, false),
        ("add_cross_attention", false, false),
    ] {
        if field(config, name, default, path)? != supported {
            return Err(HfError::config(
                path,
                name,
                format!("only {supported} is supported"),
            ));
        }
    }
    // One dropout rate for embeddings, attention and residual branches.
    let dropout: f64 = field(config, "resid_pdrop", 0.1, path)?;
    for name in ["embd_pdrop", "attn_pdrop"] {
        let rate: f64 = field(config, name, 0.1, path)?;
        if rate != dropout {
            return Err(HfError::config(
                path,
                name,
                format!(
                    "{rate} differs from resid_pdrop {dropout}; the GPT here has one dropout \
                     rate"
                ),
            ));
        }
    }
    let config = GptConfig::new(
        field(config, "vocab_size", 50_257, path)?,
        field(config, "n_positions", 1_024, path)?,
        field(config, "n_layer", 12, path)?,
        field(config, "n_head", 12, path)?,
        d_model,
    )
    .with_n_inner(field(config, "n_inner", None, path)?)
    .with_dropout(dropout)
    .with_norm_eps(field(config, "layer_norm_epsilon", 1e-5, path)?)
    .with_tie_embeddings(field(config, "tie_word_embeddings", true, path)?);
    config.validate()?;
    Ok(config)
}

/// The GPT-2 `config.json` of `config` (a `GPT2LMHeadModel`) whose tokenizer ends texts with
/// `end_of_text` (GPT-2's `bos_token_id` and `eos_token_id`); a GPT that GPT-2 cannot express
/// (rotary positions, no biases) is refused naming the field.
pub fn config_to_hf(config: &GptConfig, end_of_text: Option<u32>) -> Result<Value> {
    let refuse = |field: &str, message: &str| {
        Err(HfError::config(
            "the model's GptConfig",
            field,
            format!("{message}; GPT-2 cannot express it"),
        ))
    };
    if config.positions != GptPositions::Learned {
        return refuse("positions", "rotary positions");
    }
    if !config.bias {
        return refuse("bias", "linear layers without biases");
    }
    Ok(json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.d_model,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.norm_eps,
        "tie_word_embeddings": config.tie_embeddings,
        "scale_attn_weights": true,
        "bos_token_id": end_of_text,
        "eos_token_id": end_of_text,
    }))
}

/// GPT-2's name of one of [`Gpt`]'s tensors (without the `transformer.` prefix for the body).
fn hf_name(ours: &str) -> String {
    if let Some(stem) = ours.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = ours.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        ours.to_string()
    }
}

/// A buffer GPT-2 checkpoints may carry that holds no weights (the causal mask).
fn is_mask_buffer(name: &str) -> bool {
    name.strip_prefix("h.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(layer, rest)| {
            layer.parse::<usize>().is_ok() && matches!(rest, "attn.bias" | "attn.masked_bias")
        })
}

/// Reads the GPT-2 checkpoint in `dir` into a [`Gpt`] on `device`: every weight the config
/// implies must be present with its shape, and no other tensor (a missing, misshapen or
/// unexpected tensor is refused naming it).
pub fn load<B: FusedBackend>(dir: &Path, device: &B::Device) -> Result<(GptConfig, Gpt<B>)> {
    let mut checkpoint = HfCheckpoint::read(dir)?;
    let config = config_from_hf(&checkpoint.config, &dir.join(CONFIG_FILE))?;
    let weights = dir.join(WEIGHTS_FILE);
    // `GPT2LMHeadModel` prefixes the body; `GPT2Model` (and the original gpt2 files) do not.
    let mut tensors: BTreeMap<String, HfTensor> =
        mapping::without_prefix(std::mem::take(&mut checkpoint.tensors), PREFIX)
            .filter(|(name, _)| !is_mask_buffer(name))
            .collect();
    if config.tie_embeddings {
        // Saved by some versions beside the embedding it is tied to.
        tensors.remove(LM_HEAD);
    }
    let architecture = "GPT-2 (GPT2Model or GPT2LMHeadModel)";
    mapping::check_fits(config.num_params(), &tensors, &weights, architecture)?;
    let model = config.init::<B>(device)?;
    let source = |name: &str| Source {
        name: hf_name(name),
        // An untied output layer is `nn.Linear`: `[vocab, d]` there, `[d, vocab]` here.
        transposed: name == LM_HEAD,
        optional_head: None,
    };
    let (model, _) = mapping::load_mapped(model, tensors, source, &weights, architecture)?;
    Ok((config, model))
}

/// Writes `model` (built from `config`) to `dir` as a `GPT2LMHeadModel` checkpoint:
/// `config.json` and `model.safetensors`; `end_of_text` is the tokenizer's end-of-text id, if
/// it has one. A model carrying LoRA updates or adapters is refused (merge or remove them
/// first).
pub fn save<B: FusedBackend>(
    model: &Gpt<B>,
    config: &GptConfig,
    end_of_text: Option<u32>,
    dir: &Path,
) -> Result<()> {
    let hf_config = config_to_hf(config, end_of_text)?;
    let weights = dir.join(WEIGHTS_FILE);
    let mut tensors = BTreeMap::new();
    for (name, tensor) in mapping::model_tensors(model, &weights)? {
        if name.contains(".lora.") || name.contains("_adapter.") {
            return Err(mapping::fine_tuning_addition(&weights, &name, "GPT-2"));
        }
        let (hf, tensor) = if name == LM_HEAD {
            let transposed = tensor.transposed().expect("the output layer is a matrix");
            (LM_HEAD.to_string(), transposed)
        } else {
            (format!("{PREFIX}{}", hf_name(&name)), tensor)
        };
        tensors.insert(hf, tensor);
    }
    checkpoint::write(dir, &hf_config, &tensors)
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Int, Tensor, TensorData};

    use super::*;
    use crate::testing::{fixture, flat, json_file, max_diff};

    type B = Flex;

    /// `load` on a copy of the fixture whose config.json and tensors `edit` changed.
    fn load_edited(
        edit: impl FnOnce(&mut Value, &mut BTreeMap<String, HfTensor>),
    ) -> std::result::Result<(), String> {
        crate::testing::load_edited("gpt2-odd-heads", edit, |dir| {
            load::<B>(dir, &Default::default())
        })
    }

    const FIXTURES: [&str; 2] = ["gpt2-odd-heads", "gpt2-untied"];

    /// The last hidden state and logits of each input row, over its unpadded positions
    /// (right padding never changes a causal model's earlier positions).
    fn outputs(model: &Gpt<B>, inputs: &Value) -> Vec<(Vec<f32>, Vec<f32>)> {
        let rows = inputs["input_ids"].as_array().unwrap();
        let masks = inputs["attention_mask"].as_array().unwrap();
        rows.iter()
            .zip(masks)
            .map(|(ids, mask)| {
                let n = mask
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m == &&json!(1))
                    .count();
                let ids: Vec<i64> = ids.as_array().unwrap()[..n]
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                let tokens = Tensor::<B, 2, Int>::from_data(
                    TensorData::new(ids, [1, n]),
                    &Default::default(),
                );
                let hidden = model.forward_hidden(tokens, None);
                let logits = model.logits(hidden.clone());
                let values = |t: Tensor<B, 3>| t.into_data().to_vec::<f32>().unwrap();
                (values(hidden), values(logits))
            })
            .collect()
    }

    #[test]
    fn transformers_checkpoints_give_transformers_outputs() {
        for name in FIXTURES {
            let dir = fixture(name);
            let (config, model) = load::<B>(&dir, &Default::default()).unwrap();
            let expected = json_file(&dir.join("expected.json"));
            let got = outputs(&model, &json_file(&dir.join("inputs.json")));
            for (row, (hidden, logits)) in got.iter().enumerate() {
                let want = &expected[row];
                let h = max_diff(hidden, &flat(&want["last_hidden_state"]));
                let l = max_diff(logits, &flat(&want["logits"]));
                assert!(h < 1e-4 && l < 1e-4, "{name} row {row}: {h} {l}");
            }
            // The shapes came from config.json.
            let hf = json_file(&dir.join(CONFIG_FILE));
            assert_eq!(config.d_model as u64, hf["n_embd"].as_u64().unwrap());
            assert_eq!(config.tie_embeddings, name != "gpt2-untied");
        }
        let (config, _) = load::<B>(&fixture("gpt2-untied"), &Default::default()).unwrap();
        assert_eq!((config.n_inner, config.norm_eps), (Some(20), 1e-6));
    }

    #[test]
    fn export_then_import_gives_the_same_model_and_config() {
        let dir = tempfile::tempdir().unwrap();
        for name in FIXTURES {
            let (config, model) = load::<B>(&fixture(name), &Default::default()).unwrap();
            let out = dir.path().join(name);
            save(&model, &config, Some(3), &out).unwrap();
            assert_eq!(json_file(&out.join(CONFIG_FILE))["eos_token_id"], 3);
            let written = HfCheckpoint::read(&out).unwrap();
            // GPT2LMHeadModel's names: the body prefixed, norms as weight/bias.
            assert!(written.tensors.contains_key("transformer.h.0.ln_1.weight"));
            assert!(
                written
                    .tensors
                    .contains_key("transformer.h.0.attn.c_attn.bias")
            );
            assert_eq!(
                written.tensors.contains_key(LM_HEAD),
                !config.tie_embeddings
            );
            let (again, reloaded) = load::<B>(&out, &Default::default()).unwrap();
            assert_eq!(again, config);
            let inputs = json_file(&fixture(name).join("inputs.json"));
            for (a, b) in outputs(&model, &inputs)
                .iter()
                .zip(outputs(&reloaded, &inputs))
            {
                assert_eq!(a.0, b.0);
                assert_eq!(a.1, b.1);
            }
        }
    }

    #[test]
    fn bad_checkpoints_are_refused_naming_the_tensor_or_field() {
        let err = load_edited(|_, t| {
            t.remove("transformer.h.1.mlp.c_fc.weight");
        })
        .unwrap_err();
        assert!(
            err.contains("tensor h.1.mlp.c_fc.weight: missing") && err.contains("[12, 48]"),
            "{err}"
        );
        let err = load_edited(|c, _| c["n_embd"] = json!(15)).unwrap_err();
        assert!(
            err.contains(
                "tensor h.0.attn.c_attn.bias: has shape [36], but config.json describes [45]"
            ),
            "{err}"
        );
        let err = load_edited(|_, t| {
            t.insert(
                "transformer.h.0.crossattention.c_attn.weight".into(),
                t["transformer.wte.weight"].clone(),
            );
        })
        .unwrap_err();
        assert!(
            err.contains("h.0.crossattention.c_attn.weight: unexpected"),
            "{err}"
        );
        let err = load_edited(|c, _| c["activation_function"] = json!("gelu")).unwrap_err();
        assert!(
            err.contains("field activation_function: \"gelu\" is not supported"),
            "{err}"
        );
        let err = load_edited(|c, _| c["model_type"] = json!("bert")).unwrap_err();
        assert!(err.contains("field model_type: \"bert\""), "{err}");
        let err = load_edited(|c, _| c["n_head"] = json!(5)).unwrap_err();
        assert!(
            err.contains("n_head") && err.contains("must divide d_model 12"),
            "{err}"
        );
        // A few bytes of config asking for a model the weights could never fill.
        let err = load_edited(|c, _| c["n_layer"] = json!(100_000)).unwrap_err();
        assert!(
            err.contains("of at least") && err.contains("but the weights hold 4428 values"),
            "{err}"
        );
        let err = load_edited(|c, _| c["attn_pdrop"] = json!(0.2)).unwrap_err();
        assert!(err.contains("field attn_pdrop: 0.2 differs"), "{err}");
        let err = load_edited(|c, _| c["n_layer"] = json!("two")).unwrap_err();
        assert!(err.contains("field n_layer: \"two\""), "{err}");
        // Buffers and a tied head saved beside the embedding are not weights: accepted.
        load_edited(|_, t| {
            let mask = HfTensor {
                shape: vec![1, 1, 16, 16],
                values: vec![1.0; 256],
            };
            t.insert("transformer.h.0.attn.bias".into(), mask);
            let head = t["transformer.wte.weight"].clone();
            t.insert(LM_HEAD.into(), head);
        })
        .unwrap();
    }

    #[test]
    fn gpts_that_gpt2_cannot_express_are_not_exported() {
        let dir = tempfile::tempdir().unwrap();
        let config = GptConfig::gpt_nano(11).with_positions(GptPositions::Rope);
        let model = config.init::<B>(&Default::default()).unwrap();
        let err = save(&model, &config, None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("field positions: rotary positions"), "{err}");
        assert!(!dir.path().join(WEIGHTS_FILE).exists());
    }
}
