//! SimMIM: hidden patches are replaced by a learned mask token inside the encoder, a linear
//! head predicts their raw pixels, L1 loss on hidden patches only.

use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_data::mask::MaskedImageBatch;
use pretrain_models::layers::linear;
use pretrain_models::{FusedAutodiffBackend, FusedBackend};
use pretrain_models::{InitScheme, Vit, VitConfig, patchify, truncated_normal};

use crate::error::{ObjectiveError, Result, ensure};
use crate::mae::check_masked_batch;
use crate::masked_image::MaskedImageConfig;
use crate::monitor::loss_and_collapse_metrics;
use crate::objective::{Objective, StepOutput};

/// Mean over hidden patches of the per-patch mean absolute error: `pred`, `target`
/// `[b, n, p]`, `hidden` `[b, n]` -> `[1]` (SimMIM's L1 on masked pixels).
pub fn masked_patch_l1<B: FusedBackend>(
    pred: Tensor<B, 3>,
    target: Tensor<B, 3>,
    hidden: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [b, n, _] = pred.dims();
    let per_patch = (pred - target).abs().mean_dim(2).reshape([b, n]);
    (per_patch * hidden.clone()).sum() / hidden.sum().clamp_min(1.0)
}

/// Configuration of [`SimMim`].
#[derive(Config, Debug)]
pub struct SimMimConfig {
    /// The ViT encoder.
    pub encoder: VitConfig,
    /// Share of patches hidden (SimMIM: 0.6).
    #[config(default = 0.6)]
    pub mask_ratio: f32,
}

impl MaskedImageConfig for SimMimConfig {
    fn vit(&self) -> &VitConfig {
        &self.encoder
    }

    fn mask_ratio(&self) -> f32 {
        self.mask_ratio
    }
}

impl SimMimConfig {
    /// Builds the objective (mask token N(0, 0.02), Xavier linear head).
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<SimMim<B>> {
        ensure(
            (0.0..1.0).contains(&self.mask_ratio),
            ObjectiveError::config,
            "SimMIM",
            "mask_ratio",
            || format!("{} must lie in [0, 1)", self.mask_ratio),
        )?;
        let d = self.encoder.d_model;
        Ok(SimMim {
            encoder: self.encoder.init(device)?,
            mask_token: Param::initialized(
                ParamId::new(),
                truncated_normal([1, 1, d], 0.02, device).require_grad(),
            ),
            decoder: linear(
                d,
                self.encoder.patch_dim(),
                InitScheme::XavierUniform,
                true,
                device,
            ),
        })
    }
}

/// SimMIM objective on masked image batches.
#[derive(Module, Debug)]
pub struct SimMim<B: Backend> {
    /// The ViT encoder.
    pub encoder: Vit<B>,
    /// Token replacing hidden patch embeddings, `[1, 1, d_model]`.
    pub mask_token: Param<Tensor<B, 3>>,
    /// Per-token pixel prediction head.
    pub decoder: Linear<B>,
}

impl<B: FusedAutodiffBackend> Objective<B> for SimMim<B> {
    type Batch = MaskedImageBatch<B>;
    type Carry = ();
    type Encoder = Vit<B>;

    fn forward_step(&self, batch: MaskedImageBatch<B>) -> Result<StepOutput<B, ()>> {
        let patch = self.encoder.patch_size();
        check_masked_batch(&batch, "SimMIM", self.encoder.image_hw(), patch)?;
        let device = batch.images.device();
        let embedded = self.encoder.embed_patches(batch.images.clone()); // [b, n, d], positions in
        let [b, n, d] = embedded.dims();
        let positions = self
            .encoder
            .positions(&device)
            .slice([0..1, 1..n + 1, 0..d]);
        let hidden = batch.mask.hidden.clone().reshape([b, n, 1]);
        let tokens = embedded * hidden.clone().neg().add_scalar(1.0)
            + (self.mask_token.val() + positions) * hidden;
        let encoded = self.encoder.encode_patch_tokens(tokens); // [b, 1 + n, d]
        let patch_tokens = encoded.slice([0..b, 1..n + 1, 0..d]);
        let pred = self.decoder.forward(patch_tokens.clone());
        let loss = masked_patch_l1(pred, patchify(batch.images, patch), batch.mask.hidden);
        Ok(StepOutput {
            metrics: loss_and_collapse_metrics(&loss, patch_tokens.reshape([b * n, d])),
            loss,
            carry: (),
        })
    }

    fn encoder(&self) -> &Vit<B> {
        &self.encoder
    }
}
