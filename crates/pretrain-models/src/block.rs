//! The transformer block shared by the ViT and the BERT-style encoder.

use burn::config::Config;
use burn::module::Module;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::error::{Result, ensure};
use crate::init::InitScheme;
use crate::layers::{Mlp, linear, scaled_linear};

/// Configuration of one transformer block.
#[derive(Config, Debug)]
pub struct TransformerBlockConfig {
    /// Width of the token representations.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of the feed-forward network.
    pub d_ff: usize,
    /// Pre-norm (ViT, GPT-2) when true, post-norm (original BERT) when false.
    #[config(default = true)]
    pub pre_norm: bool,
    /// Layer-norm epsilon.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Dropout on attention weights and residual branches.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Initialization of every linear layer.
    #[config(default = "InitScheme::BERT")]
    pub init: InitScheme,
    /// Factor on the weights of the layers writing into the residual stream (attention output,
    /// second feed-forward layer); GPT-2 uses `1 / sqrt(2 * layers)`.
    #[config(default = 1.0)]
    pub residual_scale: f64,
}

/// Pre- or post-norm transformer block: self-attention and a feed-forward network, each with a
/// residual connection.
#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    /// Layer norm before (pre-norm) or after (post-norm) attention.
    pub norm1: LayerNorm<B>,
    /// Multi-head self-attention (`query`, `key`, `value`, `output`).
    pub attn: MultiHeadAttention<B>,
    /// Layer norm before or after the feed-forward network.
    pub norm2: LayerNorm<B>,
    /// Feed-forward network (`fc1`, `fc2`).
    pub mlp: Mlp<B>,
    dropout: Dropout,
    pre_norm: bool,
}

impl TransformerBlockConfig {
    /// Checks the shape parameters.
    pub fn validate(&self) -> Result<()> {
        let m = "transformer block";
        ensure(self.d_model > 0 && self.d_ff > 0, m, "d_model/d_ff", || {
            "must be > 0".into()
        })?;
        ensure(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            m,
            "n_heads",
            || format!("{} must divide d_model {}", self.n_heads, self.d_model),
        )?;
        ensure((0.0..1.0).contains(&self.dropout), m, "dropout", || {
            format!("{} must lie in [0, 1)", self.dropout)
        })
    }

    /// Builds the block.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<TransformerBlock<B>> {
        self.validate()?;
        let d = self.d_model;
        let mut attn = MultiHeadAttentionConfig::new(d, self.n_heads)
            .with_dropout(self.dropout)
            .init(device);
        attn.query = linear(d, d, self.init, true, device);
        attn.key = linear(d, d, self.init, true, device);
        attn.value = linear(d, d, self.init, true, device);
        attn.output = scaled_linear(d, d, self.init, true, self.residual_scale, device);
        let mlp = Mlp::new(d, self.d_ff, self.init, self.residual_scale, device);
        Ok(TransformerBlock {
            norm1: LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            attn,
            norm2: LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            mlp,
            dropout: DropoutConfig::new(self.dropout).init(),
            pre_norm: self.pre_norm,
        })
    }
}

impl<B: Backend> TransformerBlock<B> {
    /// `[batch, seq, d_model] -> [batch, seq, d_model]`; `padding` (`[batch, seq]`, true at
    /// padding) keeps attention off padded positions.
    pub fn forward(&self, x: Tensor<B, 3>, padding: Option<Tensor<B, 2, Bool>>) -> Tensor<B, 3> {
        let attend = |h: Tensor<B, 3>| {
            let input = MhaInput::self_attn(h);
            let input = match padding {
                Some(mask) => input.mask_pad(mask),
                None => input,
            };
            self.dropout.forward(self.attn.forward(input).context)
        };
        if self.pre_norm {
            let x = x.clone() + attend(self.norm1.forward(x));
            x.clone()
                + self
                    .dropout
                    .forward(self.mlp.forward(self.norm2.forward(x)))
        } else {
            let x = self.norm1.forward(x.clone() + attend(x));
            self.norm2
                .forward(x.clone() + self.dropout.forward(self.mlp.forward(x)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    type B = burn::backend::Flex;

    #[test]
    fn shapes_and_padding_isolation() {
        let dev = Default::default();
        let block = TransformerBlockConfig::new(32, 4, 64)
            .init::<B>(&dev)
            .unwrap();
        let x = Tensor::<B, 3>::random([2, 5, 32], Distribution::Normal(0.0, 1.0), &dev);
        assert_eq!(block.forward(x.clone(), None).dims(), [2, 5, 32]);
        // Changing a padded token must not change the others' outputs.
        let pad = Tensor::<B, 2, Bool>::from_data([[false, false, false, true, true]; 2], &dev);
        let a = block.forward(x.clone(), Some(pad.clone()));
        let changed = x
            .clone()
            .slice_assign([0..2, 4..5, 0..32], Tensor::ones([2, 1, 32], &dev) * 9.0);
        let b = block.forward(changed, Some(pad));
        let diff: f32 = (a.slice([0..2, 0..3, 0..32]) - b.slice([0..2, 0..3, 0..32]))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn bad_heads_are_refused() {
        let err = TransformerBlockConfig::new(30, 4, 64)
            .init::<B>(&Default::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("4 must divide d_model 30"),
            "{err}"
        );
    }
}
