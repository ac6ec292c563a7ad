//! BERT (`BertModel`, `BertForMaskedLM`, `BertForSequenceClassification`) to [`Bert`] (and a
//! [`LinearHead`] for the classifier), and [`Bert`] to `BertForMaskedLM`.
//!
//! Names differ module by module (a table in [`hf_name`]); every `nn.Linear` weight is
//! transposed (`[out, in]` there, `[in, out]` here). `BertForMaskedLM` keeps the encoder under
//! `bert.` and has no pooler; `BertModel` has the pooler and no MLM head: the head a checkpoint
//! lacks stays at its initialization and is reported.

use pretrain_models::FusedBackend;
use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use pretrain_models::{Bert, BertConfig, LinearHead};
use serde_json::Value;

use crate::checkpoint::{self, CONFIG_FILE, HfCheckpoint, HfTensor, WEIGHTS_FILE};
use crate::error::{HfError, Result};
use crate::gpt2::{field, one_of};
use crate::mapping::{self, PRETRAIN_ONLY, Source};

/// The prefix of the encoder in `BertFor*` models.
const PREFIX: &str = "bert.";
/// The pooler's head name.
const POOLER: &str = "pooler";

/// The [`BertConfig`] a BERT `config.json` describes; a value [`Bert`] cannot reproduce is
/// refused naming the field. `path` names the file in messages.
pub fn config_from_hf(config: &Value, path: &Path) -> Result<BertConfig> {
    let refuse = |name: &str, message: String| Err(HfError::config(path, name, message));
    one_of(
        config,
        "model_type",
        &["bert"],
        "this import reads BERT checkpoints",
        path,
    )?;
    one_of(
        config,
        "hidden_act",
        &["gelu"],
        "the BERT here uses the exact GELU",
        path,
    )?;
    let positions: String = field(config, "position_embedding_type", "absolute".into(), path)?;
    if positions != "absolute" {
        return refuse(
            "position_embedding_type",
            format!("{positions:?} is not supported: only learned absolute positions"),
        );
    }
    for (name, default, supported) in [
        ("is_decoder", false, false),
        ("add_cross_attention", false, false),
        ("tie_word_embeddings", true, true),
    ] {
        if field(config, name, default, path)? != supported {
            return refuse(name, format!("only {supported} is supported"));
        }
    }
    let dropout: f64 = field(config, "hidden_dropout_prob", 0.1, path)?;
    let attention: f64 = field(config, "attention_probs_dropout_prob", 0.1, path)?;
    if attention != dropout {
        return refuse(
            "attention_probs_dropout_prob",
            format!(
                "{attention} differs from hidden_dropout_prob {dropout}; the BERT here has one \
                 dropout rate"
            ),
        );
    }
    let config = BertConfig::new(
        field(config, "vocab_size", 30_522, path)?,
        field(config, "hidden_size", 768, path)?,
        field(config, "num_hidden_layers", 12, path)?,
        field(config, "num_attention_heads", 12, path)?,
        field(config, "intermediate_size", 3_072, path)?,
    )
    .with_max_position(field(config, "max_position_embeddings", 512, path)?)
    .with_type_vocab(field(config, "type_vocab_size", 2, path)?)
    .with_norm_eps(field(config, "layer_norm_eps", 1e-12, path)?)
    .with_dropout(dropout);
    // Shapes are checked when the model is built (`BertConfig::init`).
    Ok(config)
}

