//! A backbone with a new linear head, and the supervised "objective" that trains it with the
//! pre-training engine (so fine-tuning gets the same schedules, clipping, checkpoints and
//! metrics), with label smoothing and layer-wise learning-rate decay.

use burn::module::{Module, ParamId};
use burn::nn::Linear;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use pretrain_models::InitScheme;
use pretrain_models::layers::linear;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_objectives::ops::accuracy;
use pretrain_objectives::{Metrics, Objective, ObjectiveError, StepOutput};

use crate::backbone::{Backbone, Inputs, LabeledBatch};
use crate::error::Result;
use crate::params::{layer_decay_scales, param_depths};

/// Standard deviation of the new head's weights: near zero, as MAE's fine-tuning (2e-5 there;
/// a little larger so the head's first gradients are not vanishingly small).
const HEAD_INIT_STD: f64 = 0.01;

/// A backbone and a linear classification head on its features.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    /// The encoder.
    pub encoder: Backbone<B>,
    /// `feature_dim -> num_classes`.
    pub head: Linear<B>,
}

impl<B: FusedBackend> Classifier<B> {
    /// Puts a fresh head for `num_classes` classes on `encoder`, whose features are
    /// `feature_dim` wide.
    pub fn new(
        encoder: Backbone<B>,
        feature_dim: usize,
        num_classes: usize,
        device: &B::Device,
    ) -> Self {
        let init = InitScheme::TruncatedNormal { std: HEAD_INIT_STD };
        Self {
            encoder,
            head: linear(feature_dim, num_classes, init, true, device),
        }
    }

    /// Number of classes the head predicts.
    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Class logits `[batch, num_classes]`.
    pub fn forward(&self, inputs: Inputs<B>) -> Result<Tensor<B, 2>> {
        Ok(self.head.forward(self.encoder.features(inputs)?))
    }
}

/// Mean cross-entropy with label smoothing `epsilon` (targets `(1 - epsilon)` on the class and
/// `epsilon / classes` spread over all classes, as PyTorch's `label_smoothing`): `[1]`.
pub fn smoothed_cross_entropy<B: FusedBackend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
    epsilon: f64,
) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    let log_probs = log_softmax(logits, 1); // [n, classes]
    let nll = log_probs
        .clone()
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg();
    let uniform = log_probs.mean_dim(1).reshape([n]).neg();
    (nll * (1.0 - epsilon) + uniform * epsilon).mean()
}

/// Supervised training of a [`Classifier`] as an [`Objective`] for the engine.
#[derive(Module, Debug)]
pub struct ClassificationTask<B: Backend> {
    /// The model being fine-tuned.
    pub model: Classifier<B>,
    label_smoothing: f64,
    layer_decay: f64,
}

impl<B: FusedBackend> ClassificationTask<B> {
    /// `label_smoothing` in `[0, 1)`; `layer_decay` in `(0, 1]` (1 = one learning rate).
    pub fn new(model: Classifier<B>, label_smoothing: f64, layer_decay: f64) -> Self {
        Self {
            model,
            label_smoothing,
            layer_decay,
        }
    }
}

impl<B: FusedAutodiffBackend> Objective<B> for ClassificationTask<B> {
    type Batch = LabeledBatch<B>;
    type Carry = ();
    type Encoder = Backbone<B>;

    fn forward_step(
        &self,
        batch: LabeledBatch<B>,
    ) -> pretrain_objectives::Result<StepOutput<B, ()>> {
        let fail = |what, message: String| ObjectiveError::Batch {
            objective: "classification",
            what,
            message,
        };
        let labels = batch
            .labels
            .ok_or_else(|| fail("labels", "are missing (unlabeled items)".into()))?;
        let logits = self
            .model
            .forward(batch.inputs)
            .map_err(|e| fail("inputs", e.to_string()))?;
        let loss = smoothed_cross_entropy(logits.clone(), labels.clone(), self.label_smoothing);
        let mut metrics = Metrics::default();
        metrics.push_tensor("loss", loss.clone());
        metrics.push_tensor("accuracy", accuracy(logits, labels));
        Ok(StepOutput {
            loss,
            metrics,
            carry: (),
        })
    }

    fn encoder(&self) -> &Backbone<B> {
        &self.model.encoder
    }

    fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        if self.layer_decay == 1.0 {
            return Vec::new();
        }
        layer_decay_scales(&param_depths(&self.model), self.layer_decay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    use crate::testing::TestBackend as B;

    #[test]
    fn smoothed_cross_entropy_matches_the_formula() {
        let dev = Default::default();
        let logits = Tensor::<B, 2>::from_data([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], &dev);
        let targets = Tensor::<B, 1, Int>::from_data(TensorData::from([0i32, 1]), &dev);
        let got: f32 = smoothed_cross_entropy(logits, targets, 0.1).into_scalar();
        // By hand: log-softmax rows, then (1-e) * nll + e * mean(-log p).
        let row = |l: [f64; 3], t: usize| {
            let lse = l.iter().map(|v| v.exp()).sum::<f64>().ln();
            let lp: Vec<f64> = l.iter().map(|v| v - lse).collect();
            0.9 * -lp[t] + 0.1 * -(lp.iter().sum::<f64>() / 3.0)
        };
        let want = (row([2.0, 0.0, -1.0], 0) + row([0.5, 0.5, 3.0], 1)) / 2.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn layer_decay_gives_each_block_its_learning_rate() {
        use crate::params::{Depth, param_depths};
        use crate::testing::{Ad, backbone, batcher, digits_task, seeded, vit_config};
        use burn::data::dataloader::batcher::Batcher;
        use burn::optim::GradientsParams;
        use pretrain_train::OptimizerConfig;
        use std::collections::HashMap;

        let dev = Default::default();
        let _guard = seeded(31);
        let decay = 0.5;
        let model = Classifier::new(backbone::<Ad>(&vit_config()), 32, 10, &dev);
        let task = ClassificationTask::new(model, 0.0, decay);
        let multipliers: HashMap<ParamId, f64> = task.lr_multipliers().into_iter().collect();
        let batch: LabeledBatch<Ad> = batcher().batch(digits_task().train[..32].to_vec(), &dev);
        let loss = task.forward_step(batch).unwrap().loss;
        let grads = GradientsParams::from_grads(loss.backward(), &task);
        let before = crate::testing::snapshot(&task);
        let grad_of: HashMap<ParamId, Vec<f32>> = param_depths(&task)
            .iter()
            .filter_map(|(id, _, _)| {
                let g = grads
                    .get::<crate::testing::B, 2>(*id)
                    .map(|t| t.into_data().iter::<f32>().collect())
                    .or_else(|| {
                        grads
                            .get::<crate::testing::B, 1>(*id)
                            .map(|t| t.into_data().iter::<f32>().collect())
                    })?;
                Some((*id, g))
            })
            .collect();
        let sgd = OptimizerConfig::Sgd {
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut optimizer = sgd.build::<Ad, ClassificationTask<Ad>>(None);
        let lr = 0.1;
        let stepped = optimizer.step_with_multipliers(lr, task.clone(), grads, &multipliers);
        let after = crate::testing::snapshot(&stepped);

        // Expected multiplier by depth: 2 blocks, so embeddings 0.5^3, block i 0.5^(2-i), top 1.
        let mut seen = HashMap::new();
        for (id, path, depth) in param_depths(&task) {
            let Some(g) = grad_of.get(&id) else { continue };
            let expected = match depth {
                Depth::Embedding => decay.powi(3),
                Depth::Block(i) => decay.powi(2 - i as i32),
                Depth::Top => 1.0,
            };
            let (old, new) = (&before[&path], &after[&path]);
            // Effective rate of this tensor: -(new - old) / grad over entries with a clear grad.
            let rates: Vec<f64> = old
                .iter()
                .zip(new)
                .zip(g)
                .filter(|(_, g)| g.abs() > 1e-4)
                .map(|((o, n), g)| -((n - o) as f64) / *g as f64)
                .collect();
            if rates.is_empty() {
                continue;
            }
            let mean = rates.iter().sum::<f64>() / rates.len() as f64;
            assert!(
                (mean / (lr * expected) - 1.0).abs() < 1e-2,
                "{path} ({depth:?}): rate {mean} vs {}",
                lr * expected
            );
            seen.insert(format!("{depth:?}"), ());
        }
        assert!(
            ["Embedding", "Block(0)", "Block(1)", "Top"]
                .iter()
                .all(|d| seen.contains_key(*d)),
            "{seen:?}"
        );
    }
}
