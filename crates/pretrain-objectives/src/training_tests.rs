//! Every objective pre-trains a small model on the shipped real data (Fashion-MNIST sample,
//! Moby Dick): the loss goes down and the collapse monitor stays above `0.25 / sqrt(dim)` (see
//! `testing::assert_learns`; models are initialized from a seeded generator, so runs repeat). CI runs 100 steps; `PRETRAIN_OBJECTIVE_STEPS=300 cargo test ...`
//! runs longer. Each objective also refuses a batch it cannot use with a typed error.

use burn::module::Module;
use burn::optim::GradientsParams;
use pretrain_data::augment::{MultiView, Normalize, Pipeline};
use pretrain_data::batch::MultiViewBatch;
use pretrain_data::mask::PatchMasker;
use pretrain_models::init::init_seeded;
use pretrain_models::{
    AutoencoderConfig, BertConfig, ImageEncoderConfig, MaeConfig, MlpAutoencoderConfig,
    MlpHeadConfig, SmallCnnConfig, VitConfig,
};

use crate::testing::{Ad, FashionMasked, FashionViews, MobyDickMlm, assert_learns, seeded, train};
use crate::{
    BarlowTwinsConfig, ByolConfig, DenoisingConfig, MaeObjectiveConfig, MaskedImageConfig,
    MlmConfig, MoCoConfig, MomentumSchedule, Objective, ObjectiveError, ReconstructionLoss,
    SimClrConfig, SimMimConfig, SimSiamConfig, VicRegConfig,
};

const BATCH: usize = 16;

/// Training steps per objective: `PRETRAIN_OBJECTIVE_STEPS`, default 100 (at least 50).
fn steps() -> usize {
    std::env::var("PRETRAIN_OBJECTIVE_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(50)
}

fn cnn() -> ImageEncoderConfig {
    ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![8, 16, 32]))
}

fn views() -> FashionViews {
    FashionViews::new(MultiView::two_views(Pipeline::simclr(
        28,
        Normalize::fashion_mnist(),
    )))
}

/// Trains `objective` on two-view Fashion-MNIST batches (lr 1e-3) and checks it learns.
fn learns_on_views<O: Objective<Ad, Batch = MultiViewBatch<Ad>>>(
    name: &str,
    objective: O,
    dim: usize,
    min_drop: f64,
) -> (O, Vec<crate::Metrics>) {
    let data = views();
    let (trained, history) = train(objective, steps(), 1e-3, |s| data.batch(s, BATCH));
    assert_learns(name, &history, dim, min_drop, 0.25);
    (trained, history)
}

fn tiny_vit() -> VitConfig {
    VitConfig::new(28, 7, 1, 32, 2, 2)
}

#[test]
fn simclr_learns() {
    let config = SimClrConfig::new(cnn(), MlpHeadConfig::new(32, vec![32], 32));
    let (_, history) = learns_on_views(
        "SimCLR",
        seeded(|| config.init(&Default::default()).unwrap()),
        32,
        0.1,
    );
    let accuracy = history[history.len() - 1]
        .get("contrastive_accuracy")
        .unwrap();
    assert!(accuracy > 1.0 / (2 * BATCH) as f64, "{accuracy}");
}

#[test]
fn moco_learns_and_fills_its_queue() {
    let config = MoCoConfig::new(
        cnn(),
        MlpHeadConfig::new(32, vec![32], 32).with_batch_norm(false),
    )
    .with_queue_size(256);
    let (moco, _) = learns_on_views(
        "MoCo",
        seeded(|| config.init(&Default::default()).unwrap()),
        32,
        0.05,
    );
    // Every queue entry is now a key: unit norm.
    let norms = moco.queue.val().powi_scalar(2).sum_dim(1).sqrt();
    let worst: f32 = (norms - 1.0).abs().max().into_scalar();
    assert!(worst < 1e-4, "{worst}");
}

#[test]
fn simsiam_learns() {
    let config = SimSiamConfig::simsiam(cnn(), 32);
    learns_on_views(
        "SimSiam",
        seeded(|| config.init(&Default::default()).unwrap()),
        32,
        0.1,
    );
}

