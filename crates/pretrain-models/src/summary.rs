//! Parameter counts and a one-line summary per model.

use burn::module::Module;
use burn::tensor::backend::Backend;

use crate::error::Result;
use crate::{
    BertConfig, ConvAutoencoderConfig, MaeConfig, MlpAutoencoderConfig, ResNetConfig,
    SmallCnnConfig, VitConfig,
};

/// Number of scalar parameters of `model` (burn counts batch-norm running statistics too).
pub fn num_params<B: Backend, M: Module<B>>(model: &M) -> usize {
    model.num_params()
}

/// `"<name>: 1,234,567 parameters"`.
pub fn summary<B: Backend, M: Module<B>>(name: &str, model: &M) -> String {
    let digits = num_params(model).to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{name}: {grouped} parameters")
}

/// One summary line per named preset (BERT presets with the 30,522-token BERT vocabulary).
pub fn preset_summaries<B: Backend>(device: &B::Device) -> Result<Vec<String>> {
    Ok(vec![
        summary("vit_tiny_28", &VitConfig::vit_tiny_28().init::<B>(device)?),
        summary(
            "vit_tiny_patch16_224",
            &VitConfig::vit_tiny_patch16_224().init::<B>(device)?,
        ),
        summary(
            "vit_small_patch16_224",
            &VitConfig::vit_small_patch16_224().init::<B>(device)?,
        ),
        summary(
            "mae_vit_tiny_28",
            &MaeConfig::mae_vit_tiny_28().init::<B>(device)?,
        ),
        summary(
            "bert_tiny (with pooler and MLM head)",
            &BertConfig::bert_tiny(30522).init::<B>(device)?,
        ),
        summary(
            "bert_mini (with pooler and MLM head)",
            &BertConfig::bert_mini(30522).init::<B>(device)?,
        ),
        summary(
            "bert_small (with pooler and MLM head)",
            &BertConfig::bert_small(30522).init::<B>(device)?,
        ),
        summary(
            "mlp_autoencoder digits",
            &MlpAutoencoderConfig::digits().init::<B>(device)?,
        ),
        summary(
            "conv_autoencoder conv_28",
            &ConvAutoencoderConfig::conv_28().init::<B>(device)?,
        ),
        summary(
            "small_cnn_28",
            &SmallCnnConfig::small_cnn_28().init::<B>(device)?,
        ),
        summary(
            "resnet18_cifar (3 channels)",
            &ResNetConfig::resnet18_cifar(3).init::<B>(device)?,
        ),
        summary(
            "resnet10_narrow (1 channel)",
            &ResNetConfig::resnet10_narrow(1).init::<B>(device)?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_group_digits_and_cover_presets() {
        let dev = Default::default();
        let lines = preset_summaries::<burn::backend::Flex>(&dev).unwrap();
        assert_eq!(lines.len(), 12);
        assert!(
            lines[4].starts_with("bert_tiny") && lines[4].ends_with("4,433,210 parameters"),
            "{}",
            lines[4]
        );
    }
}
