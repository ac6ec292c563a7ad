//! Batchers for burn's `DataLoader`: stack items into tensors on the target device.
//!
//! Items reaching a batcher were validated by their reader or dataset wrapper (all images of a
//! dataset share one shape, all encoded texts one length), so batching itself cannot fail.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use crate::augment::{Normalize, ViewsItem};
use crate::item::{FeatureItem, Image, ImageItem, Labeled};

/// Labels of a batch as a tensor, `None` unless every item has one.
pub(crate) fn labels_tensor<B: Backend, I: Labeled>(
    items: &[I],
    device: &B::Device,
) -> Option<Tensor<B, 1, Int>> {
    let labels: Option<Vec<i64>> = items.iter().map(|i| i.label().map(|l| l as i64)).collect();
    labels.map(|l| {
        let n = l.len();
        Tensor::from_data(TensorData::new(l, [n]), device)
    })
}

/// Stacks same-shape images into `[batch, channels, height, width]`.
pub fn stack_images<B: Backend>(images: &[&Image], device: &B::Device) -> Tensor<B, 4> {
    let [c, h, w] = images[0].shape();
    let data: Vec<f32> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [images.len(), c, h, w]), device)
}

/// Images with their labels (when every item of the batch has one).
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    /// `[batch, channels, height, width]`.
    pub images: Tensor<B, 4>,
    /// `[batch]` class indices.
    pub labels: Option<Tensor<B, 1, Int>>,
}

/// Converts images to `[0, 1]` floats and optionally normalizes them (evaluation path).
#[derive(Debug, Clone, Default)]
pub struct ImageBatcher {
    /// Per-channel normalization applied to every image.
    pub normalize: Option<Normalize>,
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        let images: Vec<Image> = items
            .iter()
            .map(|i| {
                let img = i.image.to_f32();
                match &self.normalize {
                    Some(n) => n.apply(img),
                    None => img,
                }
            })
            .collect();
        ImageBatch {
            images: stack_images(&images.iter().collect::<Vec<_>>(), device),
            labels: labels_tensor(&items, device),
        }
    }
}

/// Several augmented views of each image.
#[derive(Debug, Clone)]
pub struct MultiViewBatch<B: Backend> {
    /// One `[batch, channels, height, width]` tensor per view.
    pub views: Vec<Tensor<B, 4>>,
    /// `[batch]` class indices of the source images.
    pub labels: Option<Tensor<B, 1, Int>>,
}

/// Stacks [`ViewsItem`]s view by view.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewsBatcher;

impl Labeled for ViewsItem {
    fn label(&self) -> Option<usize> {
        self.label
    }
}

impl<B: Backend> Batcher<B, ViewsItem, MultiViewBatch<B>> for ViewsBatcher {
    fn batch(&self, items: Vec<ViewsItem>, device: &B::Device) -> MultiViewBatch<B> {
        let num_views = items[0].views.len();
        let views = (0..num_views)
            .map(|v| {
                stack_images(
                    &items.iter().map(|i| &i.views[v]).collect::<Vec<_>>(),
                    device,
                )
            })
            .collect();
        MultiViewBatch {
            views,
            labels: labels_tensor(&items, device),
        }
    }
}

/// Feature vectors with their labels.
#[derive(Debug, Clone)]
pub struct FeatureBatch<B: Backend> {
    /// `[batch, features]`.
    pub features: Tensor<B, 2>,
    /// `[batch]` class indices.
    pub labels: Option<Tensor<B, 1, Int>>,
}

/// Stacks feature vectors, multiplying them by `scale` (digits: 1/16 maps values to [0, 1]).
#[derive(Debug, Clone, Copy)]
pub struct FeatureBatcher {
    /// Factor applied to every value.
    pub scale: f32,
}

impl<B: Backend> Batcher<B, FeatureItem, FeatureBatch<B>> for FeatureBatcher {
    fn batch(&self, items: Vec<FeatureItem>, device: &B::Device) -> FeatureBatch<B> {
        let width = items[0].features.len();
        let data: Vec<f32> = items
            .iter()
            .flat_map(|i| i.features.iter().map(|v| v * self.scale))
            .collect();
        FeatureBatch {
            features: Tensor::from_data(TensorData::new(data, [items.len(), width]), device),
            labels: labels_tensor(&items, device),
        }
    }
}

/// Token sequences of one length, as tensors.
#[derive(Debug, Clone)]
pub struct TextBatch<B: Backend> {
    /// `[batch, seq]` input ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`, `true` at padding (burn's attention convention).
    pub padding_mask: Tensor<B, 2, Bool>,
    /// `[batch, seq]` MLM targets ([`crate::mask::IGNORE_INDEX`] where nothing is predicted),
    /// present for masked batches.
    pub mlm_targets: Option<Tensor<B, 2, Int>>,
    /// `[batch]` class indices, for labeled text.
    pub labels: Option<Tensor<B, 1, Int>>,
}

/// One encoded (and possibly masked) text ready for batching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedItem {
    /// Input ids (after masking, for MLM items).
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// MLM targets, for masked items.
    pub mlm_targets: Option<Vec<i64>>,
    /// Class index, for labeled text.
    pub label: Option<usize>,
}