#[test]
fn byol_learns_and_its_target_gets_no_gradient() {
    let config =
        ByolConfig::byol(cnn(), 32, 32).with_momentum(MomentumSchedule::new().with_base(0.99));
    let data = views();
    let byol = seeded(|| config.init::<Ad>(&Default::default()).unwrap());
    let out = byol.forward_step(data.batch(0, 8)).unwrap();
    let grads = out.loss.backward();
    assert!(GradientsParams::from_grads(grads, &byol.target).is_empty());
    let grads = byol.forward_step(data.batch(0, 8)).unwrap().loss.backward();
    assert!(!GradientsParams::from_grads(grads, &byol.online).is_empty());

    let before = byol.target.clone();
    let (trained, _) = learns_on_views("BYOL", byol, 32, 0.1);
    // The target moved (EMA), without becoming the online network.
    let weights = |m: &crate::ProjectedEncoder<Ad>| -> Vec<f32> {
        m.projector.layers[0]
            .weight
            .val()
            .into_data()
            .to_vec()
            .unwrap()
    };
    assert_ne!(weights(&before), weights(&trained.target));
    assert_ne!(weights(&trained.online), weights(&trained.target));
    assert_eq!(trained.target.num_params(), trained.online.num_params());
}

#[test]
fn barlow_twins_learns() {
    let config = BarlowTwinsConfig::barlow_twins(cnn(), 32).with_lambda(1.0 / 32.0);
    learns_on_views(
        "Barlow Twins",
        seeded(|| config.init(&Default::default()).unwrap()),
        32,
        0.1,
    );
}

#[test]
fn vicreg_learns() {
    let config = VicRegConfig::vicreg(cnn(), 32);
    learns_on_views(
        "VICReg",
        seeded(|| config.init(&Default::default()).unwrap()),
        32,
        0.1,
    );
}

#[test]
fn mae_learns() {
    let config = MaeObjectiveConfig::new(
        MaeConfig::new(tiny_vit())
            .with_decoder_dim(32)
            .with_decoder_depth(1)
            .with_decoder_heads(2),
    );
    let data = FashionMasked::new(Pipeline::default(), config.masker(), 7);
    let (_, history) = train(
        seeded(|| config.init(&Default::default()).unwrap()),
        steps(),
        1e-3,
        |s| data.batch(s, BATCH),
    );
    // MAE's encoder tokens come out of a final layer norm sharing a common direction, which
    // lowers their normalized spread without any collapse (seen: 0.03-0.09 at 100 steps over
    // random initializations); a collapsed encoder still gives about 0.
    assert_learns("MAE", &history, 32, 0.1, 0.1);
}

#[test]
fn simmim_learns() {
    let config = SimMimConfig::new(tiny_vit());
    let data = FashionMasked::new(
        Pipeline::eval(Normalize::fashion_mnist()),
        config.masker(),
        7,
    );
    let (_, history) = train(
        seeded(|| config.init(&Default::default()).unwrap()),
        steps(),
        1e-3,
        |s| data.batch(s, BATCH),
    );
    assert_learns("SimMIM", &history, 32, 0.1, 0.25);
}

/// The loss scores only the masked positions' logits; it must equal the cross-entropy over
/// every position with the others ignored, and the gradients reach the tied embeddings.
#[test]
fn mlm_loss_on_masked_positions_equals_the_dense_masked_loss() {
    let data = MobyDickMlm::new(32);
    let config = MlmConfig::new(
        BertConfig::new(data.vocab_size, 32, 1, 2, 64)
            .with_max_position(32)
            .with_dropout(0.0),
    );
    let mlm = seeded(|| config.init::<Ad>(&Default::default()).unwrap());
    let batch = data.batch(0, 4);
    let dense = {
        let hidden = mlm.model.forward(
            batch.input_ids.clone(),
            Some(batch.padding_mask.clone()),
            None,
        );
        crate::masked_token_cross_entropy(
            mlm.model.mlm_logits(hidden),
            batch.mlm_targets.clone().unwrap(),
        )
        .into_scalar()
    };
    let out = mlm.forward_step(batch).unwrap();
    let sparse = out.loss.clone().into_scalar();
    assert!((sparse - dense).abs() < 1e-5, "{sparse} vs {dense}");
    let grads = out.loss.backward();
    let embedding_grad = mlm.model.embeddings.word.weight.grad(&grads).unwrap();
    assert!(embedding_grad.abs().sum().into_scalar() > 0.0);
}

