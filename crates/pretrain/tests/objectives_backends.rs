//! Objectives and the training engine on every compiled backend (wgpu on Mesa's software
//! Vulkan in CI): the NT-Xent loss and its gradients match the PyTorch reference fixture of
//! `pretrain-objectives`, a SimCLR step on real images gives a finite loss and gradients for
//! the encoder, and the engine runs a short SimCLR pre-training with a checkpoint.

use pretrain::backend::{BackendKind, BackendTask, run_on_precision};
use pretrain::burn::backend::Autodiff;
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::data::dataset::{Dataset, InMemDataset};
use pretrain::burn::optim::GradientsParams;
use pretrain::burn::tensor::{ElementConversion, Tensor, TensorData};
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::ViewsBatcher;
use pretrain::data::samples;
use pretrain::models::FusedAutodiffBackend;
use pretrain::models::init::init_seeded;
use pretrain::models::{
    AutoencoderConfig, ImageEncoderConfig, MlpAutoencoderConfig, SmallCnnConfig,
};
use pretrain::objectives::{DenoisingConfig, Objective, SimClrConfig, nt_xent};
use pretrain::train::{OptimizerConfig, Precision, Pretrainer, RunOptions, TrainConfig};

const FIXTURE: &str = include_str!("../../pretrain-objectives/fixtures/reference_losses.json");

fn fixture_input<B: FusedAutodiffBackend>(
    case: &serde_json::Value,
    name: &str,
) -> (Tensor<B, 2>, Vec<f64>) {
    let input = &case["inputs"][name];
    let values = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let shape: Vec<usize> = values(&input["shape"])
        .iter()
        .map(|&s| s as usize)
        .collect();
    let data: Vec<f32> = values(&input["data"]).iter().map(|&x| x as f32).collect();
    let tensor = Tensor::from_data(TensorData::new(data, shape), &Default::default());
    (tensor, values(&case["grads"][name]))
}

fn check_backend<B: FusedAutodiffBackend>(backend: &str) {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    let case = &fixture["cases"][0];
    assert_eq!(case["name"], "nt_xent");
    let (z1, grad1) = fixture_input::<B>(case, "z1");
    let (z2, grad2) = fixture_input::<B>(case, "z2");
    let (z1, z2) = (z1.require_grad(), z2.require_grad());
    let temperature = case["params"]["temperature"].as_f64().unwrap();
    let loss = nt_xent(z1.clone(), z2.clone(), temperature);
    let value: f64 = loss.clone().into_scalar().elem();
    let reference = case["loss"].as_f64().unwrap();
    assert!(
        (value - reference).abs() < 1e-5 * reference.abs().max(1.0),
        "{backend}: {value} vs {reference}"
    );
    let grads = loss.backward();
    for (z, reference) in [(z1, grad1), (z2, grad2)] {
        let grad: Vec<f32> = z
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        for (g, r) in grad.iter().zip(&reference) {
            assert!(
                (f64::from(*g) - r).abs() < 1e-5,
                "{backend}: gradient {g} vs {r}"
            );
        }
    }

    let images = InMemDataset::new(samples::fashion_mnist().unwrap());
    let views = MultiView::two_views(Pipeline::simclr(28, Normalize::fashion_mnist()));
    let data = AugmentedDataset::new(images, views, 3).unwrap();
    let batch = ViewsBatcher.batch(
        (0..8).map(|i| data.get(i).unwrap()).collect(),
        &Default::default(),
    );
    let encoder = ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![8, 16]));
    let simclr = init_seeded(&Default::default(), 3, || {
        SimClrConfig::simclr(encoder)
            .init::<B>(&Default::default())
            .unwrap()
    });
    let out = simclr.forward_step(batch).unwrap();
    assert!(out.metrics.get("loss").unwrap().is_finite(), "{backend}");
    let grads = GradientsParams::from_grads(out.loss.backward(), simclr.encoder());
    assert!(!grads.is_empty(), "{backend}: no encoder gradient");

    let config = TrainConfig {
        steps: 3,
        batch_size: 8,
        checkpoint_every: 2,
        ..Default::default()
    };
    let run_dir = tempfile::tempdir().unwrap();
    let outcome = Pretrainer::new(simclr, data, ViewsBatcher)
        .config(&config)
        .objective_config(&"simclr")
        .run_dir(run_dir.path())
        .options(RunOptions {
            quiet: true,
            ..Default::default()
        })
        .run(&Default::default())
        .unwrap();
    assert!(outcome.finished, "{backend}");
    assert!(
        outcome.losses.iter().all(|l| l.is_finite()),
        "{backend}: {:?}",
        outcome.losses
    );
    assert!(run_dir.path().join("encoder.safetensors").is_file());
    assert!(outcome.checkpoint.unwrap().ends_with("step-00000003"));
}

#[test]
fn objectives_and_engine_run_on_every_backend() {
    check_backend::<Autodiff<pretrain::burn::backend::Flex>>("flex");
    #[cfg(feature = "ndarray")]
    check_backend::<Autodiff<pretrain::burn::backend::NdArray>>("ndarray");
    #[cfg(feature = "wgpu")]
    check_backend::<Autodiff<pretrain::burn::backend::Wgpu>>("wgpu");
}

/// A denoising autoencoder trained for `steps` on the shipped Fashion-MNIST sample, on the
/// backend and precision `run_on_precision` picks, in `dir` (a fresh folder when `None`),
/// stopping after `stop_after` steps or resuming when asked.
struct DenoisingRun {
    steps: usize,
    precision: Precision,
    dir: Option<std::path::PathBuf>,
    stop_after: Option<usize>,
    resume: bool,
}

