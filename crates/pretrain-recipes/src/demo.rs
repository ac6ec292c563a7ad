//! `cargo xtask demo`: pre-train on Fashion-MNIST's unlabeled training images with the given
//! recipes, then compare, at 1, 10 and 100 labels per class (several seeds) and with all labels:
//! raw-pixel logistic regression, each encoder randomly initialized (linear probe) and trained
//! from scratch on the labels, and the pre-trained encoder (linear probe, kNN, fine-tuning).
//! The frozen methods run at every budget; the two that train a network per budget and seed
//! (pre-trained fine-tuning and training from scratch) at the budgets of the recipe's
//! `[evaluate]` section, so a recipe keeps the demo within its time.
//! Text recipes (masked language modeling) run beside them on their labeled text set: the
//! pre-trained transformer fine-tuned, probed and kNN-classified, against the same transformer
//! randomly initialized (probe) and trained from scratch, at the recipe's `[evaluate]` budgets.
//! Causal-LM recipes (objective `clm`) are measured as language models instead
//! ([`crate::demo_causal`]): held-out bits per byte against n-gram baselines, generations,
//! few-shot prompting.
//! Writes `report.json`, `report.md` and PNG plots, and checks the bars the project sets
//! itself.

use std::path::PathBuf;
use std::time::Instant;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::tensor::Tensor;
use pretrain::burn::tensor::backend::{AutodiffBackend, Backend};
use pretrain::data::ImageItem;
use pretrain::data::batch::ImageBatcher;
use pretrain::finetune::{
    Features, FinetuneReport, FrozenFeatures, Inputs, LabeledBatch, Strategy, StrategySettings,
    ToLabeled, evaluate_frozen,
};
use pretrain::train::Precision;
use serde::Serialize;

use crate::data;
use crate::demo_causal::{self, CausalLmResult};
use crate::error::{RecipeError, Result};
use crate::finetune::{FinetuneOptions, run_finetune};
use crate::plots;
use crate::pretrain::{PretrainOptions, PretrainSummary, run_pretrain};
use crate::recipe::{EvaluateSpec, Recipe};

/// File name of the accuracy-against-labels plot in the demo's output folder.
pub const ACCURACY_PLOT: &str = "accuracy_vs_labels.png";
/// File name of the pre-training loss plot in the demo's output folder.
pub const LOSS_PLOT: &str = "pretraining_loss.png";
/// File name of the causal LMs' pre-training loss plot (nats per token).
pub const CAUSAL_LOSS_PLOT: &str = "causal_lm_loss.png";

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Backend of every run.
    pub backend: BackendKind,
    /// Small version for CI: the shipped sample, a few steps, one seed.
    pub quick: bool,
    /// Recipes to pre-train: image recipes on one image data set (at least one contrastive and
    /// one masked-modeling recipe), and text recipes.
    pub recipes: Vec<String>,
    /// Seeds of the labeled subsets.
    pub seeds: usize,
    /// Output folder (`report.json`, `report.md`, `runs/`).
    pub out: PathBuf,
    /// No progress bars.
    pub quiet: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Flex,
            quick: false,
            recipes: vec![
                "simclr-fashion-mnist".into(),
                "mae-fashion-mnist".into(),
                "mlm-text".into(),
                "clm-shakespeare".into(),
            ],
            seeds: 3,
            out: PathBuf::from("target/demo"),
            quiet: false,
        }
    }
}

/// One line of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DemoResult {
    /// Labeled data set.
    pub dataset: String,
    /// `raw-pixels-logreg`, `random-init-linear-probe`, `scratch`, `pretrained-linear-probe`,
    /// `pretrained-knn` or `pretrained-finetune`.
    pub method: String,
    /// The pre-training objective (`null` for raw pixels); for the random-init rows, the
    /// recipe whose encoder was left untrained.
    pub objective: Option<String>,
    /// The recipe the encoder comes from.
    pub recipe: Option<String>,
    /// Labels per class, `null` for all labels.
    pub labels_per_class: Option<usize>,
    /// Mean test accuracy over the seeds, in `[0, 1]`.
    pub accuracy_mean: f64,
    /// Sample standard deviation of the accuracy.
    pub accuracy_std: f64,
    /// Mean macro-F1.
    pub macro_f1_mean: f64,
    /// Seeds of the labeled subsets.
    pub seeds: Vec<u64>,
    /// Seconds this row took.
    pub seconds: f64,
}

