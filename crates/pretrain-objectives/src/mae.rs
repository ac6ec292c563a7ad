//! Masked autoencoding (MAE): reconstruct the pixels of hidden patches from the visible ones,
//! loss on hidden patches only, optionally against per-patch normalized pixels.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_data::mask::MaskedImageBatch;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{Mae, MaeConfig, Vit, VitConfig, patchify};

use crate::error::{ObjectiveError, Result, ensure};
use crate::masked_image::MaskedImageConfig;
use crate::monitor::loss_and_collapse_metrics;
use crate::objective::{Objective, StepOutput};

/// Per-patch normalized pixels (MAE's `norm_pix_loss` target): each patch minus its mean,
/// divided by `sqrt(unbiased variance + 1e-6)`: `[b, n, p] -> [b, n, p]`.
pub fn normalize_patches<B: FusedBackend>(patches: Tensor<B, 3>) -> Tensor<B, 3> {
    let (var, mean) = patches.clone().var_mean(2);
    (patches - mean) / var.add_scalar(1e-6).sqrt()
}

/// Mean over hidden patches of the per-patch mean squared error: `pred`, `target`
/// `[b, n, p]`, `hidden` `[b, n]` (1 hidden, 0 visible) -> `[1]`.
pub fn masked_patch_mse<B: FusedBackend>(
    pred: Tensor<B, 3>,
    target: Tensor<B, 3>,
    hidden: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [b, n, _] = pred.dims();
    let per_patch = (pred - target).powi_scalar(2).mean_dim(2).reshape([b, n]);
    (per_patch * hidden.clone()).sum() / hidden.sum().clamp_min(1.0)
}

/// Configuration of [`MaeObjective`].
#[derive(Config, Debug)]
pub struct MaeObjectiveConfig {
    /// The ViT encoder and the decoder.
    pub model: MaeConfig,
    /// Share of patches hidden (the data pipeline's masker is built from it).
    #[config(default = 0.75)]
    pub mask_ratio: f32,
    /// Predict per-patch normalized pixels (MAE's better-representation setting).
    #[config(default = true)]
    pub norm_pix_loss: bool,
}

impl MaskedImageConfig for MaeObjectiveConfig {
    fn vit(&self) -> &VitConfig {
        &self.model.encoder
    }

    fn mask_ratio(&self) -> f32 {
        self.mask_ratio
    }
}

impl MaeObjectiveConfig {
    /// Builds the objective.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<MaeObjective<B>> {
        ensure(
            (0.0..1.0).contains(&self.mask_ratio),
            ObjectiveError::config,
            "MAE",
            "mask_ratio",
            || format!("{} must lie in [0, 1)", self.mask_ratio),
        )?;
        Ok(MaeObjective {
            model: self.model.init(device)?,
            norm_pix_loss: self.norm_pix_loss,
        })
    }
}

/// MAE objective on masked image batches.
#[derive(Module, Debug)]
pub struct MaeObjective<B: Backend> {
    /// Encoder and decoder.
    pub model: Mae<B>,
    norm_pix_loss: bool,
}

/// Checks that images are `[height, width]` and masks cover their patches.
pub(crate) fn check_masked_batch<B: FusedBackend>(
    batch: &MaskedImageBatch<B>,
    objective: &'static str,
    [height, width]: [usize; 2],
    patch: usize,
) -> Result<()> {
    let [_, _, h, w] = batch.images.dims();
    ensure(
        [h, w] == [height, width],
        ObjectiveError::batch,
        objective,
        "images",
        || format!("are {h}x{w}; the encoder takes {height}x{width}"),
    )?;
    let n = batch.mask.hidden.dims()[1];
    let expected = (height / patch) * (width / patch);
    ensure(
        n == expected,
        ObjectiveError::batch,
        objective,
        "mask",
        || format!("covers {n} patches; the encoder has {expected}"),
    )
}

impl<B: FusedAutodiffBackend> Objective<B> for MaeObjective<B> {
    type Batch = MaskedImageBatch<B>;
    type Carry = ();
    type Encoder = Vit<B>;

    fn forward_step(&self, batch: MaskedImageBatch<B>) -> Result<StepOutput<B, ()>> {
        let patch = self.model.patch_size();
        check_masked_batch(&batch, "MAE", self.model.image_hw(), patch)?;
        let mask = batch.mask;
        let (latent, pred) =
            self.model
                .forward_with_latent(batch.images.clone(), mask.keep, mask.restore);
        let target = patchify(batch.images, patch);
        let target = if self.norm_pix_loss {
            normalize_patches(target)
        } else {
            target
        };
        let loss = masked_patch_mse(pred, target, mask.hidden);
        let [b, t, d] = latent.dims();
        let tokens = latent.slice([0..b, 1..t, 0..d]).reshape([b * (t - 1), d]);
        Ok(StepOutput {
            metrics: loss_and_collapse_metrics(&loss, tokens),
            loss,
            carry: (),
        })
    }

    fn encoder(&self) -> &Vit<B> {
        &self.model.encoder
    }
}
