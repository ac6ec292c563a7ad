//! Fused operations through burn's backend-extension pattern.
//!
//! [`FusedBackend`] extends burn's `Backend` with operations whose CPU speed burn 0.21's own
//! kernels limit. Every method has a generic default built from burn's operations (what wgpu,
//! CUDA and NdArray run, unchanged); Flex overrides some with multi-threaded kernels on its f32
//! storage ([`flex`]), and `Autodiff<B>` implements them with hand-written backward passes that
//! call the inner backend's fused gradients ([`autodiff`]). Models call the tensor-level
//! functions here ([`conv2d`], [`conv2d_module`]), never the trait methods.
//!
//! Model code is therefore bound by `B: FusedBackend` (and training code by
//! [`FusedAutodiffBackend`]) instead of `B: Backend`. The backends this workspace builds with
//! implement it; another backend needs one line here (`impl FusedBackend for MyBackend {}`, every
//! method keeping its default).

mod autodiff;
#[cfg(feature = "flex")]
mod flex;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Shape, Tensor, TensorMetadata, TensorPrimitive};

/// A burn backend with the fused operations the models call (see the module documentation).
pub trait FusedBackend: Backend {
    /// 2-D convolution without bias: `x` `[batch, c_in, h, w]`, `weight`
    /// `[c_out, c_in / groups, kh, kw]` -> `[batch, c_out, h', w']`.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options)
    }

    /// The gradient of [`FusedBackend::fused_conv2d`] with respect to `weight`, given the
    /// gradient of its output. The default is burn's: a convolution of the input by the output
    /// gradient, which burn's CPU backends run on one thread per (batch-as-channel) plane.
    fn fused_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// The gradient of [`FusedBackend::fused_conv2d`] with respect to `x`, given the gradient
    /// of its output. The default is burn's transposed convolution.
    fn fused_conv2d_x_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// GELU, exact (`0.5 x (1 + erf(x / sqrt 2))`) or, with `tanh`, GPT-2's tanh approximation
    /// (`0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`). The defaults are burn's `gelu`
    /// and the approximation written out in burn's operations.
    fn fused_gelu(x: FloatTensor<Self>, tanh: bool) -> FloatTensor<Self> {
        gelu_default::<Self>(x, tanh)
    }

    /// The gradient of [`FusedBackend::fused_gelu`] with respect to `x`, given the gradient of
    /// its output (`output_grad * gelu'(x)`).
    fn fused_gelu_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        tanh: bool,
    ) -> FloatTensor<Self> {
        gelu_backward_default::<Self>(x, output_grad, tanh)
    }

    /// Layer normalization over the last dimension: `(x - mean) / sqrt(var + epsilon) * gamma +
    /// beta`, `gamma` and `beta` `[d]`. The default is burn's `layer_norm`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// The gradients of [`FusedBackend::fused_layer_norm`] with respect to `x`, `gamma` and
    /// `beta`, given the gradient of its output. The default is the closed form written in
    /// burn's operations.
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> [FloatTensor<Self>; 3] {
        layer_norm_backward_default::<Self>(x, gamma, output_grad, epsilon)
    }
}

/// [`FusedBackend::fused_layer_norm_backward`]'s default: with `xhat` the normalized input,
/// `g = dy * gamma` and means over the last dimension, `dx = rstd * (g - mean(g) - xhat *
/// mean(g * xhat))`, `dgamma = sum(dy * xhat)`, `dbeta = sum(dy)` over the other dimensions.
fn layer_norm_backward_default<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    epsilon: f64,
) -> [FloatTensor<B>; 3] {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    let as_rows = |t: FloatTensor<B>| {
        Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(B::float_reshape(
            t,
            Shape::new([rows, d]),
        )))
    };
    let (x, dy) = (as_rows(x), as_rows(output_grad));
    let gamma = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(gamma)).reshape([1, d]);
    let centered = x.clone() - x.mean_dim(1);
    let rstd = (centered.clone().powi_scalar(2).mean_dim(1) + epsilon)
        .sqrt()
        .recip();
    let xhat = centered * rstd.clone();
    let g = dy.clone() * gamma;
    let dx =
        (g.clone() - g.clone().mean_dim(1) - xhat.clone() * (g * xhat.clone()).mean_dim(1)) * rstd;
    let dgamma = (dy.clone() * xhat).sum_dim(0).reshape([d]);
    let dbeta = dy.sum_dim(0).reshape([d]);
    [
        B::float_reshape(dx.into_primitive().tensor(), shape),
        dgamma.into_primitive().tensor(),
        dbeta.into_primitive().tensor(),
    ]
}

