//! The encoders fine-tuning works on, behind one enum (one monomorphization for every
//! strategy), and the inputs they take.

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};
use pretrain_data::ImageItem;
use pretrain_data::batch::{ImageBatch, ImageBatcher, TextBatch, TextBatcher, TokenizedItem};
use pretrain_models::FusedBackend;
use pretrain_models::{AdaptableBlock, Autoencoder, Bert, Gpt, ImageEncoder, TransformerStack};

use crate::error::{FinetuneError, Result};

/// A pre-trained (or freshly initialized) encoder.
// Built once per run; boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone<B: Backend> {
    /// An image encoder (small CNN, ResNet, ViT).
    Image(ImageEncoder<B>),
    /// The encoder half of an autoencoder (its code is the representation).
    Autoencoder(Autoencoder<B>),
    /// A BERT-style text encoder.
    Text(Bert<B>),
    /// A GPT decoder (causal LM), read as an encoder of its final hidden states.
    Decoder(Gpt<B>),
}

/// What a [`Backbone`] reads.
#[derive(Debug, Clone)]
pub enum Inputs<B: Backend> {
    /// `[batch, channels, height, width]`.
    Images(Tensor<B, 4>),
    /// Token ids `[batch, seq]` with `padding` `[batch, seq]` (true at padding).
    Tokens {
        /// Input ids.
        ids: Tensor<B, 2, Int>,
        /// Padding mask.
        padding: Tensor<B, 2, Bool>,
    },
}

/// Inputs with their class labels.
#[derive(Debug, Clone)]
pub struct LabeledBatch<B: Backend> {
    /// The inputs.
    pub inputs: Inputs<B>,
    /// `[batch]` class indices; `None` when the items were unlabeled.
    pub labels: Option<Tensor<B, 1, Int>>,
}

impl<B: FusedBackend> From<ImageBatch<B>> for LabeledBatch<B> {
    fn from(batch: ImageBatch<B>) -> Self {
        Self {
            inputs: Inputs::Images(batch.images),
            labels: batch.labels,
        }
    }
}

impl<B: FusedBackend> From<TextBatch<B>> for LabeledBatch<B> {
    fn from(batch: TextBatch<B>) -> Self {
        Self {
            inputs: Inputs::Tokens {
                ids: batch.input_ids,
                padding: batch.padding_mask,
            },
            labels: batch.labels,
        }
    }
}

/// Makes `pretrain-data`'s batchers (`ImageBatcher`, `TextBatcher`) produce
/// [`LabeledBatch`]es.
#[derive(Debug, Clone, Default)]
pub struct ToLabeled<T>(pub T);

impl<B: FusedBackend> Batcher<B, ImageItem, LabeledBatch<B>> for ToLabeled<ImageBatcher> {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> LabeledBatch<B> {
        let batch: ImageBatch<B> = self.0.batch(items, device);
        batch.into()
    }
}

impl<B: FusedBackend> Batcher<B, TokenizedItem, LabeledBatch<B>> for ToLabeled<TextBatcher> {
    fn batch(&self, items: Vec<TokenizedItem>, device: &B::Device) -> LabeledBatch<B> {
        let batch: TextBatch<B> = self.0.batch(items, device);
        batch.into()
    }
}

