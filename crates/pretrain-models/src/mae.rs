//! Masked autoencoder (MAE): a ViT encoder that sees only the visible patches and a light
//! decoder that fills in mask tokens and predicts the pixels of every patch.

use crate::fused::{self, FusedBackend};
use crate::norm::{LayerNorm, LayerNormConfig};
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::block::{TransformerBlock, TransformerBlockConfig};
use crate::error::{ModelError, Result, ensure};
use crate::init::{InitScheme, truncated_normal};
use crate::layers::linear;
use crate::pos_embed::sincos_2d_tensor;
use crate::size;
use crate::vit::{Vit, VitConfig};

/// Configuration of an [`Mae`].
#[derive(Config, Debug)]
pub struct MaeConfig {
    /// The encoder.
    pub encoder: VitConfig,
    /// Decoder token width.
    #[config(default = 64)]
    pub decoder_dim: usize,
    /// Decoder blocks.
    #[config(default = 2)]
    pub decoder_depth: usize,
    /// Decoder attention heads.
    #[config(default = 4)]
    pub decoder_heads: usize,
    /// Decoder feed-forward width as a multiple of `decoder_dim`.
    #[config(default = 4.0)]
    pub decoder_mlp_ratio: f64,
}

impl MaeConfig {
    /// MAE on [`VitConfig::vit_tiny_28`] with a 2-block, width-64 decoder.
    pub fn mae_vit_tiny_28() -> Self {
        Self::new(VitConfig::vit_tiny_28())
    }

    /// Feed-forward width of a decoder block (`decoder_dim * decoder_mlp_ratio`, rounded).
    pub fn decoder_mlp_width(&self) -> usize {
        (self.decoder_dim as f64 * self.decoder_mlp_ratio).round() as usize
    }

    fn decoder_block(&self) -> TransformerBlockConfig {
        TransformerBlockConfig::new(
            self.decoder_dim,
            self.decoder_heads,
            self.decoder_mlp_width(),
        )
        .with_init(InitScheme::XavierUniform)
        .with_norm_eps(self.encoder.norm_eps)
    }

    /// Parameters of the encoder and the decoder.
    pub fn num_params(&self) -> u128 {
        let (d, dd) = (self.encoder.d_model, self.decoder_dim);
        let patch_dim = size::product(&[
            self.encoder.patch_size,
            self.encoder.patch_size,
            self.encoder.channels,
        ]);
        size::sum([
            self.encoder.num_params(),
            size::linear(d, dd, true),
            dd as u128,
            self.decoder_block()
                .num_params()
                .saturating_mul(self.decoder_depth as u128),
            size::layer_norm(dd),
            patch_dim
                .saturating_mul(dd as u128)
                .saturating_add(patch_dim),
        ])
    }

    /// Checks encoder and decoder, and that the model fits [`size::MAX_PARAMETERS`].
    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        size::check("MAE", self.num_params())?;
        ensure(
            self.decoder_depth > 0,
            ModelError::config,
            "MAE",
            "decoder_depth",
            || "must be at least 1".into(),
        )?;
        ensure(
            self.decoder_dim.is_multiple_of(4),
            ModelError::config,
            "MAE",
            "decoder_dim",
            || {
                format!(
                    "{} must be a multiple of 4 for sin-cos positions",
                    self.decoder_dim
                )
            },
        )?;
        self.decoder_block().validate()
    }

    /// Builds encoder and decoder (MAE initialization: Xavier linear layers, N(0, 0.02) tokens).
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Mae<B>> {
        self.validate()?;
        let encoder = self.encoder.init(device)?;
        let block = self.decoder_block();
        Ok(Mae {
            encoder,
            decoder_embed: linear(
                self.encoder.d_model,
                self.decoder_dim,
                InitScheme::XavierUniform,
                true,
                device,
            ),
            mask_token: Param::initialized(
                ParamId::new(),
                truncated_normal([1, 1, self.decoder_dim], 0.02, device).require_grad(),
            ),
            decoder_blocks: (0..self.decoder_depth)
                .map(|_| block.init(device))
                .collect::<Result<_>>()?,
            decoder_norm: LayerNormConfig::new(self.decoder_dim)
                .with_epsilon(self.encoder.norm_eps)
                .init(device),
            decoder_pred: linear(
                self.decoder_dim,
                self.encoder.patch_dim(),
                InitScheme::XavierUniform,
                true,
                device,
            ),
            grid: self.encoder.grid(),
            patch_size: self.encoder.patch_size,
        })
    }
}

/// Masked autoencoder.
#[derive(Module, Debug)]
pub struct Mae<B: Backend> {
    /// ViT encoder (the part kept for fine-tuning).
    pub encoder: Vit<B>,
    /// Encoder width to decoder width.
    pub decoder_embed: Linear<B>,
    /// Token standing for a hidden patch.
    pub mask_token: Param<Tensor<B, 3>>,
    /// Decoder blocks.
    pub decoder_blocks: Vec<TransformerBlock<B>>,
    /// Decoder final norm.
    pub decoder_norm: LayerNorm<B>,
    /// Per-token pixel prediction.
    pub decoder_pred: Linear<B>,
    /// Patches `[rows, columns]`.
    grid: [usize; 2],
    patch_size: usize,
}

