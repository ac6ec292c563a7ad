//! `finetune <recipe> --from DIR`: evaluates the encoder a pre-training run wrote with the
//! recipe's (or the command line's) strategies, label budgets and seeds.

use pretrain::models::{FusedAutodiffBackend, FusedBackend};
use std::path::{Path, PathBuf};

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::data::Labeled;
use pretrain::data::batch::{ImageBatcher, TextBatcher};
use pretrain::finetune::{
    Backbone, FinetuneReport, FrozenFeatures, LabeledBatch, LabeledTask, Strategy, ToLabeled,
    evaluate_finetune, evaluate_frozen,
};
use pretrain::models::{ImageEncoderConfig, load_safetensors};
use pretrain::train::Precision;

use crate::data;
use crate::error::{RecipeError, Result};
use crate::models::{self, DataInputs, ModelConfig, TextInputs};
use crate::pretrain::{RECIPE_FILE, encoder_weights};
use crate::recipe::{EvaluateSpec, Recipe};
use pretrain::data::data_source::Modality;

/// How `finetune` runs.
#[derive(Debug, Clone, Default)]
pub struct FinetuneOptions {
    /// The pre-training run directory (its `recipe.toml` and `encoder.safetensors`); `None`
    /// evaluates the recipe's encoder freshly initialized (the random-init baseline).
    pub from: Option<PathBuf>,
    /// Where reports go (`<strategy>-<labels>.json`).
    pub out: PathBuf,
    /// No progress bars.
    pub quiet: bool,
}

/// Reads the recipe a run directory was trained with.
pub fn recipe_of_run(run_dir: &Path) -> Result<Recipe> {
    let path = run_dir.join(RECIPE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        RecipeError::io(
            &path,
            format!(
                "{e} (is {} a pre-training run directory?)",
                run_dir.display()
            ),
        )
    })?;
    Recipe::parse(&text, &path.display().to_string())
}

/// Runs `evaluate` on `recipe`'s encoder (pre-trained, from `options.from`), one report per
/// strategy and label budget, each also written to `options.out`.
pub fn run_finetune(
    recipe: &Recipe,
    evaluate: &EvaluateSpec,
    backend: BackendKind,
    options: &FinetuneOptions,
) -> Result<Vec<FinetuneReport>> {
    if evaluate.seeds == 0 || evaluate.strategies.is_empty() {
        return Err(RecipeError::field(
            "evaluate",
            "needs at least one seed and one strategy",
        ));
    }
    if let Some(from) = &options.from {
        let weights = encoder_weights(from);
        if !weights.is_file() {
            return Err(RecipeError::io(
                &weights,
                "missing: the pre-training run has not finished (resume it with --resume)",
            ));
        }
    }
    std::fs::create_dir_all(&options.out).map_err(|e| RecipeError::io(&options.out, e))?;
    let job = Job {
        recipe,
        evaluate,
        options,
    };
    pretrain::dispatch_backend!(backend, Precision::F32, job)?
}

struct Job<'a> {
    recipe: &'a Recipe,
    evaluate: &'a EvaluateSpec,
    options: &'a FinetuneOptions,
}

/// The encoder of `recipe`: loaded from `weights` when given, else freshly initialized. It is
/// fitted to `inputs` (image shape; text vocabulary and length from the run's tokenizer).
pub fn load_backbone<B: FusedBackend>(
    recipe: &Recipe,
    inputs: DataInputs,
    weights: Option<&Path>,
    device: &B::Device,
) -> Result<Backbone<B>> {
    let model = models::resolve(&recipe.model, inputs)?;
    let masked_image = recipe.objective.kind.masks_images();
    Ok(match model {
        // MAE and SimMIM save their ViT itself, not the image-encoder enum around it.
        ModelConfig::Image(ImageEncoderConfig::Vit(vit)) if masked_image => {
            let mut encoder = vit.init(device)?;
            if let Some(path) = weights {
                encoder = load_safetensors(encoder, path)?;
            }
            Backbone::Image(pretrain::models::ImageEncoder::Vit(encoder))
        }
        ModelConfig::Image(config) => {
            let mut encoder = config.init(device)?;
            if let Some(path) = weights {
                encoder = load_safetensors(encoder, path)?;
            }
            Backbone::Image(encoder)
        }
        ModelConfig::Autoencoder(config) => {
            let mut model = config.init(device)?;
            if let Some(path) = weights {
                model = load_safetensors(model, path)?;
            }
            Backbone::Autoencoder(model)
        }
        ModelConfig::Text(config) => {
            let mut bert = config.init(device)?;
            if let Some(path) = weights {
                bert = load_safetensors(bert, path)?;
            }
            Backbone::Text(bert)
        }
        ModelConfig::Decoder(config) => {
            let mut gpt = config.init(device)?;
            if let Some(path) = weights {
                gpt = load_safetensors(gpt, path)?;
            }
            Backbone::Decoder(gpt)
        }
    })
}

