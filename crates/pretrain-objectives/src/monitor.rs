//! Collapse monitors: statistics of a batch of embeddings that reveal a collapsed
//! representation (every input mapped to the same or a low-dimensional point).

use burn::tensor::{ElementConversion, Tensor};
use pretrain_models::FusedBackend;

use crate::objective::Metrics;

/// `loss` and the collapse monitor `embedding_std` of `embedding` (one row per sample or
/// token), both detached: the metrics every objective reports.
pub(crate) fn loss_and_collapse_metrics<B: FusedBackend>(
    loss: &Tensor<B, 1>,
    embedding: Tensor<B, 2>,
) -> Metrics {
    let mut metrics = Metrics::default();
    metrics.push_tensor("loss", loss.clone().detach());
    metrics.push(
        "embedding_std",
        f64::from(normalized_embedding_std(embedding.detach())),
    );
    metrics
}

/// Mean over dimensions of the per-dimension standard deviation of L2-normalized embeddings.
///
/// For `d`-dimensional embeddings spread uniformly on the sphere this is close to
/// `1 / sqrt(d)`; a collapsed encoder gives 0 (SimSiam's collapse indicator).
pub fn normalized_embedding_std<B: FusedBackend>(embeddings: Tensor<B, 2>) -> f32 {
    // [batch, dim]
    crate::ops::l2_normalize(embeddings)
        .var(0)
        .sqrt()
        .mean()
        .into_scalar()
        .elem::<f32>()
}

/// Effective rank (exponential of the entropy of the normalized eigenvalue spectrum) of the
/// embeddings' covariance; between 1 (collapsed to a line) and `dim`.
///
/// The eigenvalues come from a few sweeps of the cyclic Jacobi method on the host, which is
/// exact enough for a monitor and avoids a linear-algebra dependency.
pub fn effective_rank<B: FusedBackend>(embeddings: Tensor<B, 2>) -> f32 {
    let [n, d] = embeddings.dims();
    let centered = embeddings.clone() - embeddings.mean_dim(0);
    let cov = centered.clone().transpose().matmul(centered) / (n.max(2) - 1) as f64;
    let mut a: Vec<f64> = cov
        .into_data()
        .convert::<f64>()
        .to_vec()
        .unwrap_or_default();
    let eig = jacobi_eigenvalues(&mut a, d);
    let total: f64 = eig.iter().map(|v| v.max(0.0)).sum();
    if total <= 0.0 {
        return 1.0;
    }
    let entropy: f64 = eig
        .iter()
        .map(|v| v.max(0.0) / total)
        .filter(|p| *p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp() as f32
}

/// Eigenvalues of the symmetric `d x d` matrix `a` (row-major, overwritten).
fn jacobi_eigenvalues(a: &mut [f64], d: usize) -> Vec<f64> {
    for _sweep in 0..30 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        if off < 1e-20 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..d).map(|i| a[i * d + i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};
    use pretrain_models::init::host_random;

    use crate::testing::TestBackend as B;

    #[test]
    fn collapsed_embeddings_are_flagged() {
        let dev = Default::default();
        let spread = host_random::<B, 2>([512, 16], Distribution::Normal(0.0, 1.0), 0, &dev);
        let std = normalized_embedding_std(spread.clone());
        assert!((std - 0.25).abs() < 0.02, "{std}");
        let collapsed = Tensor::<B, 2>::ones([512, 16], &dev) + spread.clone() * 1e-4;
        assert!(normalized_embedding_std(collapsed.clone()) < 0.01);
        let rank = effective_rank(spread);
        assert!(rank > 14.0, "{rank}");
        assert!(effective_rank(collapsed) < 16.0);
    }

    #[test]
    fn effective_rank_of_known_spectra() {
        let dev = Default::default();
        // Points on two orthogonal axes with equal variance: rank 2 in 4 dimensions.
        let rows: Vec<f32> = (0..200)
            .flat_map(|i| {
                let s = if i % 2 == 0 { 1.0 } else { -1.0 };
                if i % 4 < 2 {
                    [s, 0.0, 0.0, 0.0]
                } else {
                    [0.0, s, 0.0, 0.0]
                }
            })
            .collect();
        let t = Tensor::<B, 2>::from_data(TensorData::new(rows, [200, 4]), &dev);
        assert!((effective_rank(t) - 2.0).abs() < 1e-3);
        let mut a = vec![2.0, 1.0, 1.0, 2.0];
        let mut eig = jacobi_eigenvalues(&mut a, 2);
        eig.sort_by(f64::total_cmp);
        assert!((eig[0] - 1.0).abs() < 1e-9 && (eig[1] - 3.0).abs() < 1e-9);
    }
}
