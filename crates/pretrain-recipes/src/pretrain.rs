//! `pretrain <recipe>`: builds the recipe's data, model and objective and runs the engine.

use pretrain::models::{FusedAutodiffBackend, FusedBackend};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::data::dataset::{Dataset, InMemDataset};
use pretrain::burn::module::AutodiffModule;
use pretrain::data::Named;
use pretrain::data::augment::{AugmentOp, AugmentedDataset, MultiView, Pipeline};
use pretrain::data::batch::{TextBatcher, ViewsBatcher};
use pretrain::data::data_source::Modality;
use pretrain::data::mask::MaskedImageBatcher;
use pretrain::data::packed::{CausalBatcher, PackedWindows, pack_texts};
use pretrain::data::shards::{PackedShards, TokenStream};
use pretrain::data::text_dataset::{MlmDataset, MlmTokenDataset};
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::models::{ImageEncoderConfig, MaeConfig, load_safetensors};
use pretrain::objectives::{
    BarlowTwinsConfig, ByolConfig, CausalLmConfig, DenoisingConfig, MaeObjectiveConfig,
    MaskedImageConfig, MlmConfig, MoCoConfig, SimClrConfig, SimMimConfig, SimSiamConfig,
    VicRegConfig,
};
use pretrain::train::{Pretrainer, RunOptions, TrainData, TrainError, TrainObjective};
use serde::Serialize;

use crate::data::{self, PretrainImages, PretrainTexts};
use crate::dataset::{BuiltinDataset, Holds};
use crate::error::{RecipeError, Result};
use crate::heldout::{HeldOutReport, evaluate_heldout};
use crate::models::{self, DataInputs, ModelConfig, TextInputs};
use crate::objective::ObjectiveKind;
use crate::overrides::apply;
use crate::recipe::{ObjectiveSpec, Recipe};

/// Where a causal-LM run writes its held-out evaluation.
pub const HELDOUT_FILE: &str = "heldout.json";

/// The training and held-out parts of a packed token stream, with their bytes per token.
struct StreamSpans {
    train: std::ops::Range<usize>,
    held: std::ops::Range<usize>,
    train_bytes_per_token: f64,
    held_bytes_per_token: f64,
}

/// The file a run directory keeps its recipe in (read back by `finetune --from`).
pub const RECIPE_FILE: &str = "recipe.toml";

/// How `pretrain` runs (not part of the recipe).
#[derive(Debug, Clone, Default)]
pub struct PretrainOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue from the run directory's latest checkpoint.
    pub resume: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Raised (by Ctrl-C) to stop with a checkpoint.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Replace the recipe's steps by this many passes over the unlabeled images.
    pub epochs: Option<usize>,
    /// Stop after this many steps with a checkpoint, as an interruption would (the schedule
    /// still spans the recipe's steps; `resume` continues).
    pub stop_after: Option<usize>,
    /// This process's worker of a data-parallel run (rank 0 writes the run directory).
    pub parallel: Option<pretrain::train::DataParallel>,
}

/// What a pre-training run did.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainSummary {
    /// The recipe's name.
    pub recipe: String,
    /// Backend it ran on.
    pub backend: String,
    /// Run directory.
    pub run_dir: PathBuf,
    /// Optimizer steps completed (resumed steps included).
    pub steps_done: usize,
    /// Whether every step of the recipe ran.
    pub finished: bool,
    /// Mean loss of the first and last tenth of this call's steps.
    pub loss_start_end: (f64, f64),
    /// Wall-clock seconds of this call.
    pub seconds: f64,
    /// Causal LM: bits per byte on the held-out documents, beside n-gram baselines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout: Option<HeldOutReport>,
}

/// Pre-trains `recipe` on `backend` (in the recipe's precision).
pub fn run_pretrain(
    recipe: &Recipe,
    backend: BackendKind,
    options: &PretrainOptions,
) -> Result<PretrainSummary> {
    let saved = options.out.join(RECIPE_FILE);
    if options.resume && saved.is_file() {
        // Before any data is read: a refused resume costs nothing.
        check_resumable(&crate::recipe_of_run(&options.out)?, recipe, &saved)?;
    }
    std::fs::create_dir_all(&options.out).map_err(|e| RecipeError::io(&options.out, e))?;
    pretrain::dispatch_backend!(backend, recipe.train.precision, Job { recipe, options })?
}

struct Job<'a> {
    recipe: &'a Recipe,
    options: &'a PretrainOptions,
}

