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

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::Linear;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{BoolTensor, ConvOptions, FloatTensor, IntTensor};
use burn::tensor::{Bool, Distribution, Int, Shape, Tensor, TensorMetadata, TensorPrimitive};

/// Score given to masked keys before the softmax; finite (as burn's `MultiHeadAttention`) so a
/// fully masked row gets uniform weights instead of NaN.
pub const MASKED_SCORE: f32 = -1.0e4;

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

    /// Scaled dot-product attention (scale `1 / sqrt(d_head)`) of queries `q`
    /// `[batch, heads, seq, d_head]` over keys `k` and values `v` `[batch, heads, keys, d_head]`,
    /// the heads merged: -> `[batch, seq, heads * d_head]`, restricted and perturbed by `masks`
    /// ([`AttentionMasks`]). The default is burn's decomposed operations.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<Self>,
    ) -> FloatTensor<Self> {
        attention_default::<Self>([q, k, v], masks)
    }

    /// The gradients of [`FusedBackend::fused_attention`] with respect to `q`, `k` and `v`, given
    /// the gradient of its output (`[batch, seq, heads * d_head]`). The default is the closed
    /// form in burn's operations, the attention weights recomputed.
    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<Self>,
        output_grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        attention_backward_default::<Self>([q, k, v], masks, output_grad)
    }

    /// Dropout's keep factors for a tensor of `shape`: each element `1 / (1 - prob)` with
    /// probability `1 - prob`, else 0, drawn from the backend's seeded generator (so
    /// `Backend::seed` makes runs repeatable). The default is burn's Bernoulli sampling.
    fn fused_dropout_keep(shape: Shape, prob: f64, device: &Self::Device) -> FloatTensor<Self> {
        dropout_keep_default::<Self>(shape, prob, device)
    }

    /// Mean softmax cross-entropy of `logits` `[n, classes]` against `targets` `[n]` over the
    /// rows whose target is not negative (PyTorch's `ignore_index = -100`, and any other negative
    /// index): `[1]`, zero when every row is ignored. The default is burn's `log_softmax` and a
    /// gather.
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        cross_entropy_default::<Self>(logits, targets)
    }

    /// The gradient of [`FusedBackend::fused_cross_entropy`] with respect to `logits`, given the
    /// gradient of its `[1]` output: `(softmax(logits) - onehot(target)) * grad / counted` on
    /// counted rows, zero on ignored ones.
    fn fused_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cross_entropy_backward_default::<Self>(logits, targets, output_grad)
    }
}

/// [`FusedBackend::fused_dropout_keep`]'s default.
fn dropout_keep_default<B: Backend>(shape: Shape, prob: f64, device: &B::Device) -> FloatTensor<B> {
    let keep = 1.0 - prob;
    let kept = Tensor::<B, 1>::random(
        [shape.num_elements()],
        Distribution::Bernoulli(keep),
        device,
    );
    B::float_reshape((kept / keep).into_primitive().tensor(), shape)
}

/// Whether backends run their own fused kernels (see [`set_backend_kernels`]).
static BACKEND_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns the backends' own fused kernels (Flex's, today) on or off for the whole process: off,
/// every [`FusedBackend`] operation runs its generic default (burn's operations), for A/B checks
/// of speed or results. On by default.
pub fn set_backend_kernels(enabled: bool) {
    BACKEND_KERNELS.store(enabled, Ordering::Relaxed);
}

/// Whether the backends' own fused kernels are on ([`set_backend_kernels`]).
pub fn backend_kernels() -> bool {
    BACKEND_KERNELS.load(Ordering::Relaxed)
}

/// `targets` `[n]` as the rows' weights (1 where counted, 0 where ignored), the targets clamped
/// to valid indices `[n, 1]`, and the number of counted rows (at least 1): the parts of
/// [`FusedBackend::fused_cross_entropy`]'s defaults.
fn counted_targets<B: Backend>(
    targets: IntTensor<B>,
) -> (Tensor<B, 1>, Tensor<B, 2, Int>, Tensor<B, 1>) {
    let targets = Tensor::<B, 1, Int>::from_primitive(targets);
    let n = targets.dims()[0];
    let weight = targets.clone().greater_equal_elem(0).float(); // [n]
    let count = weight.clone().sum().clamp_min(1.0);
    (weight, targets.clamp_min(0).reshape([n, 1]), count)
}

/// [`FusedBackend::fused_cross_entropy`]'s default.
fn cross_entropy_default<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
) -> FloatTensor<B> {
    let logits = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits));
    let n = logits.dims()[0];
    let (weight, safe, count) = counted_targets::<B>(targets);
    let nll = log_softmax(logits, 1).gather(1, safe).reshape([n]).neg(); // [n]
    ((nll * weight).sum() / count).into_primitive().tensor()
}

