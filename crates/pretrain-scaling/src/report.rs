//! A sweep's analysis and files: the fits of its runs, `scaling.json`, `scaling.md` and the
//! PNG plots. Whatever a fit cannot do (too few runs) is recorded as its error beside what the
//! sweep has; the files are written either way.

use std::fmt::Write as _;
use std::path::Path;

use pretrain_plot::{Axis, Chart, Corner, Mark, Series, draw};
use serde::{Deserialize, Serialize};

use crate::error::{Result, ScalingError};
use crate::fit::{IsoFlopFit, ParametricFit, Point, fit_isoflop, fit_parametric};
use crate::sweep::{Measure, RunRecord, Skipped, SweepRuns};

/// Kaplan et al. (2020) and Hoffmann et al. (2022), for comparison in the report:
/// `(source, alpha, beta, a)` with `a` the exponent of `N_opt ~ C^a`.
pub const PUBLISHED: [(&str, f64, f64, f64); 2] = [
    ("Kaplan et al. 2020", 0.076, 0.095, 0.73),
    ("Hoffmann et al. 2022 (Chinchilla)", 0.34, 0.28, 0.46),
];

/// One size at one budget: the best learning rate's loss, averaged over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The size's label.
    pub size: String,
    /// The compute budget.
    pub budget: f64,
    /// Non-embedding parameters.
    pub params: f64,
    /// Training samples (tokens, or images).
    pub samples: f64,
    /// FLOPs spent (shape count).
    pub flops: f64,
    /// The measure (mean over seeds of the best learning rate).
    pub loss: f64,
    /// The best learning rate.
    pub lr: f64,
    /// Seeds averaged.
    pub seeds: usize,
}

/// The parametric fit's prediction of the largest-compute point, fitted without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extrapolation {
    /// The held-out point's size.
    pub size: String,
    /// Its budget.
    pub budget: f64,
    /// Measured loss.
    pub measured: f64,
    /// Predicted loss.
    pub predicted: f64,
    /// `predicted / measured - 1`.
    pub relative_error: f64,
}

/// Everything `scaling.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingReport {
    /// The recipe swept.
    pub recipe: String,
    /// What the runs were measured by.
    pub measure: Measure,
    /// Every run.
    pub runs: Vec<RunRecord>,
    /// Points that did not run, with the reason.
    pub skipped: Vec<Skipped>,
    /// Per size and budget: the loss the fits use.
    pub points: Vec<SweepPoint>,
    /// Mean of `shape-count FLOPs / 6ND - 1` over the runs (language models).
    pub flops_vs_6nd: Option<f64>,
    /// Mean of `FLOPs / (N D)` over the runs: the `k` of `C = k N D` the compute-optimal
    /// frontier assumes (about 6 for a language model).
    pub flops_per_param_sample: Option<f64>,
    /// The parametric fit on every point.
    pub parametric: Option<ParametricFit>,
    /// Why there is no parametric fit.
    pub parametric_error: Option<String>,
    /// The largest-compute point predicted by a fit without it.
    pub extrapolation: Option<Extrapolation>,
    /// Why there is no extrapolation check.
    pub extrapolation_error: Option<String>,
    /// IsoFLOP parabolas and their exponent.
    pub isoflop: IsoFlopFit,
}

/// The points the fits use: per size and budget, the learning rate with the lowest mean loss
/// over its seeds.
fn points(runs: &[RunRecord]) -> Vec<SweepPoint> {
    let mut out: Vec<SweepPoint> = Vec::new();
    for run in runs {
        if out
            .iter()
            .any(|p| p.size == run.size && p.budget == run.budget)
        {
            continue;
        }
        let same = |r: &&RunRecord| r.size == run.size && r.budget == run.budget;
        let mut best: Option<SweepPoint> = None;
        for lr_run in runs.iter().filter(same) {
            let seeds: Vec<&RunRecord> = runs
                .iter()
                .filter(same)
                .filter(|r| r.lr == lr_run.lr)
                .collect();
            let loss = seeds.iter().map(|r| r.loss).sum::<f64>() / seeds.len() as f64;
            if best.as_ref().is_none_or(|b| loss < b.loss) {
                best = Some(SweepPoint {
                    size: run.size.clone(),
                    budget: run.budget,
                    params: run.cost.non_embedding_params as f64,
                    samples: run.samples as f64,
                    flops: run.flops,
                    loss,
                    lr: lr_run.lr,
                    seeds: seeds.len(),
                });
            }
        }
        out.extend(best);
    }
    out
}