/// The checkpoint's name of one of [`Bert`]'s tensors (the encoder without `bert.`), and the
/// head it belongs to when a checkpoint may lack it.
fn hf_name(ours: &str) -> (String, Option<&'static str>) {
    let (module, leaf) = ours.rsplit_once('.').unwrap_or(("", ours));
    let leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    let layer_part = |rest: &str| -> Option<&'static str> {
        Some(match rest {
            "attn.query" => "attention.self.query",
            "attn.key" => "attention.self.key",
            "attn.value" => "attention.self.value",
            "attn.output" => "attention.output.dense",
            "norm1" => "attention.output.LayerNorm",
            "mlp.fc1" => "intermediate.dense",
            "mlp.fc2" => "output.dense",
            "norm2" => "output.LayerNorm",
            _ => return None,
        })
    };
    let (module, head) = match module {
        "embeddings.word" => ("embeddings.word_embeddings".to_string(), None),
        "embeddings.position" => ("embeddings.position_embeddings".into(), None),
        "embeddings.token_type" => ("embeddings.token_type_embeddings".into(), None),
        "embeddings.norm" => ("embeddings.LayerNorm".into(), None),
        "pooler" => ("pooler.dense".into(), Some(POOLER)),
        "mlm.transform" => ("cls.predictions.transform.dense".into(), Some("MLM head")),
        "mlm.norm" => (
            "cls.predictions.transform.LayerNorm".into(),
            Some("MLM head"),
        ),
        // The MLM output bias is a parameter of the head itself.
        "mlm" => ("cls.predictions".into(), Some("MLM head")),
        other => match other
            .strip_prefix("layers.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(i, rest)| Some((i, layer_part(rest)?)))
        {
            Some((i, part)) => (format!("encoder.layer.{i}.{part}"), None),
            // Not in the table (a LoRA update, an adapter): no checkpoint has it.
            None => (format!("{PRETRAIN_ONLY}{other}"), None),
        },
    };
    (format!("{module}.{leaf}"), head)
}

/// Tensors some BERT checkpoints carry that hold nothing to load: the position-id buffer, and
/// the MLM decoder tied to the word embeddings (and its bias, the head's bias).
fn is_redundant(name: &str) -> bool {
    matches!(
        name,
        "embeddings.position_ids"
            | "cls.predictions.decoder.weight"
            | "cls.predictions.decoder.bias"
    )
}

/// The `BertForMaskedLM` `config.json` of `config`; a BERT that `transformers`' cannot express
/// (pre-norm blocks, no segment embeddings) is refused naming the field.
pub fn config_to_hf(config: &BertConfig) -> Result<Value> {
    let refuse = |field: &str, message: &str| {
        Err(HfError::config(
            "the model's BertConfig",
            field,
            format!("{message}; transformers' BERT cannot express it"),
        ))
    };
    if config.pre_norm {
        return refuse("pre_norm", "pre-norm blocks");
    }
    if config.type_vocab == 0 {
        return refuse("type_vocab", "no segment embeddings");
    }
    Ok(serde_json::json!({
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "intermediate_size": config.intermediate,
        "max_position_embeddings": config.max_position,
        "type_vocab_size": config.type_vocab,
        "layer_norm_eps": config.norm_eps,
        "hidden_act": "gelu",
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.dropout,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": true,
    }))
}

/// Whether a checkpoint tensor (named as [`hf_name`] gives it) is a linear layer's weight,
/// stored transposed (`nn.Linear`: `[out, in]`).
fn is_linear_weight(hf: &str) -> bool {
    hf.ends_with(".weight") && !hf.contains("_embeddings.") && !hf.contains("LayerNorm")
}

/// Writes `model` (built from `config`) to `dir` as a `BertForMaskedLM` checkpoint:
/// `config.json` and `model.safetensors`. The pooler is left out (`BertForMaskedLM` has none,
/// and masked-LM pre-training does not train it); a model carrying LoRA updates or adapters is
/// refused (merge or remove them first).
pub fn save<B: FusedBackend>(model: &Bert<B>, config: &BertConfig, dir: &Path) -> Result<()> {
    let hf_config = config_to_hf(config)?;
    let weights = dir.join(WEIGHTS_FILE);
    let mut tensors = BTreeMap::new();
    for (name, tensor) in mapping::model_tensors(model, &weights)? {
        let (hf, head) = hf_name(&name);
        if hf.starts_with(PRETRAIN_ONLY) {
            return Err(mapping::fine_tuning_addition(&weights, &name, "BERT"));
        }
        if head == Some(POOLER) {
            continue;
        }
        let tensor = match is_linear_weight(&hf) {
            true => tensor.transposed().expect("linear weights are matrices"),
            false => tensor,
        };
        let hf = match head {
            Some(_) => hf,
            None => format!("{PREFIX}{hf}"),
        };
        tensors.insert(hf, tensor);
    }
    checkpoint::write(dir, &hf_config, &tensors)
}

