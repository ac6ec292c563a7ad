//! Optimizers: burn's Adam and SGD with weight decay applied only to weight matrices and
//! kernels (never to biases or normalization parameters, the 1-D tensors), and LARS, which burn
//! lacks, for large-batch contrastive runs.

use std::collections::HashMap;

use burn::module::{AutodiffModule, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::grad_clipping::GradientClipping;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer, SgdConfig, SimpleOptimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

use crate::grads::split_by_multiplier;
use crate::msgpack::check_bounded;

/// Smallest Adam epsilon accepted for f16 training.
pub const F16_MIN_EPSILON: f32 = 1e-4;

/// Which optimizer, with its hyper-parameters (the learning rate comes from the schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's `AdamW` update.
    AdamW {
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f32,
        /// Denominator epsilon.
        #[serde(default = "epsilon")]
        epsilon: f32,
        /// Decoupled weight decay of matrices and kernels.
        #[serde(default = "weight_decay")]
        weight_decay: f64,
    },
    /// Adam without weight decay.
    Adam {
        /// First-moment decay.
        #[serde(default = "beta1")]
        beta1: f32,
        /// Second-moment decay.
        #[serde(default = "beta2")]
        beta2: f32,
        /// Denominator epsilon.
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
    /// SGD with (Nesterov) momentum and L2 weight decay of matrices and kernels.
    Sgd {
        /// Momentum factor (0 for plain SGD).
        #[serde(default = "momentum")]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
        /// L2 weight decay added to the gradient.
        #[serde(default)]
        weight_decay: f64,
    },
    /// LARS (You et al.): SGD with momentum whose step per weight tensor is scaled by
    /// `trust * ||w|| / ||g + wd w||`; biases and norm parameters are neither decayed nor
    /// adapted (SimCLR's setup).
    Lars {
        /// Momentum factor.
        #[serde(default = "momentum")]
        momentum: f64,
        /// L2 weight decay.
        #[serde(default = "lars_weight_decay")]
        weight_decay: f64,
        /// Trust coefficient.
        #[serde(default = "trust")]
        trust_coefficient: f64,
    },
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn epsilon() -> f32 {
    1e-8
}
fn weight_decay() -> f64 {
    0.05
}
fn momentum() -> f64 {
    0.9
}
fn lars_weight_decay() -> f64 {
    1e-6
}
fn trust() -> f64 {
    1e-3
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::AdamW {
            beta1: beta1(),
            beta2: beta2(),
            epsilon: epsilon(),
            weight_decay: weight_decay(),
        }
    }
}

impl OptimizerConfig {
    /// Checks the hyper-parameters.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} {v} must lie in [0, 1)"))
            }
        };
        // Finite too: an infinite weight decay trained to non-finite weights with exit 0.
        let non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} {v} must be finite and >= 0"))
            }
        };
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} {v} must be finite and > 0"))
            }
        };
        match *self {
            Self::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => {
                unit("beta1", beta1.into())?;
                unit("beta2", beta2.into())?;
                positive("epsilon", epsilon)?;
                non_negative("weight_decay", weight_decay)
            }
            Self::Adam {
                beta1,
                beta2,
                epsilon,
            } => {
                unit("beta1", beta1.into())?;
                unit("beta2", beta2.into())?;
                positive("epsilon", epsilon)
            }
            Self::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                unit("momentum", momentum)?;
                non_negative("weight_decay", weight_decay)
            }
            Self::Lars {
                momentum,
                weight_decay,
                trust_coefficient,
            } => {
                unit("momentum", momentum)?;
                non_negative("weight_decay", weight_decay)?;
                non_negative("trust_coefficient", trust_coefficient)
            }
        }
    }

    /// Why this optimizer cannot train in f16, if it cannot: Adam keeps its moments in the
    /// backend's float type, where an epsilon below f16's smallest normal number (6.1e-5)
    /// rounds to zero and a second moment that underflows then divides by zero.
    pub fn f16_hazard(&self) -> Option<String> {
        match self {
            Self::AdamW { epsilon, .. } | Self::Adam { epsilon, .. }
                if *epsilon < F16_MIN_EPSILON =>
            {
                Some(format!(
                    "{epsilon:e} underflows in f16 (smallest normal 6.1e-5), so Adam's update can \
                     divide by zero; set epsilon >= {F16_MIN_EPSILON:e} for f16 training"
                ))
            }
            _ => None,
        }
    }

    /// Builds the optimizer for module `M`, with burn's per-value gradient clipping when given.
    pub fn build<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        clip_value: Option<f32>,
    ) -> EngineOptimizer<B, M> {
        let adam = |beta1, beta2, epsilon| {
            AdamConfig::new()
                .with_beta_1(beta1)
                .with_beta_2(beta2)
                .with_epsilon(epsilon)
                .build()
        };
        let clip = |mut o: EngineOptimizer<B, M>| {
            if let Some(v) = clip_value {
                o = match o {
                    EngineOptimizer::Adam(a) => {
                        EngineOptimizer::Adam(a.with_grad_clipping(GradientClipping::Value(v)))
                    }
                    EngineOptimizer::Sgd(a) => {
                        EngineOptimizer::Sgd(a.with_grad_clipping(GradientClipping::Value(v)))
                    }
                    EngineOptimizer::Lars(a) => {
                        EngineOptimizer::Lars(a.with_grad_clipping(GradientClipping::Value(v)))
                    }
                };
            }
            o
        };
        clip(match *self {
            Self::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
            } => EngineOptimizer::Adam(OptimizerAdaptor::from(MatrixDecay {
                inner: adam(beta1, beta2, epsilon),
                weight_decay,
                coupled: false,
            })),
            Self::Adam {
                beta1,
                beta2,
                epsilon,
            } => EngineOptimizer::Adam(OptimizerAdaptor::from(MatrixDecay {
                inner: adam(beta1, beta2, epsilon),
                weight_decay: 0.0,
                coupled: false,
            })),
            Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let momentum = (momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                });
                EngineOptimizer::Sgd(OptimizerAdaptor::from(MatrixDecay {
                    inner: SgdConfig::new().with_momentum(momentum).build(),
                    weight_decay,
                    coupled: true,
                }))
            }
            Self::Lars {
                momentum,
                weight_decay,
                trust_coefficient,
            } => EngineOptimizer::Lars(OptimizerAdaptor::from(Lars {
                momentum,
                weight_decay,
                trust_coefficient,
            })),
        })
    }
}