#[test]
fn mlm_learns() {
    let data = MobyDickMlm::new(32);
    let config = MlmConfig::new(
        BertConfig::new(data.vocab_size, 32, 2, 2, 64)
            .with_max_position(32)
            .with_dropout(0.0),
    );
    let (_, history) = train(
        seeded(|| config.init(&Default::default()).unwrap()),
        steps(),
        3e-3,
        |s| data.batch(s, BATCH),
    );
    // Unigram frequencies are learned within the first steps; the drop after them is slower.
    assert_learns("MLM", &history, 32, 0.05, 0.25);
    // Masked-token accuracy rises above its start and the perplexity falls below the uniform
    // guess (the vocabulary size); averaged over 20 steps, one batch being noisy.
    let mean = |steps: &[crate::Metrics], name| {
        steps.iter().map(|m| m.get(name).unwrap()).sum::<f64>() / steps.len() as f64
    };
    let first = mean(&history[..20], "masked_accuracy");
    let last = mean(&history[history.len() - 20..], "masked_accuracy");
    let perplexity = mean(&history[history.len() - 20..], "perplexity");
    assert!(
        last > first && last > 0.02,
        "masked accuracy {first} -> {last}"
    );
    assert!(
        perplexity < data.vocab_size as f64,
        "perplexity {perplexity}"
    );
}

/// The three reference workloads (SimCLR on the small CNN, MAE on a ViT, masked LM on BERT)
/// train to the same losses with Flex's fused kernels on and with every fused operation as its
/// generic default (burn's operations): within 1e-4 relative over 20 steps. Dropout is off
/// (the two draw their masks from different generators).
#[test]
fn fused_kernels_train_like_the_generic_defaults() {
    // The kernel switch is process-wide: alone in a process, no other test runs meanwhile.
    if !pretrain_setup::test_runs_alone(
        "training_tests::fused_kernels_train_like_the_generic_defaults",
        "PRETRAIN_KERNEL_SWITCH_CHILD",
    ) {
        return;
    }
    const STEPS: usize = 20;
    let compare = |name: &str, run: &dyn Fn() -> Vec<crate::Metrics>| {
        let losses = |kernels: bool| {
            pretrain_models::fused::set_backend_kernels(kernels);
            let history = run();
            pretrain_models::fused::set_backend_kernels(true);
            history
                .iter()
                .map(|m| m.get("loss").unwrap())
                .collect::<Vec<f64>>()
        };
        let (fused, default) = (losses(true), losses(false));
        for (step, (a, b)) in fused.iter().zip(&default).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                "{name} step {step}: {a} fused, {b} default"
            );
        }
        let largest = fused
            .iter()
            .zip(&default)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        println!("{name}: {STEPS} losses agree, largest difference {largest:e}");
    };
    let views = views();
    let simclr = SimClrConfig::new(cnn(), MlpHeadConfig::new(32, vec![32], 32));
    compare("SimCLR", &|| {
        let model = seeded(|| simclr.init(&Default::default()).unwrap());
        train(model, STEPS, 1e-3, |s| views.batch(s, BATCH)).1
    });
    let mae = MaeObjectiveConfig::new(
        MaeConfig::new(tiny_vit())
            .with_decoder_dim(32)
            .with_decoder_depth(1)
            .with_decoder_heads(2),
    );
    let masked = FashionMasked::new(Pipeline::default(), mae.masker(), 7);
    compare("MAE", &|| {
        let model = seeded(|| mae.init(&Default::default()).unwrap());
        train(model, STEPS, 1e-3, |s| masked.batch(s, BATCH)).1
    });
    let text = MobyDickMlm::new(32);
    let mlm = MlmConfig::new(
        BertConfig::new(text.vocab_size, 32, 2, 2, 64)
            .with_max_position(32)
            .with_dropout(0.0),
    );
    compare("MLM", &|| {
        let model = seeded(|| mlm.init(&Default::default()).unwrap());
        train(model, STEPS, 3e-3, |s| text.batch(s, BATCH)).1
    });
}