/// A BERT checkpoint read into a [`Bert`].
pub struct ImportedBert<B: Backend> {
    /// Its configuration.
    pub config: BertConfig,
    /// The model.
    pub model: Bert<B>,
    /// The heads the checkpoint lacks, left at their initialization (`pooler`, `MLM head`).
    pub initialized: Vec<&'static str>,
}

/// Reads the BERT checkpoint in `dir` (`BertModel` or `BertForMaskedLM`) into a [`Bert`] on
/// `device`: every encoder weight the config implies must be present with its shape, and no
/// other tensor (a missing, misshapen or unexpected tensor is refused naming it).
pub fn load<B: FusedBackend>(dir: &Path, device: &B::Device) -> Result<ImportedBert<B>> {
    load_encoder(HfCheckpoint::read(dir)?, device)
}

/// [`load`] on a checkpoint read (its classifier, if any, taken out).
fn load_encoder<B: FusedBackend>(
    checkpoint: HfCheckpoint,
    device: &B::Device,
) -> Result<ImportedBert<B>> {
    let dir = &checkpoint.dir;
    let config = config_from_hf(&checkpoint.config, &dir.join(CONFIG_FILE))?;
    let tensors: BTreeMap<String, HfTensor> = mapping::without_prefix(checkpoint.tensors, PREFIX)
        .filter(|(name, _)| !is_redundant(name))
        .collect();
    let weights = dir.join(WEIGHTS_FILE);
    let architecture = "BERT (BertModel, BertForMaskedLM or BertForSequenceClassification)";
    // The heads a checkpoint may lack: the pooler (d x d + d) and the MLM head (transform
    // d x d + d, norm 2d, output bias vocab).
    let d = config.hidden as u128;
    let heads = (d * d + d) + (d * d + 3 * d + config.vocab_size as u128);
    let required = config.num_params().saturating_sub(heads);
    mapping::check_fits(required, &tensors, &weights, architecture)?;
    let model = config.init::<B>(device)?;
    let source = |name: &str| {
        let (hf, optional_head) = hf_name(name);
        Source {
            transposed: is_linear_weight(&hf),
            name: hf,
            optional_head,
        }
    };
    let (model, initialized) =
        mapping::load_mapped(model, tensors, source, &weights, architecture)?;
    Ok(ImportedBert {
        config,
        model,
        initialized,
    })
}

/// A `BertForSequenceClassification` checkpoint read: the encoder with its pooler, and the
/// classifier on the pooled output (`head.forward(bert.model.pooled(hidden))` are its logits).
pub struct ImportedBertClassifier<B: Backend> {
    /// The encoder (its MLM head, which the checkpoint lacks, left initialized).
    pub bert: ImportedBert<B>,
    /// `classifier`: pooled output -> class logits.
    pub head: LinearHead<B>,
    /// Class names by index (`id2label`; `LABEL_i` when the config names none).
    pub labels: Vec<String>,
}

