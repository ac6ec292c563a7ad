//! Data pipeline throughput: decode (IDX, gzipped) + two SimCLR views + batching of
//! Fashion-MNIST, in images per second, so training steps can be checked never to wait on data.
//!
//! Reads from shards (positioned reads, in shuffled order) are measured too: images per second, and
//! masked-LM items from token shards in tokens per second.
//!
//! `cargo bench -p pretrain-benches --bench data_pipeline`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pretrain::burn::backend::Flex;
use pretrain::burn::data::dataloader::DataLoaderBuilder;
use pretrain::burn::data::dataset::Dataset;
use pretrain::burn::data::dataset::InMemDataset;
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::{MultiViewBatch, ViewsBatcher};
use pretrain::data::catalog::{self, remote_dataset};
use pretrain::data::data_source::DataSource;
use pretrain::data::mask::TokenMasker;
use pretrain::data::prepare::{PrepareOptions, prepare};
use pretrain::data::readers::{IdxPaths, TextUnit, read_idx_images};
use pretrain::data::shards::{ImageShards, TokenShards};
use pretrain::data::split::shuffled_indices;
use pretrain::data::text_dataset::MlmTokenDataset;
use pretrain_benches::fashion_mnist_images;

const BATCH: usize = 256;
const BATCHES_PER_ITER: usize = 8;

fn two_view_batches(c: &mut Criterion) {
    let (name, images) =
        fashion_mnist_images(BATCH * BATCHES_PER_ITER).expect("Fashion-MNIST images");
    let images: Vec<_> = images.into_iter().take(BATCH * BATCHES_PER_ITER).collect();
    let dataset = Arc::new(InMemDataset::new(images));
    let mut group = c.benchmark_group("data_pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * BATCHES_PER_ITER) as u64));
    for workers in [1, 2] {
        group.bench_function(
            format!("{name}/augment_two_views_batch{BATCH}/workers{workers}"),
            |b| {
                b.iter(|| {
                    let views =
                        MultiView::two_views(Pipeline::simclr(28, Normalize::fashion_mnist()));
                    let ds = AugmentedDataset::new(dataset.clone(), views, 0).unwrap();
                    let loader = DataLoaderBuilder::<Flex, _, _>::new(ViewsBatcher)
                        .batch_size(BATCH)
                        .shuffle(0)
                        .num_workers(workers)
                        .build(ds);
                    loader
                        .iter()
                        .map(|b: MultiViewBatch<Flex>| b.views.len())
                        .sum::<usize>()
                })
            },
        );
    }
    if let Ok(set) = remote_dataset("fashion-mnist")
        && set.verify().is_ok()
    {
        group.throughput(Throughput::Elements(60_000));
        group.bench_function("fashion-mnist-train/decode_idx_gz", |b| {
            b.iter(|| {
                read_idx_images(&IdxPaths::in_dir(&set.dir().unwrap(), "train"), 10)
                    .unwrap()
                    .len()
            })
        });
    }
    group.finish();
}

/// Shuffled reads of `BATCH * BATCHES_PER_ITER` images from shards of Fashion-MNIST (the
/// training split when obtained, else the shipped sample), and masked-LM items from token
/// shards of the shipped Moby Dick chapters.
fn shard_reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (name, images) = match remote_dataset("fashion-mnist") {
        Ok(set) if set.verify().is_ok() => ("fashion-mnist-train", set.dir().unwrap()),
        _ => (
            "fashion-mnist-sample",
            catalog::fashion_mnist_sample_dir().unwrap(),
        ),
    };
    let prefix = if name == "fashion-mnist-train" {
        "train"
    } else {
        "t10k"
    };
    let paths = IdxPaths::in_dir(&images, prefix);
    let source = DataSource::Idx {
        images: paths.images,
        labels: Some(paths.labels),
    };
    let image_dir = dir.path().join("images");
    prepare(&source, &PrepareOptions::new(&image_dir), &mut |_| {}).unwrap();
    let shards = ImageShards::open(&image_dir).unwrap();
    let reads = BATCH * BATCHES_PER_ITER;
    let order = shuffled_indices(shards.len(), 0);
    let mut group = c.benchmark_group("shard_reads");
    group.sample_size(10);
    group.throughput(Throughput::Elements(reads as u64));
    group.bench_function(format!("{name}/images_shuffled"), |b| {
        b.iter(|| {
            (0..reads)
                .map(|i| {
                    shards
                        .get(order[i % order.len()])
                        .unwrap()
                        .image
                        .pixels
                        .len()
                })
                .sum::<usize>()
        })
    });

    let text = DataSource::Text {
        paths: vec![
            catalog::moby_dick_sample_dir()
                .unwrap()
                .display()
                .to_string(),
        ],
        unit: TextUnit::Paragraph,
        encoding: Default::default(),
    };
    let token_dir = dir.path().join("tokens");
    prepare(&text, &PrepareOptions::new(&token_dir), &mut |_| {}).unwrap();
    let tokens = TokenShards::open(&token_dir).unwrap();
    let tokenizer = tokens.tokenizer().clone();
    let docs = tokens.len();
    let mlm = MlmTokenDataset::new(tokens, &tokenizer, 128, TokenMasker::default(), 0).unwrap();
    let real_tokens: usize = (0..docs)
        .map(|i| {
            mlm.get(i)
                .unwrap()
                .attention_mask
                .iter()
                .filter(|&&m| m == 1)
                .count()
        })
        .sum();
    group.throughput(Throughput::Elements(real_tokens as u64));
    group.bench_function("moby-dick-sample/mlm_items_128_tokens", |b| {
        b.iter(|| {
            (0..docs)
                .map(|i| mlm.get(i).unwrap().input_ids.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, two_view_batches, shard_reads);
criterion_main!(benches);
