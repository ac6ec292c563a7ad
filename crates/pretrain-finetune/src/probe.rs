//! Linear probing: features from a frozen encoder, computed once, standardized, and a
//! multinomial logistic regression with L2 weight decay fitted on them.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pretrain_data::Labeled;
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

impl<B: Backend> Features<B> {
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
    B: Backend,
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

impl<B: Backend> Standardizer<B> {
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
    /// L2 penalty `weight_decay / 2 * |W|^2` added to the mean cross-entropy (biases free).
    pub weight_decay: f64,
    /// Full-batch accelerated gradient iterations.
    pub iterations: usize,
    /// Rows per batch when extracting features.
    pub batch_size: usize,
}

impl Default for LinearProbeConfig {
    fn default() -> Self {
        Self {
            weight_decay: 1e-4,
            iterations: 1000,
            batch_size: 256,
        }
    }
}

impl LinearProbeConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let fail = |field, message: String| Err(FinetuneError::Config { field, message });
        if !(self.weight_decay > 0.0 && self.weight_decay.is_finite()) {
            return fail("weight_decay", format!("{} must be > 0", self.weight_decay));
        }
        if self.iterations == 0 || self.batch_size == 0 {
            return fail("iterations/batch_size", "must be at least 1".into());
        }
        Ok(())
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

fn one_hot<B: Backend>(labels: &[usize], classes: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut data = vec![0f32; labels.len() * classes];
    for (row, &label) in labels.iter().enumerate() {
        data[row * classes + label] = 1.0;
    }
    Tensor::from_data(TensorData::new(data, [labels.len(), classes]), device)
}

/// Largest eigenvalue of `x^T x / n` by power iteration.
fn gram_spectral_norm<B: Backend>(x: &Tensor<B, 2>) -> f64 {
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

impl<B: Backend> LogisticRegression<B> {
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
pub fn argmax_rows<B: Backend>(scores: Tensor<B, 2>) -> Vec<usize> {
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
}