impl<B: FusedBackend> Backbone<B> {
    /// Architecture name, for messages and reports.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::Image(e) => e.architecture(),
            Self::Autoencoder(_) => "autoencoder",
            Self::Text(_) => "bert",
            Self::Decoder(_) => "gpt",
        }
    }

    /// The representation `[batch, feature_dim]`: the image encoder's features, an autoencoder's
    /// code, or for text the mean of the non-padded final hidden states (BERT's pooler is not
    /// pre-trained by MLM; a GPT's positions see only their left, and right padding comes after
    /// every real token, so it changes none of them).
    pub fn features(&self, inputs: Inputs<B>) -> Result<Tensor<B, 2>> {
        match (self, inputs) {
            (Self::Image(encoder), Inputs::Images(images)) => Ok(encoder.forward(images)),
            (Self::Autoencoder(model), Inputs::Images(images)) => Ok(model.encode(images)),
            (Self::Text(bert), Inputs::Tokens { ids, padding }) => {
                let hidden = bert.forward(ids, Some(padding.clone()), None); // [b, s, d]
                Ok(mean_unpadded(hidden, padding))
            }
            (Self::Decoder(gpt), Inputs::Tokens { ids, padding }) => {
                gpt.check_context(ids.dims()[1])
                    .map_err(|e| FinetuneError::Inputs(e.to_string()))?;
                let hidden = gpt.forward_hidden(ids, None); // [b, s, d]
                Ok(mean_unpadded(hidden, padding))
            }
            (backbone, inputs) => Err(FinetuneError::Inputs(format!(
                "a {} encoder cannot read {}",
                backbone.architecture(),
                match inputs {
                    Inputs::Images(_) => "images",
                    Inputs::Tokens { .. } => "token ids",
                }
            ))),
        }
    }

    /// Sets stochastic depth on the residual branches, rising linearly to `max_rate` at the
    /// last block; returns false for encoders without residual blocks (the small CNN, autoencoders).
    pub fn set_drop_path_rate(&mut self, max_rate: f64) -> bool {
        match self {
            Self::Image(e) => e.set_drop_path_rate(max_rate),
            Self::Autoencoder(_) => false,
            Self::Text(bert) => {
                bert.set_drop_path_rate(max_rate);
                true
            }
            Self::Decoder(_) => false,
        }
    }

    /// The transformer blocks (ViT, BERT, GPT), or an error naming `strategy` for encoders
    /// without them.
    pub fn adaptable_blocks(
        &mut self,
        strategy: &'static str,
    ) -> Result<Vec<&mut dyn AdaptableBlock<B>>> {
        let architecture = self.architecture();
        let blocks: Option<Vec<&mut dyn AdaptableBlock<B>>> = match self {
            Self::Image(e) => e.as_transformer_mut().map(|stack| {
                stack
                    .blocks_mut()
                    .iter_mut()
                    .map(|b| b as &mut dyn AdaptableBlock<B>)
                    .collect()
            }),
            Self::Text(bert) => Some(
                bert.blocks_mut()
                    .iter_mut()
                    .map(|b| b as &mut dyn AdaptableBlock<B>)
                    .collect(),
            ),
            Self::Decoder(gpt) => Some(
                gpt.h
                    .iter_mut()
                    .map(|b| b as &mut dyn AdaptableBlock<B>)
                    .collect(),
            ),
            Self::Autoencoder(_) => None,
        };
        blocks.ok_or_else(|| FinetuneError::Architecture {
            strategy,
            architecture,
            message: "it has no transformer blocks this strategy can edit (ViT, BERT and GPT \
                      have)"
                .into(),
        })
    }
}

