//! Flex's scaled dot-product attention: one task per (sample, head), whose matmuls run through
//! `gemm` directly on the strided head views (the `[batch, seq, heads, d_head]` projections
//! seen as `[batch, heads, seq, d_head]`, never copied), with the masked softmax in between.
//!
//! burn-flex 0.21 runs attention as separate operations: a batched matmul, a division, a mask
//! fill, a softmax (five passes, one thread) and a second matmul, then the heads are merged with
//! a single-threaded strided copy; autodiff keeps their intermediate tensors. Here the weights of
//! one head live in a per-task scratch buffer and the backward pass recomputes them, so between
//! the passes memory holds no `[batch, heads, seq, keys]` tensor but dropout's keep factors
//! (when dropout is on).

use burn::tensor::{Shape, TensorData, TensorMetadata};
use burn_flex::FlexTensor;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::super::{AttentionMasks, MASKED_SCORE};
use super::math;
use burn::backend::Flex;

/// A 4-D f32 tensor's storage with its start offset and strides, in elements.
struct HeadView<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [usize; 4],
}

impl<'a> HeadView<'a> {
    /// `None` for a layout `gemm` cannot read in place (a negative stride, from a flip).
    fn of(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let strides: Vec<usize> = layout
            .strides()
            .iter()
            .map(|&s| usize::try_from(s).ok())
            .collect::<Option<_>>()?;
        Some(Self {
            data: t.storage::<f32>(),
            offset: layout.start_offset(),
            strides: strides.try_into().ok()?,
        })
    }

    /// Element `[b, h, 0, 0]`.
    fn head(&self, b: usize, h: usize) -> *const f32 {
        self.data[self.offset + b * self.strides[0] + h * self.strides[1]..].as_ptr()
    }

    /// Head `h` of sample `b` as a `[rows, d_head]` operand.
    fn mat(&self, b: usize, h: usize) -> Operand {
        Operand {
            ptr: self.head(b, h),
            row_stride: self.strides[2] as isize,
            col_stride: self.strides[3] as isize,
        }
    }

    /// Head `h` of sample `b` transposed, a `[d_head, rows]` operand.
    fn mat_t(&self, b: usize, h: usize) -> Operand {
        let m = self.mat(b, h);
        Operand {
            row_stride: m.col_stride,
            col_stride: m.row_stride,
            ..m
        }
    }
}

/// A strided matrix operand of [`matmul`]: element `[i, j]` at `ptr + i * row_stride +
/// j * col_stride`.
#[derive(Clone, Copy)]
struct Operand {
    ptr: *const f32,
    row_stride: isize,
    col_stride: isize,
}

impl Operand {
    /// A row-major `[rows, cols]` buffer (`transposed`: seen as `[cols, rows]`).
    fn row_major(ptr: *const f32, cols: usize, transposed: bool) -> Self {
        let (row_stride, col_stride) = (cols as isize, 1);
        if transposed {
            Self {
                ptr,
                row_stride: col_stride,
                col_stride: row_stride,
            }
        } else {
            Self {
                ptr,
                row_stride,
                col_stride,
            }
        }
    }
}

/// `dst [m, n] = scale * lhs [m, k] x rhs [k, n]` on one thread (the tasks are the parallelism),
/// `dst` row-major with row stride `dst_row_stride`.
///
/// # Safety
/// The operands must address `m x k`, `k x n` and `m x n` valid floats through their strides,
/// and `dst` must not overlap them or be written by another thread meanwhile.
unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    dst_row_stride: usize,
    lhs: Operand,
    rhs: Operand,
    scale: f32,
) {
    // SAFETY: forwarded from the caller; gemm's argument order is (column, row) strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            false,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            0.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// A pointer into an output buffer that the tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only the rows of its own (sample, head), see the callers.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Shapes and masks of one attention call.
struct Problem<'a> {
    batch: usize,
    heads: usize,
    seq: usize,
    keys: usize,
    d_head: usize,
    padding: Option<Vec<bool>>,
    causal_offset: Option<usize>,
    /// Dropout's keep factors, `[batch, heads, seq, keys]` contiguous.
    dropout: Option<FlexTensor>,
    q: HeadView<'a>,
    k: HeadView<'a>,
    v: HeadView<'a>,
}

