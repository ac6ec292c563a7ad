//! Scaling-law fits of measured losses.
//!
//! - Chinchilla's parametric form `L(N, D) = E + A / N^alpha + B / D^beta` (Hoffmann et al.
//!   2022, appendix D.2): `log L` is fitted as `LSE(a - alpha log N, b - beta log D, e)` with a
//!   Huber loss (delta 1e-3) by L-BFGS (`argmin`) from a grid of starting points, the best
//!   kept; `A = e^a`, `B = e^b`, `E = e^e`. Bootstrap resamples of the runs give percentile
//!   intervals for `alpha` and `beta`.
//! - IsoFLOP parabolas: at each compute budget, loss against `ln N` fitted by a parabola whose
//!   vertex is the compute-optimal size `N_opt(C)`; `ln N_opt` against `ln C` by least squares
//!   gives the exponent `a` of `N_opt ~ C^a`.

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ScalingError};

/// Huber threshold on log-loss residuals (Chinchilla's).
pub const HUBER_DELTA: f64 = 1e-3;

/// Parameters of the parametric form; the fit needs more runs than this.
pub const PARAMETRIC_PARAMS: usize = 5;

/// One measured run: parameters `n`, training tokens (or images) `d`, final loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Parameters (non-embedding for a language model).
    pub n: f64,
    /// Training samples seen (tokens, or images).
    pub d: f64,
    /// Final held-out loss (must be positive).
    pub loss: f64,
}

/// `L(N, D) = E + A / N^alpha + B / D^beta`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParametricLaw {
    /// Irreducible loss.
    pub e: f64,
    /// Size term's coefficient.
    pub a: f64,
    /// Size exponent.
    pub alpha: f64,
    /// Data term's coefficient.
    pub b: f64,
    /// Data exponent.
    pub beta: f64,
}

impl ParametricLaw {
    /// The predicted loss at `n` parameters and `d` tokens.
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }

    /// The compute-optimal exponent of size, `N_opt ~ C^(beta / (alpha + beta))`.
    pub fn size_exponent(&self) -> f64 {
        self.beta / (self.alpha + self.beta)
    }

    /// The loss-minimizing size for `flops` when training costs `C = k N D` (Chinchilla's
    /// closed form; `k = 6` for a language model's `6 N D`).
    pub fn optimal_size(&self, flops: f64, k: f64) -> f64 {
        let g = (self.alpha * self.a / (self.beta * self.b)).powf(1.0 / (self.alpha + self.beta));
        g * (flops / k).powf(self.size_exponent())
    }

    fn from_raw(x: &[f64]) -> Self {
        Self {
            a: x[0].exp(),
            alpha: x[1],
            b: x[2].exp(),
            beta: x[3],
            e: x[4].exp(),
        }
    }
}

/// The parametric fit with its bootstrap intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParametricFit {
    /// The fitted law (all runs).
    pub law: ParametricLaw,
    /// Huber objective at the optimum.
    pub objective: f64,
    /// Runs fitted.
    pub points: usize,
    /// 95% bootstrap interval of `alpha`.
    pub alpha_interval: (f64, f64),
    /// 95% bootstrap interval of `beta`.
    pub beta_interval: (f64, f64),
    /// Bootstrap resamples whose fit converged.
    pub resamples: usize,
}

/// The Huber objective over log-losses, with its gradient (parameters `a, alpha, b, beta, e`).
struct HuberLogLoss<'a> {
    points: &'a [Point],
}

impl HuberLogLoss<'_> {
    /// Objective and gradient at `x`.
    fn evaluate(&self, x: &[f64]) -> (f64, [f64; 5]) {
        let (a, alpha, b, beta, e) = (x[0], x[1], x[2], x[3], x[4]);
        let mut total = 0.0;
        let mut grad = [0.0; 5];
        for p in self.points {
            let (log_n, log_d) = (p.n.ln(), p.d.ln());
            let terms = [a - alpha * log_n, b - beta * log_d, e];
            let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights = terms.map(|t| (t - top).exp());
            let sum: f64 = weights.iter().sum();
            let lse = top + sum.ln();
            let r = lse - p.loss.ln();
            let (value, slope) = if r.abs() <= HUBER_DELTA {
                (0.5 * r * r, r)
            } else {
                (
                    HUBER_DELTA * (r.abs() - 0.5 * HUBER_DELTA),
                    HUBER_DELTA * r.signum(),
                )
            };
            total += value;
            let w = weights.map(|w| w / sum);
            grad[0] += slope * w[0];
            grad[1] -= slope * w[0] * log_n;
            grad[2] += slope * w[1];
            grad[3] -= slope * w[1] * log_d;
            grad[4] += slope * w[2];
        }
        (total, grad)
    }
}

