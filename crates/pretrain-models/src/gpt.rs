//! GPT: a decoder-only transformer for causal language modeling, in GPT-2's layout (pre-norm
//! blocks, fused query/key/value projection, tied input/output embeddings) with nanoGPT's
//! presets, learned or rotary (RoPE) positions, and a key/value cache for generation.
//!
//! Weight names mirror GPT-2's module tree (`wte`, `wpe`, `h.3.attn.c_attn.weight`,
//! `h.3.mlp.c_proj.bias`, `ln_f`), and burn's `Linear` stores weights as `[in, out]`, the layout
//! of GPT-2's `Conv1D`, so checkpoints map one to one.

use crate::fused::{self, FusedBackend, gelu_tanh};
use crate::norm::{LayerNorm, LayerNormConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::adapter::{Adapter, AdapterConfig};
use crate::attention::split_heads;
use crate::block::{AdaptableBlock, ProjectionRole};
use crate::error::{ModelError, Result, ensure};
use crate::init::InitScheme;
use crate::layers::scaled_linear;
use crate::projection::Projection;
use crate::size;

/// How a GPT knows token positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GptPositions {
    /// A learned embedding per position (`wpe`, GPT-2).
    Learned,
    /// Rotary embeddings on queries and keys (RoPE, base 10,000), no position parameters.
    Rope,
}

/// Configuration of a [`Gpt`].
#[derive(Config, Debug, PartialEq)]
pub struct GptConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Longest context (positions).
    pub block_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads; must divide `d_model`.
    pub n_head: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Dropout on embeddings, attention weights and residual branches.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Biases in the linear layers (GPT-2: true).
    #[config(default = true)]
    pub bias: bool,
    /// Learned or rotary positions.
    #[config(default = "GptPositions::Learned")]
    pub positions: GptPositions,
    /// Output projection tied to the token embedding (GPT-2: true).
    #[config(default = true)]
    pub tie_embeddings: bool,
    /// Layer-norm epsilon (GPT-2: 1e-5).
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Width of the feed-forward layer (GPT-2's `n_inner`); `None`: `4 d_model`.
    #[config(default = "None")]
    pub n_inner: Option<usize>,
}

impl GptConfig {
    /// minGPT's `gpt-nano`: 3 layers, 3 heads, width 48, context 128.
    pub fn gpt_nano(vocab_size: usize) -> Self {
        Self::new(vocab_size, 128, 3, 3, 48)
    }

    /// minGPT's `gpt-micro`: 4 layers, 4 heads, width 128, context 256.
    pub fn gpt_micro(vocab_size: usize) -> Self {
        Self::new(vocab_size, 256, 4, 4, 128)
    }

    /// minGPT's `gpt-mini`: 6 layers, 6 heads, width 192, context 256.
    pub fn gpt_mini(vocab_size: usize) -> Self {
        Self::new(vocab_size, 256, 6, 6, 192)
    }

    /// 8 layers, 8 heads, width 512 (about 25M parameters outside the embeddings), context 512.
    pub fn gpt_small(vocab_size: usize) -> Self {
        Self::new(vocab_size, 512, 8, 8, 512)
    }

    /// GPT-2 (124M): 12 layers, 12 heads, width 768, context 1,024, vocabulary 50,257.
    pub fn gpt2() -> Self {
        Self::new(50_257, 1_024, 12, 12, 768)
    }

    /// Width of the feed-forward layer.
    pub fn d_ff(&self) -> usize {
        self.n_inner
            .unwrap_or_else(|| self.d_model.saturating_mul(4))
    }