impl BackendTask for Job<'_> {
    type Output = Result<PretrainSummary>;

    fn run<B: FusedAutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Self::Output {
        let Job { recipe, options } = self;
        let spec = &recipe.objective;
        check_objective_fields(spec)?;
        check_init_from(recipe)?;
        if data::modality(&recipe.data)? == Modality::Texts {
            // Refused before the texts are read and the tokenizer trained.
            if !spec.kind.is_text() {
                return Err(RecipeError::field(
                    "objective.kind",
                    format!(
                        "{} needs images; text data pre-trains with mlm or clm",
                        spec.kind.name()
                    ),
                ));
            }
            let given = match &recipe.model.init_from {
                Some(dir) => Some(TextTokenizer::from_file(&dir.join(data::TOKENIZER_FILE))?),
                None => None,
            };
            let texts = data::pretrain_texts(&recipe.data, given)?;
            let recipe = &as_run(recipe, options, texts.len())?;
            texts
                .tokenizer()
                .save(&options.out.join(data::TOKENIZER_FILE))?;
            B::seed(&device, recipe.seed);
            let run = Runner {
                recipe,
                options,
                kind,
                device: &device,
            };
            return match spec.kind {
                ObjectiveKind::Clm => run.causal::<B>(texts),
                _ => run.texts::<B>(texts),
            };
        }
        if spec.kind.is_text() {
            return Err(RecipeError::field(
                "data",
                format!(
                    "objective {} needs text data (a text source, or one of {})",
                    spec.kind,
                    BuiltinDataset::names_holding(Holds::LabeledTexts)
                ),
            ));
        }
        let PretrainImages {
            images,
            shape,
            normalize,
        } = data::pretrain_images(&recipe.data)?;
        let recipe = &as_run(recipe, options, images.len())?;
        let clean = normalize.clone().map(Pipeline::eval).unwrap_or_default();
        B::seed(&device, recipe.seed);
        let run = Runner {
            recipe,
            options,
            kind,
            device: &device,
        };
        let spec = &recipe.objective;
        let f = "objective.overrides";
        let seed = recipe.seed;
        // Masked-image objectives: the data masks the ViT's patches.
        // `$encoder` is the objective's ViT, which `model.init_from` starts from that run's.
        macro_rules! masked {
            ($config:expr, $($encoder:ident).+) => {{
                let config = apply(&$config, &spec.overrides, f)?;
                let masked = config.masked_data(images, clean, seed)?;
                let mut objective = config.init::<B>(&device)?;
                objective.$($encoder).+ = init_from(recipe, objective.$($encoder).+)?;
                run.train(objective, &config, masked, MaskedImageBatcher)
                    .map(|(summary, _)| summary)
            }};
        }
        let model = models::resolve(&recipe.model, DataInputs::Images(shape))?;
        let kind = spec.kind;
        let vit = || match &model {
            ModelConfig::Image(ImageEncoderConfig::Vit(vit)) => Ok(vit.clone()),
            _ => Err(needs(kind, "a ViT (preset vit-tiny-28)")),
        };
        let encoder = || match &model {
            ModelConfig::Image(encoder) => Ok(encoder.clone()),
            ModelConfig::Autoencoder(_) => Err(needs(kind, "an image encoder, not an autoencoder")),
            ModelConfig::Text(_) | ModelConfig::Decoder(_) => {
                Err(needs(kind, "an image encoder, not a text model"))
            }
        };
        // Contrastive objectives: two augmented views of each image; `$config` is built from
        // the encoder and its feature width.
        macro_rules! contrastive {
            (|$encoder:ident, $width:ident| $config:expr) => {{
                let $encoder = encoder()?;
                let $width = $encoder.feature_dim();
                let config = apply(&$config, &spec.overrides, f)?;
                let views =
                    AugmentedDataset::new(images, two_views(spec, shape, normalize)?, seed)?;
                run.train(config.init::<B>(&device)?, &config, views, ViewsBatcher)
                    .map(|(summary, _)| summary)
            }};
        }
        match kind {
            ObjectiveKind::Mae => {
                masked!(
                    MaeObjectiveConfig::new(MaeConfig::new(vit()?)),
                    model.encoder
                )
            }
            ObjectiveKind::Simmim => masked!(SimMimConfig::new(vit()?), encoder),
            ObjectiveKind::Dae => {
                let ModelConfig::Autoencoder(ae) = model else {
                    return Err(needs(kind, "an autoencoder (mlp-ae-digits, conv-ae-28)"));
                };
                let config: DenoisingConfig = apply(&DenoisingConfig::new(ae), &spec.overrides, f)?;
                let views = AugmentedDataset::new(images, config.views(clean), seed)?;
                run.train(config.init::<B>(&device)?, &config, views, ViewsBatcher)
                    .map(|(summary, _)| summary)
            }
            ObjectiveKind::Simclr => contrastive!(|e, _w| SimClrConfig::simclr(e)),
            ObjectiveKind::Moco => contrastive!(|e, _w| MoCoConfig::moco_v2(e)),
            ObjectiveKind::Byol => contrastive!(|e, w| ByolConfig::byol(e, 2 * w, 128)),
            ObjectiveKind::Simsiam => contrastive!(|e, w| SimSiamConfig::simsiam(e, w)),
            ObjectiveKind::BarlowTwins => {
                contrastive!(|e, w| BarlowTwinsConfig::barlow_twins(e, 2 * w))
            }
            ObjectiveKind::Vicreg => contrastive!(|e, w| VicRegConfig::vicreg(e, 2 * w)),
            // Refused above, before the data were read.
            ObjectiveKind::Mlm | ObjectiveKind::Clm => Err(needs(kind, "text data")),
        }
    }
}