impl<'a> Problem<'a> {
    fn new([q, k, v]: [&'a FlexTensor; 3], masks: &AttentionMasks<Flex>) -> Option<Self> {
        let [batch, heads, seq, d_head] = q.shape().dims::<4>();
        let keys = k.shape().dims::<4>()[2];
        let padding = masks
            .padding
            .as_ref()
            .map(|p| p.clone().into_data().iter::<bool>().collect());
        let dropout = masks.dropout.as_ref().map(FlexTensor::to_contiguous);
        if let Some(keep) = &dropout {
            keep.as_slice::<f32>()?;
        }
        Some(Self {
            batch,
            heads,
            seq,
            keys,
            d_head,
            padding,
            causal_offset: masks.causal_offset,
            dropout,
            q: HeadView::of(q)?,
            k: HeadView::of(k)?,
            v: HeadView::of(v)?,
        })
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d_head as f32).sqrt()
    }

    /// Sets `value` in row `i` of sample `b` (`[keys]`) where the query may not see the key:
    /// the keys after `offset + i` when causal, and the padded keys.
    #[inline(always)]
    fn fill_masked(&self, b: usize, i: usize, row: &mut [f32], value: f32) {
        if let Some(offset) = self.causal_offset {
            let first_future = (offset + i + 1).min(self.keys);
            row[first_future..].fill(value);
        }
        if let Some(padding) = &self.padding {
            let padded = &padding[b * self.keys..(b + 1) * self.keys];
            for (x, &padded) in row.iter_mut().zip(padded) {
                if padded {
                    *x = value;
                }
            }
        }
    }

    /// The attention weights of sample `b`, head `h` into `weights` (`[seq, keys]`, row-major):
    /// `q k^T / sqrt(d)`, masked keys set to [`MASKED_SCORE`], softmax over each row.
    fn weights(&self, b: usize, h: usize, weights: &mut [f32]) {
        // SAFETY: the views' strides and offsets come from valid layouts of these shapes, and
        // `weights` holds seq * keys floats.
        unsafe {
            matmul(
                [self.seq, self.keys, self.d_head],
                weights.as_mut_ptr(),
                self.keys,
                self.q.mat(b, h),
                self.k.mat_t(b, h),
                self.scale(),
            );
        }
        math::widest(
            #[inline(always)]
            || {
                for (i, row) in weights.chunks_exact_mut(self.keys).enumerate() {
                    self.fill_masked(b, i, row, MASKED_SCORE);
                    let max = math::max(row);
                    // Every masked score is the same constant: one exp for all of them (usually 0).
                    let masked_weight = (MASKED_SCORE - max).exp();
                    for score in row.iter_mut() {
                        *score = if *score == MASKED_SCORE {
                            masked_weight
                        } else {
                            math::exp(*score - max)
                        };
                    }
                    let inverse = 1.0 / math::sum(row);
                    row.iter_mut().for_each(|w| *w *= inverse);
                }
            },
        )
    }

    /// Dropout's keep factors of sample `b`, head `h` (`[seq, keys]`), if any.
    fn keep(&self, b: usize, h: usize) -> Option<&[f32]> {
        let keep: &[f32] = self.dropout.as_ref()?.as_slice().expect("checked in new");
        let len = self.seq * self.keys;
        let start = (b * self.heads + h) * len;
        Some(&keep[start..start + len])
    }

    /// `[batch, heads, rows, d_head]` stored as `[batch, rows, heads, d_head]` (the merged-heads
    /// layout), from that buffer.
    fn heads_tensor(&self, values: Vec<f32>, rows: usize) -> FlexTensor {
        let merged = TensorData::new(values, [self.batch, rows, self.heads, self.d_head]);
        FlexTensor::from_data(merged).transpose(1, 2)
    }
}

/// Forward pass: `[batch, seq, heads * d_head]`, or `None` when a layout cannot be read in place.
pub(super) fn attention_f32(
    qkv: [&FlexTensor; 3],
    masks: &AttentionMasks<Flex>,
) -> Option<FlexTensor> {
    let p = Problem::new(qkv, masks)?;
    let row = p.heads * p.d_head;
    let mut out = vec![0.0f32; p.batch * p.seq * row];
    let dst = SharedOut(out.as_mut_ptr());
    if !out.is_empty() && p.keys > 0 {
        (0..p.batch * p.heads).into_par_iter().for_each(|task| {
            let (b, h) = (task / p.heads, task % p.heads);
            let mut weights = vec![0.0f32; p.seq * p.keys];
            p.weights(b, h, &mut weights);
            if let Some(keep) = p.keep(b, h) {
                math::scale_by(&mut weights, keep);
            }
            // SAFETY: this task writes rows `b * seq .. (b + 1) * seq`, columns
            // `h * d_head .. (h + 1) * d_head` of `out` only.
            unsafe {
                matmul(
                    [p.seq, p.d_head, p.keys],
                    dst.get().add(b * p.seq * row + h * p.d_head),
                    row,
                    Operand::row_major(weights.as_ptr(), p.keys, false),
                    p.v.mat(b, h),
                    1.0,
                );
            }
        });
    }
    Some(FlexTensor::from_data(TensorData::new(
        out,
        Shape::new([p.batch, p.seq, row]),
    )))
}

