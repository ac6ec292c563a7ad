//! Convolutional encoders for contrastive learning on small images: a small CNN that trains in
//! minutes on a CPU, and ResNet-18 with a CIFAR stem.

use crate::fused::{FusedBackend, conv2d_module};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{PaddingConfig2d, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::batch_norm::{BatchNorm, BatchNormConfig};
use crate::drop_path::{DropPath, linear_drop_path_rates};
use crate::error::{ModelError, Result, ensure};
use crate::size;

fn conv3x3<B: FusedBackend>(
    c_in: usize,
    c_out: usize,
    stride: usize,
    device: &B::Device,
) -> Conv2d<B> {
    // He-initialized (burn's conv default is Kaiming uniform), no bias before batch norm.
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// Global average pooling `[batch, c, h, w] -> [batch, c]`.
fn global_pool<B: FusedBackend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

/// Configuration of a [`SmallCnn`].
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Input channels.
    pub channels: usize,
    /// Channels of each conv-BN-ReLU stage; stages after the first halve the resolution.
    pub widths: Vec<usize>,
}

impl SmallCnnConfig {
    /// Four stages of 32, 64, 128, 256 channels for 28x28 grey images (feature width 256).
    pub fn small_cnn_28() -> Self {
        Self::new(1, vec![32, 64, 128, 256])
    }

    /// Parameters of the convolutions and batch norms.
    pub fn num_params(&self) -> u128 {
        let chans: Vec<usize> = std::iter::once(self.channels)
            .chain(self.widths.iter().copied())
            .collect();
        size::sum(
            chans
                .windows(2)
                .map(|w| size::sum([size::conv(w[0], w[1], 3, false), size::batch_norm(w[1])])),
        )
    }

    /// Builds the encoder.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<SmallCnn<B>> {
        ensure(
            !self.widths.is_empty() && self.widths.iter().all(|&w| w > 0),
            ModelError::config,
            "small CNN",
            "widths",
            || format!("{:?} must be non-empty and positive", self.widths),
        )?;
        ensure(
            self.channels > 0,
            ModelError::config,
            "small CNN",
            "channels",
            || "must be > 0".into(),
        )?;
        size::check("small CNN", self.num_params())?;
        let chans: Vec<usize> = std::iter::once(self.channels)
            .chain(self.widths.iter().copied())
            .collect();
        Ok(SmallCnn {
            convs: chans
                .windows(2)
                .map(|w| conv3x3(w[0], w[1], 1, device))
                .collect(),
            norms: self
                .widths
                .iter()
                .map(|&w| BatchNormConfig::new(w).init(device))
                .collect(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            activation: Relu::new(),
        })
    }
}

/// Stacked conv-BN-ReLU stages with 2x2 max pooling between them, then global average pooling.
#[derive(Module, Debug)]
pub struct SmallCnn<B: Backend> {
    /// Convolutions.
    pub convs: Vec<Conv2d<B>>,
    /// Batch norms.
    pub norms: Vec<BatchNorm<B>>,
    pool: MaxPool2d,
    activation: Relu,
}

impl<B: FusedBackend> SmallCnn<B> {
    /// `[batch, channels, h, w] -> [batch, widths.last]`.
    pub fn forward_features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = images;
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            if i > 0 {
                x = self.pool.forward(x);
            }
            x = self
                .activation
                .forward(norm.forward(conv2d_module(conv, x)));
        }
        global_pool(x)
    }
}

/// Configuration of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Input channels.
    pub channels: usize,
    /// Basic blocks per stage.
    pub blocks: Vec<usize>,
    /// Channels per stage.
    pub widths: Vec<usize>,
}

impl ResNetConfig {
    /// ResNet-18 with the CIFAR stem (3x3 stride-1 first convolution, no max pool).
    pub fn resnet18_cifar(channels: usize) -> Self {
        Self::new(channels, vec![2, 2, 2, 2], vec![64, 128, 256, 512])
    }

    /// A narrow ResNet-10 (one block per stage, 16..128 channels) that trains in minutes on a CPU.
    pub fn resnet10_narrow(channels: usize) -> Self {
        Self::new(channels, vec![1, 1, 1, 1], vec![16, 32, 64, 128])
    }

