//! Classification metrics for evaluating representations: accuracy, macro-F1, confusion matrix.

use serde::{Deserialize, Serialize};

/// Why metrics cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Predictions and targets differ in length, or are empty.
    #[error("{predictions} predictions for {targets} targets (need the same non-zero count)")]
    Length {
        /// Number of predictions.
        predictions: usize,
        /// Number of targets.
        targets: usize,
    },
    /// A class index is not below the number of classes.
    #[error("class {class} is not below the {num_classes} classes")]
    Class {
        /// Offending class index.
        class: usize,
        /// Number of classes.
        num_classes: usize,
    },
}

/// Metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Share of correct predictions, in `[0, 1]`.
    pub accuracy: f64,
    /// Unweighted mean over classes of the F1 score (a class absent from both predictions and
    /// targets is left out of the mean, as scikit-learn does with `labels` unset).
    pub macro_f1: f64,
    /// `confusion[target][prediction]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl ClassificationReport {
    /// Computes the report for `num_classes` classes.
    pub fn compute(
        predictions: &[usize],
        targets: &[usize],
        num_classes: usize,
    ) -> Result<Self, MetricsError> {
        if predictions.len() != targets.len() || targets.is_empty() {
            return Err(MetricsError::Length {
                predictions: predictions.len(),
                targets: targets.len(),
            });
        }
        if let Some(&class) = predictions
            .iter()
            .chain(targets)
            .find(|&&c| c >= num_classes)
        {
            return Err(MetricsError::Class { class, num_classes });
        }
        let mut confusion = vec![vec![0usize; num_classes]; num_classes];
        for (&p, &t) in predictions.iter().zip(targets) {
            confusion[t][p] += 1;
        }
        let correct: usize = (0..num_classes).map(|c| confusion[c][c]).sum();
        let f1s: Vec<f64> = (0..num_classes)
            .filter_map(|c| {
                let tp = confusion[c][c] as f64;
                let actual: usize = confusion[c].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[c]).sum();
                if actual + predicted == 0 {
                    return None;
                }
                Some(2.0 * tp / (actual + predicted) as f64)
            })
            .collect();
        Ok(Self {
            accuracy: correct as f64 / targets.len() as f64,
            macro_f1: f1s.iter().sum::<f64>() / f1s.len() as f64,
            confusion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // targets 0 0 1 1 2, predictions 0 1 1 1 0.
        let r = ClassificationReport::compute(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 2], 3).unwrap();
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        assert_eq!(
            r.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
        );
        // F1: class 0 = 2*1/(2+2) = 0.5, class 1 = 2*2/(2+3) = 0.8, class 2 = 0.
        assert!((r.macro_f1 - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            ClassificationReport::compute(&[0], &[0, 1], 2),
            Err(MetricsError::Length { .. })
        ));
        assert!(matches!(
            ClassificationReport::compute(&[], &[], 2),
            Err(MetricsError::Length { .. })
        ));
        let err = ClassificationReport::compute(&[5], &[0], 3).unwrap_err();
        assert_eq!(err.to_string(), "class 5 is not below the 3 classes");
    }
}
