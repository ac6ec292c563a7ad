//! LoRA (Hu et al., 2021): a trainable low-rank update `scaling * B(A(x))` beside a frozen
//! linear layer, with `scaling = alpha / rank`. `A` starts Kaiming-uniform and `B` at zero, so a
//! fresh LoRA leaves the layer's output unchanged (the PEFT convention).

use crate::fused::{self, FusedBackend};
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use crate::error::{ModelError, Result, ensure};
use crate::size;

/// Configuration of a [`Lora`] update.
#[derive(Config, Debug)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    #[config(default = 8)]
    pub rank: usize,
    /// `alpha`; the update is scaled by `alpha / rank`.
    #[config(default = 16.0)]
    pub alpha: f64,
    /// Dropout on the LoRA branch's input.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LoraConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        ensure(self.rank > 0, ModelError::config, "LoRA", "rank", || {
            "must be at least 1".into()
        })?;
        ensure(
            self.alpha > 0.0,
            ModelError::config,
            "LoRA",
            "alpha",
            || format!("{} must be > 0", self.alpha),
        )?;
        ensure(
            (0.0..1.0).contains(&self.dropout),
            ModelError::config,
            "LoRA",
            "dropout",
            || format!("{} must lie in [0, 1)", self.dropout),
        )
    }

    /// A LoRA update for a `d_in -> d_out` layer.
    pub fn init<B: FusedBackend>(
        &self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Result<Lora<B>> {
        self.validate()?;
        size::check(
            "LoRA",
            size::product(&[d_in.saturating_add(d_out), self.rank]),
        )?;
        // Kaiming-uniform with a = sqrt(5), as PyTorch's Linear and PEFT: bound 1 / sqrt(fan_in).
        let bound = 1.0 / (d_in as f64).sqrt();
        Ok(Lora {
            a: Param::initialized(
                ParamId::new(),
                Tensor::random(
                    [d_in, self.rank],
                    Distribution::Uniform(-bound, bound),
                    device,
                )
                .require_grad(),
            ),
            b: Param::initialized(
                ParamId::new(),
                Tensor::zeros([self.rank, d_out], device).require_grad(),
            ),
            dropout: DropoutConfig::new(self.dropout).init(),
            scaling: self.alpha / self.rank as f64,
            merged: false,
        })
    }
}

/// The low-rank update of one linear layer.
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// Down-projection `[d_in, rank]` (PEFT's `lora_A`, transposed like burn's `Linear`).
    pub a: Param<Tensor<B, 2>>,
    /// Up-projection `[rank, d_out]` (PEFT's `lora_B`).
    pub b: Param<Tensor<B, 2>>,
    dropout: Dropout,
    scaling: f64,
    merged: bool,
}

impl<B: FusedBackend> Lora<B> {
    /// The update's contribution: `[..., d_in] -> [..., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let x = fused::dropout(x, self.dropout.prob);
        fused::linear(fused::linear(x, self.a.val(), None), self.b.val(), None)
            .mul_scalar(self.scaling)
    }

    /// The update as a dense `[d_in, d_out]` matrix: `scaling * A B`.
    pub fn delta(&self) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scaling)
    }

    /// Rank of the update.
    pub fn rank(&self) -> usize {
        self.a.dims()[1]
    }

    /// Whether the update is currently folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    pub(crate) fn with_merged(mut self, merged: bool) -> Self {
        self.merged = merged;
        self
    }
}