/// A bar the demo must clear (or, for stretch goals, reports).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is compared.
    pub name: String,
    /// Whether the project requires it.
    pub required: bool,
    /// Whether it held.
    pub passed: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// Everything the demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Backend of every run.
    pub backend: String,
    /// Whether this was the quick (CI) version.
    pub quick: bool,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// The recipes as run.
    pub recipes: Vec<Recipe>,
    /// Each pre-training run.
    pub pretraining: Vec<PretrainSummary>,
    /// Every comparison row.
    pub results: Vec<DemoResult>,
    /// Causal-LM recipes: held-out bits per byte, generations, few-shot prompting.
    pub causal_lm: Vec<CausalLmResult>,
    /// The bars and whether they were cleared.
    pub checks: Vec<Check>,
    /// Wall-clock seconds of the whole demo.
    pub seconds: f64,
}

fn row(
    report: &FinetuneReport,
    method: &str,
    recipe: Option<&Recipe>,
    dataset: &str,
) -> DemoResult {
    DemoResult {
        dataset: dataset.to_string(),
        method: method.to_string(),
        objective: recipe.map(|r| r.objective.kind.clone()),
        recipe: recipe.map(|r| r.name.clone()),
        labels_per_class: report.labels_per_class,
        accuracy_mean: report.accuracy_mean,
        accuracy_std: report.accuracy_std,
        macro_f1_mean: report.macro_f1_mean,
        seeds: report.seeds.clone(),
        seconds: report.seconds,
    }
}

