//! Denoising (and plain) autoencoding: reconstruct the clean image from a corrupted one.
//! Corruption (gaussian noise, masking noise) is drawn by the data pipeline as the second view
//! of an asymmetric pair, so it is seeded per item like every other augmentation.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use pretrain_data::augment::{AugmentOp, MaskingNoise, MultiView, Pipeline};
use pretrain_data::batch::MultiViewBatch;
use pretrain_models::{Autoencoder, AutoencoderConfig};
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use serde::{Deserialize, Serialize};

use crate::error::{ObjectiveError, Result, ensure};
use crate::monitor::loss_and_collapse_metrics;
use crate::objective::{Objective, StepOutput};

/// Reconstruction loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconstructionLoss {
    /// Mean squared error on the decoder's output.
    Mse,
    /// Binary cross-entropy with the decoder's output as logits; targets must lie in [0, 1]
    /// (un-normalized pixels).
    Bce,
}

/// Mean reconstruction loss of `output` against `target` (same shape), `[1]`. For
/// [`ReconstructionLoss::Bce`], `output` holds logits and the numerically stable form
/// `max(x, 0) - x t + ln(1 + e^-|x|)` is used (PyTorch's `BCEWithLogitsLoss`).
pub fn reconstruction_loss<B: FusedBackend, const D: usize>(
    output: Tensor<B, D>,
    target: Tensor<B, D>,
    kind: ReconstructionLoss,
) -> Tensor<B, 1> {
    match kind {
        ReconstructionLoss::Mse => (output - target).powi_scalar(2).mean(),
        ReconstructionLoss::Bce => {
            let softplus = output.clone().abs().neg().exp().log1p();
            (relu(output.clone()) - output * target + softplus).mean()
        }
    }
}

/// Configuration of [`Denoising`].
#[derive(Config, Debug)]
pub struct DenoisingConfig {
    /// The autoencoder.
    pub model: AutoencoderConfig,
    /// Reconstruction loss.
    #[config(default = "ReconstructionLoss::Mse")]
    pub loss: ReconstructionLoss,
    /// Corruption applied to the input view; empty for a plain autoencoder. Default: masking
    /// noise dropping 25% of the pixels.
    #[config(
        default = "Pipeline::new(vec![AugmentOp::MaskingNoise(MaskingNoise { drop: 0.25, fill: 0.0 })])"
    )]
    pub corruption: Pipeline,
}

impl DenoisingConfig {
    /// The views the data pipeline must produce: `clean` (the target), then `clean` followed
    /// by the corruption (the input).
    pub fn views(&self, clean: Pipeline) -> MultiView {
        let mut corrupted = clean.clone();
        corrupted
            .steps
            .extend(self.corruption.steps.iter().cloned());
        MultiView::asymmetric(clean, corrupted)
    }

    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Denoising<B>> {
        Ok(Denoising {
            model: self.model.init(device)?,
            loss: self.loss,
        })
    }
}

/// Denoising autoencoder objective on (clean, corrupted) view batches; a single view trains a
/// plain autoencoder.
#[derive(Module, Debug)]
pub struct Denoising<B: Backend> {
    /// The autoencoder.
    pub model: Autoencoder<B>,
    loss: ReconstructionLoss,
}

impl<B: FusedAutodiffBackend> Objective<B> for Denoising<B> {
    type Batch = MultiViewBatch<B>;
    type Carry = ();
    type Encoder = Autoencoder<B>;

    fn forward_step(&self, batch: MultiViewBatch<B>) -> Result<StepOutput<B, ()>> {
        let mut views = batch.views.into_iter();
        let clean = views.next().ok_or_else(|| crate::ObjectiveError::Batch {
            objective: "denoising autoencoder",
            what: "views",
            message: "are empty".into(),
        })?;
        let input = views.next().unwrap_or_else(|| clean.clone());
        ensure(
            input.dims() == clean.dims(),
            ObjectiveError::batch,
            "denoising autoencoder",
            "views",
            || format!("differ in shape: {:?} vs {:?}", clean.dims(), input.dims()),
        )?;
        if self.loss == ReconstructionLoss::Bce {
            let lowest: f64 = clean.clone().min().into_scalar().elem();
            let highest: f64 = clean.clone().max().into_scalar().elem();
            ensure(
                (0.0..=1.0).contains(&lowest) && (0.0..=1.0).contains(&highest),
                ObjectiveError::batch,
                "denoising autoencoder",
                "target",
                || {
                    format!(
                        "spans [{lowest}, {highest}]; BCE needs pixels in [0, 1] (drop the \
                         normalization or use MSE)"
                    )
                },
            )?;
        }
        let (code, output) = self.model.forward_with_code(input);
        let loss = reconstruction_loss(output, clean, self.loss);
        Ok(StepOutput {
            metrics: loss_and_collapse_metrics(&loss, code),
            loss,
            carry: (),
        })
    }

    fn encoder(&self) -> &Autoencoder<B> {
        &self.model
    }
}