#[test]
fn denoising_autoencoder_learns_with_mse_and_bce() {
    for loss in [ReconstructionLoss::Mse, ReconstructionLoss::Bce] {
        let config = DenoisingConfig::new(AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(
            784,
            vec![128],
            32,
        )))
        .with_loss(loss);
        let data = FashionViews::new(config.views(Pipeline::default()));
        let (_, history) = train(
            seeded(|| config.init(&Default::default()).unwrap()),
            steps(),
            1e-3,
            |s| data.batch(s, BATCH),
        );
        assert_learns(&format!("denoising AE ({loss:?})"), &history, 32, 0.1, 0.25);
    }
}

#[test]
fn unusable_batches_are_refused() {
    let dev = Default::default();
    let one_view = FashionViews::new(MultiView::two_views(Pipeline::default()));
    let mut batch = one_view.batch(0, 4);
    batch.views.truncate(1);
    let simclr = init_seeded(&dev, 1001, || {
        SimClrConfig::simclr(cnn()).init::<Ad>(&dev).unwrap()
    });
    let err = simclr.forward_step(batch).unwrap_err();
    assert!(
        matches!(err, ObjectiveError::Batch { what: "views", .. }),
        "{err}"
    );

    let normalized = FashionViews::new(MultiView::two_views(Pipeline::eval(
        Normalize::fashion_mnist(),
    )));
    let bce = init_seeded(&dev, 1002, || {
        DenoisingConfig::new(AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(
            784,
            vec![16],
            8,
        )))
        .with_loss(ReconstructionLoss::Bce)
        .init::<Ad>(&dev)
        .unwrap()
    });
    let err = bce
        .forward_step(normalized.batch(0, 4))
        .unwrap_err()
        .to_string();
    assert!(err.contains("BCE needs pixels in [0, 1]"), "{err}");

    let mae = init_seeded(&dev, 1003, || {
        MaeObjectiveConfig::new(MaeConfig::new(VitConfig::new(32, 8, 1, 16, 1, 2)))
            .init::<Ad>(&dev)
            .unwrap()
    });
    let masked = FashionMasked::new(Pipeline::default(), PatchMasker::random(0.75), 7);
    let err = mae
        .forward_step(masked.batch(0, 2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("28x28") && err.contains("32x32"), "{err}");

    let text = MobyDickMlm::new(16);
    let mut batch = text.batch(0, 2);
    let small_vocab = init_seeded(&dev, 1004, || {
        MlmConfig::new(BertConfig::new(10, 16, 1, 2, 32))
            .init::<Ad>(&dev)
            .unwrap()
    });
    let err = small_vocab
        .forward_step(batch.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("vocabulary of 10"), "{err}");
    batch.mlm_targets = None;
    let mlm = init_seeded(&dev, 1005, || {
        MlmConfig::new(BertConfig::new(text.vocab_size, 16, 1, 2, 32))
            .init::<Ad>(&dev)
            .unwrap()
    });
    let err = mlm.forward_step(batch).unwrap_err().to_string();
    assert!(err.contains("mlm_targets"), "{err}");

    assert!(
        SimClrConfig::simclr(cnn())
            .with_temperature(0.0)
            .init::<Ad>(&dev)
            .is_err()
    );
    assert!(
        MoCoConfig::moco_v2(cnn())
            .with_queue_size(0)
            .init::<Ad>(&dev)
            .is_err()
    );
}
