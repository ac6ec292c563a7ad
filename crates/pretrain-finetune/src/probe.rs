//! Linear probing: features from a frozen encoder, computed once, standardized, and a
//! multinomial logistic regression with L2 weight decay fitted on them.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pretrain_data::Labeled;
use pretrain_models::FusedBackend;
use serde::{Deserialize, Serialize};

use crate::backbone::{Backbone, LabeledBatch};
use crate::error::{FinetuneError, Result};

/// Features of a set of items with their labels.
#[derive(Debug, Clone)]
pub struct Features<B: Backend> {
    /// `[n, feature_dim]`.
    pub x: Tensor<B, 2>,
    /// Class of each row.
    pub labels: Vec<usize>,
}

impl<B: FusedBackend> Features<B> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `indices`.
    pub fn select(&self, indices: &[usize]) -> Self {
        let device = self.x.device();
        let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [indices.len()]), &device);
        Self {
            x: self.x.clone().select(0, index),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// The labels of `items`, failing on the first unlabeled one.
pub fn labels_of<I: Labeled>(items: &[I]) -> Result<Vec<usize>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.label()
                .ok_or_else(|| FinetuneError::Labels(format!("item {i} has no label")))
        })
        .collect()
}

/// Fails, naming the first offender, unless every label is below `classes`.
pub(crate) fn check_classes(labels: &[usize], classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| l >= classes) {
        Some(bad) => Err(FinetuneError::Labels(format!(
            "class {bad} is not below the {classes} classes"
        ))),
        None => Ok(()),
    }
}

/// Runs the frozen `encoder` over `items` in batches of `batch_size` (call it with an
/// inference backend, not autodiff): the representation every probe and kNN run reuses.
pub fn extract_features<B, I, T>(
    encoder: &Backbone<B>,
    items: &[I],
    batcher: &T,
    batch_size: usize,
    device: &B::Device,
) -> Result<Features<B>>
where
    B: FusedBackend,
    I: Labeled + Clone,
    T: Batcher<B, I, LabeledBatch<B>>,
{
    if items.is_empty() {
        return Err(FinetuneError::Labels(
            "no items to extract features from".into(),
        ));
    }
    let labels = labels_of(items)?;
    let chunks = items
        .chunks(batch_size.max(1))
        .map(|chunk| {
            let batch = batcher.batch(chunk.to_vec(), device);
            encoder.features(batch.inputs)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Features {
        x: Tensor::cat(chunks, 0),
        labels,
    })
}

/// Per-feature standardization with statistics of the training features.
#[derive(Debug, Clone)]
pub struct Standardizer<B: Backend> {
    mean: Tensor<B, 2>,
    std: Tensor<B, 2>,
}

impl<B: FusedBackend> Standardizer<B> {
    /// Mean and standard deviation of each column of `x` (`[n, d]`); constant columns are
    /// left unscaled.
    pub fn fit(x: &Tensor<B, 2>) -> Self {
        let mean = x.clone().mean_dim(0);
        let std = x.clone().var(0).sqrt();
        let std = std.clone().mask_fill(std.lower_elem(1e-6), 1.0);
        Self { mean, std }
    }

    /// `(x - mean) / std`.
    pub fn apply(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        (x - self.mean.clone()) / self.std.clone()
    }
}

/// Settings of the logistic-regression probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearProbeConfig {
    /// L2 penalty `weight_decay / 2 * |W|^2` added to the mean cross-entropy (biases free),
    /// when it is not chosen by cross-validation.
    pub weight_decay: f64,
    /// Candidates for the penalty, chosen by stratified `cv_folds`-fold cross-validation on
    /// the labeled examples (empty: always `weight_decay`). Few labels overfit an unregularized
    /// probe, many need little penalty; the test split is never looked at.
    pub weight_decay_grid: Vec<f64>,
    /// Folds of the cross-validation; it runs only when every class has at least this many
    /// examples.
    pub cv_folds: usize,
    /// Above this many labeled examples `weight_decay` is used without a search (each
    /// candidate would cost `cv_folds` full fits, and plentiful labels need little penalty).
    pub cv_max_examples: usize,
    /// Full-batch accelerated gradient iterations.
    pub iterations: usize,
    /// Rows per batch when extracting features.
    pub batch_size: usize,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            weight_decay: 1e-4,
            weight_decay_grid: vec![1e-3, 1e-2, 1e-1, 1.0],
            cv_folds: 3,
            cv_max_examples: 10_000,
            iterations: 1000,
            batch_size: 256,
        }
    }
}

