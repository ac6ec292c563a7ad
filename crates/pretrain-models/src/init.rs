//! Weight initialization schemes, stated explicitly per model.
//!
//! Besides Xavier and Kaiming (as in burn's `Initializer`), pre-training recipes need the
//! truncated normal of BERT and ViT (std 0.02, cut at two standard deviations). Schemes sample
//! plain tensors, so models can reshape or scale them before they become parameters.
//!
//! [`init_seeded`] builds a module reproducibly from a seeded generator.

use crate::fused::FusedBackend;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard};

/// How a weight tensor is initialized.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum InitScheme {
    /// Normal with standard deviation `std`, redrawn outside `[-2 std, 2 std]` (BERT, ViT: 0.02).
    TruncatedNormal {
        /// Standard deviation before truncation.
        std: f64,
    },
    /// Glorot/Xavier uniform: `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))` (MAE's linear layers).
    XavierUniform,
    /// He/Kaiming normal for ReLU networks: `N(0, 2 / fan_in)`.
    KaimingNormal,
    /// Normal with standard deviation `std`, untruncated (GPT-2: 0.02).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// All zeros (final norms and heads where the reference does so).
    Zeros,
}

impl InitScheme {
    /// BERT's and ViT's default.
    pub const BERT: InitScheme = InitScheme::TruncatedNormal { std: 0.02 };
    /// GPT-2's: `N(0, 0.02)`.
    pub const GPT2: InitScheme = InitScheme::Normal { std: 0.02 };

    /// A `[fan_in, fan_out]` weight (burn's `Linear` layout) initialized with this scheme.
    pub fn init_weight<B: FusedBackend>(
        &self,
        fan_in: usize,
        fan_out: usize,
        device: &B::Device,
    ) -> Param<Tensor<B, 2>> {
        Param::initialized(
            ParamId::new(),
            self.sample(fan_in, fan_out, device).require_grad(),
        )
    }

    /// The values of [`InitScheme::init_weight`] as a plain (untracked) tensor, to reshape or
    /// scale before it becomes a parameter.
    pub fn sample<B: FusedBackend>(
        &self,
        fan_in: usize,
        fan_out: usize,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let shape = [fan_in, fan_out];
        match *self {
            InitScheme::TruncatedNormal { std } => truncated_normal(shape, std, device),
            InitScheme::XavierUniform => {
                let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
                Tensor::random(shape, Distribution::Uniform(-a, a), device)
            }
            InitScheme::KaimingNormal => Tensor::random(
                shape,
                Distribution::Normal(0.0, (2.0 / fan_in as f64).sqrt()),
                device,
            ),
            InitScheme::Normal { std } => {
                Tensor::random(shape, Distribution::Normal(0.0, std), device)
            }
            InitScheme::Zeros => Tensor::zeros(shape, device),
        }
    }
}

/// A tensor of `shape` drawn from `N(0, std^2)` truncated to `[-2 std, 2 std]`.
///
/// Implemented by redrawing out-of-range values (as PyTorch's `trunc_normal_` does in effect),
/// a few rounds of masked replacement; the last round clamps the rare leftovers.
pub fn truncated_normal<B: FusedBackend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    let bound = 2.0 * std;
    let mut values = Tensor::<B, D>::random(shape, Distribution::Normal(0.0, std), device);
    for _ in 0..4 {
        let outside = values.clone().abs().greater_elem(bound);
        let redraw = Tensor::<B, D>::random(shape, Distribution::Normal(0.0, std), device);
        values = values.mask_where(outside, redraw);
    }
    values.clamp(-bound, bound)
}

/// A tensor of `shape` drawn on the host from a generator seeded with `seed`, then put on
/// `device`: the same values in every run and on every backend, whatever else draws random
/// numbers meanwhile (burn's `Tensor::random` takes from the backend's one shared generator,
/// which tests running in parallel interleave).
pub fn host_random<B: Backend, const D: usize>(
    shape: [usize; D],
    distribution: Distribution,
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let mut rng = StdRng::seed_from_u64(seed);
    Tensor::from_data(
        TensorData::random::<f32, _, _>(shape, distribution, &mut rng),
        device,
    )
}

/// Draws every lazily initialized parameter of `module` now (burn initializes parameters on
/// first use), so initialization happens at a known point of the random stream.
pub fn materialize<B: FusedBackend, M: Module<B>>(module: &M) {
    module.visit(&mut Materialize);
}

/// Forces lazy parameter initialization.
struct Materialize;

impl<B: FusedBackend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        param.val();
    }
}

