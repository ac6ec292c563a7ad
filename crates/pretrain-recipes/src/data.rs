//! A recipe's data: a built-in data set by name, or a user's own source (`data.source`,
//! [`DataSource`]); the unlabeled items pre-training reads (read in place for shards), and
//! the labeled train/test splits evaluations read (built-in splits, `[evaluate] train` and
//! `test` sources, or a seeded stratified split of a labeled source).

use std::path::Path;

use pretrain::burn::data::dataset::transform::PartialDataset;
use pretrain::burn::data::dataset::{Dataset, InMemDataset};
use pretrain::data::augment::Normalize;
use pretrain::data::batch::TokenizedItem;
use pretrain::data::data_source::{DataSource, Modality, SourceItems};
use pretrain::data::shards::{ImageShards, TokenShards};
use pretrain::data::split::SplitFractions;
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::data::{ImageItem, TextItem};
use pretrain::finetune::LabeledTask;

use crate::dataset::BuiltinDataset;
use crate::error::{RecipeError, Result};
use crate::recipe::{DataSpec, Recipe};

/// The file a text run directory keeps its tokenizer in.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The built-in data set of `spec` (a recipe without a source names one; [`Recipe::parse`]
/// checks it).
fn builtin(spec: &DataSpec) -> Result<BuiltinDataset> {
    spec.dataset
        .ok_or_else(|| RecipeError::field("data", "name a built-in dataset or give a source table"))
}

/// A [`DataError`](pretrain::data::DataError) of reading `field`'s source, naming the field.
fn in_field(field: &str) -> impl Fn(pretrain::data::DataError) -> RecipeError + '_ {
    move |e| RecipeError::field(field, e.to_string())
}

/// Whether the recipe's data are images or texts (checked against the objective before any
/// data is read).
pub fn modality(spec: &DataSpec) -> Result<Modality> {
    match &spec.source {
        Some(source) => source.modality().map_err(in_field("data.source")),
        None => Ok(builtin(spec)?.modality()),
    }
}

/// The labeled splits evaluations use: the built-in data set's, the `[evaluate] train` and
/// `test` sources, or a stratified split of the labeled `data.source`.
pub fn load(recipe: &Recipe) -> Result<LabeledTask<ImageItem>> {
    match &recipe.data.source {
        None => builtin(&recipe.data)?.labeled_images(),
        Some(_) => labeled_sources(recipe, |source, field| {
            source.read_images().map_err(in_field(field))
        }),
    }
}

/// The labeled splits of a recipe with its own data, read by `read` (images or texts).
fn labeled_sources<I: Clone + pretrain::data::Labeled>(
    recipe: &Recipe,
    read: impl Fn(&DataSource, &str) -> Result<SourceItems<I>>,
) -> Result<LabeledTask<I>> {
    let evaluate = &recipe.evaluate;
    let labeled = |items: SourceItems<I>, field: &str| -> Result<SourceItems<I>> {
        if items.classes.is_empty() {
            return Err(RecipeError::field(
                field,
                "has no labels: evaluations need a labeled source (labels = \"subfolders\", \
                 a label file, column or field)",
            ));
        }
        Ok(items)
    };
    let name = recipe.name.clone();
    match (&evaluate.train, &evaluate.test) {
        (Some(train), Some(test)) => {
            let train = labeled(read(train, "evaluate.train")?, "evaluate.train")?;
            let test = labeled(read(test, "evaluate.test")?, "evaluate.test")?;
            if train.classes != test.classes {
                return Err(RecipeError::field(
                    "evaluate.test",
                    format!(
                        "classes {:?} differ from evaluate.train's {:?}",
                        test.classes, train.classes
                    ),
                ));
            }
            Ok(LabeledTask {
                name,
                num_classes: train.classes.len(),
                train: train.items,
                test: test.items,
            })
        }
        (None, None) => {
            let source = recipe.data.source.as_ref().expect("a source recipe");
            let all = labeled(read(source, "data.source")?, "data.source")?;
            let fraction = evaluate.test_fraction;
            if !(fraction > 0.0 && fraction < 1.0) {
                return Err(RecipeError::field(
                    "evaluate.test_fraction",
                    format!("{fraction} is not between 0 and 1"),
                ));
            }
            split_task(name, all.items, all.classes.len(), 1.0 - fraction, fraction)
        }
        (Some(_), None) | (None, Some(_)) => Err(RecipeError::field(
            if evaluate.train.is_some() {
                "evaluate.test"
            } else {
                "evaluate.train"
            },
            "give both evaluate.train and evaluate.test, or neither (a split of data.source)",
        )),
    }
}