/// Wraps a burn optimizer so weight decay reaches only tensors of rank 2 and more (weight
/// matrices, convolution kernels, embeddings), the usual exclusion of biases and norm scales.
/// Decoupled (`coupled: false`): `w <- w (1 - lr wd)` before the inner step, PyTorch's AdamW.
/// Coupled: `g <- g + wd w`, PyTorch's SGD.
#[derive(Clone)]
pub struct MatrixDecay<O> {
    inner: O,
    weight_decay: f64,
    coupled: bool,
}

impl<B: Backend, O: SimpleOptimizer<B>> SimpleOptimizer<B> for MatrixDecay<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (tensor, grad) = if D >= 2 && self.weight_decay > 0.0 {
            if self.coupled {
                let grad = grad + tensor.clone() * self.weight_decay;
                (tensor, grad)
            } else {
                (tensor * (1.0 - lr * self.weight_decay), grad)
            }
        } else {
            (tensor, grad)
        };
        self.inner.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// LARS optimizer (see [`OptimizerConfig::Lars`]).
#[derive(Clone)]
pub struct Lars {
    momentum: f64,
    weight_decay: f64,
    trust_coefficient: f64,
}

/// Momentum buffer of [`Lars`].
#[derive(Record, Clone)]
pub struct LarsState<B: Backend, const D: usize> {
    velocity: Tensor<B, D>,
}

impl<B: Backend> SimpleOptimizer<B> for Lars {
    type State<const D: usize> = LarsState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let update = if D >= 2 {
            let grad = grad + tensor.clone() * self.weight_decay;
            let w_norm = tensor.clone().powi_scalar(2).sum().sqrt();
            let g_norm = grad.clone().powi_scalar(2).sum().sqrt();
            let usable: Tensor<B, 1, Bool> = w_norm
                .clone()
                .greater_elem(0.0)
                .bool_and(g_norm.clone().greater_elem(0.0));
            let ratio = w_norm * self.trust_coefficient / g_norm.clamp_min(1e-30);
            let trust = ratio.ones_like().mask_where(usable, ratio);
            grad * trust.reshape([1; D])
        } else {
            grad
        };
        let velocity = match state {
            Some(s) => s.velocity * self.momentum + update * lr,
            None => update * lr,
        };
        (tensor - velocity.clone(), Some(LarsState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        LarsState {
            velocity: state.velocity.to_device(device),
        }
    }
}

/// The optimizer the engine drives: one of burn's adaptors, chosen at run time.
pub enum EngineOptimizer<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// AdamW / Adam.
    Adam(OptimizerAdaptor<MatrixDecay<Adam>, M, B>),
    /// SGD.
    Sgd(OptimizerAdaptor<MatrixDecay<burn::optim::Sgd<B::InnerBackend>>, M, B>),
    /// LARS.
    Lars(OptimizerAdaptor<Lars, M, B>),
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> std::fmt::Debug for EngineOptimizer<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Self::Adam(_) => "Adam",
            Self::Sgd(_) => "Sgd",
            Self::Lars(_) => "Lars",
        };
        write!(f, "EngineOptimizer::{kind}")
    }
}

