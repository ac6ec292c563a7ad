//! Model presets a recipe may name, with overrides applied.

use pretrain::models::{
    AutoencoderConfig, ConvAutoencoderConfig, ImageEncoderConfig, MlpAutoencoderConfig,
    ResNetConfig, SmallCnnConfig, VitConfig,
};

use crate::error::{RecipeError, Result};
use crate::overrides::apply;
use crate::recipe::ModelSpec;

/// Preset names a recipe may use.
pub const PRESETS: [&str; 5] = [
    "small-cnn-28",
    "resnet10-narrow",
    "vit-tiny-28",
    "mlp-ae-digits",
    "conv-ae-28",
];

/// A resolved model configuration.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// An image encoder (contrastive and masked-image objectives).
    Image(ImageEncoderConfig),
    /// An autoencoder (denoising objective).
    Autoencoder(AutoencoderConfig),
}

/// The preset of `spec` with its overrides.
pub fn resolve(spec: &ModelSpec) -> Result<ModelConfig> {
    let o = &spec.overrides;
    let f = "model.overrides";
    Ok(match spec.preset.as_str() {
        "small-cnn-28" => ModelConfig::Image(ImageEncoderConfig::SmallCnn(apply(
            &SmallCnnConfig::small_cnn_28(),
            o,
            f,
        )?)),
        "resnet10-narrow" => ModelConfig::Image(ImageEncoderConfig::ResNet(apply(
            &ResNetConfig::resnet10_narrow(1),
            o,
            f,
        )?)),
        "vit-tiny-28" => ModelConfig::Image(ImageEncoderConfig::Vit(apply(
            &VitConfig::vit_tiny_28(),
            o,
            f,
        )?)),
        "mlp-ae-digits" => ModelConfig::Autoencoder(AutoencoderConfig::Mlp(apply(
            &MlpAutoencoderConfig::digits(),
            o,
            f,
        )?)),
        "conv-ae-28" => ModelConfig::Autoencoder(AutoencoderConfig::Conv(apply(
            &ConvAutoencoderConfig::conv_28(),
            o,
            f,
        )?)),
        other => {
            return Err(RecipeError::field(
                "model.preset",
                format!("unknown preset {other:?}; valid: {}", PRESETS.join(", ")),
            ));
        }
    })
}

impl ModelConfig {
    /// Width of the representation evaluations see.
    pub fn feature_dim(&self) -> usize {
        match self {
            Self::Image(c) => c.feature_dim(),
            Self::Autoencoder(c) => c.latent_dim(),
        }
    }
}
