//! `pretrain export-hf` and `pretrain embed` on a causal-LM run (GPT-2), a masked-LM run
//! (BERT) or a masked-autoencoder run (ViT-MAE, or its ViT encoder alone): the model as a
//! Hugging Face checkpoint (with a text run's `tokenizer.json`), and its outputs on given token
//! ids or images as JSON, which is also how `tools/hf/*.py check` compares `transformers` with
//! this side.

use pretrain::models::{FusedAutodiffBackend, FusedBackend};
use std::path::{Path, PathBuf};

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::tensor::{Int, Tensor, TensorData};
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::hf::vit_mae::{MaeTraining, kept_patches, masking_from_noise};
use pretrain::models::{Bert, BertConfig, Mae, load_safetensors};
use pretrain::objectives::{MaeObjective, MaeObjectiveConfig};
use pretrain::train::Precision;
use serde::{Deserialize, Serialize};

use crate::data::TOKENIZER_FILE;
use crate::error::{RecipeError, Result};
use crate::generate::{DecoderRun, text_model};
use crate::models::ModelConfig;
use crate::objective::ObjectiveKind;
use crate::recipe_of_run;

/// Token ids to embed (`transformers`' names): one row per sequence, right-padded, with an
/// optional attention mask (1 for tokens, 0 for padding; default all 1) and, for a BERT,
/// optional segment ids (default 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedInput {
    /// `[batch][seq]` token ids.
    pub input_ids: Vec<Vec<i64>>,
    /// `[batch][seq]` 1 or 0, padding only at the end of a row.
    #[serde(default)]
    pub attention_mask: Option<Vec<Vec<u8>>>,
    /// `[batch][seq]` segment ids (BERT only).
    #[serde(default)]
    pub token_type_ids: Option<Vec<Vec<i64>>>,
}

/// Images to embed (`transformers`' names) for a masked-autoencoder run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEmbedInput {
    /// `[batch][channels][height][width]` pixel values, as the run's data pipeline feeds them.
    pub pixel_values: Vec<Vec<Vec<Vec<f32>>>>,
    /// `[batch][patches]` masking noise: with it, the patches of lowest noise are kept (as
    /// `ViTMAEForPreTraining`'s `noise` argument does) and the decoder's pixel predictions
    /// come back as logits; without it, every patch is encoded.
    #[serde(default)]
    pub noise: Option<Vec<Vec<f32>>>,
}

/// One sequence's (or image's) outputs, over its unpadded positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRow {
    /// Unpadded tokens (for an image: the class token and the patches encoded).
    pub tokens: usize,
    /// `[tokens][d_model]` last hidden states.
    pub last_hidden_state: Vec<Vec<f32>>,
    /// `[d_model]`: a GPT's last-token hidden state, a BERT's pooler output, a ViT's class
    /// token.
    pub pooled: Vec<f32>,
    /// `[tokens][vocab]` logits: next-token (GPT), masked-token (BERT); a MAE's
    /// `[patches][patch values]` pixel predictions when noise was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<Vec<f32>>>,
}

/// A run whose model has a Hugging Face twin.
enum HfRun {
    /// A causal LM: GPT-2.
    Decoder(Box<DecoderRun>),
    /// A masked LM: BERT.
    Encoder(Box<EncoderRun>),
    /// A masked autoencoder: ViT-MAE.
    Mae(Box<MaeRun>),
}

/// A masked-autoencoder run opened: the objective's configuration as it ran and its latest
/// checkpoint (the decoder is not in `encoder.safetensors`).
struct MaeRun {
    config: MaeObjectiveConfig,
    weights: PathBuf,
}

impl MaeRun {
    fn open(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(pretrain::train::checkpoint::RUN_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| RecipeError::io(&path, e))?;
        let config = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::from_value(v["objective"]["config"].clone()).ok())
            .ok_or_else(|| {
                RecipeError::io(
                    &path,
                    "has no masked-autoencoder configuration (objective.config)",
                )
            })?;
        let latest = pretrain::train::checkpoint::latest(run_dir)?.ok_or_else(|| {
            RecipeError::io(
                run_dir,
                "has no checkpoint: the MAE's decoder is only in its checkpoints",
            )
        })?;
        Ok(Self {
            config,
            weights: latest.join(pretrain::train::checkpoint::WEIGHTS),
        })
    }

    /// The trained encoder and decoder.
    fn load<B: FusedBackend>(&self, device: &B::Device) -> Result<Mae<B>> {
        let objective: MaeObjective<B> = self.config.init(device)?;
        Ok(load_safetensors(objective, &self.weights)?.model)
    }

    fn training(&self) -> MaeTraining {
        MaeTraining {
            mask_ratio: self.config.mask_ratio.into(),
            norm_pix_loss: self.config.norm_pix_loss,
        }
    }
}

