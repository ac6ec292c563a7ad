//! Learning-rate schedules as pure functions of the step, so a resumed run continues exactly
//! (burn's schedulers are stateful iterators, and its composed scheduler multiplies schedules
//! instead of chaining warmup and decay).

use serde::{Deserialize, Serialize};

/// How the learning rate evolves over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Linear warmup from 0 over `warmup_steps`, then cosine decay to `min_lr_ratio * lr`.
    WarmupCosine {
        /// Steps of linear warmup.
        warmup_steps: usize,
        /// Final learning rate as a share of the peak.
        #[serde(default)]
        min_lr_ratio: f64,
    },
    /// The same learning rate throughout (after an optional warmup).
    Constant {
        /// Steps of linear warmup.
        #[serde(default)]
        warmup_steps: usize,
    },
    /// Multiplied by `gamma` every `step_size` steps.
    Step {
        /// Steps between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f64,
    },
}

impl Default for LrSchedule {
    fn default() -> Self {
        Self::WarmupCosine {
            warmup_steps: 0,
            min_lr_ratio: 0.0,
        }
    }
}

impl LrSchedule {
    /// Learning rate of step `step` (0-based) of `total` steps with peak `lr`.
    pub fn lr(&self, lr: f64, step: usize, total: usize) -> f64 {
        let warmup = |w: usize| {
            if step < w {
                (step + 1) as f64 / w as f64
            } else {
                1.0
            }
        };
        match *self {
            Self::WarmupCosine {
                warmup_steps,
                min_lr_ratio,
            } => {
                if step < warmup_steps {
                    return lr * warmup(warmup_steps);
                }
                let span = total.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let cosine = (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0;
                lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
            }
            Self::Constant { warmup_steps } => lr * warmup(warmup_steps),
            Self::Step { step_size, gamma } => lr * gamma.powi((step / step_size.max(1)) as i32),
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::WarmupCosine { min_lr_ratio, .. } if !(0.0..=1.0).contains(&min_lr_ratio) => {
                Err(format!("min_lr_ratio {min_lr_ratio} must lie in [0, 1]"))
            }
            Self::Step { step_size: 0, .. } => Err("step_size must be > 0".into()),
            Self::Step { gamma, .. } if !(gamma.is_finite() && gamma > 0.0) => {
                Err(format!("gamma {gamma} must be finite and > 0"))
            }
            _ => Ok(()),
        }
    }
}

/// The peak learning rate: `base_lr`, or with `reference_batch` set, MAE's linear scaling rule
/// `base_lr * effective_batch / reference_batch` (MAE: 256).
pub fn scaled_lr(base_lr: f64, effective_batch: usize, reference_batch: Option<usize>) -> f64 {
    match reference_batch {
        Some(reference) if reference > 0 => base_lr * effective_batch as f64 / reference as f64,
        _ => base_lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule::WarmupCosine {
            warmup_steps: 10,
            min_lr_ratio: 0.1,
        };
        assert!((s.lr(1.0, 0, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr(1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 60, 110) - 0.55).abs() < 1e-12);
        assert!((s.lr(1.0, 110, 110) - 0.1).abs() < 1e-12);
        let step = LrSchedule::Step {
            step_size: 30,
            gamma: 0.1,
        };
        assert!((step.lr(1.0, 65, 100) - 0.01).abs() < 1e-12);
        assert_eq!(
            LrSchedule::Constant { warmup_steps: 0 }.lr(0.3, 50, 100),
            0.3
        );
        assert!((scaled_lr(1.5e-4, 4096, Some(256)) - 2.4e-3).abs() < 1e-12);
        assert!(step.validate().is_ok());
        assert!(
            LrSchedule::Step {
                step_size: 0,
                gamma: 0.1
            }
            .validate()
            .is_err()
        );
    }
}
