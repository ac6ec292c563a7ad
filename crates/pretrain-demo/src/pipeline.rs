//! `pretrain data demo`: the data pipeline end to end on real data — decoding, two-view
//! augmentation, few-label subsets, tokenizer training and MLM masking — with measured
//! throughput.

use pretrain::models::{FusedAutodiffBackend, FusedBackend};
use std::sync::Arc;
use std::time::Instant;

use pretrain::burn::data::dataloader::DataLoaderBuilder;
use pretrain::burn::data::dataset::{Dataset, InMemDataset};
use serde::Serialize;

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::{MultiViewBatch, TextBatch, TextBatcher, ViewsBatcher};
use pretrain::data::catalog::{self, remote_dataset};
use pretrain::data::mask::{IGNORE_INDEX, MaskUnit, TokenMasker};
use pretrain::data::readers::{
    Column, IdxPaths, TableOptions, TextUnit, read_csv_features, read_idx_images, read_text_corpus,
};
use pretrain::data::split::{SplitFractions, k_per_class, labels_of};
use pretrain::data::text_dataset::MlmDataset;
use pretrain::data::tokenizer::{TextTokenizer, TokenizerTrainConfig};
use pretrain::data::{DataError, ImageItem, TextEncoding, TextItem};

/// Settings of the data-pipeline demo.
#[derive(Debug, Clone, Serialize)]
pub struct DataDemoConfig {
    /// Use at most this many images (the whole set when `None`).
    pub max_images: Option<usize>,
    /// Images per batch.
    pub batch_size: usize,
    /// Loader worker threads.
    pub workers: usize,
    /// Seed of shuffling, augmentation and masking.
    pub seed: u64,
    /// Use the full Fashion-MNIST training set (obtained by `cargo xtask data`) instead of the
    /// shipped 100-image sample.
    pub full_dataset: bool,
}

/// What the demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct DataDemoReport {
    /// Backend the batches were built on.
    pub backend: String,
    /// Which image set was used.
    pub image_source: String,
    /// Images decoded.
    pub images: usize,
    /// Two-view batches produced.
    pub batches: usize,
    /// Decode + augment + batch throughput, source images per second.
    pub images_per_sec: f64,
    /// Labels per class of the few-label subset: 10, or fewer when a class of the sample has
    /// fewer images.
    pub labels_per_class: usize,
    /// Size of that subset.
    pub few_label_subset: usize,
    /// Digits rows in the train / validation / test split.
    pub digits_split: [usize; 3],
    /// Tokenizer vocabulary size trained on the text sample.
    pub vocab_size: usize,
    /// Documents in the text sample.
    pub documents: usize,
    /// Share of real (non-padding) tokens selected by MLM masking in one batch.
    pub mlm_selected_share: f64,
}

/// Runs the demo on backend `kind`.
pub fn run_data_demo(
    kind: BackendKind,
    config: DataDemoConfig,
) -> Result<DataDemoReport, DataError> {
    pretrain::backend::run_on(kind, DataDemo(config))
        .map_err(|e| DataError::config("backend", e.to_string()))?
}

struct DataDemo(DataDemoConfig);

impl BackendTask for DataDemo {
    type Output = Result<DataDemoReport, DataError>;

