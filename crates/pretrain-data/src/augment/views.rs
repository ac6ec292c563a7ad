//! Multi-view generation (two views, asymmetric views, multi-crop) and the dataset that applies
//! it lazily in burn's data loader.

use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::Pipeline;
use crate::error::{DataError, Result};
use crate::item::{Image, ImageItem};
use crate::rng::{ItemDraw, Seeded};

/// Which views to make of each image: a list of `(pipeline, count)` groups, views in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiView {
    /// Pipelines with how many views each produces.
    pub groups: Vec<(Pipeline, usize)>,
}

impl MultiView {
    /// Two views from the same pipeline (SimCLR, SimSiam, VICReg, Barlow Twins).
    pub fn two_views(pipeline: Pipeline) -> Self {
        Self {
            groups: vec![(pipeline, 2)],
        }
    }

    /// One view from each pipeline (BYOL's asymmetric augmentations).
    pub fn asymmetric(first: Pipeline, second: Pipeline) -> Self {
        Self {
            groups: vec![(first, 1), (second, 1)],
        }
    }

    /// Multi-crop: `n_global` large views, then `n_local` small ones (SwAV/DINO).
    pub fn multi_crop(global: Pipeline, n_global: usize, local: Pipeline, n_local: usize) -> Self {
        Self {
            groups: vec![(global, n_global), (local, n_local)],
        }
    }

    /// Total number of views.
    pub fn num_views(&self) -> usize {
        self.groups.iter().map(|(_, n)| n).sum()
    }

    /// Checks every pipeline against input `shape`; returns the shape of each view.
    pub fn check(&self, shape: [usize; 3]) -> Result<Vec<[usize; 3]>> {
        if self.num_views() == 0 {
            return Err(DataError::config("views", "at least one view is needed"));
        }
        let mut shapes = Vec::new();
        for (pipeline, n) in &self.groups {
            let out = pipeline.check(shape)?;
            shapes.extend(std::iter::repeat_n(out, *n));
        }
        Ok(shapes)
    }

    /// Makes every view of `image`.
    pub fn generate(&self, image: &Image, rng: &mut StdRng) -> Vec<Image> {
        self.groups
            .iter()
            .flat_map(|(p, n)| std::iter::repeat_n(p, *n))
            .map(|p| p.apply(image.clone(), rng))
            .collect()
    }
}

/// The augmented views of one image, with its label when known.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewsItem {
    /// One image per view, in [`MultiView`] order.
    pub views: Vec<Image>,
    /// Class index of the source image.
    pub label: Option<usize>,
}

/// Wraps a dataset of images so `get(i)` returns freshly augmented views of image `i`, seeded
/// by `(seed, epoch, i)`.
pub type AugmentedDataset<D> = Seeded<D, MultiView>;

impl<D: Dataset<ImageItem>> AugmentedDataset<D> {
    /// Checks `views` against the first image's shape and wraps `inner`.
    pub fn new(inner: D, views: MultiView, seed: u64) -> Result<Self> {
        let first = inner
            .get(0)
            .ok_or_else(|| DataError::config("dataset", "is empty"))?;
        let img = &first.image;
        views.check([img.channels, img.height, img.width])?;
        Ok(Self::with_step(inner, views, seed))
    }

    /// The view configuration.
    pub fn views(&self) -> &MultiView {
        self.step()
    }
}

impl ItemDraw for MultiView {
    type Input = ImageItem;
    type Output = ViewsItem;

    fn draw(&self, item: ImageItem, rng: &mut StdRng) -> Option<ViewsItem> {
        Some(ViewsItem {
            views: self.generate(&item.image.to_f32(), rng),
            label: item.label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{AugmentOp, Normalize, RandomResizedCrop};
    use crate::rng::EpochSeeded;
    use crate::testdata;
    use burn::data::dataset::InMemDataset;

    #[test]
    fn multi_crop_shapes_and_epoch_determinism() {
        let global = Pipeline::simclr(24, Normalize::fashion_mnist());
        let local = Pipeline::new(vec![AugmentOp::RandomResizedCrop(
            RandomResizedCrop::new(12, 12).with_scale(0.05, 0.3),
        )]);
        let views = MultiView::multi_crop(global, 2, local, 4);
        let ds =
            AugmentedDataset::new(InMemDataset::new(testdata::fashion_sample()), views, 9).unwrap();
        let item = ds.get(3).unwrap();
        let shapes: Vec<_> = item.views.iter().map(Image::shape).collect();
        assert_eq!(shapes[..2], [[1, 24, 24]; 2]);
        assert_eq!(shapes[2..], [[1, 12, 12]; 4]);
        assert_ne!(item.views[0], item.views[1], "two views must differ");
        assert_eq!(item.label, Some(1));
        assert_eq!(ds.get(3).unwrap(), item);
        ds.set_epoch(1);
        assert_ne!(ds.get(3).unwrap(), item);
        ds.set_epoch(0);
        assert_eq!(ds.get(3).unwrap(), item);
    }

    #[test]
    fn bad_views_are_refused_up_front() {
        let ds = InMemDataset::new(testdata::fashion_sample());
        let err = AugmentedDataset::new(
            ds,
            MultiView::two_views(Pipeline::eval(Normalize::cifar10())),
            0,
        );
        assert!(err.is_err());
        let empty: InMemDataset<ImageItem> = InMemDataset::new(vec![]);
        assert!(
            AugmentedDataset::new(empty, MultiView::two_views(Pipeline::default()), 0).is_err()
        );
    }
}
