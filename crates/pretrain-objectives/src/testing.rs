//! Test helpers: real batches from the shipped data (Fashion-MNIST sample, Moby Dick), a
//! plain Adam loop driving an [`Objective`] the way the engine does, and the "learns without
//! collapsing" check.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, InMemDataset};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use pretrain_data::augment::{AugmentedDataset, MultiView, Pipeline};
use pretrain_data::batch::{MultiViewBatch, TextBatch, TextBatcher, ViewsBatcher};
use pretrain_data::mask::{MaskedImageBatch, MaskedImageBatcher, MaskedImageDataset, PatchMasker};
use pretrain_data::rng::EpochSeeded;
use pretrain_data::text_dataset::MlmDataset;
use pretrain_data::tokenizer::{TextTokenizer, TokenizerTrainConfig};
use pretrain_data::{ImageItem, TextItem, samples};

use crate::objective::{Metrics, Objective, TrainProgress};

/// The backend of this crate's tests: burn's Flex CPU backend (the default everywhere; the
/// facade's cross-backend tests run the objectives on ndarray and wgpu too).
pub type TestBackend = burn::backend::Flex;
/// [`TestBackend`] with autodiff.
pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;

/// Shorthand of the tests.
pub use TestAutodiff as Ad;

/// Builds a model with burn's global generator seeded, under a lock so tests running in
/// parallel do not interleave their draws, and draws every parameter before returning: the
/// same model in every run.
pub fn seeded<M: burn::module::Module<Ad>>(build: impl FnOnce() -> M) -> M {
    pretrain_models::init::init_seeded(&Default::default(), 20261128, build)
}

/// Step `step`'s batch: the next `size` items (wrapping) drawn with epoch `step`'s randomness.
fn next_batch<I, D: Dataset<I> + EpochSeeded, T: Batcher<Ad, I, O>, O>(
    data: &D,
    batcher: &T,
    step: usize,
    size: usize,
) -> O {
    data.set_epoch(step as u64);
    let n = data.len();
    let items = (0..size)
        .map(|j| data.get((step * size + j) % n).unwrap())
        .collect();
    batcher.batch(items, &Default::default())
}

/// Batches of augmented views of the shipped Fashion-MNIST sample; step `s` takes the next
/// `size` images (wrapping) with the augmentations of epoch `s`.
pub struct FashionViews(AugmentedDataset<InMemDataset<ImageItem>>);

impl FashionViews {
    pub fn new(views: MultiView) -> Self {
        let images = InMemDataset::new(samples::fashion_mnist().unwrap());
        Self(AugmentedDataset::new(images, views, 17).unwrap())
    }

    pub fn batch(&self, step: usize, size: usize) -> MultiViewBatch<Ad> {
        next_batch(&self.0, &ViewsBatcher, step, size)
    }
}

/// Masked batches of the shipped Fashion-MNIST sample, as [`FashionViews`].
pub struct FashionMasked(MaskedImageDataset<InMemDataset<ImageItem>>);

impl FashionMasked {
    pub fn new(pipeline: Pipeline, masker: PatchMasker, patch: usize) -> Self {
        let images = InMemDataset::new(samples::fashion_mnist().unwrap());
        Self(MaskedImageDataset::new(images, pipeline, masker, patch, 17).unwrap())
    }

    pub fn batch(&self, step: usize, size: usize) -> MaskedImageBatch<Ad> {
        next_batch(&self.0, &MaskedImageBatcher, step, size)
    }
}

/// MLM batches of Moby Dick paragraphs (WordPiece vocabulary of 600, `len` tokens).
pub struct MobyDickMlm {
    data: MlmDataset<InMemDataset<TextItem>>,
    pub vocab_size: usize,
}

impl MobyDickMlm {
    pub fn new(len: usize) -> Self {
        let docs = samples::moby_dick_paragraphs().unwrap();
        let config = TokenizerTrainConfig {
            vocab_size: 600,
            ..Default::default()
        };
        let tokenizer = TextTokenizer::train(&docs, &config).unwrap();
        let items = InMemDataset::new(TextItem::unlabeled(&docs));
        let data = MlmDataset::new(items, &tokenizer, len, Default::default(), 17).unwrap();
        Self {
            data,
            vocab_size: tokenizer.vocab_size(),
        }
    }

    pub fn batch(&self, step: usize, size: usize) -> TextBatch<Ad> {
        next_batch(&self.data, &TextBatcher, step, size)
    }
}

/// Runs `steps` Adam steps as the engine does (forward, backward, optimizer step, then the
/// objective's after-step update) and returns the trained objective and each step's metrics.
pub fn train<O: Objective<Ad>>(
    mut objective: O,
    steps: usize,
    lr: f64,
    batch: impl Fn(usize) -> O::Batch,
) -> (O, Vec<Metrics>) {
    let mut optim = AdamConfig::new().init::<Ad, O>();
    let mut history = Vec::with_capacity(steps);
    for step in 0..steps {
        let out = objective.forward_step(batch(step)).unwrap();
        let grads = GradientsParams::from_grads(out.loss.backward(), &objective);
        objective = optim.step(lr, objective, grads);
        let progress = TrainProgress {
            step: step + 1,
            total_steps: steps,
        };
        objective = objective.after_optimizer_step(out.carry, progress);
        history.push(out.metrics);
    }
    (objective, history)
}

fn mean(history: &[Metrics], name: &str) -> f64 {
    history.iter().map(|m| m.get(name).unwrap()).sum::<f64>() / history.len() as f64
}

/// The mean loss of the last 20 steps is lower than that of steps 5-25 (after the first steps,
/// where queues and batch statistics settle) by at least `min_drop` of its magnitude, every
/// loss is finite, and the collapse monitor stays above `floor_scale / sqrt(dim)` (spread
/// embeddings give about `1 / sqrt(dim)`, collapsed ones 0).
pub fn assert_learns(name: &str, history: &[Metrics], dim: usize, min_drop: f64, floor_scale: f64) {
    let losses: Vec<f64> = history.iter().map(|m| m.get("loss").unwrap()).collect();
    if let Some(bad) = losses.iter().position(|l| !l.is_finite()) {
        panic!(
            "{name}: non-finite loss at step {bad}: {:?}",
            &losses[..=bad]
        );
    }
    let early = mean(&history[5..25], "loss");
    let late = mean(&history[history.len() - 20..], "loss");
    let std = mean(&history[history.len() - 20..], "embedding_std");
    let floor = floor_scale / (dim as f64).sqrt();
    println!("{name}: loss {early:.4} -> {late:.4}, embedding_std {std:.4} (floor {floor:.4})");
    assert!(
        late <= early - min_drop * early.abs(),
        "{name}: loss {early} -> {late} fell by less than {min_drop} of its magnitude"
    );
    assert!(
        std > floor,
        "{name}: collapsed, embedding_std {std} <= {floor}"
    );
}
