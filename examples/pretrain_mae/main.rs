//! Pre-train a masked autoencoder (ViT encoder, 75% of patches masked) on unlabeled images and
//! keep its encoder, with the library's pieces directly (no recipe).
//!
//! `cargo run --release -p pretrain-examples --example pretrain_mae -- [steps] [out-dir]`

use pretrain::burn::tensor::backend::Backend;

use pretrain::burn::data::dataset::InMemDataset;
use pretrain::data::augment::{Normalize, Pipeline};
use pretrain::data::mask::MaskedImageBatcher;
use pretrain::data::{ImageItem, samples};
use pretrain::models::{MaeConfig, VitConfig};
use pretrain::objectives::{MaeObjectiveConfig, MaskedImageConfig};
use pretrain::train::{Pretrainer, TrainConfig};
use pretrain_examples::Selected;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map_or(Ok(200), |s| s.parse())?;
    let out = args
        .next()
        .unwrap_or_else(|| "target/examples/pretrain_mae".into());
    let device = Default::default();

    // Unlabeled images: the shipped Fashion-MNIST sample with its labels dropped.
    let images: Vec<ImageItem> = samples::fashion_mnist()?
        .into_iter()
        .map(|item| ImageItem {
            label: None,
            ..item
        })
        .collect();

    // A small ViT (7x7 patches, 16 tokens) under the MAE objective; the data masks the patches.
    let config = MaeObjectiveConfig::new(MaeConfig::new(VitConfig::new(28, 7, 1, 64, 2, 4)));
    let pipeline = Pipeline::eval(Normalize::fashion_mnist());
    let data = config.masked_data(InMemDataset::new(images), pipeline, 0)?;
    // Seeded weights, so every run prints the same numbers.
    Selected::seed(&device, 0);
    let objective = config.init::<Selected>(&device)?;

    let train = TrainConfig {
        steps,
        batch_size: 32,
        lr: 1e-3,
        ..TrainConfig::default()
    };
    let outcome = Pretrainer::new(objective, data, MaskedImageBatcher)
        .config(&train)
        .objective_config(&config)
        .run_dir(&out)
        .run(&device)?;
    let first = outcome.losses.first().copied().unwrap_or(f64::NAN);
    let last = outcome.losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "MAE loss {first:.4} -> {last:.4} in {steps} steps; encoder in {out}/encoder.safetensors"
    );
    Ok(())
}
