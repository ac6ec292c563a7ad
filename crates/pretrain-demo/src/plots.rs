//! The demo's PNG plots: test accuracy against labels per class for every method, and the
//! pre-training loss curves read back from each run's `metrics.jsonl`.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use pretrain_recipes::{RecipeError, Result};

use crate::run::DemoResult;

/// Compiled in so the plots need no system fonts (license in `assets/`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The file is compiled in and parsed by tests, so this cannot fail at run time.
        if register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            unreachable!("the compiled-in DejaVu Sans parses");
        }
    });
}

fn plot_error(path: &Path) -> impl Fn(String) -> RecipeError + '_ {
    move |message| RecipeError::io(path, format!("drawing the plot: {message}"))
}

/// A named line of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
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
            None => series.push(Series {
                name,
                points: vec![point],
            }),
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
    let y_range = (y_min - 5.0).clamp(0.0, 100.0).floor()..100.0;
    draw(
        path,
        "Fashion-MNIST test accuracy by labels per class",
        ("labels per class", "test accuracy (%)"),
        (-0.25..(budgets.len().max(1) as f64 - 0.75), y_range),
        &series,
        Some(&labels),
    )?;
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
        series.push(Series {
            name: name.clone(),
            points,
        });
    }
    let (x_max, y_min, y_max) = series
        .iter()
        .flat_map(|s| s.points.iter())
        .fold((1.0f64, f64::INFINITY, f64::NEG_INFINITY), |acc, p| {
            (acc.0.max(p.0), acc.1.min(p.1), acc.2.max(p.1))
        });
    let (y_min, y_max) = if y_min.is_finite() {
        let pad = 0.05 * (y_max - y_min).max(1e-3);
        (y_min - pad, y_max + pad)
    } else {
        (0.0, 1.0)
    };
    draw(
        path,
        "Pre-training loss",
        ("step", "loss (moving average)"),
        (0.0..x_max, y_min..y_max),
        &series,
        None,
    )?;
    Ok(series)
}

/// Width and height of every plot, in pixels.
const SIZE: (u32, u32) = (1000, 640);

/// Lines with markers and a legend; `categories` names the integer x positions instead of
/// numbers.
fn draw(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    (x_range, y_range): (std::ops::Range<f64>, std::ops::Range<f64>),
    series: &[Series],
    categories: Option<&[String]>,
) -> Result<()> {
    ensure_font();
    let err = plot_error(path);
    let (width, height) = SIZE;
    let mut pixels = vec![0u8; 3 * (width * height) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| err(e.to_string()))?;
        let category_label = |x: &f64| -> String {
            let i = x.round();
            match categories {
                Some(names) if (x - i).abs() < 1e-6 && i >= 0.0 => {
                    names.get(i as usize).cloned().unwrap_or_default()
                }
                Some(_) => String::new(),
                None => format!("{x}"),
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_desc).y_desc(y_desc);
        if let Some(names) = categories {
            mesh.x_labels(names.len())
                .x_label_formatter(&category_label);
        }
        mesh.draw().map_err(|e| err(e.to_string()))?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if categories.is_some() {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    // Encoded with the workspace's `image` (plotters' own encoder would pull in a second one).
    image::save_buffer(path, &pixels, width, height, image::ColorType::Rgb8)
        .map_err(|e| RecipeError::io(path, e))
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
