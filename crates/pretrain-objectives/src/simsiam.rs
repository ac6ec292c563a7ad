//! SimSiam: a predictor on one branch matches the other branch's projection under a
//! stop-gradient; no negatives, no momentum encoder.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHead, MlpHeadConfig};

use crate::branch::{ProjectedEncoder, pair_metrics, two_views};
use crate::error::Result;
use crate::objective::{Objective, StepOutput};
use crate::ops::cosine_similarity;

/// Negative cosine similarity `-mean(cos(p, z))` with `z` detached (the stop-gradient), `[1]`.
pub fn negative_cosine<B: FusedBackend>(p: Tensor<B, 2>, z: Tensor<B, 2>) -> Tensor<B, 1> {
    cosine_similarity(p, z.detach()).mean().neg()
}

/// Configuration of [`SimSiam`].
#[derive(Config, Debug)]
pub struct SimSiamConfig {
    /// The encoder to pre-train.
    pub encoder: ImageEncoderConfig,
    /// Projection head (SimSiam: batch norm on the output too).
    pub projector: MlpHeadConfig,
    /// Hidden width of the predictor (SimSiam: a quarter of the projection width).
    pub predictor_hidden: usize,
}

impl SimSiamConfig {
    /// SimSiam's heads on `encoder`: projector `width -> width -> dim` with output batch norm,
    /// predictor bottleneck `dim / 4`.
    pub fn simsiam(encoder: ImageEncoderConfig, dim: usize) -> Self {
        let width = encoder.feature_dim();
        Self::new(
            encoder,
            MlpHeadConfig::new(width, vec![width], dim).with_output_norm(true),
            (dim / 4).max(1),
        )
    }

    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<SimSiam<B>> {
        Ok(SimSiam {
            branch: ProjectedEncoder::new("SimSiam", &self.encoder, &self.projector, device)?,
            predictor: MlpHeadConfig::predictor(self.projector.output, self.predictor_hidden)
                .init(device)?,
        })
    }
}

/// SimSiam objective on two-view batches.
#[derive(Module, Debug)]
pub struct SimSiam<B: Backend> {
    /// Encoder and projector.
    pub branch: ProjectedEncoder<B>,
    /// Predictor MLP.
    pub predictor: MlpHead<B>,
}

impl<B: FusedAutodiffBackend> Objective<B> for SimSiam<B> {
    type Batch = MultiViewBatch<B>;
    type Carry = ();
    type Encoder = ImageEncoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, ()>> {
        let (a, b) = two_views(batch, "SimSiam")?;
        let (z1, z2) = self.branch.project_pair(a, b);
        let p1 = self.predictor.forward(z1.clone());
        let p2 = self.predictor.forward(z2.clone());
        let loss = (negative_cosine(p1, z2.clone()) + negative_cosine(p2, z1.clone())) / 2.0;
        Ok(StepOutput {
            metrics: pair_metrics(&loss, &z1, &z2),
            loss,
            carry: (),
        })
    }

    fn encoder(&self) -> &ImageEncoder<B> {
        &self.branch.encoder
    }
}
