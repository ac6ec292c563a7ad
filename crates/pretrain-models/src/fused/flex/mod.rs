//! Flex kernels of [`FusedBackend`], on its raw f32 storage.

use burn::backend::Flex;
use burn::tensor::ops::{
    ConvOptions, FloatTensor, FloatTensorOps, IntTensor, IntTensorOps, ModuleOps,
};
use burn::tensor::{DType, Distribution, IntDType, Shape, TensorData, TensorMetadata};
use burn_flex::FlexTensor;
use rayon::prelude::*;

mod attention;
mod cross_entropy;
mod math;

use super::{
    AttentionMasks, FusedBackend, attention_backward_default, attention_default, backend_kernels,
    cross_entropy_backward_default, cross_entropy_default, dropout_keep_default,
    gelu_backward_default, gelu_default, layer_norm_backward_default,
};

/// Floats of the im2col matrix built at once (16 MiB): the gradients are computed over chunks
/// of images so their memory does not grow with the batch.
const IM2COL_CHUNK_FLOATS: usize = 4 << 20;

impl FusedBackend for Flex {
    /// im2col + one gemm per chunk of images (`dW = dY [c_out, n*l] x cols^T`), both
    /// multi-threaded. burn-flex 0.21 computes this gradient as a convolution with batch and
    /// channels swapped, single-threaded per plane: most of the small CNN's training step
    /// (benches/NOTES.md, 2026-12-01).
    fn fused_conv2d_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if !f32_ungrouped(&x, &output_grad, &options) {
            return Flex::conv2d_weight_backward(x, weight, output_grad, options);
        }
        conv2d_weight_grad_f32(
            &x,
            weight.shape(),
            &output_grad,
            &options,
            IM2COL_CHUNK_FLOATS,
        )
    }

    /// One gemm per chunk of images (`cols = W^T x dY`) and a multi-threaded col2im, in place of
    /// burn-flex's transposed convolution.
    fn fused_conv2d_x_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        if !f32_ungrouped(&x, &output_grad, &options) || weight.dtype() != DType::F32 {
            return Flex::conv2d_x_backward(x, weight, output_grad, options);
        }
        conv2d_x_grad_f32(
            x.shape(),
            &weight,
            &output_grad,
            &options,
            IM2COL_CHUNK_FLOATS,
        )
    }

    /// Multi-threaded, one pass (burn's tanh approximation is seven single-threaded passes).
    fn fused_gelu(x: FloatTensor<Self>, tanh: bool) -> FloatTensor<Self> {
        if !kernels_apply(&[&x]) {
            return gelu_default::<Flex>(x, tanh);
        }
        // One closure per form, so each loop is branch-free and vectorizes.
        if tanh {
            map_f32(&x, |v| gelu_f32(v, true))
        } else {
            map_f32(&x, |v| gelu_f32(v, false))
        }
    }

    fn fused_gelu_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        tanh: bool,
    ) -> FloatTensor<Self> {
        if !kernels_apply(&[&x, &output_grad]) {
            return gelu_backward_default::<Flex>(x, output_grad, tanh);
        }
        if tanh {
            zip_map_f32(&x, &output_grad, |x, g| g * gelu_derivative_f32(x, true))
        } else {
            zip_map_f32(&x, &output_grad, |x, g| g * gelu_derivative_f32(x, false))
        }
    }

    /// One pass over the rows, multi-threaded (burn's autodiff decomposes layer normalization
    /// into about fifteen element-wise operations and reductions).
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> [FloatTensor<Self>; 3] {
        if !kernels_apply(&[&x, &gamma, &output_grad]) {
            return layer_norm_backward_default::<Flex>(x, gamma, output_grad, epsilon);
        }
        layer_norm_backward_f32(&x, &gamma, &output_grad, epsilon)
    }

    /// One multi-threaded task per (sample, head), weights kept per task only
    /// ([`attention`]).
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<Self>,
    ) -> FloatTensor<Self> {
        let fused = attention_f32_ok(&[&q, &k, &v], &masks)
            .then(|| attention::attention_f32([&q, &k, &v], &masks))
            .flatten();
        fused.unwrap_or_else(|| attention_default::<Flex>([q, k, v], masks))
    }

    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        masks: AttentionMasks<Self>,
        output_grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let fused = attention_f32_ok(&[&q, &k, &v, &output_grad], &masks)
            .then(|| attention::attention_backward_f32([&q, &k, &v], &masks, &output_grad))
            .flatten();
        fused.unwrap_or_else(|| attention_backward_default::<Flex>([q, k, v], masks, output_grad))
    }

    /// A counter-based generator (each element a hash of one seed and its index) filled in
    /// parallel; the seed is drawn from Flex's seeded generator. burn samples Bernoulli values one
    /// by one with a ChaCha generator on one thread: 17% of BERT-tiny's training step.
    fn fused_dropout_keep(shape: Shape, prob: f64, device: &Self::Device) -> FloatTensor<Self> {
        if !backend_kernels() {
            return dropout_keep_default::<Flex>(shape, prob, device);
        }
        let seed = Flex::int_random(
            Shape::new([1]),
            Distribution::Uniform(0.0, 2f64.powi(53)),
            device,
            IntDType::I64,
        );
        let seed = seed.into_data().iter::<i64>().next().unwrap_or(0) as u64;
        dropout_keep_f32(shape, prob, seed)
    }

    /// Rows in parallel, one pass forward (log-sum-exp and the target's logit) and one backward
    /// (burn's `log_softmax`, gather and their autodiff are about ten single-threaded passes over
    /// the `[n, classes]` logits, the largest tensor of a language model's step).
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        if !kernels_apply(&[&logits]) {
            return cross_entropy_default::<Flex>(logits, targets);
        }
        cross_entropy::cross_entropy_f32(&logits, &targets)
    }

    fn fused_cross_entropy_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !kernels_apply(&[&logits, &output_grad]) {
            return cross_entropy_backward_default::<Flex>(logits, targets, output_grad);
        }
        cross_entropy::cross_entropy_backward_f32(&logits, &targets, &output_grad)
    }
}

