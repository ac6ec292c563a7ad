//! Fine-tune a ViT with LoRA on a few labels: only the low-rank updates and the new head train;
//! then merge the updates for inference and save the adapter alone.
//!
//! `cargo run --release -p pretrain-examples --example finetune_lora -- [steps] [out-dir]`

use std::path::PathBuf;

use pretrain::burn::tensor::backend::Backend;
use pretrain::data::batch::ImageBatcher;
use pretrain::finetune::{
    Backbone, Classifier, FinetuneSettings, LabeledTask, LoraSettings, ToLabeled, Trainable,
    merge_lora, prepare_classifier, save_adapter, train_classifier,
};
use pretrain::models::{ImageEncoder, VitConfig};
use pretrain_examples::{Selected, accuracy, report_trainable};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map_or(Ok(100), |s| s.parse())?;
    let out = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "target/examples/finetune_lora".into()),
    );
    let device = Default::default();

    // scikit-learn's digits (shipped) as 8x8 images: 10 labels per class to train on.
    let items = pretrain::data::samples::digits_images()?;
    let (train, test): (Vec<_>, Vec<_>) =
        items.into_iter().enumerate().partition(|(i, _)| i % 4 != 3);
    let task = LabeledTask {
        name: "digits".into(),
        train: train.into_iter().map(|(_, x)| x).collect(),
        test: test.into_iter().map(|(_, x)| x).collect(),
        num_classes: 10,
    };
    let labeled: Vec<_> = task
        .subset(Some(10), 0)?
        .into_iter()
        .map(|i| task.train[i].clone())
        .collect();

    // A ViT (in practice: the pre-trained one, loaded with `load_safetensors`) with LoRA on the
    // query and value projections of every block.
    // Seeded weights, so every run prints the same numbers.
    Selected::seed(&device, 0);
    let vit = VitConfig::new(8, 2, 1, 32, 2, 4).init::<Selected>(&device)?;
    let lora = LoraSettings::default();
    let mut settings = FinetuneSettings::default();
    settings.train.steps = steps;
    settings.train.batch_size = 32;
    let (classifier, params) = prepare_classifier(
        Backbone::Image(ImageEncoder::Vit(vit)),
        32,
        task.num_classes,
        &Trainable::Lora(lora),
        &settings,
        &device,
    )?;
    report_trainable(&params)?;
    let batcher = ToLabeled(ImageBatcher::default());
    let model = train_classifier(
        classifier,
        labeled,
        batcher.clone(),
        &settings,
        &out.join("run"),
        false,
        &device,
    )?;

    let before = accuracy(&model, &task.test, &batcher, &device)?;
    save_adapter(&model, &out.join("adapter.safetensors"))?;
    let merged = Classifier {
        encoder: merge_lora(model.encoder.clone()),
        head: model.head.clone(),
    };
    let after = accuracy(&merged, &task.test, &batcher, &device)?;
    println!(
        "test accuracy {:.1}% (merged: {:.1}%); adapter saved to {}",
        100.0 * before,
        100.0 * after,
        out.join("adapter.safetensors").display()
    );
    // Merging changes rounding only: at most one of the test images may flip.
    anyhow::ensure!(
        (before - after).abs() <= 1.0 / task.test.len() as f64 + 1e-12,
        "merged accuracy {after} differs from {before}"
    );
    anyhow::ensure!(
        out.join("adapter.safetensors").is_file(),
        "the adapter file was not written"
    );
    Ok(())
}