impl CostFunction for HuberLogLoss<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Self::Param) -> std::result::Result<f64, ArgminError> {
        Ok(self.evaluate(x).0)
    }
}

impl Gradient for HuberLogLoss<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, x: &Self::Param) -> std::result::Result<Vec<f64>, ArgminError> {
        Ok(self.evaluate(x).1.to_vec())
    }
}

/// L-BFGS from `start`; the best parameters and objective, `None` when the solver fails.
fn minimize(points: &[Point], start: &[f64]) -> Option<(Vec<f64>, f64)> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 7)
        .with_tolerance_grad(1e-10)
        .ok()?
        .with_tolerance_cost(1e-14)
        .ok()?;
    let result = Executor::new(HuberLogLoss { points }, solver)
        .configure(|state| state.param(start.to_vec()).max_iters(200))
        .run()
        .ok()?;
    let state = result.state();
    let best = state.get_best_param()?.clone();
    let cost = state.get_best_cost();
    (cost.is_finite() && best.iter().all(|v| v.is_finite())).then_some((best, cost))
}

/// Chinchilla's grid of starting points, coarsened (3 values per parameter, 243 starts).
fn starts() -> Vec<Vec<f64>> {
    let mut all = Vec::new();
    for a in [0.0, 5.0, 10.0] {
        for alpha in [0.1, 0.5, 1.0] {
            for b in [0.0, 5.0, 10.0] {
                for beta in [0.1, 0.5, 1.0] {
                    for e in [-1.0, 0.0, 1.0] {
                        all.push(vec![a, alpha, b, beta, e]);
                    }
                }
            }
        }
    }
    all
}

/// The best of L-BFGS runs from each of `starts`.
fn best_of(points: &[Point], starts: &[Vec<f64>]) -> Option<(Vec<f64>, f64)> {
    starts
        .iter()
        .filter_map(|s| minimize(points, s))
        .min_by(|x, y| x.1.total_cmp(&y.1))
}

fn check_points(points: &[Point], needed: usize, what: &str) -> Result<()> {
    if points.len() < needed {
        return Err(ScalingError::TooFewPoints {
            fit: what.to_string(),
            needed,
            have: points.len(),
        });
    }
    if let Some(p) = points
        .iter()
        .find(|p| !(p.n > 0.0 && p.d > 0.0 && p.loss > 0.0 && p.loss.is_finite()))
    {
        return Err(ScalingError::Fit(format!(
            "{what}: a run with N = {}, D = {}, loss {} (all must be positive and finite)",
            p.n, p.d, p.loss
        )));
    }
    Ok(())
}

/// Fits the parametric form to `points` (at least [`PARAMETRIC_PARAMS`] + 1 runs) and
/// bootstraps `resamples` times with `seed`.
pub fn fit_parametric(points: &[Point], resamples: usize, seed: u64) -> Result<ParametricFit> {
    check_points(points, PARAMETRIC_PARAMS + 1, "the parametric fit")?;
    let (x, objective) = best_of(points, &starts()).ok_or_else(|| {
        ScalingError::Fit("the parametric fit did not converge from any start".into())
    })?;
    let law = ParametricLaw::from_raw(&x);
    // Resamples start from the full fit and a few grid points: a resample is a perturbation.
    let restarts: Vec<Vec<f64>> = std::iter::once(x.clone())
        .chain(starts().into_iter().step_by(61))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut alphas = Vec::new();
    let mut betas = Vec::new();
    for _ in 0..resamples {
        let sample: Vec<Point> = (0..points.len())
            .map(|_| points[rng.random_range(0..points.len())])
            .collect();
        if let Some((x, _)) = best_of(&sample, &restarts) {
            alphas.push(x[1]);
            betas.push(x[3]);
        }
    }
    Ok(ParametricFit {
        law,
        objective,
        points: points.len(),
        alpha_interval: interval(&mut alphas).unwrap_or((law.alpha, law.alpha)),
        beta_interval: interval(&mut betas).unwrap_or((law.beta, law.beta)),
        resamples: alphas.len(),
    })
}

