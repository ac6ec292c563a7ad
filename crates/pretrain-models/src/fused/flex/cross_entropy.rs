//! Flex's softmax cross-entropy with ignored rows: rows in parallel, one pass each way.

use burn::tensor::{Shape, TensorData, TensorMetadata};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::math;

/// Floats of logits per task (whole rows, at least one).
const TASK_FLOATS: usize = 1 << 14;

/// The logits `[n, classes]` as contiguous f32 values, the targets, and the rows per task.
fn rows(logits: &FlexTensor, targets: &FlexTensor) -> (FlexTensor, Vec<i64>, usize, usize) {
    let classes = logits.shape()[1];
    let targets: Vec<i64> = targets.clone().into_data().iter::<i64>().collect();
    if let Some(&bad) = targets.iter().find(|&&t| t >= classes as i64) {
        // Targets come from the tokenizers and data readers, which check them against the
        // vocabulary and class count; a bad one here is a bug, as in burn's `gather`.
        panic!("cross_entropy: target {bad} out of range for {classes} classes");
    }
    let per_task = (TASK_FLOATS / classes.max(1)).max(1);
    (logits.to_contiguous(), targets, classes, per_task)
}

/// `max` and `ln(sum(exp(x - max)))` of a row.
#[inline(always)]
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = math::max(row);
    (max, math::sum_of(row, |x| math::exp(x - max)).ln())
}

/// Counted rows (target >= 0), at least 1 (the mean of none is 0).
fn count(targets: &[i64]) -> f32 {
    targets.iter().filter(|&&t| t >= 0).count().max(1) as f32
}

/// Mean negative log-likelihood of the counted rows: `[1]`.
pub(super) fn cross_entropy_f32(logits: &FlexTensor, targets: &FlexTensor) -> FlexTensor {
    let (logits, targets, classes, per_task) = rows(logits, targets);
    let xs: &[f32] = logits.as_slice().expect("a contiguous f32 tensor");
    let total: f64 = if classes == 0 {
        0.0
    } else {
        xs.par_chunks(classes * per_task)
            .zip(targets.par_chunks(per_task))
            .map(|(rows, targets)| {
                let rows = rows.chunks_exact(classes).zip(targets);
                math::widest(
                    #[inline(always)]
                    || {
                        rows.filter(|(_, t)| **t >= 0)
                            .map(|(row, &t)| {
                                let (max, lse) = log_sum_exp(row);
                                f64::from(max + lse - row[t as usize])
                            })
                            .sum::<f64>()
                    },
                )
            })
            .sum()
    };
    let mean = (total / f64::from(count(&targets))) as f32;
    FlexTensor::from_data(TensorData::new(vec![mean], Shape::new([1])))
}

/// `(softmax(row) - onehot(target)) * grad / counted` on counted rows, zero on ignored ones:
/// `[n, classes]`.
pub(super) fn cross_entropy_backward_f32(
    logits: &FlexTensor,
    targets: &FlexTensor,
    output_grad: &FlexTensor,
) -> FlexTensor {
    let (logits, targets, classes, per_task) = rows(logits, targets);
    let xs: &[f32] = logits.as_slice().expect("a contiguous f32 tensor");
    let grad: f32 = output_grad
        .clone()
        .into_data()
        .iter::<f32>()
        .next()
        .unwrap_or(0.0);
    let scale = grad / count(&targets);
    let mut out = vec![0.0f32; xs.len()];
    if classes > 0 {
        out.par_chunks_mut(classes * per_task)
            .zip(
                xs.par_chunks(classes * per_task)
                    .zip(targets.par_chunks(per_task)),
            )
            .for_each(|(out, (rows, targets))| {
                let rows = out
                    .chunks_exact_mut(classes)
                    .zip(rows.chunks_exact(classes));
                math::widest(
                    #[inline(always)]
                    || {
                        for ((out, row), &t) in rows.zip(targets) {
                            if t < 0 {
                                continue;
                            }
                            let (max, lse) = log_sum_exp(row);
                            let shift = max + lse;
                            for (o, &x) in out.iter_mut().zip(row) {
                                *o = math::exp(x - shift) * scale;
                            }
                            out[t as usize] -= scale;
                        }
                    },
                )
            });
    }
    FlexTensor::from_data(TensorData::new(out, logits.shape()))
}
