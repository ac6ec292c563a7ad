//! The record of one evaluation: a strategy at one label budget over several seeds.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::evaluate::Strategy;
use crate::metrics::ClassificationReport;
use crate::params::ParamCount;

/// The outcome of one seed (one labeled subset, one training run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// Seed of the labeled subset (and of the run's initialization and batch order).
    pub seed: u64,
    /// Labeled examples used.
    pub train_examples: usize,
    /// Metrics on the held-out test split.
    pub metrics: ClassificationReport,
    /// Wall-clock seconds of this seed (training and evaluation).
    pub seconds: f64,
    /// The linear probe's L2 penalty (chosen by cross-validation when it searched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
}

/// One strategy evaluated at one label budget (serde JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneReport {
    /// The strategy evaluated.
    pub strategy: Strategy,
    /// Encoder architecture.
    pub architecture: String,
    /// Labeled examples per class; `None` for every label of the training split.
    pub labels_per_class: Option<usize>,
    /// Seeds, in order.
    pub seeds: Vec<u64>,
    /// Mean test accuracy over the seeds, in `[0, 1]`.
    pub accuracy_mean: f64,
    /// Sample standard deviation of the test accuracy (0 for one seed).
    pub accuracy_std: f64,
    /// Mean macro-F1 over the seeds.
    pub macro_f1_mean: f64,
    /// Parameters trained by the strategy, and all parameters of the model it evaluates.
    pub params: ParamCount,
    /// Share of the parameters trained, in `[0, 1]`.
    pub trainable_share: f64,
    /// Settings used (strategy-specific, as JSON).
    pub settings: serde_json::Value,
    /// Each seed's outcome.
    pub runs: Vec<SeedResult>,
    /// Wall-clock seconds of the whole evaluation.
    pub seconds: f64,
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

impl FinetuneReport {
    /// Summarizes the seeds' results.
    pub fn new(
        strategy: Strategy,
        architecture: &str,
        labels_per_class: Option<usize>,
        params: ParamCount,
        settings: serde_json::Value,
        runs: Vec<SeedResult>,
        seconds: f64,
    ) -> Self {
        let accuracies: Vec<f64> = runs.iter().map(|r| r.metrics.accuracy).collect();
        let f1s: Vec<f64> = runs.iter().map(|r| r.metrics.macro_f1).collect();
        let (accuracy_mean, accuracy_std) = mean_std(&accuracies);
        Self {
            strategy,
            architecture: architecture.to_string(),
            labels_per_class,
            seeds: runs.iter().map(|r| r.seed).collect(),
            accuracy_mean,
            accuracy_std,
            macro_f1_mean: mean_std(&f1s).0,
            params,
            trainable_share: params.trainable_share(),
            settings,
            runs,
            seconds,
        }
    }

    /// Writes the report as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("report serializes");
        pretrain_train::write_atomic(path, &json).map_err(|e| FinetuneError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[0.5, 0.7, 0.9]);
        assert!((m - 0.7).abs() < 1e-12);
        assert!((s - 0.2).abs() < 1e-12, "{s}");
        assert_eq!(mean_std(&[0.4]), (0.4, 0.0));
    }
}
