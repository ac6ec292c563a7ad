//! Heads put on top of an encoder: projection MLPs (SimCLR, BYOL, VICReg), predictor MLPs
//! (BYOL, SimSiam) and linear classifiers. The MLM head lives with the BERT encoder, whose
//! embeddings it shares.

use crate::fused::FusedBackend;
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::batch_norm::{BatchNorm, BatchNormConfig};
use crate::error::{ModelError, Result, ensure};
use crate::init::InitScheme;
use crate::layers::{linear, stack_widths};
use crate::size;

/// Configuration of an [`MlpHead`]: `Linear -> [BN] -> ReLU` for every hidden layer, then a
/// final `Linear -> [BN]`.
#[derive(Config, Debug)]
pub struct MlpHeadConfig {
    /// Input width (the encoder's feature width).
    pub input: usize,
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Output width.
    pub output: usize,
    /// Batch norm after hidden layers.
    #[config(default = true)]
    pub batch_norm: bool,
    /// Batch norm (without affine shift) after the output layer (SimSiam's projector).
    #[config(default = false)]
    pub output_norm: bool,
    /// Initialization of the linear layers.
    #[config(default = "InitScheme::KaimingNormal")]
    pub init: InitScheme,
}

impl MlpHeadConfig {
    /// SimCLR projection: one hidden layer of the input width, 128-d output.
    pub fn simclr(input: usize) -> Self {
        Self::new(input, vec![input], 128)
    }

    /// BYOL projection: hidden 4096 -> 256 (scaled down by `hidden` for small models).
    pub fn byol(input: usize, hidden: usize, output: usize) -> Self {
        Self::new(input, vec![hidden], output)
    }

    /// BYOL/SimSiam predictor: `dim -> hidden -> dim`.
    pub fn predictor(dim: usize, hidden: usize) -> Self {
        Self::new(dim, vec![hidden], dim)
    }

    /// VICReg expander: two hidden layers of `width`, output `width`.
    pub fn vicreg(input: usize, width: usize) -> Self {
        Self::new(input, vec![width, width], width)
    }

    fn widths(&self) -> Vec<usize> {
        stack_widths(self.input, &self.hidden, self.output)
    }

    /// Parameters of the linear layers and batch norms.
    pub fn num_params(&self) -> u128 {
        let layers = self
            .widths()
            .windows(2)
            .map(|w| size::linear(w[0], w[1], !self.batch_norm))
            .collect::<Vec<_>>();
        let norms = self
            .hidden
            .iter()
            .filter(|_| self.batch_norm)
            .chain(self.output_norm.then_some(&self.output))
            .map(|&w| size::batch_norm(w));
        size::sum(layers.into_iter().chain(norms))
    }

    /// Builds the head.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<MlpHead<B>> {
        ensure(
            self.input > 0 && self.output > 0 && self.hidden.iter().all(|&h| h > 0),
            ModelError::config,
            "MLP head",
            "widths",
            || "must be > 0".into(),
        )?;
        size::check("MLP head", self.num_params())?;
        let layers = self
            .widths()
            .windows(2)
            .map(|w| linear(w[0], w[1], self.init, !self.batch_norm, device))
            .collect();
        let mut norms: Vec<BatchNorm<B>> = if self.batch_norm {
            self.hidden
                .iter()
                .map(|&h| BatchNormConfig::new(h).init(device))
                .collect()
        } else {
            Vec::new()
        };
        if self.output_norm {
            norms.push(BatchNormConfig::new(self.output).init(device));
        }
        Ok(MlpHead {
            layers,
            norms,
            batch_norm: self.batch_norm,
            output_norm: self.output_norm,
            activation: Relu::new(),
        })
    }
}

/// Projection or predictor MLP.
#[derive(Module, Debug)]
pub struct MlpHead<B: Backend> {
    /// Linear layers.
    pub layers: Vec<Linear<B>>,
    /// Batch norms of the hidden layers (and of the output, when configured).
    pub norms: Vec<BatchNorm<B>>,
    batch_norm: bool,
    output_norm: bool,
    activation: Relu,
}

impl<B: FusedBackend> MlpHead<B> {
    /// `[batch, input] -> [batch, output]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut x = x;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                if self.batch_norm {
                    x = self.norms[i].forward(x);
                }
                x = self.activation.forward(x);
            } else if self.output_norm {
                x = self.norms[self.norms.len() - 1].forward(x);
            }
        }
        x
    }
}

/// A linear classifier on frozen or fine-tuned features; zero-initialized like MAE's and
/// BEiT's fine-tuning heads so training starts from uniform predictions.
#[derive(Module, Debug)]
pub struct LinearHead<B: Backend> {
    /// `features -> classes`.
    pub linear: Linear<B>,
}

impl<B: FusedBackend> LinearHead<B> {
    /// A `features -> classes` head with zero weights.
    pub fn new(features: usize, classes: usize, device: &B::Device) -> Result<Self> {
        ensure(
            features > 0 && classes > 1,
            ModelError::config,
            "linear head",
            "features/classes",
            || format!("{features} features and {classes} classes (need > 0 and > 1)"),
        )?;
        size::check("linear head", size::linear(features, classes, true))?;
        Ok(Self {
            linear: linear(features, classes, InitScheme::Zeros, true, device),
        })
    }

    /// `[batch, features] -> [batch, classes]` logits.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear.forward(x)
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
    fn shapes_and_zero_head() {
        let dev = Default::default();
        let x = host_random::<B, 2>([8, 32], Distribution::Default, 1, &dev);
        assert_eq!(
            MlpHeadConfig::simclr(32)
                .init::<B>(&dev)
                .unwrap()
                .forward(x.clone())
                .dims(),
            [8, 128]
        );
        assert_eq!(
            MlpHeadConfig::vicreg(32, 64)
                .init::<B>(&dev)
                .unwrap()
                .forward(x.clone())
                .dims(),
            [8, 64]
        );
        let simsiam = init_seeded(&dev, 1001, || {
            MlpHeadConfig::new(32, vec![64], 32)
                .with_output_norm(true)
                .init::<B>(&dev)
                .unwrap()
        });
        assert_eq!(simsiam.forward(x.clone()).dims(), [8, 32]);
        let head = LinearHead::<B>::new(32, 10, &dev).unwrap();
        assert_eq!(head.forward(x).abs().max().into_scalar(), 0.0);
        assert!(LinearHead::<B>::new(32, 1, &dev).is_err());
    }
}
