//! Maskers: which image patches or text tokens a masked-modeling objective must predict.

mod masked_images;
mod patch;
mod tokens;

pub use masked_images::{
    ImageMasking, MaskedImageBatch, MaskedImageBatcher, MaskedImageDataset, MaskedImageItem,
    PatchMasker,
};
pub use patch::{BlockPatchMasker, PatchMask, PatchMaskBatch, RandomPatchMasker, masked_count};
pub use tokens::{IGNORE_INDEX, MaskUnit, MaskVocab, MaskedTokens, TokenMasker};