/// The 2.5th and 97.5th percentiles of `values`.
fn interval(values: &mut [f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// A parabola `loss = c0 + c1 x + c2 x^2` in `x = ln N` at one compute budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopParabola {
    /// The compute budget (FLOPs).
    pub flops: f64,
    /// Coefficients `c0, c1, c2`.
    pub coefficients: [f64; 3],
    /// The vertex's size, when the parabola opens upward.
    pub optimal_size: Option<f64>,
}

impl IsoFlopParabola {
    /// The parabola's loss at `n` parameters.
    pub fn loss(&self, n: f64) -> f64 {
        let x = n.ln();
        self.coefficients[0] + self.coefficients[1] * x + self.coefficients[2] * x * x
    }
}

/// IsoFLOP parabolas and the exponent of `N_opt ~ C^a` they give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopFit {
    /// One parabola per budget with at least three sizes.
    pub parabolas: Vec<IsoFlopParabola>,
    /// `a` and `ln k` of `N_opt = k C^a`, from the budgets whose parabola has a minimum (at
    /// least two).
    pub exponent: Option<(f64, f64)>,
}

/// Least-squares polynomial of degree `DEG - 1` through `(x, y)` (normal equations; `DEG` is
/// at most 3 here, where their conditioning is fine on centred data).
fn polyfit<const DEG: usize>(xy: &[(f64, f64)]) -> Option<[f64; DEG]> {
    let mut m = [[0.0; DEG]; DEG];
    let mut v = [0.0; DEG];
    for &(x, y) in xy {
        let powers: [f64; DEG] = std::array::from_fn(|i| x.powi(i as i32));
        for i in 0..DEG {
            v[i] += powers[i] * y;
            for j in 0..DEG {
                m[i][j] += powers[i] * powers[j];
            }
        }
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..DEG {
        let pivot = (col..DEG).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..DEG {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (value, p) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *value -= f * p;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0; DEG];
    for row in (0..DEG).rev() {
        let rest: f64 = (row + 1..DEG).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - rest) / m[row][row];
    }
    Some(x)
}

/// IsoFLOP parabolas of `(flops, n, loss)` runs grouped by budget.
pub fn fit_isoflop(runs: &[(f64, f64, f64)]) -> IsoFlopFit {
    let mut budgets: Vec<f64> = runs.iter().map(|r| r.0).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let mut parabolas = Vec::new();
    for flops in budgets {
        let xy: Vec<(f64, f64)> = runs
            .iter()
            .filter(|r| r.0 == flops)
            .map(|r| (r.1.ln(), r.2))
            .collect();
        if xy.len() < 3 {
            continue;
        }
        // Centred for conditioning, then shifted back.
        let mean = xy.iter().map(|p| p.0).sum::<f64>() / xy.len() as f64;
        let centred: Vec<(f64, f64)> = xy.iter().map(|&(x, y)| (x - mean, y)).collect();
        let Some([c0, c1, c2]) = polyfit::<3>(&centred) else {
            continue;
        };
        let coefficients = [c0 - c1 * mean + c2 * mean * mean, c1 - 2.0 * c2 * mean, c2];
        let optimal_size = (c2 > 0.0).then(|| (mean - c1 / (2.0 * c2)).exp());
        parabolas.push(IsoFlopParabola {
            flops,
            coefficients,
            optimal_size,
        });
    }
    let optima: Vec<(f64, f64)> = parabolas
        .iter()
        .filter_map(|p| Some((p.flops.ln(), p.optimal_size?.ln())))
        .collect();
    let exponent = if optima.len() >= 2 {
        polyfit::<2>(&optima).map(|[intercept, slope]| (slope, intercept))
    } else {
        None
    };
    IsoFlopFit {
        parabolas,
        exponent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretrain::data::rng::standard_normal;

    /// Chinchilla's published fit (Hoffmann et al. 2022, eq. 10).
    const CHINCHILLA: ParametricLaw = ParametricLaw {
        e: 1.69,
        a: 406.4,
        alpha: 0.34,
        b: 410.7,
        beta: 0.28,
    };

    fn synthetic(law: &ParametricLaw, noise: f64, seed: u64) -> Vec<Point> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut points = Vec::new();
        for n in [1e6, 3e6, 1e7, 3e7, 1e8, 3e8] {
            for d in [1e8, 1e9, 1e10, 1e11] {
                let loss = law.loss(n, d) * (1.0 + noise * standard_normal(&mut rng) as f64);
                points.push(Point { n, d, loss });
            }
        }
        points
    }

    #[test]
    fn the_parametric_fit_recovers_known_exponents_from_noisy_losses() {
        let points = synthetic(&CHINCHILLA, 0.005, 3);
        let fit = fit_parametric(&points, 40, 1).unwrap();
        let law = fit.law;
        assert!((law.alpha - 0.34).abs() < 0.05, "{law:?}");
        assert!((law.beta - 0.28).abs() < 0.05, "{law:?}");
        assert!((law.e - 1.69).abs() < 0.1, "{law:?}");
        // Predictions within 2% everywhere on the grid.
        for p in &points {
            let rel = (law.loss(p.n, p.d) / CHINCHILLA.loss(p.n, p.d) - 1.0).abs();
            assert!(rel < 0.02, "{p:?}: {rel}");
        }
        assert!(fit.resamples >= 35, "{}", fit.resamples);
        let (lo, hi) = fit.alpha_interval;
        assert!(
            lo <= law.alpha && law.alpha <= hi && hi - lo < 0.3,
            "{lo} {hi}"
        );
        let (lo, hi) = fit.beta_interval;
        assert!(
            lo <= law.beta && law.beta <= hi && hi - lo < 0.3,
            "{lo} {hi}"
        );
    }

    #[test]
    fn noiseless_losses_are_fitted_exactly() {
        let points = synthetic(&CHINCHILLA, 0.0, 0);
        let law = fit_parametric(&points, 0, 0).unwrap().law;
        assert!((law.alpha - 0.34).abs() < 1e-3, "{law:?}");
        assert!((law.beta - 0.28).abs() < 1e-3, "{law:?}");
        assert!((law.e - 1.69).abs() < 1e-2, "{law:?}");
        assert!((CHINCHILLA.size_exponent() - 0.4516).abs() < 1e-3);
    }

    #[test]
    fn too_few_or_non_positive_points_are_refused() {
        let points = synthetic(&CHINCHILLA, 0.0, 0);
        let err = fit_parametric(&points[..5], 0, 0).unwrap_err().to_string();
        assert!(
            err.contains("needs at least 6 runs") && err.contains("has 5"),
            "{err}"
        );
        let mut bad = points.clone();
        bad[2].loss = f64::NAN;
        let err = fit_parametric(&bad, 0, 0).unwrap_err().to_string();
        assert!(err.contains("loss NaN"), "{err}");
    }

    #[test]
    fn isoflop_parabolas_find_the_compute_optimal_size() {
        // Under C = 6 N D, the parametric law's minimum over N at each budget.
        let mut runs = Vec::new();
        let budgets = [1e18, 1e19, 1e20];
        for &c in &budgets {
            for k in -4..=4 {
                let n = CHINCHILLA.optimal_size(c, 6.0) * 2f64.powf(k as f64 * 0.5);
                runs.push((c, n, CHINCHILLA.loss(n, c / (6.0 * n))));
            }
        }
        let fit = fit_isoflop(&runs);
        assert_eq!(fit.parabolas.len(), 3);
        for p in &fit.parabolas {
            let found = p.optimal_size.unwrap();
            let truth = CHINCHILLA.optimal_size(p.flops, 6.0);
            // A parabola in ln N approximates the true curve: its vertex within 20%.
            assert!((found / truth - 1.0).abs() < 0.2, "{found} vs {truth}");
        }
        let (a, _) = fit.exponent.unwrap();
        assert!((a - CHINCHILLA.size_exponent()).abs() < 0.03, "{a}");
    }

    #[test]
    fn polyfit_solves_exact_systems() {
        let xy: Vec<(f64, f64)> = (0..5)
            .map(|i| {
                let x = i as f64 - 2.0;
                (x, 1.0 - 2.0 * x + 0.5 * x * x)
            })
            .collect();
        let [c0, c1, c2] = polyfit::<3>(&xy).unwrap();
        assert!((c0 - 1.0).abs() < 1e-9 && (c1 + 2.0).abs() < 1e-9 && (c2 - 0.5).abs() < 1e-9);
        assert!(polyfit::<3>(&xy[..1]).is_none());
    }
}
