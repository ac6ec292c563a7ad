//! Data pipeline throughput: decode (IDX, gzipped) + two SimCLR views + batching of
//! Fashion-MNIST, in images per second, so training steps can be checked never to wait on data.
//!
//! `cargo bench -p pretrain-benches --bench data_pipeline`

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pretrain::burn::backend::Flex;
use pretrain::burn::data::dataloader::DataLoaderBuilder;
use pretrain::burn::data::dataset::InMemDataset;
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::{MultiViewBatch, ViewsBatcher};
use pretrain::data::catalog::remote_dataset;
use pretrain::data::readers::{IdxPaths, read_idx_images};
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

criterion_group!(benches, two_view_batches);
criterion_main!(benches);