impl Labeled for TokenizedItem {
    fn label(&self) -> Option<usize> {
        self.label
    }
}

/// Stacks [`TokenizedItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextBatcher;

impl<B: Backend> Batcher<B, TokenizedItem, TextBatch<B>> for TextBatcher {
    fn batch(&self, items: Vec<TokenizedItem>, device: &B::Device) -> TextBatch<B> {
        let (n, len) = (items.len(), items[0].input_ids.len());
        let ids: Vec<i64> = items
            .iter()
            .flat_map(|i| i.input_ids.iter().map(|&t| i64::from(t)))
            .collect();
        let pad: Vec<bool> = items
            .iter()
            .flat_map(|i| i.attention_mask.iter().map(|&m| m == 0))
            .collect();
        let targets: Option<Vec<i64>> = items
            .iter()
            .map(|i| i.mlm_targets.clone())
            .collect::<Option<Vec<_>>>()
            .map(|t| t.concat());
        TextBatch {
            input_ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
            padding_mask: Tensor::from_data(TensorData::new(pad, [n, len]), device),
            mlm_targets: targets.map(|t| Tensor::from_data(TensorData::new(t, [n, len]), device)),
            labels: labels_tensor(&items, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{AugmentedDataset, MultiView, Pipeline};
    use crate::testdata;
    use burn::data::dataloader::DataLoaderBuilder;
    use burn::data::dataset::InMemDataset;

    use crate::testdata::TestBackend as B;

    #[test]
    fn image_and_feature_batches() {
        let dev = Default::default();
        let items = testdata::fashion_sample();
        let batch: ImageBatch<B> = ImageBatcher::default().batch(items[..4].to_vec(), &dev);
        assert_eq!(batch.images.dims(), [4, 1, 28, 28]);
        let labels: Vec<i64> = batch
            .labels
            .unwrap()
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        assert_eq!(labels, vec![9, 2, 1, 1]);
        let max: f32 = batch.images.max().into_scalar();
        assert!(max <= 1.0 && max > 0.9);
        let mut unlabeled = items[..2].to_vec();
        unlabeled[1].label = None;
        assert!(
            Batcher::<B, _, ImageBatch<B>>::batch(&ImageBatcher::default(), unlabeled, &dev)
                .labels
                .is_none()
        );
        let digits = testdata::digits();
        let fb: FeatureBatch<B> =
            FeatureBatcher { scale: 1.0 / 16.0 }.batch(digits[..3].to_vec(), &dev);
        assert_eq!(fb.features.dims(), [3, 64]);
        assert_eq!(fb.features.max().into_scalar(), 1.0);
    }

    #[test]
    fn two_view_loader_is_deterministic_across_worker_counts() {
        // burn splits the shuffled dataset between workers, so batch composition depends on the
        // worker count; every sample's views must not.
        let run = |workers: usize| {
            let views = MultiView::two_views(Pipeline::simclr(24, Normalize::fashion_mnist()));
            let ds = AugmentedDataset::new(InMemDataset::new(testdata::fashion_sample()), views, 5)
                .unwrap();
            let loader = DataLoaderBuilder::<B, _, _>::new(ViewsBatcher)
                .batch_size(16)
                .shuffle(11)
                .num_workers(workers)
                .build(ds);
            let mut samples = Vec::new();
            for batch in loader.iter() {
                let b: MultiViewBatch<B> = batch;
                assert_eq!(b.views.len(), 2);
                assert_eq!(b.views[0].dims()[1..], [1, 24, 24]);
                let labels: Vec<i64> = b
                    .labels
                    .unwrap()
                    .into_data()
                    .convert::<i64>()
                    .to_vec()
                    .unwrap();
                let sums: Vec<f32> = b.views[1]
                    .clone()
                    .sum_dim(3)
                    .sum_dim(2)
                    .sum_dim(1)
                    .into_data()
                    .to_vec()
                    .unwrap();
                samples.extend(labels.into_iter().zip(sums.into_iter().map(f32::to_bits)));
            }
            samples.sort_unstable();
            samples
        };
        let single = run(1);
        assert_eq!(single.len(), 100);
        assert_eq!(single, run(3));
        assert_eq!(single, run(1));
    }

    #[test]
    fn text_batch_marks_padding() {
        let dev = Default::default();
        let item = |ids: Vec<u32>, mask: Vec<u32>| TokenizedItem {
            input_ids: ids,
            attention_mask: mask,
            mlm_targets: Some(vec![-100, 7, -100]),
            label: Some(1),
        };
        let b: TextBatch<B> = TextBatcher.batch(
            vec![
                item(vec![2, 7, 3], vec![1, 1, 1]),
                item(vec![2, 3, 0], vec![1, 1, 0]),
            ],
            &dev,
        );
        let pad: Vec<bool> = b.padding_mask.into_data().to_vec().unwrap();
        assert_eq!(pad, vec![false, false, false, false, false, true]);
        assert_eq!(b.mlm_targets.unwrap().dims(), [2, 3]);
        assert_eq!(b.input_ids.dims(), [2, 3]);
    }
}
