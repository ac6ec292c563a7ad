//! Paths to the real data shipped in the repository's `data/` folder, for tests.

use std::path::PathBuf;

use crate::item::{FeatureItem, ImageItem};
use crate::readers::{
    Column, IdxPaths, TableOptions, TextUnit, read_csv_features, read_idx_images, read_text_corpus,
};
use crate::source::TextEncoding;

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

pub fn fashion_sample_paths() -> IdxPaths {
    IdxPaths::in_dir(&data_dir().join("fashion-mnist-sample"), "t10k")
}

pub fn fashion_sample() -> Vec<ImageItem> {
    read_idx_images(&fashion_sample_paths(), 10).unwrap()
}

pub fn image_folder() -> PathBuf {
    data_dir().join("images/fashion-sample")
}

pub fn digits() -> Vec<FeatureItem> {
    let options = TableOptions {
        has_header: false,
        ..Default::default()
    };
    read_csv_features(
        &data_dir().join("digits/digits.csv.gz"),
        &options,
        Some(&Column::Last),
        10,
    )
    .unwrap()
}

pub fn moby_dick() -> PathBuf {
    data_dir().join("text/moby-dick")
}

pub fn moby_dick_paragraphs() -> Vec<String> {
    read_text_corpus(&moby_dick(), TextUnit::Paragraph, TextEncoding::Utf8).unwrap()
}

pub fn spam_sample() -> PathBuf {
    data_dir().join("text/spam-sample")
}