impl LinearProbeConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let fail = |field, message: String| Err(FinetuneError::Config { field, message });
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !positive(self.weight_decay) {
            return fail("weight_decay", format!("{} must be > 0", self.weight_decay));
        }
        if let Some(bad) = self.weight_decay_grid.iter().find(|&&v| !positive(v)) {
            return fail("weight_decay_grid", format!("{bad} must be > 0"));
        }
        if !self.weight_decay_grid.is_empty() && self.cv_folds < 2 {
            return fail("cv_folds", format!("{} must be at least 2", self.cv_folds));
        }
        if self.iterations == 0 || self.batch_size == 0 {
            return fail("iterations/batch_size", "must be at least 1".into());
        }
        Ok(())
    }

    /// The penalty to fit `labels` with: the grid's best by stratified cross-validation
    /// (ties go to the larger penalty), or `weight_decay` when the grid is empty, the set is
    /// larger than `cv_max_examples` or a class has fewer than `cv_folds` examples.
    /// Each fold is standardized with its own training rows.
    pub fn select_weight_decay<B: FusedBackend>(
        &self,
        x: &Tensor<B, 2>,
        labels: &[usize],
        classes: usize,
    ) -> Result<f64> {
        self.validate()?;
        let mut per_class = vec![0usize; classes];
        for &l in labels {
            check_classes(&[l], classes)?;
            per_class[l] += 1;
        }
        let too_few = per_class.iter().any(|&c| c > 0 && c < self.cv_folds);
        if self.weight_decay_grid.is_empty() || labels.len() > self.cv_max_examples || too_few {
            return Ok(self.weight_decay);
        }
        // Stratified folds: the i-th example of each class goes to fold i mod k.
        let mut seen = vec![0usize; classes];
        let fold: Vec<usize> = labels
            .iter()
            .map(|&l| {
                seen[l] += 1;
                (seen[l] - 1) % self.cv_folds
            })
            .collect();
        let features = Features {
            x: x.clone(),
            labels: labels.to_vec(),
        };
        let splits: Vec<(Features<B>, Features<B>)> = (0..self.cv_folds)
            .map(|k| {
                let (val, train): (Vec<usize>, Vec<usize>) =
                    (0..labels.len()).partition(|&i| fold[i] == k);
                (features.select(&train), features.select(&val))
            })
            .collect();
        let mut best = (0usize, self.weight_decay);
        for &wd in &self.weight_decay_grid {
            let config = Self {
                weight_decay: wd,
                weight_decay_grid: Vec::new(),
                ..self.clone()
            };
            let mut correct = 0;
            for (train, val) in &splits {
                let scaler = Standardizer::fit(&train.x);
                let probe = LogisticRegression::fit(
                    &scaler.apply(train.x.clone()),
                    &train.labels,
                    classes,
                    &config,
                )?;
                let predicted = probe.predict(scaler.apply(val.x.clone()));
                correct += predicted
                    .iter()
                    .zip(&val.labels)
                    .filter(|(p, l)| p == l)
                    .count();
            }
            if correct >= best.0 {
                best = (correct, wd);
            }
        }
        Ok(best.1)
    }
}

