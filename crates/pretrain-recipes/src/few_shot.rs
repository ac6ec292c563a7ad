//! Few-shot prompting of a causal-LM run: the `[few_shot]` section of its recipe, run by
//! `pretrain finetune --from <run>` and the demo.

use pretrain::models::FusedAutodiffBackend;
use std::path::Path;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::data::data_source::DataSource;
use pretrain::finetune::{FewShotConfig, FewShotReport, evaluate_few_shot};
use pretrain::train::Precision;
use serde::{Deserialize, Serialize};

use crate::data;
use crate::dataset::BuiltinDataset;
use crate::error::{RecipeError, Result};
use crate::generate::DecoderRun;
use crate::recipe::Recipe;

/// The report's file name in the output folder.
pub const FEW_SHOT_FILE: &str = "few-shot.json";

/// Zero- and few-shot classification of a labeled text set by prompting the run's model
/// ([`pretrain::finetune::few_shot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewShotSpec {
    /// A built-in labeled text set (`tweets`, `spam-assassin`, `spam-sample`), or none with
    /// `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<BuiltinDataset>,
    /// A labeled text source of the user's (split 80/20 per class, seeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSource>,
    /// The word naming each class, in class order, as it follows the template's `{label}`.
    pub verbalizers: Vec<String>,
    /// One example: `{text}` and `{label}` are replaced; the query is written up to `{label}`.
    #[serde(default = "default_template")]
    pub template: String,
    /// In-context examples per query, one row each.
    #[serde(default = "default_shots")]
    pub shots: Vec<usize>,
    /// Seeds of the drawn examples.
    #[serde(default = "default_seeds")]
    pub seeds: usize,
    /// Test texts scored, at most.
    #[serde(default = "default_max_queries")]
    pub max_queries: usize,
    /// Compare classes by log-likelihood per byte of their verbalizer (default) or in total.
    #[serde(default = "default_normalize")]
    pub normalize_by_length: bool,
}

fn default_template() -> String {
    FewShotConfig::new(Vec::new()).template
}

fn default_shots() -> Vec<usize> {
    FewShotConfig::new(Vec::new()).shots
}

fn default_seeds() -> usize {
    FewShotConfig::new(Vec::new()).seeds.len()
}

fn default_max_queries() -> usize {
    FewShotConfig::new(Vec::new()).max_queries
}

fn default_normalize() -> bool {
    FewShotConfig::new(Vec::new()).normalize_by_length
}

impl FewShotSpec {
    /// The evaluation's settings.
    pub fn config(&self) -> FewShotConfig {
        FewShotConfig::new(self.verbalizers.clone())
            .with_template(self.template.clone())
            .with_shots(self.shots.clone())
            .with_seeds((0..self.seeds as u64).collect())
            .with_max_queries(self.max_queries)
            .with_normalize_by_length(self.normalize_by_length)
    }
}

/// Runs the `[few_shot]` evaluation of the causal-LM run in `run_dir` and writes
/// [`FEW_SHOT_FILE`] into `out`.
pub fn run_few_shot(run_dir: &Path, backend: BackendKind, out: &Path) -> Result<FewShotReport> {
    let run = DecoderRun::open(run_dir, "few-shot")?;
    let spec = run.recipe.few_shot.clone().ok_or_else(|| {
        RecipeError::field(
            "few_shot",
            format!(
                "the recipe of {} has no [few_shot] section to evaluate",
                run_dir.display()
            ),
        )
    })?;
    // The labeled set is read as an evaluation of a recipe with that data would read it.
    let mut labeled = Recipe::clone(&run.recipe);
    labeled.data.dataset = spec.dataset;
    labeled.data.source = spec.source.clone();
    labeled.evaluate = Default::default();
    let task =
        data::load_text(&labeled).map_err(|e| RecipeError::field("few_shot", e.to_string()))?;
    let report = pretrain::dispatch_backend!(
        backend,
        Precision::F32,
        Job {
            run: &run,
            task: &task,
            config: spec.config(),
        }
    )??;
    std::fs::create_dir_all(out).map_err(|e| RecipeError::io(out, e))?;
    let path = out.join(FEW_SHOT_FILE);
    let json = serde_json::to_string_pretty(&report).expect("reports serialize");
    std::fs::write(&path, json).map_err(|e| RecipeError::io(&path, e))?;
    Ok(report)
}

struct Job<'a> {
    run: &'a DecoderRun,
    task: &'a pretrain::finetune::LabeledTask<pretrain::data::TextItem>,
    config: FewShotConfig,
}

impl BackendTask for Job<'_> {
    type Output = Result<FewShotReport>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let model = self.run.load::<B::InnerBackend>(&device)?;
        evaluate_few_shot(&model, &self.run.tokenizer, self.task, &self.config)
            .map_err(|e| RecipeError::field("few_shot", e.to_string()))
    }
}
