//! Shared fixtures of this crate's tests: scikit-learn's digits (shipped) as 8x8 images and
//! small seeded encoders.

use pretrain_models::FusedBackend;
use std::collections::BTreeMap;
use std::sync::MutexGuard;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use pretrain_data::ImageItem;
use pretrain_data::batch::ImageBatcher;
use pretrain_models::{ImageEncoderConfig, SmallCnnConfig, VitConfig};

use crate::backbone::{Backbone, ToLabeled};
use crate::evaluate::LabeledTask;
use pretrain_models::path::PathStack;

/// The backend of this crate's tests: burn's Flex CPU backend (the default everywhere; the
/// facade's cross-backend tests run the objectives on ndarray and wgpu too).
pub type TestBackend = burn::backend::Flex;
/// [`TestBackend`] with autodiff.
pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;

/// Shorthands of the tests.
pub use {TestAutodiff as Ad, TestBackend as B};

/// Serializes tests that seed burn's global generator, so each sees its own draws (the lock
/// of `pretrain_models::init::init_seeded` too).
pub fn seeded(seed: u64) -> MutexGuard<'static, ()> {
    pretrain_models::init::seed_locked::<B>(&Default::default(), seed)
}

/// Digits as 8x8 grey images: every fourth row is the test split (1,348 train, 449 test).
pub fn digits_task() -> LabeledTask<ImageItem> {
    let items = pretrain_data::samples::digits_images().expect("shipped digits");
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        if i % 4 == 3 {
            test.push(item);
        } else {
            train.push(item);
        }
    }
    LabeledTask {
        name: "digits".into(),
        train,
        test,
        num_classes: 10,
    }
}

pub fn batcher() -> ToLabeled<ImageBatcher> {
    ToLabeled(ImageBatcher::default())
}

/// A 2-block ViT for 8x8 images: 2x2 patches, width 32, 4 heads.
pub fn vit_config() -> ImageEncoderConfig {
    ImageEncoderConfig::Vit(VitConfig::new(8, 2, 1, 32, 2, 4))
}

/// A two-layer CNN for 8x8 images.
pub fn cnn_config() -> ImageEncoderConfig {
    ImageEncoderConfig::SmallCnn(SmallCnnConfig::new(1, vec![16, 32]))
}

pub fn backbone<Be: FusedBackend>(config: &ImageEncoderConfig) -> Backbone<Be> {
    Backbone::Image(config.init(&Default::default()).expect("valid config"))
}

/// Every float parameter's values by path.
pub fn snapshot<Be: FusedBackend, M: Module<Be>>(module: &M) -> BTreeMap<String, Vec<f32>> {
    struct Collect<'a>(&'a mut BTreeMap<String, Vec<f32>>, PathStack);
    impl<Be: FusedBackend> ModuleVisitor<Be> for Collect<'_> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.1.enter(name, container);
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.1.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Be, D>>) {
            let values = param.val().into_data().iter::<f32>().collect();
            self.0.insert(self.1.path(), values);
        }
    }
    let mut out = BTreeMap::new();
    module.visit(&mut Collect(&mut out, PathStack::default()));
    out
}

/// The rows of a `[n, d]` tensor on the host, as `E`.
pub fn rows<E: burn::tensor::Element>(x: &Tensor<B, 2>) -> Vec<Vec<E>> {
    let d = x.dims()[1];
    let flat: Vec<E> = x.clone().into_data().iter::<E>().collect();
    flat.chunks(d).map(<[E]>::to_vec).collect()
}