/// Runs the demo.
pub fn run_demo(config: &DemoConfig) -> Result<DemoReport> {
    let started = Instant::now();
    let mut recipes = config
        .recipes
        .iter()
        .map(|name| Recipe::load(name))
        .collect::<Result<Vec<_>>>()?;
    let budgets: Vec<usize> = if config.quick {
        vec![1, 2]
    } else {
        vec![1, 10, 100]
    };
    if recipes.is_empty() {
        return Err(RecipeError::field("recipes", "name at least one"));
    }
    for recipe in &mut recipes {
        if config.quick {
            let text = data::is_text(&recipe.data.dataset);
            let causal = recipe.objective.kind == "clm";
            recipe.data.dataset = match (text, causal) {
                (true, true) => "moby-dick-sample",
                (true, false) => "spam-sample",
                (false, _) => "fashion-mnist-sample",
            }
            .into();
            if text {
                recipe.data.max_tokens = Some(32);
            }
            if let Some(few_shot) = &mut recipe.few_shot {
                few_shot.dataset = "spam-sample".into();
                few_shot.source = None;
                few_shot.verbalizers = vec![" ham".into(), " spam".into()];
                few_shot.shots = vec![0, 1];
                few_shot.seeds = 1;
            }
            recipe.train.steps = 3;
            recipe.train.batch_size = if text { 8 } else { 16 };
            recipe.evaluate.settings.finetune.train.steps = 3;
            recipe.evaluate.labels_per_class = vec![1];
        }
    }
    let image_dataset = image_dataset(&recipes)?;
    // Frozen strategies are cheap once the features are extracted: every budget. Fine-tuning
    // trains a network per budget and seed: the budgets the recipe's `[evaluate]` names, which
    // text recipes use for everything.
    let evaluate = |strategies: Vec<Strategy>, recipe: &Recipe, frozen: bool| {
        let every_budget = frozen && !data::is_text(&recipe.data.dataset);
        EvaluateSpec {
            strategies,
            labels_per_class: if every_budget {
                budgets.clone()
            } else {
                recipe.evaluate.labels_per_class.clone()
            },
            all_labels: every_budget || recipe.evaluate.all_labels,
            seeds: config.seeds,
            settings: recipe.evaluate.settings.clone(),
            ..recipe.evaluate.clone()
        }
    };
    let mut pretraining = Vec::new();
    let mut results = Vec::new();
    let mut causal_lm = Vec::new();

    // Raw pixels: logistic regression on normalized pixels (the floor any encoder must beat).
    if let Some(first) = recipes
        .iter()
        .find(|r| Some(&r.data.dataset) == image_dataset.as_ref())
    {
        eprintln!("[demo] raw-pixel logistic regression");
        let raw = RawPixels {
            recipe: first,
            budgets: &budgets,
            seeds: config.seeds,
        };
        for report in pretrain::dispatch_backend!(config.backend, Precision::F32, raw)?? {
            results.push(row(&report, "raw-pixels-logreg", None, &first.data.dataset));
        }
    }

    for recipe in &recipes {
        let run_dir = config.out.join("runs").join(&recipe.name);
        eprintln!(
            "[demo] pre-training {} ({} steps)",
            recipe.name, recipe.train.steps
        );
        let options = PretrainOptions {
            out: run_dir.clone(),
            quiet: config.quiet,
            ..PretrainOptions::default()
        };
        let summary = run_pretrain(recipe, config.backend, &options)?;
        let heldout = summary.heldout.clone();
        pretraining.push(summary);
        if recipe.objective.kind == "clm" {
            causal_lm.push(demo_causal::evaluate_causal(
                recipe,
                &run_dir,
                heldout,
                config.backend,
            )?);
            continue;
        }
        let pretrained = Some(run_dir.clone());
        for (from, strategies, methods, frozen) in [
            (
                &pretrained,
                vec![Strategy::LinearProbe, Strategy::Knn],
                ["pretrained-linear-probe", "pretrained-knn"].as_slice(),
                true,
            ),
            (
                &pretrained,
                vec![Strategy::Full],
                ["pretrained-finetune"].as_slice(),
                false,
            ),
            (
                &None,
                vec![Strategy::LinearProbe],
                ["random-init-linear-probe"].as_slice(),
                true,
            ),
            (&None, vec![Strategy::Full], ["scratch"].as_slice(), false),
        ] {
            let spec = evaluate(strategies.clone(), recipe, frozen);
            if spec.labels_per_class.is_empty() && !spec.all_labels {
                continue;
            }
            eprintln!(
                "[demo] {} encoder of {}: {}",
                if from.is_some() {
                    "pre-trained"
                } else {
                    "random"
                },
                recipe.name,
                methods.join(", ")
            );
            let options = FinetuneOptions {
                from: from.clone(),
                out: run_dir.join(if from.is_some() {
                    "finetune"
                } else {
                    "random-init"
                }),
                quiet: config.quiet,
            };
            let reports = run_finetune(recipe, &spec, config.backend, &options)?;
            for report in &reports {
                let strategy = Strategy::parse(&report.strategy)?;
                let index = strategies
                    .iter()
                    .position(|s| *s == strategy)
                    .expect("ran it");
                results.push(row(
                    report,
                    methods[index],
                    Some(recipe),
                    &recipe.data.dataset,
                ));
            }
        }
    }
    let mut checks = checks(&results, image_dataset.as_deref());
    checks.extend(demo_causal::checks(&causal_lm));
    let report = DemoReport {
        backend: config.backend.name().to_string(),
        quick: config.quick,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        recipes,
        pretraining,
        results,
        causal_lm,
        checks,
        seconds: started.elapsed().as_secs_f64(),
    };
    std::fs::create_dir_all(&config.out).map_err(|e| RecipeError::io(&config.out, e))?;
    let json = config.out.join("report.json");
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(&report).expect("report serializes"),
    )
    .map_err(|e| RecipeError::io(&json, e))?;
    let md = config.out.join("report.md");
    std::fs::write(&md, markdown(&report)).map_err(|e| RecipeError::io(&md, e))?;
    for dataset in datasets(&report.results) {
        let rows: Vec<DemoResult> = report
            .results
            .iter()
            .filter(|r| r.dataset == dataset)
            .cloned()
            .collect();
        plots::accuracy_vs_labels(&rows, &config.out.join(accuracy_plot(dataset)))?;
    }
    // Causal LMs (nats per token) get their own plot.
    let (causal, others): (Vec<_>, Vec<_>) = report
        .pretraining
        .iter()
        .map(|p| (p.recipe.clone(), p.run_dir.as_path()))
        .partition(|(name, _)| report.causal_lm.iter().any(|c| &c.recipe == name));
    if !others.is_empty() {
        plots::loss_curves(&others, 20, &config.out.join(LOSS_PLOT))?;
    }
    if !causal.is_empty() {
        plots::loss_curves(&causal, 20, &config.out.join(CAUSAL_LOSS_PLOT))?;
    }
    Ok(report)
}

