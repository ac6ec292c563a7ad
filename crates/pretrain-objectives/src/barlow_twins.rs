//! Barlow Twins: the cross-correlation of the two views' batch-standardized embeddings is
//! pushed toward the identity (invariance on the diagonal, redundancy reduction off it).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHeadConfig};

use crate::branch::{ProjectedEncoder, pair_metrics, project_views};
use crate::collective::Collective;
use crate::error::{ObjectiveError, Result, ensure};
use crate::objective::{Objective, StepOutput};
use crate::ops::{diagonal, off_diagonal_square_sum};

/// The two terms of the Barlow Twins loss.
#[derive(Debug, Clone)]
pub struct BarlowTwinsTerms<B: Backend> {
    /// `sum_i (1 - C_ii)^2`, `[1]`.
    pub on_diagonal: Tensor<B, 1>,
    /// `sum_{i != j} C_ij^2`, `[1]`.
    pub off_diagonal: Tensor<B, 1>,
}

impl<B: FusedBackend> BarlowTwinsTerms<B> {
    /// `on_diagonal + lambda * off_diagonal`.
    pub fn loss(&self, lambda: f64) -> Tensor<B, 1> {
        self.on_diagonal.clone() + self.off_diagonal.clone() * lambda
    }
}

/// Columns standardized over the batch like `BatchNorm1d(affine=False)` in training mode
/// (biased variance, eps 1e-5): `[n, d] -> [n, d]`.
fn batch_standardize<B: FusedBackend>(z: Tensor<B, 2>) -> Tensor<B, 2> {
    let (var, mean) = z.clone().var_mean_bias(0);
    (z - mean) / var.add_scalar(1e-5).sqrt()
}

/// Barlow Twins terms of paired embeddings `[n, d]`: `C = bn(z1)^T bn(z2) / n`.
pub fn barlow_twins_terms<B: FusedBackend>(
    z1: Tensor<B, 2>,
    z2: Tensor<B, 2>,
) -> BarlowTwinsTerms<B> {
    let n = z1.dims()[0];
    let c = batch_standardize(z1)
        .transpose()
        .matmul(batch_standardize(z2))
        / n as f64; // [d, d]
    BarlowTwinsTerms {
        on_diagonal: diagonal(c.clone())
            .neg()
            .add_scalar(1.0)
            .powi_scalar(2)
            .sum(),
        off_diagonal: off_diagonal_square_sum(c),
    }
}

/// Configuration of [`BarlowTwins`].
#[derive(Config, Debug)]
pub struct BarlowTwinsConfig {
    /// The encoder to pre-train.
    pub encoder: ImageEncoderConfig,
    /// Projection head (Barlow Twins: wide, three layers with batch norm).
    pub projector: MlpHeadConfig,
    /// Weight of the off-diagonal (redundancy) term.
    #[config(default = 0.0051)]
    pub lambda: f64,
}

impl BarlowTwinsConfig {
    /// Barlow Twins' head scaled to `encoder`: two hidden layers of `width`, output `width`.
    pub fn barlow_twins(encoder: ImageEncoderConfig, width: usize) -> Self {
        let input = encoder.feature_dim();
        Self::new(
            encoder,
            MlpHeadConfig::new(input, vec![width, width], width),
        )
    }

    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<BarlowTwins<B>> {
        ensure(
            self.lambda >= 0.0,
            ObjectiveError::config,
            "Barlow Twins",
            "lambda",
            || format!("{} must be >= 0", self.lambda),
        )?;
        Ok(BarlowTwins {
            branch: ProjectedEncoder::new("Barlow Twins", &self.encoder, &self.projector, device)?,
            lambda: self.lambda,
        })
    }
}

/// Barlow Twins objective on two-view batches.
#[derive(Module, Debug)]
pub struct BarlowTwins<B: Backend> {
    /// Encoder and projector.
    pub branch: ProjectedEncoder<B>,
    lambda: f64,
}

impl<B: FusedAutodiffBackend> BarlowTwins<B> {
    /// The loss and metrics of the projected views `z1`, `z2` (`[n, d]` each).
    fn pair_step(&self, (z1, z2): (Tensor<B, 2>, Tensor<B, 2>)) -> StepOutput<B, ()> {
        let terms = barlow_twins_terms(z1.clone(), z2.clone());
        let loss = terms.loss(self.lambda);
        let mut metrics = pair_metrics(&loss, &z1, &z2);
        metrics.push_tensor("on_diagonal", terms.on_diagonal.detach());
        metrics.push_tensor("off_diagonal", terms.off_diagonal.detach());
        StepOutput {
            loss,
            metrics,
            carry: (),
        }
    }
}

impl<B: FusedAutodiffBackend> Objective<B> for BarlowTwins<B> {
    type Batch = MultiViewBatch<B>;
    type Carry = ();
    type Encoder = ImageEncoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, ()>> {
        Ok(self.pair_step(project_views(&self.branch, batch, "Barlow Twins", None)?))
    }

    fn forward_step_parallel(
        &self,
        batch: MultiViewBatch<B>,
        collective: &Collective,
    ) -> Result<StepOutput<B, ()>> {
        let views = project_views(&self.branch, batch, "Barlow Twins", Some(collective))?;
        Ok(collective.global_step(self.pair_step(views)))
    }

    fn encoder(&self) -> &ImageEncoder<B> {
        &self.branch.encoder
    }
}