    /// Parameters of the stem, the basic blocks and their projections.
    pub fn num_params(&self) -> u128 {
        // A basic block; one that changes width or strides has a 1x1 projection.
        let block = |c_in: usize, c_out: usize, strided: bool| {
            let projection = if strided || c_in != c_out {
                size::sum([size::conv(c_in, c_out, 1, false), size::batch_norm(c_out)])
            } else {
                0
            };
            size::sum([
                size::conv(c_in, c_out, 3, false),
                size::conv(c_out, c_out, 3, false),
                size::batch_norm(c_out).saturating_mul(2),
                projection,
            ])
        };
        let mut c_in = self.widths.first().copied().unwrap_or(0);
        let mut total = size::sum([
            size::conv(self.channels, c_in, 3, false),
            size::batch_norm(c_in),
        ]);
        for (stage, (&n, &width)) in self.blocks.iter().zip(&self.widths).enumerate() {
            if n > 0 {
                let first = block(c_in, width, stage > 0);
                let rest = block(width, width, false).saturating_mul(n as u128 - 1);
                total = size::sum([total, first, rest]);
                c_in = width;
            }
        }
        total
    }

    /// Builds the encoder.
    pub fn init<B: FusedBackend>(&self, device: &B::Device) -> Result<ResNet<B>> {
        ensure(
            !self.blocks.is_empty() && self.blocks.len() == self.widths.len(),
            ModelError::config,
            "ResNet",
            "blocks/widths",
            || {
                format!(
                    "{:?} and {:?} must be non-empty and of equal length",
                    self.blocks, self.widths
                )
            },
        )?;
        ensure(
            self.blocks.iter().all(|&n| n > 0) && self.widths.iter().all(|&w| w > 0),
            ModelError::config,
            "ResNet",
            "blocks/widths",
            || "must be positive".into(),
        )?;
        size::check("ResNet", self.num_params())?;
        let mut blocks = Vec::new();
        let mut c_in = self.widths[0];
        for (stage, (&n, &width)) in self.blocks.iter().zip(&self.widths).enumerate() {
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(c_in, width, stride, device));
                c_in = width;
            }
        }
        Ok(ResNet {
            stem: conv3x3(self.channels, self.widths[0], 1, device),
            stem_norm: BatchNormConfig::new(self.widths[0]).init(device),
            blocks,
            activation: Relu::new(),
        })
    }
}

/// ResNet basic block: two 3x3 conv-BN with a (projected) shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    /// First convolution (carries the stride).
    pub conv1: Conv2d<B>,
    /// First batch norm.
    pub bn1: BatchNorm<B>,
    /// Second convolution.
    pub conv2: Conv2d<B>,
    /// Second batch norm.
    pub bn2: BatchNorm<B>,
    /// 1x1 projection when the shape changes.
    pub downsample: Option<(Conv2d<B>, BatchNorm<B>)>,
    activation: Relu,
    drop_path: DropPath,
}

impl<B: FusedBackend> BasicBlock<B> {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &B::Device) -> Self {
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            (
                Conv2dConfig::new([c_in, c_out], [1, 1])
                    .with_stride([stride, stride])
                    .with_bias(false)
                    .init(device),
                BatchNormConfig::new(c_out).init(device),
            )
        });
        Self {
            conv1: conv3x3(c_in, c_out, stride, device),
            bn1: BatchNormConfig::new(c_out).init(device),
            conv2: conv3x3(c_out, c_out, 1, device),
            bn2: BatchNormConfig::new(c_out).init(device),
            downsample,
            activation: Relu::new(),
            drop_path: DropPath::default(),
        }
    }

    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = match &self.downsample {
            Some((conv, bn)) => bn.forward(conv2d_module(conv, x.clone())),
            None => x.clone(),
        };
        let y = self
            .activation
            .forward(self.bn1.forward(conv2d_module(&self.conv1, x)));
        let residual = self
            .drop_path
            .forward(self.bn2.forward(conv2d_module(&self.conv2, y)));
        self.activation.forward(residual + shortcut)
    }
}

