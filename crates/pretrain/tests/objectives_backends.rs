//! Objectives and the training engine on every compiled backend (wgpu on Mesa's software
//! Vulkan in CI): the NT-Xent loss and its gradients match the PyTorch reference fixture of
//! `pretrain-objectives`, a SimCLR step on real images gives a finite loss and gradients for
//! the encoder, and the engine runs a short SimCLR pre-training with a checkpoint.

use pretrain::burn::backend::Autodiff;
use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::data::dataset::{Dataset, InMemDataset};
use pretrain::burn::optim::GradientsParams;
use pretrain::burn::tensor::backend::AutodiffBackend;
use pretrain::burn::tensor::{ElementConversion, Tensor, TensorData};
use pretrain::data::augment::{AugmentedDataset, MultiView, Normalize, Pipeline};
use pretrain::data::batch::ViewsBatcher;
use pretrain::data::samples;
use pretrain::models::{ImageEncoderConfig, SmallCnnConfig};
use pretrain::objectives::{Objective, SimClrConfig, nt_xent};
use pretrain::train::{RunOptions, TrainConfig, pretrain};
use std::sync::Arc;

const FIXTURE: &str = include_str!("../../pretrain-objectives/fixtures/reference_losses.json");

fn fixture_input<B: AutodiffBackend>(
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

fn check_backend<B: AutodiffBackend>(backend: &str) {
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
    let data = Arc::new(AugmentedDataset::new(images, views, 3).unwrap());
    let batch = ViewsBatcher.batch(
        (0..8).map(|i| data.get(i).unwrap()).collect(),
        &Default::default(),
    );
    let encoder = ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![8, 16]));
    let simclr = SimClrConfig::simclr(encoder)
        .init::<B>(&Default::default())
        .unwrap();
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
    let options = RunOptions {
        quiet: true,
        ..Default::default()
    };
    let outcome = pretrain(
        simclr,
        serde_json::json!({"objective": "simclr"}),
        data,
        ViewsBatcher,
        &config,
        run_dir.path(),
        &options,
        &Default::default(),
    )
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
