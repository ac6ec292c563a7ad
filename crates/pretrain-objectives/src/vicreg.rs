//! VICReg: invariance (MSE between views), variance (hinge on each dimension's standard
//! deviation) and covariance (off-diagonal covariance) regularization.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{ImageEncoder, ImageEncoderConfig, MlpHeadConfig};

use crate::branch::{ProjectedEncoder, pair_metrics, project_views};
use crate::collective::Collective;
use crate::error::{ObjectiveError, Result, ensure};
use crate::objective::{Objective, StepOutput};
use crate::ops::off_diagonal_square_sum;

/// Weights of the three VICReg terms (paper defaults 25, 25, 1).
#[derive(Config, Debug, PartialEq)]
pub struct VicRegWeights {
    /// Invariance (MSE) weight.
    #[config(default = 25.0)]
    pub invariance: f64,
    /// Variance (standard-deviation hinge) weight.
    #[config(default = 25.0)]
    pub variance: f64,
    /// Covariance weight.
    #[config(default = 1.0)]
    pub covariance: f64,
}

/// The three VICReg terms, each `[1]`.
#[derive(Debug, Clone)]
pub struct VicRegTerms<B: Backend> {
    /// `mean((z1 - z2)^2)`.
    pub invariance: Tensor<B, 1>,
    /// `mean(relu(1 - std(z1))) / 2 + mean(relu(1 - std(z2))) / 2`, std with eps 1e-4.
    pub variance: Tensor<B, 1>,
    /// Sum of squared off-diagonal covariances of each view, divided by `d`, summed over views.
    pub covariance: Tensor<B, 1>,
}

impl<B: FusedBackend> VicRegTerms<B> {
    /// Weighted sum.
    pub fn loss(&self, weights: &VicRegWeights) -> Tensor<B, 1> {
        self.invariance.clone() * weights.invariance
            + self.variance.clone() * weights.variance
            + self.covariance.clone() * weights.covariance
    }
}

/// VICReg terms of paired embeddings `[n, d]` (unbiased variance and covariance, as the
/// reference implementation).
pub fn vicreg_terms<B: FusedBackend>(z1: Tensor<B, 2>, z2: Tensor<B, 2>) -> VicRegTerms<B> {
    let [n, d] = z1.dims();
    let invariance = (z1.clone() - z2.clone()).powi_scalar(2).mean();
    let std_hinge =
        |z: Tensor<B, 2>| relu(z.var(0).add_scalar(1e-4).sqrt().neg().add_scalar(1.0)).mean();
    let variance = (std_hinge(z1.clone()) + std_hinge(z2.clone())) / 2.0;
    let cov_penalty = |z: Tensor<B, 2>| {
        let centered = z.clone() - z.mean_dim(0);
        let cov = centered.clone().transpose().matmul(centered) / (n.max(2) - 1) as f64;
        off_diagonal_square_sum(cov) / d as f64
    };
    let covariance = cov_penalty(z1) + cov_penalty(z2);
    VicRegTerms {
        invariance,
        variance,
        covariance,
    }
}

/// Configuration of [`VicReg`].
#[derive(Config, Debug)]
pub struct VicRegConfig {
    /// The encoder to pre-train.
    pub encoder: ImageEncoderConfig,
    /// Expander (VICReg: three layers with batch norm, wide).
    pub projector: MlpHeadConfig,
    /// Term weights.
    #[config(default = "VicRegWeights::new()")]
    pub weights: VicRegWeights,
}

impl VicRegConfig {
    /// VICReg's expander scaled to `encoder`: two hidden layers of `width`, output `width`.
    pub fn vicreg(encoder: ImageEncoderConfig, width: usize) -> Self {
        let input = encoder.feature_dim();
        Self::new(encoder, MlpHeadConfig::vicreg(input, width))
    }

    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<VicReg<B>> {
        let w = &self.weights;
        ensure(
            w.invariance >= 0.0 && w.variance >= 0.0 && w.covariance >= 0.0,
            ObjectiveError::config,
            "VICReg",
            "weights",
            || format!("{w:?} must be >= 0"),
        )?;
        Ok(VicReg {
            branch: ProjectedEncoder::new("VICReg", &self.encoder, &self.projector, device)?,
            weights: self.weights.clone(),
        })
    }
}

/// VICReg objective on two-view batches.
#[derive(Module, Debug)]
pub struct VicReg<B: Backend> {
    /// Encoder and expander.
    pub branch: ProjectedEncoder<B>,
    weights: VicRegWeights,
}

impl<B: FusedAutodiffBackend> VicReg<B> {
    /// The loss and metrics of the projected views `z1`, `z2` (`[n, d]` each).
    fn pair_step(&self, (z1, z2): (Tensor<B, 2>, Tensor<B, 2>)) -> StepOutput<B, ()> {
        let terms = vicreg_terms(z1.clone(), z2.clone());
        let loss = terms.loss(&self.weights);
        let mut metrics = pair_metrics(&loss, &z1, &z2);
        metrics.push_tensor("invariance", terms.invariance.detach());
        metrics.push_tensor("variance", terms.variance.detach());
        metrics.push_tensor("covariance", terms.covariance.detach());
        StepOutput {
            loss,
            metrics,
            carry: (),
        }
    }
}

impl<B: FusedAutodiffBackend> Objective<B> for VicReg<B> {
    type Batch = MultiViewBatch<B>;
    type Carry = ();
    type Encoder = ImageEncoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, ()>> {
        Ok(self.pair_step(project_views(&self.branch, batch, "VICReg", None)?))
    }

    fn forward_step_parallel(
        &self,
        batch: MultiViewBatch<B>,
        collective: &Collective,
    ) -> Result<StepOutput<B, ()>> {
        let views = project_views(&self.branch, batch, "VICReg", Some(collective))?;
        Ok(collective.global_step(self.pair_step(views)))
    }

    fn encoder(&self) -> &ImageEncoder<B> {
        &self.branch.encoder
    }
}
