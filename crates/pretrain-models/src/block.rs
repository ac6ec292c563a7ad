//! The transformer block shared by the ViT and the BERT-style encoder.

use crate::fused::{self, FusedBackend};
use crate::norm::{LayerNorm, LayerNormConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

use crate::adapter::{Adapter, AdapterConfig};
use crate::attention::SelfAttention;
use crate::drop_path::{DropPath, linear_drop_path_rates};
use crate::error::{ModelError, Result, ensure};
use crate::init::InitScheme;
use crate::layers::Mlp;
use crate::projection::Projection;
use crate::size;

/// Configuration of one transformer block.
#[derive(Config, Debug)]
pub struct TransformerBlockConfig {
    /// Width of the token representations.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Hidden width of the feed-forward network.
    pub d_ff: usize,
    /// Pre-norm (ViT, GPT-2) when true, post-norm (original BERT) when false.
    #[config(default = true)]
    pub pre_norm: bool,
    /// Layer-norm epsilon.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Dropout on attention weights and residual branches.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Initialization of every linear layer.
    #[config(default = "InitScheme::BERT")]
    pub init: InitScheme,
    /// Factor on the weights of the layers writing into the residual stream (attention output,
    /// second feed-forward layer); GPT-2 uses `1 / sqrt(2 * layers)`.
    #[config(default = 1.0)]
    pub residual_scale: f64,
}

/// Pre- or post-norm transformer block: self-attention and a feed-forward network, each with a
/// residual connection; optional bottleneck adapters after each sublayer (fine-tuning) and
/// stochastic depth on the residual branches.
#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    /// Layer norm before (pre-norm) or after (post-norm) attention.
    pub norm1: LayerNorm<B>,
    /// Multi-head self-attention (`query`, `key`, `value`, `output`).
    pub attn: SelfAttention<B>,
    /// Layer norm before or after the feed-forward network.
    pub norm2: LayerNorm<B>,
    /// Feed-forward network (`fc1`, `fc2`).
    pub mlp: Mlp<B>,
    /// Adapter on the attention output, before the residual sum.
    pub attn_adapter: Option<Adapter<B>>,
    /// Adapter on the feed-forward output, before the residual sum.
    pub mlp_adapter: Option<Adapter<B>>,
    dropout: Dropout,
    drop_path: DropPath,
    pre_norm: bool,
}

impl TransformerBlockConfig {
    /// Checks the shape parameters.
    pub fn validate(&self) -> Result<()> {
        let m = "transformer block";
        ensure(
            self.d_model > 0 && self.d_ff > 0,
            ModelError::config,
            m,
            "d_model/d_ff",
            || "must be > 0".into(),
        )?;
        ensure(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            ModelError::config,
            m,
            "n_heads",
            || format!("{} must divide d_model {}", self.n_heads, self.d_model),
        )?;
        ensure(
            (0.0..1.0).contains(&self.dropout),
            ModelError::config,
            m,
            "dropout",
            || format!("{} must lie in [0, 1)", self.dropout),
        )?;
        crate::norm::check_epsilon(m, self.norm_eps)
    }

    /// Parameters of the block (attention, feed-forward network, two norms).
    pub fn num_params(&self) -> u128 {
        let d = self.d_model;
        size::sum([
            size::linear(d, d, true).saturating_mul(4),
            size::linear(d, self.d_ff, true),
            size::linear(self.d_ff, d, true),
            size::layer_norm(d).saturating_mul(2),
        ])
    }

    /// Builds the block.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<TransformerBlock<B>> {
        self.validate()?;
        size::check("transformer block", self.num_params())?;
        let d = self.d_model;
        let attn = SelfAttention::new(
            d,
            self.n_heads,
            self.dropout,
            self.init,
            self.residual_scale,
            device,
        );
        let mlp = Mlp::new(d, self.d_ff, self.init, self.residual_scale, device);
        Ok(TransformerBlock {
            norm1: LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            attn,
            norm2: LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            mlp,
            attn_adapter: None,
            mlp_adapter: None,
            dropout: DropoutConfig::new(self.dropout).init(),
            drop_path: DropPath::default(),
            pre_norm: self.pre_norm,
        })
    }
}

impl<B: FusedBackend> TransformerBlock<B> {
    /// `[batch, seq, d_model] -> [batch, seq, d_model]`; `padding` (`[batch, seq]`, true at
    /// padding) keeps attention off padded positions.
    pub fn forward(&self, x: Tensor<B, 3>, padding: Option<Tensor<B, 2, Bool>>) -> Tensor<B, 3> {
        let attend = |h: Tensor<B, 3>| {
            let out = fused::dropout(self.attn.forward(h, padding), self.dropout.prob);
            let out = match &self.attn_adapter {
                Some(adapter) => adapter.forward(out),
                None => out,
            };
            self.drop_path.forward(out)
        };
        let feed_forward = |h: Tensor<B, 3>| {
            let out = fused::dropout(self.mlp.forward(h), self.dropout.prob);
            let out = match &self.mlp_adapter {
                Some(adapter) => adapter.forward(out),
                None => out,
            };
            self.drop_path.forward(out)
        };
        if self.pre_norm {
            let x = x.clone() + attend(self.norm1.forward(x));
            x.clone() + feed_forward(self.norm2.forward(x))
        } else {
            let x = self.norm1.forward(x.clone() + attend(x));
            self.norm2.forward(x.clone() + feed_forward(x))
        }
    }

