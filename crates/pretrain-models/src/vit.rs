//! Vision transformer (ViT): patch embedding, CLS token, position embeddings, pre-norm blocks.

use crate::fused::{FusedBackend, conv2d_module};
use crate::norm::{LayerNorm, LayerNormConfig};
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::block::{TransformerBlock, TransformerBlockConfig, TransformerStack};
use crate::error::{ModelError, Result, ensure};
use crate::init::{InitScheme, truncated_normal};
use crate::pos_embed::sincos_2d_tensor;
use crate::size;

/// Which position embeddings a ViT uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionEmbedding {
    /// Fixed 2-D sine-cosine (MAE); no parameters.
    SinCos,
    /// Learned, initialized with a truncated normal (original ViT).
    Learned,
}

/// How `forward_features` pools the token sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The CLS token.
    Cls,
    /// Mean of the patch tokens.
    Mean,
}

/// Configuration of a [`Vit`].
#[derive(Config, Debug)]
pub struct VitConfig {
    /// Height of the input image in pixels (its side when square).
    pub image_size: usize,
    /// Side of a (square) patch; must divide the image's height and width.
    pub patch_size: usize,
    /// Input channels.
    pub channels: usize,
    /// Token width.
    pub d_model: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Feed-forward width as a multiple of `d_model`.
    #[config(default = 4.0)]
    pub mlp_ratio: f64,
    /// Position embeddings.
    #[config(default = "PositionEmbedding::SinCos")]
    pub position: PositionEmbedding,
    /// Pooling of `forward_features`.
    #[config(default = "Pooling::Cls")]
    pub pooling: Pooling,
    /// Initialization of linear layers and the patch projection (treated as a linear layer).
    #[config(default = "InitScheme::XavierUniform")]
    pub init: InitScheme,
    /// Layer-norm epsilon.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Width of the input image in pixels when it differs from `image_size`; `None` for a
    /// square image.
    #[config(default = "None")]
    pub image_width: Option<usize>,
}

impl VitConfig {
    /// CPU-sized ViT for 28x28 grey images: 4x4 patches (49 tokens), width 128, 6 blocks,
    /// 4 heads, MAE initialization (Xavier uniform, sin-cos positions).
    pub fn vit_tiny_28() -> Self {
        Self::new(28, 4, 1, 128, 6, 4)
    }

    /// DeiT/ViT-Ti/16 at 224x224 RGB: width 192, 12 blocks, 3 heads.
    pub fn vit_tiny_patch16_224() -> Self {
        Self::new(224, 16, 3, 192, 12, 3)
            .with_position(PositionEmbedding::Learned)
            .with_init(InitScheme::BERT)
    }

    /// ViT-S/16 at 224x224 RGB: width 384, 12 blocks, 6 heads.
    pub fn vit_small_patch16_224() -> Self {
        Self::new(224, 16, 3, 384, 12, 6)
            .with_position(PositionEmbedding::Learned)
            .with_init(InitScheme::BERT)
    }

    /// ViT-B/16 at 224x224 RGB: width 768, 12 blocks, 12 heads.
    pub fn vit_base_patch16_224() -> Self {
        Self::new(224, 16, 3, 768, 12, 12)
            .with_position(PositionEmbedding::Learned)
            .with_init(InitScheme::BERT)
    }

    /// Input `[height, width]` in pixels.
    pub fn image_hw(&self) -> [usize; 2] {
        [self.image_size, self.image_width.unwrap_or(self.image_size)]
    }

    /// Patches per column and per row: `[rows, columns]`.
    pub fn grid(&self) -> [usize; 2] {
        self.image_hw().map(|side| side / self.patch_size.max(1))
    }

    /// Number of patches.
    pub fn num_patches(&self) -> usize {
        let [rows, columns] = self.grid();
        rows * columns
    }

