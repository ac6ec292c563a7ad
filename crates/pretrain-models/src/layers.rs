//! Small building blocks shared by the models: initialized linear layers and the transformer
//! feed-forward network.

use crate::fused::{FusedBackend, gelu};
use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::init::InitScheme;
use crate::projection::Projection;

/// The widths of a stack of linear layers: `input`, each of `hidden`, then `output`.
pub(crate) fn stack_widths(input: usize, hidden: &[usize], output: usize) -> Vec<usize> {
    std::iter::once(input)
        .chain(hidden.iter().copied())
        .chain(std::iter::once(output))
        .collect()
}

/// A linear layer `d_in -> d_out` whose weight follows `init` and whose bias starts at zero.
pub fn linear<B: FusedBackend>(
    d_in: usize,
    d_out: usize,
    init: InitScheme,
    bias: bool,
    device: &B::Device,
) -> Linear<B> {
    scaled_linear(d_in, d_out, init, bias, 1.0, device)
}

/// [`linear`] with the initial weight multiplied by `scale` (GPT-2's residual-output scaling).
pub fn scaled_linear<B: FusedBackend>(
    d_in: usize,
    d_out: usize,
    init: InitScheme,
    bias: bool,
    scale: f64,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
    layer.weight = Param::initialized(
        ParamId::new(),
        init.sample(d_in, d_out, device)
            .mul_scalar(scale)
            .require_grad(),
    );
    if bias {
        layer.bias = Some(Param::initialized(
            ParamId::new(),
            Tensor::zeros([d_out], device).require_grad(),
        ));
    }
    layer
}

/// The transformer feed-forward network: `fc2(gelu(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `d_model -> d_ff`.
    pub fc1: Projection<B>,
    /// `d_ff -> d_model`.
    pub fc2: Projection<B>,
}

impl<B: FusedBackend> Mlp<B> {
    /// Builds the two layers with `init`, the second scaled by `residual_scale`.
    pub fn new(
        d_model: usize,
        d_ff: usize,
        init: InitScheme,
        residual_scale: f64,
        device: &B::Device,
    ) -> Self {
        Self {
            fc1: Projection::new(d_model, d_ff, init, 1.0, device),
            fc2: Projection::new(d_ff, d_model, init, residual_scale, device),
        }
    }

    /// `[..., d_model] -> [..., d_model]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}
