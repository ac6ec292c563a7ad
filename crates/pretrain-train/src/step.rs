//! One optimizer step of the engine, shared by the training loop, the benchmarks and any
//! caller that drives its own loop (data-parallel workers): forward and backward over the
//! micro-batches of gradient accumulation, dynamic loss scaling, the non-finite and loss-spike
//! guard, clipping, the optimizer update with per-parameter learning-rate multipliers, and the
//! objective's after-step hook (EMA targets, queues).

use pretrain_models::FusedAutodiffBackend;
use std::collections::HashMap;

use burn::module::ParamId;
use burn::optim::{GradientsAccumulator, GradientsParams};
use pretrain_objectives::{Metrics, Objective, TrainProgress};

use crate::checkpoint::TrainState;
use crate::error::Result;
use crate::grads::{clip_global_norm, global_grad_norm, scale_grads};
use crate::optimizer::EngineOptimizer;
use crate::parallel::DataParallel;
use crate::precision::{LossScaler, Precision};
use crate::schedule::scaled_lr;
use crate::trainer::TrainConfig;

/// Losses of applied steps the spike guard compares with.
const SPIKE_WINDOW: usize = 20;
/// Applied steps the guard waits for before it judges.
const SPIKE_MIN_HISTORY: usize = 5;

/// What became of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// The update was applied.
    Applied,
    /// f16 gradients overflowed: the loss scale was halved and the step skipped (expected now
    /// and then; not a bad step).
    Overflow,
    /// Non-finite loss or gradient, or a loss spike: the step was skipped and counts as bad.
    Bad,
}

/// What one step measured.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Mean loss over the micro-batches.
    pub loss: f64,
    /// Learning rate of the step (before per-parameter multipliers).
    pub lr: f64,
    /// Global gradient norm (unscaled, before clipping).
    pub grad_norm: f64,
    /// The objective's metrics, averaged over the micro-batches (`loss` included).
    pub metrics: Metrics,
    /// Applied, skipped for an overflow, or bad.
    pub kind: StepKind,
    /// Seconds this worker spent all-reducing gradients and metrics (data-parallel runs;
    /// `None` alone), waiting for the slowest worker included.
    pub sync_seconds: Option<f64>,
}

/// Takes optimizer steps of an objective `O` as configured by a [`TrainConfig`].
pub struct Stepper<B: FusedAutodiffBackend, O: Objective<B>> {
    config: TrainConfig,
    optimizer: EngineOptimizer<B, O>,
    peak_lr: f64,
    lr_multipliers: HashMap<ParamId, f64>,
    parallel: Option<(DataParallel, B::Device)>,
}

impl<B: FusedAutodiffBackend, O: Objective<B>> Stepper<B, O> {
    /// A stepper for `objective` with `optimizer` (fresh from `config.optimizer.build`, or
    /// restored from a checkpoint).
    pub fn new(config: &TrainConfig, objective: &O, optimizer: EngineOptimizer<B, O>) -> Self {
        Self {
            peak_lr: scaled_lr(
                config.lr,
                config.effective_batch(),
                config.lr_reference_batch,
            ),
            lr_multipliers: objective.lr_multipliers().into_iter().collect(),
            config: config.clone(),
            optimizer,
            parallel: None,
        }
    }

    /// Makes this stepper one worker of a data-parallel run: gradients and metrics are
    /// averaged over the workers (on `device`) before the guard, clipping and the update, so
    /// every worker takes the same decisions and the same step.
    pub fn data_parallel(mut self, parallel: DataParallel, device: &B::Device) -> Self {
        self.parallel = Some((parallel, device.clone()));
        self
    }

    /// The optimizer, for checkpoints.
    pub fn optimizer(&self) -> &EngineOptimizer<B, O> {
        &self.optimizer
    }

    /// The state a run starts from: step 0, and a loss scaler for f16.
    pub fn initial_state(&self, objective_config: serde_json::Value) -> TrainState {
        TrainState {
            step: 0,
            skipped_steps: 0,
            objective_config,
            loss_scaler: (self.config.precision == Precision::F16).then(LossScaler::new),
            recent_losses: Vec::new(),
        }
    }