/// The data sets of `results`, in order of first appearance.
fn datasets(results: &[DemoResult]) -> Vec<&str> {
    let mut sets: Vec<&str> = Vec::new();
    for r in results {
        if !sets.contains(&r.dataset.as_str()) {
            sets.push(&r.dataset);
        }
    }
    sets
}

/// The accuracy plot of `dataset`: [`ACCURACY_PLOT`] for images, one named after each text
/// set beside it.
pub fn accuracy_plot(dataset: &str) -> String {
    if data::is_text(dataset) {
        format!("accuracy_vs_labels_{dataset}.png")
    } else {
        ACCURACY_PLOT.to_string()
    }
}

/// The one image data set of the image recipes (raw pixels and the image bars refer to it).
fn image_dataset(recipes: &[Recipe]) -> Result<Option<String>> {
    let mut sets: Vec<&str> = recipes
        .iter()
        .map(|r| r.data.dataset.as_str())
        .filter(|d| !data::is_text(d))
        .collect();
    sets.sort_unstable();
    sets.dedup();
    match sets.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => Err(RecipeError::field(
            "recipes",
            format!(
                "the image recipes must share one data set to be compared; got {}",
                many.join(", ")
            ),
        )),
    }
}

/// Best mean accuracy of `method` at `labels` over the recipes on `dataset` (and `recipe`,
/// when given).
fn best(
    results: &[DemoResult],
    dataset: Option<&str>,
    recipe: Option<&str>,
    method: &str,
    labels: Option<usize>,
) -> Option<f64> {
    results
        .iter()
        .filter(|r| {
            Some(r.dataset.as_str()) == dataset
                && recipe.is_none_or(|name| r.recipe.as_deref() == Some(name))
                && r.method == method
                && r.labels_per_class == labels
        })
        .map(|r| r.accuracy_mean)
        .reduce(f64::max)
}