    /// Checks every field, and that the model fits [`size::MAX_PARAMETERS`].
    pub fn validate(&self) -> Result<()> {
        let m = "GPT";
        ensure(
            self.vocab_size > 0,
            ModelError::config,
            m,
            "vocab_size",
            || "must be > 0".into(),
        )?;
        ensure(
            self.block_size > 0,
            ModelError::config,
            m,
            "block_size",
            || "must be > 0".into(),
        )?;
        ensure(self.n_layer > 0, ModelError::config, m, "n_layer", || {
            "must be > 0".into()
        })?;
        ensure(
            self.n_head > 0 && self.d_model.is_multiple_of(self.n_head) && self.d_model > 0,
            ModelError::config,
            m,
            "n_head",
            || format!("{} must divide d_model {}", self.n_head, self.d_model),
        )?;
        ensure(
            self.positions != GptPositions::Rope || (self.d_model / self.n_head).is_multiple_of(2),
            ModelError::config,
            m,
            "positions",
            || "rope needs an even head width".into(),
        )?;
        ensure(
            (0.0..1.0).contains(&self.dropout),
            ModelError::config,
            m,
            "dropout",
            || format!("{} must lie in [0, 1)", self.dropout),
        )?;
        ensure(self.d_ff() > 0, ModelError::config, m, "n_inner", || {
            "must be > 0".into()
        })?;
        crate::norm::check_epsilon(m, self.norm_eps)?;
        size::check("GPT", self.num_params())
    }

    /// Parameters of the model (a tied output projection counted once, with the embedding).
    pub fn num_params(&self) -> u128 {
        let d = self.d_model;
        let ff = self.d_ff();
        let biases = |n| if self.bias { n as u128 } else { 0 };
        // Attention: c_attn [d, 3d] and c_proj [d, d]; MLP: c_fc [d, ff] and c_proj [ff, d].
        let block = size::sum([
            size::layer_norm(d).saturating_mul(2),
            size::product(&[4, d, d]),
            biases(4 * d),
            size::product(&[2, d, ff]),
            biases(ff + d),
        ]);
        let learned_positions = self.positions == GptPositions::Learned;
        size::sum([
            size::product(&[self.vocab_size, d]),
            if learned_positions {
                size::product(&[self.block_size, d])
            } else {
                0
            },
            block.saturating_mul(self.n_layer as u128),
            size::layer_norm(d),
            if self.tie_embeddings {
                0
            } else {
                size::linear(d, self.vocab_size, false)
            },
        ])
    }

    /// Builds the model with GPT-2's initialization: `N(0, 0.02)` weights and embeddings, zero
    /// biases, the projections writing into the residual stream scaled by `1 / sqrt(2 n_layer)`.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<Gpt<B>> {
        self.validate()?;
        let d = self.d_model;
        let residual_scale = 1.0 / (2.0 * self.n_layer as f64).sqrt();
        let linear = |d_in, d_out, scale| {
            scaled_linear(d_in, d_out, InitScheme::GPT2, self.bias, scale, device)
        };
        let embedding = |n| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        let dropout = || DropoutConfig::new(self.dropout).init();
        let blocks = (0..self.n_layer)
            .map(|_| GptBlock {
                ln_1: norm(),
                attn: CausalSelfAttention {
                    c_attn: linear(d, 3 * d, 1.0).into(),
                    c_proj: linear(d, d, residual_scale).into(),
                    attn_dropout: dropout(),
                    resid_dropout: dropout(),
                    n_head: self.n_head,
                    rope: self.positions == GptPositions::Rope,
                },
                ln_2: norm(),
                mlp: GptMlp {
                    c_fc: linear(d, self.d_ff(), 1.0).into(),
                    c_proj: linear(self.d_ff(), d, residual_scale).into(),
                    dropout: dropout(),
                },
                attn_adapter: None,
                mlp_adapter: None,
            })
            .collect();
        Ok(Gpt {
            wte: embedding(self.vocab_size),
            wpe: (self.positions == GptPositions::Learned).then(|| embedding(self.block_size)),
            h: blocks,
            ln_f: norm(),
            lm_head: (!self.tie_embeddings)
                .then(|| scaled_linear(d, self.vocab_size, InitScheme::GPT2, false, 1.0, device)),
            dropout: dropout(),
            block_size: self.block_size,
        })
    }
}

