//! For every model, on real shipped data: a few optimizer steps on a fixed batch reduce the
//! loss (gradients flow end to end), and a safetensors save/load round trip keeps the outputs.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor, TensorData};

use crate::testing::{
    Ad, assert_round_trip, assert_trains, digits, fashion, fixed_mask, moby_dick_ids, seeded,
};
use crate::{
    BertConfig, ConvAutoencoderConfig, LinearHead, MaeConfig, MlpAutoencoderConfig, MlpHeadConfig,
    ResNetConfig, SmallCnnConfig, VitConfig, patchify,
};

/// Labels of the first shipped Fashion-MNIST test images.
const LABELS: [i64; 16] = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1];

fn labels(n: usize) -> Tensor<Ad, 1, Int> {
    Tensor::from_data(
        TensorData::new(LABELS[..n].to_vec(), [n]),
        &Default::default(),
    )
}

#[test]
fn vit_classifier_trains_and_round_trips() {
    let dev = Default::default();
    let images = fashion::<Ad>(16, &dev);
    let config = VitConfig::new(28, 7, 1, 32, 2, 4);
    let (vit, head) = seeded(1, || {
        (
            config.init::<Ad>(&dev).unwrap(),
            LinearHead::<Ad>::new(32, 10, &dev).unwrap(),
        )
    });
    assert_round_trip(&vit, config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward_features(images.clone())
    });
    let ce = CrossEntropyLossConfig::new().init(&dev);
    assert_trains((vit, head), 20, 3e-3, 0.8, |(v, h)| {
        ce.forward(h.forward(v.forward_features(images.clone())), labels(16))
    });
}

#[test]
fn mae_reconstruction_trains_and_round_trips() {
    let dev = Default::default();
    let images = fashion::<Ad>(8, &dev);
    let config = MaeConfig::new(VitConfig::new(28, 7, 1, 32, 1, 4))
        .with_decoder_dim(16)
        .with_decoder_depth(1)
        .with_decoder_heads(2);
    let mae = seeded(2, || config.init::<Ad>(&dev).unwrap());
    // Keep 4 of 16 patches (the same for every image), hide the rest.
    let mask = fixed_mask::<Ad>(&[0, 5, 10, 15], 16, 8, &dev);
    let (keep, restore) = (mask.keep, mask.restore);
    let target = patchify(images.clone(), 7);
    assert_round_trip(&mae, config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward(images.clone(), keep.clone(), restore.clone())
    });
    assert_trains(mae, 20, 3e-3, 0.8, |m| {
        (m.forward(images.clone(), keep.clone(), restore.clone()) - target.clone())
            .powi_scalar(2)
            .mean()
    });
}

#[test]
fn bert_mlm_trains_and_round_trips() {
    let dev = Default::default();
    let (ids, vocab) = moby_dick_ids::<Ad>(8, 32, &dev);
    let config = BertConfig::new(vocab, 32, 2, 2, 64).with_dropout(0.0);
    let bert = seeded(3, || config.init::<Ad>(&dev).unwrap());
    let pad = ids.clone().equal_elem(0);
    assert_round_trip(&bert, config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward(ids.clone(), Some(pad.clone()), None)
    });
    let ce = CrossEntropyLossConfig::new().init(&dev);
    assert_trains(bert, 30, 3e-3, 0.8, |m| {
        let logits = m.mlm_logits(m.forward(ids.clone(), Some(pad.clone()), None));
        ce.forward(
            logits.reshape([8 * 32, vocab]),
            ids.clone().reshape([8 * 32]),
        )
    });
}

#[test]
fn autoencoders_train_and_round_trip() {
    let dev = Default::default();
    let x = digits::<Ad>(64, &dev);
    let config = MlpAutoencoderConfig::digits();
    let mlp = seeded(4, || config.init::<Ad>(&dev).unwrap());
    assert_round_trip(&mlp, config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward(x.clone())
    });
    assert_trains(mlp, 100, 3e-3, 0.8, |m| {
        (m.forward(x.clone()) - x.clone()).powi_scalar(2).mean()
    });

    let images = fashion::<Ad>(8, &dev);
    let config = ConvAutoencoderConfig::conv_28();
    let conv = seeded(5, || config.init::<Ad>(&dev).unwrap());
    assert_round_trip(&conv, config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward(images.clone())
    });
    assert_trains(conv, 50, 3e-3, 0.8, |m| {
        (m.forward(images.clone()) - images.clone())
            .powi_scalar(2)
            .mean()
    });
}

#[test]
fn conv_encoders_and_heads_train_and_round_trip() {
    let dev = Default::default();
    let images = fashion::<Ad>(16, &dev);
    let ce = CrossEntropyLossConfig::new().init(&dev);
    let cnn_config = SmallCnnConfig::new(1, vec![8, 16]);
    let head_config = MlpHeadConfig::new(16, vec![32], 10);
    let (cnn, head) = seeded(6, || {
        (
            cnn_config.init::<Ad>(&dev).unwrap(),
            head_config.init::<Ad>(&dev).unwrap(),
        )
    });
    assert_round_trip(&cnn, cnn_config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward_features(images.clone())
    });
    assert_round_trip(&head, head_config.init::<Ad>(&dev).unwrap(), |h| {
        h.forward(cnn.forward_features(images.clone()))
    });
    assert_trains((cnn, head), 20, 1e-2, 0.8, |(c, h)| {
        ce.forward(h.forward(c.forward_features(images.clone())), labels(16))
    });

    let resnet_config = ResNetConfig::new(1, vec![1, 1], vec![8, 16]);
    let (resnet, linear) = seeded(7, || {
        (
            resnet_config.init::<Ad>(&dev).unwrap(),
            LinearHead::<Ad>::new(16, 10, &dev).unwrap(),
        )
    });
    assert_round_trip(&resnet, resnet_config.init::<Ad>(&dev).unwrap(), |m| {
        m.forward_features(images.clone())
    });
    assert_trains((resnet, linear), 20, 1e-2, 0.8, |(r, h)| {
        ce.forward(h.forward(r.forward_features(images.clone())), labels(16))
    });
}