/// Reads the `BertForSequenceClassification` checkpoint in `dir` on `device`: the encoder as
/// [`load`] does (its pooler required: the classifier reads it) and the classifier, whose
/// classes `id2label` names. A regression or multi-label head is refused (`problem_type`,
/// `num_labels`): the fine-tuning here classifies one label per input.
pub fn load_classifier<B: FusedBackend>(
    dir: &Path,
    device: &B::Device,
) -> Result<ImportedBertClassifier<B>> {
    let mut checkpoint = HfCheckpoint::read(dir)?;
    let path = dir.join(CONFIG_FILE);
    let problem: Option<String> = field(&checkpoint.config, "problem_type", None, &path)?;
    if let Some(problem) = problem.filter(|p| p != "single_label_classification") {
        return Err(HfError::config(
            &path,
            "problem_type",
            format!("{problem:?} is not supported: only single_label_classification"),
        ));
    }
    let mut labels: BTreeMap<String, String> = field(
        &checkpoint.config,
        "id2label",
        BTreeMap::from([
            ("0".into(), "LABEL_0".into()),
            ("1".into(), "LABEL_1".into()),
        ]),
        &path,
    )?
    .into_iter()
    .collect();
    let classes = labels.len();
    if classes < 2 {
        return Err(HfError::config(
            &path,
            "id2label",
            format!("{classes} label (a regression head) is not supported: a classifier needs two"),
        ));
    }
    let names: Vec<String> = (0..classes)
        .map(|i| labels.remove(&i.to_string()))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            HfError::config(
                &path,
                "id2label",
                format!("is not numbered 0 to {}", classes - 1),
            )
        })?;
    let head_tensors: BTreeMap<String, HfTensor> = ["classifier.weight", "classifier.bias"]
        .into_iter()
        .filter_map(|name| Some((name.to_string(), checkpoint.tensors.remove(name)?)))
        .collect();
    let bert = load_encoder::<B>(checkpoint, device)?;
    let weights = dir.join(WEIGHTS_FILE);
    if bert.initialized.contains(&POOLER) {
        return Err(HfError::tensor(
            &weights,
            "bert.pooler.dense.weight",
            "missing: the classifier reads the pooled output",
        ));
    }
    let head = LinearHead::new(bert.config.hidden, classes, device)?;
    let source = |name: &str| Source {
        name: name.replacen("linear.", "classifier.", 1),
        transposed: name.ends_with(".weight"),
        optional_head: None,
    };
    let (head, _) = mapping::load_mapped(head, head_tensors, source, &weights, "BERT classifier")?;
    Ok(ImportedBertClassifier {
        bert,
        head,
        labels: names,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Bool, Int, Tensor, TensorData};
    use serde_json::json;

    use super::*;
    use crate::testing::{fixture, flat, json_file, max_diff};

    type B = Flex;

    /// `load` on a copy of the fixture whose config.json and tensors `edit` changed.
    fn load_edited(
        edit: impl FnOnce(&mut Value, &mut BTreeMap<String, HfTensor>),
    ) -> std::result::Result<(), String> {
        crate::testing::load_edited("bert-mlm-odd", edit, |dir| {
            load::<B>(dir, &Default::default())
        })
    }

    /// Row `row` of the fixture's inputs through `model` with the padding mask: the unpadded
    /// positions' hidden states, the pooled output and the MLM logits.
    fn outputs(model: &Bert<B>, inputs: &Value) -> Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let ints =
            |key: &str| -> Vec<Vec<i64>> { serde_json::from_value(inputs[key].clone()).unwrap() };
        let (ids, types, mask) = (
            ints("input_ids"),
            ints("token_type_ids"),
            ints("attention_mask"),
        );
        let (b, s) = (ids.len(), ids[0].len());
        let dev = Default::default();
        let tensor = |rows: &Vec<Vec<i64>>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(rows.concat(), [b, s]), &dev)
        };
        let padding: Vec<bool> = mask.concat().iter().map(|&m| m == 0).collect();
        let padding = Tensor::<B, 2, Bool>::from_data(TensorData::new(padding, [b, s]), &dev);
        let hidden = model.forward(tensor(&ids), Some(padding), Some(tensor(&types)));
        let pooled = model.pooled(hidden.clone());
        let logits = model.mlm_logits(hidden.clone());
        (0..b)
            .map(|r| {
                let n = mask[r].iter().filter(|&&m| m == 1).count();
                let rows = |t: Tensor<B, 3>| -> Vec<f32> {
                    let d = t.dims()[2];
                    t.slice([r..r + 1, 0..n, 0..d])
                        .into_data()
                        .to_vec()
                        .unwrap()
                };
                let d = pooled.dims()[1];
                let pool: Vec<f32> = pooled
                    .clone()
                    .slice([r..r + 1, 0..d])
                    .into_data()
                    .to_vec()
                    .unwrap();
                (rows(hidden.clone()), pool, rows(logits.clone()))
            })
            .collect()
    }

    #[test]
    fn transformers_checkpoints_give_transformers_outputs() {
        for (name, head, initialized) in [
            ("bert-mlm-odd", "logits", "pooler"),
            ("bert-model", "pooler_output", "MLM head"),
        ] {
            let dir = fixture(name);
            let imported = load::<B>(&dir, &Default::default()).unwrap();
            assert_eq!(imported.initialized, [initialized], "{name}");
            let expected = json_file(&dir.join("expected.json"));
            let got = outputs(&imported.model, &json_file(&dir.join("inputs.json")));
            for (row, (hidden, pooled, logits)) in got.iter().enumerate() {
                let want = &expected[row];
                let h = max_diff(hidden, &flat(&want["last_hidden_state"]));
                let o = match head {
                    "logits" => max_diff(logits, &flat(&want["logits"])),
                    _ => max_diff(pooled, &flat(&want["pooler_output"])),
                };
                assert!(h < 1e-4 && o < 1e-4, "{name} row {row}: {h} {o}");
            }
        }
        let model = load::<B>(&fixture("bert-model"), &Default::default()).unwrap();
        assert_eq!(
            (
                model.config.type_vocab,
                model.config.intermediate,
                model.config.norm_eps
            ),
            (3, 32, 1e-7)
        );
    }

    #[test]
    fn a_sequence_classifier_gives_transformers_logits() {
        let dir = fixture("bert-cls-odd");
        let imported = load_classifier::<B>(&dir, &Default::default()).unwrap();
        assert_eq!(imported.labels, ["bad", "so-so", "good"]);
        assert_eq!(imported.bert.initialized, ["MLM head"]);
        let expected = json_file(&dir.join("expected.json"));
        let got = outputs(&imported.bert.model, &json_file(&dir.join("inputs.json")));
        for (row, (hidden, pooled, _)) in got.iter().enumerate() {
            let pooled = Tensor::<B, 2>::from_data(
                TensorData::new(pooled.clone(), [1, pooled.len()]),
                &Default::default(),
            );
            let logits: Vec<f32> = imported.head.forward(pooled).into_data().to_vec().unwrap();
            let want = &expected[row];
            let h = max_diff(hidden, &flat(&want["last_hidden_state"]));
            let o = max_diff(&logits, &flat(&want["logits"]));
            assert!(h < 1e-4 && o < 1e-4, "row {row}: {h} {o}");
        }
        // The encoder alone reads too (the classifier listed as unexpected otherwise).
        let err = load::<B>(&dir, &Default::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("tensor classifier.bias: unexpected"), "{err}");

        let load_edited = |edit: &dyn Fn(&mut Value, &mut BTreeMap<String, HfTensor>)| {
            crate::testing::load_edited("bert-cls-odd", edit, |dir| {
                load_classifier::<B>(dir, &Default::default())
            })
            .unwrap_err()
        };
        let err = load_edited(&|c, _| c["problem_type"] = json!("regression"));
        assert!(err.contains("field problem_type: \"regression\""), "{err}");
        let err = load_edited(&|c, _| c["id2label"] = json!({"0": "only"}));
        assert!(err.contains("field id2label: 1 label"), "{err}");
        let err = load_edited(&|c, _| c["id2label"] = json!({"0": "a", "1": "b"}));
        assert!(
            err.contains("tensor classifier.bias: has shape [3], but config.json describes [2]"),
            "{err}"
        );
        let err = load_edited(&|_, t| {
            t.remove("bert.pooler.dense.bias");
            t.remove("bert.pooler.dense.weight");
        });
        assert!(err.contains("bert.pooler.dense.weight: missing"), "{err}");
    }

    #[test]
    fn export_then_import_gives_the_same_encoder_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let imported = load::<B>(&fixture("bert-mlm-odd"), &Default::default()).unwrap();
        save(&imported.model, &imported.config, dir.path()).unwrap();
        let written = HfCheckpoint::read(dir.path()).unwrap();
        assert!(
            written
                .tensors
                .contains_key("bert.encoder.layer.1.attention.self.query.weight")
        );
        assert!(written.tensors.contains_key("cls.predictions.bias"));
        assert!(!written.tensors.keys().any(|k| k.contains("pooler")));
        let again = load::<B>(dir.path(), &Default::default()).unwrap();
        assert_eq!(again.initialized, ["pooler"]);
        assert_eq!(
            serde_json::to_value(&again.config).unwrap(),
            serde_json::to_value(&imported.config).unwrap()
        );
        let inputs = json_file(&fixture("bert-mlm-odd").join("inputs.json"));
        for (a, b) in outputs(&imported.model, &inputs)
            .iter()
            .zip(outputs(&again.model, &inputs))
        {
            assert_eq!((&a.0, &a.2), (&b.0, &b.2));
        }
        let pre_norm = imported.config.clone().with_pre_norm(true);
        let err = save(&imported.model, &pre_norm, dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("field pre_norm: pre-norm blocks"), "{err}");
    }

    #[test]
    fn bad_checkpoints_are_refused_naming_the_tensor_or_field() {
        let err = load_edited(|_, t| {
            t.remove("bert.encoder.layer.1.intermediate.dense.weight");
        })
        .unwrap_err();
        assert!(
            err.contains("tensor encoder.layer.1.intermediate.dense.weight: missing"),
            "{err}"
        );
        // Part of a head is a broken head, not an absent one.
        let err = load_edited(|_, t| {
            t.remove("cls.predictions.transform.dense.bias");
        })
        .unwrap_err();
        assert!(
            err.contains("cls.predictions.transform.dense.bias: missing"),
            "{err}"
        );
        let err = load_edited(|c, _| c["intermediate_size"] = json!(24)).unwrap_err();
        assert!(
            err.contains(
                "tensor encoder.layer.0.intermediate.dense.bias: has shape [20], but config.json \
                 describes [24]"
            ),
            "{err}"
        );
        let err = load_edited(|c, _| c["hidden_act"] = json!("gelu_new")).unwrap_err();
        assert!(
            err.contains("field hidden_act: \"gelu_new\" is not supported"),
            "{err}"
        );
        let err =
            load_edited(|c, _| c["position_embedding_type"] = json!("relative_key")).unwrap_err();
        assert!(err.contains("field position_embedding_type"), "{err}");
        let err = load_edited(|t, _| t["model_type"] = json!("roberta")).unwrap_err();
        assert!(err.contains("field model_type: \"roberta\""), "{err}");
        let err = load_edited(|_, t| {
            let extra = t["cls.predictions.bias"].clone();
            t.insert("classifier.bias".into(), extra);
        })
        .unwrap_err();
        assert!(err.contains("tensor classifier.bias: unexpected"), "{err}");
        // The tied decoder some versions save is not a weight of its own.
        load_edited(|_, t| {
            let decoder = t["bert.embeddings.word_embeddings.weight"].clone();
            t.insert("cls.predictions.decoder.weight".into(), decoder);
        })
        .unwrap();
    }
}
