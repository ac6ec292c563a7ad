//! Masked language modeling (BERT): cross-entropy on masked positions only (targets elsewhere,
//! padding included, are `IGNORE_INDEX`), with masked-token accuracy and perplexity.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pretrain_data::batch::TextBatch;
use pretrain_models::{Bert, BertConfig};
use pretrain_models::{FusedAutodiffBackend, FusedBackend};

use crate::error::{ObjectiveError, Result, ensure};
use crate::monitor::loss_and_collapse_metrics;
use crate::objective::{Objective, StepOutput};
use crate::ops::{accuracy, cross_entropy};

/// Mean cross-entropy over positions whose target is a token id (negative targets, such as
/// `IGNORE_INDEX`, are skipped): `logits` `[b, s, vocab]`, `targets` `[b, s]` -> `[1]`.
pub fn masked_token_cross_entropy<B: FusedBackend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let (logits, targets) = flatten_tokens(logits, targets);
    cross_entropy(logits, targets)
}

fn flatten_tokens<B: FusedBackend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
    let [b, s, v] = logits.dims();
    (logits.reshape([b * s, v]), targets.reshape([b * s]))
}

/// Configuration of [`Mlm`]. The masking itself (15%, 80/10/10, whole words or spans) is the
/// data pipeline's `TokenMasker`.
#[derive(Config, Debug)]
pub struct MlmConfig {
    /// The encoder with its tied MLM head.
    pub model: BertConfig,
}

impl MlmConfig {
    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Mlm<B>> {
        Ok(Mlm {
            vocab_size: self.model.vocab_size,
            model: self.model.init(device)?,
        })
    }
}

/// Masked language modeling objective on text batches with MLM targets.
#[derive(Module, Debug)]
pub struct Mlm<B: Backend> {
    /// The encoder and its MLM head.
    pub model: Bert<B>,
    vocab_size: usize,
}

impl<B: FusedAutodiffBackend> Objective<B> for Mlm<B> {
    type Batch = TextBatch<B>;
    type Carry = ();
    type Encoder = Bert<B>;

    fn forward_step(&self, batch: TextBatch<B>) -> Result<StepOutput<B, ()>> {
        let targets = batch
            .mlm_targets
            .ok_or_else(|| crate::ObjectiveError::Batch {
                objective: "MLM",
                what: "mlm_targets",
                message: "are missing: build the dataset with a TokenMasker (MlmDataset)".into(),
            })?;
        let largest: i64 = batch.input_ids.clone().max().into_scalar().elem();
        ensure(
            largest < self.vocab_size as i64,
            ObjectiveError::batch,
            "MLM",
            "input_ids",
            || {
                format!(
                    "contain id {largest}, outside the model's vocabulary of {}: the tokenizer and \
                 BertConfig::vocab_size disagree",
                    self.vocab_size
                )
            },
        )?;
        let hidden = self
            .model
            .forward(batch.input_ids, Some(batch.padding_mask), None); // [b, s, d]
        let [b, s, d] = hidden.dims();
        let tokens = hidden.clone().reshape([b * s, d]);
        let targets = targets.reshape([b * s]);
        // Only the predicted positions go through the vocabulary projection: for a small
        // encoder that projection is most of the step, and ~85% of its rows would be ignored.
        let predicted: Vec<i64> = targets
            .to_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .expect("converted to i64")
            .into_iter()
            .enumerate()
            .filter(|(_, t)| *t >= 0)
            .map(|(i, _)| i as i64)
            .collect();
        let (logits, targets) = if predicted.is_empty() {
            // Nothing masked in this batch: score every position (all ignored).
            flatten_tokens(self.model.mlm_logits(hidden), targets.reshape([b, s]))
        } else {
            let n = predicted.len();
            let index =
                Tensor::<B, 1, Int>::from_data(TensorData::new(predicted, [n]), &tokens.device());
            let picked = tokens.clone().select(0, index.clone()).reshape([1, n, d]);
            let logits = self.model.mlm_logits(picked); // [1, n, vocab]
            (
                logits.reshape([n, self.vocab_size]),
                targets.select(0, index),
            )
        };
        let loss = cross_entropy(logits.clone(), targets.clone());
        let mut metrics = loss_and_collapse_metrics(&loss, tokens);
        metrics.push_tensor("masked_accuracy", accuracy(logits.detach(), targets));
        metrics.push_tensor("perplexity", loss.clone().detach().exp());
        Ok(StepOutput {
            loss,
            metrics,
            carry: (),
        })
    }

    fn encoder(&self) -> &Bert<B> {
        &self.model
    }
}
