//! Multi-head self-attention whose four projections are [`Projection`]s, so LoRA can be added
//! to any of them. Weight names match burn's `MultiHeadAttention` (`query`, `key`, `value`,
//! `output`).

use crate::fused::FusedBackend;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::init::InitScheme;
use crate::projection::Projection;

/// Score given to padded keys before the softmax; finite (as burn's `MultiHeadAttention`) so a
/// row never becomes all `-inf`.
const MASKED_SCORE: f32 = -1.0e4;

/// Multi-head scaled dot-product self-attention.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    /// `d_model -> d_model`.
    pub query: Projection<B>,
    /// `d_model -> d_model`.
    pub key: Projection<B>,
    /// `d_model -> d_model`.
    pub value: Projection<B>,
    /// `d_model -> d_model`, writing into the residual stream.
    pub output: Projection<B>,
    dropout: Dropout,
    n_heads: usize,
}

impl<B: FusedBackend> SelfAttention<B> {
    /// Projections initialized by `init`, the output one scaled by `residual_scale`; dropout on
    /// the attention weights. `n_heads` must divide `d_model` (checked by the block config).
    pub fn new(
        d_model: usize,
        n_heads: usize,
        dropout: f64,
        init: InitScheme,
        residual_scale: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            query: Projection::new(d_model, d_model, init, 1.0, device),
            key: Projection::new(d_model, d_model, init, 1.0, device),
            value: Projection::new(d_model, d_model, init, 1.0, device),
            output: Projection::new(d_model, d_model, init, residual_scale, device),
            dropout: DropoutConfig::new(dropout).init(),
            n_heads,
        }
    }

    /// Number of heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// `[batch, seq, d_model] -> [batch, seq, d_model]`; `padding` (`[batch, seq]`, true at
    /// padding) keeps attention off padded keys.
    pub fn forward(&self, x: Tensor<B, 3>, padding: Option<Tensor<B, 2, Bool>>) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let heads =
            |projection: &Projection<B>| split_heads(projection.forward(x.clone()), self.n_heads);
        let masked = padding.map(|padding| padding.reshape([batch, 1, 1, seq]));
        let context = attend(
            heads(&self.query),
            heads(&self.key),
            heads(&self.value),
            masked,
            &self.dropout,
        );
        self.output.forward(context)
    }
}

/// `[batch, seq, heads * d_head] -> [batch, heads, seq, d_head]`.
pub(crate) fn split_heads<B: FusedBackend>(x: Tensor<B, 3>, n_heads: usize) -> Tensor<B, 4> {
    let [batch, seq, d_model] = x.dims();
    x.reshape([batch, seq, n_heads, d_model / n_heads])
        .swap_dims(1, 2)
}

/// Scaled dot-product attention of queries `[batch, heads, seq, d_head]` over keys and values
/// `[batch, heads, keys, d_head]`, with scores set to [`MASKED_SCORE`] where `masked`
/// (broadcast to `[batch, heads, seq, keys]`) is true and `dropout` on the weights; returns the
/// heads merged, `[batch, seq, heads * d_head]`.
pub(crate) fn attend<B: FusedBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    masked: Option<Tensor<B, 4, Bool>>,
    dropout: &Dropout,
) -> Tensor<B, 3> {
    let [batch, heads, seq, d_head] = q.dims();
    let mut scores = q.matmul(k.transpose()).div_scalar((d_head as f32).sqrt()); // [batch, heads, seq, keys]
    if let Some(masked) = masked {
        scores = scores.mask_fill(masked, MASKED_SCORE);
    }
    let weights = dropout.forward(softmax(scores, 3));
    weights
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, seq, heads * d_head])
}
