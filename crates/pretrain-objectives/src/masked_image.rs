//! What the masked-image objectives (MAE, SimMIM) ask of their data: a masker with their ratio
//! and the ViT's patch grid. The data are built from the configuration, so a patch size or
//! ratio is never restated by the caller.

use burn::data::dataset::Dataset;
use pretrain_data::ImageItem;
use pretrain_data::augment::Pipeline;
use pretrain_data::mask::{MaskedImageDataset, PatchMasker};
use pretrain_models::VitConfig;

/// The configuration of an objective that reconstructs hidden ViT patches.
pub trait MaskedImageConfig {
    /// The ViT whose patches are hidden.
    fn vit(&self) -> &VitConfig;

    /// Share of the patches hidden.
    fn mask_ratio(&self) -> f32;

    /// The masker the data pipeline must use.
    fn masker(&self) -> PatchMasker {
        PatchMasker::random(self.mask_ratio())
    }

    /// `images` augmented by `pipeline` with fresh masks on the ViT's patch grid, both seeded
    /// by `(seed, epoch, index)`.
    fn masked_data<D: Dataset<ImageItem>>(
        &self,
        images: D,
        pipeline: Pipeline,
        seed: u64,
    ) -> pretrain_data::Result<MaskedImageDataset<D>> {
        MaskedImageDataset::new(images, pipeline, self.masker(), self.vit().patch_size, seed)
    }
}
