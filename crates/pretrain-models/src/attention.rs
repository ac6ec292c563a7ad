//! Multi-head self-attention whose four projections are [`Projection`]s, so LoRA can be added
//! to any of them. Weight names match burn's `MultiHeadAttention` (`query`, `key`, `value`,
//! `output`).

use crate::fused::{self, FusedBackend};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::init::InitScheme;
use crate::projection::Projection;

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
        let heads =
            |projection: &Projection<B>| split_heads(projection.forward(x.clone()), self.n_heads);
        let context = fused::attention(
            heads(&self.query),
            heads(&self.key),
            heads(&self.value),
            padding,
            None,
            self.dropout.prob,
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
