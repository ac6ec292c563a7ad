//! `pretrain export-hf` and `pretrain embed` on a causal-LM run: the decoder as a Hugging Face
//! GPT-2 checkpoint (with the run's `tokenizer.json`), and its outputs on given token ids as
//! JSON, which is also how `tools/hf/gpt2.py check` compares `transformers` with this side.

use std::path::Path;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::tensor::backend::{AutodiffBackend, Backend};
use pretrain::burn::tensor::{Int, Tensor, TensorData};
use pretrain::models::Gpt;
use pretrain::train::Precision;
use serde::{Deserialize, Serialize};

use crate::data::TOKENIZER_FILE;
use crate::error::{RecipeError, Result};
use crate::generate::DecoderRun;

/// Token ids to embed (`transformers`' names): one row per sequence, right-padded, with an
/// optional attention mask (1 for tokens, 0 for padding; default all 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedInput {
    /// `[batch][seq]` token ids.
    pub input_ids: Vec<Vec<i64>>,
    /// `[batch][seq]` 1 or 0, padding only at the end of a row.
    #[serde(default)]
    pub attention_mask: Option<Vec<Vec<u8>>>,
}

/// One sequence's outputs, over its unpadded positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRow {
    /// Unpadded tokens.
    pub tokens: usize,
    /// `[tokens][d_model]` final-norm hidden states.
    pub last_hidden_state: Vec<Vec<f32>>,
    /// `[d_model]`: the last token's hidden state (a causal model's summary of the sequence).
    pub pooled: Vec<f32>,
    /// `[tokens][vocab]` next-token logits.
    pub logits: Vec<Vec<f32>>,
}

/// Writes the causal-LM run in `run_dir` to `out` as a `GPT2LMHeadModel` checkpoint
/// (`config.json`, `model.safetensors`) with the run's `tokenizer.json`.
pub fn run_export_hf(run_dir: &Path, out: &Path, backend: BackendKind) -> Result<()> {
    let run = DecoderRun::open(run_dir, "export-hf")?;
    pretrain::dispatch_backend!(backend, Precision::F32, Export { run: &run, out })??;
    let tokenizer = out.join(TOKENIZER_FILE);
    std::fs::copy(run_dir.join(TOKENIZER_FILE), &tokenizer)
        .map_err(|e| RecipeError::io(&tokenizer, e))?;
    Ok(())
}

struct Export<'a> {
    run: &'a DecoderRun,
    out: &'a Path,
}

impl BackendTask for Export<'_> {
    type Output = Result<()>;

    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let model = self.run.load::<B::InnerBackend>(&device)?;
        let end_of_text = self.run.tokenizer.specials().sep;
        Ok(pretrain::hf::gpt2::save(
            &model,
            &self.run.config,
            end_of_text,
            self.out,
        )?)
    }
}

/// The outputs of the causal-LM run in `run_dir` on the token ids in `input` (JSON,
/// [`EmbedInput`]), written to `out` as a JSON list of [`EmbedRow`].
pub fn run_embed(run_dir: &Path, input: &Path, out: &Path, backend: BackendKind) -> Result<()> {
    let run = DecoderRun::open(run_dir, "embed")?;
    let text = std::fs::read_to_string(input).map_err(|e| RecipeError::io(input, e))?;
    let parsed: EmbedInput = serde_json::from_str(&text)
        .map_err(|e| RecipeError::io(input, format!("is not token ids as JSON: {e}")))?;
    let rows = unpadded(&parsed, run.tokenizer.vocab_size(), run.config.block_size)
        .map_err(|message| RecipeError::io(input, message))?;
    let job = Embed { run: &run, rows };
    let embedded = pretrain::dispatch_backend!(backend, Precision::F32, job)??;
    let json = serde_json::to_string(&embedded).expect("outputs serialize");
    std::fs::write(out, json).map_err(|e| RecipeError::io(out, e))
}

