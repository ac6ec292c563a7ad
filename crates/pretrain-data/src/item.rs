//! The items readers produce: images, feature vectors and texts, with optional labels.

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// An 8-bit image in channel-first (CHW) layout, as stored by IDX, CIFAR and PNG files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image8 {
    /// Number of channels (1 grey, 3 RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, channel-major.
    pub pixels: Vec<u8>,
}

impl Image8 {
    /// Builds an image, checking that `pixels` holds exactly `channels * height * width` values.
    pub fn new(channels: usize, height: usize, width: usize, pixels: Vec<u8>) -> Result<Self> {
        check_len("Image8::new", channels, height, width, pixels.len())?;
        Ok(Self {
            channels,
            height,
            width,
            pixels,
        })
    }

    /// Converts to floating point in `[0, 1]`.
    pub fn to_f32(&self) -> Image {
        Image {
            channels: self.channels,
            height: self.height,
            width: self.width,
            data: self.pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
        }
    }
}

/// A floating-point image in CHW layout; augmentations work on this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Number of channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels * height * width` values, channel-major; usually in `[0, 1]` before normalization.
    pub data: Vec<f32>,
}

impl Image {
    /// Builds an image, checking that `data` holds exactly `channels * height * width` values.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Result<Self> {
        check_len("Image::new", channels, height, width, data.len())?;
        Ok(Self {
            channels,
            height,
            width,
            data,
        })
    }

    /// An image of zeros.
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    /// Index of pixel `(c, y, x)` in `data`.
    #[inline]
    pub fn index(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.height + y) * self.width + x
    }

    /// Value at `(c, y, x)`.
    #[inline]
    pub fn get(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[self.index(c, y, x)]
    }

    /// The `[channels, height, width]` shape.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// The values of channel `c`.
    pub fn channel(&self, c: usize) -> &[f32] {
        let plane = self.height * self.width;
        &self.data[c * plane..(c + 1) * plane]
    }

    /// Mutable values of channel `c`.
    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let plane = self.height * self.width;
        &mut self.data[c * plane..(c + 1) * plane]
    }
}

fn check_len(what: &'static str, c: usize, h: usize, w: usize, len: usize) -> Result<()> {
    if c * h * w != len || c == 0 || h == 0 || w == 0 {
        return Err(DataError::Shape {
            what,
            expected: format!("[{c}, {h}, {w}] = {} values (all sides > 0)", c * h * w),
            found: format!("{len} values"),
        });
    }
    Ok(())
}

/// An image with its class, when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageItem {
    /// The pixels.
    pub image: Image8,
    /// Class index, `None` for unlabeled data.
    pub label: Option<usize>,
}

/// A numeric feature vector with its class, when known (e.g. a row of scikit-learn's digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureItem {
    /// Feature values as read.
    pub features: Vec<f32>,
    /// Class index, `None` for unlabeled data.
    pub label: Option<usize>,
}

impl FeatureItem {
    /// Views the features as a one-channel `height x width` image scaled by `1 / max_value`
    /// (digits: 8x8 with values up to 16).
    pub fn to_image(&self, height: usize, width: usize, max_value: f32) -> Result<Image> {
        Image::new(
            1,
            height,
            width,
            self.features.iter().map(|v| v / max_value).collect(),
        )
    }
}

/// A text with its class, when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextItem {
    /// The text.
    pub text: String,
    /// Class index, `None` for unlabeled data.
    pub label: Option<usize>,
}

impl TextItem {
    /// Unlabeled items for every document of a corpus (as read by `read_text_corpus`).
    pub fn unlabeled(documents: &[String]) -> Vec<TextItem> {
        documents
            .iter()
            .map(|d| TextItem {
                text: d.clone(),
                label: None,
            })
            .collect()
    }
}

/// Something that may carry a class label; lets splits and subsets work on any item type.
pub trait Labeled {
    /// The class index, if the item has one.
    fn label(&self) -> Option<usize>;
}

impl Labeled for ImageItem {
    fn label(&self) -> Option<usize> {
        self.label
    }
}

impl Labeled for FeatureItem {
    fn label(&self) -> Option<usize> {
        self.label
    }
}

impl Labeled for TextItem {
    fn label(&self) -> Option<usize> {
        self.label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_pixel_count_is_an_error() {
        let err = Image8::new(1, 2, 2, vec![0; 3]).unwrap_err();
        assert!(err.to_string().contains("[1, 2, 2]"), "{err}");
        assert!(Image::new(0, 2, 2, vec![]).is_err());
    }

    #[test]
    fn indexing_is_channel_major() {
        let img = Image::new(2, 1, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(img.get(1, 0, 0), 3.0);
        assert_eq!(img.channel(1), &[3.0, 4.0]);
        assert_eq!(
            Image8::new(1, 1, 2, vec![0, 255]).unwrap().to_f32().data,
            vec![0.0, 1.0]
        );
    }
}