/// Builds a module reproducibly: seeds the backend's generator with `seed`, runs `build` and
/// draws every parameter ([`materialize`]) before returning, all under one process-wide lock,
/// so builders on other threads (parallel tests, jobs) cannot interleave their draws with it.
///
/// burn's backends keep one generator per device (the CPU ones one per process); random ops
/// that do not go through this function, such as dropout running concurrently, can still take
/// from the stream between the seed and the draws.
pub fn init_seeded<B: FusedBackend, M: Module<B>>(
    device: &B::Device,
    seed: u64,
    build: impl FnOnce() -> M,
) -> M {
    with_seed::<B, M>(device, seed, || {
        let module = build();
        materialize(&module);
        module
    })
}

/// Seeds the backend's generator with `seed` and runs `draw`, under the process-wide lock that
/// [`init_seeded`] takes too: the draws of `draw` are the seed's, whatever other seeded
/// draws run on other threads.
pub fn with_seed<B: Backend, R>(device: &B::Device, seed: u64, draw: impl FnOnce() -> R) -> R {
    let _guard = seed_locked::<B>(device, seed);
    draw()
}

/// Seeds the backend's generator with `seed` and holds the lock of [`with_seed`] and
/// [`init_seeded`] until the guard drops, for callers whose seeded draws span several
/// statements (tests). Neither function may be called while the guard is held (the lock is
/// not re-entrant).
pub fn seed_locked<B: Backend>(device: &B::Device, seed: u64) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    B::seed(device, seed);
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::TestBackend as B;

    fn moments(t: Tensor<B, 2>) -> (f64, f64, f64) {
        let v: Vec<f32> = t.into_data().to_vec().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        let max = v.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
        (mean, var.sqrt(), max)
    }

    #[test]
    fn truncated_normal_matches_its_distribution() {
        let dev = Default::default();
        let weight = with_seed::<B, _>(&dev, 0, || {
            InitScheme::BERT.init_weight::<B>(256, 512, &dev)
        });
        let (mean, std, max) = moments(weight.val());
        // A normal truncated at 2 sigma has std 0.8796 sigma.
        assert!(mean.abs() < 1e-3, "{mean}");
        assert!((std / 0.02 - 0.8796).abs() < 0.01, "{std}");
        assert!(max <= 0.04 + 1e-7, "{max}");
    }

    #[test]
    fn xavier_and_kaiming_have_their_variance() {
        let dev = Default::default();
        let draw = |scheme: InitScheme, fan_in, fan_out| {
            with_seed::<B, _>(&dev, 1, || {
                scheme.init_weight::<B>(fan_in, fan_out, &dev).val()
            })
        };
        let (_, std, max) = moments(draw(InitScheme::XavierUniform, 300, 100));
        let a = (6.0f64 / 400.0).sqrt();
        assert!((std - a / 3f64.sqrt()).abs() / std < 0.02, "{std}");
        assert!(max <= a + 1e-6);
        let (_, std, _) = moments(draw(InitScheme::KaimingNormal, 400, 300));
        assert!((std - (2.0f64 / 400.0).sqrt()).abs() / std < 0.02, "{std}");
        let (_, std, max) = moments(draw(InitScheme::Zeros, 3, 3));
        assert_eq!((std, max), (0.0, 0.0));
    }

    #[test]
    fn deep_presets_keep_activation_scale_at_init() {
        // A 12-block BERT-Base-depth encoder (narrow, to stay fast) and the 6-block vit_tiny_28 at
        // initialization: the residual stream's scale stays within a bounded factor of the
        // embedding scale through every block, pre-norm and post-norm alike.
        use crate::{BertConfig, VitConfig};
        let dev = Default::default();
        let std = |t: &Tensor<B, 3>| -> f32 { t.clone().var(2).mean().sqrt().into_scalar() };

        let vit = init_seeded(&dev, 1001, || {
            VitConfig::vit_tiny_28().init::<B>(&dev).unwrap()
        });
        let images = crate::testing::fashion::<B>(8, &dev);
        let mut x = vit.embed_patches(images);
        let first = std(&x);
        for (i, block) in vit.blocks.iter().enumerate() {
            x = block.forward(x, None);
            let s = std(&x);
            assert!(
                s.is_finite() && s < 10.0 * first && s > 0.1 * first,
                "ViT block {i}: std {s} vs {first}"
            );
        }

        for pre_norm in [false, true] {
            let bert = init_seeded(&dev, 1002, || {
                BertConfig::new(100, 64, 12, 4, 256)
                    .with_pre_norm(pre_norm)
                    .with_scale_residual(pre_norm)
                    .with_dropout(0.0)
                    .init::<B>(&dev)
                    .unwrap()
            });
            let mut h = host_random::<B, 3>([4, 16, 64], Distribution::Normal(0.0, 1.0), 5, &dev);
            for (i, layer) in bert.layers.iter().enumerate() {
                h = layer.forward(h, None);
                let s = std(&h);
                assert!(
                    s.is_finite() && (0.1..10.0).contains(&s),
                    "BERT (pre-norm {pre_norm}) layer {i}: std {s}"
                );
            }
        }
    }
}
