//! The real data shipped in the repository's `data/` folder, loaded in one call each: for
//! tests, examples and quick experiments that must not need a download.

use crate::catalog;
use crate::error::Result;
use crate::item::{FeatureItem, Image8, ImageItem};
use crate::readers::{
    Column, IdxPaths, TableOptions, TextUnit, read_csv_features, read_idx_images, read_text_corpus,
};
use crate::source::TextEncoding;

/// The first 100 Fashion-MNIST test images with their labels (10 classes).
pub fn fashion_mnist() -> Result<Vec<ImageItem>> {
    read_idx_images(
        &IdxPaths::in_dir(&catalog::fashion_mnist_sample_dir()?, "t10k"),
        10,
    )
}

/// scikit-learn's digits: 1,797 rows of 64 pixel intensities in `0..=16`, labels 0-9.
pub fn digits() -> Result<Vec<FeatureItem>> {
    let options = TableOptions {
        has_header: false,
        ..Default::default()
    };
    read_csv_features(&catalog::digits_csv()?, &options, Some(&Column::Last), 10)
}

/// scikit-learn's digits as 8x8 grey images (intensities `0..=16` scaled to `0..=255`).
pub fn digits_images() -> Result<Vec<ImageItem>> {
    digits()?
        .into_iter()
        .map(|row| {
            let pixels = row
                .features
                .iter()
                .map(|v| (v.clamp(0.0, 16.0) * 255.0 / 16.0).round() as u8)
                .collect();
            Ok(ImageItem {
                image: Image8::new(1, 8, 8, pixels)?,
                label: row.label,
            })
        })
        .collect()
}

/// The shipped Moby Dick chapters split into paragraphs.
pub fn moby_dick_paragraphs() -> Result<Vec<String>> {
    read_text_corpus(
        &catalog::moby_dick_sample_dir()?,
        TextUnit::Paragraph,
        TextEncoding::Utf8,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_load() {
        let fashion = super::fashion_mnist().unwrap();
        assert_eq!(fashion.len(), 100);
        assert_eq!(super::digits().unwrap().len(), 1797);
        assert!(super::moby_dick_paragraphs().unwrap().len() > 100);
    }
}
