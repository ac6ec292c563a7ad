//! The linear layer of transformer blocks: burn's `Linear` layout (`weight: [d_in, d_out]`,
//! `bias: [d_out]`) plus an optional [`Lora`] update, so fine-tuning can add, merge and remove
//! LoRA without changing the base weights' names.

use crate::fused::{self, FusedBackend};
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::Result;
use crate::init::InitScheme;
use crate::layers::scaled_linear;
use crate::lora::{Lora, LoraConfig};

/// A linear layer that can carry a LoRA update.
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// `[d_in, d_out]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Low-rank update, when LoRA was added.
    pub lora: Option<Lora<B>>,
}

impl<B: FusedBackend> From<Linear<B>> for Projection<B> {
    fn from(linear: Linear<B>) -> Self {
        Self {
            weight: linear.weight,
            bias: linear.bias,
            lora: None,
        }
    }
}

impl<B: FusedBackend> Projection<B> {
    /// A layer initialized by `init`, its weight multiplied by `scale`, bias zero.
    pub fn new(
        d_in: usize,
        d_out: usize,
        init: InitScheme,
        scale: f64,
        device: &B::Device,
    ) -> Self {
        scaled_linear(d_in, d_out, init, true, scale, device).into()
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.weight.dims()[1]
    }

    /// `[..., d_in] -> [..., d_out]`: the base layer plus the LoRA update unless it is merged.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let bias = self.bias.as_ref().map(|b| b.val());
        match &self.lora {
            Some(lora) if !lora.is_merged() => {
                fused::linear(x.clone(), self.weight.val(), bias) + lora.forward(x)
            }
            _ => fused::linear(x, self.weight.val(), bias),
        }
    }

    /// Adds a fresh LoRA update (replacing any previous one).
    pub fn add_lora(&mut self, config: &LoraConfig, device: &B::Device) -> Result<()> {
        self.lora = Some(config.init(self.d_in(), self.d_out(), device)?);
        Ok(())
    }

    /// Folds the LoRA update into the weight (`W + scaling A B`); the update is kept, marked
    /// merged, so [`Projection::unmerge_lora`] can take it out again. No-op without LoRA or
    /// when already merged.
    pub fn merge_lora(&mut self) {
        self.fold(true);
    }

    /// Takes a merged LoRA update back out of the weight. No-op unless merged.
    pub fn unmerge_lora(&mut self) {
        self.fold(false);
    }

    /// Merges the update and drops it: a plain layer with the base weight names, for export.
    pub fn drop_lora_merged(&mut self) {
        self.merge_lora();
        self.lora = None;
    }

    fn fold(&mut self, merge: bool) {
        let Some(lora) = self.lora.take() else {
            return;
        };
        if lora.is_merged() != merge {
            let delta = lora.delta().detach();
            self.weight = self.weight.clone().map(|w| {
                let tracked = w.is_require_grad();
                let w = if merge { w + delta } else { w - delta }.detach();
                if tracked { w.require_grad() } else { w }
            });
        }
        self.lora = Some(lora.with_merged(merge));
    }
}