/// Keys and values of the positions a [`Gpt`] has seen, per layer (`[batch, heads, len,
/// d_head]`), so generation computes each new token's attention without recomputing the
/// prefix.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: FusedBackend> KvCache<B> {
    /// An empty cache for `model`.
    pub fn new(model: &Gpt<B>) -> Self {
        Self {
            layers: vec![None; model.h.len()],
            len: 0,
        }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Decoder-only transformer: token (and learned position) embeddings, pre-norm causal blocks,
/// a final norm and the vocabulary projection.
#[derive(Module, Debug)]
pub struct Gpt<B: Backend> {
    /// Token embeddings `[vocab, d_model]`; the output projection too when tied.
    pub wte: Embedding<B>,
    /// Learned position embeddings `[block_size, d_model]` (absent with RoPE).
    pub wpe: Option<Embedding<B>>,
    /// The blocks.
    pub h: Vec<GptBlock<B>>,
    /// Final layer norm.
    pub ln_f: LayerNorm<B>,
    /// Output projection `d_model -> vocab` when not tied to `wte`.
    pub lm_head: Option<Linear<B>>,
    dropout: Dropout,
    block_size: usize,
}

/// One pre-norm block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Module, Debug)]
pub struct GptBlock<B: Backend> {
    /// Norm before attention.
    pub ln_1: LayerNorm<B>,
    /// Causal self-attention.
    pub attn: CausalSelfAttention<B>,
    /// Norm before the feed-forward network.
    pub ln_2: LayerNorm<B>,
    /// Feed-forward network.
    pub mlp: GptMlp<B>,
    /// Adapter on the attention output, before the residual sum (fine-tuning).
    pub attn_adapter: Option<Adapter<B>>,
    /// Adapter on the feed-forward output, before the residual sum (fine-tuning).
    pub mlp_adapter: Option<Adapter<B>>,
}

/// Multi-head causal self-attention with GPT-2's fused `c_attn` (query, key, value) and output
/// projection `c_proj`.
#[derive(Module, Debug)]
pub struct CausalSelfAttention<B: Backend> {
    /// `d_model -> 3 d_model`: queries, keys, values.
    pub c_attn: Projection<B>,
    /// `d_model -> d_model`, into the residual stream.
    pub c_proj: Projection<B>,
    attn_dropout: Dropout,
    resid_dropout: Dropout,
    n_head: usize,
    rope: bool,
}

/// GPT-2's feed-forward network: `c_proj(gelu(c_fc(x)))`, width [`GptConfig::d_ff`].
#[derive(Module, Debug)]
pub struct GptMlp<B: Backend> {
    /// `d_model -> 4 d_model`.
    pub c_fc: Projection<B>,
    /// `4 d_model -> d_model`, into the residual stream.
    pub c_proj: Projection<B>,
    dropout: Dropout,
}

impl<B: FusedBackend> Gpt<B> {
    /// Parameters of the token and position embeddings; the others are the "non-embedding"
    /// parameters scaling laws count.
    pub fn embedding_params(&self) -> usize {
        let count = |e: &Embedding<B>| e.weight.val().dims().iter().product::<usize>();
        count(&self.wte) + self.wpe.as_ref().map_or(0, count)
    }

    /// Longest context.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Refuses a context of `len` positions beyond the block size (a prompt too long for the
    /// model), naming both.
    pub fn check_context(&self, len: usize) -> Result<()> {
        if (1..=self.block_size).contains(&len) {
            Ok(())
        } else {
            Err(ModelError::InvalidConfig {
                model: "GPT",
                field: "context",
                message: format!(
                    "{len} tokens, but the model takes 1 to {} (its block size)",
                    self.block_size
                ),
            })
        }
    }

    /// Next-token logits of every position: `[batch, seq] -> [batch, seq, vocab]`
    /// (`seq <= block_size`, see [`Gpt::check_context`]).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.logits(self.forward_hidden(tokens, None))
    }

    /// Like [`Gpt::forward`] for the tokens that follow those in `cache`, which it extends: the
    /// logits equal those of the whole sequence's forward at these positions
    /// (`cache.len() + seq <= block_size`).
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        self.logits(self.forward_hidden(tokens, Some(cache)))
    }

    /// Final-norm hidden states `[batch, seq, d_model]` (the features probes and pooling use).
    pub fn forward_hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [_, seq] = tokens.dims();
        let device = tokens.device();
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let mut x = self.wte.forward(tokens); // [batch, seq, d_model]
        if let Some(wpe) = &self.wpe {
            let positions =
                Tensor::<B, 1, Int>::arange(offset as i64..(offset + seq) as i64, &device)
                    .reshape([1, seq]);
            x = x + wpe.forward(positions);
        }
        let mut x = fused::dropout(x, self.dropout.prob);
        for (i, block) in self.h.iter().enumerate() {
            let past = cache.as_mut().map(|c| &mut c.layers[i]);
            x = block.forward(x, offset, past);
        }
        if let Some(cache) = cache {
            cache.len += seq;
        }
        self.ln_f.forward(x)
    }

    /// Vocabulary logits of hidden states: `[batch, seq, d_model] -> [batch, seq, vocab]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => fused::linear_module(head, hidden),
            None => {
                let [batch, seq, d_model] = hidden.dims();
                let words = self.wte.weight.val(); // [vocab, d_model]
                let vocab = words.dims()[0];
                hidden
                    .reshape([batch * seq, d_model])
                    .matmul(words.transpose())
                    .reshape([batch, seq, vocab])
            }
        }
    }
}

