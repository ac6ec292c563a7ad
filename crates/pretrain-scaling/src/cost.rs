//! What a model size costs: parameters (total and non-embedding) and training FLOPs per token,
//! counted from the model's shapes.
//!
//! A GPT's forward pass per token of a `T`-token window does `2 x` (multiply-add) the weights of
//! its blocks' linear layers, `2 x 2 x n_layer x T x d_model` in attention (scores `QK^T` and
//! the weighted sum of values, dense as burn computes them, the causal mask not halving it) and
//! `2 x d_model x vocab` in the output projection; embedding lookups cost nothing. Training is
//! three forward passes' worth (the backward pass is twice the forward). Kaplan et al.'s
//! `6 N D` (non-embedding `N`) is reported beside it as a check.

use pretrain::models::{GptConfig, GptPositions};
use serde::{Deserialize, Serialize};

/// A model size's parameters and compute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelCost {
    /// Every parameter.
    pub params: u64,
    /// Parameters outside the token and position embeddings (Kaplan's `N`; a tied output
    /// projection is the token embedding and is left out with it).
    pub non_embedding_params: u64,
    /// Training FLOPs per token (forward and backward).
    pub flops_per_token: f64,
    /// Tokens per sequence the FLOPs assume (the window).
    pub context: usize,
}

impl ModelCost {
    /// The cost of `config` trained on windows of `context` tokens.
    pub fn gpt(config: &GptConfig, context: usize) -> Self {
        let d = config.d_model as f64;
        let layers = config.n_layer as f64;
        let vocab = config.vocab_size as f64;
        // Linear weights of a block: c_attn d x 3d, c_proj d x d, c_fc d x 4d, c_proj 4d x d.
        let block_weights = 12.0 * d * d;
        let forward = 2.0 * layers * block_weights
            + 2.0 * 2.0 * layers * context as f64 * d
            + 2.0 * d * vocab;
        let params = config.num_params();
        let positions = match config.positions {
            GptPositions::Learned => config.block_size as u128 * config.d_model as u128,
            GptPositions::Rope => 0,
        };
        let embeddings = config.vocab_size as u128 * config.d_model as u128 + positions;
        Self {
            params: params as u64,
            non_embedding_params: (params - embeddings) as u64,
            flops_per_token: 3.0 * forward,
            context,
        }
    }

    /// Kaplan's approximation `6 N` per token, with `N` the non-embedding parameters.
    pub fn kaplan_flops_per_token(&self) -> f64 {
        6.0 * self.non_embedding_params as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_small_costs_what_kaplan_counts_plus_attention_and_output() {
        let config = GptConfig::gpt2();
        let cost = ModelCost::gpt(&config, 1024);
        // GPT-2 small: 124,439,808 parameters, 85M outside the embeddings.
        assert_eq!(cost.params, 124_439_808);
        assert_eq!(
            cost.non_embedding_params,
            124_439_808 - 50_257 * 768 - 1024 * 768
        );
        // 6N misses the attention scores and the output projection:
        // 3 x (4 x 12 x 1024 x 768 + 2 x 768 x 50,257) = 3 x 115.0M FLOPs per token.
        let missing = cost.flops_per_token - 3.0 * 2.0 * 12.0 * 12.0 * 768.0 * 768.0;
        let expected = 3.0 * (4.0 * 12.0 * 1024.0 * 768.0 + 2.0 * 768.0 * 50_257.0);
        assert!((missing - expected).abs() < 1.0, "{missing} vs {expected}");
        // And 6N is within a few percent of the block part (biases and norms aside).
        let block_part = 3.0 * 2.0 * 12.0 * 12.0 * 768.0 * 768.0;
        let kaplan = cost.kaplan_flops_per_token();
        assert!(
            (kaplan / block_part - 1.0).abs() < 0.01,
            "{kaplan} vs {block_part}"
        );
    }

    #[test]
    fn rope_models_have_no_position_parameters_to_leave_out() {
        let config = GptConfig::gpt_nano(65).with_positions(GptPositions::Rope);
        let cost = ModelCost::gpt(&config, 64);
        assert_eq!(
            cost.params - cost.non_embedding_params,
            65 * config.d_model as u64
        );
    }
}
