//! Load an encoder checkpoint and extract embeddings for labeled images, then check them with a
//! kNN classifier: what a user does with a pre-trained encoder outside training.
//!
//! `cargo run -p pretrain-examples --example embeddings -- [encoder.safetensors] [out.csv]`
//! (the checkpoint the `pretrain_mae` example writes)

use std::io::Write;

use pretrain::burn::tensor::backend::AutodiffBackend;
use pretrain::data::batch::ImageBatcher;
use pretrain::finetune::{
    Backbone, KnnConfig, LabeledTask, ToLabeled, extract_features, knn_predict,
};
use pretrain::models::{ImageEncoder, VitConfig, load_safetensors};
use pretrain_examples::Selected;

type Inference = <Selected as AutodiffBackend>::InnerBackend;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let checkpoint = args.next();
    let out = args
        .next()
        .unwrap_or_else(|| "target/examples/embeddings.csv".into());
    let device = Default::default();

    // The architecture the checkpoint was trained with: the ViT of the `pretrain_mae` example
    // (an MAE run saves its ViT); without a checkpoint it stays randomly initialized.
    let mut vit = VitConfig::new(28, 7, 1, 64, 2, 4).init::<Inference>(&device)?;
    if let Some(path) = &checkpoint {
        vit = load_safetensors(vit, path.as_ref())?;
    }
    let encoder = Backbone::Image(ImageEncoder::Vit(vit));

    // Shipped sample: even items as the reference set, odd items as queries.
    let items = pretrain::data::samples::fashion_mnist()?;
    let (train, test) = items
        .into_iter()
        .enumerate()
        .partition::<Vec<_>, _>(|(i, _)| i % 2 == 0);
    let task = LabeledTask {
        name: "fashion-mnist-sample".into(),
        train: train.into_iter().map(|(_, x)| x).collect(),
        test: test.into_iter().map(|(_, x)| x).collect(),
        num_classes: 10,
    };
    let batcher = ToLabeled(ImageBatcher {
        normalize: Some(pretrain::data::augment::Normalize::fashion_mnist()),
    });
    let reference = extract_features(&encoder, &task.train, &batcher, 64, &device)?;
    let queries = extract_features(&encoder, &task.test, &batcher, 64, &device)?;

    let mut file = std::fs::File::create(&out)?;
    let [n, d] = reference.x.dims();
    let values: Vec<f32> = reference.x.clone().into_data().to_vec()?;
    for (row, label) in values.chunks(d).zip(&reference.labels) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.5}")).collect();
        writeln!(file, "{label},{}", cells.join(","))?;
    }
    let predictions = knn_predict(
        &reference.x,
        &reference.labels,
        queries.x,
        10,
        &KnnConfig::default(),
    )?;
    let correct = predictions
        .iter()
        .zip(&queries.labels)
        .filter(|(p, t)| p == t)
        .count();
    println!(
        "{n} embeddings of width {d} written to {out}; kNN on {} queries: {correct} correct ({})",
        predictions.len(),
        checkpoint.as_deref().unwrap_or("random encoder")
    );
    Ok(())
}
