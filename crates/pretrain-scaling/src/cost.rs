//! What a model size costs: parameters (total and non-embedding) and training FLOPs per
//! sample (a token of a language model, an image of an image model), counted from the model's
//! shapes.
//!
//! A transformer block's forward pass over `T` tokens of width `d` does `2 x` (multiply-add) its
//! linear weights per token and `2 x 2 x T x d` per token in attention (scores `QK^T` and the
//! weighted sum of values, dense as burn computes them, a causal mask not halving it). A GPT
//! adds `2 x d_model x vocab` per token for the output projection; embedding lookups cost
//! nothing. A masked autoencoder projects every patch, runs its encoder on the visible patches
//! and the class token, and its decoder and pixel prediction on every patch. Training is three
//! forward passes' worth (the backward pass is twice the forward). For a GPT, Kaplan et al.'s
//! `6 N D` (non-embedding `N`) is reported beside it as a check; it does not describe an
//! encoder and a decoder that see different numbers of tokens.

use pretrain::models::{GptConfig, GptPositions, MaeConfig, PositionEmbedding};
use serde::{Deserialize, Serialize};

/// A model size's parameters and compute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelCost {
    /// Every parameter.
    pub params: u64,
    /// Parameters outside the token and position embeddings (Kaplan's `N`; a tied output
    /// projection is the token embedding and is left out with it).
    pub non_embedding_params: u64,
    /// Training FLOPs per sample (forward and backward): per token of a language model, per
    /// image of an image model.
    #[serde(alias = "flops_per_token")]
    pub flops_per_sample: f64,
    /// Tokens one attention sees: a GPT's window; a masked autoencoder's encoder tokens (the
    /// visible patches and the class token).
    pub context: usize,
}

/// Forward FLOPs of `layers` transformer blocks over `tokens` tokens of width `width` whose
/// MLP has `mlp_weights` weights: the linear layers (`4 width^2` in attention) and the scores.
fn blocks_forward(tokens: f64, width: f64, mlp_weights: f64, layers: usize) -> f64 {
    let per_block =
        2.0 * tokens * (4.0 * width * width + mlp_weights) + 4.0 * tokens * tokens * width;
    layers as f64 * per_block
}

impl ModelCost {
    /// The cost of `config` trained on windows of `context` tokens.
    pub fn gpt(config: &GptConfig, context: usize) -> Self {
        let d = config.d_model as f64;
        let t = context as f64;
        // Per window: the blocks (MLP c_fc d x ff and c_proj ff x d) and the output layer.
        let window = blocks_forward(t, d, 2.0 * d * config.d_ff() as f64, config.n_layer)
            + 2.0 * t * d * config.vocab_size as f64;
        let params = config.num_params();
        let positions = match config.positions {
            GptPositions::Learned => config.block_size as u128 * config.d_model as u128,
            GptPositions::Rope => 0,
        };
        let embeddings = config.vocab_size as u128 * config.d_model as u128 + positions;
        Self {
            params: params as u64,
            non_embedding_params: (params - embeddings) as u64,
            flops_per_sample: 3.0 * window / t,
            context,
        }
    }

    /// The cost per image of the masked autoencoder `config` whose encoder sees `visible`
    /// patches. Its non-embedding parameters leave out learned position embeddings only (the
    /// patch projection is a linear layer of the model).
    pub fn mae(config: &MaeConfig, visible: usize) -> Self {
        let vit = &config.encoder;
        let patches = vit.num_patches() as f64;
        let patch_dim = vit.patch_dim() as f64;
        let d = vit.d_model as f64;
        let hidden = (d * vit.mlp_ratio).round();
        let dd = config.decoder_dim as f64;
        let encoded = visible as f64 + 1.0;
        let decoded = patches + 1.0;
        let forward = 2.0 * patches * patch_dim * d
            + blocks_forward(encoded, d, 2.0 * d * hidden, vit.depth)
            + 2.0 * encoded * d * dd
            + blocks_forward(decoded, dd, 8.0 * dd * dd, config.decoder_depth)
            + 2.0 * decoded * dd * patch_dim;
        let params = config.num_params();
        let positions = match vit.position {
            PositionEmbedding::Learned => (vit.num_patches() as u128 + 1) * vit.d_model as u128,
            PositionEmbedding::SinCos => 0,
        };
        Self {
            params: params as u64,
            non_embedding_params: (params - positions) as u64,
            flops_per_sample: 3.0 * forward,
            context: visible + 1,
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
        let missing = cost.flops_per_sample - 3.0 * 2.0 * 12.0 * 12.0 * 768.0 * 768.0;
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

    #[test]
    fn mae_costs_its_encoder_on_visible_patches_and_its_decoder_on_all() {
        use pretrain::models::VitConfig;
        // 16 patches of 7x7, 4 visible: encoder 5 tokens at width 128 (6 blocks), decoder 17
        // tokens at 64 (2 blocks).
        let vit = VitConfig {
            patch_size: 7,
            ..VitConfig::vit_tiny_28()
        };
        let config = MaeConfig::new(vit.clone());
        let cost = ModelCost::mae(&config, 4);
        let (d, dd, p) = (128.0, 64.0, 49.0);
        let encoder = 6.0 * (2.0 * 5.0 * 12.0 * d * d + 4.0 * 25.0 * d);
        let decoder = 2.0 * (2.0 * 17.0 * 12.0 * dd * dd + 4.0 * 289.0 * dd);
        let forward =
            2.0 * 16.0 * p * d + encoder + 2.0 * 5.0 * d * dd + decoder + 2.0 * 17.0 * dd * p;
        assert!((cost.flops_per_sample / (3.0 * forward) - 1.0).abs() < 1e-12);
        assert_eq!(cost.context, 5);
        // Sin-cos positions have no parameters: every parameter counts.
        assert_eq!(cost.params as u128, config.num_params());
        assert_eq!(cost.non_embedding_params, cost.params);
        // Learned positions (16 patches + class token) are left out.
        let learned = MaeConfig::new(vit.with_position(PositionEmbedding::Learned));
        let cost = ModelCost::mae(&learned, 4);
        assert_eq!(cost.params - cost.non_embedding_params, 17 * 128);
    }
}