    /// Token width.
    pub fn d_model(&self) -> usize {
        self.attn.query.d_in()
    }

    /// Inserts fresh adapters after the attention and feed-forward sublayers (identity at init).
    pub fn add_adapters(&mut self, config: &AdapterConfig, device: &B::Device) -> Result<()> {
        let d = self.d_model();
        self.attn_adapter = Some(config.init(d, device)?);
        self.mlp_adapter = Some(config.init(d, device)?);
        Ok(())
    }

    /// Stochastic-depth probability of the residual branches.
    pub fn drop_path(&self) -> f64 {
        self.drop_path.prob()
    }

    /// Sets the stochastic-depth probability of the residual branches.
    pub fn set_drop_path(&mut self, prob: f64) {
        self.drop_path = DropPath::new(prob);
    }
}

pretrain_data::named_enum! {
    /// The linear layers of a transformer block by role, as LoRA names them (kebab case, strum's
    /// `IntoStaticStr` and `VariantArray`: `Named` of `pretrain-data`).
    pub enum ProjectionRole {
        /// Attention query projection.
        Query,
        /// Attention key projection.
        Key,
        /// Attention value projection.
        Value,
        /// Attention output projection.
        Output,
        /// First feed-forward layer.
        Fc1,
        /// Second feed-forward layer.
        Fc2,
    }
}

/// A transformer block parameter-efficient fine-tuning can edit: its projections (for LoRA)
/// and adapters after its sublayers.
pub trait AdaptableBlock<B: FusedBackend> {
    /// The layer doing `role`'s work; a fused layer serves several roles (GPT's `c_attn` is
    /// the query, key and value projection).
    fn projection_mut(&mut self, role: ProjectionRole) -> &mut Projection<B>;

    /// Inserts fresh adapters after the attention and feed-forward sublayers (identity at
    /// init).
    fn add_adapters(&mut self, config: &AdapterConfig, device: &B::Device) -> Result<()>;
}

impl<B: FusedBackend> AdaptableBlock<B> for TransformerBlock<B> {
    fn projection_mut(&mut self, role: ProjectionRole) -> &mut Projection<B> {
        match role {
            ProjectionRole::Query => &mut self.attn.query,
            ProjectionRole::Key => &mut self.attn.key,
            ProjectionRole::Value => &mut self.attn.value,
            ProjectionRole::Output => &mut self.attn.output,
            ProjectionRole::Fc1 => &mut self.mlp.fc1,
            ProjectionRole::Fc2 => &mut self.mlp.fc2,
        }
    }

    fn add_adapters(&mut self, config: &AdapterConfig, device: &B::Device) -> Result<()> {
        TransformerBlock::add_adapters(self, config, device)
    }
}

/// A model built on a stack of [`TransformerBlock`]s (ViT, BERT), so fine-tuning can reach
/// into them (adapters, LoRA, drop-path, freezing) without knowing the architecture.
pub trait TransformerStack<B: FusedBackend> {
    /// The blocks, input side first.
    fn blocks_mut(&mut self) -> &mut Vec<TransformerBlock<B>>;

