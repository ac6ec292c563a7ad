//! MoCo v2: InfoNCE against a queue of negatives produced by a momentum (EMA) key encoder;
//! symmetrized over the two views as in MoCo v2+ (solo-learn).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor};
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHeadConfig};

use crate::branch::{ProjectedEncoder, pair_metrics, two_views};
use crate::collective::Collective;
use crate::error::{ObjectiveError, Result, ensure};
use crate::objective::{Objective, StepOutput, TrainProgress};
use crate::ops::{accuracy, cross_entropy, l2_normalize};
use crate::target::{MomentumSchedule, ema_update, momentum_target};

/// InfoNCE logits of queries `q` `[n, d]` against their keys `k` `[n, d]` (positives, column 0)
/// and the `queue` `[size, d]` of negatives, all L2-normalized inside; divided by `temperature`:
/// `[n, 1 + size]`, the positive at index 0.
pub fn info_nce_logits<B: FusedBackend>(
    q: Tensor<B, 2>,
    k: Tensor<B, 2>,
    queue: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 2> {
    let (q, k, queue) = (l2_normalize(q), l2_normalize(k), l2_normalize(queue));
    let positive = (q.clone() * k).sum_dim(1); // [n, 1]
    let negative = q.matmul(queue.transpose()); // [n, size]
    Tensor::cat(vec![positive, negative], 1) / temperature
}

/// InfoNCE loss with a queue of negatives (MoCo): cross-entropy of [`info_nce_logits`] with
/// the positive as target, `[1]`.
pub fn info_nce<B: FusedBackend>(
    q: Tensor<B, 2>,
    k: Tensor<B, 2>,
    queue: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let n = q.dims()[0];
    let device = q.device();
    cross_entropy(
        info_nce_logits(q, k, queue, temperature),
        Tensor::<B, 1, Int>::zeros([n], &device),
    )
}

/// Configuration of [`MoCo`].
#[derive(Config, Debug)]
pub struct MoCoConfig {
    /// The encoder to pre-train.
    pub encoder: ImageEncoderConfig,
    /// Projection head (MoCo v2: one hidden layer, no batch norm, 128-d output).
    pub projector: MlpHeadConfig,
    /// Number of negatives kept in the queue.
    #[config(default = 4096)]
    pub queue_size: usize,
    /// Softmax temperature.
    #[config(default = 0.2)]
    pub temperature: f64,
    /// Momentum of the key encoder (MoCo v2: constant 0.99 for short runs).
    #[config(default = "MomentumSchedule { base: 0.99, end: 0.99 }")]
    pub momentum: MomentumSchedule,
}

impl MoCoConfig {
    /// MoCo v2's head on `encoder`: hidden layer of the encoder width without batch norm,
    /// 128-d output.
    pub fn moco_v2(encoder: ImageEncoderConfig) -> Self {
        let width = encoder.feature_dim();
        Self::new(
            encoder,
            MlpHeadConfig::new(width, vec![width], 128).with_batch_norm(false),
        )
    }

    /// Builds the objective; the queue starts as random unit vectors.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<MoCo<B>> {
        ensure(
            self.temperature > 0.0,
            ObjectiveError::config,
            "MoCo",
            "temperature",
            || format!("{} must be > 0", self.temperature),
        )?;
        ensure(
            self.queue_size > 0,
            ObjectiveError::config,
            "MoCo",
            "queue_size",
            || "must be > 0".into(),
        )?;
        ensure(
            self.momentum.is_valid(),
            ObjectiveError::config,
            "MoCo",
            "momentum",
            || format!("{:?} must lie in [0, 1]", self.momentum),
        )?;
        let online = ProjectedEncoder::new("MoCo", &self.encoder, &self.projector, device)?;
        let key_branch = ProjectedEncoder::new("MoCo", &self.encoder, &self.projector, device)?;
        let queue = l2_normalize(Tensor::<B, 2>::random(
            [self.queue_size, self.projector.output],
            Distribution::Normal(0.0, 1.0),
            device,
        ));
        Ok(MoCo {
            key_branch: momentum_target(key_branch, &online),
            online,
            queue: Param::from_tensor(queue).set_require_grad(false),
            temperature: self.temperature,
            momentum: self.momentum.clone(),
        })
    }
}

/// MoCo v2 objective on two-view batches.
#[derive(Module, Debug)]
pub struct MoCo<B: Backend> {
    /// Query encoder and projector (trained).
    pub online: ProjectedEncoder<B>,
    /// Key encoder and projector (EMA of `online`).
    pub key_branch: ProjectedEncoder<B>,
    /// Negatives `[queue_size, dim]`, newest first; saved with checkpoints.
    pub queue: Param<Tensor<B, 2>>,
    temperature: f64,
    momentum: MomentumSchedule,
}