/// Residual network encoder.
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    /// Stem convolution.
    pub stem: Conv2d<B>,
    /// Stem batch norm.
    pub stem_norm: BatchNorm<B>,
    /// Basic blocks, stage by stage.
    pub blocks: Vec<BasicBlock<B>>,
    activation: Relu,
}

impl<B: FusedBackend> ResNet<B> {
    /// `[batch, channels, h, w] -> [batch, widths.last]`.
    pub fn forward_features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = self
            .activation
            .forward(self.stem_norm.forward(conv2d_module(&self.stem, images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        global_pool(x)
    }

    /// Stochastic depth on the residual branches, rising linearly to `max_rate` at the last
    /// block (used when fine-tuning).
    pub fn set_drop_path_rate(&mut self, max_rate: f64) {
        let rates = linear_drop_path_rates(max_rate, self.blocks.len());
        for (block, rate) in self.blocks.iter_mut().zip(rates) {
            block.drop_path = DropPath::new(rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use crate::init::init_seeded;
    use crate::summary::num_params;
    use burn::tensor::Distribution;

    use crate::testing::TestBackend as B;

    #[test]
    fn shapes_and_resnet18_parameter_count() {
        let dev = Default::default();
        let images = host_random::<B, 4>([2, 1, 28, 28], Distribution::Default, 1, &dev);
        assert_eq!(
            SmallCnnConfig::small_cnn_28()
                .init::<B>(&dev)
                .unwrap()
                .forward_features(images.clone())
                .dims(),
            [2, 256]
        );
        assert_eq!(
            ResNetConfig::resnet10_narrow(1)
                .init::<B>(&dev)
                .unwrap()
                .forward_features(images)
                .dims(),
            [2, 128]
        );
        // torchvision's resnet18 has 11,689,512 parameters; without its 1000-class fc
        // (513,000) and with the CIFAR stem (3x3x3x64 instead of 7x7x3x64) that is 11,168,832.
        // burn also counts each batch norm's running mean and variance: 2 x 4,800 channels.
        let r18 = init_seeded(&dev, 1001, || {
            ResNetConfig::resnet18_cifar(3).init::<B>(&dev).unwrap()
        });
        let bn_channels = 5 * (64 + 128 + 256 + 512);
        assert_eq!(
            num_params(&r18),
            11_689_512 - 513_000 - (7 * 7 - 3 * 3) * 3 * 64 + 2 * bn_channels
        );
    }

    #[test]
    fn bad_configs_fail_at_init() {
        let dev = Default::default();
        assert!(
            ResNetConfig::new(3, vec![2, 2], vec![64])
                .init::<B>(&dev)
                .is_err()
        );
        assert!(SmallCnnConfig::new(1, vec![]).init::<B>(&dev).is_err());
    }

    #[test]
    fn resnet_drop_path_acts_in_training_only() {
        use crate::testing::TestAutodiff as Ad;
        use burn::module::AutodiffModule;
        let dev = Default::default();
        let mut net = init_seeded(&dev, 1002, || {
            ResNetConfig::resnet10_narrow(1).init::<Ad>(&dev).unwrap()
        });
        let images = host_random::<Ad, 4>([8, 1, 28, 28], Distribution::Default, 2, &dev);
        let eval_before = net.valid().forward_features(images.clone().inner());
        net.set_drop_path_rate(0.9);
        assert_eq!(net.blocks.last().unwrap().drop_path.prob(), 0.9);
        assert_eq!(net.blocks[0].drop_path.prob(), 0.0);
        let eval_after = net.valid().forward_features(images.clone().inner());
        let diff = |a: Tensor<B, 2>, b: Tensor<B, 2>| -> f32 { (a - b).abs().max().into_scalar() };
        assert_eq!(diff(eval_before.clone(), eval_after), 0.0);
        // In training, batch norm uses batch statistics either way; compare against the same
        // network in training mode without drop-path.
        let trained = net.forward_features(images.clone()).inner();
        net.set_drop_path_rate(0.0);
        let plain = net.forward_features(images).inner();
        assert!(diff(trained, plain) > 1e-4);
    }
}
