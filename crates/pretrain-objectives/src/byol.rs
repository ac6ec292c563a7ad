//! BYOL: the online branch's predictor matches an EMA target's projection of the other view;
//! the target gets no gradient and moves by a cosine momentum schedule.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHead, MlpHeadConfig};

use crate::branch::{ProjectedEncoder, pair_metrics, two_views};
use crate::error::{ObjectiveError, Result, ensure};
use crate::objective::{Objective, StepOutput, TrainProgress};
use crate::ops::cosine_similarity;
use crate::target::{MomentumSchedule, ema_update, momentum_target};

/// BYOL's regression loss `mean(2 - 2 cos(p, z))` with `z` detached, `[1]`.
pub fn byol_loss<B: FusedBackend>(p: Tensor<B, 2>, z: Tensor<B, 2>) -> Tensor<B, 1> {
    cosine_similarity(p, z.detach())
        .mean()
        .mul_scalar(-2.0)
        .add_scalar(2.0)
}

/// Configuration of [`Byol`].
#[derive(Config, Debug)]
pub struct ByolConfig {
    /// The encoder to pre-train.
    pub encoder: ImageEncoderConfig,
    /// Projection head (BYOL: hidden 4096 with batch norm, 256-d output).
    pub projector: MlpHeadConfig,
    /// Hidden width of the predictor.
    pub predictor_hidden: usize,
    /// Target momentum schedule (BYOL: 0.996 -> 1, cosine).
    #[config(default = "MomentumSchedule::new()")]
    pub momentum: MomentumSchedule,
}

impl ByolConfig {
    /// BYOL's heads scaled to `encoder`: hidden `hidden`, output `dim`, predictor hidden `hidden`.
    pub fn byol(encoder: ImageEncoderConfig, hidden: usize, dim: usize) -> Self {
        let input = encoder.feature_dim();
        Self::new(encoder, MlpHeadConfig::byol(input, hidden, dim), hidden)
    }

    /// Builds the objective; the target starts as a copy of the online branch.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Byol<B>> {
        ensure(
            self.momentum.is_valid(),
            ObjectiveError::config,
            "BYOL",
            "momentum",
            || format!("{:?} must lie in [0, 1]", self.momentum),
        )?;
        let online = ProjectedEncoder::new("BYOL", &self.encoder, &self.projector, device)?;
        let target = ProjectedEncoder::new("BYOL", &self.encoder, &self.projector, device)?;
        Ok(Byol {
            target: momentum_target(target, &online),
            online,
            predictor: MlpHeadConfig::predictor(self.projector.output, self.predictor_hidden)
                .init(device)?,
            momentum: self.momentum.clone(),
        })
    }
}

/// BYOL objective on two-view batches.
#[derive(Module, Debug)]
pub struct Byol<B: Backend> {
    /// Online encoder and projector (trained).
    pub online: ProjectedEncoder<B>,
    /// Online predictor (trained).
    pub predictor: MlpHead<B>,
    /// Target encoder and projector (EMA of `online`, no gradient).
    pub target: ProjectedEncoder<B>,
    momentum: MomentumSchedule,
}

impl<B: FusedAutodiffBackend> Objective<B> for Byol<B> {
    type Batch = MultiViewBatch<B>;
    type Carry = ();
    type Encoder = ImageEncoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, ()>> {
        let (a, b) = two_views(batch, "BYOL")?;
        let (z1, z2) = self.online.project_pair(a.clone(), b.clone());
        let (t1, t2) = self.target.project_pair(a, b);
        let p1 = self.predictor.forward(z1.clone());
        let p2 = self.predictor.forward(z2.clone());
        // Symmetrized as in the paper: both views go through both branches.
        let loss = byol_loss(p1, t2.detach()) + byol_loss(p2, t1.detach());
        Ok(StepOutput {
            metrics: pair_metrics(&loss, &z1, &z2),
            loss,
            carry: (),
        })
    }

    fn after_optimizer_step(mut self, _: (), progress: TrainProgress) -> Self {
        let momentum = self.momentum.momentum(progress);
        self.target = ema_update(self.target, &self.online, momentum);
        self
    }

    fn encoder(&self) -> &ImageEncoder<B> {
        &self.online.encoder
    }
}
