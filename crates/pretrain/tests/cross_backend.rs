//! The same weights give the same outputs on every compiled backend: models are initialized on
//! Flex, saved as safetensors, loaded on NdArray and wgpu (Mesa's software Vulkan in CI), and run
//! on the same real images and tokens.

use pretrain::models::FusedBackend;
use pretrain::models::init::init_seeded;
use std::path::Path;

use pretrain::burn::data::dataloader::batcher::Batcher;
use pretrain::burn::tensor::{Int, Tensor, TensorData};
use pretrain::data::batch::ImageBatcher;
use pretrain::data::mask::{PatchMask, PatchMaskBatch};
use pretrain::data::samples;
use pretrain::models::{
    BertConfig, ConvAutoencoderConfig, GptConfig, GptPositions, MaeConfig, MlpAutoencoderConfig,
    MlpHeadConfig, ResNetConfig, SmallCnnConfig, VitConfig, load_safetensors, save_safetensors,
};

type Flex = pretrain::burn::backend::Flex;

fn images<B: FusedBackend>(device: &B::Device) -> Tensor<B, 4> {
    let items = samples::fashion_mnist().unwrap();
    ImageBatcher::default()
        .batch(items[..4].to_vec(), device)
        .images
}

fn mae_config() -> MaeConfig {
    MaeConfig::new(VitConfig::new(28, 7, 1, 32, 1, 4))
        .with_decoder_dim(16)
        .with_decoder_depth(1)
        .with_decoder_heads(2)
}

/// Keep patches 0, 5, 10 and 15 of 16 in every image: `(keep, restore)`.
fn mae_mask<B: FusedBackend>(device: &B::Device) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let hidden: Vec<bool> = (0..16).map(|p| ![0, 5, 10, 15].contains(&p)).collect();
    let batch =
        PatchMaskBatch::from_masks(&vec![PatchMask::from_hidden(&hidden); 4], device).unwrap();
    (batch.keep, batch.restore)
}

/// A small GPT over the 41-token vocabulary of [`tokens`], with learned or rotary positions.
fn gpt_config(positions: GptPositions) -> GptConfig {
    GptConfig::new(41, 16, 2, 4, 32).with_positions(positions)
}

fn tokens<B: FusedBackend>(device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = (0..2 * 12).map(|i| (i * 7 % 40) + 1).collect();
    Tensor::from_data(TensorData::new(ids, [2, 12]), device)
}

/// Outputs of every model on backend `B`, with weights read from `dir`.
fn outputs<B: FusedBackend>(dir: &Path, device: &B::Device) -> Vec<Vec<f32>> {
    let to_vec = |t: Tensor<B, 2>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let vit = load_safetensors(
        VitConfig::new(28, 7, 1, 32, 2, 4)
            .init::<B>(device)
            .unwrap(),
        &dir.join("vit.safetensors"),
    )
    .unwrap();
    let bert = load_safetensors(
        BertConfig::new(41, 32, 2, 4, 64)
            .with_dropout(0.0)
            .init::<B>(device)
            .unwrap(),
        &dir.join("bert.safetensors"),
    )
    .unwrap();
    let conv_ae = load_safetensors(
        ConvAutoencoderConfig::conv_28().init::<B>(device).unwrap(),
        &dir.join("conv_ae.safetensors"),
    )
    .unwrap();
    let cnn = load_safetensors(
        SmallCnnConfig::new(1, vec![8, 16])
            .init::<B>(device)
            .unwrap(),
        &dir.join("cnn.safetensors"),
    )
    .unwrap();
    let resnet = load_safetensors(
        ResNetConfig::new(1, vec![1, 1], vec![8, 16])
            .init::<B>(device)
            .unwrap(),
        &dir.join("resnet.safetensors"),
    )
    .unwrap();
    let head = load_safetensors(
        MlpHeadConfig::simclr(16).init::<B>(device).unwrap(),
        &dir.join("head.safetensors"),
    )
    .unwrap();
    let mlp_ae = load_safetensors(
        MlpAutoencoderConfig::new(784, vec![64], 16)
            .init::<B>(device)
            .unwrap(),
        &dir.join("mlp_ae.safetensors"),
    )
    .unwrap();
    let mae = load_safetensors(
        mae_config().init::<B>(device).unwrap(),
        &dir.join("mae.safetensors"),
    )
    .unwrap();
    let gpt = |positions: GptPositions, file: &str| {
        let model = gpt_config(positions).init::<B>(device).unwrap();
        let model = load_safetensors(model, &dir.join(file)).unwrap();
        let logits = model.forward(tokens::<B>(device)); // [2, 12, 41]
        to_vec(logits.reshape([2 * 12, 41]))
    };
    let gpt_learned = gpt(GptPositions::Learned, "gpt.safetensors");
    let gpt_rope = gpt(GptPositions::Rope, "gpt_rope.safetensors");
    let (keep, restore) = mae_mask::<B>(device);
    let x = images::<B>(device);
    let ids = tokens::<B>(device);
    let pad = ids.clone().equal_elem(40);
    let hidden = bert.forward(ids, Some(pad), None);
    vec![
        to_vec(vit.forward_features(x.clone())),
        to_vec(bert.pooled(hidden.clone())),
        to_vec(bert.mlm_logits(hidden).reshape([2 * 12, 41])),
        to_vec(conv_ae.encode(x.clone())),
        to_vec(cnn.forward_features(x.clone())),
        to_vec(head.forward(resnet.forward_features(x.clone()))),
        to_vec(mlp_ae.forward(x.clone().reshape([4, 784]))),
        to_vec(mae.forward(x, keep, restore).reshape([4 * 16, 49])),
        gpt_learned,
        gpt_rope,
    ]
}

