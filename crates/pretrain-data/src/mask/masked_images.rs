//! Images paired with a patch mask, for masked image modeling (MAE, SimMIM): a dataset wrapper
//! that augments each image and draws its mask from the item's seeded generator, and the
//! batcher that stacks both.

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::patch::{BlockPatchMasker, PatchMask, PatchMaskBatch, RandomPatchMasker};
use crate::augment::Pipeline;
use crate::batch::{labels_tensor, stack_images};
use crate::error::{DataError, Result};
use crate::item::{Image, ImageItem, Labeled};
use crate::rng::{ItemDraw, Seeded, item_rng};

/// How patches are chosen for hiding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PatchMasker {
    /// Uniformly random patches (MAE, SimMIM).
    Random(RandomPatchMasker),
    /// Rectangular blocks (BEiT).
    Block(BlockPatchMasker),
}

impl PatchMasker {
    /// Random masking at `mask_ratio` (MAE's default is 0.75).
    pub fn random(mask_ratio: f32) -> Self {
        Self::Random(RandomPatchMasker { mask_ratio })
    }

    /// Draws one mask over a `grid_h x grid_w` patch grid.
    pub fn sample(&self, grid_h: usize, grid_w: usize, rng: &mut StdRng) -> Result<PatchMask> {
        match self {
            Self::Random(m) => m.sample(grid_h * grid_w, rng),
            Self::Block(m) => m.sample(grid_h, grid_w, rng),
        }
    }
}

/// One image with its mask.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedImageItem {
    /// The (augmented) image, `[0, 1]` floats or normalized.
    pub image: Image,
    /// Hidden patches of this image.
    pub mask: PatchMask,
    /// Class index of the source image.
    pub label: Option<usize>,
}

impl Labeled for MaskedImageItem {
    fn label(&self) -> Option<usize> {
        self.label
    }
}

/// Wraps a dataset of images so `get(i)` returns image `i` augmented by `pipeline` with a fresh
/// mask, both seeded by `(seed, epoch, i)`.
pub type MaskedImageDataset<D> = Seeded<D, ImageMasking>;

/// What [`MaskedImageDataset`] draws per image: an augmentation and a mask over the patch grid.
#[derive(Debug, Clone)]
pub struct ImageMasking {
    pipeline: Pipeline,
    masker: PatchMasker,
    grid: (usize, usize),
}

impl<D: Dataset<ImageItem>> MaskedImageDataset<D> {
    /// Checks the pipeline against the first image, and that `patch_size` tiles the augmented
    /// image, then wraps `inner`.
    pub fn new(
        inner: D,
        pipeline: Pipeline,
        masker: PatchMasker,
        patch_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let first = inner
            .get(0)
            .ok_or_else(|| DataError::config("dataset", "is empty"))?;
        let img = &first.image;
        let [_, h, w] = pipeline.check([img.channels, img.height, img.width])?;
        if patch_size == 0 || h % patch_size != 0 || w % patch_size != 0 {
            return Err(DataError::Shape {
                what: "masked image patches",
                expected: format!("a patch size dividing the {h}x{w} image"),
                found: format!("patch size {patch_size}"),
            });
        }
        let grid = (h / patch_size, w / patch_size);
        // Draw once so a bad ratio or block shape fails here, not inside a loader worker.
        masker.sample(grid.0, grid.1, &mut item_rng(seed, 0, 0))?;
        let masking = ImageMasking {
            pipeline,
            masker,
            grid,
        };
        Ok(Self::with_step(inner, masking, seed))
    }

    /// The patch grid `(rows, columns)` masks are drawn on.
    pub fn grid(&self) -> (usize, usize) {
        self.step().grid
    }
}

impl ItemDraw for ImageMasking {
    type Input = ImageItem;
    type Output = MaskedImageItem;

    fn draw(&self, item: ImageItem, rng: &mut StdRng) -> Option<MaskedImageItem> {
        let image = self.pipeline.apply(item.image.to_f32(), rng);
        // The masker's parameters were checked in `MaskedImageDataset::new`.
        let mask = self.masker.sample(self.grid.0, self.grid.1, rng).ok()?;
        Some(MaskedImageItem {
            image,
            mask,
            label: item.label,
        })
    }
}

/// Images and their masks as tensors.
#[derive(Debug, Clone)]
pub struct MaskedImageBatch<B: Backend> {
    /// `[batch, channels, height, width]`.
    pub images: Tensor<B, 4>,
    /// Masks in MAE's keep/restore form plus the hidden indicator.
    pub mask: PatchMaskBatch<B>,
    /// `[batch]` class indices of the source images.
    pub labels: Option<Tensor<B, 1, burn::tensor::Int>>,
}

/// Stacks [`MaskedImageItem`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaskedImageBatcher;

impl<B: Backend> Batcher<B, MaskedImageItem, MaskedImageBatch<B>> for MaskedImageBatcher {
    fn batch(&self, items: Vec<MaskedImageItem>, device: &B::Device) -> MaskedImageBatch<B> {
        let masks: Vec<PatchMask> = items.iter().map(|i| i.mask.clone()).collect();
        MaskedImageBatch {
            images: stack_images(&items.iter().map(|i| &i.image).collect::<Vec<_>>(), device),
            mask: PatchMaskBatch::from_masks(&masks, device)
                .expect("one masker hides the same number of patches in every image"),
            labels: labels_tensor(&items, device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{AugmentOp, HorizontalFlip};
    use crate::rng::EpochSeeded;
    use crate::testdata;
    use burn::data::dataset::InMemDataset;

    use crate::testdata::TestBackend as B;

    #[test]
    fn items_are_seeded_and_batches_stack() {
        let images = testdata::fashion_sample();
        let flip = Pipeline::new(vec![AugmentOp::HorizontalFlip(HorizontalFlip { p: 0.5 })]);
        let data = MaskedImageDataset::new(
            InMemDataset::new(images.clone()),
            flip.clone(),
            PatchMasker::random(0.75),
            4,
            7,
        )
        .unwrap();
        assert_eq!(data.grid(), (7, 7));
        let a = data.get(3).unwrap();
        assert_eq!(a, data.get(3).unwrap());
        assert_eq!(a.mask.masked.len(), 49 - 12);
        data.set_epoch(1);
        assert_ne!(a.mask, data.get(3).unwrap().mask);

        let batch: MaskedImageBatch<B> =
            MaskedImageBatcher.batch(vec![a, data.get(4).unwrap()], &Default::default());
        assert_eq!(batch.images.dims(), [2, 1, 28, 28]);
        assert_eq!(batch.mask.keep.dims(), [2, 12]);
        assert_eq!(batch.labels.unwrap().dims(), [2]);

        let bad = MaskedImageDataset::new(
            InMemDataset::new(images.clone()),
            flip.clone(),
            PatchMasker::random(0.75),
            5,
            0,
        );
        assert!(
            matches!(bad, Err(DataError::Shape { .. })),
            "5 does not divide 28"
        );
        let bad_ratio = MaskedImageDataset::new(
            InMemDataset::new(images),
            flip,
            PatchMasker::random(1.0),
            4,
            0,
        );
        assert!(bad_ratio.is_err());
    }
}