impl<B: FusedBackend> GptBlock<B> {
    /// `[batch, seq, d_model] -> [batch, seq, d_model]` for positions `offset..offset + seq`.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        offset: usize,
        past: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let adapted = |adapter: &Option<Adapter<B>>, out: Tensor<B, 3>| match adapter {
            Some(adapter) => adapter.forward(out),
            None => out,
        };
        let attn = self
            .attn
            .forward(self.ln_1.forward(x.clone()), offset, past);
        let x = x + adapted(&self.attn_adapter, attn);
        let mlp = self.mlp.forward(self.ln_2.forward(x.clone()));
        x + adapted(&self.mlp_adapter, mlp)
    }
}

impl<B: FusedBackend> AdaptableBlock<B> for GptBlock<B> {
    fn projection_mut(&mut self, role: ProjectionRole) -> &mut Projection<B> {
        match role {
            ProjectionRole::Query | ProjectionRole::Key | ProjectionRole::Value => {
                &mut self.attn.c_attn
            }
            ProjectionRole::Output => &mut self.attn.c_proj,
            ProjectionRole::Fc1 => &mut self.mlp.c_fc,
            ProjectionRole::Fc2 => &mut self.mlp.c_proj,
        }
    }

    fn add_adapters(&mut self, config: &AdapterConfig, device: &B::Device) -> Result<()> {
        let d = self.attn.c_proj.d_out();
        self.attn_adapter = Some(config.init(d, device)?);
        self.mlp_adapter = Some(config.init(d, device)?);
        Ok(())
    }
}

impl<B: FusedBackend> GptMlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        // GPT-2's GELU is the tanh approximation ("gelu_new"): imported GPT-2 weights then give
        // the reference logits.
        let out = self.c_proj.forward(gelu_tanh(self.c_fc.forward(x)));
        fused::dropout(out, self.dropout.prob)
    }
}

