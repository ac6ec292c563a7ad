//! Two-view contrastive batches from real images with burn's data loader, on the backend the
//! cargo features select.
//!
//! `cargo run -p pretrain-examples --example data_pipeline [--features wgpu]`

use pretrain::burn::data::dataloader::DataLoaderBuilder;
use pretrain::burn::data::dataset::InMemDataset;
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::{MultiViewBatch, ViewsBatcher};
use pretrain::data::catalog;
use pretrain::data::readers::{IdxPaths, read_idx_images};
use pretrain_examples::Selected;

fn main() -> anyhow::Result<()> {
    let paths = IdxPaths::in_dir(&catalog::fashion_mnist_sample_dir()?, "t10k");
    let images = read_idx_images(&paths, 10)?;
    let views = MultiView::two_views(Pipeline::simclr(28, Normalize::fashion_mnist()));
    let dataset = AugmentedDataset::new(InMemDataset::new(images), views, 42)?;
    let loader = DataLoaderBuilder::<Selected, _, _>::new(ViewsBatcher)
        .batch_size(32)
        .shuffle(42)
        .num_workers(2)
        .build(dataset);
    for (i, batch) in loader.iter().enumerate() {
        let batch: MultiViewBatch<Selected> = batch;
        let mean: f32 = batch.views[0].clone().mean().into_scalar();
        println!(
            "batch {i}: 2 views of {:?}, view-1 mean {mean:.3}",
            batch.views[0].dims()
        );
    }
    Ok(())
}
