//! The demo's PNG plots: test accuracy against labels per class for every method, and the
//! pre-training loss curves read back from each run's `metrics.jsonl`.

use std::path::Path;

use pretrain_plot::{Axis, Chart, Corner, Mark, Series, draw};
use pretrain_recipes::{RecipeError, Result};

use crate::run::DemoResult;

fn plot_error(e: pretrain_plot::PlotError) -> RecipeError {
    RecipeError::io(&e.path, format!("drawing the plot: {}", e.message))
}

/// Accuracy (%) against labels per class, one line per method and recipe. The budgets are
/// evenly spaced categories (`1`, `10`, `100`, `all`) so the all-labels point sits beside the
/// others; returns the series drawn.
pub fn accuracy_vs_labels(results: &[DemoResult], path: &Path) -> Result<Vec<Series>> {
    let mut budgets: Vec<Option<usize>> = Vec::new();
    for r in results {
        if !budgets.contains(&r.labels_per_class) {
            budgets.push(r.labels_per_class);
        }
    }
    budgets.sort_by_key(|b| b.unwrap_or(usize::MAX));
    let mut series: Vec<Series> = Vec::new();
    for r in results {
        let name = match &r.recipe {
            Some(recipe) => format!("{} ({recipe})", r.method),
            None => r.method.to_string(),
        };
        let x = budgets
            .iter()
            .position(|b| *b == r.labels_per_class)
            .expect("collected above") as f64;
        let point = (x, 100.0 * r.accuracy_mean);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series::line(name, vec![point]).with_mark(Mark::LineAndPoints)),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let labels: Vec<String> = budgets
        .iter()
        .map(|b| b.map_or("all".to_string(), |k| k.to_string()))
        .collect();
    let y_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(100.0f64, f64::min);
    let chart = Chart::new(
        "Fashion-MNIST test accuracy by labels per class",
        Axis::linear("labels per class")
            .with_range(-0.25, budgets.len().max(1) as f64 - 0.75)
            .with_categories(labels),
        Axis::linear("test accuracy (%)")
            .with_range((y_min - 5.0).clamp(0.0, 100.0).floor(), 100.0),
    )
    .with_legend(Corner::LowerRight);
    draw(path, &chart, &series).map_err(plot_error)?;
    Ok(series)
}

/// Pre-training loss against the step for each run (`(name, run directory)`), read from the
/// run's `metrics.jsonl` and smoothed over a window of `smooth` steps; returns the series drawn.
pub fn loss_curves(runs: &[(String, &Path)], smooth: usize, path: &Path) -> Result<Vec<Series>> {
    let mut series = Vec::new();
    for (name, run_dir) in runs {
        let metrics = run_dir.join("metrics.jsonl");
        let text = std::fs::read_to_string(&metrics).map_err(|e| RecipeError::io(&metrics, e))?;
        let mut raw = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = || RecipeError::io(&metrics, format!("line {}: no numeric step/loss", i + 1));
            let value: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| RecipeError::io(&metrics, format!("line {}: {e}", i + 1)))?;
            let step = value["step"].as_f64().ok_or_else(bad)?;
            let loss = value["loss"].as_f64().ok_or_else(bad)?;
            if loss.is_finite() {
                raw.push((step, loss));
            }
        }
        let window = smooth.max(1);
        let points = raw
            .iter()
            .enumerate()
            .map(|(i, &(step, _))| {
                let from = i.saturating_sub(window - 1);
                let span = &raw[from..=i];
                (
                    step,
                    span.iter().map(|p| p.1).sum::<f64>() / span.len() as f64,
                )
            })
            .collect();
        series.push(Series::line(name.clone(), points));
    }
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let chart = Chart::new(
        "Pre-training loss",
        Axis::linear("step").with_range(0.0, x_max),
        Axis::linear("loss (moving average)"),
    );
    draw(path, &chart, &series).map_err(plot_error)?;
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Method;
    use pretrain::data::Named;

    fn result(method: &str, recipe: Option<&str>, labels: Option<usize>, acc: f64) -> DemoResult {
        DemoResult {
            dataset: pretrain_recipes::BuiltinDataset::FashionMnist,
            method: Method::from_name(method).unwrap(),
            objective: None,
            recipe: recipe.map(str::to_string),
            labels_per_class: labels,
            accuracy_mean: acc,
            accuracy_std: 0.0,
            macro_f1_mean: acc,
            seeds: vec![0],
            seconds: 0.0,
        }
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let img = image::open(path).unwrap();
        (img.width(), img.height())
    }

    #[test]
    fn accuracy_plot_has_one_line_per_method_in_budget_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accuracy.png");
        let results = vec![
            result("raw-pixels-logreg", None, None, 0.84),
            result("raw-pixels-logreg", None, Some(1), 0.5),
            result("raw-pixels-logreg", None, Some(10), 0.7),
            result("pretrained-linear-probe", Some("simclr"), Some(10), 0.75),
            result("pretrained-linear-probe", Some("simclr"), Some(1), 0.625),
        ];
        let series = accuracy_vs_labels(&results, &path).unwrap();
        assert_eq!(series.len(), 2);
        // Budgets 1, 10, all at x = 0, 1, 2, whatever order the rows came in.
        assert_eq!(
            series[0].points,
            vec![(0.0, 50.0), (1.0, 70.0), (2.0, 84.0)]
        );
        assert_eq!(series[1].name, "pretrained-linear-probe (simclr)");
        assert_eq!(series[1].points, vec![(0.0, 62.5), (1.0, 75.0)]);
        assert_eq!(png_size(&path), (1000, 640));
        // Not a blank canvas: the lines and text put many non-white pixels on it.
        let img = image::open(&path).unwrap().to_rgb8();
        let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(inked > 5_000, "{inked} non-white pixels");
    }

    #[test]
    fn loss_curves_read_metrics_and_refuse_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        let lines: Vec<String> = (1..=4)
            .map(|s| format!("{{\"step\":{s},\"loss\":{}}}", 10.0 - s as f64))
            .collect();
        std::fs::write(run.join("metrics.jsonl"), lines.join("\n")).unwrap();
        let path = dir.path().join("loss.png");
        let series = loss_curves(&[("simclr".into(), run.as_path())], 2, &path).unwrap();
        // Window of 2: the first point alone, then pairs averaged.
        assert_eq!(
            series[0].points,
            vec![(1.0, 9.0), (2.0, 8.5), (3.0, 7.5), (4.0, 6.5)]
        );
        assert_eq!(png_size(&path), (1000, 640));

        std::fs::write(run.join("metrics.jsonl"), "{\"step\":1,\"loss\":\"x\"}\n").unwrap();
        let err = loss_curves(&[("simclr".into(), run.as_path())], 2, &path).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("metrics.jsonl") && message.contains("line 1"),
            "{message}"
        );
    }
}