    /// Stochastic depth rising linearly from 0 at the first block to `max_rate` at the last
    /// ([`linear_drop_path_rates`]).
    fn set_drop_path_rate(&mut self, max_rate: f64) {
        let blocks = self.blocks_mut();
        let rates = linear_drop_path_rates(max_rate, blocks.len());
        for (block, rate) in blocks.iter_mut().zip(rates) {
            block.set_drop_path(rate);
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
    fn shapes_and_padding_isolation() {
        let dev = Default::default();
        let block = init_seeded(&dev, 1001, || {
            TransformerBlockConfig::new(32, 4, 64)
                .init::<B>(&dev)
                .unwrap()
        });
        let x = host_random::<B, 3>([2, 5, 32], Distribution::Normal(0.0, 1.0), 1, &dev);
        assert_eq!(block.forward(x.clone(), None).dims(), [2, 5, 32]);
        // Changing a padded token must not change the others' outputs.
        let pad = Tensor::<B, 2, Bool>::from_data([[false, false, false, true, true]; 2], &dev);
        let a = block.forward(x.clone(), Some(pad.clone()));
        let changed = x
            .clone()
            .slice_assign([0..2, 4..5, 0..32], Tensor::ones([2, 1, 32], &dev) * 9.0);
        let b = block.forward(changed, Some(pad));
        let diff: f32 = (a.slice([0..2, 0..3, 0..32]) - b.slice([0..2, 0..3, 0..32]))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn bad_heads_are_refused() {
        let err = TransformerBlockConfig::new(30, 4, 64)
            .init::<B>(&Default::default())
            .unwrap_err();
        assert!(
            err.to_string().contains("4 must divide d_model 30"),
            "{err}"
        );
    }

    fn max_diff(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn fresh_adapters_and_lora_leave_outputs_unchanged_and_lora_merges_exactly() {
        use crate::lora::LoraConfig;
        use burn::module::Param;
        let dev = Default::default();
        let block = init_seeded(&dev, 1002, || {
            TransformerBlockConfig::new(32, 4, 64)
                .init::<B>(&dev)
                .unwrap()
        });
        let x = host_random::<B, 3>([2, 5, 32], Distribution::Normal(0.0, 1.0), 2, &dev);
        let base = block.forward(x.clone(), None);

        let mut adapted = block.clone();
        adapted
            .add_adapters(&AdapterConfig::new().with_bottleneck(8), &dev)
            .unwrap();
        assert_eq!(
            max_diff(adapted.forward(x.clone(), None), base.clone()),
            0.0
        );

        let mut lora = block.clone();
        let config = LoraConfig::new().with_rank(4);
        lora.attn.query.add_lora(&config, &dev).unwrap();
        lora.mlp.fc2.add_lora(&config, &dev).unwrap();
        assert_eq!(max_diff(lora.forward(x.clone(), None), base.clone()), 0.0);

        // A trained (non-zero) update: merged and unmerged forms agree, unmerge restores W.
        for p in [&mut lora.attn.query, &mut lora.mlp.fc2] {
            let mut update = p.lora.take().unwrap();
            let b = host_random(update.b.dims(), Distribution::Normal(0.0, 0.5), 4, &dev);
            update.b = Param::initialized(update.b.id, b);
            p.lora = Some(update);
        }
        let unmerged = lora.forward(x.clone(), None);
        assert!(max_diff(unmerged.clone(), base) > 1e-2);
        let weight = lora.attn.query.weight.val();
        lora.attn.query.merge_lora();
        lora.mlp.fc2.merge_lora();
        assert!(lora.attn.query.lora.as_ref().unwrap().is_merged());
        let merged = lora.forward(x.clone(), None);
        assert!(max_diff(merged, unmerged.clone()) < 1e-5);
        lora.attn.query.unmerge_lora();
        let restored: f32 = (lora.attn.query.weight.val() - weight)
            .abs()
            .max()
            .into_scalar();
        assert!(restored < 1e-6, "{restored}");
        lora.mlp.fc2.drop_lora_merged();
        assert!(lora.mlp.fc2.lora.is_none());
        assert!(max_diff(lora.forward(x, None), unmerged) < 1e-5);
    }

    #[test]
    fn drop_path_is_identity_in_evaluation_and_per_sample_in_training() {
        use burn::module::AutodiffModule;
        type AD = burn::backend::Autodiff<B>;
        let dev = Default::default();
        let mut block = init_seeded(&dev, 1003, || {
            TransformerBlockConfig::new(16, 2, 32)
                .init::<AD>(&dev)
                .unwrap()
        });
        block.set_drop_path(0.5);
        assert_eq!(block.drop_path(), 0.5);
        let x = host_random::<AD, 3>([64, 3, 16], Distribution::Normal(0.0, 1.0), 3, &dev);
        // Evaluation (no autodiff): drop-path is the identity.
        let plain = {
            let mut b = block.clone();
            b.set_drop_path(0.0);
            b.valid().forward(x.clone().inner(), None)
        };
        assert_eq!(
            max_diff(
                block.valid().forward(x.clone().inner(), None),
                plain.clone()
            ),
            0.0
        );
        // Training: some samples lose both branches (output = input), others keep them.
        let out = block.forward(x.clone(), None).inner();
        let per_sample = |a: Tensor<B, 3>, b: Tensor<B, 3>| -> Vec<f32> {
            (a - b)
                .abs()
                .max_dim(2)
                .max_dim(1)
                .reshape([64])
                .into_data()
                .to_vec()
                .unwrap()
        };
        let dropped_all = per_sample(out.clone(), x.clone().inner());
        let untouched = dropped_all.iter().filter(|d| **d == 0.0).count();
        // Both branches dropped: p = 0.25 per sample; 0 or over 40 of 64 is beyond 1e-8.
        assert!(
            (1..=40).contains(&untouched),
            "{untouched} of 64 samples dropped twice"
        );
    }
}