fn save_reference(dir: &Path) {
    let dev = Default::default();
    save_safetensors(
        &init_seeded(&dev, 2001, || {
            VitConfig::new(28, 7, 1, 32, 2, 4)
                .init::<Flex>(&dev)
                .unwrap()
        }),
        &dir.join("vit.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2002, || {
            BertConfig::new(41, 32, 2, 4, 64)
                .init::<Flex>(&dev)
                .unwrap()
        }),
        &dir.join("bert.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2003, || {
            ConvAutoencoderConfig::conv_28().init::<Flex>(&dev).unwrap()
        }),
        &dir.join("conv_ae.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2004, || {
            SmallCnnConfig::new(1, vec![8, 16])
                .init::<Flex>(&dev)
                .unwrap()
        }),
        &dir.join("cnn.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2005, || {
            ResNetConfig::new(1, vec![1, 1], vec![8, 16])
                .init::<Flex>(&dev)
                .unwrap()
        }),
        &dir.join("resnet.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2006, || {
            MlpHeadConfig::simclr(16).init::<Flex>(&dev).unwrap()
        }),
        &dir.join("head.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2007, || {
            MlpAutoencoderConfig::new(784, vec![64], 16)
                .init::<Flex>(&dev)
                .unwrap()
        }),
        &dir.join("mlp_ae.safetensors"),
    )
    .unwrap();
    save_safetensors(
        &init_seeded(&dev, 2008, || mae_config().init::<Flex>(&dev).unwrap()),
        &dir.join("mae.safetensors"),
    )
    .unwrap();
    for (positions, file) in [
        (GptPositions::Learned, "gpt.safetensors"),
        (GptPositions::Rope, "gpt_rope.safetensors"),
    ] {
        let gpt = init_seeded(&dev, 1001, || {
            gpt_config(positions).init::<Flex>(&dev).unwrap()
        });
        save_safetensors(&gpt, &dir.join(file)).unwrap();
    }
}

#[cfg(any(feature = "ndarray", feature = "wgpu"))]
fn assert_close(name: &str, reference: &[Vec<f32>], other: &[Vec<f32>]) {
    for (model, (a, b)) in reference.iter().zip(other).enumerate() {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{name}: output {model} differs from Flex by {worst}"
        );
    }
}

#[test]
fn weights_move_between_backends_with_equal_outputs() {
    let dir = tempfile::tempdir().unwrap();
    save_reference(dir.path());
    let reference = outputs::<Flex>(dir.path(), &Default::default());
    assert!(reference.iter().all(|o| o.iter().all(|v| v.is_finite())));
    // A model reloaded on the same backend reproduces itself exactly.
    assert_eq!(reference, outputs::<Flex>(dir.path(), &Default::default()));
    #[cfg(feature = "ndarray")]
    assert_close(
        "ndarray",
        &reference,
        &outputs::<pretrain::burn::backend::NdArray>(dir.path(), &Default::default()),
    );
    #[cfg(feature = "wgpu")]
    assert_close(
        "wgpu",
        &reference,
        &outputs::<pretrain::burn::backend::Wgpu>(dir.path(), &Default::default()),
    );
}