/// [`FusedBackend::fused_gelu`]'s default.
fn gelu_default<B: Backend>(x: FloatTensor<B>, tanh: bool) -> FloatTensor<B> {
    if !tanh {
        return B::gelu(x);
    }
    let shape = x.shape();
    let x = flat::<B>(x);
    let inner = (x.clone() + x.clone().powi_scalar(3) * GELU_TANH_CUBIC) * GELU_TANH_SCALE;
    let y = x * 0.5 * (inner.tanh() + 1.0);
    B::float_reshape(y.into_primitive().tensor(), shape)
}

/// [`FusedBackend::fused_gelu_backward`]'s default.
fn gelu_backward_default<B: Backend>(
    x: FloatTensor<B>,
    output_grad: FloatTensor<B>,
    tanh: bool,
) -> FloatTensor<B> {
    if !tanh {
        return B::gelu_backward(x, output_grad);
    }
    let shape = x.shape();
    let (x, grad) = (flat::<B>(x), flat::<B>(output_grad));
    let x2 = x.clone().powi_scalar(2);
    let t = ((x2.clone() * GELU_TANH_CUBIC + 1.0) * x.clone() * GELU_TANH_SCALE).tanh();
    let slope = (x2 * (3.0 * GELU_TANH_CUBIC) + 1.0) * GELU_TANH_SCALE;
    let derivative =
        (t.clone() + 1.0) * 0.5 + x * 0.5 * (t.clone() * t).neg().add_scalar(1.0) * slope;
    B::float_reshape((derivative * grad).into_primitive().tensor(), shape)
}

/// `sqrt(2 / pi)`, the scale inside GPT-2's tanh GELU.
const GELU_TANH_SCALE: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of GPT-2's tanh GELU.
const GELU_TANH_CUBIC: f64 = 0.044_715;

/// A primitive as a one-dimensional tensor (any rank flattened), for defaults written with burn's
/// tensor API.
fn flat<B: Backend>(x: FloatTensor<B>) -> Tensor<B, 1> {
    let n = x.shape().num_elements();
    Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(B::float_reshape(x, Shape::new([n]))))
}

/// An autodiff backend whose inner backend is fused too: what training code is bound by, so a
/// model moved to the inner backend (`valid()`) keeps its fused operations.
pub trait FusedAutodiffBackend: AutodiffBackend<InnerBackend: FusedBackend> + FusedBackend {}

impl<B> FusedAutodiffBackend for B
where
    B: AutodiffBackend + FusedBackend,
    B::InnerBackend: FusedBackend,
{
}

/// Backends that run every fused operation as its generic default.
macro_rules! generic_defaults {
    ($($(#[$cfg:meta])* $backend:ty;)*) => {
        $($(#[$cfg])* impl FusedBackend for $backend {})*
    };
}

generic_defaults! {
    #[cfg(feature = "ndarray")] burn::backend::NdArray;
    #[cfg(feature = "wgpu")] burn::backend::Wgpu;
    #[cfg(feature = "wgpu")] burn::backend::Wgpu<burn::tensor::f16>;
    #[cfg(feature = "cuda")] burn::backend::Cuda;
    #[cfg(feature = "cuda")] burn::backend::Cuda<burn::tensor::f16>;
    #[cfg(feature = "cuda")] burn::backend::Cuda<burn::tensor::bf16>;
}

/// 2-D convolution through [`FusedBackend::fused_conv2d`]: `x` `[batch, c_in, h, w]`, `weight`
/// `[c_out, c_in / groups, kh, kw]`, `bias` `[c_out]` -> `[batch, c_out, h', w']`.
///
/// # Panics
/// When the shapes disagree (as burn's `conv2d` does): models build matching weights, and the
/// data readers check the input's channels.
pub fn conv2d<B: FusedBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    let [_, c_in, h, w] = x.dims();
    let [c_out, c_in_per_group, kh, kw] = weight.dims();
    assert!(
        c_in == c_in_per_group * options.groups,
        "conv2d: input has {c_in} channels, the weight [{c_out}, {c_in_per_group}, {kh}, {kw}] \
         with {} groups expects {}",
        options.groups,
        c_in_per_group * options.groups
    );
    let extent = |size: usize, k: usize, i: usize| {
        size + 2 * options.padding[i] > options.dilation[i] * (k - 1)
    };
    assert!(
        extent(h, kh, 0) && extent(w, kw, 1),
        "conv2d: the {h}x{w} input (padding {:?}) is smaller than the {kh}x{kw} kernel (dilation \
         {:?})",
        options.padding,
        options.dilation
    );
    let y = Tensor::from_primitive(TensorPrimitive::Float(B::fused_conv2d(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        options,
    )));
    match bias {
        Some(bias) => y + bias.reshape([1, c_out, 1, 1]),
        None => y,
    }
}

/// Exact GELU through [`FusedBackend::fused_gelu`] (any shape).
pub fn gelu<B: FusedBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    gelu_with(x, false)
}

/// GPT-2's tanh-approximated GELU ("gelu_new") through [`FusedBackend::fused_gelu`].
pub fn gelu_tanh<B: FusedBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    gelu_with(x, true)
}

fn gelu_with<B: FusedBackend, const D: usize>(x: Tensor<B, D>, tanh: bool) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::fused_gelu(
        x.into_primitive().tensor(),
        tanh,
    )))
}

