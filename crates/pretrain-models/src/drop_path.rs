//! Stochastic depth ("drop path", Huang et al., 2016): during training each sample's residual
//! branch is dropped with probability `prob` and the kept ones scaled by `1 / (1 - prob)`.

use crate::fused::FusedBackend;
use burn::module::Module;
use burn::tensor::{Distribution, Tensor};

/// The stochastic-depth rate of each of `blocks` blocks: rising linearly from 0 at the first
/// to `max_rate` at the last (timm's and BEiT's schedule).
pub fn linear_drop_path_rates(max_rate: f64, blocks: usize) -> Vec<f64> {
    let last = blocks.saturating_sub(1).max(1) as f64;
    (0..blocks).map(|i| max_rate * i as f64 / last).collect()
}

/// Per-sample residual-branch dropout; the identity outside autodiff (evaluation) or at 0.
#[derive(Module, Clone, Debug, Default)]
pub struct DropPath {
    prob: f64,
}

impl DropPath {
    /// Drops a branch with probability `prob`, clamped to `[0, 1)`.
    pub fn new(prob: f64) -> Self {
        Self {
            prob: prob.clamp(0.0, 0.999),
        }
    }

    /// The drop probability.
    pub fn prob(&self) -> f64 {
        self.prob
    }

    /// `[batch, ...] -> [batch, ...]`.
    pub fn forward<B: FusedBackend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if self.prob == 0.0 || !B::ad_enabled(&x.device()) {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mut shape = [1; D];
        shape[0] = x.dims()[0];
        let mask = Tensor::<B, D>::random(shape, Distribution::Bernoulli(keep), &x.device());
        x * mask.div_scalar(keep)
    }
}
