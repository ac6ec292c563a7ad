//! Model presets a recipe may name, with overrides applied.

use pretrain::models::{
    AutoencoderConfig, BertConfig, ConvAutoencoderConfig, ImageEncoderConfig, MlpAutoencoderConfig,
    ResNetConfig, SmallCnnConfig, VitConfig,
};

use crate::error::{RecipeError, Result};
use crate::overrides::apply;
use crate::recipe::ModelSpec;

/// Preset names a recipe may use.
pub const PRESETS: [&str; 7] = [
    "small-cnn-28",
    "resnet10-narrow",
    "vit-tiny-28",
    "mlp-ae-digits",
    "conv-ae-28",
    "bert-tiny",
    "bert-mini",
];

/// What a text preset takes from the data: the tokenizer's vocabulary and the sequence length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextInputs {
    /// Vocabulary size of the trained tokenizer.
    pub vocab_size: usize,
    /// Tokens per text (the encoder's positions).
    pub max_tokens: usize,
}

/// A resolved model configuration.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// An image encoder (contrastive and masked-image objectives).
    Image(ImageEncoderConfig),
    /// An autoencoder (denoising objective).
    Autoencoder(AutoencoderConfig),
    /// A BERT text encoder (masked language modeling).
    Text(BertConfig),
}

/// The preset of `spec` with its overrides; text presets need `text` (from the tokenizer).
pub fn resolve(spec: &ModelSpec, text: Option<TextInputs>) -> Result<ModelConfig> {
    let o = &spec.overrides;
    let f = "model.overrides";
    let bert = |preset: fn(usize) -> BertConfig| -> Result<ModelConfig> {
        let text = text.ok_or_else(|| {
            RecipeError::field(
                "model.preset",
                format!(
                    "{} is a text encoder: it needs a text data set",
                    spec.preset
                ),
            )
        })?;
        let config = preset(text.vocab_size).with_max_position(text.max_tokens);
        Ok(ModelConfig::Text(apply(&config, o, f)?))
    };
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
        "bert-tiny" => bert(BertConfig::bert_tiny)?,
        "bert-mini" => bert(BertConfig::bert_mini)?,
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
            Self::Text(c) => c.hidden,
        }
    }
}