    /// Values of one flattened patch (`patch_size^2 * channels`).
    pub fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * self.channels
    }

    /// Feed-forward width of a block (`d_model * mlp_ratio`, rounded).
    pub fn mlp_width(&self) -> usize {
        (self.d_model as f64 * self.mlp_ratio).round() as usize
    }

    fn block(&self) -> TransformerBlockConfig {
        TransformerBlockConfig::new(self.d_model, self.n_heads, self.mlp_width())
            .with_init(self.init)
            .with_norm_eps(self.norm_eps)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let m = "ViT";
        let [height, width] = self.image_hw();
        ensure(
            self.patch_size > 0
                && height.is_multiple_of(self.patch_size)
                && width.is_multiple_of(self.patch_size),
            ModelError::config,
            m,
            "patch_size",
            || {
                format!(
                    "{} must divide the image's height {height} and width {width}",
                    self.patch_size
                )
            },
        )?;
        ensure(self.channels > 0, ModelError::config, m, "channels", || {
            "must be > 0".into()
        })?;
        ensure(self.depth > 0, ModelError::config, m, "depth", || {
            "must be at least 1".into()
        })?;
        ensure(
            self.position != PositionEmbedding::SinCos || self.d_model.is_multiple_of(4),
            ModelError::config,
            m,
            "d_model",
            || {
                format!(
                    "{} must be a multiple of 4 for sin-cos positions",
                    self.d_model
                )
            },
        )?;
        self.block().validate()
    }

    /// Parameters of the encoder (patch projection, CLS token, learned positions when
    /// configured, blocks, final norm).
    pub fn num_params(&self) -> u128 {
        let d = self.d_model;
        let positions = match self.position {
            PositionEmbedding::Learned => {
                let [rows, columns] = self.grid();
                size::sum([size::product(&[rows, columns, d]), d as u128])
            }
            PositionEmbedding::SinCos => 0,
        };
        size::sum([
            size::conv(self.channels, d, self.patch_size, true),
            d as u128,
            positions,
            self.block().num_params().saturating_mul(self.depth as u128),
            size::layer_norm(d),
        ])
    }

    /// Builds the model; invalid configurations are refused here.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Vit<B>> {
        self.validate()?;
        size::check("ViT", self.num_params())?;
        let block = self.block();
        let mut patch_embed =
            Conv2dConfig::new([self.channels, self.d_model], [self.patch_size; 2])
                .with_stride([self.patch_size; 2])
                .init(device);
        // MAE treats the patch projection as a linear layer over the flattened patch.
        let flat = self
            .init
            .sample::<B>(self.patch_dim(), self.d_model, device);
        let weight = flat.transpose().reshape([
            self.d_model,
            self.channels,
            self.patch_size,
            self.patch_size,
        ]);
        patch_embed.weight = Param::initialized(ParamId::new(), weight.require_grad());
        patch_embed.bias = patch_embed.bias.map(|b| {
            Param::initialized(b.id, Tensor::zeros([self.d_model], device).require_grad())
        });
        Ok(Vit {
            patch_embed,
            cls_token: Param::initialized(
                ParamId::new(),
                truncated_normal([1, 1, self.d_model], 0.02, device).require_grad(),
            ),
            pos_embed: (self.position == PositionEmbedding::Learned).then(|| {
                Param::initialized(
                    ParamId::new(),
                    truncated_normal([1, self.num_patches() + 1, self.d_model], 0.02, device)
                        .require_grad(),
                )
            }),
            blocks: (0..self.depth)
                .map(|_| block.init(device))
                .collect::<Result<_>>()?,
            norm: LayerNormConfig::new(self.d_model)
                .with_epsilon(self.norm_eps)
                .init(device),
            grid: self.grid(),
            d_model: self.d_model,
            mean_pool: self.pooling == Pooling::Mean,
        })
    }
}

/// Vision transformer encoder.
#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    /// Patch projection, a convolution with kernel = stride = patch size.
    pub patch_embed: Conv2d<B>,
    /// Learnable CLS token `[1, 1, d_model]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// Learned position embeddings `[1, 1 + patches, d_model]`; `None` for fixed sin-cos.
    pub pos_embed: Option<Param<Tensor<B, 3>>>,
    /// Transformer blocks.
    pub blocks: Vec<TransformerBlock<B>>,
    /// Final layer norm.
    pub norm: LayerNorm<B>,
    /// Patches `[rows, columns]`.
    grid: [usize; 2],
    d_model: usize,
    mean_pool: bool,
}

impl<B: FusedBackend> Vit<B> {
    /// Token width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.patch_embed.weight.dims()[2]
    }

    /// Input `[height, width]` in pixels.
    pub fn image_hw(&self) -> [usize; 2] {
        self.grid.map(|patches| patches * self.patch_size())
    }

    /// Position embeddings `[1, 1 + patches, d_model]` (CLS first).
    pub fn positions(&self, device: &B::Device) -> Tensor<B, 3> {
        match &self.pos_embed {
            Some(p) => p.val(),
            None => sincos_2d_tensor(self.grid, self.d_model, true, device),
        }
    }

    /// Patch tokens with positions: `[batch, channels, h, w] -> [batch, patches, d_model]`.
    pub fn embed_patches(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        let device = images.device();
        let x = conv2d_module(&self.patch_embed, images); // [batch, d_model, grid, grid]
        let [b, d, gh, gw] = x.dims();
        let x = x.reshape([b, d, gh * gw]).swap_dims(1, 2); // [batch, patches, d_model]
        let pos = self.positions(&device);
        x + pos.slice([0..1, 1..gh * gw + 1, 0..d])
    }

    /// Runs embedded patch tokens (positions added, any subset or replacement of them, e.g.
    /// SimMIM's mask tokens) through the CLS token, the blocks and the final norm:
    /// `[batch, n, d_model] -> [batch, 1 + n, d_model]`.
    pub fn encode_patch_tokens(&self, patches: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, _, d] = patches.dims();
        let device = patches.device();
        let cls = self.cls_token.val() + self.positions(&device).slice([0..1, 0..1, 0..d]);
        let mut x = Tensor::cat(vec![cls.expand([b as i64, 1, d as i64]), patches], 1);
        for block in &self.blocks {
            x = block.forward(x, None);
        }
        self.norm.forward(x)
    }

    /// All tokens after the final norm: `[batch, channels, h, w] -> [batch, 1 + patches, d_model]`.
    pub fn forward_tokens(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        self.encode_patch_tokens(self.embed_patches(images))
    }

    /// The representation used downstream: `[batch, channels, h, w] -> [batch, d_model]` (CLS
    /// token or mean of patch tokens).
    pub fn forward_features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let tokens = self.forward_tokens(images);
        let [b, n, d] = tokens.dims();
        if self.mean_pool {
            tokens.slice([0..b, 1..n, 0..d]).mean_dim(1).reshape([b, d])
        } else {
            tokens.slice([0..b, 0..1, 0..d]).reshape([b, d])
        }
    }

    /// MAE encoder pass on the visible patches only: `keep` (`[batch, n_keep]` patch indices)
    /// selects tokens after position embedding; returns `[batch, 1 + n_keep, d_model]`.
    pub fn forward_visible(&self, images: Tensor<B, 4>, keep: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let patches = self.embed_patches(images);
        let [b, k] = keep.dims();
        let index = keep
            .reshape([b, k, 1])
            .expand([b as i64, k as i64, self.d_model as i64]);
        self.encode_patch_tokens(patches.gather(1, index))
    }
}