/// Backward pass: the gradients of `q`, `k` and `v` given the output's (`[batch, seq, heads *
/// d_head]`), or `None` when a layout cannot be read in place.
pub(super) fn attention_backward_f32(
    qkv: [&FlexTensor; 3],
    masks: &AttentionMasks<Flex>,
    output_grad: &FlexTensor,
) -> Option<[FlexTensor; 3]> {
    let p = Problem::new(qkv, masks)?;
    let output_grad = output_grad.to_contiguous();
    let d_out: &[f32] = output_grad.as_slice()?;
    let row = p.heads * p.d_head;
    let mut d_q = vec![0.0f32; p.batch * p.seq * row];
    let mut d_k = vec![0.0f32; p.batch * p.keys * row];
    let mut d_v = vec![0.0f32; p.batch * p.keys * row];
    let dst = [&mut d_q, &mut d_k, &mut d_v].map(|d| SharedOut(d.as_mut_ptr()));
    if !d_q.is_empty() && p.keys > 0 {
        (0..p.batch * p.heads).into_par_iter().for_each(|task| {
            let (b, h) = (task / p.heads, task % p.heads);
            let [d_q, d_k, d_v] = dst;
            let mut weights = vec![0.0f32; p.seq * p.keys];
            let mut d_scores = vec![0.0f32; p.seq * p.keys];
            p.weights(b, h, &mut weights);
            let d_out = d_out[b * p.seq * row + h * p.d_head..].as_ptr();
            let head = |t: SharedOut, rows: usize| {
                // SAFETY: the start of this task's rows and columns in a merged-heads buffer.
                unsafe { t.get().add(b * rows * row + h * p.d_head) }
            };
            // SAFETY (every gemm below): the views come from valid layouts of these shapes, the
            // scratch buffers hold seq * keys floats, and this task writes only its own rows
            // and columns of the merged-heads gradients.
            unsafe {
                // The gradient of the dropped weights, dO V^T: [seq, keys].
                matmul(
                    [p.seq, p.keys, p.d_head],
                    d_scores.as_mut_ptr(),
                    p.keys,
                    Operand::row_major(d_out, row, false),
                    p.v.mat_t(b, h),
                    1.0,
                );
            }
            let keep = p.keep(b, h);
            // dP = (dO V^T) M; dS = P (dP - rowsum(P dP)) / sqrt(d), zero at masked keys (the
            // mask fill passes no gradient to them).
            let scale = p.scale();
            math::widest(
                #[inline(always)]
                || {
                    for (i, d_s) in d_scores.chunks_exact_mut(p.keys).enumerate() {
                        let w = &weights[i * p.keys..(i + 1) * p.keys];
                        if let Some(keep) = keep {
                            let keep = &keep[i * p.keys..(i + 1) * p.keys];
                            math::scale_by(d_s, keep);
                        }
                        let dot = math::dot(d_s, w);
                        for (g, &w) in d_s.iter_mut().zip(w) {
                            *g = w * (*g - dot) * scale;
                        }
                        p.fill_masked(b, i, d_s, 0.0);
                    }
                    // The dropped weights P M, for dV.
                    if let Some(keep) = keep {
                        math::scale_by(&mut weights, keep);
                    }
                },
            );
            unsafe {
                // dV = (P M)^T dO: [keys, d_head].
                matmul(
                    [p.keys, p.d_head, p.seq],
                    head(d_v, p.keys),
                    row,
                    Operand::row_major(weights.as_ptr(), p.keys, true),
                    Operand::row_major(d_out, row, false),
                    1.0,
                );
            }
            unsafe {
                // dQ = dS K: [seq, d_head].
                matmul(
                    [p.seq, p.d_head, p.keys],
                    head(d_q, p.seq),
                    row,
                    Operand::row_major(d_scores.as_ptr(), p.keys, false),
                    p.k.mat(b, h),
                    1.0,
                );
                // dK = dS^T Q: [keys, d_head].
                matmul(
                    [p.keys, p.d_head, p.seq],
                    head(d_k, p.keys),
                    row,
                    Operand::row_major(d_scores.as_ptr(), p.keys, true),
                    p.q.mat(b, h),
                    1.0,
                );
            }
        });
    }
    Some([
        p.heads_tensor(d_q, p.seq),
        p.heads_tensor(d_k, p.keys),
        p.heads_tensor(d_v, p.keys),
    ])
}