/// [`FusedBackend::fused_cross_entropy_backward`]'s default.
fn cross_entropy_backward_default<B: Backend>(
    logits: FloatTensor<B>,
    targets: IntTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let logits = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(logits));
    let n = logits.dims()[0];
    let (weight, safe, count) = counted_targets::<B>(targets);
    let grad = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(output_grad));
    let onehot = logits.zeros_like().scatter(
        1,
        safe,
        Tensor::ones([n, 1], &logits.device()),
        burn::tensor::IndexingUpdateOp::Add,
    );
    let row_scale = (weight * (grad / count)).reshape([n, 1]);
    ((softmax(logits, 1) - onehot) * row_scale)
        .into_primitive()
        .tensor()
}

/// What restricts and perturbs the weights of [`FusedBackend::fused_attention`].
#[derive(Clone, Debug)]
pub struct AttentionMasks<B: Backend> {
    /// `[batch, keys]`, true at padded keys: they score [`MASKED_SCORE`] before the softmax.
    pub padding: Option<BoolTensor<B>>,
    /// `Some(o)`: query `i` sees keys `0..=o + i` only (the later ones score [`MASKED_SCORE`]);
    /// `o` is the number of cached positions before the queries.
    pub causal_offset: Option<usize>,
    /// `[batch, heads, seq, keys]` factors of the weights after the softmax: dropout's keep mask,
    /// 0 or `1 / (1 - p)`.
    pub dropout: Option<FloatTensor<B>>,
}

/// [`FusedBackend::fused_attention`]'s default.
fn attention_default<B: Backend>(
    qkv: [FloatTensor<B>; 3],
    masks: AttentionMasks<B>,
) -> FloatTensor<B> {
    let [q, k, v] = qkv.map(float4::<B>);
    let padding = masks.padding.map(bool2::<B>);
    let weights = attention_weights(q, k, padding.as_ref(), masks.causal_offset);
    let weights = match masks.dropout {
        Some(keep) => weights * float4(keep),
        None => weights,
    };
    merge_heads(weights.matmul(v)).into_primitive().tensor()
}

fn float4<B: Backend>(x: FloatTensor<B>) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

fn bool2<B: Backend>(x: BoolTensor<B>) -> Tensor<B, 2, Bool> {
    Tensor::from_primitive(x)
}

/// `x` `[batch, heads, seq, keys]` with `value` where a query may not see a key (see
/// [`AttentionMasks`]).
fn fill_masked<B: Backend>(
    x: Tensor<B, 4>,
    padding: Option<&Tensor<B, 2, Bool>>,
    causal_offset: Option<usize>,
    value: f32,
) -> Tensor<B, 4> {
    let [batch, _, seq, keys] = x.dims();
    let mut x = x;
    if let Some(offset) = causal_offset {
        let future = Tensor::<B, 2, Bool>::tril_mask([seq, keys], offset as i64, &x.device());
        x = x.mask_fill(future.reshape([1, 1, seq, keys]), value);
    }
    if let Some(padding) = padding {
        x = x.mask_fill(padding.clone().reshape([batch, 1, 1, keys]), value);
    }
    x
}

/// The attention weights of [`FusedBackend::fused_attention`] in burn's operations, before
/// dropout: `softmax(q k^T / sqrt(d_head))`, masked keys filled first, `[batch, heads, seq, keys]`
/// (for attention maps, and the reference the fused operation is measured against).
pub fn attention_weights<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    padding: Option<&Tensor<B, 2, Bool>>,
    causal_offset: Option<usize>,
) -> Tensor<B, 4> {
    let d_head = q.dims()[3];
    let scores = q.matmul(k.transpose()).div_scalar((d_head as f32).sqrt()); // [batch, heads, seq, keys]
    softmax(fill_masked(scores, padding, causal_offset, MASKED_SCORE), 3)
}

/// `[batch, heads, seq, d_head] -> [batch, seq, heads * d_head]`.
pub fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, heads, seq, d_head] = x.dims();
    x.swap_dims(1, 2).reshape([batch, seq, heads * d_head])
}

