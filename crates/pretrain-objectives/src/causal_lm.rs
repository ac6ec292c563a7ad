//! Causal language modeling (GPT): next-token cross-entropy over packed windows, with
//! perplexity and, given the corpus's bytes per token, bits per byte (which does not depend on
//! the tokenizer, so models with different vocabularies and n-gram baselines compare).

use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use std::f64::consts::LN_2;

use burn::config::Config;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor};
use pretrain_data::packed::{CausalBatch, CausalBatcher, TokenWindow};
use pretrain_models::{Gpt, GptConfig};

use crate::error::{ObjectiveError, Result, ensure};
use crate::monitor::loss_and_collapse_metrics;
use crate::objective::{Objective, StepOutput};
use crate::ops::cross_entropy;

/// Mean next-token cross-entropy in nats: `logits` `[b, s, vocab]`, `targets` `[b, s]` -> `[1]`.
pub fn next_token_cross_entropy<B: FusedBackend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 1> {
    let [b, s, v] = logits.dims();
    cross_entropy(logits.reshape([b * s, v]), targets.reshape([b * s]))
}

/// Bits per byte of a loss in nats per token, for text of `bytes_per_token` UTF-8 bytes per
/// token.
pub fn bits_per_byte(nats_per_token: f64, bytes_per_token: f64) -> f64 {
    nats_per_token / LN_2 / bytes_per_token
}

/// Mean next-token loss (nats per token) of `model` over every window of `windows`, in
/// batches of `batch` (no gradients: pass the inference model, e.g. `objective.model.valid()`).
pub fn mean_nats<B: FusedBackend>(
    model: &Gpt<B>,
    windows: &dyn Dataset<TokenWindow>,
    batch: usize,
) -> Option<f64> {
    let device = model.wte.weight.val().device();
    let (mut nats, mut tokens) = (0.0, 0usize);
    let mut start = 0;
    while start < windows.len() {
        let items: Vec<TokenWindow> = (start..(start + batch.max(1)).min(windows.len()))
            .filter_map(|i| windows.get(i))
            .collect();
        start += batch.max(1);
        if items.is_empty() {
            continue;
        }
        let n = items.len() * (items[0].ids.len() - 1);
        let batch: CausalBatch<B> = CausalBatcher.batch(items, &device);
        let loss: f64 = next_token_cross_entropy(model.forward(batch.inputs), batch.targets)
            .into_scalar()
            .elem();
        nats += loss * n as f64;
        tokens += n;
    }
    (tokens > 0).then(|| nats / tokens as f64)
}

/// Configuration of [`CausalLm`].
#[derive(Config, Debug)]
pub struct CausalLmConfig {
    /// The decoder.
    pub model: GptConfig,
    /// UTF-8 bytes per token of the training text, for the `bits_per_byte` metric (0: not
    /// reported).
    #[config(default = 0.0)]
    pub bytes_per_token: f64,
    /// The end-of-text id that joins packed documents (needed by `mask_document_boundaries`).
    #[config(default = "None")]
    pub end_of_text: Option<u32>,
    /// Leave the predictions made at each end-of-text token out of the loss: the next
    /// document's first token, which the previous document says nothing about.
    #[config(default = false)]
    pub mask_document_boundaries: bool,
}

impl CausalLmConfig {
    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<CausalLm<B>> {
        let boundary = match (self.mask_document_boundaries, self.end_of_text) {
            (false, _) => -1,
            (true, Some(id)) if (id as usize) < self.model.vocab_size => i64::from(id),
            (true, id) => {
                return Err(ObjectiveError::InvalidConfig {
                    objective: "causal LM",
                    field: "end_of_text",
                    message: format!(
                        "{id:?} is not a token of the vocabulary of {} (mask_document_boundaries \
                         needs the id that joins documents)",
                        self.model.vocab_size
                    ),
                });
            }
        };
        Ok(CausalLm {
            model: self.model.init(device)?,
            vocab_size: self.model.vocab_size,
            bytes_per_token: self.bytes_per_token,
            boundary,
        })
    }
}

/// Next-token prediction objective on packed windows ([`CausalBatch`]).
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    /// The decoder.
    pub model: Gpt<B>,
    vocab_size: usize,
    bytes_per_token: f64,
    /// The end-of-text id whose predictions are left out of the loss; -1 for none.
    boundary: i64,
}

impl<B: FusedAutodiffBackend> Objective<B> for CausalLm<B> {
    type Batch = CausalBatch<B>;
    type Carry = ();
    type Encoder = Gpt<B>;

    fn forward_step(&self, batch: CausalBatch<B>) -> Result<StepOutput<B, ()>> {
        let [_, seq] = batch.inputs.dims();
        ensure(
            seq <= self.model.block_size(),
            ObjectiveError::batch,
            "causal LM",
            "inputs",
            || {
                format!(
                    "hold {seq} positions, beyond the model's block size of {}",
                    self.model.block_size()
                )
            },
        )?;
        let largest: i64 = batch.inputs.clone().max().into_scalar().elem();
        ensure(
            largest < self.vocab_size as i64,
            ObjectiveError::batch,
            "causal LM",
            "inputs",
            || {
                format!(
                    "contain id {largest}, outside the model's vocabulary of {}: the tokenizer \
                     and GptConfig::vocab_size disagree",
                    self.vocab_size
                )
            },
        )?;
        let mut targets = batch.targets;
        if self.boundary >= 0 {
            // Negative targets are left out of the cross-entropy.
            targets = targets.mask_fill(batch.inputs.clone().equal_elem(self.boundary), -100);
        }
        let hidden = self.model.forward_hidden(batch.inputs, None); // [b, s, d]
        let [b, s, d] = hidden.dims();
        let logits = self.model.logits(hidden.clone()); // [b, s, vocab]
        let loss = next_token_cross_entropy(logits, targets);
        let mut metrics = loss_and_collapse_metrics(&loss, hidden.reshape([b * s, d]));
        let nats = loss.clone().detach();
        metrics.push_tensor("perplexity", nats.clone().exp());
        if self.bytes_per_token > 0.0 {
            metrics.push_tensor(
                "bits_per_byte",
                nats.div_scalar(LN_2 * self.bytes_per_token),
            );
        }
        Ok(StepOutput {
            loss,
            metrics,
            carry: (),
        })
    }

