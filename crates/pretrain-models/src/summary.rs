//! Parameter counts and a one-line summary per model.

use crate::fused::FusedBackend;
use burn::module::Module;

use crate::error::Result;
use crate::{
    BertConfig, ConvAutoencoderConfig, Gpt, GptConfig, MaeConfig, MlpAutoencoderConfig,
    ResNetConfig, SmallCnnConfig, VitConfig,
};

/// GPT-2's vocabulary size.
const GPT2_VOCAB: usize = 50257;

/// Number of scalar parameters of `model` (burn counts batch-norm running statistics too).
pub fn num_params<B: FusedBackend, M: Module<B>>(model: &M) -> usize {
    model.num_params()
}

/// `1234567` as `"1,234,567"`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

/// `"<name>: 1,234,567 parameters"`.
pub fn summary<B: FusedBackend, M: Module<B>>(name: &str, model: &M) -> String {
    format!("{name}: {} parameters", grouped(num_params(model)))
}

/// `"<name>: 1,234,567 parameters, 456,789 non-embedding"` for a GPT.
pub fn gpt_summary<B: FusedBackend>(name: &str, model: &Gpt<B>) -> String {
    let total = num_params(model);
    format!(
        "{name}: {} parameters, {} non-embedding",
        grouped(total),
        grouped(total - model.embedding_params())
    )
}

/// One summary line per named preset (BERT presets with the 30,522-token BERT vocabulary, GPT
/// presets with GPT-2's 50,257 tokens).
pub fn preset_summaries<B: FusedBackend>(device: &B::Device) -> Result<Vec<String>> {
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
        gpt_summary(
            "gpt_nano",
            &GptConfig::gpt_nano(GPT2_VOCAB).init::<B>(device)?,
        ),
        gpt_summary(
            "gpt_micro",
            &GptConfig::gpt_micro(GPT2_VOCAB).init::<B>(device)?,
        ),
        gpt_summary(
            "gpt_mini",
            &GptConfig::gpt_mini(GPT2_VOCAB).init::<B>(device)?,
        ),
        gpt_summary(
            "gpt_small",
            &GptConfig::gpt_small(GPT2_VOCAB).init::<B>(device)?,
        ),
        gpt_summary("gpt2 (124M)", &GptConfig::gpt2().init::<B>(device)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_group_digits_and_cover_presets() {
        let dev = Default::default();
        let lines = preset_summaries::<crate::testing::TestBackend>(&dev).unwrap();
        assert_eq!(lines.len(), 17);
        // GPT-2 small: 124,439,808 with tied embeddings (nanoGPT's count, which subtracts the
        // 786,432 position embeddings, is 123.65M); 85,056,000 outside the embeddings.
        assert_eq!(
            lines[16],
            "gpt2 (124M): 124,439,808 parameters, 85,056,000 non-embedding"
        );
        assert!(
            lines[4].starts_with("bert_tiny") && lines[4].ends_with("4,433,210 parameters"),
            "{}",
            lines[4]
        );
    }
}