impl<B: FusedAutodiffBackend> MoCo<B> {
    /// One step; with `collective`, the keys enqueued are every worker's.
    fn step(
        &self,
        batch: MultiViewBatch<B>,
        collective: Option<&Collective>,
    ) -> Result<StepOutput<B, Tensor<B::InnerBackend, 2>>> {
        let (a, b) = two_views(batch, "MoCo")?;
        let n = a.dims()[0];
        // Every worker's keys enter the queue.
        let global = n * collective.map_or(1, Collective::workers);
        let size = self.queue.val().dims()[0];
        ensure(
            2 * global <= size,
            ObjectiveError::batch,
            "MoCo",
            "size",
            || {
                format!(
                    "{global} gives {} keys per step, more than the queue's {size}",
                    2 * global
                )
            },
        )?;
        let (q1, q2) = self.online.project_pair(a.clone(), b.clone());
        let (k1, k2) = self.key_branch.project_pair(a, b);
        let (k1, k2) = (k1.detach(), k2.detach());
        let queue = self.queue.val().detach();
        let logits_1 = info_nce_logits(q1.clone(), k2.clone(), queue.clone(), self.temperature);
        let logits_2 = info_nce_logits(q2.clone(), k1.clone(), queue, self.temperature);
        let targets = Tensor::<B, 1, Int>::zeros([n], &q1.device());
        let loss = (cross_entropy(logits_1.clone(), targets.clone())
            + cross_entropy(logits_2, targets.clone()))
            / 2.0;
        let mut metrics = pair_metrics(&loss, &q1, &q2);
        metrics.push_tensor("contrastive_accuracy", accuracy(logits_1.detach(), targets));
        let (k1, k2) = match collective {
            Some(collective) => (collective.gather_rows(k1)?, collective.gather_rows(k2)?),
            None => (k1, k2),
        };
        let keys = l2_normalize(Tensor::cat(vec![k1, k2], 0)).inner();
        Ok(StepOutput {
            loss,
            metrics,
            carry: keys,
        })
    }
}

impl<B: FusedAutodiffBackend> Objective<B> for MoCo<B> {
    type Batch = MultiViewBatch<B>;
    /// The keys of this step, enqueued after the optimizer step.
    type Carry = Tensor<B::InnerBackend, 2>;
    type Encoder = ImageEncoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, Self::Carry>> {
        self.step(batch, None)
    }

    /// Each worker's queries meet their own keys and the shared queue (a per-query loss, so
    /// the workers' mean is the global batch's); every worker enqueues every worker's keys, in
    /// rank order, so the queues stay equal and match one worker's on the whole batch.
    fn forward_step_parallel(
        &self,
        batch: MultiViewBatch<B>,
        collective: &Collective,
    ) -> Result<StepOutput<B, Self::Carry>> {
        self.step(batch, Some(collective))
    }

    fn after_optimizer_step(mut self, keys: Self::Carry, progress: TrainProgress) -> Self {
        let momentum = self.momentum.momentum(progress);
        self.key_branch = ema_update(self.key_branch, &self.online, momentum);
        self.queue = self.queue.map(|queue| {
            let [size, d] = queue.dims();
            let fresh = keys.dims()[0];
            let old = queue.inner().slice([0..size - fresh, 0..d]);
            Tensor::from_inner(Tensor::cat(vec![keys, old], 0)).set_require_grad(false)
        });
        self
    }

    fn encoder(&self) -> &ImageEncoder<B> {
        &self.online.encoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Ad;
    use burn::tensor::backend::AutodiffBackend;
    use pretrain_models::SmallCnnConfig;
    use pretrain_models::init::init_seeded;

    #[test]
    fn keys_enter_the_queue_front_and_the_oldest_leave() {
        let dev = Default::default();
        let encoder = ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![4]));
        let moco = init_seeded(&dev, 1001, || {
            MoCoConfig::new(encoder, MlpHeadConfig::new(4, vec![4], 3))
                .with_queue_size(5)
                .init::<Ad>(&dev)
                .unwrap()
        });
        let before: Vec<f32> = moco.queue.val().into_data().to_vec().unwrap();
        let keys = Tensor::<<Ad as AutodiffBackend>::InnerBackend, 2>::from_data(
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            &dev,
        );
        let progress = TrainProgress {
            step: 1,
            total_steps: 10,
        };
        let moco = moco.after_optimizer_step(keys, progress);
        let after: Vec<f32> = moco.queue.val().into_data().to_vec().unwrap();
        assert_eq!(&after[..6], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(&after[6..], &before[..9]);
        assert!(!moco.queue.val().is_require_grad());
    }
}
