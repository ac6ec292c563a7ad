//! `pretrain demo` (`cargo xtask demo`): pre-train on Fashion-MNIST's unlabeled training images with the given
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
//! ([`crate::causal`]): held-out bits per byte against n-gram baselines, generations,
//! few-shot prompting.
//! Writes `report.json`, `report.md` and PNG plots, and checks the bars the project sets
//! itself.

use std::path::PathBuf;
use std::time::Instant;

use pretrain::backend::BackendKind;
use pretrain::finetune::{FinetuneReport, Strategy};
use pretrain_recipes::finetune::{FinetuneOptions, run_finetune};
use pretrain_recipes::pretrain::{PretrainOptions, PretrainSummary, run_pretrain};
use pretrain_recipes::recipe::{EvaluateSpec, Recipe};
use pretrain_recipes::{BuiltinDataset, ObjectiveKind, RecipeError, Result};
use serde::Serialize;

use crate::causal::{self, CausalLmResult};
use crate::checks::{Check, checks};
use crate::report::markdown;
use crate::{baseline, plots};

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

pretrain::data::named_enum! {
    /// How a row of the comparison got its accuracy (kebab case in the reports; [`Named`]).
    ///
    /// [`Named`]: pretrain::data::Named
    pub enum Method {
        /// Logistic regression on normalized pixels (no encoder).
        RawPixelsLogreg,
        /// Linear probe on the randomly initialized encoder.
        RandomInitLinearProbe,
        /// The encoder trained from scratch on the labels.
        Scratch,
        /// Linear probe on the pre-trained encoder.
        PretrainedLinearProbe,
        /// kNN on the pre-trained encoder's features.
        PretrainedKnn,
        /// The pre-trained encoder fine-tuned on the labels.
        PretrainedFinetune,
    }
}

impl Method {
    /// The row that `strategy` on a pre-trained (or randomly initialized) encoder makes, among
    /// those the demo runs.
    pub fn of(strategy: Strategy, pretrained: bool) -> Option<Self> {
        match (strategy, pretrained) {
            (Strategy::LinearProbe, true) => Some(Self::PretrainedLinearProbe),
            (Strategy::Knn, true) => Some(Self::PretrainedKnn),
            (Strategy::Full, true) => Some(Self::PretrainedFinetune),
            (Strategy::LinearProbe, false) => Some(Self::RandomInitLinearProbe),
            (Strategy::Full, false) => Some(Self::Scratch),
            _ => None,
        }
    }
}

/// One line of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DemoResult {
    /// Labeled data set.
    pub dataset: BuiltinDataset,
    /// How the accuracy was obtained.
    pub method: Method,
    /// The pre-training objective (`null` for raw pixels); for the random-init rows, the
    /// recipe whose encoder was left untrained.
    pub objective: Option<ObjectiveKind>,
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
    method: Method,
    recipe: Option<&Recipe>,
    dataset: BuiltinDataset,
) -> DemoResult {
    DemoResult {
        dataset,
        method,
        objective: recipe.map(|r| r.objective.kind),
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
        let dataset = dataset_of(recipe)?;
        if config.quick {
            let text = dataset.is_text();
            let causal = recipe.objective.kind == ObjectiveKind::Clm;
            recipe.data.dataset = Some(match (text, causal) {
                (true, true) => BuiltinDataset::MobyDickSample,
                (true, false) => BuiltinDataset::SpamSample,
                (false, _) => BuiltinDataset::FashionMnistSample,
            });
            if text {
                recipe.data.max_tokens = Some(32);
            }
            if let Some(few_shot) = &mut recipe.few_shot {
                few_shot.dataset = Some(BuiltinDataset::SpamSample);
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
        let every_budget = frozen && recipe.data.dataset.is_some_and(|d| !d.is_text());
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
        .find(|r| r.data.dataset.is_some() && r.data.dataset == image_dataset)
    {
        eprintln!("[demo] raw-pixel logistic regression");
        for report in baseline::raw_pixels(first, &budgets, config.seeds, config.backend)? {
            results.push(row(
                &report,
                Method::RawPixelsLogreg,
                None,
                dataset_of(first)?,
            ));
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
        if recipe.objective.kind == ObjectiveKind::Clm {
            causal_lm.push(causal::evaluate_causal(
                recipe,
                &run_dir,
                heldout,
                config.backend,
            )?);
            continue;
        }
        let pretrained = Some(run_dir.clone());
        for (from, strategies, frozen) in [
            (
                &pretrained,
                vec![Strategy::LinearProbe, Strategy::Knn],
                true,
            ),
            (&pretrained, vec![Strategy::Full], false),
            (&None, vec![Strategy::LinearProbe], true),
            (&None, vec![Strategy::Full], false),
        ] {
            let methods: Vec<Method> = strategies
                .iter()
                .filter_map(|&s| Method::of(s, from.is_some()))
                .collect();
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
                methods
                    .iter()
                    .map(Method::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
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
                if let Some(method) = Method::of(report.strategy, from.is_some()) {
                    results.push(row(report, method, Some(recipe), dataset_of(recipe)?));
                }
            }
        }
    }
    let mut checks = checks(&results, image_dataset);
    checks.extend(causal::checks(&causal_lm));
    let report = DemoReport {
        backend: config.backend.to_string(),
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
pub(crate) fn datasets(results: &[DemoResult]) -> Vec<BuiltinDataset> {
    let mut sets = Vec::new();
    for r in results {
        if !sets.contains(&r.dataset) {
            sets.push(r.dataset);
        }
    }
    sets
}

/// The accuracy plot of `dataset`: [`ACCURACY_PLOT`] for images, one named after each text
/// set beside it.
pub fn accuracy_plot(dataset: BuiltinDataset) -> String {
    if dataset.is_text() {
        format!("accuracy_vs_labels_{dataset}.png")
    } else {
        ACCURACY_PLOT.to_string()
    }
}

/// The built-in data set of a recipe: the demo compares on those only.
fn dataset_of(recipe: &Recipe) -> Result<BuiltinDataset> {
    recipe.data.dataset.ok_or_else(|| {
        RecipeError::field(
            "data.dataset",
            format!(
                "recipe {} reads its own data: the demo compares on built-in data sets (run \
                 it with `pretrain pretrain` and `pretrain finetune`)",
                recipe.name
            ),
        )
    })
}

/// The one image data set of the image recipes (raw pixels and the image bars refer to it).
fn image_dataset(recipes: &[Recipe]) -> Result<Option<BuiltinDataset>> {
    let mut sets: Vec<BuiltinDataset> = Vec::new();
    for recipe in recipes {
        let dataset = dataset_of(recipe)?;
        if !dataset.is_text() && !sets.contains(&dataset) {
            sets.push(dataset);
        }
    }
    match sets.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(RecipeError::field(
            "recipes",
            format!(
                "the image recipes must share one data set to be compared; got {}",
                many.iter()
                    .map(BuiltinDataset::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
