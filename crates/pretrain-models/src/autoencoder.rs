//! Autoencoders: an MLP autoencoder for feature vectors and a convolutional one for images. The
//! denoising variant is the same model trained on corrupted inputs (corruption is the
//! objective's job).

use crate::fused::{FusedBackend, conv2d_module};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Linear, PaddingConfig2d, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{ModelError, Result, ensure};
use crate::init::InitScheme;
use crate::layers::{linear, stack_widths};
use crate::size;

/// Configuration of an [`MlpAutoencoder`].
#[derive(Config, Debug)]
pub struct MlpAutoencoderConfig {
    /// Input width.
    pub input_dim: usize,
    /// Hidden widths of the encoder (the decoder mirrors them).
    pub hidden: Vec<usize>,
    /// Bottleneck width: the representation used for fine-tuning.
    pub latent_dim: usize,
    /// Initialization of every layer (Kaiming for the ReLU network by default).
    #[config(default = "InitScheme::KaimingNormal")]
    pub init: InitScheme,
}

impl MlpAutoencoderConfig {
    /// For scikit-learn's digits: 64 inputs, hidden 128, 64, bottleneck 32.
    pub fn digits() -> Self {
        Self::new(64, vec![128, 64], 32)
    }

    fn widths(&self) -> Vec<usize> {
        stack_widths(self.input_dim, &self.hidden, self.latent_dim)
    }

    /// Parameters of the encoder and the mirrored decoder.
    pub fn num_params(&self) -> u128 {
        size::sum(self.widths().windows(2).map(|w| {
            size::sum([
                size::linear(w[0], w[1], true),
                size::linear(w[1], w[0], true),
            ])
        }))
    }

    /// Builds the model.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<MlpAutoencoder<B>> {
        let m = "MLP autoencoder";
        ensure(
            self.input_dim > 0 && self.latent_dim > 0,
            ModelError::config,
            m,
            "input_dim/latent_dim",
            || "must be > 0".into(),
        )?;
        ensure(
            self.hidden.iter().all(|&h| h > 0),
            ModelError::config,
            m,
            "hidden",
            || format!("{:?} has a zero width", self.hidden),
        )?;
        size::check(m, self.num_params())?;
        let widths = self.widths();
        let encoder = widths
            .windows(2)
            .map(|w| linear(w[0], w[1], self.init, true, device))
            .collect();
        let decoder = widths
            .windows(2)
            .rev()
            .map(|w| linear(w[1], w[0], self.init, true, device))
            .collect();
        Ok(MlpAutoencoder {
            encoder,
            decoder,
            activation: Relu::new(),
        })
    }
}

/// Fully connected autoencoder.
#[derive(Module, Debug)]
pub struct MlpAutoencoder<B: Backend> {
    /// Encoder layers, input to bottleneck.
    pub encoder: Vec<Linear<B>>,
    /// Decoder layers, bottleneck to output.
    pub decoder: Vec<Linear<B>>,
    activation: Relu,
}

fn stack<B: FusedBackend>(
    layers: &[Linear<B>],
    activation: &Relu,
    mut x: Tensor<B, 2>,
) -> Tensor<B, 2> {
    for (i, layer) in layers.iter().enumerate() {
        x = layer.forward(x);
        if i + 1 < layers.len() {
            x = activation.forward(x);
        }
    }
    x
}

impl<B: FusedBackend> MlpAutoencoder<B> {
    /// `[batch, input] -> [batch, latent]` (linear bottleneck).
    pub fn encode(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        stack(&self.encoder, &self.activation, x)
    }

    /// `[batch, latent] -> [batch, input]` (unbounded output; an objective may apply a sigmoid).
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        stack(&self.decoder, &self.activation, z)
    }

    /// Reconstruction `[batch, input] -> [batch, input]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.decode(self.encode(x))
    }
}

/// Configuration of a [`ConvAutoencoder`].
#[derive(Config, Debug)]
pub struct ConvAutoencoderConfig {
    /// Input channels.
    pub channels: usize,
    /// Side of the square input; must be divisible by `2^widths.len()`.
    pub image_size: usize,
    /// Channels of each stride-2 convolution (the decoder mirrors them).
    pub widths: Vec<usize>,
    /// Bottleneck width.
    pub latent_dim: usize,
}

impl ConvAutoencoderConfig {
    /// For 28x28 grey images: two stride-2 convolutions (32, 64 channels) to a 7x7 map, 64-d code.
    pub fn conv_28() -> Self {
        Self::new(1, 28, vec![32, 64], 64)
    }

    /// `2^widths.len()`, the factor by which the encoder shrinks each side (`None` past
    /// `usize`).
    fn reduction(&self) -> Option<usize> {
        u32::try_from(self.widths.len())
            .ok()
            .and_then(|n| 1usize.checked_shl(n))
    }

    /// Parameters of the convolutions, the bottleneck layers and the transposed convolutions.
    pub fn num_params(&self) -> u128 {
        let chans: Vec<usize> = std::iter::once(self.channels)
            .chain(self.widths.iter().copied())
            .collect();
        let side = self.image_size / self.reduction().unwrap_or(usize::MAX);
        let flat = size::product(&[side, side, self.widths.last().copied().unwrap_or(0)]);
        let latent = self.latent_dim as u128;
        let bottleneck = flat.saturating_mul(latent).saturating_mul(2);
        size::sum(
            chans
                .windows(2)
                .map(|w| {
                    size::sum([
                        size::conv(w[0], w[1], 3, true),
                        size::conv(w[1], w[0], 4, true),
                    ])
                })
                .chain([bottleneck, latent, flat]),
        )
    }