impl<B: FusedBackend> CausalSelfAttention<B> {
    /// `[batch, seq, d_model] -> [batch, seq, d_model]`; each position attends to itself, the
    /// positions before it in `x`, and the `past` keys and values (which it extends).
    fn forward(
        &self,
        x: Tensor<B, 3>,
        offset: usize,
        past: Option<&mut Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    ) -> Tensor<B, 3> {
        let [_, seq, d_model] = x.dims();
        let device = x.device();
        let mut qkv = self
            .c_attn
            .forward(x)
            .chunk(3, 2)
            .into_iter()
            .map(|t| split_heads(t, self.n_head)); // [batch, heads, seq, d_head] each
        let (mut q, mut k, mut v) = (
            qkv.next().expect("three chunks"),
            qkv.next().expect("three chunks"),
            qkv.next().expect("three chunks"),
        );
        if self.rope {
            let (cos, sin) = rope_tables::<B>(offset, seq, d_model / self.n_head, &device);
            q = rotate(q, cos.clone(), sin.clone());
            k = rotate(k, cos, sin);
        }
        if let Some(past) = past {
            if let Some((past_k, past_v)) = past.take() {
                k = Tensor::cat(vec![past_k, k], 2);
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *past = Some((k.clone(), v.clone()));
        }
        // Query i (position offset + i) sees keys 0..=offset + i.
        let context = fused::attention(q, k, v, None, Some(offset), self.attn_dropout.prob);
        fused::dropout(self.c_proj.forward(context), self.resid_dropout.prob)
    }
}

/// RoPE's cosines and sines for positions `offset..offset + seq`: `[1, 1, seq, d_head]` each,
/// frequencies `10000^(-2i / d_head)` repeated over the two halves (the rotate-half layout).
fn rope_tables<B: FusedBackend>(
    offset: usize,
    seq: usize,
    d_head: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let half = d_head / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 10_000f32.powf(-2.0 * i as f32 / d_head as f32))
        .collect();
    let angles: Vec<f32> = (offset..offset + seq)
        .flat_map(|p| {
            let row: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            row.iter().chain(&row).copied().collect::<Vec<f32>>()
        })
        .collect();
    let angles =
        Tensor::<B, 1>::from_floats(angles.as_slice(), device).reshape([1, 1, seq, d_head]);
    (angles.clone().cos(), angles.sin())
}