fn checks(results: &[DemoResult], image_dataset: Option<&str>) -> Vec<Check> {
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let mut checks = Vec::new();
    // `margin`: `a` must reach `b + margin`; `None`: `a` must be strictly above `b`.
    let mut compare = |name: &str,
                       required: bool,
                       a: Option<f64>,
                       b: Option<f64>,
                       margin: Option<f64>,
                       what: (&str, &str)| {
        let passed = match (a, b, margin) {
            (Some(a), Some(b), Some(margin)) => a >= b + margin,
            (Some(a), Some(b), None) => a > b,
            _ => false,
        };
        checks.push(Check {
            name: name.to_string(),
            required,
            passed,
            detail: format!(
                "{} {} vs {} {} (needs {})",
                what.0,
                pct(a),
                what.1,
                pct(b),
                match (margin, a.zip(b)) {
                    (Some(m), Some((a, b))) if m > 0.0 => {
                        format!("+{:.0} points; has {:+.1}", 100.0 * m, 100.0 * (a - b))
                    }
                    (Some(_), Some((a, b))) => {
                        format!("at least that; margin {:+.1} points", 100.0 * (a - b))
                    }
                    (Some(m), None) => format!("+{:.0} points", 100.0 * m),
                    (None, Some((a, b))) => {
                        format!("to be above; margin {:+.1} points", 100.0 * (a - b))
                    }
                    (None, None) => "to be above".to_string(),
                }
            ),
        });
    };
    // The image bars, when the demo ran image recipes.
    if image_dataset.is_some() {
        let image_best = |method: &str, labels| best(results, image_dataset, None, method, labels);
        let probe = |l| image_best("pretrained-linear-probe", l);
        compare(
            "10 labels/class: pre-trained linear probe >= random-init probe + 8 points",
            true,
            probe(Some(10)),
            image_best("random-init-linear-probe", Some(10)),
            Some(0.08),
            ("pre-trained", "random-init"),
        );
        compare(
            "10 labels/class: pre-trained fine-tuning above training from scratch",
            true,
            image_best("pretrained-finetune", Some(10)),
            image_best("scratch", Some(10)),
            None,
            ("fine-tuned", "scratch"),
        );
        for labels in [Some(100), None] {
            compare(
                &format!(
                    "{}: pre-trained linear probe above raw-pixel logistic regression",
                    labels.map_or("all labels".to_string(), |k| format!("{k} labels/class"))
                ),
                true,
                probe(labels),
                image_best("raw-pixels-logreg", labels),
                None,
                ("pre-trained", "raw pixels"),
            );
        }
        compare(
            "all labels: pre-trained linear probe at least 86%",
            true,
            probe(None),
            Some(0.86),
            Some(0.0),
            ("pre-trained", "target"),
        );
        compare(
            "stretch, 10 labels/class: pre-trained linear probe >= raw pixels + 6 points",
            false,
            probe(Some(10)),
            image_best("raw-pixels-logreg", Some(10)),
            Some(0.06),
            ("pre-trained", "raw pixels"),
        );
    }
    // Text: the pre-trained transformer fine-tuned against the same one trained from scratch,
    // per text recipe and budget.
    let mut text_rows: Vec<(&str, &str, Option<usize>)> = Vec::new();
    for r in results {
        if let (true, Some(recipe)) = (data::is_text(&r.dataset), r.recipe.as_deref()) {
            let key = (r.dataset.as_str(), recipe, r.labels_per_class);
            if r.method == "pretrained-finetune" && !text_rows.contains(&key) {
                text_rows.push(key);
            }
        }
    }
    for (dataset, recipe, labels) in text_rows {
        let of = |method| best(results, Some(dataset), Some(recipe), method, labels);
        compare(
            &format!(
                "text ({dataset}, {}): pre-trained fine-tuning above training from scratch",
                labels.map_or("all labels".to_string(), |k| format!("{k} labels/class"))
            ),
            true,
            of("pretrained-finetune"),
            of("scratch"),
            None,
            ("fine-tuned", "scratch"),
        );
    }
    checks
}

