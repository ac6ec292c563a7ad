//! The contract between objectives and the training engine.

use burn::module::{AutodiffModule, Module, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use pretrain_models::{FusedAutodiffBackend, FusedBackend};

use crate::collective::Collective;
use crate::error::Result;

/// Named scalar metrics of one step, in the order the objective reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(Vec<(&'static str, f64)>);

impl Metrics {
    /// Adds (or replaces) `name`.
    pub fn push(&mut self, name: &'static str, value: f64) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Adds the value of a one-element tensor (synchronizes with the device).
    pub fn push_tensor<B: FusedBackend>(&mut self, name: &'static str, value: Tensor<B, 1>) {
        self.push(name, value.into_scalar().elem::<f64>());
    }

    /// The value of `name`, if reported.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// `(name, value)` pairs in report order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.0.iter().copied()
    }
}

/// Where training stands when the engine calls [`Objective::after_optimizer_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainProgress {
    /// Optimizer steps completed, the one just taken included (1 after the first step).
    pub step: usize,
    /// Optimizer steps the run will take.
    pub total_steps: usize,
}

impl TrainProgress {
    /// Completed share of the run in `[0, 1]`.
    pub fn fraction(&self) -> f64 {
        if self.total_steps == 0 {
            1.0
        } else {
            (self.step as f64 / self.total_steps as f64).min(1.0)
        }
    }
}

/// What an objective returns for one batch.
#[derive(Debug)]
pub struct StepOutput<B: Backend, C> {
    /// Scalar loss to minimize, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Named metrics, the loss included; collapse monitors among them.
    pub metrics: Metrics,
    /// State the objective needs back after the optimizer step (e.g. MoCo's keys).
    pub carry: C,
}

/// A self-supervised objective: a module holding the model(s) it trains that turns an unlabeled
/// batch into a loss and metrics.
///
/// The engine runs, per step: `forward_step`, backward, the optimizer step on the whole module
/// (parameters that received no gradient, such as momentum targets and queues, are left alone),
/// then `after_optimizer_step`, where target networks and queues are updated.
pub trait Objective<B: FusedAutodiffBackend>: AutodiffModule<B> {
    /// The batch type, from one of `pretrain-data`'s batchers.
    type Batch;
    /// What `forward_step` hands to `after_optimizer_step`; `()` for most objectives.
    type Carry;
    /// The part kept for fine-tuning.
    type Encoder: Module<B>;

    /// Loss and metrics of one batch; an error when the batch lacks what the objective needs.
    fn forward_step(&self, batch: Self::Batch) -> Result<StepOutput<B, Self::Carry>>;

    /// Loss and metrics of one worker's slice of a data-parallel global batch. Objectives whose
    /// loss couples the samples of a batch (contrastive negatives, batch statistics) gather
    /// the global batch's embeddings through `collective` and compute its loss (see
    /// [`Collective::global_step`]); the default is [`Objective::forward_step`], right for
    /// losses that average over samples (each worker's slice is equal, and the engine averages
    /// the workers' gradients and metrics).
    fn forward_step_parallel(
        &self,
        batch: Self::Batch,
        collective: &Collective,
    ) -> Result<StepOutput<B, Self::Carry>> {
        let _ = collective;
        self.forward_step(batch)
    }

    /// Updates after the optimizer step (EMA targets, queues); identity by default.
    fn after_optimizer_step(self, carry: Self::Carry, progress: TrainProgress) -> Self
    where
        Self: Sized,
    {
        let _ = (carry, progress);
        self
    }

    /// The encoder being pre-trained.
    fn encoder(&self) -> &Self::Encoder;

    /// Learning-rate multipliers per parameter (layer-wise decay when fine-tuning, like
    /// PyTorch's parameter groups); unlisted parameters, and all of them when the list is empty
    /// (the default), train at the scheduled rate.
    fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        Vec::new()
    }
}