/// [`FusedBackend::fused_attention_backward`]'s default: with `P` the weights, `M` the dropout
/// factors (1 without dropout) and `dO` the output gradient per head, `dV = (P M)^T dO`,
/// `dP = (dO V^T) M`, `dS = P (dP - rowsum(P dP))` (zero at masked keys), `dQ = dS K / sqrt(d)`
/// and `dK = dS^T Q / sqrt(d)` (products by `M` and `P` element-wise).
fn attention_backward_default<B: Backend>(
    qkv: [FloatTensor<B>; 3],
    masks: AttentionMasks<B>,
    output_grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let [q, k, v] = qkv.map(float4::<B>);
    let [batch, heads, seq, d_head] = q.dims();
    let padding = masks.padding.map(bool2::<B>);
    let keep = masks.dropout.map(float4::<B>);
    let dropped = |x: Tensor<B, 4>| match &keep {
        Some(keep) => x * keep.clone(),
        None => x,
    };
    let d_out = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(output_grad))
        .reshape([batch, seq, heads, d_head])
        .swap_dims(1, 2); // [batch, heads, seq, d_head]
    let p = attention_weights(q.clone(), k.clone(), padding.as_ref(), masks.causal_offset);
    let d_v = dropped(p.clone()).transpose().matmul(d_out.clone());
    let d_p = dropped(d_out.matmul(v.transpose())); // [batch, heads, seq, keys]
    let d_s = p.clone() * (d_p.clone() - (p * d_p).sum_dim(3));
    let d_s = fill_masked(d_s, padding.as_ref(), masks.causal_offset, 0.0) / (d_head as f32).sqrt();
    let d_q = d_s.clone().matmul(k);
    let d_k = d_s.transpose().matmul(q);
    [d_q, d_k, d_v].map(|t| t.into_primitive().tensor())
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
    let rstd = crate::norm::inverse_sqrt(centered.clone().powi_scalar(2).mean_dim(1) + epsilon);
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

/// Scaled dot-product attention through [`FusedBackend::fused_attention`]: queries
/// `[batch, heads, seq, d_head]`, keys and values `[batch, heads, keys, d_head]`, `padding`
/// `[batch, keys]` (true at padded keys), `causal_offset` `Some(o)` when query `i` sees keys
/// `0..=o + i` only, and `dropout` the probability of dropping a weight, applied (like burn's
/// `Dropout`) only when the backend tracks gradients; returns the heads merged,
/// `[batch, seq, heads * d_head]`.
pub fn attention<B: FusedBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    padding: Option<Tensor<B, 2, Bool>>,
    causal_offset: Option<usize>,
    dropout: f64,
) -> Tensor<B, 3> {
    let [batch, heads, seq, d_head] = q.dims();
    let [kb, kh, keys, kd] = k.dims();
    assert!(
        [kb, kh, kd] == [batch, heads, d_head] && v.dims() == k.dims(),
        "attention: queries {:?}, keys {:?} and values {:?} disagree",
        q.dims(),
        k.dims(),
        v.dims()
    );
    if let Some(padding) = &padding {
        assert!(
            padding.dims() == [batch, keys],
            "attention: padding mask {:?}, expected [{batch}, {keys}]",
            padding.dims()
        );
    }
    let dropout = dropout_keep::<B>(Shape::new([batch, heads, seq, keys]), dropout, &q.device());
    let masks = AttentionMasks {
        padding: padding.map(|p| p.into_primitive()),
        causal_offset,
        dropout,
    };
    Tensor::from_primitive(TensorPrimitive::Float(B::fused_attention(
        q.into_primitive().tensor(),
        k.into_primitive().tensor(),
        v.into_primitive().tensor(),
        masks,
    )))
}

/// Dropout through [`FusedBackend::fused_dropout_keep`]: `x` with each element zeroed with
/// probability `prob` and the others scaled by `1 / (1 - prob)`, only when the backend tracks
/// gradients (as burn's `Dropout`, whose sampling runs on one thread on the CPU backends).
pub fn dropout<B: FusedBackend, const D: usize>(x: Tensor<B, D>, prob: f64) -> Tensor<B, D> {
    match dropout_keep::<B>(x.shape(), prob, &x.device()) {
        Some(keep) => x * Tensor::from_primitive(TensorPrimitive::Float(keep)),
        None => x,
    }
}

/// Dropout's keep factors for `shape`, or `None` when dropout does nothing: `prob` 0, or a
/// backend that tracks no gradients (inference), as burn's `Dropout` decides.
fn dropout_keep<B: FusedBackend>(
    shape: Shape,
    prob: f64,
    device: &B::Device,
) -> Option<FloatTensor<B>> {
    (prob > 0.0 && B::ad_enabled(device)).then(|| B::fused_dropout_keep(shape, prob, device))
}

/// Mean cross-entropy of `logits` `[n, classes]` against `targets` `[n]` through
/// [`FusedBackend::fused_cross_entropy`], skipping rows whose target is negative
/// (`ignore_index = -100` and any other negative): `[1]`, zero when every row is skipped.
pub fn cross_entropy<B: FusedBackend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [n, classes] = logits.dims();
    assert!(
        targets.dims() == [n],
        "cross_entropy: {} targets for {n} rows of {classes} logits",
        targets.dims()[0]
    );
    Tensor::from_primitive(TensorPrimitive::Float(B::fused_cross_entropy(
        logits.into_primitive().tensor(),
        targets.into_primitive(),
    )))
}

