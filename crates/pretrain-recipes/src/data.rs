//! The image data sets a recipe can name, as labeled train/test splits.

use pretrain::data::ImageItem;
use pretrain::data::augment::Normalize;
use pretrain::data::catalog::remote_dataset;
use pretrain::data::readers::{IdxPaths, read_idx_images};
use pretrain::data::samples;
use pretrain::finetune::LabeledTask;

use crate::error::{RecipeError, Result};
use crate::recipe::DataSpec;

/// Data set names a recipe may use.
pub const DATASETS: [&str; 3] = ["fashion-mnist", "fashion-mnist-sample", "digits"];

/// The labeled splits of `spec.dataset`: pre-training reads the training split without its
/// labels; evaluation draws labeled subsets from it and tests on the test split.
pub fn load(spec: &DataSpec) -> Result<LabeledTask<ImageItem>> {
    let (train, test) = match spec.dataset.as_str() {
        "fashion-mnist" => {
            let set = remote_dataset("fashion-mnist")?;
            set.verify().map_err(|e| {
                RecipeError::field(
                    "data.dataset",
                    format!(
                        "fashion-mnist is not available ({e}); run `cargo xtask data fashion-mnist`"
                    ),
                )
            })?;
            let dir = set.dir()?;
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
        other => {
            return Err(RecipeError::field(
                "data.dataset",
                format!("unknown data set {other:?}; valid: {}", DATASETS.join(", ")),
            ));
        }
    };
    Ok(LabeledTask {
        name: spec.dataset.clone(),
        train,
        test,
        num_classes: 10,
    })
}

fn alternate(items: Vec<ImageItem>) -> (Vec<ImageItem>, Vec<ImageItem>) {
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