/// The report as a table a person reads.
pub fn markdown(report: &DemoReport) -> String {
    let mut labels: Vec<Option<usize>> = Vec::new();
    for r in &report.results {
        if !labels.contains(&r.labels_per_class) {
            labels.push(r.labels_per_class);
        }
    }
    labels.sort_by_key(|l| l.unwrap_or(usize::MAX));
    let mut out = format!(
        "# Demo report\n\nBackend {}, {} CPUs, {:.0} s{}.\n\n| method | recipe |",
        report.backend,
        report.cpus,
        report.seconds,
        if report.quick {
            ", quick version (shipped sample; not meaningful accuracy)"
        } else {
            ""
        }
    );
    for l in &labels {
        out += &format!(
            " {} |",
            l.map_or("all labels".to_string(), |k| format!("{k}/class"))
        );
    }
    out += "\n|---|---|";
    out += &"---|".repeat(labels.len());
    out += "\n";
    let mut keys: Vec<(String, Option<String>)> = Vec::new();
    for r in &report.results {
        let key = (r.method.clone(), r.recipe.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (method, recipe) in keys {
        out += &format!(
            "| {method} | {} |",
            recipe.clone().unwrap_or_else(|| "-".into())
        );
        for l in &labels {
            let cell = report
                .results
                .iter()
                .find(|r| r.method == method && r.recipe == recipe && r.labels_per_class == *l)
                .map_or("".to_string(), |r| {
                    format!(
                        "{:.1} ± {:.1}",
                        100.0 * r.accuracy_mean,
                        100.0 * r.accuracy_std
                    )
                });
            out += &format!(" {cell} |");
        }
        out += "\n";
    }
    out += "\nAccuracy on the test split (%), mean ± std over the seeds of the labeled subset.\n\n## Bars\n\n";
    for c in &report.checks {
        out += &format!(
            "- [{}] {}{}: {}\n",
            if c.passed { "x" } else { " " },
            c.name,
            if c.required { "" } else { " (stretch)" },
            c.detail
        );
    }
    let plots: Vec<String> = datasets(&report.results)
        .into_iter()
        .map(|d| format!("`{}`", accuracy_plot(d)))
        .collect();
    let mut plot_notes = Vec::new();
    if !plots.is_empty() {
        plot_notes.push(format!(
            "{} (accuracy against labels per class)",
            plots.join(", ")
        ));
    }
    if report.pretraining.len() > report.causal_lm.len() {
        plot_notes.push(format!("`{LOSS_PLOT}` (pre-training loss)"));
    }
    if !plot_notes.is_empty() {
        out += &format!("\nPlots: {}.\n", plot_notes.join(", "));
    }
    out += "\n## Pre-training\n\n";
    for p in &report.pretraining {
        out += &format!(
            "- {}: {} steps in {:.0} s, loss {:.4} -> {:.4}\n",
            p.recipe, p.steps_done, p.seconds, p.loss_start_end.0, p.loss_start_end.1
        );
    }
    if !report.causal_lm.is_empty() {
        out += &format!("\nCausal LMs' loss (nats per token): `{CAUSAL_LOSS_PLOT}`.\n");
    }
    out += &demo_causal::markdown(&report.causal_lm);
    out
}

/// Raw-pixel logistic regression on every label budget.
struct RawPixels<'a> {
    recipe: &'a Recipe,
    budgets: &'a [usize],
    seeds: usize,
}

impl BackendTask for RawPixels<'_> {
    type Output = Result<Vec<FinetuneReport>>;

    fn run<B: AutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let task = data::load(self.recipe)?;
        let batcher = ToLabeled(ImageBatcher {
            normalize: data::normalization(&self.recipe.data)?,
        });
        let features = FrozenFeatures {
            train: pixels::<B::InnerBackend>(&task.train, &batcher, &device)?,
            test: pixels::<B::InnerBackend>(&task.test, &batcher, &device)?,
            architecture: "pixels",
            encoder_params: 0,
        };
        let seeds: Vec<u64> = (0..self.seeds as u64).collect();
        let settings = StrategySettings::default();
        self.budgets
            .iter()
            .map(|&k| Some(k))
            .chain([None])
            .map(|budget| {
                Ok(evaluate_frozen(
                    Strategy::LinearProbe,
                    &features,
                    &task,
                    budget,
                    &seeds,
                    &settings,
                )?)
            })
            .collect()
    }
}