/// `items` split per class (seed 0, so every recipe and run tests on the same items).
pub(crate) fn split_task<I: Clone + pretrain::data::Labeled>(
    name: String,
    items: Vec<I>,
    num_classes: usize,
    train: f64,
    test: f64,
) -> Result<LabeledTask<I>> {
    let labels: Vec<Option<usize>> = items.iter().map(|i| i.label()).collect();
    let split = SplitFractions {
        train,
        validation: 0.0,
        test,
    }
    .split_stratified(&labels, 0)?;
    let pick =
        |indices: &[usize]| -> Vec<I> { indices.iter().map(|&i| items[i].clone()).collect() };
    Ok(LabeledTask {
        name,
        train: pick(&split.train),
        test: pick(&split.test),
        num_classes,
    })
}

/// The unlabeled images pre-training reads, with their shape and pixel normalization.
pub struct PretrainImages {
    /// The images (read in place for shards), capped at `data.max_unlabeled`.
    pub images: Box<dyn Dataset<ImageItem>>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// The normalization every pipeline ends with (none when `data.normalize` is off).
    pub normalize: Option<Normalize>,
}

/// The unlabeled pre-training images of `spec`.
pub fn pretrain_images(spec: &DataSpec) -> Result<PretrainImages> {
    let images: Box<dyn Dataset<ImageItem>> = match &spec.source {
        None => Box::new(InMemDataset::new(unlabeled(
            &builtin(spec)?.labeled_images()?,
            spec,
        ))),
        Some(DataSource::Shards { path }) => {
            let shards = ImageShards::open(path).map_err(in_field("data.source"))?;
            let n = shards.len().min(spec.max_unlabeled.unwrap_or(usize::MAX));
            Box::new(PartialDataset::new(shards, 0, n))
        }
        Some(source) => {
            let mut items = source.read_images().map_err(in_field("data.source"))?.items;
            items.truncate(spec.max_unlabeled.unwrap_or(usize::MAX));
            Box::new(InMemDataset::new(items))
        }
    };
    let first = images
        .get(0)
        .ok_or_else(|| RecipeError::field("data", "holds no image to pre-train on"))?;
    let shape = [first.image.channels, first.image.height, first.image.width];
    let normalize = match &spec.source {
        None => builtin(spec)?.normalization(spec.normalize),
        Some(_) => fitted_normalization(spec, images.as_ref())?,
    };
    Ok(PretrainImages {
        images,
        shape,
        normalize,
    })
}

/// Images a normalization is fitted on: at most this many, evenly spread.
const NORMALIZE_SAMPLE: usize = 10_000;

/// The per-channel mean and standard deviation of (a sample of) `images`, when
/// `spec.normalize` is on.
fn fitted_normalization(
    spec: &DataSpec,
    images: &dyn Dataset<ImageItem>,
) -> Result<Option<Normalize>> {
    if !spec.normalize {
        return Ok(None);
    }
    let stride = images.len().div_ceil(NORMALIZE_SAMPLE).max(1);
    let sample: Vec<_> = (0..images.len())
        .step_by(stride)
        .filter_map(|i| images.get(i))
        .map(|item| item.image.to_f32())
        .collect();
    let mut normalize = Normalize::fit(&sample)?;
    // A constant channel has no spread to divide by.
    normalize.std.iter_mut().for_each(|s| *s = s.max(1e-3));
    Ok(Some(normalize))
}

/// The pixel normalization pre-training used, which evaluations apply too: the built-in data
/// set's (none when `normalize` is off; digits keep `[0, 1]`), or the one fitted on the
/// pre-training source.
pub fn normalization(spec: &DataSpec) -> Result<Option<Normalize>> {
    match &spec.source {
        None => Ok(builtin(spec)?.normalization(spec.normalize)),
        Some(_) if !spec.normalize => Ok(None),
        Some(_) => Ok(pretrain_images(spec)?.normalize),
    }
}

/// The unlabeled pre-training images: the training split without labels, capped.
fn unlabeled(task: &LabeledTask<ImageItem>, spec: &DataSpec) -> Vec<ImageItem> {
    task.train
        .iter()
        .take(spec.max_unlabeled.unwrap_or(usize::MAX))
        .map(|item| ImageItem {
            image: item.image.clone(),
            label: None,
        })
        .collect()
}

