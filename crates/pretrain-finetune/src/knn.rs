//! Weighted k-nearest-neighbour evaluation on frozen features, the protocol of InstDisc,
//! DINO, lightly and solo-learn: cosine similarity, the `k` most similar training rows vote
//! for their class with weight `exp(similarity / temperature)`.

use burn::tensor::Tensor;
use pretrain_models::FusedBackend;
use serde::{Deserialize, Serialize};

use crate::error::{FinetuneError, Result};
use crate::probe::check_classes;
use pretrain_objectives::ops::l2_normalize;

/// Settings of the kNN classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Neighbours that vote.
    pub k: usize,
    /// Temperature of the vote weights.
    pub temperature: f64,
    /// Test rows compared at once (bounds the `[rows, train]` similarity matrix).
    pub chunk: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        // solo-learn's defaults.
        Self {
            k: 20,
            temperature: 0.07,
            chunk: 256,
        }
    }
}

impl KnnConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 || self.chunk == 0 {
            return Err(FinetuneError::Config {
                field: "k/chunk",
                message: "must be at least 1".into(),
            });
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(FinetuneError::Config {
                field: "temperature",
                message: format!("{} must be > 0", self.temperature),
            });
        }
        Ok(())
    }
}

/// Predicts the class of each `test` row (`[m, d]`) from `train` (`[n, d]`) and its labels.
/// With fewer than `k` training rows every row votes. Ties go to the lower class index.
pub fn knn_predict<B: FusedBackend>(
    train: &Tensor<B, 2>,
    train_labels: &[usize],
    test: Tensor<B, 2>,
    classes: usize,
    config: &KnnConfig,
) -> Result<Vec<usize>> {
    config.validate()?;
    let [n, d] = train.dims();
    let [m, d_test] = test.dims();
    if n == 0 || n != train_labels.len() {
        return Err(FinetuneError::Labels(format!(
            "{} labels for {n} training rows",
            train_labels.len()
        )));
    }
    if d != d_test {
        return Err(FinetuneError::Inputs(format!(
            "test features are {d_test} wide, training features {d}"
        )));
    }
    check_classes(train_labels, classes)?;
    let k = config.k.min(n);
    let train_t = l2_normalize(train.clone()).transpose(); // [d, n]
    let mut predictions = Vec::with_capacity(m);
    for start in (0..m).step_by(config.chunk) {
        let end = (start + config.chunk).min(m);
        let rows = end - start;
        let sims = l2_normalize(test.clone().slice([start..end, 0..d])).matmul(train_t.clone());
        let (values, indices) = sims.topk_with_indices(k, 1); // [rows, k]
        let values: Vec<f32> = values.into_data().iter::<f32>().collect();
        let indices: Vec<i64> = indices.into_data().iter::<i64>().collect();
        for row in 0..rows {
            let mut votes = vec![0f64; classes];
            for j in 0..k {
                let neighbour = indices[row * k + j] as usize;
                let weight = (values[row * k + j] as f64 / config.temperature).exp();
                votes[train_labels[neighbour]] += weight;
            }
            predictions.push(argmax(&votes));
        }
    }
    Ok(predictions)
}

/// Index of the largest value, the first one on ties.
pub(crate) fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{B, backbone, batcher, cnn_config, digits_task, rows, seeded};

    /// Brute force: every pairwise cosine similarity on the host, full sort, weighted vote.
    fn brute_force(
        train: &[Vec<f32>],
        labels: &[usize],
        test: &[Vec<f32>],
        classes: usize,
        k: usize,
        t: f64,
    ) -> Vec<usize> {
        let norm = |v: &Vec<f32>| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        test.iter()
            .map(|q| {
                let mut sims: Vec<(f32, usize)> = train
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let dot: f32 = q.iter().zip(r).map(|(a, b)| a * b).sum();
                        (dot / (norm(q) * norm(r)), i)
                    })
                    .collect();
                sims.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut votes = vec![0f64; classes];
                for &(s, i) in sims.iter().take(k) {
                    votes[labels[i]] += (s as f64 / t).exp();
                }
                argmax(&votes)
            })
            .collect()
    }

    #[test]
    fn weighted_knn_matches_brute_force_on_digits() {
        let task = digits_task();
        let dev = Default::default();
        let features = {
            let _guard = seeded(5);
            let encoder = backbone::<B>(&cnn_config());
            crate::evaluate::FrozenFeatures::extract(&encoder, &task, &batcher(), 256, &dev)
                .unwrap()
        };
        for config in [
            KnnConfig::default(),
            KnnConfig {
                k: 5,
                temperature: 0.5,
                chunk: 7,
            },
        ] {
            let ours = knn_predict(
                &features.train.x,
                &features.train.labels,
                features.test.x.clone(),
                10,
                &config,
            )
            .unwrap();
            let reference = brute_force(
                &rows(&features.train.x),
                &features.train.labels,
                &rows(&features.test.x),
                10,
                config.k,
                config.temperature,
            );
            let agree = ours.iter().zip(&reference).filter(|(a, b)| a == b).count();
            // Float summation order may flip an exact tie of similarity; nothing more.
            assert!(
                agree + 1 >= ours.len(),
                "{agree}/{} for {config:?}",
                ours.len()
            );
        }
    }

    #[test]
    fn knn_refuses_mismatched_inputs() {
        let dev = Default::default();
        let train = Tensor::<B, 2>::ones([4, 3], &dev);
        let err = knn_predict(
            &train,
            &[0, 1, 0],
            Tensor::ones([2, 3], &dev),
            2,
            &KnnConfig::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("3 labels for 4 training rows"),
            "{err}"
        );
        let err = knn_predict(
            &train,
            &[0, 1, 0, 1],
            Tensor::ones([2, 5], &dev),
            2,
            &KnnConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("5 wide"), "{err}");
    }
}