/// Dropout's keep factors from a counter-based generator: element `i` is kept when the upper
/// 32 bits of `splitmix64(seed + i * golden ratio)` fall below `(1 - prob) * 2^32`.
fn dropout_keep_f32(shape: Shape, prob: f64, seed: u64) -> FlexTensor {
    let keep = 1.0 - prob;
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let mut out = vec![0.0f32; shape.num_elements()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let start = (chunk * ELEMENTWISE_CHUNK) as u64;
            for (i, o) in out.iter_mut().enumerate() {
                let bits = splitmix64(seed.wrapping_add((start + i as u64).wrapping_mul(GOLDEN)));
                *o = if bits >> 32 < threshold { scale } else { 0.0 };
            }
        });
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// 2^64 divided by the golden ratio: consecutive counters spread over the generator's input.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function (Steele, Lea and Flood 2014): a bijective 64-bit mixer whose
/// outputs over consecutive inputs pass BigCrush.
#[inline(always)]
fn splitmix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether the attention kernel applies: kernels on, f32 throughout.
fn attention_f32_ok(tensors: &[&FlexTensor], masks: &AttentionMasks<Flex>) -> bool {
    kernels_apply(tensors)
        && masks
            .dropout
            .as_ref()
            .is_none_or(|keep| kernels_apply(&[keep]))
}

/// Whether the kernels here run: switched on ([`backend_kernels`]) and every tensor f32 (they
/// are written for f32 only).
fn kernels_apply(tensors: &[&FlexTensor]) -> bool {
    backend_kernels() && tensors.iter().all(|t| t.dtype() == DType::F32)
}

/// Rows per task of the layer-norm backward.
const LAYER_NORM_ROWS: usize = 64;