/// A masked-LM run opened.
struct EncoderRun {
    tokenizer: TextTokenizer,
    config: BertConfig,
    weights: PathBuf,
}

impl EncoderRun {
    /// The trained encoder.
    fn load<B: FusedBackend>(&self, device: &B::Device) -> Result<Bert<B>> {
        Ok(load_safetensors(
            self.config.init::<B>(device)?,
            &self.weights,
        )?)
    }
}

impl HfRun {
    /// Opens a finished clm or mlm run; other runs are refused for `command`'s messages.
    fn open(run_dir: &Path, command: &'static str) -> Result<Self> {
        let recipe = recipe_of_run(run_dir)?;
        if recipe.objective.kind == ObjectiveKind::Mae {
            return Ok(Self::Mae(Box::new(MaeRun::open(run_dir)?)));
        }
        if recipe.objective.kind != ObjectiveKind::Mlm {
            return match DecoderRun::open(run_dir, command) {
                Ok(run) => Ok(Self::Decoder(Box::new(run))),
                Err(_) => Err(RecipeError::option(
                    command,
                    format!(
                        "{} is a {} run; {command} reads causal-LM (clm), masked-LM (mlm) and \
                         masked-autoencoder (mae) runs",
                        run_dir.display(),
                        recipe.objective.kind
                    ),
                )),
            };
        }
        let (tokenizer, model, weights) = text_model(run_dir, &recipe)?;
        let ModelConfig::Text(config) = model else {
            return Err(RecipeError::field(
                "model.preset",
                "an mlm run has a BERT preset",
            ));
        };
        Ok(Self::Encoder(Box::new(EncoderRun {
            tokenizer,
            config,
            weights,
        })))
    }

    /// A text run's tokenizer and the tokens a sequence may have.
    fn text(&self) -> Option<(&TextTokenizer, usize)> {
        match self {
            Self::Decoder(run) => Some((&run.tokenizer, run.config.block_size)),
            Self::Encoder(run) => Some((&run.tokenizer, run.config.max_position)),
            Self::Mae(_) => None,
        }
    }
}

/// Writes the run in `run_dir` to `out` as a Hugging Face checkpoint (`config.json`,
/// `model.safetensors`, and a text run's `tokenizer.json`): a causal LM as `GPT2LMHeadModel`,
/// a masked LM as `BertForMaskedLM`, a masked autoencoder as `ViTMAEForPreTraining` or, with
/// `encoder_only`, its encoder as `ViTModel` (without a pooler). Returns the architecture and
/// the files written.
pub fn run_export_hf(
    run_dir: &Path,
    out: &Path,
    encoder_only: bool,
    backend: BackendKind,
) -> Result<(String, Vec<&'static str>)> {
    // A checkpoint already there is not overwritten (it may be the only copy of a model).
    for file in [
        pretrain::hf::checkpoint::CONFIG_FILE,
        pretrain::hf::checkpoint::WEIGHTS_FILE,
    ] {
        if out.join(file).exists() {
            return Err(RecipeError::option(
                "--out",
                format!(
                    "{} already holds a checkpoint ({file}); choose an empty folder",
                    out.display()
                ),
            ));
        }
    }
    let run = HfRun::open(run_dir, "export-hf")?;
    if encoder_only && !matches!(run, HfRun::Mae(_)) {
        return Err(RecipeError::option(
            "--encoder-only",
            "applies to masked-autoencoder (mae) runs",
        ));
    }
    let job = Export {
        run: &run,
        out,
        encoder_only,
    };
    let architecture = pretrain::dispatch_backend!(backend, Precision::F32, job)??;
    let mut files = vec![
        pretrain::hf::checkpoint::CONFIG_FILE,
        pretrain::hf::checkpoint::WEIGHTS_FILE,
    ];
    if run.text().is_some() {
        let tokenizer = out.join(TOKENIZER_FILE);
        std::fs::copy(run_dir.join(TOKENIZER_FILE), &tokenizer)
            .map_err(|e| RecipeError::io(&tokenizer, e))?;
        files.push(TOKENIZER_FILE);
    }
    Ok((architecture, files))
}

