//! BERT-style transformer encoder with a masked-language-modeling head tied to the token
//! embeddings, and a pooled output for classification.

use crate::fused::{self, FusedBackend, gelu};
use crate::norm::{LayerNorm, LayerNormConfig};
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear};
use burn::tensor::activation::tanh;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::block::{TransformerBlock, TransformerBlockConfig, TransformerStack};
use crate::error::{ModelError, Result, ensure};
use crate::init::{InitScheme, truncated_normal};
use crate::layers::linear;
use crate::size;

/// Configuration of a [`Bert`] encoder.
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Number of blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate: usize,
    /// Longest sequence.
    #[config(default = 512)]
    pub max_position: usize,
    /// Segment vocabulary (0: no segment embeddings).
    #[config(default = 2)]
    pub type_vocab: usize,
    /// Pre-norm blocks with a final norm when true; BERT's post-norm when false.
    #[config(default = false)]
    pub pre_norm: bool,
    /// Layer-norm epsilon.
    #[config(default = 1e-12)]
    pub norm_eps: f64,
    /// Dropout on embeddings, attention and residual branches.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Initialization (BERT: truncated normal, std 0.02).
    #[config(default = "InitScheme::BERT")]
    pub init: InitScheme,
    /// Scale residual-output layers by `1 / sqrt(2 * layers)` (GPT-2).
    #[config(default = false)]
    pub scale_residual: bool,
}

impl BertConfig {
    /// Google's BERT-Tiny shape: 2 layers, width 128, 2 heads.
    pub fn bert_tiny(vocab_size: usize) -> Self {
        Self::new(vocab_size, 128, 2, 2, 512)
    }

    /// BERT-Mini: 4 layers, width 256, 4 heads.
    pub fn bert_mini(vocab_size: usize) -> Self {
        Self::new(vocab_size, 256, 4, 4, 1024)
    }

    /// BERT-Small: 4 layers, width 512, 8 heads.
    pub fn bert_small(vocab_size: usize) -> Self {
        Self::new(vocab_size, 512, 4, 8, 2048)
    }

    /// BERT-Base: 12 layers, width 768, 12 heads.
    pub fn bert_base(vocab_size: usize) -> Self {
        Self::new(vocab_size, 768, 12, 12, 3072)
    }

    fn block(&self) -> TransformerBlockConfig {
        let residual_scale = if self.scale_residual {
            1.0 / (2.0 * self.layers as f64).sqrt()
        } else {
            1.0
        };
        TransformerBlockConfig::new(self.hidden, self.heads, self.intermediate)
            .with_pre_norm(self.pre_norm)
            .with_norm_eps(self.norm_eps)
            .with_dropout(self.dropout)
            .with_init(self.init)
            .with_residual_scale(residual_scale)
    }

    /// Parameters of the encoder with its pooler and MLM head (whose decoder is tied to the word
    /// embeddings).
    pub fn num_params(&self) -> u128 {
        let h = self.hidden;
        let embeddings = size::sum([
            size::product(&[self.vocab_size, h]),
            size::product(&[self.max_position, h]),
            size::product(&[self.type_vocab, h]),
            size::layer_norm(h),
        ]);
        let mlm = size::sum([
            size::linear(h, h, true),
            size::layer_norm(h),
            self.vocab_size as u128,
        ]);
        size::sum([
            embeddings,
            self.block()
                .num_params()
                .saturating_mul(self.layers as u128),
            if self.pre_norm {
                size::layer_norm(h)
            } else {
                0
            },
            size::linear(h, h, true),
            mlm,
        ])
    }

