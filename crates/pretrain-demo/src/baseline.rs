//! The floor any image encoder must beat: logistic regression on normalized pixels, at every
//! label budget and with all labels.

use pretrain::backend::{BackendKind, BackendTask};
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::tensor::Tensor;
use pretrain::data::ImageItem;
use pretrain::data::batch::ImageBatcher;
use pretrain::finetune::{
    Features, FinetuneReport, FrozenFeatures, Inputs, LabeledBatch, Strategy, StrategySettings,
    ToLabeled, evaluate_frozen,
};
use pretrain::models::{FusedAutodiffBackend, FusedBackend};
use pretrain::train::Precision;
use pretrain_recipes::Result;
use pretrain_recipes::data;
use pretrain_recipes::recipe::Recipe;

/// Raw-pixel logistic regression on the labeled set of `recipe`: one report per budget of
/// `budgets` (labels per class) and one with all labels, each over `seeds` seeds.
pub fn raw_pixels(
    recipe: &Recipe,
    budgets: &[usize],
    seeds: usize,
    backend: BackendKind,
) -> Result<Vec<FinetuneReport>> {
    let task = RawPixels {
        recipe,
        budgets,
        seeds,
    };
    pretrain::dispatch_backend!(backend, Precision::F32, task)?
}

/// Raw-pixel logistic regression on every label budget.
struct RawPixels<'a> {
    recipe: &'a Recipe,
    budgets: &'a [usize],
    seeds: usize,
}

impl BackendTask for RawPixels<'_> {
    type Output = Result<Vec<FinetuneReport>>;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let task = data::load(self.recipe)?;
        let batcher = ToLabeled(ImageBatcher {
            normalize: data::normalization(&self.recipe.data)?,
        });
        let features = FrozenFeatures {
            train: pixels::<B::InnerBackend>(&task.train, &batcher, &device)?,
            test: pixels::<B::InnerBackend>(&task.test, &batcher, &device)?,
            architecture: "pixels",
            encoder_params: 0,
        };
        let seeds: Vec<u64> = (0..self.seeds as u64).collect();
        let settings = StrategySettings::default();
        self.budgets
            .iter()
            .map(|&k| Some(k))
            .chain([None])
            .map(|budget| {
                Ok(evaluate_frozen(
                    Strategy::LinearProbe,
                    &features,
                    &task,
                    budget,
                    &seeds,
                    &settings,
                )?)
            })
            .collect()
    }
}

fn pixels<B: FusedBackend>(
    items: &[ImageItem],
    batcher: &ToLabeled<ImageBatcher>,
    device: &B::Device,
) -> Result<Features<B>> {
    let labels = pretrain::finetune::probe::labels_of(items)?;
    let chunks: Vec<Tensor<B, 2>> = items
        .chunks(1024)
        .map(|chunk| {
            let batch: LabeledBatch<B> = batcher.batch(chunk.to_vec(), device);
            match batch.inputs {
                Inputs::Images(images) => {
                    let [n, c, h, w] = images.dims();
                    images.reshape([n, c * h * w])
                }
                Inputs::Tokens { .. } => unreachable!("an image batcher makes images"),
            }
        })
        .collect();
    Ok(Features {
        x: Tensor::cat(chunks, 0),
        labels,
    })
}
