//! Test helpers shared by the model tests: real batches from the shipped data, "a few steps
//! reduce the loss", and save/load round trips.

use crate::fused::FusedBackend;
use burn::data::dataloader::batcher::Batcher;
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pretrain_data::batch::ImageBatcher;
use pretrain_data::mask::{PatchMask, PatchMaskBatch};
use pretrain_data::samples;
use pretrain_data::tokenizer::{TextTokenizer, TokenizerTrainConfig};

/// The backend of this crate's tests: burn's Flex CPU backend (the default everywhere; the
/// facade's cross-backend tests run the objectives on ndarray and wgpu too).
pub type TestBackend = burn::backend::Flex;
/// [`TestBackend`] with autodiff.
pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;

/// Shorthand of the tests.
pub use TestAutodiff as Ad;

/// The first `n` shipped Fashion-MNIST images, `[n, 1, 28, 28]` in [0, 1].
pub fn fashion<B: FusedBackend>(n: usize, device: &B::Device) -> Tensor<B, 4> {
    let items = samples::fashion_mnist().unwrap();
    ImageBatcher::default()
        .batch(items[..n].to_vec(), device)
        .images
}

/// The first `n` digits rows scaled to [0, 1], `[n, 64]`.
pub fn digits<B: FusedBackend>(n: usize, device: &B::Device) -> Tensor<B, 2> {
    let rows = samples::digits().unwrap();
    let data: Vec<f32> = rows
        .iter()
        .take(n)
        .flat_map(|r| r.features.iter().map(|v| v / 16.0))
        .collect();
    Tensor::from_data(TensorData::new(data, [n, 64]), device)
}

/// `n` Moby Dick paragraphs tokenized to `len` ids with a small WordPiece vocabulary; returns
/// the ids and the vocabulary size.
pub fn moby_dick_ids<B: FusedBackend>(
    n: usize,
    len: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, usize) {
    let docs = samples::moby_dick_paragraphs().unwrap();
    let tok = TextTokenizer::train(
        &docs,
        &TokenizerTrainConfig {
            vocab_size: 600,
            ..Default::default()
        },
    )
    .unwrap();
    let enc = tok.fixed_length(len).unwrap();
    let ids: Vec<i64> = docs
        .iter()
        .skip(1)
        .take(n)
        .flat_map(|d| enc.encode(d).unwrap().ids)
        .map(i64::from)
        .collect();
    (
        Tensor::from_data(TensorData::new(ids, [n, len]), device),
        tok.vocab_size(),
    )
}

/// `build()` from a generator seeded with `seed`, parameters drawn (see
/// [`crate::init::init_seeded`]): the same model in every run, whatever runs beside it.
pub fn seeded<M: Module<Ad>>(seed: u64, build: impl FnOnce() -> M) -> M {
    crate::init::init_seeded(&Default::default(), seed, build)
}

/// Runs `steps` Adam steps on `loss` and asserts the loss fell below `factor` of its start.
pub fn assert_trains<M: AutodiffModule<Ad>>(
    mut model: M,
    steps: usize,
    lr: f64,
    factor: f32,
    loss: impl Fn(&M) -> Tensor<Ad, 1>,
) {
    let mut optim = AdamConfig::new().init::<Ad, M>();
    let first: f32 = loss(&model).into_scalar();
    for _ in 0..steps {
        let l = loss(&model);
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(lr, model, grads);
    }
    let last: f32 = loss(&model).into_scalar();
    assert!(
        last.is_finite() && last < factor * first,
        "loss {first} -> {last}"
    );
}

/// Saves `model`, loads the file into `fresh` (same config, other weights) and checks `output`
/// is identical.
pub fn assert_round_trip<B: FusedBackend, M: Module<B>, const D: usize>(
    model: &M,
    fresh: M,
    output: impl Fn(&M) -> Tensor<B, D>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    crate::store::save_safetensors(model, &path).unwrap();
    let loaded = crate::store::load_safetensors(fresh, &path).unwrap();
    let diff: f32 = (output(&loaded) - output(model))
        .abs()
        .max()
        .into_scalar()
        .elem();
    assert_eq!(diff, 0.0);
}

/// The same mask for `batch` images: patches in `kept` (of `n`) visible, the rest hidden.
pub fn fixed_mask<B: FusedBackend>(
    kept: &[usize],
    n: usize,
    batch: usize,
    device: &B::Device,
) -> PatchMaskBatch<B> {
    let hidden: Vec<bool> = (0..n).map(|p| !kept.contains(&p)).collect();
    PatchMaskBatch::from_masks(&vec![PatchMask::from_hidden(&hidden); batch], device).unwrap()
}