/// `recipe` as it runs (steps resolved from `--epochs` over `unlabeled` items), its training
/// settings checked, then saved into the run directory for `finetune --from`: nothing is
/// written before every check has passed (a resume's recipe was compared with the saved one
/// first, in `run_pretrain`).
fn as_run(recipe: &Recipe, options: &PretrainOptions, unlabeled: usize) -> Result<Recipe> {
    let mut recipe = recipe.clone();
    if let Some(epochs) = options.epochs {
        if epochs == 0 {
            return Err(RecipeError::option("--epochs", "must be at least 1"));
        }
        recipe.train.steps = recipe.train.steps_for_epochs(epochs, unlabeled);
    }
    recipe.train.validate().map_err(|e| match e {
        TrainError::Config { field, message } => {
            RecipeError::field(format!("train.{field}"), message)
        }
        other => other.into(),
    })?;
    let leader = options.parallel.as_ref().is_none_or(|p| p.is_leader());
    if leader {
        let path = options.out.join(RECIPE_FILE);
        std::fs::write(&path, recipe.to_toml()).map_err(|e| RecipeError::io(&path, e))?;
    }
    Ok(recipe)
}

/// Refuses a resume whose recipe differs from the saved one (`saved`, read from `path`) in
/// anything but what may change between the parts of one run: the steps (to train further),
/// the description and the evaluations. Any other change (seed, data, model, objective,
/// optimizer, schedule, batch) would make the resumed run differ from an uninterrupted one.
fn check_resumable(saved: &Recipe, asked: &Recipe, path: &Path) -> Result<()> {
    let comparable = |recipe: &Recipe| {
        let mut recipe = recipe.clone();
        recipe.train.steps = 0;
        recipe.description.clear();
        recipe.evaluate = Default::default();
        serde_json::to_value(&recipe).expect("recipes serialize")
    };
    match pretrain::train::checkpoint::first_difference(&comparable(saved), &comparable(asked)) {
        None => Ok(()),
        Some(d) => Err(RecipeError::Resume {
            path: path.to_path_buf(),
            difference: format!("{}: saved {} vs asked {}", d.path, d.saved, d.now),
        }),
    }
}

/// Refuses a `model.init_from` that cannot start this recipe: an objective other than mlm,
/// clm, mae and simmim, a directory that is not a finished run, or a run of another model.
fn check_init_from(recipe: &Recipe) -> Result<()> {
    let Some(dir) = &recipe.model.init_from else {
        return Ok(());
    };
    let field = "model.init_from";
    let kind = recipe.objective.kind;
    if !matches!(
        kind,
        ObjectiveKind::Mlm | ObjectiveKind::Clm | ObjectiveKind::Mae | ObjectiveKind::Simmim
    ) {
        return Err(RecipeError::field(
            field,
            format!("starts mlm, clm, mae and simmim runs, not {kind}"),
        ));
    }
    let init = crate::recipe_of_run(dir)?;
    if (init.model.preset, &init.model.overrides) != (recipe.model.preset, &recipe.model.overrides)
    {
        return Err(RecipeError::field(
            field,
            format!(
                "{} holds a {} with overrides {}, not the recipe's {} with {}: pre-train with \
                 that run's recipe.toml",
                dir.display(),
                init.model.preset,
                init.model.overrides,
                recipe.model.preset,
                recipe.model.overrides
            ),
        ));
    }
    if init.data.tokenizer != recipe.data.tokenizer {
        return Err(RecipeError::field(
            "data.tokenizer",
            format!(
                "differs from {}'s, whose tokenizer a run started from it keeps",
                dir.display()
            ),
        ));
    }
    let weights = encoder_weights(dir);
    if !weights.is_file() {
        return Err(RecipeError::io(
            &weights,
            "missing: that run has not finished",
        ));
    }
    Ok(())
}