/// Mean over the non-padded positions: `hidden` `[b, s, d]`, `padding` `[b, s]` (true at
/// padding) -> `[b, d]`.
fn mean_unpadded<B: FusedBackend>(
    hidden: Tensor<B, 3>,
    padding: Tensor<B, 2, Bool>,
) -> Tensor<B, 2> {
    let [b, s, d] = hidden.dims();
    let keep = padding
        .slice([0..b, 0..s])
        .bool_not()
        .float()
        .reshape([b, s, 1]);
    let sum = (hidden * keep.clone()).sum_dim(1).reshape([b, d]);
    let count = keep.sum_dim(1).reshape([b, 1]).clamp_min(1.0);
    sum / count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peft::{LoraSettings, add_lora};
    use crate::testing::{B, seeded};
    use pretrain_data::tokenizer::{TextTokenizer, TokenizerTrainConfig};
    use pretrain_models::BertConfig;

    /// Shipped Moby Dick paragraphs, tokenized to `len` tokens, as a labeled batch.
    fn moby_dick_batch(tokenizer: &TextTokenizer, len: usize) -> LabeledBatch<B> {
        let encoder = tokenizer.fixed_length(len).unwrap();
        let items: Vec<TokenizedItem> = pretrain_data::samples::moby_dick_paragraphs()
            .unwrap()
            .iter()
            .filter(|p| p.split_whitespace().count() < 15)
            .take(4)
            .enumerate()
            .map(|(i, text)| {
                let e = encoder.encode(text).unwrap();
                TokenizedItem {
                    input_ids: e.ids,
                    attention_mask: e.attention_mask,
                    mlm_targets: None,
                    label: Some(i % 2),
                }
            })
            .collect();
        ToLabeled(TextBatcher).batch(items, &Default::default())
    }

    #[test]
    fn text_features_ignore_padding_and_images_are_refused() {
        let docs = pretrain_data::samples::moby_dick_paragraphs().unwrap();
        let tokenizer = TextTokenizer::train(
            &docs,
            &TokenizerTrainConfig {
                vocab_size: 500,
                ..Default::default()
            },
        )
        .unwrap();
        let dev = Default::default();
        let _guard = seeded(41);
        let bert = BertConfig::new(tokenizer.vocab_size(), 32, 2, 4, 64)
            .with_max_position(64)
            .init::<B>(&dev)
            .unwrap();
        let backbone = Backbone::Text(bert);
        let short = moby_dick_batch(&tokenizer, 40);
        let long = moby_dick_batch(&tokenizer, 56);
        assert_eq!(short.labels.clone().unwrap().dims(), [4]);
        let a = backbone.features(short.inputs.clone()).unwrap();
        let b = backbone.features(long.inputs).unwrap();
        assert_eq!(a.dims(), [4, 32]);
        let diff: f32 = (a.clone() - b).abs().max().into_scalar();
        assert!(diff < 1e-5, "padding changed the features by {diff}");
        // LoRA on BERT's blocks starts as the identity too.
        let lora = add_lora(backbone.clone(), &LoraSettings::default(), &dev).unwrap();
        let c = lora.features(short.inputs).unwrap();
        assert_eq!((a - c).abs().max().into_scalar(), 0.0);
        let images = Inputs::Images(Tensor::zeros([1, 1, 8, 8], &dev));
        let err = backbone.features(images).unwrap_err().to_string();
        assert!(err.contains("a bert encoder cannot read images"), "{err}");
    }

    #[test]
    fn lora_and_adapters_on_gpt_blocks_start_as_the_identity_and_share_the_fused_c_attn() {
        let dev = Default::default();
        let _guard = seeded(42);
        let (vocab, d, layers) = (50, 16, 2);
        let gpt = pretrain_models::GptConfig::new(vocab, 12, layers, 2, d)
            .init::<B>(&dev)
            .unwrap();
        let backbone = Backbone::Decoder(gpt);
        let ids = Tensor::<B, 2, Int>::from_data([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]], &dev);
        let padding = ids.clone().equal_elem(0);
        let inputs = || Inputs::Tokens {
            ids: ids.clone(),
            padding: padding.clone(),
        };
        let reference = backbone.features(inputs()).unwrap();
        let rank = 4;
        let settings = LoraSettings {
            rank,
            ..LoraSettings::default()
        };
        let lora = add_lora(backbone.clone(), &settings, &dev).unwrap();
        let diff: f32 = (lora.features(inputs()).unwrap() - reference.clone())
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0);
        // Query and value (the default targets) share c_attn: one update of rank 4 per block.
        let count = |b: &Backbone<B>| match b {
            Backbone::Decoder(gpt) => gpt.num_params(),
            _ => unreachable!(),
        };
        assert_eq!(count(&lora) - count(&backbone), layers * rank * (d + 3 * d));
        let adapted = crate::peft::add_adapters(
            backbone.clone(),
            &crate::peft::AdapterSettings { bottleneck: 4 },
            &dev,
        )
        .unwrap();
        let diff: f32 = (adapted.features(inputs()).unwrap() - reference)
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0);
    }
}