impl BackendTask for Job<'_> {
    type Output = Result<Vec<FinetuneReport>>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let spec = &self.recipe.data;
        if data::modality(spec)? == Modality::Texts {
            let texts = data::load_text(self.recipe)?;
            let tokenizer = data::tokenizer(spec, self.options.from.as_deref())?;
            let task = data::tokenize(&texts, &tokenizer, spec)?;
            let text = TextInputs {
                vocab_size: tokenizer.vocab_size(),
                max_tokens: spec.max_tokens(),
            };
            self.evaluate::<B, _, _>(
                &task,
                &ToLabeled(TextBatcher),
                DataInputs::Text(text),
                &device,
            )
        } else {
            let task = data::load(self.recipe)?;
            let first = task.train.first().ok_or_else(|| {
                RecipeError::field("evaluate", "the labeled training split is empty")
            })?;
            let shape = [first.image.channels, first.image.height, first.image.width];
            let batcher = ToLabeled(ImageBatcher {
                normalize: data::normalization(spec)?,
            });
            self.evaluate::<B, _, _>(&task, &batcher, DataInputs::Images(shape), &device)
        }
    }
}

impl Job<'_> {
    /// Every strategy at every budget on `task`, each report also written to `options.out`.
    fn evaluate<B, I, T>(
        self,
        task: &LabeledTask<I>,
        batcher: &T,
        inputs: DataInputs,
        device: &B::Device,
    ) -> Result<Vec<FinetuneReport>>
    where
        B: FusedAutodiffBackend,
        I: Labeled + Clone + Send + Sync + std::fmt::Debug + 'static,
        T: Batcher<B, I, LabeledBatch<B>>
            + Batcher<B::InnerBackend, I, LabeledBatch<B::InnerBackend>>
            + Clone
            + 'static,
    {
        let Job {
            recipe,
            evaluate,
            options,
        } = self;
        let weights = options.from.as_ref().map(|dir| encoder_weights(dir));
        let feature_dim = models::resolve(&recipe.model, inputs)?.feature_dim();
        let budgets: Vec<Option<usize>> = evaluate
            .labels_per_class
            .iter()
            .map(|&k| Some(k))
            .chain(evaluate.all_labels.then_some(None))
            .collect();
        let seeds: Vec<u64> = (0..evaluate.seeds as u64).collect();
        let settings = &evaluate.settings;
        let mut frozen: Option<FrozenFeatures<B::InnerBackend>> = None;
        let mut reports = Vec::new();
        for &strategy in &evaluate.strategies {
            for &budget in &budgets {
                let report = if strategy.is_frozen() {
                    if frozen.is_none() {
                        B::seed(device, recipe.seed);
                        let encoder = load_backbone::<B::InnerBackend>(
                            recipe,
                            inputs,
                            weights.as_deref(),
                            device,
                        )?;
                        let batch = settings.linear_probe.batch_size;
                        frozen = Some(FrozenFeatures::extract(
                            &encoder, task, batcher, batch, device,
                        )?);
                    }
                    let features = frozen.as_ref().expect("extracted above");
                    evaluate_frozen(strategy, features, task, budget, &seeds, settings)?
                } else {
                    evaluate_finetune::<B, _, _>(
                        strategy,
                        || {
                            load_backbone::<B>(recipe, inputs, weights.as_deref(), device).map_err(
                                |e| pretrain::finetune::FinetuneError::Config {
                                    field: "encoder",
                                    message: e.to_string(),
                                },
                            )
                        },
                        feature_dim,
                        task,
                        batcher,
                        budget,
                        &seeds,
                        settings,
                        &options.out.join("runs"),
                        options.quiet,
                        device,
                    )?
                };
                let labels = budget.map_or("all".to_string(), |k| k.to_string());
                let path = options.out.join(format!("{strategy}-{labels}.json"));
                report.save(&path)?;
                reports.push(report);
            }
        }
        Ok(reports)
    }
}

/// Parses strategy names (`linear-probe,knn`).
pub fn parse_strategies(names: &[String]) -> Result<Vec<Strategy>> {
    names
        .iter()
        .map(|n| Strategy::parse(n).map_err(RecipeError::from))
        .collect()
}