fn fit_points(points: &[SweepPoint]) -> Vec<Point> {
    points
        .iter()
        .map(|p| Point {
            n: p.params,
            d: p.samples,
            loss: p.loss,
        })
        .collect()
}

/// Fits what `sweep` measured (`resamples` bootstrap resamples, seeded by `seed`).
pub fn analyze(
    recipe: &str,
    measure: Measure,
    sweep: &SweepRuns,
    resamples: usize,
    seed: u64,
) -> ScalingReport {
    let points = points(&sweep.runs);
    let fitted = fit_points(&points);
    let (parametric, parametric_error) = match fit_parametric(&fitted, resamples, seed) {
        Ok(fit) => (Some(fit), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (extrapolation, extrapolation_error) = match extrapolate(&points) {
        Ok(x) => (Some(x), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mean = |values: Vec<f64>| {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let flops_vs_6nd = mean(
        sweep
            .runs
            .iter()
            .filter_map(|r| Some(r.flops / r.kaplan_flops? - 1.0))
            .collect(),
    );
    let flops_per_param_sample = mean(
        sweep
            .runs
            .iter()
            .map(|r| r.flops / (r.cost.non_embedding_params as f64 * r.samples as f64))
            .collect(),
    );
    let isoflop = fit_isoflop(
        &points
            .iter()
            .map(|p| (p.budget, p.params, p.loss))
            .collect::<Vec<_>>(),
    );
    ScalingReport {
        recipe: recipe.to_string(),
        measure,
        runs: sweep.runs.clone(),
        skipped: sweep.skipped.clone(),
        points,
        flops_vs_6nd,
        flops_per_param_sample,
        parametric,
        parametric_error,
        extrapolation,
        extrapolation_error,
        isoflop,
    }
}

/// The largest-compute point predicted by the parametric fit of the others.
fn extrapolate(points: &[SweepPoint]) -> Result<Extrapolation> {
    let largest = points
        .iter()
        .max_by(|a, b| a.flops.total_cmp(&b.flops))
        .ok_or_else(|| ScalingError::Fit("no runs to extrapolate to".into()))?;
    let others: Vec<SweepPoint> = points
        .iter()
        .filter(|p| !std::ptr::eq(*p, largest))
        .cloned()
        .collect();
    let law = fit_parametric(&fit_points(&others), 0, 0)
        .map_err(|e| ScalingError::Fit(format!("without the largest-compute run, {e}")))?
        .law;
    let predicted = law.loss(largest.params, largest.samples);
    Ok(Extrapolation {
        size: largest.size.clone(),
        budget: largest.budget,
        measured: largest.loss,
        predicted,
        relative_error: predicted / largest.loss - 1.0,
    })
}

/// `scaling.json`, `scaling.md` and the plots in `dir`.
pub fn write(report: &ScalingReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ScalingError::io(dir, e))?;
    let json = dir.join("scaling.json");
    let text = serde_json::to_string_pretty(report).expect("reports serialize");
    std::fs::write(&json, text).map_err(|e| ScalingError::io(&json, e))?;
    let md = dir.join("scaling.md");
    std::fs::write(&md, markdown(report)).map_err(|e| ScalingError::io(&md, e))?;
    plots(report, dir)
}

/// The report as Markdown.
pub fn markdown(report: &ScalingReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Scaling sweep of `{}`\n", report.recipe);
    let _ = writeln!(
        s,
        "| size | budget (FLOPs) | params (non-emb.) | {} | FLOPs spent | best lr | seeds | {} \
         |\n|---|---|---|---|---|---|---|---|",
        report.measure.unit(),
        report.measure.name()
    );
    for p in &report.points {
        let _ = writeln!(
            s,
            "| {} | {:.2e} | {:.0} | {:.0} | {:.2e} | {:e} | {} | {:.4} |",
            p.size, p.budget, p.params, p.samples, p.flops, p.lr, p.seeds, p.loss
        );
    }
    for skip in &report.skipped {
        let budget = skip
            .budget
            .map_or("every budget".into(), |b| format!("{b:.2e}"));
        let _ = writeln!(s, "\nNot run: {} at {budget}: {}", skip.size, skip.reason);
    }
    if let Some(d) = report.flops_vs_6nd {
        let _ = writeln!(
            s,
            "\nFLOPs counted from the shapes are {:+.1}% of Kaplan's 6ND on average (attention \
             scores and the output projection, which 6ND leaves out).",
            100.0 * d
        );
    } else if let Some(k) = report.flops_per_param_sample {
        let _ = writeln!(
            s,
            "\nFLOPs counted from the shapes are {k:.1} N D on average (N non-embedding \
             parameters, D {}); Kaplan's 6ND describes language models only.",
            report.measure.unit()
        );
    }
    let _ = writeln!(
        s,
        "\n## Parametric fit: L(N, D) = E + A/N^alpha + B/D^beta\n"
    );
    match (&report.parametric, &report.parametric_error) {
        (Some(fit), _) => {
            let law = fit.law;
            let _ = writeln!(
                s,
                "E = {:.4}, A = {:.4}, alpha = {:.3} (95% bootstrap {:.3}..{:.3}), B = {:.4}, \
                 beta = {:.3} ({:.3}..{:.3}); {} runs, {} resamples; compute-optimal size \
                 exponent beta/(alpha+beta) = {:.3}.\n",
                law.e,
                law.a,
                law.alpha,
                fit.alpha_interval.0,
                fit.alpha_interval.1,
                law.b,
                law.beta,
                fit.beta_interval.0,
                fit.beta_interval.1,
                fit.points,
                fit.resamples,
                law.size_exponent()
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "Not fitted: {e}.\n");
        }
        (None, None) => {}
    }
    if report.measure != Measure::HeldOutBitsPerByte {
        let _ = writeln!(
            s,
            "The published values below are of language-model loss, for scale only.\n"
        );
    }
    let _ = writeln!(
        s,
        "| published | alpha | beta | N_opt ~ C^a |\n|---|---|---|---|"
    );
    for (source, alpha, beta, a) in PUBLISHED {
        let _ = writeln!(s, "| {source} | {alpha} | {beta} | {a} |");
    }
    match (&report.extrapolation, &report.extrapolation_error) {
        (Some(x), _) => {
            let _ = writeln!(
                s,
                "\nExtrapolation: fitted without the largest-compute run ({} at {:.2e}), the law \
                 predicts {:.4} against {:.4} measured ({:+.1}%).",
                x.size,
                x.budget,
                x.predicted,
                x.measured,
                100.0 * x.relative_error
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "\nNo extrapolation check: {e}.");
        }
        (None, None) => {}
    }
    let _ = writeln!(s, "\n## IsoFLOP parabolas\n");
    for p in &report.isoflop.parabolas {
        let swept = report
            .points
            .iter()
            .filter(|q| q.budget == p.flops)
            .map(|q| q.params);
        let (low, high) = swept.fold((f64::INFINITY, 0.0f64), |(lo, hi), n| {
            (lo.min(n), hi.max(n))
        });
        match p.optimal_size {
            Some(n) => {
                let outside = if (low..=high).contains(&n) {
                    ""
                } else {
                    " (outside the sizes swept: an extrapolation)"
                };
                let _ = writeln!(s, "- {:.2e} FLOPs: N_opt = {n:.3e}{outside}", p.flops);
            }
            None => {
                let _ = writeln!(s, "- {:.2e} FLOPs: no minimum inside the sizes", p.flops);
            }
        }
    }
    match report.isoflop.exponent {
        Some((a, _)) => {
            let _ = writeln!(s, "\nN_opt ~ C^{a:.3}");
        }
        None => {
            let _ = writeln!(
                s,
                "\nNo IsoFLOP exponent: it needs two budgets with at least three sizes and a \
                 minimum inside them."
            );
        }
    }
    s
}

/// The four plots: loss against parameters per budget, loss against compute with the fitted
/// frontier, the IsoFLOP parabolas, and the parametric fit's residuals.
fn plots(report: &ScalingReport, dir: &Path) -> Result<()> {
    let mut budgets: Vec<f64> = report.points.iter().map(|p| p.budget).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    let per_budget = |budget: f64| -> Vec<&SweepPoint> {
        let mut points: Vec<&SweepPoint> = report
            .points
            .iter()
            .filter(|p| p.budget == budget)
            .collect();
        points.sort_by(|a, b| a.params.total_cmp(&b.params));
        points
    };
    let measure = report.measure.name();
    let loss_axis = || Axis::log(&measure);
    let mut by_size = Vec::new();
    for &budget in &budgets {
        by_size.push(
            Series::line(
                format!("{budget:.1e} FLOPs"),
                per_budget(budget)
                    .iter()
                    .map(|p| (p.params, p.loss))
                    .collect(),
            )
            .with_mark(Mark::LineAndPoints),
        );
    }
    let chart = Chart::new(
        "Loss against model size, per compute budget",
        Axis::log("non-embedding parameters"),
        loss_axis(),
    );
    draw(&dir.join("loss-vs-params.png"), &chart, &by_size)?;

    let mut sizes: Vec<&str> = report.points.iter().map(|p| p.size.as_str()).collect();
    sizes.dedup();
    let mut by_compute: Vec<Series> = sizes
        .iter()
        .map(|size| {
            let mut points: Vec<(f64, f64)> = report
                .points
                .iter()
                .filter(|p| p.size == *size)
                .map(|p| (p.flops, p.loss))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series::line(*size, points).with_mark(Mark::LineAndPoints)
        })
        .collect();
    if let Some(fit) = &report.parametric {
        let (low, high) = report
            .points
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
                (lo.min(p.flops), hi.max(p.flops))
            });
        // The law's optimum under C = k N D, with the shape-counted k of the runs.
        let k = report.flops_per_param_sample.unwrap_or(6.0);
        let frontier = (0..=40)
            .map(|i| {
                let c = low * (high / low).powf(i as f64 / 40.0);
                let n = fit.law.optimal_size(c, k);
                (c, fit.law.loss(n, c / (k * n)))
            })
            .collect();
        by_compute.push(Series::line("fitted frontier", frontier));
    }
    let chart = Chart::new(
        "Loss against compute",
        Axis::log("training FLOPs"),
        loss_axis(),
    );
    draw(&dir.join("loss-vs-compute.png"), &chart, &by_compute)?;

    let mut isoflop = Vec::new();
    for (i, parabola) in report.isoflop.parabolas.iter().enumerate() {
        let points = per_budget(parabola.flops);
        let (low, high) = (points[0].params, points[points.len() - 1].params);
        let curve = (0..=30)
            .map(|i| {
                let n = low * (high / low).powf(i as f64 / 30.0);
                (n, parabola.loss(n))
            })
            .collect();
        // A budget's parabola and its runs in one color.
        isoflop
            .push(Series::line(format!("{:.1e} FLOPs fit", parabola.flops), curve).with_color(i));
        isoflop.push(
            Series::line(
                format!("{:.1e} FLOPs runs", parabola.flops),
                points.iter().map(|p| (p.params, p.loss)).collect(),
            )
            .with_mark(Mark::Points)
            .with_color(i),
        );
    }
    let chart = Chart::new(
        "IsoFLOP curves",
        Axis::log("non-embedding parameters"),
        Axis::linear(&measure),
    );
    draw(&dir.join("isoflop.png"), &chart, &isoflop)?;

    let residuals = report.parametric.as_ref().map(|fit| {
        report
            .points
            .iter()
            .map(|p| (p.flops, fit.law.loss(p.params, p.samples) / p.loss - 1.0))
            .collect()
    });
    let chart = Chart::new(
        "Parametric fit: predicted / measured - 1",
        Axis::log("training FLOPs"),
        Axis::linear("relative residual"),
    )
    .with_legend(Corner::LowerRight);
    let series = [Series::line("runs", residuals.unwrap_or_default()).with_mark(Mark::Points)];
    draw(&dir.join("residuals.png"), &chart, &series)?;
    Ok(())
}
