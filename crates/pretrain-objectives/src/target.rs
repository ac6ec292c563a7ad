//! Momentum (EMA) target networks: BYOL's target and MoCo's key encoder are exponential moving
//! averages of the online network, updated after each optimizer step.

use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use pretrain_models::FusedBackend;

use pretrain_models::sync_running_stats;

use crate::objective::TrainProgress;

/// Momentum `tau` of the EMA `target = tau * target + (1 - tau) * online`, raised from `base`
/// to `end` along a half cosine over the run (BYOL: 0.996 -> 1); `base == end` is constant.
#[derive(Config, Debug, PartialEq)]
pub struct MomentumSchedule {
    /// Momentum at the first step.
    #[config(default = 0.996)]
    pub base: f64,
    /// Momentum at the last step.
    #[config(default = 1.0)]
    pub end: f64,
}

impl MomentumSchedule {
    /// `end - (end - base) * (cos(pi * k / K) + 1) / 2` at `progress`.
    pub fn momentum(&self, progress: TrainProgress) -> f64 {
        let cos = (std::f64::consts::PI * progress.fraction()).cos();
        self.end - (self.end - self.base) * (cos + 1.0) / 2.0
    }

    /// Whether both ends lie in `[0, 1]`.
    pub fn is_valid(&self) -> bool {
        (0.0..=1.0).contains(&self.base) && (0.0..=1.0).contains(&self.end)
    }
}

/// Turns `target`, a separately built module of `online`'s architecture, into `online`'s
/// momentum target: `online`'s values, its own parameter ids and running statistics (a clone
/// would share the statistics' storage with `online`), and no gradient tracking.
pub fn momentum_target<B: FusedBackend, M: Module<B>>(target: M, online: &M) -> M {
    ema_update(target, online, 0.0).no_grad()
}

/// `target = momentum * target + (1 - momentum) * online` for every parameter and running
/// statistic (timm's `ModelEmaV2` convention), computed without gradient tracking.
///
/// `target` must have `online`'s architecture (see [`momentum_target`]).
pub fn ema_update<B: FusedBackend, M: Module<B>>(target: M, online: &M, momentum: f64) -> M {
    // A pending running-statistic update would otherwise be read stale here, and would
    // overwrite the averaged value at the target's next forward pass.
    sync_running_stats(online);
    sync_running_stats(&target);
    let mut collect = CollectValues(Vec::new());
    online.visit(&mut collect);
    let mut mapper = Ema {
        online: collect.0.into_iter(),
        momentum,
    };
    target.map(&mut mapper)
}

/// Flattened parameter values in visiting order.
struct CollectValues<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: FusedBackend> ModuleVisitor<B> for CollectValues<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val().detach();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

struct Ema<B: Backend, I: Iterator<Item = Tensor<B, 1>>> {
    online: I,
    momentum: f64,
}

impl<B: FusedBackend, I: Iterator<Item = Tensor<B, 1>>> ModuleMapper<B> for Ema<B, I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let online = self
            .online
            .next()
            .expect("ema_update: target and online modules have the same parameters");
        let momentum = self.momentum;
        param.map(|target| {
            let shape = target.shape();
            let mixed = target.detach() * momentum + online.reshape(shape) * (1.0 - momentum);
            mixed.set_require_grad(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use pretrain_models::init::init_seeded;

    use crate::testing::TestAutodiff as Ad;

    fn weight<B: FusedBackend>(l: &Linear<B>) -> Vec<f32> {
        l.weight.val().into_data().to_vec().unwrap()
    }

    #[test]
    fn ema_moves_target_toward_online_without_gradients() {
        let dev = Default::default();
        let online: Linear<Ad> = init_seeded(&dev, 1, || LinearConfig::new(3, 2).init(&dev));
        let start = init_seeded(&dev, 2, || LinearConfig::new(3, 2).init(&dev));
        let target = momentum_target(start, &online);
        assert_eq!(weight(&target), weight(&online));
        assert_ne!(target.weight.id, online.weight.id);
        assert!(!target.weight.val().is_require_grad());

        let moved: Linear<Ad> = init_seeded(&dev, 3, || LinearConfig::new(3, 2).init(&dev));
        let updated = ema_update(target.clone(), &moved, 0.9);
        let expected: Vec<f32> = weight(&target)
            .iter()
            .zip(weight(&moved))
            .map(|(t, o)| 0.9 * t + 0.1 * o)
            .collect();
        for (a, b) in weight(&updated).iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(updated.weight.id, target.weight.id);
        // No graph reaches the target: a loss through it yields no gradient for it.
        let x = Tensor::<Ad, 2>::ones([1, 3], &dev).require_grad();
        let grads = updated.forward(x.clone()).sum().backward();
        assert!(updated.weight.grad(&grads).is_none());
        assert!(x.grad(&grads).is_some());
    }

    #[test]
    fn cosine_schedule_ends() {
        let s = MomentumSchedule::new();
        let at = |step| {
            s.momentum(TrainProgress {
                step,
                total_steps: 100,
            })
        };
        assert!((at(0) - 0.996).abs() < 1e-12);
        assert!((at(50) - 0.998).abs() < 1e-12);
        assert!((at(100) - 1.0).abs() < 1e-12);
        assert!(!MomentumSchedule::new().with_base(1.5).is_valid());
    }
}