/// `x * cos + rotate_half(x) * sin`, `rotate_half([a, b]) = [-b, a]` over the last axis.
fn rotate<B: FusedBackend>(x: Tensor<B, 4>, cos: Tensor<B, 4>, sin: Tensor<B, 4>) -> Tensor<B, 4> {
    let mut halves = x.clone().chunk(2, 3).into_iter();
    let (a, b) = (
        halves.next().expect("two halves"),
        halves.next().expect("two halves"),
    );
    let rotated = Tensor::cat(vec![b.neg(), a], 3);
    x * cos + rotated * sin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::init_seeded;
    use burn::tensor::TensorData;

    use crate::testing::TestBackend as B;

    fn tokens(values: &[i64], batch: usize) -> Tensor<B, 2, Int> {
        let seq = values.len() / batch;
        Tensor::from_data(
            TensorData::new(values.to_vec(), [batch, seq]),
            &Default::default(),
        )
    }

    fn max_diff(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn configs() -> [GptConfig; 2] {
        let learned = GptConfig::new(50, 16, 2, 2, 16);
        let rope = learned
            .clone()
            .with_positions(GptPositions::Rope)
            .with_tie_embeddings(false);
        [learned, rope]
    }

    #[test]
    fn shapes_and_no_position_sees_the_future() {
        let dev = Default::default();
        for config in configs() {
            let model = init_seeded(&dev, 1001, || config.init::<B>(&dev).unwrap());
            let a = tokens(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 2);
            let logits = model.forward(a);
            assert_eq!(logits.dims(), [2, 6, 50]);
            // Changing token t + 1 leaves the outputs at 0..=t alone.
            for t in 0..5 {
                let mut values = vec![1, 2, 3, 4, 5, 6];
                values[t + 1] = 42;
                let before = model.forward(tokens(&[1, 2, 3, 4, 5, 6], 1));
                let after = model.forward(tokens(&values, 1));
                let prefix = |l: Tensor<B, 3>| l.slice([0..1, 0..t + 1, 0..50]);
                assert_eq!(max_diff(prefix(before.clone()), prefix(after.clone())), 0.0);
                assert!(
                    max_diff(before, after) > 0.0,
                    "position {t} + 1 had no effect"
                );
            }
        }
    }

    #[test]
    fn cached_decoding_matches_the_full_forward() {
        let dev = Default::default();
        for config in configs() {
            let model = init_seeded(&dev, 1002, || config.init::<B>(&dev).unwrap());
            let sequence: Vec<i64> = (0..12).map(|i| (i * 7 + 3) % 50).collect();
            let full = model.forward(tokens(&sequence, 1));
            let mut cache = KvCache::new(&model);
            // A prompt of 5, then one token at a time.
            let mut parts = vec![model.forward_cached(tokens(&sequence[..5], 1), &mut cache)];
            for t in 5..12 {
                parts.push(model.forward_cached(tokens(&sequence[t..t + 1], 1), &mut cache));
            }
            assert_eq!(cache.len(), 12);
            let cached = Tensor::cat(parts, 1);
            assert!(max_diff(full, cached) < 1e-5);
        }
    }

    #[test]
    fn gpt2_initialization_and_names() {
        let dev = Default::default();
        let config = GptConfig::new(64, 8, 4, 2, 32);
        let model = init_seeded(&dev, 1003, || config.init::<B>(&dev).unwrap());
        let std = |t: Tensor<B, 2>| t.var(0).mean().sqrt().into_scalar();
        let c_attn = std(model.h[0].attn.c_attn.weight.val());
        let c_proj = std(model.h[0].attn.c_proj.weight.val());
        assert!((c_attn - 0.02).abs() < 0.003, "{c_attn}");
        assert!((c_proj - 0.02 / 8f32.sqrt()).abs() < 0.002, "{c_proj}");
        let bias = model.h[0].mlp.c_fc.bias.as_ref().unwrap().val();
        assert_eq!(bias.abs().max().into_scalar(), 0.0);
        assert!(model.lm_head.is_none() && model.wpe.is_some());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpt.safetensors");
        crate::save_safetensors(&model, &path).unwrap();
        let names = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        for name in [
            "wte.weight",
            "wpe.weight",
            "h.3.attn.c_attn.weight",
            "h.0.mlp.c_proj.bias",
            "ln_f.gamma",
        ] {
            assert!(names.contains(name), "{name} missing");
        }
        let loaded = init_seeded(&dev, 1004, || {
            crate::load_safetensors(config.init::<B>(&dev).unwrap(), &path).unwrap()
        });
        let x = tokens(&[1, 2, 3], 1);
        assert_eq!(max_diff(model.forward(x.clone()), loaded.forward(x)), 0.0);
    }

    #[test]
    fn bad_configs_and_contexts_are_refused_by_field() {
        let dev = Default::default();
        let err = GptConfig::new(10, 8, 2, 3, 16)
            .init::<B>(&dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("n_head"), "{err}");
        let model = init_seeded(&dev, 1005, || {
            GptConfig::gpt_nano(10).init::<B>(&dev).unwrap()
        });
        assert!(model.check_context(128).is_ok());
        let err = model.check_context(129).unwrap_err().to_string();
        assert!(err.contains("129") && err.contains("block size"), "{err}");
        // A negative or non-finite layer-norm epsilon (an imported checkpoint's) gave NaN
        // outputs: refused by name in GPT, and in BERT and ViT through their blocks.
        for eps in [-1.0, f64::NAN, f64::INFINITY] {
            let errors = [
                GptConfig::gpt_nano(10)
                    .with_norm_eps(eps)
                    .init::<B>(&dev)
                    .map(drop),
                crate::BertConfig::new(50, 16, 1, 2, 32)
                    .with_norm_eps(eps)
                    .init::<B>(&dev)
                    .map(drop),
                crate::VitConfig::new(8, 4, 1, 16, 1, 2)
                    .with_norm_eps(eps)
                    .init::<B>(&dev)
                    .map(drop),
            ];
            for err in errors {
                let err = err.unwrap_err().to_string();
                assert!(err.contains("norm_eps") && err.contains("finite"), "{err}");
            }
        }
    }
}