impl<B: FusedBackend> Mae<B> {
    /// Predicts every patch from the visible ones.
    ///
    /// `images`: `[batch, channels, h, w]`; `keep`: `[batch, n_keep]` visible patch indices;
    /// `restore`: `[batch, patches]` position of each patch in `keep ++ masked` (both from
    /// `pretrain_data::mask::PatchMaskBatch`). Returns `[batch, patches, patch_dim]` in
    /// [`patchify`] layout.
    pub fn forward(
        &self,
        images: Tensor<B, 4>,
        keep: Tensor<B, 2, Int>,
        restore: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        self.forward_with_latent(images, keep, restore).1
    }

    /// [`Mae::forward`] that also returns the encoder's output on the visible patches,
    /// `[batch, 1 + n_keep, d_enc]` (for monitoring the representation).
    pub fn forward_with_latent(
        &self,
        images: Tensor<B, 4>,
        keep: Tensor<B, 2, Int>,
        restore: Tensor<B, 2, Int>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let latent = self.encoder.forward_visible(images, keep); // [batch, 1 + n_keep, d_enc]
        let x = fused::linear_module(&self.decoder_embed, latent.clone()); // [batch, 1 + n_keep, d_dec]
        let [b, t, d] = x.dims();
        let n = restore.dims()[1];
        let cls_device = x.device();
        let cls = x.clone().slice([0..b, 0..1, 0..d]);
        let visible = x.slice([0..b, 1..t, 0..d]);
        let masks = self
            .mask_token
            .val()
            .expand([b as i64, (n + 1 - t) as i64, d as i64]);
        let shuffled = Tensor::cat(vec![visible, masks], 1); // [batch, patches, d_dec], keep ++ masked
        let index = restore
            .reshape([b, n, 1])
            .expand([b as i64, n as i64, d as i64]);
        let tokens = shuffled.gather(1, index); // image order
        let mut x =
            Tensor::cat(vec![cls, tokens], 1) + sincos_2d_tensor(self.grid, d, true, &cls_device);
        for block in &self.decoder_blocks {
            x = block.forward(x, None);
        }
        let x = self.decoder_norm.forward(x);
        let x = fused::linear_module(&self.decoder_pred, x);
        let p = x.dims()[2];
        (latent, x.slice([0..b, 1..n + 1, 0..p]))
    }

    /// Patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.patch_size
    }

    /// Input `[height, width]` in pixels.
    pub fn image_hw(&self) -> [usize; 2] {
        self.grid.map(|patches| patches * self.patch_size)
    }
}

/// `[batch, channels, h, w] -> [batch, patches, patch * patch * channels]`, patches row-major,
/// each flattened as (row, column, channel) like the reference MAE.
pub fn patchify<B: FusedBackend>(images: Tensor<B, 4>, patch: usize) -> Tensor<B, 3> {
    let [b, c, h, w] = images.dims();
    let (gh, gw) = (h / patch, w / patch);
    images
        .reshape([b, c, gh, patch, gw, patch])
        .permute([0, 2, 4, 3, 5, 1]) // [b, gh, gw, p, p, c]
        .reshape([b, gh * gw, patch * patch * c])
}

/// Inverse of [`patchify`] for `channels` channels and a grid of `[rows, columns]` patches.
pub fn unpatchify<B: FusedBackend>(
    patches: Tensor<B, 3>,
    patch: usize,
    channels: usize,
    [rows, columns]: [usize; 2],
) -> Tensor<B, 4> {
    let [b, _, _] = patches.dims();
    patches
        .reshape([b, rows, columns, patch, patch, channels])
        .permute([0, 5, 1, 3, 2, 4]) // [b, c, rows, p, columns, p]
        .reshape([b, channels, rows * patch, columns * patch])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use crate::init::init_seeded;
    use burn::tensor::{Distribution, TensorData};

    use crate::testing::TestBackend as B;

    #[test]
    fn patchify_round_trip_and_layout() {
        let dev = Default::default();
        let images = Tensor::<B, 4>::from_data(
            TensorData::new(
                (0..2 * 16).map(|v| v as f32).collect::<Vec<_>>(),
                [1, 2, 4, 4],
            ),
            &dev,
        );
        let p = patchify(images.clone(), 2);
        assert_eq!(p.dims(), [1, 4, 8]);
        // First patch: pixels (0,0),(0,1),(1,0),(1,1), channels interleaved.
        let first: Vec<f32> = p
            .clone()
            .slice([0..1, 0..1, 0..8])
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(first, vec![0.0, 16.0, 1.0, 17.0, 4.0, 20.0, 5.0, 21.0]);
        let back = unpatchify(p, 2, 2, [2, 2]);
        assert_eq!(back.into_data(), images.into_data());
    }

    #[test]
    fn predicts_every_patch() {
        let dev = Default::default();
        let config = MaeConfig::new(VitConfig::new(8, 2, 1, 16, 1, 2))
            .with_decoder_dim(8)
            .with_decoder_depth(1)
            .with_decoder_heads(2);
        let mae = init_seeded(&dev, 1001, || config.init::<B>(&dev).unwrap());
        let images = host_random::<B, 4>([2, 1, 8, 8], Distribution::Default, 1, &dev);
        // 16 patches, keep 4.
        let mask = crate::testing::fixed_mask::<B>(&[0, 3, 8, 12], 16, 2, &dev);
        let (keep, restore) = (mask.keep, mask.restore);
        assert_eq!(mae.forward(images, keep, restore).dims(), [2, 16, 4]);
        assert!(
            MaeConfig::new(VitConfig::new(8, 2, 1, 16, 1, 2))
                .with_decoder_dim(6)
                .init::<B>(&dev)
                .is_err()
        );
    }
}