    /// Takes optimizer step `state.step` over `config.accumulation` micro-batches drawn from
    /// `next_batch`, and advances `state` (step, skipped steps, loss scale, recent losses).
    pub fn step(
        &mut self,
        mut objective: O,
        state: &mut TrainState,
        mut next_batch: impl FnMut() -> Result<O::Batch>,
    ) -> Result<(O, StepReport)> {
        let config = &self.config;
        let step = state.step;
        let accumulation = config.accumulation;
        let lr = config.schedule.lr(self.peak_lr, step, config.steps);
        let mut accumulator = GradientsAccumulator::<O>::new();
        let mut metrics = Metrics::default();
        let mut carry = None;
        for _ in 0..accumulation {
            let out = match &self.parallel {
                Some((parallel, _)) => {
                    objective.forward_step_parallel(next_batch()?, parallel.collective())?
                }
                None => objective.forward_step(next_batch()?)?,
            };
            for (name, value) in out.metrics.iter() {
                let sum = metrics.get(name).unwrap_or(0.0) + value / accumulation as f64;
                metrics.push(name, sum);
            }
            let scale = state.loss_scaler.map_or(1.0, |s| s.scale);
            let grads = (out.loss * (scale / accumulation as f64)).backward();
            accumulator.accumulate(&objective, GradientsParams::from_grads(grads, &objective));
            carry = Some(out.carry);
        }
        let mut grads = accumulator.grads();
        let mut sync_seconds = None;
        if let Some((parallel, device)) = &self.parallel {
            let started = std::time::Instant::now();
            grads = parallel.mean_grads(&objective, grads)?;
            metrics = parallel
                .collective()
                .mean_metrics::<B::InnerBackend>(metrics, device)?;
            sync_seconds = Some(started.elapsed().as_secs_f64());
        }
        let loss = metrics.get("loss").unwrap_or(0.0);
        let mut grad_norm = global_grad_norm(&objective, &grads);
        let mut overflow = false;
        if let Some(scaler) = state.loss_scaler.as_mut() {
            if grad_norm.is_finite() {
                grads = scale_grads(&objective, grads, 1.0 / scaler.scale);
                grad_norm /= scaler.scale;
                scaler.clean_step();
            } else {
                // Only counted as a bad step once the scale cannot explain it.
                overflow = loss.is_finite() && scaler.overflow();
            }
        }
        let spike = config
            .loss_spike_factor
            .is_some_and(|factor| is_spike(loss, &state.recent_losses, factor));
        let kind = if overflow {
            StepKind::Overflow
        } else if loss.is_finite() && grad_norm.is_finite() && !spike {
            StepKind::Applied
        } else {
            StepKind::Bad
        };
        match kind {
            StepKind::Applied => {
                remember_loss(&mut state.recent_losses, loss);
                let grads = match config.clip_grad_norm {
                    Some(max) => clip_global_norm(&objective, grads, grad_norm, max),
                    None => grads,
                };
                objective = self.optimizer.step_with_multipliers(
                    lr,
                    objective,
                    grads,
                    &self.lr_multipliers,
                );
                let progress = TrainProgress {
                    step: step + 1,
                    total_steps: config.steps,
                };
                objective =
                    objective.after_optimizer_step(carry.expect("accumulation >= 1"), progress);
            }
            StepKind::Overflow => {
                state.skipped_steps += 1;
                tracing::info!(
                    step,
                    "f16 gradient overflow: loss scale halved, step skipped"
                );
            }
            StepKind::Bad => {
                state.skipped_steps += 1;
                tracing::warn!(
                    step,
                    loss,
                    grad_norm,
                    spike,
                    "non-finite or spiking loss, or non-finite gradient: step skipped"
                );
            }
        }
        state.step += 1;
        Ok((
            objective,
            StepReport {
                loss,
                lr,
                grad_norm,
                metrics,
                kind,
                sync_seconds,
            },
        ))
    }
}

/// Whether `loss` spikes above the mean of `recent` losses by more than `factor` times its
/// magnitude (a relative bar, so it also works for losses that are negative or near zero).
fn is_spike(loss: f64, recent: &[f64], factor: f64) -> bool {
    if recent.len() < SPIKE_MIN_HISTORY || !loss.is_finite() {
        return false;
    }
    let mean = recent.iter().sum::<f64>() / recent.len() as f64;
    loss > mean + factor * mean.abs().max(1e-3)
}

fn remember_loss(recent: &mut Vec<f64>, loss: f64) {
    if recent.len() == SPIKE_WINDOW {
        recent.remove(0);
    }
    recent.push(loss);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_far_above_the_recent_mean_is_a_spike_once_history_exists() {
        let mut recent = Vec::new();
        for loss in [5.0, 4.9, 4.8, 4.9] {
            assert!(!is_spike(1.8e9, &recent, 10.0), "judged without history");
            remember_loss(&mut recent, loss);
        }
        remember_loss(&mut recent, 5.0);
        assert!(is_spike(1.8e9, &recent, 10.0));
        assert!(is_spike(60.0, &recent, 10.0));
        assert!(!is_spike(50.0, &recent, 10.0));
        // Negative losses (BYOL, SimSiam) are judged by magnitude.
        let negative = vec![-0.9; 5];
        assert!(!is_spike(0.9, &negative, 10.0));
        assert!(is_spike(20.0, &negative, 10.0));
        for step in 0..100 {
            remember_loss(&mut recent, f64::from(step));
        }
        assert_eq!(recent.len(), SPIKE_WINDOW);
        assert_eq!(recent[0], 80.0);
    }
}
