//! PNG line charts for pretrain's reports: the demo's accuracy and loss curves, the scaling
//! sweeps' loss-against-size and loss-against-compute plots. Drawn with `plotters` (the font is
//! compiled in, so no system fonts are needed) and encoded with `image`.
//!
//! An axis is linear, logarithmic (values drawn at their `log10`, ticks labelled with the values
//! themselves; points that are not positive are left out) or categorical (integer positions
//! named by strings).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// Compiled in so the plots need no system fonts (license in `assets/`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (1000, 640);

/// A plot that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: drawing the plot: {message}")]
pub struct PlotError {
    /// The PNG file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mark {
    /// A line through the points.
    #[default]
    Line,
    /// A marker at each point, no line.
    Points,
    /// A line with a marker at each point.
    LineAndPoints,
}

/// A named series of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Line, markers or both.
    pub mark: Mark,
    /// Palette index of its color (default: its position among the series), so related
    /// series (a fit and its points) can share one.
    pub color: Option<usize>,
}

impl Series {
    /// A series drawn as a line.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            mark: Mark::Line,
            color: None,
        }
    }

    /// This series drawn with `mark`.
    pub fn with_mark(mut self, mark: Mark) -> Self {
        self.mark = mark;
        self
    }

    /// This series in the palette's color `index`.
    pub fn with_color(mut self, index: usize) -> Self {
        self.color = Some(index);
        self
    }
}

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Values as they are.
    Linear,
    /// `log10` of the values.
    Log,
}

/// One axis of a [`Chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Description under (or beside) the axis.
    pub label: String,
    /// Linear or logarithmic.
    pub scale: Scale,
    /// Fixed range (in values, not logarithms); from the data when `None`.
    pub range: Option<(f64, f64)>,
    /// Names of the integer positions 0, 1, 2... (empty: numeric ticks).
    pub categories: Vec<String>,
}

impl Axis {
    /// A linear axis fitted to the data.
    pub fn linear(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
            categories: Vec::new(),
        }
    }

    /// A logarithmic axis fitted to the data.
    pub fn log(label: impl Into<String>) -> Self {
        Self {
            scale: Scale::Log,
            ..Self::linear(label)
        }
    }

    /// This axis spanning `low..high`.
    pub fn with_range(mut self, low: f64, high: f64) -> Self {
        self.range = Some((low, high));
        self
    }

    /// This axis naming the integer positions `0..names.len()`.
    pub fn with_categories(mut self, names: Vec<String>) -> Self {
        self.categories = names;
        self
    }

    /// Where `value` is drawn (`None`: not drawable on a log axis).
    fn position(&self, value: f64) -> Option<f64> {
        match self.scale {
            Scale::Linear => value.is_finite().then_some(value),
            Scale::Log => (value > 0.0 && value.is_finite()).then(|| value.log10()),
        }
    }

    /// The drawn range: the fixed one, or the data's padded by 5%.
    fn span(&self, positions: impl Iterator<Item = f64>) -> Range<f64> {
        if let Some((low, high)) = self.range {
            let (low, high) = (
                self.position(low).unwrap_or(0.0),
                self.position(high).unwrap_or(1.0),
            );
            if high > low {
                return low..high;
            }
        }
        let (low, high) = positions.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p), hi.max(p))
        });
        if !low.is_finite() {
            return 0.0..1.0;
        }
        let pad = 0.05 * (high - low).max(1e-3);
        (low - pad)..(high + pad)
    }

    /// The tick label at `position`.
    fn tick(&self, position: f64) -> String {
        if !self.categories.is_empty() {
            let i = position.round();
            if (position - i).abs() < 1e-6 && i >= 0.0 {
                return self.categories.get(i as usize).cloned().unwrap_or_default();
            }
            return String::new();
        }
        match self.scale {
            Scale::Linear => compact(position),
            Scale::Log => compact(10f64.powf(position)),
        }
    }
}

/// `value` in four significant digits (trailing zeros dropped), in scientific notation when
/// far from 1.
fn compact(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (1e-3..1e5).contains(&magnitude) {
        let decimals = if value == 0.0 {
            0
        } else {
            (3 - magnitude.log10().floor() as i32).max(0) as usize
        };
        let text = format!("{value:.decimals$}");
        if text.contains('.') {
            return text.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        text
    } else {
        format!("{value:.2e}")
    }
}

/// The corner the legend sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Corner {
    /// Top right.
    #[default]
    UpperRight,
    /// Bottom right.
    LowerRight,
    /// Top left.
    UpperLeft,
    /// Bottom left.
    LowerLeft,
}

/// A chart: title, axes and where the legend goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Caption above the plot.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// Corner of the legend.
    pub legend: Corner,
}

impl Chart {
    /// A chart with its legend in the upper right corner.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Self {
            title: title.into(),
            x,
            y,
            legend: Corner::UpperRight,
        }
    }

    /// This chart with its legend in `corner`.
    pub fn with_legend(mut self, corner: Corner) -> Self {
        self.legend = corner;
        self
    }
}

fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The file is compiled in and parsed by tests, so this cannot fail at run time.
        if register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            unreachable!("the compiled-in DejaVu Sans parses");
        }
    });
}

/// Draws `series` on `chart` with a legend and writes the PNG to `path`.
pub fn draw(path: &Path, chart: &Chart, series: &[Series]) -> Result<(), PlotError> {
    ensure_font();
    let err = |message: String| PlotError {
        path: path.to_path_buf(),
        message,
    };
    // Each series in drawing positions, points an axis cannot show left out.
    let drawn: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter_map(|&(x, y)| Some((chart.x.position(x)?, chart.y.position(y)?)))
                .collect()
        })
        .collect();
    let x_range = chart.x.span(drawn.iter().flatten().map(|p| p.0));
    let y_range = chart.y.span(drawn.iter().flatten().map(|p| p.1));
    let (width, height) = SIZE;
    let mut pixels = vec![0u8; 3 * (width * height) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut plot = ChartBuilder::on(&root)
            .caption(chart.title.as_str(), ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| err(e.to_string()))?;
        let x_tick = |p: &f64| chart.x.tick(*p);
        let y_tick = |p: &f64| chart.y.tick(*p);
        let mut mesh = plot.configure_mesh();
        mesh.x_desc(chart.x.label.as_str())
            .y_desc(chart.y.label.as_str())
            .x_label_formatter(&x_tick)
            .y_label_formatter(&y_tick);
        if !chart.x.categories.is_empty() {
            mesh.x_labels(chart.x.categories.len());
        }
        mesh.draw().map_err(|e| err(e.to_string()))?;
        for (i, (s, points)) in series.iter().zip(&drawn).enumerate() {
            let color = Palette99::pick(s.color.unwrap_or(i)).to_rgba();
            let line = s.mark != Mark::Points;
            let markers = s.mark != Mark::Line;
            if line {
                plot.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            if markers {
                let annotation = plot
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| err(e.to_string()))?;
                if !line {
                    annotation
                        .label(s.name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
                }
            }
        }
        plot.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(match chart.legend {
                Corner::UpperRight => SeriesLabelPosition::UpperRight,
                Corner::LowerRight => SeriesLabelPosition::LowerRight,
                Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
                Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
            })
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    // Encoded with the workspace's `image` (plotters' own encoder would pull in a second one).
    image::save_buffer(path, &pixels, width, height, image::ColorType::Rgb8)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn non_white_pixels(path: &Path) -> usize {
        let img = image::open(path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        img.pixels().filter(|p| p.0 != [255, 255, 255]).count()
    }

    #[test]
    fn log_axes_draw_positive_points_and_label_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.png");
        let chart = Chart::new(
            "loss against parameters",
            Axis::log("parameters"),
            Axis::log("loss"),
        );
        let series = [
            Series::line("fit", vec![(1e3, 3.0), (1e5, 2.0), (1e7, 1.5)]),
            Series::line("runs", vec![(-1.0, 2.0), (1e4, 2.5), (1e6, 1.8)]).with_mark(Mark::Points),
        ];
        draw(&path, &chart, &series).unwrap();
        assert!(non_white_pixels(&path) > 5_000);
        // Ticks name values, not logarithms.
        assert_eq!(chart.x.tick(3.0), "1000");
        assert_eq!(chart.x.tick(6.0), "1.00e6");
        assert_eq!(chart.x.position(-1.0), None);
        // Four significant digits: no long fractions on log ticks between decades.
        assert_eq!(chart.x.tick(3.5), "3162");
        assert_eq!(compact(0.01234), "0.01234");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(0.0), "0");
    }

    #[test]
    fn categories_name_integer_positions_only() {
        let axis = Axis::linear("labels").with_categories(vec!["1".into(), "all".into()]);
        assert_eq!(axis.tick(1.0), "all");
        assert_eq!(axis.tick(0.5), "");
        assert_eq!(axis.tick(7.0), "");
    }

    #[test]
    fn ranges_come_from_the_data_unless_fixed() {
        let axis = Axis::linear("x");
        let span = axis.span([1.0, 3.0].into_iter());
        assert!(span.start < 1.0 && span.end > 3.0);
        assert_eq!(axis.span(std::iter::empty()), 0.0..1.0);
        let fixed = Axis::log("x").with_range(10.0, 1000.0);
        assert_eq!(fixed.span([0.0].into_iter()), 1.0..3.0);
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let chart = Chart::new("t", Axis::linear("x"), Axis::linear("y"));
        let path = Path::new("/nonexistent-dir/plot.png");
        let err = draw(path, &chart, &[Series::line("a", vec![(0.0, 1.0)])]).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent-dir/plot.png"),
            "{err}"
        );
    }
}