/// The input, `gamma` and `beta` gradients of an f32 layer normalization over the last dimension.
fn layer_norm_backward_f32(
    x: &FlexTensor,
    gamma: &FlexTensor,
    output_grad: &FlexTensor,
    epsilon: f64,
) -> [FlexTensor; 3] {
    let shape = x.shape();
    let (x, gamma, output_grad) = (
        x.to_contiguous(),
        gamma.to_contiguous(),
        output_grad.to_contiguous(),
    );
    let xs: &[f32] = x.as_slice().expect("a contiguous f32 tensor");
    let gamma: &[f32] = gamma.as_slice().expect("a contiguous f32 tensor");
    let dys: &[f32] = output_grad.as_slice().expect("a contiguous f32 tensor");
    let d = gamma.len();
    let mut dx = vec![0.0f32; xs.len()];
    let task = d * LAYER_NORM_ROWS;
    let zeros = || (vec![0.0f32; d], vec![0.0f32; d]);
    let (dgamma, dbeta) = dx
        .par_chunks_mut(task)
        .zip(xs.par_chunks(task).zip(dys.par_chunks(task)))
        .map(|(dx, (x, dy))| {
            let (mut dgamma, mut dbeta) = zeros();
            let rows = dx
                .chunks_exact_mut(d)
                .zip(x.chunks_exact(d))
                .zip(dy.chunks_exact(d));
            math::widest(
                #[inline(always)]
                || layer_norm_rows(rows, gamma, epsilon, (&mut dgamma, &mut dbeta)),
            );
            (dgamma, dbeta)
        })
        // Partial sums collected in task order and added in that order: a parallel reduce
        // would combine them in whatever order the threads finish, and training must be
        // deterministic (exact resume, seeded tests).
        .collect::<Vec<_>>()
        .into_iter()
        .fold(zeros(), |(mut g, mut b), (g2, b2)| {
            g.iter_mut().zip(g2).for_each(|(a, v)| *a += v);
            b.iter_mut().zip(b2).for_each(|(a, v)| *a += v);
            (g, b)
        });
    [
        FlexTensor::from_data(TensorData::new(dx, shape)),
        FlexTensor::from_data(TensorData::new(dgamma, [d])),
        FlexTensor::from_data(TensorData::new(dbeta, [d])),
    ]
}

/// The layer-norm backward of `rows` (`(dx, x, dy)`, each `[d]`): writes `dx` and adds the
/// rows' `gamma` and `beta` gradients to `dgamma` and `dbeta`.
#[inline(always)]
fn layer_norm_rows<'a>(
    rows: impl Iterator<Item = ((&'a mut [f32], &'a [f32]), &'a [f32])>,
    gamma: &[f32],
    epsilon: f64,
    (dgamma, dbeta): (&mut [f32], &mut [f32]),
) {
    let d = gamma.len();
    for ((dx, x), dy) in rows {
        // Row statistics in f64, as burn-flex's forward computes them.
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        let (mean, rstd) = (mean as f32, (1.0 / (var + epsilon).sqrt()) as f32);
        let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
        for j in 0..d {
            let xhat = (x[j] - mean) * rstd;
            let g = dy[j] * gamma[j];
            sum_g += g;
            sum_gx += g * xhat;
            dgamma[j] += dy[j] * xhat;
            dbeta[j] += dy[j];
        }
        let (mean_g, mean_gx) = (sum_g / d as f32, sum_gx / d as f32);
        for j in 0..d {
            let xhat = (x[j] - mean) * rstd;
            dx[j] = rstd * (dy[j] * gamma[j] - mean_g - xhat * mean_gx);
        }
    }
}