struct Export<'a> {
    run: &'a HfRun,
    out: &'a Path,
    encoder_only: bool,
}

impl BackendTask for Export<'_> {
    /// The architecture written.
    type Output = Result<String>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        match self.run {
            HfRun::Decoder(run) => {
                let model = run.load::<B::InnerBackend>(&device)?;
                let end_of_text = run.tokenizer.specials().sep;
                pretrain::hf::gpt2::save(&model, &run.config, end_of_text, self.out)?;
                Ok("GPT2LMHeadModel".into())
            }
            HfRun::Encoder(run) => {
                let model = run.load::<B::InnerBackend>(&device)?;
                pretrain::hf::bert::save(&model, &run.config, self.out)?;
                Ok("BertForMaskedLM".into())
            }
            HfRun::Mae(run) => {
                let model = run.load::<B::InnerBackend>(&device)?;
                if self.encoder_only {
                    pretrain::hf::vit::save(&model.encoder, &run.config.model.encoder, self.out)?;
                    return Ok("ViTModel".into());
                }
                pretrain::hf::vit_mae::save(&model, &run.config.model, run.training(), self.out)?;
                Ok("ViTMAEForPreTraining".into())
            }
        }
    }
}

/// The outputs of the run in `run_dir` on the token ids in `input` (JSON, [`EmbedInput`]),
/// written to `out` as a JSON list of [`EmbedRow`].
pub fn run_embed(run_dir: &Path, input: &Path, out: &Path, backend: BackendKind) -> Result<()> {
    let run = HfRun::open(run_dir, "embed")?;
    let text = std::fs::read_to_string(input).map_err(|e| RecipeError::io(input, e))?;
    let embedded = match (&run, run.text()) {
        (HfRun::Mae(mae), _) => {
            let parsed: ImageEmbedInput = serde_json::from_str(&text)
                .map_err(|e| RecipeError::io(input, format!("is not pixel values as JSON: {e}")))?;
            let pixels =
                image_batch(&parsed, mae).map_err(|message| RecipeError::io(input, message))?;
            let job = ImageEmbed {
                run: mae,
                input: &parsed,
                pixels,
            };
            pretrain::dispatch_backend!(backend, Precision::F32, job)??
        }
        (_, Some((tokenizer, context))) => {
            let parsed: EmbedInput = serde_json::from_str(&text)
                .map_err(|e| RecipeError::io(input, format!("is not token ids as JSON: {e}")))?;
            let lengths = unpadded(&parsed, tokenizer.vocab_size(), context)
                .map_err(|message| RecipeError::io(input, message))?;
            if let (HfRun::Decoder(_), Some(_)) = (&run, &parsed.token_type_ids) {
                return Err(RecipeError::io(
                    input,
                    "token_type_ids: the GPT here has no segment embeddings",
                ));
            }
            let job = Embed {
                run: &run,
                input: &parsed,
                lengths,
            };
            pretrain::dispatch_backend!(backend, Precision::F32, job)??
        }
        (_, None) => unreachable!("every run but a MAE's is a text run"),
    };
    let json = serde_json::to_string(&embedded).expect("outputs serialize");
    std::fs::write(out, json).map_err(|e| RecipeError::io(out, e))
}

