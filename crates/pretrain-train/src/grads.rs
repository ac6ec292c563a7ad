//! Whole-model gradient operations burn lacks: the global L2 norm over every parameter's
//! gradient (logged each step, and the non-finite guard's signal) and clipping by that norm
//! (burn's `GradientClipping::Norm` clips each tensor on its own).

use std::collections::HashMap;

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{FloatDType, Tensor};

/// `sqrt(sum of squared gradient entries)` over every parameter of `module` with a gradient;
/// NaN or infinite when any gradient entry is.
pub fn global_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut visitor = SquaredSum::<B> { grads, total: None };
    module.visit(&mut visitor);
    // Read as f64: with an f16 backend the sum itself may exceed f16's range.
    visitor
        .total
        .map(|t| {
            t.into_data()
                .iter::<f64>()
                .next()
                .unwrap_or(f64::NAN)
                .sqrt()
        })
        .unwrap_or(0.0)
}

/// Scales every gradient by `max_norm / norm` when `norm` (the global norm) exceeds `max_norm`.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: GradientsParams,
    norm: f64,
    max_norm: f64,
) -> GradientsParams {
    if norm <= max_norm || norm == 0.0 {
        return grads;
    }
    scale_grads(module, grads, max_norm / (norm + 1e-6))
}

/// Multiplies every gradient of `module`'s parameters by `factor` (loss-scale removal, clipping).
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    let mut visitor = Scale::<B> {
        grads,
        factor,
        _backend: std::marker::PhantomData,
    };
    module.visit(&mut visitor);
    visitor.grads
}

/// Splits `grads` into groups of equal learning-rate multiplier (unlisted parameters: 1),
/// ordered by multiplier, so each group can take its own optimizer step.
pub fn split_by_multiplier<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: GradientsParams,
    multipliers: &HashMap<ParamId, f64>,
) -> Vec<(f64, GradientsParams)> {
    let mut visitor = Split::<B> {
        grads,
        multipliers,
        groups: Vec::new(),
        _backend: std::marker::PhantomData,
    };
    module.visit(&mut visitor);
    let mut groups = visitor.groups;
    groups.sort_by(|a, b| a.0.total_cmp(&b.0));
    groups
}

/// Applies `reduce` to every gradient of `module`'s parameters at once: the gradients are
/// flattened into one vector in module order, `reduce` maps it to a vector of the same length,
/// and its pieces become the gradients again. (One all-reduce per step instead of one per
/// parameter, as PyTorch DDP's buckets do; a parameter shared by two modules counts once.)
pub fn map_flattened<B: AutodiffBackend, M: AutodiffModule<B>, E>(
    module: &M,
    grads: GradientsParams,
    reduce: impl FnOnce(Tensor<B::InnerBackend, 1>) -> Result<Tensor<B::InnerBackend, 1>, E>,
) -> Result<GradientsParams, E> {
    let mut take = Flatten::<B> {
        grads,
        pieces: Vec::new(),
        taken: HashMap::new(),
    };
    module.visit(&mut take);
    if take.pieces.is_empty() {
        return Ok(take.grads);
    }
    let flat = reduce(Tensor::cat(std::mem::take(&mut take.pieces), 0))?;
    let mut put = Unflatten::<B> {
        grads: take.grads,
        flat,
        offset: 0,
        taken: take.taken,
    };
    module.visit(&mut put);
    Ok(put.grads)
}

/// Takes the gradients out, flattened, remembering each one's length.
struct Flatten<B: AutodiffBackend> {
    grads: GradientsParams,
    pieces: Vec<Tensor<B::InnerBackend, 1>>,
    taken: HashMap<ParamId, usize>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let len = grad.shape().num_elements();
            self.pieces.push(grad.reshape([len]));
            self.taken.insert(param.id, len);
        }
    }
}

/// Puts the pieces of the mapped vector back, in the same order.
struct Unflatten<B: AutodiffBackend> {
    grads: GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    offset: usize,
    taken: HashMap<ParamId, usize>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(len) = self.taken.remove(&param.id) {
            let piece = self.flat.clone().slice(self.offset..self.offset + len);
            self.offset += len;
            let dims: [usize; D] = param.val().dims();
            self.grads.register(param.id, piece.reshape(dims));
        }
    }
}

struct Split<'a, B: AutodiffBackend> {
    grads: GradientsParams,
    multipliers: &'a HashMap<ParamId, f64>,
    groups: Vec<(f64, GradientsParams)>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Split<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let multiplier = self.multipliers.get(&param.id).copied().unwrap_or(1.0);
        let index = match self.groups.iter().position(|(m, _)| *m == multiplier) {
            Some(i) => i,
            None => {
                self.groups.push((multiplier, GradientsParams::new()));
                self.groups.len() - 1
            }
        };
        self.groups[index].1.register(param.id, grad);
    }
}

struct SquaredSum<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            // Squares of (loss-scaled) f16 gradients overflow f16: accumulate in f32.
            let sum = grad.cast(FloatDType::F32).powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
}

struct Scale<B: AutodiffBackend> {
    grads: GradientsParams,
    factor: f64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad * self.factor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use pretrain_models::init::init_seeded;

    use crate::testing::TestAutodiff as Ad;

    #[test]
    fn norm_over_all_parameters_and_clipping() {
        let dev = Default::default();
        let layer: Linear<Ad> = init_seeded(&dev, 1, || LinearConfig::new(3, 2).init(&dev));
        let x = Tensor::<Ad, 2>::from_data([[1.0, 2.0, 3.0]], &dev);
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        // d/dW of sum(xW + b) is x for each output column; d/db is 1.
        let expected = (2.0f64 * (1.0 + 4.0 + 9.0) + 2.0).sqrt();
        let norm = global_grad_norm(&layer, &grads);
        assert!((norm - expected).abs() < 1e-5, "{norm} vs {expected}");
        let clipped = clip_global_norm(&layer, grads, norm, 1.0);
        let after = global_grad_norm(&layer, &clipped);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
    }

    #[test]
    fn flattened_gradients_come_back_to_their_parameters() {
        let dev = Default::default();
        let layer: Linear<Ad> = init_seeded(&dev, 1, || LinearConfig::new(3, 2).init(&dev));
        let x = Tensor::<Ad, 2>::from_data([[1.0, 2.0, 3.0]], &dev);
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        let mut length = 0;
        let doubled = map_flattened(&layer, grads, |flat| {
            length = flat.dims()[0];
            Ok::<_, ()>(flat * 2.0)
        })
        .unwrap();
        assert_eq!(length, 3 * 2 + 2);
        let weight = doubled
            .get::<<Ad as AutodiffBackend>::InnerBackend, 2>(layer.weight.id)
            .unwrap();
        let bias = doubled
            .get::<<Ad as AutodiffBackend>::InnerBackend, 1>(layer.bias.as_ref().unwrap().id)
            .unwrap();
        assert_eq!(
            weight.into_data().to_vec::<f32>().unwrap(),
            vec![2.0, 2.0, 4.0, 4.0, 6.0, 6.0]
        );
        assert_eq!(bias.into_data().to_vec::<f32>().unwrap(), vec![2.0, 2.0]);
    }
}
