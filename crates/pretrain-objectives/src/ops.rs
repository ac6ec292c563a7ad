//! Tensor building blocks shared by the losses, written to match PyTorch's definitions
//! (`F.normalize`, `F.cross_entropy` with `ignore_index`, `F.cosine_similarity`).

use burn::tensor::{Bool, Int, Tensor, TensorData};
use pretrain_models::FusedBackend;
/// Mean cross-entropy with PyTorch's `ignore_index` semantics (every negative target skipped),
/// fused on backends that have it.
pub use pretrain_models::fused::cross_entropy;

/// Rows scaled to unit L2 norm, `x / max(||x||, 1e-12)` like `F.normalize`: `[n, d] -> [n, d]`.
///
/// The clamp comes before the square root so a zero row (a dead ReLU layer can produce one)
/// gets a zero gradient instead of `inf * 0 = NaN`.
pub fn l2_normalize<B: FusedBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).clamp_min(1e-24).sqrt(); // [n, 1]
    x / norm
}

/// Row-wise cosine similarity of `a` and `b`: `[n, d], [n, d] -> [n]`.
pub fn cosine_similarity<B: FusedBackend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = a.dims()[0];
    (l2_normalize(a) * l2_normalize(b)).sum_dim(1).reshape([n])
}

/// Share of the counted rows (target >= 0) whose arg-max equals the target: `[1]`.
pub fn accuracy<B: FusedBackend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    let counted = targets.clone().greater_equal_elem(0).float();
    let hits = logits
        .argmax(1)
        .reshape([n])
        .equal(targets)
        .float()
        .mul(counted.clone());
    hits.sum() / counted.sum().clamp_min(1.0)
}

/// `[n, n]` boolean identity: true on the diagonal.
pub fn eye_mask<B: FusedBackend>(n: usize, device: &B::Device) -> Tensor<B, 2, Bool> {
    let data: Vec<bool> = (0..n * n).map(|i| i / n == i % n).collect();
    Tensor::from_data(TensorData::new(data, [n, n]), device)
}

/// Diagonal of a square matrix: `[d, d] -> [d]`.
pub fn diagonal<B: FusedBackend>(m: Tensor<B, 2>) -> Tensor<B, 1> {
    let d = m.dims()[0];
    let eye = eye_mask::<B>(d, &m.device()).float();
    (m * eye).sum_dim(1).reshape([d])
}

/// Sum of squares of the off-diagonal entries of a square matrix: `[1]`.
pub fn off_diagonal_square_sum<B: FusedBackend>(m: Tensor<B, 2>) -> Tensor<B, 1> {
    let total = m.clone().powi_scalar(2).sum();
    total - diagonal(m).powi_scalar(2).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    use crate::testing::TestBackend as B;

    #[test]
    fn zero_rows_normalize_with_finite_gradients() {
        use crate::testing::TestAutodiff as Ad;
        let x = Tensor::<Ad, 2>::from_data([[0.0, 0.0], [3.0, 4.0]], &Default::default())
            .require_grad();
        let grads = l2_normalize(x.clone()).sum().backward();
        let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
    }

    #[test]
    fn hand_computed_values() {
        let dev = Default::default();
        let x = Tensor::<B, 2>::from_data([[3.0, 4.0], [0.0, 0.0]], &dev);
        l2_normalize(x).into_data().assert_approx_eq::<f32>(
            &TensorData::from([[0.6, 0.8], [0.0, 0.0]]),
            Tolerance::default(),
        );
        // log-sum-exp of [0, ln 3] is ln 4; target 1 gives ln 4 - ln 3; the second row is ignored.
        let logits = Tensor::<B, 2>::from_data([[0.0, 3f32.ln()], [5.0, 0.0]], &dev);
        let targets = Tensor::<B, 1, Int>::from_data([1, -100], &dev);
        let ce: f32 = cross_entropy(logits.clone(), targets.clone()).into_scalar();
        assert!((ce - (4f32.ln() - 3f32.ln())).abs() < 1e-6, "{ce}");
        let acc: f32 = accuracy(logits.clone(), targets).into_scalar();
        assert_eq!(acc, 1.0);
        let none: f32 = cross_entropy(logits, Tensor::from_data([-100, -100], &dev)).into_scalar();
        assert_eq!(none, 0.0);
        let m = Tensor::<B, 2>::from_data([[1.0, 2.0], [3.0, 4.0]], &dev);
        assert_eq!(
            diagonal(m.clone()).into_data().to_vec::<f32>().unwrap(),
            vec![1.0, 4.0]
        );
        let off: f32 = off_diagonal_square_sum(m).into_scalar();
        assert_eq!(off, 13.0);
    }
}