/// A fitted multinomial logistic regression: `softmax(x W + b)`.
#[derive(Debug, Clone)]
pub struct LogisticRegression<B: Backend> {
    /// `[d, classes]`.
    pub weight: Tensor<B, 2>,
    /// `[classes]`.
    pub bias: Tensor<B, 1>,
}

fn one_hot<B: FusedBackend>(labels: &[usize], classes: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut data = vec![0f32; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        data[row * classes + label] = 1.0;
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), classes]), device)
}

/// Largest eigenvalue of `x^T x / n` by power iteration.
fn gram_spectral_norm<B: FusedBackend>(x: &Tensor<B, 2>) -> f64 {
    let [n, d] = x.dims();
    let mut v = Tensor::<B, 2>::ones([d, 1], &x.device()).div_scalar((d as f64).sqrt());
    let mut eigen = 0.0;
    for _ in 0..50 {
        let w = x
            .clone()
            .transpose()
            .matmul(x.clone().matmul(v))
            .div_scalar(n as f64);
        let norm: f64 = w.clone().powi_scalar(2).sum().sqrt().into_scalar().elem();
        eigen = norm;
        v = w.div_scalar(norm.max(1e-12));
    }
    eigen
}

impl<B: FusedBackend> LogisticRegression<B> {
    /// Fits on `x` (`[n, d]`, standardized) and `labels` with Nesterov's accelerated gradient
    /// for strongly convex problems: step `1 / L` with `L` the loss's smoothness bound
    /// (`(|X|^2 / n + 1) / 2 + weight_decay`, the `+ 1` for the bias) and momentum
    /// `(sqrt(L / wd) - 1) / (sqrt(L / wd) + 1)`.
    pub fn fit(
        x: &Tensor<B, 2>,
        labels: &[usize],
        classes: usize,
        config: &LinearProbeConfig,
    ) -> Result<Self> {
        config.validate()?;
        let [n, d] = x.dims();
        if n != labels.len() || n == 0 {
            return Err(FinetuneError::Labels(format!(
                "{} labels for {n} feature rows",
                labels.len()
            )));
        }
        check_classes(labels, classes)?;
        let device = x.device();
        let targets = one_hot::<B>(labels, classes, &device);
        let wd = config.weight_decay;
        let smoothness = (gram_spectral_norm(x) + 1.0) / 2.0 + wd;
        let step = 1.0 / smoothness;
        let root = (smoothness / wd).sqrt();
        let momentum = (root - 1.0) / (root + 1.0);
        let mut weight = Tensor::<B, 2>::zeros([d, classes], &device);
        let mut bias = Tensor::<B, 1>::zeros([classes], &device);
        let (mut prev_w, mut prev_b) = (weight.clone(), bias.clone());
        for _ in 0..config.iterations {
            // Look-ahead point.
            let yw = weight.clone() + (weight.clone() - prev_w.clone()).mul_scalar(momentum);
            let yb = bias.clone() + (bias.clone() - prev_b.clone()).mul_scalar(momentum);
            let logits = x.clone().matmul(yw.clone()) + yb.clone().reshape([1, classes]);
            let residual = (softmax(logits, 1) - targets.clone()).div_scalar(n as f64); // [n, c]
            let grad_w = x.clone().transpose().matmul(residual.clone()) + yw.clone().mul_scalar(wd);
            let grad_b = residual.sum_dim(0).reshape([classes]);
            prev_w = weight;
            prev_b = bias;
            weight = yw - grad_w.mul_scalar(step);
            bias = yb - grad_b.mul_scalar(step);
        }
        Ok(Self { weight, bias })
    }

    /// Class logits `[n, classes]`.
    pub fn logits(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let classes = self.bias.dims()[0];
        x.matmul(self.weight.clone()) + self.bias.clone().reshape([1, classes])
    }

    /// Predicted class of each row.
    pub fn predict(&self, x: Tensor<B, 2>) -> Vec<usize> {
        argmax_rows(self.logits(x))
    }
}