fn pixels<B: Backend>(
    items: &[ImageItem],
    batcher: &ToLabeled<ImageBatcher>,
    device: &B::Device,
) -> Result<Features<B>> {
    let labels = pretrain::finetune::probe::labels_of(items)?;
    let chunks: Vec<Tensor<B, 2>> = items
        .chunks(1024)
        .map(|chunk| {
            let batch: LabeledBatch<B> = batcher.batch(chunk.to_vec(), device);
            match batch.inputs {
                Inputs::Images(images) => {
                    let [n, c, h, w] = images.dims();
                    images.reshape([n, c * h * w])
                }
                Inputs::Tokens { .. } => unreachable!("an image batcher makes images"),
            }
        })
        .collect();
    Ok(Features {
        x: Tensor::cat(chunks, 0),
        labels,
    })
}

/// Whether every required bar held.
pub fn passed(report: &DemoReport) -> bool {
    failed_bars(report).is_empty()
}

/// The required bars that did not hold, each as `name (detail)`.
pub fn failed_bars(report: &DemoReport) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| c.required && !c.passed)
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(method: &str, labels: Option<usize>, accuracy: f64) -> DemoResult {
        DemoResult {
            dataset: "fashion-mnist".into(),
            method: method.into(),
            objective: None,
            recipe: None,
            labels_per_class: labels,
            accuracy_mean: accuracy,
            accuracy_std: 0.0,
            macro_f1_mean: accuracy,
            seeds: vec![0, 1, 2],
            seconds: 0.0,
        }
    }

    #[test]
    fn bars_need_their_margin_and_ties_do_not_count_as_above() {
        let results = vec![
            result("pretrained-linear-probe", Some(10), 0.725),
            result("random-init-linear-probe", Some(10), 0.64),
            // A tie with training from scratch is not "above".
            result("pretrained-finetune", Some(10), 0.71),
            result("scratch", Some(10), 0.71),
            result("pretrained-linear-probe", Some(100), 0.80),
            result("raw-pixels-logreg", Some(100), 0.79),
            result("pretrained-linear-probe", None, 0.859),
            result("raw-pixels-logreg", None, 0.84),
            result("raw-pixels-logreg", Some(10), 0.70),
        ];
        let mut results = results;
        // Text rows count only against each other, never towards the image bars.
        let text = |method: &str, accuracy| DemoResult {
            dataset: "spam-assassin".into(),
            recipe: Some("mlm-text".into()),
            ..result(method, Some(100), accuracy)
        };
        results.push(text("pretrained-finetune", 0.95));
        results.push(text("scratch", 0.93));
        results.push(text("pretrained-linear-probe", 0.99));
        let checks = checks(&results, Some("fashion-mnist"));
        let passed: Vec<bool> = checks.iter().map(|c| c.passed).collect();
        // +8.5 points; tie; above; above; 85.9% < 86%; stretch +2.5 < +6; text above.
        assert_eq!(passed, [true, false, true, true, false, false, true]);
        assert!(
            checks[6].name.contains("spam-assassin, 100 labels/class")
                && checks[6].detail.contains("margin +2.0 points"),
            "{checks:?}"
        );
        assert!(
            checks[1].detail.contains("needs to be above"),
            "{}",
            checks[1].detail
        );
        assert!(
            checks[0].detail.contains("+8 points; has +8.5"),
            "{}",
            checks[0].detail
        );
        assert!(
            checks[4]
                .detail
                .contains("at least that; margin -0.1 points"),
            "{}",
            checks[4].detail
        );
        assert!(
            !checks[5].required && checks[..5].iter().all(|c| c.required) && checks[6].required
        );
        let report = DemoReport {
            backend: "flex".into(),
            quick: false,
            cpus: 2,
            recipes: vec![],
            pretraining: vec![],
            results,
            causal_lm: vec![],
            checks,
            seconds: 1.0,
        };
        assert!(!super::passed(&report));
        let failed = super::failed_bars(&report);
        let expected = report
            .checks
            .iter()
            .filter(|c| c.required && !c.passed)
            .count();
        assert!(!failed.is_empty() && failed.len() == expected, "{failed:?}");
    }
}
