//! Layer normalization through the fused operation ([`crate::fused::layer_norm`]), with burn's
//! `LayerNorm` parameters and names (`gamma`, `beta`), so checkpoints and Hugging Face names do
//! not change. burn's module keeps its epsilon private, so it cannot call the fused operation.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::fused::{FusedBackend, layer_norm};

/// Checks the layer-norm epsilon of `model`: finite and > 0 (a negative one makes
/// `sqrt(var + epsilon)` NaN on rows of small variance: a checkpoint imported with one gave
/// NaN outputs).
pub(crate) fn check_epsilon(model: &'static str, epsilon: f64) -> crate::error::Result<()> {
    crate::error::ensure(
        epsilon.is_finite() && epsilon > 0.0,
        crate::error::ModelError::config,
        model,
        "norm_eps",
        || format!("{epsilon} must be finite and > 0"),
    )
}

/// `1 / sqrt(x)`, element-wise, correctly rounded: a division, not burn's `recip`, which
/// burn-ndarray computes with the CPU's approximate reciprocal (`rcpps`: 1.5 * 2^-12 relative
/// error on AVX2, 2^-14 with AVX-512), measured as a 1.8e-4 error in a layer-norm gradient.
pub(crate) fn inverse_sqrt<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let root = x.sqrt();
    root.ones_like() / root
}

/// Configuration of a [`LayerNorm`] (burn's `LayerNormConfig` fields and defaults).
#[derive(Config, Debug)]
pub struct LayerNormConfig {
    /// Width of the normalized (last) dimension.
    pub d_model: usize,
    /// Added to the variance before the square root.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Whether the norm has the learned shift `beta`.
    #[config(default = true)]
    pub bias: bool,
}

impl LayerNormConfig {
    /// `gamma` ones, `beta` zeros.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LayerNorm<B> {
        LayerNorm {
            gamma: Initializer::Ones.init([self.d_model], device),
            beta: self
                .bias
                .then(|| Initializer::Zeros.init([self.d_model], device)),
            epsilon: self.epsilon,
        }
    }
}

/// Layer normalization over the last dimension: `(x - mean) / sqrt(var + epsilon) * gamma + beta`.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale `[d_model]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift `[d_model]`, when configured.
    pub beta: Option<Param<Tensor<B, 1>>>,
    /// Added to the variance before the square root.
    pub epsilon: f64,
}

impl<B: FusedBackend> LayerNorm<B> {
    /// `[..., d_model] -> [..., d_model]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        layer_norm(
            x,
            self.gamma.val(),
            self.beta.as_ref().map(|beta| beta.val()),
            self.epsilon,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use crate::init::init_seeded;
    use crate::testing::TestBackend as B;
    use burn::tensor::Distribution;

    #[test]
    fn equals_burns_layer_norm_with_and_without_bias() {
        let dev = Default::default();
        let x = host_random::<B, 3>([2, 5, 12], Distribution::Normal(1.0, 2.0), 1, &dev);
        for bias in [true, false] {
            let ours = init_seeded(&dev, 1001, || {
                LayerNormConfig::new(12)
                    .with_epsilon(1e-6)
                    .with_bias(bias)
                    .init::<B>(&dev)
            });
            let burns = init_seeded(&dev, 1002, || {
                burn::nn::LayerNormConfig::new(12)
                    .with_epsilon(1e-6)
                    .with_bias(bias)
                    .init::<B>(&dev)
            });
            let err = (ours.forward(x.clone()) - burns.forward(x.clone()))
                .abs()
                .max()
                .into_scalar();
            assert!(err < 1e-5, "{err}");
            assert_eq!(ours.num_params(), burns.num_params());
        }
    }
}