/// The labeled text splits evaluations use (as [`load`] for images).
pub fn load_text(recipe: &Recipe) -> Result<LabeledTask<TextItem>> {
    match &recipe.data.source {
        None => builtin(&recipe.data)?.labeled_texts(),
        Some(_) => labeled_sources(recipe, |source, field| {
            source.read_texts().map_err(in_field(field))
        }),
    }
}

/// The texts pre-training reads.
pub enum PretrainTexts {
    /// Texts in memory, with the tokenizer trained on them.
    Texts {
        /// The unlabeled texts, capped at `data.max_unlabeled`.
        texts: Vec<TextItem>,
        /// Trained with `data.tokenizer` (boxed, as the shards are: both hold a tokenizer, which is large).
        tokenizer: Box<TextTokenizer>,
    },
    /// Token shards (read in place), with the tokenizer they were made with.
    Shards(Box<TokenShards>),
}

impl PretrainTexts {
    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        match self {
            Self::Texts { tokenizer, .. } => tokenizer,
            Self::Shards(shards) => shards.tokenizer(),
        }
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        match self {
            Self::Texts { texts, .. } => texts.len(),
            Self::Shards(shards) => shards.len(),
        }
    }

    /// Whether there is no document.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The unlabeled pre-training texts of `spec` and their tokenizer: `given` (a run's, for
/// `model.init_from`, which checks that `data.tokenizer` is that run's), or else one trained
/// on the texts as `data.tokenizer` says.
pub fn pretrain_texts(spec: &DataSpec, given: Option<TextTokenizer>) -> Result<PretrainTexts> {
    let texts = match &spec.source {
        None => builtin(spec)?.unlabeled_texts(spec.max_unlabeled.unwrap_or(usize::MAX))?,
        Some(DataSource::Shards { path }) => {
            if spec.tokenizer.is_some() {
                return Err(RecipeError::field(
                    "data.tokenizer",
                    "token shards come with their tokenizer; leave data.tokenizer out",
                ));
            }
            if given.is_some() {
                return Err(RecipeError::field(
                    "model.init_from",
                    "token shards come with their own tokenizer, not the run's: start from a \
                     run with text files as the source",
                ));
            }
            let shards = TokenShards::open(path).map_err(in_field("data.source"))?;
            return Ok(PretrainTexts::Shards(Box::new(shards)));
        }
        Some(source) => {
            let mut texts = source.read_texts().map_err(in_field("data.source"))?.items;
            texts.truncate(spec.max_unlabeled.unwrap_or(usize::MAX));
            texts.iter_mut().for_each(|t| t.label = None);
            texts
        }
    };
    let tokenizer = match given {
        Some(tokenizer) => tokenizer,
        None => {
            let corpus: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
            TextTokenizer::train(&corpus, &spec.tokenizer())?
        }
    };
    Ok(PretrainTexts::Texts {
        texts,
        tokenizer: Box::new(tokenizer),
    })
}

/// The tokenizer of a text recipe: `run_dir`'s when given (what pre-training used), else the
/// one pre-training would use (trained now with the recipe's settings, deterministically, or
/// the token shards'), so an untrained encoder sees the same vocabulary.
pub fn tokenizer(spec: &DataSpec, run_dir: Option<&Path>) -> Result<TextTokenizer> {
    match run_dir {
        Some(dir) => Ok(TextTokenizer::from_file(&dir.join(TOKENIZER_FILE))?),
        None => Ok(match pretrain_texts(spec, None)? {
            PretrainTexts::Texts { tokenizer, .. } => *tokenizer,
            PretrainTexts::Shards(shards) => shards.tokenizer().clone(),
        }),
    }
}

/// Every text of `task` encoded to `spec`'s fixed length, labels kept.
pub fn tokenize(
    task: &LabeledTask<TextItem>,
    tokenizer: &TextTokenizer,
    spec: &DataSpec,
) -> Result<LabeledTask<TokenizedItem>> {
    let encoder = tokenizer.fixed_length(spec.max_tokens())?;
    let encode = |items: &[TextItem]| -> Result<Vec<TokenizedItem>> {
        let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
        Ok(encoder
            .encode_batch(&texts)?
            .into_iter()
            .zip(items)
            .map(|(enc, item)| TokenizedItem {
                input_ids: enc.ids,
                attention_mask: enc.attention_mask,
                mlm_targets: None,
                label: item.label,
            })
            .collect())
    };
    Ok(LabeledTask {
        name: task.name.clone(),
        train: encode(&task.train)?,
        test: encode(&task.test)?,
        num_classes: task.num_classes,
    })
}