/// The images of `input` as one row-major `[batch, channels, side, side]` buffer, checked
/// against the MAE's input shape, and its noise (if any) against the patches.
fn image_batch(input: &ImageEmbedInput, run: &MaeRun) -> std::result::Result<Vec<f32>, String> {
    let vit = &run.config.model.encoder;
    let [height, width] = vit.image_hw();
    let want = [vit.channels, height, width];
    if input.pixel_values.is_empty() {
        return Err("pixel_values has no images".into());
    }
    let mut pixels = Vec::new();
    for (i, image) in input.pixel_values.iter().enumerate() {
        let rows = image.first().map_or(0, Vec::len);
        let columns = image.first().and_then(|c| c.first()).map_or(0, Vec::len);
        let ragged = image
            .iter()
            .any(|c| c.len() != rows || c.iter().any(|r| r.len() != columns));
        if ragged || [image.len(), rows, columns] != want {
            return Err(format!(
                "pixel_values image {i} is not {want:?} (channels, height, width)"
            ));
        }
        pixels.extend(image.iter().flatten().flatten());
    }
    if let Some(noise) = &input.noise {
        let patches = vit.num_patches();
        if noise.len() != input.pixel_values.len() || noise.iter().any(|r| r.len() != patches) {
            return Err(format!(
                "noise is not [{}, {patches}] (images, patches)",
                input.pixel_values.len()
            ));
        }
        if kept_patches(patches, run.training().mask_ratio) == 0 {
            return Err(format!(
                "mask ratio {} leaves no patch of {patches} visible",
                run.config.mask_ratio
            ));
        }
    }
    Ok(pixels)
}

/// Each row's unpadded length, checked: ids in the vocabulary, at most `context` of them, at
/// least one, the mask and segment ids of the ids' shape, padding only at the end.
fn unpadded(
    input: &EmbedInput,
    vocab: usize,
    context: usize,
) -> std::result::Result<Vec<usize>, String> {
    let Some(width) = input.input_ids.first().map(Vec::len) else {
        return Err("input_ids has no rows".into());
    };
    if input.input_ids.iter().any(|row| row.len() != width) {
        return Err("input_ids rows differ in length (pad them, with an attention_mask)".into());
    }
    if let Some(types) = &input.token_type_ids
        && (types.len() != input.input_ids.len() || types.iter().any(|r| r.len() != width))
    {
        return Err("token_type_ids is not input_ids' shape".into());
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
            if n == 0 || ids.len() > context {
                return Err(format!(
                    "row {r} has {} tokens ({n} unpadded); the model takes 1 to {context}",
                    ids.len()
                ));
            }
            if let Some((p, id)) = ids
                .iter()
                .enumerate()
                .find(|(_, id)| !(0..vocab as i64).contains(id))
            {
                return Err(format!(
                    "row {r} position {p}: id {id} is outside the vocabulary of {vocab} tokens"
                ));
            }
            Ok(n)
        })
        .collect()
}

struct Embed<'a> {
    run: &'a HfRun,
    input: &'a EmbedInput,
    lengths: Vec<usize>,
}

impl BackendTask for Embed<'_> {
    type Output = Result<Vec<EmbedRow>>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let (b, s) = (self.input.input_ids.len(), self.input.input_ids[0].len());
        let ints = |rows: &Vec<Vec<i64>>| {
            Tensor::<B::InnerBackend, 2, Int>::from_data(
                TensorData::new(rows.concat(), [b, s]),
                &device,
            )
        };
        let (hidden, pooled, logits) = match self.run {
            HfRun::Decoder(run) => {
                let model = run.load::<B::InnerBackend>(&device)?;
                // Causal attention makes right padding irrelevant to the unpadded positions.
                let hidden = model.forward_hidden(ints(&self.input.input_ids), None);
                let logits = model.logits(hidden.clone());
                (hidden, None, logits)
            }
            HfRun::Encoder(run) => {
                let model = run.load::<B::InnerBackend>(&device)?;
                let padding: Vec<bool> = (0..b)
                    .flat_map(|r| (0..s).map(move |p| (r, p)))
                    .map(|(r, p)| p >= self.lengths[r])
                    .collect();
                let padding = Tensor::from_data(TensorData::new(padding, [b, s]), &device);
                let types = self.input.token_type_ids.as_ref().map(ints);
                let hidden = model.forward(ints(&self.input.input_ids), Some(padding), types);
                let pooled = model.pooled(hidden.clone());
                let logits = model.mlm_logits(hidden.clone());
                (hidden, Some(pooled), logits)
            }
            HfRun::Mae(_) => {
                return Err(RecipeError::option(
                    "embed",
                    "a masked autoencoder embeds pixel values, not token ids",
                ));
            }
        };
        (0..b)
            .map(|r| {
                let n = self.lengths[r];
                let last_hidden_state = matrix(hidden.clone(), r, n)?;
                let pooled = match &pooled {
                    Some(pooled) => {
                        let d = pooled.dims()[1];
                        to_vec(pooled.clone().slice([r..r + 1, 0..d]))?
                    }
                    None => last_hidden_state[n - 1].clone(),
                };
                Ok(EmbedRow {
                    tokens: n,
                    pooled,
                    logits: Some(matrix(logits.clone(), r, n)?),
                    last_hidden_state,
                })
            })
            .collect()
    }
}