/// Elements per task of the element-wise kernels.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// `f(x)` of every element of an f32 tensor, multi-threaded (burn-flex 0.21's unary operations
/// run on one thread).
fn map_f32(x: &FlexTensor, f: impl Fn(f32) -> f32 + Sync) -> FlexTensor {
    let x = x.to_contiguous();
    let values: &[f32] = x.as_slice().expect("a contiguous f32 tensor");
    let mut out = vec![0.0f32; values.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(values.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(out, values)| {
            math::widest(
                #[inline(always)]
                || {
                    for (o, &v) in out.iter_mut().zip(values) {
                        *o = f(v);
                    }
                },
            )
        });
    FlexTensor::from_data(TensorData::new(out, x.shape()))
}

/// `f(x, g)` of every pair of elements of two f32 tensors of one shape, multi-threaded.
fn zip_map_f32(x: &FlexTensor, g: &FlexTensor, f: impl Fn(f32, f32) -> f32 + Sync) -> FlexTensor {
    let (x, g) = (x.to_contiguous(), g.to_contiguous());
    let xs: &[f32] = x.as_slice().expect("a contiguous f32 tensor");
    let gs: &[f32] = g.as_slice().expect("a contiguous f32 tensor");
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(
            xs.par_chunks(ELEMENTWISE_CHUNK)
                .zip(gs.par_chunks(ELEMENTWISE_CHUNK)),
        )
        .for_each(|(out, (xs, gs))| {
            math::widest(
                #[inline(always)]
                || {
                    for ((o, &x), &g) in out.iter_mut().zip(xs).zip(gs) {
                        *o = f(x, g);
                    }
                },
            )
        });
    FlexTensor::from_data(TensorData::new(out, x.shape()))
}

/// `sqrt(2 / pi)` and the cubic coefficient of the tanh GELU, and `1 / sqrt(2)`, in f32.
const TANH_SCALE: f32 = 0.797_884_6;
const TANH_CUBIC: f32 = 0.044_715;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`, the standard normal density's constant.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
fn gelu_f32(x: f32, tanh: bool) -> f32 {
    if tanh {
        0.5 * x * (1.0 + math::tanh(TANH_SCALE * (x + TANH_CUBIC * x * x * x)))
    } else {
        0.5 * x * (1.0 + math::erf(x * FRAC_1_SQRT_2))
    }
}

#[inline(always)]
fn gelu_derivative_f32(x: f32, tanh: bool) -> f32 {
    if tanh {
        let t = math::tanh(TANH_SCALE * (x + TANH_CUBIC * x * x * x));
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * TANH_SCALE * (1.0 + 3.0 * TANH_CUBIC * x * x)
    } else {
        0.5 * (1.0 + math::erf(x * FRAC_1_SQRT_2)) + x * FRAC_1_SQRT_2PI * math::exp(-0.5 * x * x)
    }
}

/// Whether the convolution kernels apply: kernels on, f32 tensors, one group.
fn f32_ungrouped(x: &FlexTensor, output_grad: &FlexTensor, options: &ConvOptions<2>) -> bool {
    kernels_apply(&[x, output_grad]) && options.groups == 1
}

/// Geometry of one 2-D convolution, in the terms im2col needs.
struct ConvGeometry {
    channels: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    output: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl ConvGeometry {
    fn new(input: &Shape, weight: &Shape, output: &Shape, options: &ConvOptions<2>) -> Self {
        let [_, channels, h, w] = input.dims();
        let [_, _, kh, kw] = weight.dims();
        let [_, _, oh, ow] = output.dims();
        Self {
            channels,
            input: [h, w],
            kernel: [kh, kw],
            output: [oh, ow],
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        }
    }

    /// Kernel taps: one per (input channel, kernel row, kernel column), the rows of the
    /// transposed im2col matrix.
    fn taps(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Output pixels of one image: its columns in the transposed im2col matrix.
    fn pixels(&self) -> usize {
        self.output[0] * self.output[1]
    }

    fn image_len(&self) -> usize {
        self.channels * self.input[0] * self.input[1]
    }

    /// Images per chunk so that a chunk's im2col matrix holds at most `chunk_floats` (at least
    /// one image).
    fn chunk(&self, batch: usize, chunk_floats: usize) -> usize {
        (chunk_floats / (self.taps() * self.pixels()).max(1)).clamp(1, batch.max(1))
    }

    /// Output positions along axis `axis` (0: rows, 1: columns) whose kernel offset `k` reads
    /// inside the input, and the input position the first of them reads: position `o` of the
    /// range reads `first + (o - range.start) * stride`.
    fn valid(&self, axis: usize, k: usize) -> (std::ops::Range<usize>, usize) {
        let (stride, pad) = (self.stride[axis], self.padding[axis]);
        let offset = k * self.dilation[axis];
        // o * stride + offset - pad must lie in [0, input).
        let start = pad.saturating_sub(offset).div_ceil(stride);
        let end = (self.input[axis] + pad)
            .checked_sub(offset)
            .map_or(0, |limit| limit.div_ceil(stride))
            .min(self.output[axis]);
        let start = start.min(end);
        (start..end, (start * stride + offset).saturating_sub(pad))
    }

    /// The channel and kernel offsets of tap (im2col row) `tap`.
    fn tap(&self, tap: usize) -> (usize, [usize; 2]) {
        let [kh, kw] = self.kernel;
        (tap / (kh * kw), [(tap / kw) % kh, tap % kw])
    }

    /// Fills row `tap` of the transposed im2col matrix of `images` (`[n, channels, h, w]`):
    /// `row` is `[n * oh * ow]`, zero where the tap reads padding.
    fn im2col_row(&self, images: &[f32], tap: usize, row: &mut [f32]) {
        let (c, [ky, kx]) = self.tap(tap);
        let [h, w] = self.input;
        let ow = self.output[1];
        let (rows, first_row) = self.valid(0, ky);
        let (columns, first_column) = self.valid(1, kx);
        let sx = self.stride[1];
        for (image, out) in images
            .chunks_exact(self.image_len())
            .zip(row.chunks_exact_mut(self.pixels()))
        {
            out.fill(0.0);
            let plane = &image[c * h * w..][..h * w];
            for (oy, iy) in rows.clone().zip((first_row..).step_by(self.stride[0])) {
                let dst = &mut out[oy * ow..][columns.clone()];
                let src = &plane[iy * w + first_column..];
                if sx == 1 {
                    dst.copy_from_slice(&src[..dst.len()]);
                } else {
                    for (d, s) in dst.iter_mut().zip(src.iter().step_by(sx)) {
                        *d = *s;
                    }
                }
            }
        }
    }

    /// Adds image `index`'s columns of the transposed im2col gradient `cols` (`[taps, n * oh *
    /// ow]`) back onto the pixels they read (`image_grad`: `[channels, h, w]`).
    fn col2im(&self, cols: &[f32], n: usize, index: usize, image_grad: &mut [f32]) {
        let [h, w] = self.input;
        let ow = self.output[1];
        let pixels = self.pixels();
        let sx = self.stride[1];
        for tap in 0..self.taps() {
            let (c, [ky, kx]) = self.tap(tap);
            let (rows, first_row) = self.valid(0, ky);
            let (columns, first_column) = self.valid(1, kx);
            let plane = &mut image_grad[c * h * w..][..h * w];
            let column = &cols[(tap * n + index) * pixels..][..pixels];
            for (oy, iy) in rows.zip((first_row..).step_by(self.stride[0])) {
                let src = &column[oy * ow..][columns.clone()];
                let dst = &mut plane[iy * w + first_column..];
                if sx == 1 {
                    for (d, s) in dst[..src.len()].iter_mut().zip(src) {
                        *d += *s;
                    }
                } else {
                    for (d, s) in dst.iter_mut().step_by(sx).zip(src) {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// Rows `[c_out, n * oh * ow]` of images `start..start + n` of the output gradient
/// (`grads`: `[batch, c_out, oh * ow]`, contiguous), in the transposed im2col matrix's column
/// order: a multi-threaded copy of contiguous runs (a strided `reshape` copies element by
/// element on one thread).
fn output_grad_rows(
    grads: &[f32],
    c_out: usize,
    pixels: usize,
    start: usize,
    n: usize,
) -> FlexTensor {
    let mut rows = vec![0.0f32; c_out * n * pixels];
    rows.par_chunks_mut(n * pixels)
        .enumerate()
        .for_each(|(o, row)| {
            for (i, run) in row.chunks_exact_mut(pixels).enumerate() {
                run.copy_from_slice(&grads[((start + i) * c_out + o) * pixels..][..pixels]);
            }
        });
    FlexTensor::from_data(TensorData::new(rows, [c_out, n * pixels]))
}

/// The f32 weight gradient (`[c_out, c_in, kh, kw]`) of an ungrouped convolution, building at
/// most `chunk_floats` of the im2col matrix at once (at least one image's).
fn conv2d_weight_grad_f32(
    x: &FlexTensor,
    weight_shape: Shape,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
    chunk_floats: usize,
) -> FlexTensor {
    let x = x.to_contiguous();
    let output_grad = output_grad.to_contiguous();
    let geometry = ConvGeometry::new(&x.shape(), &weight_shape, &output_grad.shape(), options);
    let grads: &[f32] = output_grad.as_slice().expect("a contiguous f32 tensor");
    let c_out = weight_shape.dims::<4>()[0];
    let images: &[f32] = x.as_slice().expect("a contiguous f32 tensor");
    let batch = x.shape().dims::<4>()[0];
    let chunk = geometry.chunk(batch, chunk_floats);
    let mut grad: Option<FlexTensor> = None;
    for start in (0..batch).step_by(chunk) {
        let n = chunk.min(batch - start);
        let width = n * geometry.pixels();
        let mut cols = vec![0.0f32; geometry.taps() * width];
        let chunk_images = &images[start * geometry.image_len()..][..n * geometry.image_len()];
        cols.par_chunks_mut(width)
            .enumerate()
            .for_each(|(tap, row)| geometry.im2col_row(chunk_images, tap, row));
        let cols = FlexTensor::from_data(TensorData::new(cols, [geometry.taps(), width]));
        // [c_out, n*l] x [n*l, taps]
        let rows = output_grad_rows(grads, c_out, geometry.pixels(), start, n);
        let part = Flex::float_matmul(rows, cols.transpose(0, 1));
        grad = Some(match grad {
            Some(sum) => Flex::float_add(sum, part),
            None => part,
        });
    }
    match grad {
        Some(grad) => grad.reshape(weight_shape),
        None => Flex::float_zeros(weight_shape, &Default::default(), DType::F32.into()),
    }
}

/// The f32 input gradient (`input_shape`) of an ungrouped convolution, chunked like
/// [`conv2d_weight_grad_f32`].
fn conv2d_x_grad_f32(
    input_shape: Shape,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
    chunk_floats: usize,
) -> FlexTensor {
    let output_grad = output_grad.to_contiguous();
    let geometry = ConvGeometry::new(&input_shape, &weight.shape(), &output_grad.shape(), options);
    let grads: &[f32] = output_grad.as_slice().expect("a contiguous f32 tensor");
    let [batch, ..] = input_shape.dims::<4>();
    let c_out = weight.shape().dims::<4>()[0];
    // [taps, c_out]
    let weight_t = weight
        .reshape(Shape::new([c_out, geometry.taps()]))
        .transpose(0, 1)
        .to_contiguous();
    let mut grad = vec![0.0f32; batch * geometry.image_len()];
    let chunk = geometry.chunk(batch, chunk_floats);
    for (index, chunk_grad) in grad.chunks_mut(chunk * geometry.image_len()).enumerate() {
        let (start, n) = (
            index * chunk,
            chunk_grad.len() / geometry.image_len().max(1),
        );
        // [taps, c_out] x [c_out, n*l]
        let rows = output_grad_rows(grads, c_out, geometry.pixels(), start, n);
        let cols = Flex::float_matmul(weight_t.clone(), rows);
        let cols = cols.to_contiguous();
        let cols: &[f32] = cols.as_slice().expect("a contiguous f32 tensor");
        chunk_grad
            .par_chunks_mut(geometry.image_len())
            .enumerate()
            .for_each(|(i, image_grad)| geometry.col2im(cols, n, i, image_grad));
    }
    FlexTensor::from_data(TensorData::new(grad, input_shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::host_random;
    use burn::tensor::{Bool, Distribution, Int, Tensor, TensorPrimitive};

    type T4 = Tensor<Flex, 4>;

    fn primitive(t: T4) -> FlexTensor {
        t.into_primitive().tensor()
    }

    fn tensor(t: FlexTensor) -> T4 {
        T4::from_primitive(TensorPrimitive::Float(t))
    }

    #[test]
    fn gradients_equal_burns_on_odd_shapes_strides_layouts_and_chunks() {
        let dev = Default::default();
        // (batch, c_in, c_out, h, w, kernel, stride, padding, dilation)
        let cases = [
            (3, 1, 4, 9, 7, [3, 3], [1, 1], [1, 1], [1, 1]),
            (5, 3, 6, 11, 8, [3, 2], [2, 1], [0, 2], [1, 1]),
            (4, 2, 5, 10, 10, [3, 3], [1, 2], [2, 1], [2, 2]),
            (2, 4, 3, 12, 12, [4, 4], [4, 4], [0, 0], [1, 1]),
        ];
        for (batch, c_in, c_out, h, w, kernel, stride, padding, dilation) in cases {
            let options = ConvOptions::new(stride, padding, dilation, 1);
            let seed = (batch * 100 + c_in * 10 + c_out) as u64;
            let x = host_random([batch, c_in, h, w], Distribution::Default, seed, &dev);
            let weight = host_random(
                [c_out, c_in, kernel[0], kernel[1]],
                Distribution::Default,
                seed + 1,
                &dev,
            );
            let y = burn::tensor::module::conv2d(x.clone(), weight.clone(), None, options.clone());
            let dy = host_random(y.dims(), Distribution::Normal(0.0, 1.0), seed + 2, &dev);
            let args = || {
                let [x, w, dy] = [&x, &weight, &dy].map(|t| primitive(t.clone()));
                (x, w, dy, options.clone())
            };
            let (a, b, c, d) = args();
            let weight_ref = tensor(Flex::conv2d_weight_backward(a, b, c, d));
            let (a, b, c, d) = args();
            let x_ref = tensor(Flex::conv2d_x_backward(a, b, c, d));
            // Non-contiguous input, weight and output gradient (channels-last storage seen as
            // NCHW); chunks of one image, two images, and the whole batch.
            let channels_last = |t: T4| {
                primitive(
                    T4::from_data(t.permute([0, 2, 3, 1]).into_data(), &dev).permute([0, 3, 1, 2]),
                )
            };
            let [x_s, w_s, dy_s] = [&x, &weight, &dy].map(|t| channels_last(t.clone()));
            assert!(!x_s.is_contiguous() && !dy_s.is_contiguous());
            let per_image = y.dims()[2] * y.dims()[3] * c_in * kernel[0] * kernel[1];
            for chunk_floats in [1, 2 * per_image, usize::MAX] {
                let weight_grad = tensor(conv2d_weight_grad_f32(
                    &x_s,
                    weight.shape(),
                    &dy_s,
                    &options,
                    chunk_floats,
                ));
                let x_grad = tensor(conv2d_x_grad_f32(
                    x.shape(),
                    &w_s,
                    &dy_s,
                    &options,
                    chunk_floats,
                ));
                for (what, got, want) in
                    [("weight", weight_grad, &weight_ref), ("x", x_grad, &x_ref)]
                {
                    let scale = want.clone().abs().max().into_scalar();
                    let err = (got - want.clone()).abs().max().into_scalar();
                    assert!(
                        scale > 0.1 && err <= 1e-5 * scale,
                        "{what} gradient, kernel {kernel:?} stride {stride:?}: {err} of {scale}"
                    );
                }
            }
        }
    }

    /// A `[shape]` f32 tensor of `N(0, 2^2)` values drawn from a generator seeded with `seed`.
    fn normal<const D: usize>(shape: [usize; D], seed: u64) -> FlexTensor {
        host_random::<Flex, D>(
            shape,
            Distribution::Normal(0.0, 2.0),
            seed,
            &Default::default(),
        )
        .into_primitive()
        .tensor()
    }

    /// Runs `kernel` with [`math::widest`] held to each instruction set the CPU executes and
    /// asserts that every output tensor has the baseline's bits.
    fn assert_same_bits_on_every_instruction_set(what: &str, kernel: impl Fn() -> Vec<FlexTensor>) {
        let runs = math::tests::on_each_instruction_set(|| {
            kernel()
                .into_iter()
                .map(|t| {
                    let values = t.into_data().to_vec::<f32>().expect("f32 outputs");
                    values.into_iter().map(f32::to_bits).collect::<Vec<u32>>()
                })
                .collect::<Vec<_>>()
        });
        let (_, baseline) = &runs[0];
        for (set, bits) in &runs[1..] {
            assert!(
                bits == baseline,
                "{what}: {set:?} differs from the baseline"
            );
        }
    }

    #[test]
    fn gelu_and_layer_norm_give_the_same_bits_on_every_instruction_set() {
        // More than one element-wise chunk, odd lengths.
        let (x, g) = (normal([3, 7001], 1), normal([3, 7001], 2));
        for tanh in [false, true] {
            assert_same_bits_on_every_instruction_set(&format!("GELU (tanh: {tanh})"), || {
                vec![
                    Flex::fused_gelu(x.clone(), tanh),
                    Flex::fused_gelu_backward(x.clone(), g.clone(), tanh),
                ]
            });
        }
        // 150 rows of 37: three tasks of rows.
        let (x, gamma, dy) = (normal([150, 37], 3), normal([37], 4), normal([150, 37], 5));
        assert_same_bits_on_every_instruction_set("layer norm backward", || {
            Flex::fused_layer_norm_backward(x.clone(), gamma.clone(), dy.clone(), 1e-5).into()
        });
    }

    #[test]
    fn attention_and_cross_entropy_give_the_same_bits_on_every_instruction_set() {
        let dev = Default::default();
        // [batch, heads, seq, d_head]; 21 keys: one full vector of 16 lanes and a remainder.
        let [batch, heads, seq, d_head] = [2, 3, 21, 24];
        let [q, k, v] = [6, 7, 8].map(|seed| normal([batch, heads, seq, d_head], seed));
        let up = normal([batch, seq, heads * d_head], 9);
        let padding: Vec<bool> = (0..batch * seq)
            .map(|i| i % seq >= seq - 4 * (i / seq))
            .collect();
        let keep = (0..batch * heads * seq * seq).map(|i| if i % 5 == 2 { 0.0 } else { 1.25 });
        let masks = |masked: bool| AttentionMasks::<Flex> {
            padding: masked.then(|| {
                let padding = TensorData::new::<bool, _>(padding.clone(), [batch, seq]);
                Tensor::<Flex, 2, Bool>::from_data(padding, &dev).into_primitive()
            }),
            causal_offset: masked.then_some(0),
            dropout: masked.then(|| {
                let keep =
                    TensorData::new(keep.clone().collect::<Vec<f32>>(), [batch, heads, seq, seq]);
                Tensor::<Flex, 4>::from_data(keep, &dev)
                    .into_primitive()
                    .tensor()
            }),
        };
        for masked in [false, true] {
            assert_same_bits_on_every_instruction_set(
                &format!("attention (masked: {masked})"),
                || {
                    let [dq, dk, dv] = Flex::fused_attention_backward(
                        q.clone(),
                        k.clone(),
                        v.clone(),
                        masks(masked),
                        up.clone(),
                    );
                    let out = Flex::fused_attention(q.clone(), k.clone(), v.clone(), masks(masked));
                    vec![out, dq, dk, dv]
                },
            );
        }
        // 40 rows of 1,001 classes, every third row ignored.
        let logits = normal([40, 1001], 10);
        let targets: Vec<i64> = (0..40)
            .map(|i| if i % 3 == 0 { -100 } else { i * 23 })
            .collect();
        let targets = Tensor::<Flex, 1, Int>::from_data(TensorData::new(targets, [40]), &dev);
        let grad = normal([1], 11);
        assert_same_bits_on_every_instruction_set("cross-entropy", || {
            let targets = targets.clone().into_primitive();
            vec![
                Flex::fused_cross_entropy(logits.clone(), targets.clone()),
                Flex::fused_cross_entropy_backward(logits.clone(), targets, grad.clone()),
            ]
        });
    }
}