/// Layer normalization over the last dimension through [`FusedBackend::fused_layer_norm`]:
/// `x` `[..., d]`, `gamma` and `beta` `[d]`.
pub fn layer_norm<B: FusedBackend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Option<Tensor<B, 1>>,
    epsilon: f64,
) -> Tensor<B, D> {
    let beta = beta.unwrap_or_else(|| gamma.zeros_like());
    Tensor::from_primitive(TensorPrimitive::Float(B::fused_layer_norm(
        x.into_primitive().tensor(),
        gamma.into_primitive().tensor(),
        beta.into_primitive().tensor(),
        epsilon,
    )))
}

/// `conv` applied to `x` through [`conv2d`] (`[batch, c_in, h, w] -> [batch, c_out, h', w']`);
/// padding other than none or symmetric explicit falls back to burn's module.
pub fn conv2d_module<B: FusedBackend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => {
            [top, left]
        }
        _ => return conv.forward(x),
    };
    conv2d(
        x,
        conv.weight.val(),
        conv.bias.as_ref().map(|bias| bias.val()),
        ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex, NdArray};
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Distribution, TensorData};

    /// Forward output and the input, weight and bias gradients of `loss = sum(conv(x) * up)`,
    /// through the fused op (`fused`) or burn's own convolution.
    fn conv_and_grads<B: FusedAutodiffBackend>(
        data: [&TensorData; 4],
        options: ConvOptions<2>,
        fused: bool,
    ) -> [TensorData; 4] {
        let dev = Default::default();
        let [x, weight, bias, upstream] = data;
        let x = Tensor::<B, 4>::from_data(x.clone(), &dev).require_grad();
        let weight = Tensor::<B, 4>::from_data(weight.clone(), &dev).require_grad();
        let bias = Tensor::<B, 1>::from_data(bias.clone(), &dev).require_grad();
        let up = Tensor::<B, 4>::from_data(upstream.clone(), &dev);
        let y = if fused {
            conv2d(x.clone(), weight.clone(), Some(bias.clone()), options)
        } else {
            burn::tensor::module::conv2d(x.clone(), weight.clone(), Some(bias.clone()), options)
        };
        let grads = (y.clone() * up).sum().backward();
        [
            y.into_data(),
            x.grad(&grads).unwrap().into_data(),
            weight.grad(&grads).unwrap().into_data(),
            bias.grad(&grads).unwrap().into_data(),
        ]
    }

    fn max_rel_err(a: &TensorData, b: &TensorData) -> f32 {
        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(scale > 0.0);
        err / scale
    }

    #[test]
    fn fused_conv_equals_burns_convolution_forward_and_every_gradient() {
        let random = |shape: [usize; 4]| {
            Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
                .into_data()
        };
        // (batch, c_in, c_out, h, w, kernel, stride, padding, dilation, groups)
        let cases = [
            (4, 1, 8, 9, 7, [3, 3], [1, 1], [1, 1], [1, 1], 1),
            (3, 5, 6, 11, 8, [3, 2], [2, 1], [0, 2], [1, 1], 1),
            (2, 3, 4, 12, 12, [4, 4], [4, 4], [0, 0], [1, 1], 1),
            (2, 4, 5, 10, 9, [3, 3], [1, 2], [2, 1], [2, 2], 1),
            // Grouped: Flex falls back to burn's weight gradient.
            (2, 4, 6, 7, 7, [3, 3], [1, 1], [1, 1], [1, 1], 2),
        ];
        for (batch, c_in, c_out, h, w, kernel, stride, padding, dilation, groups) in cases {
            let options = ConvOptions::new(stride, padding, dilation, groups);
            let x = random([batch, c_in, h, w]);
            let weight = random([c_out, c_in / groups, kernel[0], kernel[1]]);
            let bias = TensorData::new((0..c_out).map(|i| i as f32 * 0.1).collect(), [c_out]);
            let out = |size: usize, i: usize| {
                (size + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) / stride[i] + 1
            };
            let upstream = random([batch, c_out, out(h, 0), out(w, 1)]);
            let data = [&x, &weight, &bias, &upstream];
            let reference = conv_and_grads::<Autodiff<Flex>>(data, options.clone(), false);
            for fused in [
                conv_and_grads::<Autodiff<Flex>>(data, options.clone(), true),
                conv_and_grads::<Autodiff<NdArray>>(data, options.clone(), true),
            ] {
                for (what, (a, b)) in ["output", "dx", "dw", "dbias"]
                    .iter()
                    .zip(fused.iter().zip(&reference))
                {
                    let err = max_rel_err(a, b);
                    assert!(
                        err < 1e-5,
                        "{what} of {kernel:?}/{stride:?}/{groups}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn weight_gradient_matches_finite_differences() {
        // The loss sum(conv(x, w) * up) is linear in w, so a central difference is exact up to
        // rounding: a check independent of burn's own convolution gradient.
        type Ad = Autodiff<Flex>;
        let dev = Default::default();
        let options = ConvOptions::new([2, 1], [1, 0], [1, 1], 1);
        let x = Tensor::<Ad, 4>::random([3, 2, 9, 6], Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<Ad, 4>::random([4, 2, 3, 3], Distribution::Normal(0.0, 1.0), &dev);
        let up = Tensor::<Ad, 4>::random([3, 4, 5, 4], Distribution::Normal(0.0, 1.0), &dev);
        let loss =
            |w: Tensor<Ad, 4>| (conv2d(x.clone(), w, None, options.clone()) * up.clone()).sum();
        let w_param = w.clone().require_grad();
        let grads = loss(w_param.clone()).backward();
        let grad = w_param
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let base = w.clone().inner().into_data().to_vec::<f32>().unwrap();
        for index in [0, 7, 29, 71] {
            let nudged = |delta: f32| {
                let mut values = base.clone();
                values[index] += delta;
                let w = Tensor::<Ad, 4>::from_data(TensorData::new(values, [4, 2, 3, 3]), &dev);
                loss(w).into_scalar()
            };
            let numeric = (nudged(0.5) - nudged(-0.5)) / 1.0;
            assert!(
                (numeric - grad[index]).abs() <= 1e-3 * grad[index].abs().max(1.0),
                "weight {index}: {numeric} vs {}",
                grad[index]
            );
        }
    }

    #[test]
    fn module_path_equals_burns_module_with_same_and_explicit_padding() {
        type Ad = Autodiff<Flex>;
        let dev = Default::default();
        let x = Tensor::<Ad, 4>::random([2, 3, 8, 8], Distribution::Default, &dev);
        for padding in [PaddingConfig2d::Same, PaddingConfig2d::Explicit(1, 1, 1, 1)] {
            let conv = Conv2dConfig::new([3, 4], [3, 3])
                .with_padding(padding)
                .init::<Ad>(&dev);
            let err = (conv2d_module(&conv, x.clone()) - conv.forward(x.clone()))
                .abs()
                .max()
                .into_scalar();
            assert!(err < 1e-5, "{err}");
        }
    }

    /// `gelu(x)` and `d sum(gelu(x) * up) / dx` on backend `B`, fused or burn's.
    fn gelu_and_grad<B: FusedAutodiffBackend>(
        x: &TensorData,
        up: &TensorData,
        tanh: bool,
        fused: bool,
    ) -> [TensorData; 2] {
        let dev = Default::default();
        // A transposed (non-contiguous) view of the stored values.
        let x = Tensor::<B, 2>::from_data(x.clone(), &dev).require_grad();
        let xt = x.clone().transpose();
        let up = Tensor::<B, 2>::from_data(up.clone(), &dev);
        let y = match (fused, tanh) {
            (true, true) => gelu_tanh(xt),
            (true, false) => gelu(xt),
            (false, true) => burn::tensor::activation::gelu_approximate(xt),
            (false, false) => burn::tensor::activation::gelu(xt),
        };
        let grads = (y.clone() * up).sum().backward();
        [y.into_data(), x.grad(&grads).unwrap().into_data()]
    }

    #[test]
    fn fused_gelu_equals_burns_exact_and_tanh_gelu_and_their_gradients() {
        // 3 x 7001 values: more than one kernel chunk, odd sized; wide range of inputs.
        let dev = Default::default();
        let x = (Tensor::<Flex, 2>::random([3, 7001], Distribution::Normal(0.0, 1.0), &dev) * 3.0)
            .into_data();
        let up =
            Tensor::<Flex, 2>::random([7001, 3], Distribution::Normal(0.0, 1.0), &dev).into_data();
        for tanh in [false, true] {
            // Each backend against burn's GELU on the same backend (NdArray's exact GELU
            // derivative differs from Flex's by 7e-4 relative).
            for (backend, fused, reference) in [
                (
                    "flex",
                    gelu_and_grad::<Autodiff<Flex>>(&x, &up, tanh, true),
                    gelu_and_grad::<Autodiff<Flex>>(&x, &up, tanh, false),
                ),
                (
                    "ndarray",
                    gelu_and_grad::<Autodiff<NdArray>>(&x, &up, tanh, true),
                    gelu_and_grad::<Autodiff<NdArray>>(&x, &up, tanh, false),
                ),
            ] {
                for (what, (a, b)) in ["output", "gradient"]
                    .iter()
                    .zip(fused.iter().zip(&reference))
                {
                    let err = max_rel_err(a, b);
                    assert!(err < 1e-5, "{backend} {what} (tanh: {tanh}): {err}");
                }
            }
        }
    }

    /// Layer norm of `x` (`[rows, d]` seen through a transpose) and its three gradients.
    fn layer_norm_and_grads<B: FusedAutodiffBackend>(
        data: [&TensorData; 4],
        fused: bool,
    ) -> [TensorData; 4] {
        let dev = Default::default();
        let [x, gamma, beta, up] = data;
        let x = Tensor::<B, 3>::from_data(x.clone(), &dev).require_grad();
        let gamma = Tensor::<B, 1>::from_data(gamma.clone(), &dev).require_grad();
        let beta = Tensor::<B, 1>::from_data(beta.clone(), &dev).require_grad();
        let xt = x.clone().swap_dims(1, 2);
        let y = if fused {
            layer_norm(xt, gamma.clone(), Some(beta.clone()), 1e-5)
        } else {
            let [_, _, d] = xt.dims();
            let mean = xt.clone().mean_dim(2);
            let centered = xt - mean;
            let var = centered.clone().powi_scalar(2).mean_dim(2);
            centered / (var + 1e-5).sqrt() * gamma.clone().reshape([1, 1, d])
                + beta.clone().reshape([1, 1, d])
        };
        let up = Tensor::<B, 3>::from_data(up.clone(), &dev);
        let grads = (y.clone() * up).sum().backward();
        [
            y.into_data(),
            x.grad(&grads).unwrap().into_data(),
            gamma.grad(&grads).unwrap().into_data(),
            beta.grad(&grads).unwrap().into_data(),
        ]
    }

    #[test]
    fn fused_layer_norm_equals_the_decomposed_one_with_every_gradient() {
        let dev = Default::default();
        // [batch, d, seq] stored, normalized over d after a transpose: 3 x 150 rows of 37, more
        // than one kernel task of rows.
        let random = |shape: &[usize], mean: f64| {
            let n: usize = shape.iter().product();
            let values = Tensor::<Flex, 1>::random([n], Distribution::Normal(mean, 2.0), &dev)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            TensorData::new(values, shape.to_vec())
        };
        let x = random(&[3, 37, 150], 1.0);
        let (gamma, beta) = (random(&[37], 1.0), random(&[37], 0.0));
        let up = random(&[3, 150, 37], 0.0);
        let data = [&x, &gamma, &beta, &up];
        let reference = layer_norm_and_grads::<Autodiff<Flex>>(data, false);
        for fused in [
            layer_norm_and_grads::<Autodiff<Flex>>(data, true),
            layer_norm_and_grads::<Autodiff<NdArray>>(data, true),
        ] {
            for (what, (a, b)) in ["output", "dx", "dgamma", "dbeta"]
                .iter()
                .zip(fused.iter().zip(&reference))
            {
                let err = max_rel_err(a, b);
                assert!(err < 1e-4, "{what}: {err}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "input has 3 channels, the weight [4, 2, 3, 3]")]
    fn a_channel_mismatch_panics_like_burns_convolution() {
        let dev = Default::default();
        let x = Tensor::<Flex, 4>::zeros([2, 3, 8, 8], &dev);
        let weight = Tensor::<Flex, 4>::zeros([4, 2, 3, 3], &dev);
        conv2d(x, weight, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
    }
}