/// `module` with the weights of the run `model.init_from` names, if any.
fn init_from<B: FusedBackend, M: pretrain::burn::module::Module<B>>(
    recipe: &Recipe,
    module: M,
) -> Result<M> {
    match &recipe.model.init_from {
        Some(dir) => Ok(load_safetensors(module, &encoder_weights(dir))?),
        None => Ok(module),
    }
}

fn needs(kind: ObjectiveKind, what: &str) -> RecipeError {
    RecipeError::field(
        "model.preset",
        format!("objective {} needs {what}", kind.name()),
    )
}

/// Refuses objective fields the objective would ignore: augmentations outside the contrastive
/// objectives, token masking outside `mlm`.
fn check_objective_fields(spec: &ObjectiveSpec) -> Result<()> {
    let contrastive = spec.kind.is_contrastive();
    let unused = [
        ("objective.augment", spec.augment.is_some() && !contrastive),
        ("objective.views", spec.views.is_some() && !contrastive),
        (
            "objective.mask",
            spec.mask.is_some() && spec.kind != ObjectiveKind::Mlm,
        ),
    ];
    match unused.iter().find(|(_, unused)| *unused) {
        Some((field, _)) => Err(RecipeError::field(
            *field,
            format!(
                "objective {} does not use it (augmentations apply to the contrastive \
                 objectives, token masking to mlm)",
                spec.kind
            ),
        )),
        None => Ok(()),
    }
}

/// The two augmented views of a contrastive objective on square images of `shape`
/// (`[channels, size, size]`): the pipelines spelled out in `objective.views`, checked against
/// it, or the named `objective.augment` (default `simclr`).
fn two_views(
    spec: &ObjectiveSpec,
    shape: [usize; 3],
    normalize: Option<pretrain::data::augment::Normalize>,
) -> Result<MultiView> {
    let size = shape[1];
    let normalize = normalize.unwrap_or_else(|| pretrain::data::augment::Normalize {
        mean: vec![0.0],
        std: vec![1.0],
    });
    if let Some(views) = &spec.views {
        if spec.augment.is_some() {
            return Err(RecipeError::field(
                "objective.views",
                "give either objective.augment or objective.views, not both",
            ));
        }
        let normalized = |pipeline: &Pipeline| {
            let mut steps = pipeline.steps.clone();
            steps.push(AugmentOp::Normalize(normalize.clone()));
            Pipeline::new(steps)
        };
        let views = match views.as_slice() {
            [both] => MultiView::two_views(normalized(both)),
            [first, second] => MultiView::asymmetric(normalized(first), normalized(second)),
            other => {
                return Err(RecipeError::field(
                    "objective.views",
                    format!(
                        "{} pipelines given; give one (both views) or two",
                        other.len()
                    ),
                ));
            }
        };
        views
            .check(shape)
            .map_err(|e| RecipeError::field("objective.views", e.to_string()))?;
        return Ok(views);
    }
    Ok(match spec.augment.as_deref().unwrap_or("simclr") {
        "simclr" => MultiView::two_views(Pipeline::simclr(size, normalize)),
        "byol" => MultiView::asymmetric(
            Pipeline::byol_view(size, 1.0, 0.0, normalize.clone()),
            Pipeline::byol_view(size, 0.1, 0.2, normalize),
        ),
        other => {
            return Err(RecipeError::field(
                "objective.augment",
                format!("unknown augmentation {other:?}; valid: simclr, byol"),
            ));
        }
    })
}

struct Runner<'a, D> {
    recipe: &'a Recipe,
    options: &'a PretrainOptions,
    kind: BackendKind,
    device: &'a D,
}

