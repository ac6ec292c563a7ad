//! The recipe file: what to pre-train on, with which model, objective and training settings,
//! and how to evaluate the result.

use std::path::{Path, PathBuf};

use pretrain::data::augment::Pipeline;
use pretrain::data::data_source::DataSource;
use pretrain::data::mask::TokenMasker;
use pretrain::data::tokenizer::TokenizerTrainConfig;
use pretrain::finetune::{Strategy, StrategySettings};
use pretrain::train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::dataset::BuiltinDataset;
use crate::error::{RecipeError, Result};
use crate::few_shot::FewShotSpec;
use crate::models::Preset;
use crate::objective::ObjectiveKind;

/// The recipes shipped in `recipes/`, compiled in so every binary has them.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "byol-fashion-mnist",
        include_str!("../../../recipes/byol-fashion-mnist.toml"),
    ),
    (
        "clm-moby-dick",
        include_str!("../../../recipes/clm-moby-dick.toml"),
    ),
    (
        "clm-shakespeare",
        include_str!("../../../recipes/clm-shakespeare.toml"),
    ),
    ("clm-sotu", include_str!("../../../recipes/clm-sotu.toml")),
    (
        "dae-digits",
        include_str!("../../../recipes/dae-digits.toml"),
    ),
    (
        "mae-fashion-mnist",
        include_str!("../../../recipes/mae-fashion-mnist.toml"),
    ),
    ("mlm-text", include_str!("../../../recipes/mlm-text.toml")),
    (
        "simclr-fashion-mnist",
        include_str!("../../../recipes/simclr-fashion-mnist.toml"),
    ),
    (
        "vicreg-fashion-mnist",
        include_str!("../../../recipes/vicreg-fashion-mnist.toml"),
    ),
];

/// A pre-training and evaluation recipe (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Short name (the file name without `.toml`).
    pub name: String,
    /// One line saying what the recipe does.
    pub description: String,
    /// Seed of initialization, batch order and augmentations.
    #[serde(default)]
    pub seed: u64,
    /// The data.
    pub data: DataSpec,
    /// The model.
    pub model: ModelSpec,
    /// The objective.
    pub objective: ObjectiveSpec,
    /// Optimizer, schedule, steps, batch size, clipping (the engine's `TrainConfig`).
    #[serde(default)]
    pub train: TrainConfig,
    /// Evaluations run by `finetune` and the demo.
    #[serde(default)]
    pub evaluate: EvaluateSpec,
    /// Causal LM: few-shot prompting on a labeled text set, run by `finetune` and the demo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub few_shot: Option<FewShotSpec>,
}

/// Which data, and how it is read: a built-in `dataset` or a user's own `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// A built-in data set (none when `source` is given). Images: `fashion-mnist` (full;
    /// `cargo xtask data`), `fashion-mnist-sample` (shipped 100 images) or `digits` (shipped
    /// scikit-learn digits, 8x8). Texts: `spam-assassin` (6,046 e-mails, ham/spam; `cargo
    /// xtask data`), `spam-sample` (shipped 40 e-mails) or `tweets` (38,158 tweets,
    /// negative/neutral/positive; `cargo xtask data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<BuiltinDataset>,
    /// The user's own data: `{ kind = "image-folder" | "idx" | "cifar" | "csv" | "text" |
    /// "jsonl" | "shards", ... }` (paths relative to the recipe file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DataSource>,
    /// Use at most this many unlabeled training items.
    #[serde(default)]
    pub max_unlabeled: Option<usize>,
    /// Normalize pixels with the data set's mean and standard deviation (a source's are
    /// fitted on up to 10,000 of its images; off for objectives that reconstruct pixels in
    /// `[0, 1]`).
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Causal LM: share of the documents (the last ones) held out to measure bits per byte
    /// beside n-gram baselines after training; default 0.05, 0 for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    /// Texts: tokens per text, `[CLS]` and `[SEP]` included (longer texts are truncated);
    /// causal LM: tokens per window (the block size); default 128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// Texts: how the WordPiece tokenizer is trained on the unlabeled training texts; default
    /// 8,000 tokens, lower-cased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerTrainConfig>,
}

impl DataSpec {
    /// Share of documents held out (causal LM).
    pub fn holdout(&self) -> f64 {
        self.holdout.unwrap_or(0.05)
    }

    /// Tokens per text (texts).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens.unwrap_or(128)
    }

    /// Tokenizer training settings (texts).
    pub fn tokenizer(&self) -> TokenizerTrainConfig {
        self.tokenizer.clone().unwrap_or_default()
    }
}

fn yes() -> bool {
    true
}