impl DenoisingRun {
    fn new(steps: usize, precision: Precision) -> Self {
        Self {
            steps,
            precision,
            dir: None,
            stop_after: None,
            resume: false,
        }
    }
}

impl BackendTask for DenoisingRun {
    type Output = TrainOutcomeSummary;

    fn run<B: FusedAutodiffBackend>(self, _kind: BackendKind, device: B::Device) -> Self::Output {
        let config = DenoisingConfig::new(AutoencoderConfig::Mlp(MlpAutoencoderConfig::new(
            784,
            vec![128],
            32,
        )));
        let images = InMemDataset::new(samples::fashion_mnist().unwrap());
        let data = AugmentedDataset::new(images, config.views(Pipeline::default()), 3).unwrap();
        let model = init_seeded(&device, 4, || config.init::<B>(&device).unwrap());
        let train = TrainConfig {
            steps: self.steps,
            batch_size: 16,
            precision: self.precision,
            // f16 needs an Adam epsilon above its smallest normal number.
            optimizer: OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-4,
                weight_decay: 0.05,
            },
            checkpoint_every: 1_000,
            ..Default::default()
        };
        let scratch = tempfile::tempdir().unwrap();
        let dir = self.dir.unwrap_or_else(|| scratch.path().to_path_buf());
        let outcome = Pretrainer::new(model, data, ViewsBatcher)
            .config(&train)
            .objective_config(&"denoising")
            .run_dir(&dir)
            .options(RunOptions {
                quiet: true,
                stop_after: self.stop_after,
                resume: self.resume,
                ..Default::default()
            })
            .run(&device)
            .unwrap();
        let state: serde_json::Value = serde_json::from_slice(
            &std::fs::read(outcome.checkpoint.unwrap().join("state.json")).unwrap(),
        )
        .unwrap();
        TrainOutcomeSummary {
            losses: outcome.losses,
            skipped: outcome.skipped_steps,
            loss_scale: state["loss_scaler"]["scale"].as_f64(),
            scaler: state["loss_scaler"].clone(),
        }
    }
}

struct TrainOutcomeSummary {
    losses: Vec<f64>,
    skipped: usize,
    loss_scale: Option<f64>,
    /// The whole loss-scaler state of the last checkpoint.
    scaler: serde_json::Value,
}

#[cfg(feature = "wgpu")]
#[test]
fn f16_training_on_wgpu_scales_the_loss_and_tracks_f32_training() {
    // In its own process: after f16 kernels ran, burn 0.21's wgpu runtime returned f16-rounded
    // results for later f32 work in the same process (seen on the NT-Xent check above).
    if !pretrain_setup::test_runs_alone(
        "f16_training_on_wgpu_scales_the_loss_and_tracks_f32_training",
        "PRETRAIN_F16_CHILD",
    ) {
        return;
    }
    let steps = 30;
    let late = |l: &[f64]| l[l.len() - 10..].iter().sum::<f64>() / 10.0;
    // The f32 reference on Flex (the same model and data; wgpu's f32 kernels would only add
    // shader compilation time).
    let f32_run = run_on_precision(
        BackendKind::Flex,
        Precision::F32,
        DenoisingRun::new(steps, Precision::F32),
    )
    .unwrap();
    let f16_run = run_on_precision(
        BackendKind::Wgpu,
        Precision::F16,
        DenoisingRun::new(steps, Precision::F16),
    )
    .unwrap();
    // The initial scale 2^16 overflows f16 gradients: the first step, and after a loss jump the
    // fourth, are skipped and the scale halved each time, then training proceeds with finite
    // losses (the README's claim: two overflow steps).
    assert_eq!(f16_run.skipped, 2, "{:?}", f16_run.losses);
    let scale = f16_run.loss_scale.unwrap();
    assert!((1.0..65536.0).contains(&scale), "{scale}");
    let trained: Vec<f64> = f16_run
        .losses
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .collect();
    assert_eq!(
        trained.len() + f16_run.skipped,
        steps,
        "{:?}",
        f16_run.losses
    );
    assert!(late(&trained) < 0.6 * trained[0], "{trained:?}");
    // Within 30% of the same run in f32.
    let (half, full) = (late(&trained), late(&f32_run.losses));
    assert!((half / full - 1.0).abs() < 0.3, "f16 {half} vs f32 {full}");
    assert_eq!(f32_run.loss_scale, None);

    // The loss scale survives a resume: stopped halfway, then resumed, the run ends with the
    // uninterrupted run's scaler state and skipped steps.
    let dir = tempfile::tempdir().unwrap();
    let half_run = |stop_after, resume| DenoisingRun {
        dir: Some(dir.path().to_path_buf()),
        stop_after,
        resume,
        ..DenoisingRun::new(steps, Precision::F16)
    };
    let first =
        run_on_precision(BackendKind::Wgpu, Precision::F16, half_run(Some(15), false)).unwrap();
    assert!(first.loss_scale.unwrap() < 65536.0, "{:?}", first.scaler);
    let resumed =
        run_on_precision(BackendKind::Wgpu, Precision::F16, half_run(None, true)).unwrap();
    assert_eq!(resumed.scaler, f16_run.scaler);
    assert_eq!(resumed.skipped, f16_run.skipped);

    let err = run_on_precision(
        BackendKind::Flex,
        Precision::Bf16,
        DenoisingRun::new(1, Precision::Bf16),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("flex cannot train in bf16") && err.contains("supports: f32"),
        "{err}"
    );
}
