//! Model presets a recipe may name, with overrides applied.

use pretrain::models::{
    AutoencoderConfig, BertConfig, ConvAutoencoderConfig, GptConfig, ImageEncoderConfig,
    MlpAutoencoderConfig, ResNetConfig, SmallCnnConfig, VitConfig,
};

use crate::error::{RecipeError, Result};
use crate::overrides::apply;
use crate::recipe::ModelSpec;

pretrain::data::named_enum! {
    /// A model preset a recipe may name (`[model] preset`), in kebab case ([`Named`]).
    ///
    /// [`Named`]: pretrain::data::Named
    pub enum Preset {
        /// The small CNN for 28x28 images.
        #[serde(rename = "small-cnn-28")]
        #[strum(serialize = "small-cnn-28")]
        SmallCnn28,
        /// A narrow ResNet-10.
        Resnet10Narrow,
        /// ViT-tiny on 28x28 images (4x4 patches).
        #[serde(rename = "vit-tiny-28")]
        #[strum(serialize = "vit-tiny-28")]
        VitTiny28,
        /// MLP autoencoder of the 8x8 digits.
        MlpAeDigits,
        /// Convolutional autoencoder of 28x28 images.
        #[serde(rename = "conv-ae-28")]
        #[strum(serialize = "conv-ae-28")]
        ConvAe28,
        /// BERT-tiny (2 layers, 128 wide).
        BertTiny,
        /// BERT-mini (4 layers, 256 wide).
        BertMini,
        /// GPT-nano (~0.2M parameters).
        GptNano,
        /// GPT-micro (~1M parameters).
        GptMicro,
        /// GPT-mini (~5M parameters).
        GptMini,
        /// GPT-small (~25M parameters).
        GptSmall,
    }
}

/// What a text preset takes from the data: the tokenizer's vocabulary and the sequence length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextInputs {
    /// Vocabulary size of the trained tokenizer.
    pub vocab_size: usize,
    /// Tokens per text (the encoder's positions).
    pub max_tokens: usize,
}

/// What a preset takes from the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataInputs {
    /// Images of `[channels, height, width]`: image presets take the channels, and the size
    /// where the model has one (ViT, autoencoders).
    Images([usize; 3]),
    /// Texts: text presets take the vocabulary and the sequence length.
    Text(TextInputs),
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
    /// A GPT decoder (causal language modeling).
    Decoder(GptConfig),
}

/// The preset of `spec` fitted to `inputs`, then its overrides applied.
pub fn resolve(spec: &ModelSpec, inputs: DataInputs) -> Result<ModelConfig> {
    let o = &spec.overrides;
    let f = "model.overrides";
    let text = || -> Result<TextInputs> {
        match inputs {
            DataInputs::Text(text) => Ok(text),
            DataInputs::Images(_) => Err(RecipeError::field(
                "model.preset",
                format!("{} is a text model: it needs text data", spec.preset),
            )),
        }
    };
    let bert = |preset: fn(usize) -> BertConfig| -> Result<ModelConfig> {
        let text = text()?;
        let config = preset(text.vocab_size).with_max_position(text.max_tokens);
        Ok(ModelConfig::Text(apply(&config, o, f)?))
    };
    // The block size is the data's tokens per window.
    let gpt = |preset: fn(usize) -> GptConfig| -> Result<ModelConfig> {
        let text = text()?;
        let config = GptConfig {
            block_size: text.max_tokens,
            ..preset(text.vocab_size)
        };
        Ok(ModelConfig::Decoder(apply(&config, o, f)?))
    };
    // The data's `[channels, height, width]`, checked square where the model needs a side.
    let image = |needs_side: bool| -> Result<[usize; 3]> {
        let DataInputs::Images(shape @ [_, height, width]) = inputs else {
            return Err(RecipeError::field(
                "model.preset",
                format!("{} is an image model: it needs image data", spec.preset),
            ));
        };
        if needs_side && height != width {
            return Err(RecipeError::field(
                "model.preset",
                format!(
                    "{} needs square images; the data's are {width}x{height} (resize them \
                     with the source's size and resize fields)",
                    spec.preset
                ),
            ));
        }
        Ok(shape)
    };
    Ok(match spec.preset {
        Preset::SmallCnn28 => {
            let config = SmallCnnConfig {
                channels: image(false)?[0],
                ..SmallCnnConfig::small_cnn_28()
            };
            ModelConfig::Image(ImageEncoderConfig::SmallCnn(apply(&config, o, f)?))
        }
        Preset::Resnet10Narrow => {
            let config = ResNetConfig::resnet10_narrow(image(false)?[0]);
            ModelConfig::Image(ImageEncoderConfig::ResNet(apply(&config, o, f)?))
        }
        Preset::VitTiny28 => {
            let [channels, image_size, _] = image(true)?;
            let config = VitConfig {
                channels,
                image_size,
                ..VitConfig::vit_tiny_28()
            };
            ModelConfig::Image(ImageEncoderConfig::Vit(apply(&config, o, f)?))
        }
        Preset::MlpAeDigits => {
            let config = MlpAutoencoderConfig {
                input_dim: image(false)?.iter().product(),
                ..MlpAutoencoderConfig::digits()
            };
            ModelConfig::Autoencoder(AutoencoderConfig::Mlp(apply(&config, o, f)?))
        }
        Preset::ConvAe28 => {
            let [channels, image_size, _] = image(true)?;
            let config = ConvAutoencoderConfig {
                channels,
                image_size,
                ..ConvAutoencoderConfig::conv_28()
            };
            ModelConfig::Autoencoder(AutoencoderConfig::Conv(apply(&config, o, f)?))
        }
        Preset::GptNano => gpt(GptConfig::gpt_nano)?,
        Preset::GptMicro => gpt(GptConfig::gpt_micro)?,
        Preset::GptMini => gpt(GptConfig::gpt_mini)?,
        Preset::GptSmall => gpt(GptConfig::gpt_small)?,
        Preset::BertTiny => bert(BertConfig::bert_tiny)?,
        Preset::BertMini => bert(BertConfig::bert_mini)?,
    })
}

impl ModelConfig {
    /// Width of the representation evaluations see.
    pub fn feature_dim(&self) -> usize {
        match self {
            Self::Image(c) => c.feature_dim(),
            Self::Autoencoder(c) => c.latent_dim(),
            Self::Text(c) => c.hidden,
            Self::Decoder(c) => c.d_model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_named_as_recipes_write_them() {
        pretrain::data::names::assert_serde_names::<Preset>();
        assert_eq!(Preset::VitTiny28.to_string(), "vit-tiny-28");
        assert_eq!(Preset::Resnet10Narrow.to_string(), "resnet10-narrow");
    }
}
