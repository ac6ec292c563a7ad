//! Paths to the real data shipped in the repository's `data/` folder, for tests.

use std::path::PathBuf;

use crate::item::{FeatureItem, ImageItem};
use crate::readers::IdxPaths;

/// The backend of this crate's tests: burn's Flex CPU backend (the default everywhere; the
/// facade's cross-backend tests run the objectives on ndarray and wgpu too).
pub type TestBackend = burn::backend::Flex;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

pub fn fashion_sample_paths() -> IdxPaths {
    IdxPaths::in_dir(&data_dir().join("fashion-mnist-sample"), "t10k")
}

pub fn fashion_sample() -> Vec<ImageItem> {
    crate::samples::fashion_mnist().unwrap()
}

pub fn image_folder() -> PathBuf {
    data_dir().join("images/fashion-sample")
}

pub fn digits() -> Vec<FeatureItem> {
    crate::samples::digits().unwrap()
}

pub fn moby_dick() -> PathBuf {
    data_dir().join("text/moby-dick")
}

pub fn moby_dick_paragraphs() -> Vec<String> {
    crate::samples::moby_dick_paragraphs().unwrap()
}

pub fn spam_sample() -> PathBuf {
    data_dir().join("text/spam-sample")
}