/// Each row's unpadded ids, checked: ids in the vocabulary, at most `block` of them, at least
/// one, the mask the ids' shape with padding only at the end.
fn unpadded(
    input: &EmbedInput,
    vocab: usize,
    block: usize,
) -> std::result::Result<Vec<Vec<i64>>, String> {
    if input.input_ids.is_empty() {
        return Err("input_ids has no rows".into());
    }
    input
        .input_ids
        .iter()
        .enumerate()
        .map(|(r, ids)| {
            let n = match &input.attention_mask {
                None => ids.len(),
                Some(mask) => {
                    let mask = mask
                        .get(r)
                        .filter(|m| m.len() == ids.len())
                        .ok_or_else(|| format!("attention_mask row {r} is not input_ids' shape"))?;
                    let n = mask.iter().take_while(|&&m| m == 1).count();
                    if mask[n..].iter().any(|&m| m != 0) {
                        return Err(format!(
                            "attention_mask row {r}: only 1s then 0s (right padding) are supported"
                        ));
                    }
                    n
                }
            };
            if n == 0 || n > block {
                return Err(format!(
                    "row {r} has {n} tokens; the model takes 1 to {block} (its block size)"
                ));
            }
            if let Some((p, id)) = ids[..n]
                .iter()
                .enumerate()
                .find(|(_, id)| !(0..vocab as i64).contains(id))
            {
                return Err(format!(
                    "row {r} position {p}: id {id} is outside the vocabulary of {vocab} tokens"
                ));
            }
            Ok(ids[..n].to_vec())
        })
        .collect()
}

struct Embed<'a> {
    run: &'a DecoderRun,
    rows: Vec<Vec<i64>>,
}

impl BackendTask for Embed<'_> {
    type Output = Result<Vec<EmbedRow>>;

    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let model = self.run.load::<B::InnerBackend>(&device)?;
        self.rows
            .into_iter()
            .map(|ids| embed_row(&model, ids, &device))
            .collect()
    }
}

/// One sequence through `model` (rows separately: causal attention makes right padding
/// irrelevant to the unpadded positions, so none is needed).
fn embed_row<B: Backend>(model: &Gpt<B>, ids: Vec<i64>, device: &B::Device) -> Result<EmbedRow> {
    let n = ids.len();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), device);
    let hidden = model.forward_hidden(tokens, None); // [1, n, d_model]
    let logits = model.logits(hidden.clone()); // [1, n, vocab]
    let rows = |t: Tensor<B, 3>| -> Result<Vec<Vec<f32>>> {
        let width = t.dims()[2];
        let values: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .to_vec()
            .map_err(|e| RecipeError::option("embed", format!("{e:?}")))?;
        Ok(values.chunks(width).map(<[f32]>::to_vec).collect())
    };
    let last_hidden_state = rows(hidden)?;
    Ok(EmbedRow {
        tokens: n,
        pooled: last_hidden_state[n - 1].clone(),
        last_hidden_state,
        logits: rows(logits)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ids: Vec<Vec<i64>>, mask: Option<Vec<Vec<u8>>>) -> EmbedInput {
        EmbedInput {
            input_ids: ids,
            attention_mask: mask,
        }
    }

    #[test]
    fn unpadded_rows_are_checked() {
        let ok = input(
            vec![vec![1, 2, 3], vec![4, 5, 0]],
            Some(vec![vec![1, 1, 1], vec![1, 1, 0]]),
        );
        assert_eq!(unpadded(&ok, 10, 8).unwrap(), [vec![1, 2, 3], vec![4, 5]]);
        assert_eq!(
            unpadded(&input(vec![vec![7]], None), 10, 8).unwrap(),
            [vec![7]]
        );
        for (bad, why) in [
            (input(vec![], None), "no rows"),
            (
                input(vec![vec![1, 10]], None),
                "position 1: id 10 is outside",
            ),
            (input(vec![vec![1, -1]], None), "id -1 is outside"),
            (
                input(vec![vec![1; 9]], None),
                "9 tokens; the model takes 1 to 8",
            ),
            (
                input(vec![vec![1, 2]], Some(vec![vec![0, 1]])),
                "right padding",
            ),
            (input(vec![vec![1, 2]], Some(vec![vec![0, 0]])), "0 tokens"),
            (
                input(vec![vec![1, 2]], Some(vec![vec![1]])),
                "not input_ids' shape",
            ),
        ] {
            let err = unpadded(&bad, 10, 8).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
