//! Runnable examples of the `pretrain` crates; see each folder's README.

// The backend of every example: chosen by this crate's cargo features (`--features wgpu`).
pretrain::selected_backend!();

use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::data::Labeled;
use pretrain::finetune::{Classifier, LabeledBatch, ParamCount, predict};
use pretrain::models::FusedBackend;

/// Prints how many parameters a parameter-efficient setup trains, and checks what that claims:
/// some do, and fewer than half.
pub fn report_trainable(params: &ParamCount) -> anyhow::Result<()> {
    println!(
        "trainable: {} of {} parameters ({:.1}%)",
        params.trainable,
        params.total,
        100.0 * params.trainable_share()
    );
    anyhow::ensure!(
        params.trainable > 0 && params.trainable < params.total / 2,
        "LoRA should train a small share of the parameters"
    );
    Ok(())
}

/// The share of `items` that `model` classifies right.
pub fn accuracy<B, I, T>(
    model: &Classifier<B>,
    items: &[I],
    batcher: &T,
    device: &B::Device,
) -> anyhow::Result<f64>
where
    B: FusedBackend,
    I: Labeled + Clone,
    T: Batcher<B, I, LabeledBatch<B>>,
{
    let predictions = predict(model, items, batcher, 256, device)?;
    let labels = pretrain::finetune::probe::labels_of(items)?;
    let right = predictions.iter().zip(&labels).filter(|(p, t)| p == t);
    Ok(right.count() as f64 / labels.len() as f64)
}
