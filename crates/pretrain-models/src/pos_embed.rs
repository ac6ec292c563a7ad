//! Fixed 2-D sine-cosine position embeddings (MAE, MoCo v3).

use crate::fused::FusedBackend;
use burn::tensor::{Tensor, TensorData};

/// Embeddings `[1 + rows * columns, dim]` (`with_cls`) or `[rows * columns, dim]` for a patch
/// grid of `[rows, columns]`, row-major: half the channels encode the row, half the column,
/// each as sin/cos at geometric frequencies; the CLS position is zeros. `dim` must be a
/// multiple of 4.
pub fn sincos_2d([rows, columns]: [usize; 2], dim: usize, with_cls: bool) -> Vec<f32> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity((rows * columns + usize::from(with_cls)) * dim);
    if with_cls {
        out.extend(std::iter::repeat_n(0.0, dim));
    }
    for row in 0..rows {
        for col in 0..columns {
            // MAE's order: the first half encodes the column (w), the second the row (h).
            for pos in [col, row] {
                out.extend(omega.iter().map(|w| (pos as f64 * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos as f64 * w).cos() as f32));
            }
        }
    }
    out
}

/// [`sincos_2d`] as a `[1, tokens, dim]` tensor.
pub fn sincos_2d_tensor<B: FusedBackend>(
    grid: [usize; 2],
    dim: usize,
    with_cls: bool,
    device: &B::Device,
) -> Tensor<B, 3> {
    let tokens = grid[0] * grid[1] + usize::from(with_cls);
    Tensor::from_data(
        TensorData::new(sincos_2d(grid, dim, with_cls), [1, tokens, dim]),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_distinct_positions() {
        let e = sincos_2d([2, 2], 8, true);
        assert_eq!(e.len(), 5 * 8);
        assert!(e[..8].iter().all(|v| *v == 0.0));
        // Patch (row 0, col 1): column half sin(1 * 1), sin(1 * 0.01), then cosines.
        let p = &e[2 * 8..3 * 8];
        assert!((p[0] - 1f32.sin()).abs() < 1e-6 && (p[1] - 0.01f32.sin()).abs() < 1e-6);
        assert!((p[2] - 1f32.cos()).abs() < 1e-6 && p[4] == 0.0 && p[6] == 1.0);
        let rows: Vec<&[f32]> = e.chunks(8).skip(1).collect();
        for i in 0..4 {
            for j in i + 1..4 {
                assert_ne!(rows[i], rows[j]);
            }
        }
        // A 2 x 3 grid: row-major, the column in the first half, the row in the second.
        let wide = sincos_2d([2, 3], 8, false);
        assert_eq!(wide.len(), 6 * 8);
        let patch = &wide[5 * 8..6 * 8]; // row 1, column 2
        assert!((patch[0] - 2f32.sin()).abs() < 1e-6 && (patch[4] - 1f32.sin()).abs() < 1e-6);
    }
}