    fn run<B: FusedAutodiffBackend>(self, kind: BackendKind, device: B::Device) -> Self::Output {
        let config = self.0;
        let (image_source, mut images) = load_fashion_mnist(config.full_dataset)?;
        if let Some(max) = config.max_images {
            images.truncate(max);
        }
        let labels = labels_of(&InMemDataset::new(images.clone()));
        let smallest_class = (0..10)
            .map(|c| labels.iter().filter(|l| **l == Some(c)).count())
            .min()
            .unwrap_or(0);
        let labels_per_class = smallest_class.clamp(1, 10);
        let few_label_subset = k_per_class(&labels, labels_per_class, config.seed)?.len();
        let (n_images, batches, images_per_sec) =
            two_view_throughput::<B>(images, &config, &device)?;

        let digits_options = TableOptions {
            has_header: false,
            ..Default::default()
        };
        let digits = read_csv_features(
            &catalog::digits_csv()?,
            &digits_options,
            Some(&Column::Last),
            10,
        )?;
        let digits_labels: Vec<_> = digits.iter().map(|d| d.label).collect();
        let split = SplitFractions {
            train: 0.8,
            validation: 0.1,
            test: 0.1,
        }
        .split_stratified(&digits_labels, config.seed)?;

        let documents = read_text_corpus(
            &catalog::moby_dick_sample_dir()?,
            TextUnit::Paragraph,
            TextEncoding::Utf8,
        )?;
        let tokenizer = TextTokenizer::train(
            &documents,
            &TokenizerTrainConfig {
                vocab_size: 4000,
                ..Default::default()
            },
        )?;
        let texts = TextItem::unlabeled(&documents);
        let masker = TokenMasker {
            unit: MaskUnit::WholeWord,
            ..Default::default()
        };
        let mlm = MlmDataset::new(
            InMemDataset::new(texts),
            &tokenizer,
            128,
            masker,
            config.seed,
        )?;
        let loader = DataLoaderBuilder::<B, _, _>::new(TextBatcher)
            .batch_size(32)
            .shuffle(config.seed)
            .build(mlm);
        let batch: TextBatch<B> = loader
            .iter()
            .next()
            .ok_or_else(|| DataError::config("text sample", "no batch"))?;
        let mlm_selected_share = selected_share(&batch);

        Ok(DataDemoReport {
            backend: kind.to_string(),
            image_source,
            images: n_images,
            batches,
            images_per_sec,
            labels_per_class,
            few_label_subset,
            digits_split: [split.train.len(), split.validation.len(), split.test.len()],
            vocab_size: tokenizer.vocab_size(),
            documents: documents.len(),
            mlm_selected_share,
        })
    }
}

/// The full Fashion-MNIST training set (checksums verified) or the shipped 100-image sample.
fn load_fashion_mnist(full: bool) -> Result<(String, Vec<ImageItem>), DataError> {
    if full {
        let set = remote_dataset("fashion-mnist")?;
        set.verify()?;
        let paths = IdxPaths::in_dir(&set.dir()?, "train");
        return Ok((
            format!("Fashion-MNIST train ({})", set.dir()?.display()),
            read_idx_images(&paths, 10)?,
        ));
    }
    let paths = IdxPaths::in_dir(&catalog::fashion_mnist_sample_dir()?, "t10k");
    Ok((
        "shipped 100-image Fashion-MNIST sample".into(),
        read_idx_images(&paths, 10)?,
    ))
}

/// Decodes, augments (two SimCLR views) and batches every image once; returns
/// `(images, batches, images per second)`.
fn two_view_throughput<B: FusedBackend>(
    images: Vec<ImageItem>,
    config: &DataDemoConfig,
    device: &B::Device,
) -> Result<(usize, usize, f64), DataError> {
    let views = MultiView::two_views(Pipeline::simclr(28, Normalize::fashion_mnist()));
    let dataset = AugmentedDataset::new(Arc::new(InMemDataset::new(images)), views, config.seed)?;
    let n = dataset.len();
    let loader = DataLoaderBuilder::<B, _, _>::new(ViewsBatcher)
        .batch_size(config.batch_size)
        .shuffle(config.seed)
        .num_workers(config.workers)
        .set_device(device.clone())
        .build(dataset);
    let start = Instant::now();
    let mut batches = 0;
    for batch in loader.iter() {
        let batch: MultiViewBatch<B> = batch;
        debug_assert_eq!(batch.views.len(), 2);
        batches += 1;
    }
    Ok((n, batches, n as f64 / start.elapsed().as_secs_f64()))
}

fn selected_share<B: FusedBackend>(batch: &TextBatch<B>) -> f64 {
    let targets: Vec<i64> = batch
        .mlm_targets
        .clone()
        .map(|t| t.into_data().convert::<i64>().to_vec().unwrap_or_default())
        .unwrap_or_default();
    let padding: Vec<bool> = batch
        .padding_mask
        .clone()
        .into_data()
        .to_vec()
        .unwrap_or_default();
    let real = padding.iter().filter(|p| !**p).count();
    let selected = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
    selected as f64 / real.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_runs_on_shipped_data() {
        let report = run_data_demo(
            BackendKind::Flex,
            DataDemoConfig {
                max_images: None,
                batch_size: 32,
                workers: 2,
                seed: 1,
                full_dataset: false,
            },
        )
        .unwrap();
        assert_eq!(report.images, 100);
        assert_eq!(report.batches, 4);
        // The scarcest class of the first 100 test images has 6 (ankle boots).
        assert_eq!((report.labels_per_class, report.few_label_subset), (6, 60));
        assert_eq!(report.digits_split.iter().sum::<usize>(), 1797);
        assert!(
            (0.1..0.2).contains(&report.mlm_selected_share),
            "{}",
            report.mlm_selected_share
        );
        assert!(report.images_per_sec > 0.0);
    }
}