/// The model: a preset and overrides of its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `small-cnn-28`, `resnet10-narrow`, `vit-tiny-28`, `mlp-ae-digits`, `conv-ae-28`, or for
    /// text `bert-tiny`, `bert-mini`, `gpt-nano`, `gpt-micro`, `gpt-mini` or `gpt-small`
    /// (vocabulary and positions from the data section).
    pub preset: Preset,
    /// Fields of the preset's configuration to change.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub overrides: serde_json::Value,
    /// Start pre-training from the encoder of this run directory (one trained here, or a
    /// Hugging Face checkpoint made a run by `import-hf`) instead of a random initialization:
    /// its recipe must have this model, and a text run's tokenizer is used instead of training
    /// one. Objectives `mlm`, `clm`, `mae` and `simmim` (a MAE's decoder starts fresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
}

/// The objective: its kind and overrides of its preset configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveSpec {
    /// `simclr`, `moco`, `byol`, `simsiam`, `barlow-twins`, `vicreg`, `mae`, `simmim`, `dae`,
    /// `mlm` or `clm`.
    pub kind: ObjectiveKind,
    /// Augmentation of the two views (contrastive objectives): `simclr` or `byol`.
    #[serde(default)]
    pub augment: Option<String>,
    /// The views' augmentations spelled out step by step, in place of `augment`: one pipeline
    /// for both views, or two (first view, second view). The data set's normalization is
    /// appended to each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<Vec<Pipeline>>,
    /// Token masking of `mlm` (default BERT's: 15% of tokens, 80% `[MASK]`, 10% random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<TokenMasker>,
    /// Fields of the objective's preset configuration to change.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub overrides: serde_json::Value,
}

/// The evaluations after pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateSpec {
    /// Labeled training items of a recipe with its own data (with `test`); without both, a
    /// stratified split of the labeled `data.source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<DataSource>,
    /// Labeled test items (with `train`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<DataSource>,
    /// Share of a labeled `data.source` held out for testing when `train` and `test` are not
    /// given (seeded, per class).
    pub test_fraction: f64,
    /// Strategies to run.
    pub strategies: Vec<Strategy>,
    /// Label budgets per class; `all_labels` adds the whole training split.
    pub labels_per_class: Vec<usize>,
    /// Also evaluate with every training label.
    pub all_labels: bool,
    /// Seeds of the labeled subsets.
    pub seeds: usize,
    /// Settings of each strategy.
    pub settings: StrategySettings,
}

impl Default for EvaluateSpec {
    fn default() -> Self {
        Self {
            train: None,
            test: None,
            test_fraction: 0.2,
            strategies: vec![Strategy::LinearProbe, Strategy::Knn],
            labels_per_class: vec![10, 100],
            all_labels: true,
            seeds: 3,
            settings: StrategySettings::default(),
        }
    }
}

impl Recipe {
    /// Parses TOML; `source_name` names the file in messages. Relative source paths are kept
    /// as written ([`Self::load`] resolves them against the file's folder).
    pub fn parse(text: &str, source_name: &str) -> Result<Self> {
        let recipe: Self = toml::from_str(text).map_err(|e| RecipeError::Parse {
            source_name: source_name.to_string(),
            message: e.to_string(),
        })?;
        match (recipe.data.dataset.is_none(), recipe.data.source.is_some()) {
            (true, false) => Err(RecipeError::field(
                "data",
                "name a built-in dataset or give a source table",
            )),
            (false, true) => Err(RecipeError::field(
                "data",
                "give either dataset or source, not both",
            )),
            _ => Ok(recipe),
        }
    }

    /// Makes the recipe's relative source paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let sources = [
            self.data.source.as_mut(),
            self.evaluate.train.as_mut(),
            self.evaluate.test.as_mut(),
        ];
        for source in sources.into_iter().flatten() {
            source.resolve_paths(base);
        }
        if let Some(dir) = self.model.init_from.as_mut().filter(|d| d.is_relative()) {
            *dir = base.join(&*dir);
        }
    }

    /// A built-in recipe by name, or a recipe file by path.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, &format!("built-in {name}"));
        }
        let path = Path::new(name_or_path);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| RecipeError::io(path, e))?;
            let mut recipe = Self::parse(&text, &path.display().to_string())?;
            let folder = match path.parent() {
                Some(folder) if !folder.as_os_str().is_empty() => folder,
                _ => Path::new("."),
            };
            let base = std::path::absolute(folder).map_err(|e| RecipeError::io(folder, e))?;
            recipe.resolve_paths(&base);
            return Ok(recipe);
        }
        Err(RecipeError::Unknown {
            name: name_or_path.to_string(),
            valid: BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Every built-in recipe.
    pub fn builtin() -> Result<Vec<Self>> {
        BUILTIN
            .iter()
            .map(|(name, text)| Self::parse(text, &format!("built-in {name}")))
            .collect()
    }

    /// The recipe as TOML (saved into run directories).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("recipes serialize")
    }
}
