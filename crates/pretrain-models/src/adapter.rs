//! Bottleneck adapters (Houlsby et al., 2019): `x + up(gelu(down(x)))` inserted after a
//! transformer sublayer. The up-projection starts at zero, so a fresh adapter is the identity
//! and fine-tuning starts from the pre-trained function.

use crate::fused::{self, FusedBackend, gelu};
use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{ModelError, Result, ensure};
use crate::init::InitScheme;
use crate::layers::linear;
use crate::size;

/// Configuration of an [`Adapter`].
#[derive(Config, Debug)]
pub struct AdapterConfig {
    /// Bottleneck width.
    #[config(default = 64)]
    pub bottleneck: usize,
    /// Initialization of the down-projection.
    #[config(default = "InitScheme::BERT")]
    pub init: InitScheme,
}

impl AdapterConfig {
    /// Parameters of an adapter for `d_model`-wide tokens.
    pub fn num_params(&self, d_model: usize) -> u128 {
        size::sum([
            size::linear(d_model, self.bottleneck, true),
            size::linear(self.bottleneck, d_model, true),
        ])
    }

    /// An adapter for `d_model`-wide tokens.
    pub fn init<B: FusedBackend>(&self, d_model: usize, device: &B::Device) -> Result<Adapter<B>> {
        ensure(
            self.bottleneck > 0,
            ModelError::config,
            "adapter",
            "bottleneck",
            || "must be at least 1".into(),
        )?;
        size::check("adapter", self.num_params(d_model))?;
        Ok(Adapter {
            down: linear(d_model, self.bottleneck, self.init, true, device),
            up: linear(self.bottleneck, d_model, InitScheme::Zeros, true, device),
        })
    }
}

/// A residual bottleneck adapter.
#[derive(Module, Debug)]
pub struct Adapter<B: Backend> {
    /// `d_model -> bottleneck`.
    pub down: Linear<B>,
    /// `bottleneck -> d_model`, zero at init.
    pub up: Linear<B>,
}

impl<B: FusedBackend> Adapter<B> {
    /// `[..., d_model] -> [..., d_model]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        x.clone() + fused::linear_module(&self.up, gelu(fused::linear_module(&self.down, x)))
    }
}