impl<Dev: Clone + Send + Sync> Runner<'_, Dev> {
    /// Masked language modeling (the only text objective) on `texts`.
    fn texts<B: FusedAutodiffBackend<Device = Dev>>(
        self,
        texts: PretrainTexts,
    ) -> Result<PretrainSummary> {
        let spec = &self.recipe.objective;
        let max_tokens = self.recipe.data.max_tokens();
        let tokenizer = texts.tokenizer().clone();
        let inputs = TextInputs {
            vocab_size: tokenizer.vocab_size(),
            max_tokens,
        };
        let ModelConfig::Text(bert) =
            models::resolve(&self.recipe.model, DataInputs::Text(inputs))?
        else {
            return Err(needs(
                ObjectiveKind::Mlm,
                "a text encoder (bert-tiny, bert-mini)",
            ));
        };
        let config = apply(
            &MlmConfig::new(bert),
            &spec.overrides,
            "objective.overrides",
        )?;
        let masker = spec.mask.clone().unwrap_or_default();
        let seed = self.recipe.seed;
        let mut objective = config.init::<B>(self.device)?;
        objective.model = init_from(self.recipe, objective.model)?;
        match texts {
            PretrainTexts::Texts { texts, .. } => {
                let data = MlmDataset::new(
                    InMemDataset::new(texts),
                    &tokenizer,
                    max_tokens,
                    masker,
                    seed,
                )?;
                self.train(objective, &config, data, TextBatcher)
                    .map(|(summary, _)| summary)
            }
            PretrainTexts::Shards(shards) => {
                let data = MlmTokenDataset::new(*shards, &tokenizer, max_tokens, masker, seed)
                    .map_err(|e| RecipeError::field("objective.mask", e.to_string()))?;
                self.train(objective, &config, data, TextBatcher)
                    .map(|(summary, _)| summary)
            }
        }
    }

    /// Causal language modeling on `texts`, packed (documents joined by `[SEP]` as the
    /// end-of-text token) into windows of `data.max_tokens` predicted tokens; the last
    /// `data.holdout` of the documents are held out and evaluated after training.
    fn causal<B: FusedAutodiffBackend<Device = Dev>>(
        self,
        texts: PretrainTexts,
    ) -> Result<PretrainSummary> {
        let tokenizer = texts.tokenizer().clone();
        let eot = tokenizer.specials().sep.ok_or_else(|| {
            RecipeError::field("data.tokenizer", "has no [SEP] token to end documents with")
        })?;
        let holdout = self.recipe.data.holdout();
        if !(0.0..=0.5).contains(&holdout) {
            return Err(RecipeError::field(
                "data.holdout",
                format!("{holdout} is not between 0 and 0.5"),
            ));
        }
        let held_docs = |n: usize| match n {
            _ if holdout == 0.0 || n < 2 => 0,
            n => ((n as f64 * holdout).round() as usize).clamp(1, n - 1),
        };
        match texts {
            PretrainTexts::Texts { texts, .. } => {
                let refs: Vec<&str> = texts.iter().map(|t| t.text.as_str()).collect();
                let (train, held) = refs.split_at(refs.len() - held_docs(refs.len()));
                // Bytes per token of some texts packed into `stream`, without its separators.
                let pack = |texts: &[&str], stream: &mut Vec<u32>| -> Result<f64> {
                    let before = stream.len();
                    stream.extend(pack_texts(&tokenizer, texts, eot)?);
                    let tokens = stream.len() - before - texts.len();
                    let bytes: usize = texts.iter().map(|t| t.len()).sum();
                    Ok(bytes as f64 / tokens.max(1) as f64)
                };
                let mut stream = Vec::new();
                let train_bytes_per_token = pack(train, &mut stream)?;
                let boundary = stream.len();
                let held_bytes_per_token = pack(held, &mut stream)?;
                let spans = StreamSpans {
                    train: 0..boundary,
                    held: boundary..stream.len(),
                    train_bytes_per_token,
                    held_bytes_per_token,
                };
                self.packed::<B, _>(Arc::new(stream), spans, &tokenizer)
            }
            PretrainTexts::Shards(shards) => {
                let bytes_per_token = shards.bytes_per_token();
                let boundary = shards.packed_start(shards.len() - held_docs(shards.len()));
                let stream = PackedShards {
                    shards: *shards,
                    eot,
                };
                let spans = StreamSpans {
                    train: 0..boundary,
                    held: boundary..stream.stream_len(),
                    train_bytes_per_token: bytes_per_token,
                    held_bytes_per_token: bytes_per_token,
                };
                self.packed::<B, _>(Arc::new(stream), spans, &tokenizer)
            }
        }
    }

    fn packed<B: FusedAutodiffBackend<Device = Dev>, S: TokenStream + 'static>(
        self,
        stream: Arc<S>,
        spans: StreamSpans,
        tokenizer: &pretrain::data::tokenizer::TextTokenizer,
    ) -> Result<PretrainSummary> {
        let block = self.recipe.data.max_tokens();
        let inputs = TextInputs {
            vocab_size: tokenizer.vocab_size(),
            max_tokens: block,
        };
        let ModelConfig::Decoder(gpt) =
            models::resolve(&self.recipe.model, DataInputs::Text(inputs))?
        else {
            return Err(needs(
                ObjectiveKind::Clm,
                "a GPT decoder (gpt-nano, gpt-micro, gpt-mini, gpt-small)",
            ));
        };
        let config = apply(
            &CausalLmConfig::new(gpt)
                .with_bytes_per_token(spans.train_bytes_per_token)
                .with_end_of_text(tokenizer.specials().sep),
            &self.recipe.objective.overrides,
            "objective.overrides",
        )?;
        let data = PackedWindows::new(stream.clone(), spans.train.clone(), block)
            .map_err(|e| RecipeError::field("data.max_tokens", e.to_string()))?;
        let mut objective = config.init::<B>(self.device)?;
        objective.model = init_from(self.recipe, objective.model)?;
        let run_dir = self.options.out.clone();
        let leader = self.options.parallel.as_ref().is_none_or(|p| p.is_leader());
        let (mut summary, objective) = self.train(objective, &config, data, CausalBatcher)?;
        if summary.finished && leader && !spans.held.is_empty() {
            let report = evaluate_heldout(
                &objective.model.valid(),
                stream,
                spans.train,
                spans.held,
                block,
                inputs.vocab_size,
                spans.held_bytes_per_token,
            )?;
            let path = run_dir.join(HELDOUT_FILE);
            let json = serde_json::to_string_pretty(&report).expect("reports serialize");
            std::fs::write(&path, json).map_err(|e| RecipeError::io(&path, e))?;
            summary.heldout = Some(report);
        }
        Ok(summary)
    }

    /// Runs the engine on `objective` over `data`; returns the summary and the trained
    /// objective.
    fn train<B, O, C, I, D, T>(
        self,
        objective: O,
        config: &C,
        data: D,
        batcher: T,
    ) -> Result<(PretrainSummary, O)>
    where
        B: FusedAutodiffBackend<Device = Dev>,
        O: TrainObjective<B>,
        C: Serialize,
        I: Send + 'static,
        D: TrainData<I>,
        T: Batcher<B, I, O::Batch> + 'static,
    {
        let started = Instant::now();
        let mut train = self.recipe.train.clone();
        train.seed = self.recipe.seed;
        let outcome = Pretrainer::new(objective, data, batcher)
            .config(&train)
            .objective_config(&serde_json::json!({
                "kind": self.recipe.objective.kind,
                "config": config,
            }))
            .run_dir(&self.options.out)
            .options(RunOptions {
                quiet: self.options.quiet,
                resume: self.options.resume,
                stop: self.options.stop.clone(),
                stop_after: self.options.stop_after,
                parallel: self.options.parallel.clone(),
            })
            .run(self.device)?;
        let summary = PretrainSummary {
            recipe: self.recipe.name.clone(),
            backend: self.kind.name().to_string(),
            run_dir: self.options.out.clone(),
            steps_done: outcome.steps_done,
            finished: outcome.finished,
            loss_start_end: start_end(&outcome.losses),
            seconds: started.elapsed().as_secs_f64(),
            heldout: None,
        };
        Ok((summary, outcome.objective))
    }
}

fn start_end(losses: &[f64]) -> (f64, f64) {
    let finite: Vec<f64> = losses.iter().copied().filter(|l| l.is_finite()).collect();
    let tenth = (finite.len() / 10).max(1).min(finite.len().max(1));
    let mean = |s: &[f64]| {
        if s.is_empty() {
            f64::NAN
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        }
    };
    (
        mean(&finite[..tenth.min(finite.len())]),
        mean(&finite[finite.len().saturating_sub(tenth)..]),
    )
}

/// The encoder weights a finished (or stopped) run wrote.
pub fn encoder_weights(run_dir: &Path) -> PathBuf {
    run_dir.join("encoder.safetensors")
}