impl<B: FusedBackend> TransformerStack<B> for Vit<B> {
    fn blocks_mut(&mut self) -> &mut Vec<TransformerBlock<B>> {
        &mut self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use crate::init::init_seeded;
    use burn::tensor::{Distribution, TensorData};

    use crate::testing::TestBackend as B;

    #[test]
    fn shapes_and_presets() {
        let dev = Default::default();
        let config = VitConfig::new(28, 7, 1, 32, 2, 4);
        let vit = init_seeded(&dev, 1001, || config.init::<B>(&dev).unwrap());
        let images = host_random::<B, 4>([3, 1, 28, 28], Distribution::Default, 1, &dev);
        assert_eq!(vit.forward_tokens(images.clone()).dims(), [3, 17, 32]);
        assert_eq!(vit.forward_features(images.clone()).dims(), [3, 32]);
        let keep = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![0i64, 5, 9, 1, 2, 3, 15, 14, 13], [3, 3]),
            &dev,
        );
        assert_eq!(vit.forward_visible(images, keep).dims(), [3, 4, 32]);
        assert_eq!(VitConfig::vit_tiny_28().num_patches(), 49);
        assert_eq!(VitConfig::vit_tiny_patch16_224().num_patches(), 196);
    }

    #[test]
    fn visible_pass_with_all_patches_equals_full_pass() {
        let dev = Default::default();
        let vit = init_seeded(&dev, 1002, || {
            VitConfig::new(8, 4, 1, 16, 1, 2).init::<B>(&dev).unwrap()
        });
        let images = host_random::<B, 4>([2, 1, 8, 8], Distribution::Default, 2, &dev);
        let all = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![0i64, 1, 2, 3, 0, 1, 2, 3], [2, 4]),
            &dev,
        );
        let diff: f32 = (vit.forward_visible(images.clone(), all) - vit.forward_tokens(images))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn images_that_are_not_square() {
        let dev = Default::default();
        for position in [PositionEmbedding::SinCos, PositionEmbedding::Learned] {
            let config = VitConfig::new(12, 4, 3, 16, 1, 2)
                .with_image_width(Some(20))
                .with_position(position);
            assert_eq!((config.grid(), config.num_patches()), ([3, 5], 15));
            let vit = init_seeded(&dev, 1003, || config.init::<B>(&dev).unwrap());
            assert_eq!(vit.image_hw(), [12, 20]);
            assert_eq!(vit.positions(&dev).dims(), [1, 16, 16]);
            let images = host_random::<B, 4>([2, 3, 12, 20], Distribution::Default, 3, &dev);
            assert_eq!(vit.forward_tokens(images).dims(), [2, 16, 16]);
        }
    }

    #[test]
    fn bad_configs_fail_at_init() {
        let dev = Default::default();
        let err = VitConfig::new(28, 5, 1, 32, 2, 4)
            .init::<B>(&dev)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("5 must divide the image's height 28 and width 28"),
            "{err}"
        );
        let wide = VitConfig::new(28, 4, 1, 32, 2, 4).with_image_width(Some(30));
        let err = wide.init::<B>(&dev).unwrap_err().to_string();
        assert!(err.contains("height 28 and width 30"), "{err}");
        assert!(VitConfig::new(28, 4, 1, 32, 0, 4).init::<B>(&dev).is_err());
        assert!(VitConfig::new(28, 4, 1, 30, 2, 3).init::<B>(&dev).is_err());
    }
}
