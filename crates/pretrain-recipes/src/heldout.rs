//! Held-out evaluation of a causal LM: bits per byte on the held-out documents, beside n-gram
//! baselines fitted on the same training tokens (unigram, add-k bigram, Kneser-Ney trigram).

use pretrain::models::FusedBackend;
use std::ops::Range;
use std::sync::Arc;

use pretrain::burn::data::dataset::Dataset;
use pretrain::data::Named;
use pretrain::data::packed::PackedWindows;
use pretrain::data::shards::TokenStream;
use pretrain::models::{Gpt, NgramCounts, NgramKind};
use pretrain::objectives::{bits_per_byte, mean_nats};
use serde::{Deserialize, Serialize};

use crate::error::{RecipeError, Result};

/// Tokens of the training stream the baselines are fitted on, at most (their counts live in
/// memory).
pub const BASELINE_FIT_TOKENS: usize = 20_000_000;

/// Held-out tokens evaluated, at most.
pub const HELDOUT_TOKENS: usize = 1_000_000;

/// Windows per forward pass of the held-out evaluation.
const EVAL_BATCH: usize = 16;

/// Bits per byte on the held-out documents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutReport {
    /// Held-out tokens predicted.
    pub tokens: usize,
    /// UTF-8 bytes per token of the held-out text.
    pub bytes_per_token: f64,
    /// The trained model.
    pub model_bits_per_byte: f64,
    /// Each baseline's name and bits per byte.
    pub baselines: Vec<(String, f64)>,
}

impl HeldOutReport {
    /// The bigram baseline's bits per byte.
    pub fn bigram(&self) -> Option<f64> {
        self.baselines
            .iter()
            .find(|(name, _)| name == NgramKind::Bigram.name())
            .map(|(_, bpb)| *bpb)
    }
}

/// Evaluates `model` on the `held` range of `stream` (windows of `block`), and the n-gram
/// baselines fitted on the `train` range, all in bits per byte at `bytes_per_token`.
pub fn evaluate_heldout<B: FusedBackend, S: TokenStream + 'static>(
    model: &Gpt<B>,
    stream: Arc<S>,
    train: Range<usize>,
    held: Range<usize>,
    block: usize,
    vocab_size: usize,
    bytes_per_token: f64,
) -> Result<HeldOutReport> {
    let held = held.start..held.end.min(held.start + HELDOUT_TOKENS + 1);
    let windows = PackedWindows::new(stream.clone(), held.clone(), block)
        .map_err(|e| RecipeError::field("data.holdout", e.to_string()))?;
    let nats = mean_nats(model, &windows, EVAL_BATCH)
        .ok_or_else(|| RecipeError::field("data.holdout", "holds no complete window"))?;
    let fit = train.start..train.end.min(train.start + BASELINE_FIT_TOKENS);
    let counts = NgramCounts::fit(&stream.window(fit.start, fit.len()), vocab_size);
    // The tokens the model predicted: every window's targets.
    let predicted = windows.len() * block;
    let tokens = stream.window(held.start, predicted + 1);
    let baselines = NgramKind::all()
        .iter()
        .map(|&kind| {
            let bits = counts.bits(kind, &tokens) - counts.bits(kind, &tokens[..1]);
            let nats = bits / predicted as f64 * std::f64::consts::LN_2;
            (
                kind.name().to_string(),
                bits_per_byte(nats, bytes_per_token),
            )
        })
        .collect();
    Ok(HeldOutReport {
        tokens: predicted,
        bytes_per_token,
        model_bits_per_byte: bits_per_byte(nats, bytes_per_token),
        baselines,
    })
}
