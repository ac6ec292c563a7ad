//! The encoders of the zoo behind two enums chosen by configuration, so objectives, the engine
//! and recipes handle "an image encoder" or "an autoencoder" without a type parameter per
//! architecture (one monomorphization instead of one per model).

use crate::fused::FusedBackend;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::autoencoder::{
    ConvAutoencoder, ConvAutoencoderConfig, MlpAutoencoder, MlpAutoencoderConfig,
};
use crate::block::TransformerStack;
use crate::cnn::{ResNet, ResNetConfig, SmallCnn, SmallCnnConfig};
use crate::error::{ModelError, Result, ensure};
use crate::vit::{Vit, VitConfig};

/// Which image encoder to build (serde: `{"kind": "small-cnn" | "resnet" | "vit", ...fields}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImageEncoderConfig {
    /// See [`SmallCnnConfig`].
    SmallCnn(SmallCnnConfig),
    /// See [`ResNetConfig`].
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
    /// See [`VitConfig`].
    Vit(VitConfig),
}

impl ImageEncoderConfig {
    /// Width of the representation [`ImageEncoder::forward`] returns.
    pub fn feature_dim(&self) -> usize {
        match self {
            Self::SmallCnn(c) => c.widths.last().copied().unwrap_or(0),
            Self::ResNet(c) => c.widths.last().copied().unwrap_or(0),
            Self::Vit(c) => c.d_model,
        }
    }

    /// Checks that the encoder accepts images of `[channels, height, width]`.
    pub fn check_input(&self, [c, h, w]: [usize; 3]) -> Result<()> {
        let (model, channels) = match self {
            Self::SmallCnn(cfg) => ("small CNN", cfg.channels),
            Self::ResNet(cfg) => ("ResNet", cfg.channels),
            Self::Vit(cfg) => {
                let [height, width] = cfg.image_hw();
                ensure(
                    [h, w] == [height, width],
                    ModelError::config,
                    "ViT",
                    "image_size",
                    || format!("is {height}x{width} but the images are {h}x{w}"),
                )?;
                ("ViT", cfg.channels)
            }
        };
        ensure(c == channels, ModelError::config, model, "channels", || {
            format!("is {channels} but the images have {c}")
        })
    }

    /// Parameters of the encoder.
    pub fn num_params(&self) -> u128 {
        match self {
            Self::SmallCnn(c) => c.num_params(),
            Self::ResNet(c) => c.num_params(),
            Self::Vit(c) => c.num_params(),
        }
    }

    /// Builds the encoder, refusing invalid configurations.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<ImageEncoder<B>> {
        Ok(match self {
            Self::SmallCnn(c) => ImageEncoder::SmallCnn(c.init(device)?),
            Self::ResNet(c) => ImageEncoder::ResNet(c.init(device)?),
            Self::Vit(c) => ImageEncoder::Vit(c.init(device)?),
        })
    }
}

/// An image encoder: `[batch, channels, h, w] -> [batch, feature_dim]`.
// A module is built once and moved rarely; boxing would only add indirection to every call.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageEncoder<B: Backend> {
    /// Small CNN.
    SmallCnn(SmallCnn<B>),
    /// ResNet.
    ResNet(ResNet<B>),
    /// Vision transformer (CLS or mean-pooled token).
    Vit(Vit<B>),
}

impl<B: FusedBackend> ImageEncoder<B> {
    /// The transformer blocks, for encoders built on them (the ViT); `None` for CNNs.
    pub fn as_transformer_mut(&mut self) -> Option<&mut dyn TransformerStack<B>> {
        match self {
            Self::Vit(m) => Some(m),
            Self::SmallCnn(_) | Self::ResNet(_) => None,
        }
    }

    /// Sets stochastic depth on the residual branches, rising linearly to `max_rate` at the
    /// last block; returns false for encoders without residual blocks (the small CNN).
    pub fn set_drop_path_rate(&mut self, max_rate: f64) -> bool {
        match self {
            Self::Vit(m) => m.set_drop_path_rate(max_rate),
            Self::ResNet(m) => m.set_drop_path_rate(max_rate),
            Self::SmallCnn(_) => return false,
        }
        true
    }

    /// Architecture name, for messages.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::SmallCnn(_) => "small-cnn",
            Self::ResNet(_) => "resnet",
            Self::Vit(_) => "vit",
        }
    }

    /// The representation: `[batch, channels, h, w] -> [batch, feature_dim]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Self::SmallCnn(m) => m.forward_features(images),
            Self::ResNet(m) => m.forward_features(images),
            Self::Vit(m) => m.forward_features(images),
        }
    }
}

/// Which autoencoder to build (serde: `{"kind": "mlp", ...fields}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AutoencoderConfig {
    /// See [`MlpAutoencoderConfig`]; images are flattened to `channels * h * w` inputs.
    Mlp(MlpAutoencoderConfig),
    /// See [`ConvAutoencoderConfig`].
    Conv(ConvAutoencoderConfig),
}