/// Arg-max of each row, as host indices.
pub fn argmax_rows<B: FusedBackend>(scores: Tensor<B, 2>) -> Vec<usize> {
    let n = scores.dims()[0];
    scores
        .argmax(1)
        .reshape([n])
        .into_data()
        .iter::<i64>()
        .map(|v| v as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{B, backbone, batcher, digits_task, rows, seeded, vit_config};

    /// Multinomial logistic regression written independently of the probe: f64 host loops,
    /// its own standardization, plain gradient descent run to convergence.
    fn reference_fit_predict(
        train: &[Vec<f64>],
        labels: &[usize],
        test: &[Vec<f64>],
        classes: usize,
        wd: f64,
    ) -> Vec<usize> {
        let d = train[0].len();
        let n = train.len() as f64;
        let mean: Vec<f64> = (0..d)
            .map(|j| train.iter().map(|r| r[j]).sum::<f64>() / n)
            .collect();
        let std: Vec<f64> = (0..d)
            .map(|j| {
                let v = train.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0);
                if v.sqrt() < 1e-6 { 1.0 } else { v.sqrt() }
            })
            .collect();
        let scale =
            |r: &Vec<f64>| -> Vec<f64> { (0..d).map(|j| (r[j] - mean[j]) / std[j]).collect() };
        let xs: Vec<Vec<f64>> = train.iter().map(scale).collect();
        // Smoothness bound from the Frobenius norm (looser than the probe's power iteration).
        let frob = xs.iter().flatten().map(|v| v * v).sum::<f64>() / n;
        let step = 1.0 / ((frob + 1.0) / 2.0 + wd);
        let mut w = vec![vec![0.0; classes]; d];
        let mut b = vec![0.0; classes];
        let logits = |w: &Vec<Vec<f64>>, b: &Vec<f64>, x: &[f64]| -> Vec<f64> {
            (0..classes)
                .map(|c| b[c] + (0..d).map(|j| x[j] * w[j][c]).sum::<f64>())
                .collect()
        };
        for _ in 0..4000 {
            let mut gw = vec![vec![0.0; classes]; d];
            let mut gb = vec![0.0; classes];
            for (x, &y) in xs.iter().zip(labels) {
                let z = logits(&w, &b, x);
                let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for c in 0..classes {
                    let r = (e[c] / sum - if c == y { 1.0 } else { 0.0 }) / n;
                    gb[c] += r;
                    for j in 0..d {
                        gw[j][c] += x[j] * r;
                    }
                }
            }
            for j in 0..d {
                for c in 0..classes {
                    w[j][c] -= step * (gw[j][c] + wd * w[j][c]);
                }
            }
            for c in 0..classes {
                b[c] -= step * gb[c];
            }
        }
        test.iter()
            .map(|x| crate::knn::argmax(&logits(&w, &b, &scale(x))))
            .collect()
    }

    #[test]
    fn linear_probe_on_a_random_encoder_matches_an_independent_logistic_regression() {
        let task = digits_task();
        let dev = Default::default();
        let features = {
            let _guard = seeded(11);
            let encoder = backbone::<B>(&vit_config());
            crate::evaluate::FrozenFeatures::extract(&encoder, &task, &batcher(), 128, &dev)
                .unwrap()
        };
        let config = LinearProbeConfig {
            weight_decay: 1e-2,
            iterations: 500,
            batch_size: 128,
            ..LinearProbeConfig::default()
        };
        let scaler = Standardizer::fit(&features.train.x);
        let probe = LogisticRegression::fit(
            &scaler.apply(features.train.x.clone()),
            &features.train.labels,
            10,
            &config,
        )
        .unwrap();
        let ours = probe.predict(scaler.apply(features.test.x.clone()));
        let reference = reference_fit_predict(
            &rows(&features.train.x),
            &features.train.labels,
            &rows(&features.test.x),
            10,
            config.weight_decay,
        );
        let accuracy = |p: &[usize]| {
            p.iter()
                .zip(&features.test.labels)
                .filter(|(a, b)| a == b)
                .count() as f64
                / p.len() as f64
        };
        let (a, r) = (accuracy(&ours), accuracy(&reference));
        assert!((a - r).abs() <= 0.01, "probe {a} vs reference {r}");
        // Well above chance (10%) on a random encoder, and the same decisions almost everywhere.
        assert!(a > 0.5, "{a}");
        let agree = ours.iter().zip(&reference).filter(|(x, y)| x == y).count();
        assert!(
            agree as f64 >= 0.98 * ours.len() as f64,
            "{agree}/{}",
            ours.len()
        );
    }

    #[test]
    fn bad_probe_inputs_are_refused() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::ones([3, 2], &dev);
        let config = LinearProbeConfig::default();
        let err = LogisticRegression::fit(&x, &[0, 1], 2, &config).unwrap_err();
        assert!(
            err.to_string().contains("2 labels for 3 feature rows"),
            "{err}"
        );
        let err = LogisticRegression::fit(&x, &[0, 1, 4], 3, &config).unwrap_err();
        assert!(
            err.to_string()
                .contains("class 4 is not below the 3 classes"),
            "{err}"
        );
        let bad = LinearProbeConfig {
            weight_decay: 0.0,
            ..config
        };
        assert!(LogisticRegression::fit(&x, &[0, 1, 1], 2, &bad).is_err());
    }

    /// Two informative columns and eight of noise, `n` rows per class of 2.
    fn noisy_two_class(n: usize) -> (Tensor<B, 2>, Vec<usize>) {
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..2 * n {
            let class = i % 2;
            let sign = if class == 0 { -1.0 } else { 1.0 };
            data.push(sign + 0.3 * ((i * 7) % 5) as f32 / 5.0);
            data.push(sign * 0.5);
            // Noise columns: a fixed pseudo-random pattern, the same for both classes.
            data.extend((0..8).map(|j| (((i * 31 + j * 17) % 23) as f32 / 23.0 - 0.5) * 4.0));
            labels.push(class);
        }
        (
            Tensor::from_data(TensorData::new(data, [2 * n, 10]), &Default::default()),
            labels,
        )
    }

    #[test]
    fn weight_decay_is_chosen_from_the_grid_by_cross_validation() {
        let (x, labels) = noisy_two_class(12);
        let config = LinearProbeConfig {
            weight_decay_grid: vec![1e-3, 1e-1, 1e3],
            iterations: 300,
            ..LinearProbeConfig::default()
        };
        let chosen = config.select_weight_decay(&x, &labels, 2).unwrap();
        // A penalty of 1000 shrinks every weight to nothing (chance on held-out folds), so
        // the search must pick one of the others.
        assert!(config.weight_decay_grid[..2].contains(&chosen), "{chosen}");
        // Too few examples per class for three folds, an empty grid, or more examples than
        // the cap: the fixed penalty.
        let (x2, labels2) = noisy_two_class(2);
        assert_eq!(
            config.select_weight_decay(&x2, &labels2, 2).unwrap(),
            config.weight_decay
        );
        let fixed = LinearProbeConfig {
            weight_decay_grid: Vec::new(),
            ..config.clone()
        };
        assert_eq!(fixed.select_weight_decay(&x, &labels, 2).unwrap(), 1e-4);
        let capped = LinearProbeConfig {
            cv_max_examples: 10,
            ..config.clone()
        };
        assert_eq!(capped.select_weight_decay(&x, &labels, 2).unwrap(), 1e-4);
        // Bad settings and labels are refused.
        let bad = LinearProbeConfig {
            weight_decay_grid: vec![0.1, -1.0],
            ..config.clone()
        };
        assert!(bad.select_weight_decay(&x, &labels, 2).is_err());
        assert!(config.select_weight_decay(&x, &labels, 1).is_err());
    }
}