    /// Builds the encoder; invalid configurations are refused here.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Bert<B>> {
        let m = "BERT";
        ensure(
            self.vocab_size > 0,
            ModelError::config,
            m,
            "vocab_size",
            || "must be > 0".into(),
        )?;
        ensure(self.layers > 0, ModelError::config, m, "layers", || {
            "must be at least 1".into()
        })?;
        ensure(
            self.max_position > 0,
            ModelError::config,
            m,
            "max_position",
            || "must be > 0".into(),
        )?;
        let block = self.block();
        block.validate()?;
        size::check("BERT", self.num_params())?;
        let embedding = |n: usize| {
            let mut e = EmbeddingConfig::new(n, self.hidden).init(device);
            e.weight = Param::initialized(
                ParamId::new(),
                truncated_normal([n, self.hidden], 0.02, device).require_grad(),
            );
            e
        };
        let norm = || {
            LayerNormConfig::new(self.hidden)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        Ok(Bert {
            embeddings: BertEmbeddings {
                word: embedding(self.vocab_size),
                position: embedding(self.max_position),
                token_type: (self.type_vocab > 0).then(|| embedding(self.type_vocab)),
                norm: norm(),
                dropout: DropoutConfig::new(self.dropout).init(),
            },
            layers: (0..self.layers)
                .map(|_| block.init(device))
                .collect::<Result<_>>()?,
            final_norm: self.pre_norm.then(norm),
            pooler: linear(self.hidden, self.hidden, self.init, true, device),
            mlm: MlmHead {
                transform: linear(self.hidden, self.hidden, self.init, true, device),
                norm: norm(),
                bias: Param::initialized(
                    ParamId::new(),
                    Tensor::zeros([self.vocab_size], device).require_grad(),
                ),
            },
            max_position: self.max_position,
        })
    }
}

/// Token, position and segment embeddings, summed and normalized.
#[derive(Module, Debug)]
pub struct BertEmbeddings<B: Backend> {
    /// Token embeddings `[vocab, hidden]` (also the MLM decoder, tied).
    pub word: Embedding<B>,
    /// Learned absolute positions.
    pub position: Embedding<B>,
    /// Segment embeddings, when configured.
    pub token_type: Option<Embedding<B>>,
    /// Layer norm after the sum.
    pub norm: LayerNorm<B>,
    dropout: Dropout,
}

/// MLM prediction head: transform, GELU, norm, then logits against the tied token embeddings.
#[derive(Module, Debug)]
pub struct MlmHead<B: Backend> {
    /// Dense transform.
    pub transform: Linear<B>,
    /// Layer norm.
    pub norm: LayerNorm<B>,
    /// Output bias `[vocab]`.
    pub bias: Param<Tensor<B, 1>>,
}

/// BERT-style encoder.
#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    /// Embedding layer.
    pub embeddings: BertEmbeddings<B>,
    /// Transformer blocks.
    pub layers: Vec<TransformerBlock<B>>,
    /// Final norm of pre-norm encoders.
    pub final_norm: Option<LayerNorm<B>>,
    /// Pooler dense layer (tanh) on the first token.
    pub pooler: Linear<B>,
    /// Masked-language-modeling head.
    pub mlm: MlmHead<B>,
    max_position: usize,
}