    /// Builds the model.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<ConvAutoencoder<B>> {
        let m = "conv autoencoder";
        ensure(
            !self.widths.is_empty() && self.widths.iter().all(|&w| w > 0),
            ModelError::config,
            m,
            "widths",
            || format!("{:?} must be non-empty and positive", self.widths),
        )?;
        let factor = self.reduction();
        ensure(
            self.image_size > 0 && factor.is_some_and(|f| self.image_size.is_multiple_of(f)),
            ModelError::config,
            m,
            "image_size",
            || {
                format!(
                    "{} must be divisible by 2^{} (one halving per width)",
                    self.image_size,
                    self.widths.len()
                )
            },
        )?;
        ensure(
            self.channels > 0 && self.latent_dim > 0,
            ModelError::config,
            m,
            "channels/latent_dim",
            || "must be > 0".into(),
        )?;
        size::check(m, self.num_params())?;
        let chans: Vec<usize> = std::iter::once(self.channels)
            .chain(self.widths.iter().copied())
            .collect();
        let side = self.image_size / factor.unwrap_or(1);
        let flat = side * side * self.widths[self.widths.len() - 1];
        let init = InitScheme::KaimingNormal;
        Ok(ConvAutoencoder {
            encoder: chans
                .windows(2)
                .map(|w| {
                    Conv2dConfig::new([w[0], w[1]], [3, 3])
                        .with_stride([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device)
                })
                .collect(),
            to_latent: linear(flat, self.latent_dim, init, true, device),
            from_latent: linear(self.latent_dim, flat, init, true, device),
            decoder: chans
                .windows(2)
                .rev()
                .map(|w| {
                    ConvTranspose2dConfig::new([w[1], w[0]], [4, 4])
                        .with_stride([2, 2])
                        .with_padding([1, 1])
                        .init(device)
                })
                .collect(),
            activation: Relu::new(),
            side,
            deepest: self.widths[self.widths.len() - 1],
        })
    }
}

/// Convolutional autoencoder: stride-2 convolutions, a linear bottleneck, transposed
/// convolutions back.
#[derive(Module, Debug)]
pub struct ConvAutoencoder<B: Backend> {
    /// Encoder convolutions.
    pub encoder: Vec<Conv2d<B>>,
    /// Flattened feature map to code.
    pub to_latent: Linear<B>,
    /// Code to feature map.
    pub from_latent: Linear<B>,
    /// Decoder transposed convolutions.
    pub decoder: Vec<ConvTranspose2d<B>>,
    activation: Relu,
    side: usize,
    deepest: usize,
}

impl<B: FusedBackend> ConvAutoencoder<B> {
    /// `[batch, channels, h, w] -> [batch, latent]`.
    pub fn encode(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = images;
        for conv in &self.encoder {
            x = self.activation.forward(conv2d_module(conv, x));
        }
        let [b, c, h, w] = x.dims();
        self.to_latent.forward(x.reshape([b, c * h * w]))
    }

    /// `[batch, latent] -> [batch, channels, h, w]` (unbounded output).
    pub fn decode(&self, z: Tensor<B, 2>) -> Tensor<B, 4> {
        let b = z.dims()[0];
        let mut x = self
            .activation
            .forward(self.from_latent.forward(z))
            .reshape([b, self.deepest, self.side, self.side]);
        for (i, deconv) in self.decoder.iter().enumerate() {
            x = deconv.forward(x);
            if i + 1 < self.decoder.len() {
                x = self.activation.forward(x);
            }
        }
        x
    }

    /// Reconstruction, same shape as the input.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        self.decode(self.encode(images))
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
    fn shapes() {
        let dev = Default::default();
        let mlp = init_seeded(&dev, 1001, || {
            MlpAutoencoderConfig::digits().init::<B>(&dev).unwrap()
        });
        let x = host_random::<B, 2>([5, 64], Distribution::Default, 1, &dev);
        assert_eq!(mlp.encode(x.clone()).dims(), [5, 32]);
        assert_eq!(mlp.forward(x).dims(), [5, 64]);
        let conv = init_seeded(&dev, 1002, || {
            ConvAutoencoderConfig::conv_28().init::<B>(&dev).unwrap()
        });
        let images = host_random::<B, 4>([3, 1, 28, 28], Distribution::Default, 2, &dev);
        assert_eq!(conv.encode(images.clone()).dims(), [3, 64]);
        assert_eq!(conv.forward(images).dims(), [3, 1, 28, 28]);
    }

    #[test]
    fn bad_configs_fail_at_init() {
        let dev = Default::default();
        let err = ConvAutoencoderConfig::new(1, 28, vec![8, 8, 8], 4)
            .init::<B>(&dev)
            .unwrap_err();
        assert!(
            err.to_string().contains("28 must be divisible by 2^3"),
            "{err}"
        );
        assert!(
            MlpAutoencoderConfig::new(64, vec![0], 8)
                .init::<B>(&dev)
                .is_err()
        );
    }
}