struct ImageEmbed<'a> {
    run: &'a MaeRun,
    input: &'a ImageEmbedInput,
    /// `input`'s pixels, checked and flattened.
    pixels: Vec<f32>,
}

impl BackendTask for ImageEmbed<'_> {
    type Output = Result<Vec<EmbedRow>>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let model = self.run.load::<B::InnerBackend>(&device)?;
        let vit = &self.run.config.model.encoder;
        let b = self.input.pixel_values.len();
        let [height, width] = vit.image_hw();
        let shape = [b, vit.channels, height, width];
        let images =
            Tensor::<B::InnerBackend, 4>::from_data(TensorData::new(self.pixels, shape), &device);
        let (hidden, logits) = match &self.input.noise {
            Some(noise) => {
                let (patches, ratio) = (vit.num_patches(), self.run.training().mask_ratio);
                let (keep, restore) = masking_from_noise(&noise.concat(), patches, ratio);
                let kept = kept_patches(patches, ratio);
                let ints = |values: Vec<i64>, width: usize| {
                    Tensor::<B::InnerBackend, 2, Int>::from_data(
                        TensorData::new(values, [b, width]),
                        &device,
                    )
                };
                let (latent, predicted) =
                    model.forward_with_latent(images, ints(keep, kept), ints(restore, patches));
                (latent, Some(predicted))
            }
            None => (model.encoder.forward_tokens(images), None),
        };
        let tokens = hidden.dims()[1];
        (0..b)
            .map(|r| {
                let last_hidden_state = matrix(hidden.clone(), r, tokens)?;
                let logits = match &logits {
                    Some(predicted) => Some(matrix(predicted.clone(), r, predicted.dims()[1])?),
                    None => None,
                };
                Ok(EmbedRow {
                    tokens,
                    pooled: last_hidden_state[0].clone(),
                    logits,
                    last_hidden_state,
                })
            })
            .collect()
    }
}

/// Row `r`'s first `n` positions of `t` (`[batch, positions, width]`) as `[n][width]`.
fn matrix<B: FusedBackend>(t: Tensor<B, 3>, r: usize, n: usize) -> Result<Vec<Vec<f32>>> {
    let width = t.dims()[2];
    let values = to_vec(t.slice([r..r + 1, 0..n, 0..width]))?;
    Ok(values.chunks(width).map(<[f32]>::to_vec).collect())
}

fn to_vec<B: FusedBackend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|e| RecipeError::option("embed", format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ids: Vec<Vec<i64>>, mask: Option<Vec<Vec<u8>>>) -> EmbedInput {
        EmbedInput {
            input_ids: ids,
            attention_mask: mask,
            token_type_ids: None,
        }
    }

    #[test]
    fn unpadded_rows_are_checked() {
        let ok = input(
            vec![vec![1, 2, 3], vec![4, 5, 0]],
            Some(vec![vec![1, 1, 1], vec![1, 1, 0]]),
        );
        assert_eq!(unpadded(&ok, 10, 8).unwrap(), [3, 2]);
        assert_eq!(unpadded(&input(vec![vec![7]], None), 10, 8).unwrap(), [1]);
        for (bad, why) in [
            (input(vec![], None), "no rows"),
            (
                input(vec![vec![1, 10]], None),
                "position 1: id 10 is outside",
            ),
            (input(vec![vec![1, -1]], None), "id -1 is outside"),
            (
                input(vec![vec![1; 9]], None),
                "9 tokens (9 unpadded); the model takes 1 to 8",
            ),
            (
                input(vec![vec![1, 2]], Some(vec![vec![0, 1]])),
                "right padding",
            ),
            (
                input(vec![vec![1, 2]], Some(vec![vec![0, 0]])),
                "(0 unpadded)",
            ),
            (input(vec![vec![1, 2], vec![3]], None), "differ in length"),
            (
                EmbedInput {
                    token_type_ids: Some(vec![vec![0]]),
                    ..input(vec![vec![1, 2]], None)
                },
                "token_type_ids is not input_ids' shape",
            ),
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