    fn encoder(&self) -> &Gpt<B> {
        &self.model
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use pretrain_models::init::init_seeded;

    use crate::testing::TestAutodiff as B;

    fn batch(inputs: Vec<i64>, targets: Vec<i64>, shape: [usize; 2]) -> CausalBatch<B> {
        let device = Default::default();
        CausalBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), &device),
            targets: Tensor::from_data(TensorData::new(targets, shape), &device),
        }
    }

    /// GPT-nano over 11 tokens with a context of `block`.
    fn nano(block: usize) -> GptConfig {
        GptConfig {
            block_size: block,
            ..GptConfig::gpt_nano(11)
        }
    }

    #[test]
    fn loss_is_next_token_cross_entropy_and_bits_per_byte_follow() {
        let device = Default::default();
        let config = CausalLmConfig::new(nano(8)).with_bytes_per_token(2.0);
        let objective = init_seeded(&device, 1001, || config.init::<B>(&device).unwrap());
        let inputs = vec![1, 2, 3, 4, 5, 6, 7, 8];
        let targets = vec![2, 3, 4, 5, 6, 7, 8, 9];
        let out = objective
            .forward_step(batch(inputs.clone(), targets.clone(), [2, 4]))
            .unwrap();
        // The same loss from the model's own logits.
        let logits = objective
            .model
            .forward(Tensor::from_data(TensorData::new(inputs, [2, 4]), &device));
        let expected = next_token_cross_entropy(
            logits,
            Tensor::from_data(TensorData::new(targets, [2, 4]), &device),
        );
        let loss: f64 = out.loss.into_scalar().elem();
        let expected: f64 = expected.into_scalar().elem();
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        // A fresh model is near uniform over 11 tokens.
        assert!((loss - 11f64.ln()).abs() < 0.5, "{loss}");
        let value = |name: &str| out.metrics.get(name).unwrap();
        assert!((value("perplexity") - loss.exp()).abs() < 1e-3);
        assert!((value("bits_per_byte") - bits_per_byte(loss, 2.0)).abs() < 1e-5);
    }

    #[test]
    fn masked_document_boundaries_leave_the_prediction_at_end_of_text_out() {
        let device = Default::default();
        let mut objective = init_seeded(&device, 1002, || {
            CausalLmConfig::new(nano(8))
                .with_end_of_text(Some(3))
                .with_mask_document_boundaries(true)
                .init::<B>(&device)
                .unwrap()
        });
        // Token 3 ends a document at position 2: its target starts the next one.
        let loss = |objective: &CausalLm<B>, first_of_next: i64| -> f64 {
            let inputs = vec![1, 2, 3, 5];
            let targets = vec![2, 3, first_of_next, 6];
            let out = objective
                .forward_step(batch(inputs, targets, [1, 4]))
                .unwrap();
            out.loss.into_scalar().elem()
        };
        // Masked, the next document's first token does not count: the loss is the mean over
        // the other three targets.
        let masked = loss(&objective, 5);
        assert_eq!(masked, loss(&objective, 9));
        let logits = objective.model.forward(Tensor::from_data(
            TensorData::new(vec![1i64, 2, 3, 5], [1, 4]),
            &device,
        ));
        let expected: f64 = next_token_cross_entropy(
            logits,
            Tensor::from_data(TensorData::new(vec![2i64, 3, -100, 6], [1, 4]), &device),
        )
        .into_scalar()
        .elem();
        assert!((masked - expected).abs() < 1e-6, "{masked} vs {expected}");
        // The same model unmasked (not a clone: parameters initialize lazily, and a clone of a
        // fresh model draws its own).
        objective.boundary = -1;
        assert_ne!(loss(&objective, 5), loss(&objective, 9));
        // Masking needs the end-of-text id, inside the vocabulary.
        for id in [None, Some(11)] {
            let err = CausalLmConfig::new(nano(8))
                .with_end_of_text(id)
                .with_mask_document_boundaries(true)
                .init::<B>(&device)
                .err()
                .unwrap();
            assert!(err.to_string().contains("end_of_text"), "{err}");
        }
    }

    #[test]
    fn windows_beyond_the_block_or_the_vocabulary_are_refused() {
        let device = Default::default();
        let objective = init_seeded(&device, 1004, || {
            CausalLmConfig::new(nano(4)).init::<B>(&device).unwrap()
        });
        let err = objective
            .forward_step(batch(vec![1; 5], vec![1; 5], [1, 5]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("block size of 4"), "{err}");
        let err = objective
            .forward_step(batch(vec![1, 2, 3, 11], vec![1; 4], [1, 4]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("id 11"), "{err}");
    }
}
