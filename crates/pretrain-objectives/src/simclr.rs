//! SimCLR: NT-Xent (normalized temperature-scaled cross-entropy) over in-batch negatives from
//! both views.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHeadConfig};

use crate::branch::{ProjectedEncoder, pair_metrics, project_views};
use crate::collective::Collective;
use crate::error::{ObjectiveError, Result, ensure};
use crate::objective::{Objective, StepOutput};
use crate::ops::{accuracy, cross_entropy, eye_mask, l2_normalize};

/// NT-Xent loss of paired embeddings `z1`, `z2` (`[n, d]` each, row `i` of both from the same
/// image): each of the `2n` embeddings must pick its partner among the other `2n - 1`
/// by cosine similarity divided by `temperature`. Returns the mean over the `2n` rows, `[1]`.
pub fn nt_xent<B: FusedBackend>(
    z1: Tensor<B, 2>,
    z2: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let (logits, targets) = nt_xent_logits(z1, z2, temperature);
    cross_entropy(logits, targets)
}

/// The `[2n, 2n]` similarity logits (self-similarity masked out) and each row's partner index.
fn nt_xent_logits<B: FusedBackend>(
    z1: Tensor<B, 2>,
    z2: Tensor<B, 2>,
    temperature: f64,
) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
    let n = z1.dims()[0];
    let device = z1.device();
    let z = l2_normalize(Tensor::cat(vec![z1, z2], 0)); // [2n, d]
    let logits = z.clone().matmul(z.transpose()) / temperature; // [2n, 2n]
    // A large finite value rather than -inf keeps the masked entries' gradient exactly zero.
    let logits = logits.mask_fill(eye_mask::<B>(2 * n, &device), -1e9);
    let targets = Tensor::<B, 1, Int>::arange(0..2 * n as i64, &device)
        .add_scalar(n as i64)
        .remainder_scalar(2 * n as i64);
    (logits, targets)
}

/// Configuration of [`SimClr`].
#[derive(Config, Debug)]
pub struct SimClrConfig {
    /// The encoder to pre-train.
    pub encoder: ImageEncoderConfig,
    /// Projection head (SimCLR: one hidden layer of the encoder width, 128-d output).
    pub projector: MlpHeadConfig,
    /// Softmax temperature.
    #[config(default = 0.2)]
    pub temperature: f64,
}

impl SimClrConfig {
    /// SimCLR's head on `encoder`: hidden layer of the encoder width, 128-d output, temperature 0.2.
    pub fn simclr(encoder: ImageEncoderConfig) -> Self {
        let width = encoder.feature_dim();
        Self::new(encoder, MlpHeadConfig::simclr(width))
    }

    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<SimClr<B>> {
        ensure(
            self.temperature > 0.0,
            ObjectiveError::config,
            "SimCLR",
            "temperature",
            || format!("{} must be > 0", self.temperature),
        )?;
        Ok(SimClr {
            branch: ProjectedEncoder::new("SimCLR", &self.encoder, &self.projector, device)?,
            temperature: self.temperature,
        })
    }
}

/// SimCLR objective on two-view batches.
#[derive(Module, Debug)]
pub struct SimClr<B: Backend> {
    /// Encoder and projector.
    pub branch: ProjectedEncoder<B>,
    temperature: f64,
}

impl<B: FusedAutodiffBackend> SimClr<B> {
    /// The loss and metrics of the projected views `z1`, `z2` (`[n, d]` each).
    fn pair_step(&self, (z1, z2): (Tensor<B, 2>, Tensor<B, 2>)) -> StepOutput<B, ()> {
        let (logits, targets) = nt_xent_logits(z1.clone(), z2.clone(), self.temperature);
        let loss = cross_entropy(logits.clone(), targets.clone());
        let mut metrics = pair_metrics(&loss, &z1, &z2);
        metrics.push_tensor("contrastive_accuracy", accuracy(logits.detach(), targets));
        StepOutput {
            loss,
            metrics,
            carry: (),
        }
    }
}

impl<B: FusedAutodiffBackend> Objective<B> for SimClr<B> {
    type Batch = MultiViewBatch<B>;
    type Carry = ();
    type Encoder = ImageEncoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, ()>> {
        Ok(self.pair_step(project_views(&self.branch, batch, "SimCLR", None)?))
    }

    fn forward_step_parallel(
        &self,
        batch: MultiViewBatch<B>,
        collective: &Collective,
    ) -> Result<StepOutput<B, ()>> {
        let views = project_views(&self.branch, batch, "SimCLR", Some(collective))?;
        Ok(collective.global_step(self.pair_step(views)))
    }

    fn encoder(&self) -> &ImageEncoder<B> {
        &self.branch.encoder
    }
}
