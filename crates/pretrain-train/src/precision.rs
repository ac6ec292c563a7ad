//! Numeric precision of a run and dynamic loss scaling for f16.
//!
//! The float type is a property of the backend type the caller picks (e.g. a wgpu or CUDA
//! backend built on `half::f16` or `bf16`); the engine checks the requested precision against
//! it and, for f16, scales the loss so small gradients do not underflow: scale up by 2 after
//! `growth_interval` clean steps, halve and skip the step when gradients overflow (PyTorch's
//! `GradScaler` policy).

use burn::tensor::DType;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use pretrain_data::Named;

pretrain_data::named_enum! {
    /// Float precision of the training computation, named `f32`, `bf16`, `f16` ([`Named`]).
    #[derive(Default)]
    pub enum Precision {
        /// 32-bit floats (every backend).
        #[default]
        F32,
        /// bfloat16 (wgpu/CUDA backends built for it); no loss scaling needed.
        Bf16,
        /// float16 (wgpu/CUDA backends built for it) with dynamic loss scaling.
        F16,
    }
}

impl Precision {
    /// The backend float type this precision needs.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// Refuses a backend whose float type is not this precision's, saying what to do.
    pub fn check_backend(self, backend_dtype: DType) -> Result<(), String> {
        if backend_dtype == self.dtype() {
            return Ok(());
        }
        Err(format!(
            "{self:?} was requested but the backend computes in {backend_dtype:?}; mixed precision \
             needs a backend built for that float type (wgpu or CUDA on half::f16 / bf16), the CPU \
             backends compute in f32"
        ))
    }
}

/// Dynamic loss scale state, saved with checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// Current scale.
    pub scale: f64,
    /// Clean steps since the last change.
    pub clean_steps: usize,
    /// Clean steps before the scale doubles.
    pub growth_interval: usize,
}

impl LossScaler {
    /// PyTorch's defaults: 2^16, doubling after 2000 clean steps.
    pub fn new() -> Self {
        Self {
            scale: 65536.0,
            clean_steps: 0,
            growth_interval: 2000,
        }
    }

    /// Records a step whose gradients were finite.
    pub fn clean_step(&mut self) {
        self.clean_steps += 1;
        if self.clean_steps >= self.growth_interval {
            self.scale *= 2.0;
            self.clean_steps = 0;
        }
    }

    /// Records an overflow: halves the scale. Returns false once the scale has fallen below 1,
    /// when the overflow cannot be blamed on scaling any more.
    pub fn overflow(&mut self) -> bool {
        self.scale /= 2.0;
        self.clean_steps = 0;
        self.scale >= 1.0
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_grows_and_backs_off() {
        let mut s = LossScaler {
            growth_interval: 2,
            ..LossScaler::new()
        };
        s.clean_step();
        s.clean_step();
        assert_eq!(s.scale, 131072.0);
        assert!(s.overflow());
        assert_eq!((s.scale, s.clean_steps), (65536.0, 0));
        let mut tiny = LossScaler {
            scale: 1.0,
            ..LossScaler::new()
        };
        assert!(!tiny.overflow());
        assert!(Precision::F32.check_backend(DType::F32).is_ok());
        let err = Precision::F16.check_backend(DType::F32).unwrap_err();
        assert!(err.contains("F16") && err.contains("CPU"), "{err}");
    }

    #[test]
    fn f16_refuses_an_adam_epsilon_that_underflows() {
        use crate::optimizer::OptimizerConfig;
        use crate::trainer::TrainConfig;
        let f16 = TrainConfig {
            precision: Precision::F16,
            ..TrainConfig::default()
        };
        let err = f16.validate().unwrap_err().to_string();
        assert!(err.contains("epsilon") && err.contains("1e-4"), "{err}");
        let safe = TrainConfig {
            optimizer: OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-4,
                weight_decay: 0.05,
            },
            ..f16.clone()
        };
        assert!(safe.validate().is_ok());
        let sgd = TrainConfig {
            optimizer: OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
            ..f16
        };
        assert!(sgd.validate().is_ok());
        assert!(TrainConfig::default().validate().is_ok());
    }
}