/// `x` `[..., d_in]` times `weight` `[d_in, d_out]` plus `bias` `[d_out]`, the leading
/// dimensions flattened into one matrix product (`[..., d_out]`). burn's `linear` multiplies a
/// `[batch, seq, d_in]` input as `batch` products with the weight broadcast, and its weight
/// gradient as `batch` products summed afterwards: on CPU, many small matrix multiplies instead
/// of one large one (`benches/NOTES.md`, 2026-12-03).
pub fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    if D <= 2 {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let dims = x.dims();
    let rows = dims[..D - 1].iter().product::<usize>();
    let y = burn::tensor::module::linear(x.reshape([rows, dims[D - 1]]), weight, bias);
    let mut out = dims;
    out[D - 1] = y.dims()[1];
    y.reshape(out)
}

/// burn's `Linear` module applied through [`linear`].
pub fn linear_module<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val()))
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
    use crate::init::init_seeded;
    use crate::init::{host_random, with_seed};
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

    /// [`normwise_err`] of two f32 tensors.
    fn max_rel_err(a: &TensorData, b: &TensorData) -> f32 {
        let b: Vec<f64> = b.iter::<f32>().map(f64::from).collect();
        normwise_err(&a.to_vec::<f32>().unwrap(), &b) as f32
    }

    #[test]
    fn fused_conv_equals_burns_convolution_forward_and_every_gradient() {
        let random = |shape: [usize; 4]| {
            let seed = shape.iter().fold(0, |h, &d| h * 31 + d as u64);
            host_random::<Flex, 4>(
                shape,
                Distribution::Normal(0.0, 1.0),
                seed,
                &Default::default(),
            )
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
        let x = host_random::<Ad, 4>([3, 2, 9, 6], Distribution::Normal(0.0, 1.0), 1, &dev);
        let w = host_random::<Ad, 4>([4, 2, 3, 3], Distribution::Normal(0.0, 1.0), 2, &dev);
        let up = host_random::<Ad, 4>([3, 4, 5, 4], Distribution::Normal(0.0, 1.0), 3, &dev);
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
        let x = host_random::<Ad, 4>([2, 3, 8, 8], Distribution::Default, 4, &dev);
        for padding in [PaddingConfig2d::Same, PaddingConfig2d::Explicit(1, 1, 1, 1)] {
            let conv = init_seeded(&dev, 1001, || {
                Conv2dConfig::new([3, 4], [3, 3])
                    .with_padding(padding)
                    .init::<Ad>(&dev)
            });
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
        let x =
            host_random::<Flex, 2>([3, 7001], Distribution::Normal(0.0, 3.0), 5, &dev).into_data();
        let up =
            host_random::<Flex, 2>([7001, 3], Distribution::Normal(0.0, 1.0), 6, &dev).into_data();
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

    /// Layer norm of the rows of `x` (`[rows, d]` row-major) and its `x`, `gamma` and `beta`
    /// gradients for the upstream gradient `up`, computed in f64 from the f32 inputs.
    fn layer_norm_f64(x: &[f32], gamma: &[f32], beta: &[f32], up: &[f32]) -> [Vec<f64>; 4] {
        let d = gamma.len();
        let (mut y, mut dx) = (Vec::new(), Vec::new());
        let (mut dgamma, mut dbeta) = (vec![0.0; d], vec![0.0; d]);
        for (x, up) in x.chunks_exact(d).zip(up.chunks_exact(d)) {
            let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let mean = x.iter().sum::<f64>() / d as f64;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + 1e-5).sqrt();
            let xhat: Vec<f64> = x.iter().map(|v| (v - mean) * rstd).collect();
            let g: Vec<f64> = (0..d).map(|j| f64::from(up[j] * gamma[j])).collect();
            let mean_g = g.iter().sum::<f64>() / d as f64;
            let mean_gx = (0..d).map(|j| g[j] * xhat[j]).sum::<f64>() / d as f64;
            for j in 0..d {
                y.push(xhat[j] * f64::from(gamma[j]) + f64::from(beta[j]));
                dx.push(rstd * (g[j] - mean_g - xhat[j] * mean_gx));
                dgamma[j] += f64::from(up[j]) * xhat[j];
                dbeta[j] += f64::from(up[j]);
            }
        }
        [y, dx, dgamma, dbeta]
    }

    /// The normwise relative error `max |a - b| / max |b|` of f32 results `a` against `b`
    /// (meaningful where values are near zero, unlike an element-wise relative error).
    fn normwise_err(a: &[f32], b: &[f64]) -> f64 {
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = a
            .iter()
            .zip(b)
            .fold(0f64, |m, (&x, y)| m.max((f64::from(x) - y).abs()));
        assert!(scale > 0.0 && a.len() == b.len());
        err / scale
    }

    #[test]
    fn fused_layer_norm_matches_an_f64_reference_with_every_gradient() {
        let dev = Default::default();
        // [batch, d, seq] stored, normalized over d after a transpose: 3 x 150 rows of 37, more
        // than one kernel task of rows.
        let random = |shape: &[usize], mean: f64, seed: u64| {
            let n: usize = shape.iter().product();
            let values = host_random::<Flex, 1>([n], Distribution::Normal(mean, 2.0), seed, &dev)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            TensorData::new(values, shape.to_vec())
        };
        let rows_of = |data: &TensorData| -> Vec<f32> {
            Tensor::<Flex, 3>::from_data(data.clone(), &dev)
                .swap_dims(1, 2)
                .into_data()
                .to_vec()
                .unwrap()
        };
        for seed in [1, 2, 3] {
            let x = random(&[3, 37, 150], 1.0, seed * 10);
            let (gamma, beta) = (
                random(&[37], 1.0, seed * 10 + 1),
                random(&[37], 0.0, seed * 10 + 2),
            );
            let up = random(&[3, 150, 37], 0.0, seed * 10 + 3);
            let [gamma_values, beta_values, up_values] =
                [&gamma, &beta, &up].map(|t| t.to_vec::<f32>().unwrap());
            let reference = layer_norm_f64(&rows_of(&x), &gamma_values, &beta_values, &up_values);
            for (path, results) in [
                (
                    "flex",
                    layer_norm_and_grads::<Autodiff<Flex>>([&x, &gamma, &beta, &up], true),
                ),
                (
                    "ndarray",
                    layer_norm_and_grads::<Autodiff<NdArray>>([&x, &gamma, &beta, &up], true),
                ),
                (
                    "decomposed",
                    layer_norm_and_grads::<Autodiff<Flex>>([&x, &gamma, &beta, &up], false),
                ),
            ] {
                let [y, dx, dgamma, dbeta] = results;
                let got = [
                    y.to_vec::<f32>().unwrap(),
                    rows_of(&dx),
                    dgamma.to_vec().unwrap(),
                    dbeta.to_vec().unwrap(),
                ];
                // Each value is a few operations on a sum: over the 37 values of a row
                // (output, dx) or the 450 rows (dgamma, dbeta). Recursive summation of n terms
                // errs by at most about n units of roundoff (u = 2^-24) of the largest term, so
                // the bound is (n + 10) u: 2.8e-6 and 2.7e-5 (measured on the fused paths:
                // below 2.5e-7 and 6e-7, AVX2 and AVX-512 alike).
                let u = f64::from(f32::EPSILON) / 2.0;
                let bounds = [37.0, 37.0, 450.0, 450.0].map(|n| (n + 10.0) * u);
                let checks = ["output", "dx", "dgamma", "dbeta"].into_iter().zip(&got);
                for ((what, a), (b, bound)) in checks.zip(reference.iter().zip(bounds)) {
                    let err = normwise_err(a, b);
                    assert!(
                        err <= bound,
                        "seed {seed}, {path} {what}: {err:.2e} > {bound:.2e}"
                    );
                }
            }
        }
    }

    /// A `[shape]` tensor's values drawn from `N(0, std^2)` by a generator seeded with `seed`.
    fn normal(shape: &[usize], std: f64, seed: u64) -> TensorData {
        let n: usize = shape.iter().product();
        let values = host_random::<Flex, 1>(
            [n],
            Distribution::Normal(0.0, std),
            seed,
            &Default::default(),
        )
        .into_data()
        .to_vec::<f32>()
        .unwrap();
        TensorData::new(values, shape.to_vec())
    }

    /// One attention problem: the projections `[batch, rows, heads * d_head]` of queries, keys
    /// and values, the output's upstream gradient, the heads, masks, dropout's keep factors, and
    /// whether the heads are split from the projections (strided views, as the models do) or
    /// made contiguous.
    struct AttentionCase {
        qkv: [TensorData; 3],
        up: TensorData,
        heads: usize,
        padding: Option<TensorData>,
        causal_offset: Option<usize>,
        dropout: Option<TensorData>,
        strided: bool,
    }

    impl AttentionCase {
        fn new(
            [batch, heads, seq, keys, d_head]: [usize; 5],
            padded: &[usize],
            causal_offset: Option<usize>,
            dropout: bool,
            strided: bool,
        ) -> Self {
            let width = heads * d_head;
            // Sample b pads its last padded[b] keys.
            let padding = (!padded.is_empty()).then(|| {
                let mask = (0..batch * keys).map(|i| i % keys >= keys - padded[i / keys]);
                TensorData::new(mask.collect::<Vec<bool>>(), [batch, keys])
            });
            // Keep 3 weights of 4 (factor 4 / 3), drop every fourth by a fixed pattern.
            let dropout = dropout.then(|| {
                let n = batch * heads * seq * keys;
                let keep = (0..n).map(|i| if (i * 7) % 4 == 1 { 0.0 } else { 4.0 / 3.0 });
                TensorData::new(keep.collect::<Vec<f32>>(), [batch, heads, seq, keys])
            });
            Self {
                qkv: [(seq, 101), (keys, 102), (keys, 103)]
                    .map(|(rows, seed)| normal(&[batch, rows, width], 1.5, seed)),
                up: normal(&[batch, seq, width], 1.0, 104),
                heads,
                padding,
                causal_offset,
                dropout,
                strided,
            }
        }

        /// The masks on backend `B`.
        fn masks<B: Backend>(&self) -> AttentionMasks<B> {
            let dev = Default::default();
            AttentionMasks {
                padding: self
                    .padding
                    .clone()
                    .map(|p| Tensor::<B, 2, Bool>::from_data(p, &dev).into_primitive()),
                causal_offset: self.causal_offset,
                dropout: self
                    .dropout
                    .clone()
                    .map(|k| Tensor::<B, 4>::from_data(k, &dev).into_primitive().tensor()),
            }
        }

        /// Output and the q, k, v gradients of `sum(attention * up)`, fused or through the
        /// generic default (burn's operations, differentiated by burn's autodiff).
        fn run<B: FusedAutodiffBackend>(&self, fused: bool) -> [TensorData; 4] {
            let dev = Default::default();
            let inputs = self
                .qkv
                .clone()
                .map(|data| Tensor::<B, 3>::from_data(data, &dev).require_grad());
            let heads = inputs.clone().map(|x| {
                let [batch, rows, width] = x.dims();
                let split = x.reshape([batch, rows, self.heads, width / self.heads]);
                if self.strided {
                    split.swap_dims(1, 2)
                } else {
                    // A contiguous copy: the kernels read any layout.
                    Tensor::from_data(split.swap_dims(1, 2).into_data(), &dev).require_grad()
                }
            });
            let qkv = heads.clone().map(|t| t.into_primitive().tensor());
            let y = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(if fused {
                let [q, k, v] = qkv;
                B::fused_attention(q, k, v, self.masks())
            } else {
                attention_default::<B>(qkv, self.masks())
            }));
            let up = Tensor::<B, 3>::from_data(self.up.clone(), &dev);
            let grads = (y.clone() * up).sum().backward();
            let grad = |i: usize| {
                let g = if self.strided {
                    inputs[i].grad(&grads).unwrap()
                } else {
                    let [batch, n_heads, rows, d_head] = heads[i].dims();
                    heads[i].grad(&grads).unwrap().swap_dims(1, 2).reshape([
                        batch,
                        rows,
                        n_heads * d_head,
                    ])
                };
                g.into_data()
            };
            [y.into_data(), grad(0), grad(1), grad(2)]
        }
    }

    #[test]
    fn fused_attention_equals_the_decomposed_one_with_every_gradient() {
        // [batch, heads, seq, keys, d_head], padded keys per sample, causal offset, dropout,
        // strided
        let cases = [
            ([2, 3, 7, 7, 5], vec![], None, false, true),
            ([3, 2, 6, 6, 4], vec![0, 2, 6], None, false, true),
            ([2, 2, 9, 9, 3], vec![], Some(0), false, true),
            ([3, 2, 6, 6, 4], vec![1, 0, 6], None, true, true),
            // A key-value cache: 4 new queries after 5 cached positions.
            ([2, 3, 4, 9, 6], vec![], Some(5), false, false),
            ([2, 1, 5, 5, 8], vec![1, 3], Some(0), true, false),
        ];
        for (shape, padded, causal_offset, dropout, strided) in cases {
            let case = AttentionCase::new(shape, &padded, causal_offset, dropout, strided);
            let reference = case.run::<Autodiff<Flex>>(false);
            for (backend, fused) in [
                ("flex", case.run::<Autodiff<Flex>>(true)),
                ("ndarray", case.run::<Autodiff<NdArray>>(true)),
            ] {
                for (what, (a, b)) in ["output", "dq", "dk", "dv"]
                    .iter()
                    .zip(fused.iter().zip(&reference))
                {
                    let err = max_rel_err(a, b);
                    assert!(
                        err < 1e-5,
                        "{backend} {what} of {shape:?}, padded {padded:?}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn attention_gradients_match_finite_differences() {
        // Independent of burn's autodiff: central differences of sum(attention * up) in f64
        // steps of the f32 inputs, causal and padded.
        type Ad = Autodiff<Flex>;
        let case = AttentionCase::new([2, 2, 5, 5, 4], &[0, 2], Some(0), true, true);
        let grads = case.run::<Ad>(true);
        let dev = Default::default();
        let loss = |qkv: &[TensorData; 3]| {
            let [q, k, v] = qkv.clone().map(|d| {
                let x = Tensor::<Flex, 3>::from_data(d, &dev);
                let [batch, rows, width] = x.dims();
                x.reshape([batch, rows, 2, width / 2]).swap_dims(1, 2)
            });
            let y =
                Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(Flex::fused_attention(
                    q.into_primitive().tensor(),
                    k.into_primitive().tensor(),
                    v.into_primitive().tensor(),
                    case.masks(),
                )));
            let up = Tensor::<Flex, 3>::from_data(case.up.clone(), &dev);
            f64::from((y * up).sum().into_scalar())
        };
        for (input, grad) in grads[1..].iter().enumerate() {
            let grad = grad.to_vec::<f32>().unwrap();
            for index in [0, 9, 22, 37] {
                let nudged = |delta: f32| {
                    let mut qkv = case.qkv.clone();
                    let mut values = qkv[input].to_vec::<f32>().unwrap();
                    values[index] += delta;
                    qkv[input] = TensorData::new(values, qkv[input].shape.clone());
                    loss(&qkv)
                };
                let numeric = ((nudged(1e-2) - nudged(-1e-2)) / 2e-2) as f32;
                assert!(
                    (numeric - grad[index]).abs() <= 1e-2 * grad[index].abs().max(1.0),
                    "input {input}, element {index}: {numeric} vs {}",
                    grad[index]
                );
            }
        }
    }

    #[test]
    fn attention_dropout_applies_only_when_tracking_gradients() {
        let case = AttentionCase::new([2, 2, 6, 6, 4], &[], None, false, true);
        let heads = |data: &TensorData| {
            Tensor::<Autodiff<Flex>, 3>::from_data(data.clone(), &Default::default())
                .reshape([2, 6, 2, 4])
                .swap_dims(1, 2)
        };
        let [q, k, v] = case.qkv.each_ref().map(heads);
        let run = |dropout: f64, tracked: bool| {
            let [q, k, v] = [&q, &k, &v].map(|t| t.clone());
            if tracked {
                attention(q, k, v, None, None, dropout).into_data()
            } else {
                attention(q.inner(), k.inner(), v.inner(), None, None, dropout).into_data()
            }
        };
        let plain = run(0.0, true);
        assert!(max_rel_err(&run(0.5, true), &plain) > 0.01);
        assert_eq!(run(0.5, false), plain);
    }

    /// Statistics of keep factors drawn on `B` at probability `prob`: (share kept, whether every
    /// value is 0 or `1 / (1 - prob)`).
    fn keep_statistics<B: FusedBackend>(prob: f64) -> (f64, bool) {
        let shape = Shape::new([7, 300, 501]);
        let keep = B::fused_dropout_keep(shape, prob, &Default::default());
        let values = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(keep))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let scale = (1.0 / (1.0 - prob)) as f32;
        let kept = values.iter().filter(|&&v| v != 0.0).count();
        let valid = values.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6);
        (kept as f64 / values.len() as f64, valid)
    }

    #[test]
    fn dropout_keeps_the_expected_share_repeatably_under_a_seed() {
        for prob in [0.1, 0.5] {
            // 1,052,100 draws: the share's standard deviation is below 5e-4.
            for (backend, (share, valid)) in [
                ("flex", keep_statistics::<Flex>(prob)),
                ("ndarray", keep_statistics::<NdArray>(prob)),
                ("autodiff", keep_statistics::<Autodiff<Flex>>(prob)),
            ] {
                assert!(valid, "{backend}: values other than 0 and 1 / (1 - p)");
                assert!(
                    (share - (1.0 - prob)).abs() < 3e-3,
                    "{backend}: kept {share} at p = {prob}"
                );
            }
        }
        let dev = Default::default();
        let draw = || {
            Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(Flex::fused_dropout_keep(
                Shape::new([1000]),
                0.3,
                &dev,
            )))
            .into_data()
        };
        let (first, second) = with_seed::<Flex, _>(&dev, 11, || (draw(), draw()));
        let replay = with_seed::<Flex, _>(&dev, 11, draw);
        assert_eq!(replay, first, "the same seed draws the same mask");
        assert_ne!(first, second, "successive masks differ");
        // Neighbouring elements are independent: the share of kept pairs is keep^2.
        let values = draw().to_vec::<f32>().unwrap();
        let pairs = values
            .windows(2)
            .filter(|w| w[0] != 0.0 && w[1] != 0.0)
            .count();
        let share = pairs as f64 / 999.0;
        assert!((share - 0.49).abs() < 0.06, "kept pairs {share}");
    }

    /// Loss and logit gradient of `cross_entropy(logits, targets) * 3`, the logits seen through
    /// a transpose, fused or through the generic default.
    fn cross_entropy_and_grad<B: FusedAutodiffBackend>(
        logits: &TensorData,
        targets: &[i64],
        fused: bool,
    ) -> [TensorData; 2] {
        let dev = Default::default();
        let stored = Tensor::<B, 2>::from_data(logits.clone(), &dev).require_grad();
        let logits = stored.clone().transpose();
        let targets = Tensor::<B, 1, Int>::from_data(targets, &dev);
        let loss = if fused {
            cross_entropy(logits, targets)
        } else {
            Tensor::from_primitive(TensorPrimitive::Float(cross_entropy_default::<B>(
                logits.into_primitive().tensor(),
                targets.into_primitive(),
            )))
        };
        let grads = (loss.clone() * 3.0).sum().backward();
        [loss.into_data(), stored.grad(&grads).unwrap().into_data()]
    }

    #[test]
    fn fused_cross_entropy_equals_the_default_with_ignored_rows() {
        // [classes, rows] stored: 41 rows of 1,001 classes after the transpose (several rows
        // per kernel task, an odd last task), targets at both ends of the range and ignored.
        let logits = normal(&[1001, 41], 4.0, 105);
        let targets: Vec<i64> = (0..41)
            .map(|i| match i % 7 {
                0 => -100,
                3 => -1,
                5 => 1000,
                _ => (i * 97) % 1001,
            })
            .collect();
        let reference = cross_entropy_and_grad::<Autodiff<Flex>>(&logits, &targets, false);
        for (backend, fused) in [
            (
                "flex",
                cross_entropy_and_grad::<Autodiff<Flex>>(&logits, &targets, true),
            ),
            (
                "ndarray",
                cross_entropy_and_grad::<Autodiff<NdArray>>(&logits, &targets, true),
            ),
        ] {
            for (what, (a, b)) in ["loss", "gradient"]
                .iter()
                .zip(fused.iter().zip(&reference))
            {
                let err = max_rel_err(a, b);
                assert!(err < 1e-5, "{backend} {what}: {err}");
            }
        }
        // Every row ignored: loss 0 and no gradient, like PyTorch's mean over zero rows would
        // be replaced by.
        let [loss, grad] = cross_entropy_and_grad::<Autodiff<Flex>>(&logits, &[-100; 41], true);
        assert_eq!(loss.to_vec::<f32>().unwrap(), vec![0.0]);
        assert!(grad.to_vec::<f32>().unwrap().iter().all(|&g| g == 0.0));
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let logits = normal(&[9, 4], 2.0, 106);
        let targets = [2, -100, 8, 0];
        let [_, grad] = cross_entropy_and_grad::<Autodiff<Flex>>(&logits, &targets, true);
        let grad = grad.to_vec::<f32>().unwrap();
        let loss = |values: Vec<f32>| {
            let dev = Default::default();
            let logits = Tensor::<Flex, 2>::from_data(TensorData::new(values, [9, 4]), &dev);
            let targets = Tensor::<Flex, 1, Int>::from_data(targets, &dev);
            f64::from(cross_entropy(logits.transpose(), targets).into_scalar()) * 3.0
        };
        let base = logits.to_vec::<f32>().unwrap();
        for index in 0..36 {
            let nudged = |delta: f32| {
                let mut values = base.clone();
                values[index] += delta;
                loss(values)
            };
            let numeric = ((nudged(1e-2) - nudged(-1e-2)) / 2e-2) as f32;
            assert!(
                (numeric - grad[index]).abs() <= 2e-3,
                "logit {index}: {numeric} vs {}",
                grad[index]
            );
        }
    }

    #[test]
    fn flattened_linear_equals_burns_with_every_gradient() {
        type Ad = Autodiff<Flex>;
        let dev = Default::default();
        let x = Tensor::<Ad, 4>::from_data(normal(&[2, 5, 3, 7], 1.0, 107), &dev).require_grad();
        let weight = Tensor::<Ad, 2>::from_data(normal(&[7, 4], 1.0, 108), &dev).require_grad();
        let bias = Tensor::<Ad, 1>::from_data(normal(&[4], 1.0, 109), &dev).require_grad();
        let up = Tensor::<Ad, 4>::from_data(normal(&[2, 3, 5, 4], 1.0, 110), &dev);
        let run = |flattened: bool| {
            // A strided input, [2, 3, 5, 7] seen through a transpose: the reshape copies it.
            let xt = x.clone().swap_dims(1, 2);
            let y = if flattened {
                linear(xt, weight.clone(), Some(bias.clone()))
            } else {
                burn::tensor::module::linear(xt, weight.clone(), Some(bias.clone()))
            };
            let grads = (y.clone() * up.clone()).sum().backward();
            [
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                weight.grad(&grads).unwrap().into_data(),
                bias.grad(&grads).unwrap().into_data(),
            ]
        };
        for (what, (a, b)) in ["output", "dx", "dweight", "dbias"]
            .iter()
            .zip(run(true).iter().zip(&run(false)))
        {
            let err = max_rel_err(a, b);
            assert!(err < 1e-5, "{what}: {err}");
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