impl AutoencoderConfig {
    /// Width of the code [`Autoencoder::encode`] returns.
    pub fn latent_dim(&self) -> usize {
        match self {
            Self::Mlp(c) => c.latent_dim,
            Self::Conv(c) => c.latent_dim,
        }
    }

    /// Checks that the autoencoder accepts images of `[channels, height, width]`.
    pub fn check_input(&self, [c, h, w]: [usize; 3]) -> Result<()> {
        match self {
            Self::Mlp(cfg) => ensure(
                cfg.input_dim == c * h * w,
                ModelError::config,
                "MLP autoencoder",
                "input_dim",
                || {
                    format!(
                        "is {} but the images have {c}x{h}x{w} = {} values",
                        cfg.input_dim,
                        c * h * w
                    )
                },
            ),
            Self::Conv(cfg) => ensure(
                cfg.channels == c && cfg.image_size == h && cfg.image_size == w,
                ModelError::config,
                "conv autoencoder",
                "channels/image_size",
                || {
                    format!(
                        "{}x{s}x{s} does not match the images' {c}x{h}x{w}",
                        cfg.channels,
                        s = cfg.image_size
                    )
                },
            ),
        }
    }

    /// Parameters of the autoencoder.
    pub fn num_params(&self) -> u128 {
        match self {
            Self::Mlp(c) => c.num_params(),
            Self::Conv(c) => c.num_params(),
        }
    }

    /// Builds the autoencoder.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Autoencoder<B>> {
        Ok(match self {
            Self::Mlp(c) => Autoencoder::Mlp(c.init(device)?),
            Self::Conv(c) => Autoencoder::Conv(c.init(device)?),
        })
    }
}

/// An autoencoder on images; the MLP variant sees them flattened.
// A module is built once and moved rarely; boxing would only add indirection to every call.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Autoencoder<B: Backend> {
    /// Fully connected.
    Mlp(MlpAutoencoder<B>),
    /// Convolutional.
    Conv(ConvAutoencoder<B>),
}

impl<B: FusedBackend> Autoencoder<B> {
    /// The code: `[batch, channels, h, w] -> [batch, latent]`.
    pub fn encode(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Self::Mlp(m) => m.encode(images.flatten(1, 3)),
            Self::Conv(m) => m.encode(images),
        }
    }

    /// Reconstruction, same shape as the input (unbounded values).
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_with_code(images).1
    }

    /// Code `[batch, latent]` and reconstruction (input shape) in one pass.
    pub fn forward_with_code(&self, images: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 4>) {
        match self {
            Self::Mlp(m) => {
                let dims = images.dims();
                let code = m.encode(images.flatten(1, 3));
                (code.clone(), m.decode(code).reshape(dims))
            }
            Self::Conv(m) => {
                let code = m.encode(images);
                (code.clone(), m.decode(code))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use crate::init::init_seeded;
    use burn::tensor::Distribution;

    use crate::testing::TestBackend as B;

    #[test]
    fn encoders_from_serde_configs() {
        let dev = Default::default();
        let images = host_random::<B, 4>([2, 1, 28, 28], Distribution::Default, 1, &dev);
        let configs = [
            ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![8, 16])),
            ImageEncoderConfig::ResNet(ResNetConfig::new(1, vec![1, 1], vec![8, 16])),
            ImageEncoderConfig::Vit(VitConfig::new(28, 7, 1, 16, 1, 2)),
        ];
        for (config, kind) in configs.iter().zip(["small-cnn", "resnet", "vit"]) {
            let json = serde_json::to_string(config).unwrap();
            assert!(json.contains(&format!(r#""kind":"{kind}""#)), "{json}");
            let config: ImageEncoderConfig = serde_json::from_str(&json).unwrap();
            let encoder = init_seeded(&dev, 1001, || config.init::<B>(&dev).unwrap());
            assert_eq!(encoder.forward(images.clone()).dims(), [2, 16], "{json}");
            assert_eq!(config.feature_dim(), 16);
        }
        let bad = ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![]));
        assert!(bad.init::<B>(&dev).is_err());
        let vit = &configs[2];
        assert!(vit.check_input([1, 28, 28]).is_ok());
        let err = vit.check_input([3, 32, 32]).unwrap_err().to_string();
        assert!(err.contains("image_size"), "{err}");

        let mlp = AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(784, vec![32], 8));
        let ae = init_seeded(&dev, 1002, || mlp.init::<B>(&dev).unwrap());
        assert_eq!(ae.forward(images.clone()).dims(), [2, 1, 28, 28]);
        assert_eq!(ae.encode(images).dims(), [2, mlp.latent_dim()]);
        assert!(mlp.check_input([1, 28, 28]).is_ok());
        assert!(mlp.check_input([1, 8, 8]).is_err());
    }
}