impl<B: FusedBackend> Bert<B> {
    /// Hidden states: `input_ids` `[batch, seq]`, `padding` `[batch, seq]` (true at padding),
    /// optional `token_types` `[batch, seq]` -> `[batch, seq, hidden]`. Sequences longer than
    /// `max_position` are truncated to it.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        padding: Option<Tensor<B, 2, Bool>>,
        token_types: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let [b, s] = input_ids.dims();
        let s_used = s.min(self.max_position);
        let input_ids = input_ids.slice([0..b, 0..s_used]);
        let padding = padding.map(|p| p.slice([0..b, 0..s_used]));
        let device = input_ids.device();
        let positions = Tensor::<B, 1, Int>::arange(0..s_used as i64, &device)
            .reshape([1, s_used])
            .expand([b as i64, s_used as i64]);
        let e = &self.embeddings;
        let mut x = e.word.forward(input_ids.clone()) + e.position.forward(positions);
        if let Some(types) = &e.token_type {
            let ids = token_types
                .map(|t| t.slice([0..b, 0..s_used]))
                .unwrap_or_else(|| input_ids.zeros_like());
            x = x + types.forward(ids);
        }
        let mut x = fused::dropout(e.norm.forward(x), e.dropout.prob);
        for layer in &self.layers {
            x = layer.forward(x, padding.clone());
        }
        match &self.final_norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// Pooled sequence representation `[batch, seq, hidden] -> [batch, hidden]`:
    /// `tanh(dense(h[:, 0]))`.
    pub fn pooled(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, _, h] = hidden.dims();
        tanh(
            self.pooler
                .forward(hidden.slice([0..b, 0..1, 0..h]).reshape([b, h])),
        )
    }

    /// Vocabulary logits `[batch, seq, hidden] -> [batch, seq, vocab]`, decoder tied to the token
    /// embeddings.
    pub fn mlm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self
            .mlm
            .norm
            .forward(gelu(fused::linear_module(&self.mlm.transform, hidden)));
        let [b, s, d] = h.dims();
        let words = self.embeddings.word.weight.val(); // [vocab, hidden]
        let v = words.dims()[0];
        let logits =
            h.reshape([b * s, d]).matmul(words.transpose()) + self.mlm.bias.val().reshape([1, v]);
        logits.reshape([b, s, v])
    }
}

impl<B: FusedBackend> TransformerStack<B> for Bert<B> {
    fn blocks_mut(&mut self) -> &mut Vec<TransformerBlock<B>> {
        &mut self.layers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_seeded;
    use crate::summary::num_params;
    use burn::tensor::TensorData;

    use crate::testing::TestBackend as B;

    /// Parameters of the pooler and the MLM head (whose decoder is tied).
    fn head_params(hidden: usize, vocab: usize) -> usize {
        (hidden * hidden + hidden) + (hidden * hidden + hidden) + 2 * hidden + vocab
    }

    #[test]
    fn parameter_counts_match_published_shapes() {
        let dev = Default::default();
        // Google's BERT README: Tiny 4.4M, Mini 11.3M, Small 29.1M parameters (30,522 WordPiece
        // vocabulary, with pooler and MLM head); without pooler and head, BERT-Base is HF's
        // well-known 109,482,240 minus the pooler.
        for (config, millions) in [
            (BertConfig::bert_tiny(30522), 4.4),
            (BertConfig::bert_mini(30522), 11.3),
            (BertConfig::bert_small(30522), 29.1),
        ] {
            let n = num_params(&config.init::<B>(&dev).unwrap());
            assert!(
                ((n as f64 / 1e6) - millions).abs() < 0.05,
                "{n} vs {millions}M"
            );
        }
        let tiny = num_params(&BertConfig::bert_tiny(30522).init::<B>(&dev).unwrap());
        assert_eq!(tiny - head_params(128, 30522), 4_369_408);
    }

    #[test]
    fn shapes_padding_and_truncation() {
        let dev = Default::default();
        let config = BertConfig::new(50, 16, 2, 2, 32)
            .with_max_position(6)
            .with_dropout(0.0);
        let bert = init_seeded(&dev, 1001, || config.init::<B>(&dev).unwrap());
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                vec![2i64, 7, 9, 3, 0, 0, 0, 0, 2, 8, 3, 0, 0, 0, 0, 0],
                [2, 8],
            ),
            &dev,
        );
        let pad = ids.clone().equal_elem(0);
        let h = bert.forward(ids, Some(pad), None);
        assert_eq!(h.dims(), [2, 6, 16]);
        assert_eq!(bert.pooled(h.clone()).dims(), [2, 16]);
        assert_eq!(bert.mlm_logits(h).dims(), [2, 6, 50]);
    }

    #[test]
    fn bad_configs_fail_at_init() {
        let dev = Default::default();
        let err = BertConfig::new(50, 16, 2, 3, 32)
            .init::<B>(&dev)
            .unwrap_err();
        assert!(
            err.to_string().contains("3 must divide d_model 16"),
            "{err}"
        );
        assert!(BertConfig::new(50, 16, 0, 2, 32).init::<B>(&dev).is_err());
    }
}