/// The optimizer state's format: named MessagePack. burn's bincode recorder sizes buffers by
/// the lengths a file declares (a damaged or hostile `optimizer.bin` of 10 KB asked for 32 GiB,
/// found by fuzzing) and panics on malformed input; MessagePack through serde allocates no more
/// than the input holds and reports errors, once [`check_bounded`] has refused declared
/// lengths beyond the bytes (some types reserve a declared length whole).
type Bytes = NamedMpkBytesRecorder<FullPrecisionSettings>;

impl<B: AutodiffBackend, M: AutodiffModule<B>> EngineOptimizer<B, M> {
    /// One optimizer step at learning rate `lr`.
    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        match self {
            Self::Adam(o) => o.step(lr, module, grads),
            Self::Sgd(o) => o.step(lr, module, grads),
            Self::Lars(o) => o.step(lr, module, grads),
        }
    }

    /// One step with per-parameter learning-rate multipliers (`lr * multiplier`; unlisted
    /// parameters at `lr`): one burn step per group of equal multiplier, each updating only
    /// the parameters whose gradients it holds.
    pub fn step_with_multipliers(
        &mut self,
        lr: f64,
        mut module: M,
        grads: GradientsParams,
        multipliers: &HashMap<ParamId, f64>,
    ) -> M {
        if multipliers.is_empty() {
            return self.step(lr, module, grads);
        }
        for (multiplier, group) in split_by_multiplier(&module, grads, multipliers) {
            module = self.step(lr * multiplier, module, group);
        }
        module
    }

    /// The optimizer state (moments, momentum buffers) as bytes, in full precision.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let recorder = Bytes::default();
        let bytes = match self {
            Self::Adam(o) => recorder.record(o.to_record(), ()),
            Self::Sgd(o) => recorder.record(o.to_record(), ()),
            Self::Lars(o) => recorder.record(o.to_record(), ()),
        };
        bytes.map_err(|e| e.to_string())
    }

    /// Restores the state written by [`EngineOptimizer::to_bytes`] for the same optimizer kind.
    pub fn load_bytes(self, bytes: Vec<u8>, device: &B::Device) -> Result<Self, String> {
        check_bounded(&bytes).map_err(|e| format!("not a bounded MessagePack value: {e}"))?;
        let recorder = Bytes::default();
        Ok(match self {
            Self::Adam(o) => {
                Self::Adam(o.load_record(recorder.load(bytes, device).map_err(|e| e.to_string())?))
            }
            Self::Sgd(o) => {
                Self::Sgd(o.load_record(recorder.load(bytes, device).map_err(|e| e.to_string())?))
            }
            Self::Lars(o) => {
                Self::Lars(o.load_record(recorder.load(bytes, device).map_err(|e| e.to_string())?))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_or_negative_hyper_parameters_are_refused_by_name() {
        for weight_decay in [f64::INFINITY, f64::NAN, -0.1] {
            let adamw = OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay,
            };
            let err = adamw.validate().unwrap_err();
            assert!(err.starts_with("weight_decay"), "{err}");
            let lars = OptimizerConfig::Lars {
                momentum: 0.9,
                weight_decay,
                trust_coefficient: 0.001,
            };
            assert!(lars.validate().unwrap_err().starts_with("weight_decay"));
        }
        for epsilon in [0.0, f32::INFINITY, f32::NAN] {
            let adam = OptimizerConfig::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon,
            };
            assert!(adam.validate().unwrap_err().starts_with("epsilon"));
        }
        assert_eq!(OptimizerConfig::default().validate(), Ok(()));
    }
}
