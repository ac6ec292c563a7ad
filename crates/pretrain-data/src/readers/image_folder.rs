//! Folders of PNG/JPEG images: `root/<class>/<file>` for labeled data, any layout for unlabeled.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::item::{Image8, ImageItem};
use crate::source::{files_with_extension, sorted_entries};

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// Colour layout images are converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// One grey channel.
    #[default]
    Gray,
    /// Three channels, red, green, blue.
    Rgb,
}

impl ColorMode {
    /// Number of channels of this mode.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// How an image folder is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFolderOptions {
    /// Colour layout every image is converted to.
    pub color: ColorMode,
    /// `(width, height)` every image must have; `None` accepts the size of the first image and
    /// then requires it of all others (a batch needs one size).
    pub size: Option<(usize, usize)>,
    /// Resize every image to `size` (bilinear) instead of refusing other sizes.
    pub resize: bool,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        Self {
            color: ColorMode::Gray,
            size: None,
            resize: false,
        }
    }
}

/// The image files of a folder, listed (not decoded), with their labels when labeled: what a
/// reader that decodes one image at a time (`pretrain data prepare`) starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderListing {
    /// Image files, sorted (by class folder, then path).
    pub paths: Vec<PathBuf>,
    /// Label of each file (`None` everywhere for unlabeled folders).
    pub labels: Vec<Option<usize>>,
    /// Class names (sub-folder names, sorted), empty for unlabeled folders.
    pub classes: Vec<String>,
}

impl FolderListing {
    /// Lists `root/<class>/**/<image>`; the class index follows the sorted sub-folder names.
    pub fn labeled(root: &Path) -> Result<Self> {
        let mut listing = Self::empty();
        for class_dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
            let label = listing.classes.len();
            listing.classes.push(file_name(&class_dir));
            for path in files_with_extension(&class_dir, IMAGE_EXTENSIONS)? {
                listing.paths.push(path);
                listing.labels.push(Some(label));
            }
        }
        if listing.paths.is_empty() {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
                what: "image folder (expected <root>/<class>/<image>.png|jpg)",
            });
        }
        Ok(listing)
    }

    /// Lists every image under `root`, recursively, without labels.
    pub fn unlabeled(root: &Path) -> Result<Self> {
        let mut listing = Self::empty();
        listing.paths = files_with_extension(root, IMAGE_EXTENSIONS)?;
        if listing.paths.is_empty() {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
                what: "image folder (no .png/.jpg/.jpeg file)",
            });
        }
        listing.labels = vec![None; listing.paths.len()];
        Ok(listing)
    }

    fn empty() -> Self {
        Self {
            paths: Vec::new(),
            labels: Vec::new(),
            classes: Vec::new(),
        }
    }

    /// Decodes every listed image.
    pub fn read(self, options: &ImageFolderOptions) -> Result<ImageFolder> {
        let mut size = options.size;
        let items = self
            .paths
            .iter()
            .zip(&self.labels)
            .map(|(path, &label)| {
                Ok(ImageItem {
                    image: read_image(path, options, &mut size)?,
                    label,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ImageFolder {
            items,
            paths: self.paths,
            classes: self.classes,
        })
    }
}

/// Images read from a folder, with the class names when labeled.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The images, in sorted path order.
    pub items: Vec<ImageItem>,
    /// Path of each item.
    pub paths: Vec<PathBuf>,
    /// Class names (sub-folder names, sorted), empty for unlabeled folders.
    pub classes: Vec<String>,
}

impl ImageFolder {
    /// Reads `root/<class>/**/<image>`; the class index follows the sorted sub-folder names.
    pub fn labeled(root: &Path, options: &ImageFolderOptions) -> Result<Self> {
        FolderListing::labeled(root)?.read(options)
    }

    /// Reads every image under `root`, recursively, without labels.
    pub fn unlabeled(root: &Path, options: &ImageFolderOptions) -> Result<Self> {
        FolderListing::unlabeled(root)?.read(options)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Decodes one image file into CHW bytes in `options.color`, checking (or fixing on first use)
/// its size, or resizing it to `options.size` when `options.resize` is set.
pub fn read_image(
    path: &Path,
    options: &ImageFolderOptions,
    size: &mut Option<(usize, usize)>,
) -> Result<Image8> {
    let mut decoded = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?
        .decode()
        .map_err(|e| DataError::ImageDecode {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if let (true, Some((w, h))) = (options.resize, options.size)
        && (decoded.width() as usize, decoded.height() as usize) != (w, h)
    {
        let side = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        decoded = decoded.resize_exact(side(w), side(h), image::imageops::FilterType::Triangle);
    }
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let (expected_width, expected_height) = *size.get_or_insert((w, h));
    if (w, h) != (expected_width, expected_height) {
        return Err(DataError::ImageSize {
            path: path.to_path_buf(),
            expected_width,
            expected_height,
            found_width: w,
            found_height: h,
        });
    }
    let pixels = match options.color {
        ColorMode::Gray => decoded.into_luma8().into_raw(),
        ColorMode::Rgb => {
            // The decoder yields interleaved RGB (HWC); items are channel-first.
            let hwc = decoded.into_rgb8().into_raw();
            (0..3)
                .flat_map(|c| hwc.iter().skip(c).step_by(3).copied())
                .collect()
        }
    };
    Image8::new(options.color.channels(), h, w, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn reads_shipped_labeled_folder() {
        let folder =
            ImageFolder::labeled(&testdata::image_folder(), &ImageFolderOptions::default())
                .unwrap();
        assert_eq!(folder.classes.len(), 10);
        assert_eq!(folder.classes[0], "ankle-boot");
        assert_eq!(folder.items.len(), 20);
        assert!(folder.items.iter().all(|i| i.image.pixels.len() == 784));
        // The PNGs were written from the IDX sample: pixels must match exactly.
        let fashion = testdata::fashion_sample();
        let first = &folder.paths[0];
        let index: usize = first
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(folder.items[0].image.pixels, fashion[index].image.pixels);
        assert_eq!(fashion[index].label, Some(9)); // ankle boot
    }

    #[test]
    fn rgb_jpeg_and_unlabeled() {
        let dir = tempfile::tempdir().unwrap();
        let sample = &testdata::fashion_sample()[0].image;
        let rgb: Vec<u8> = sample
            .pixels
            .iter()
            .flat_map(|&p| [p, p / 2, 255 - p])
            .collect();
        let img = image::RgbImage::from_raw(28, 28, rgb).unwrap();
        let sub = dir.path().join("nested");
        std::fs::create_dir(&sub).unwrap();
        img.save(sub.join("a.png")).unwrap();
        img.save(dir.path().join("b.jpg")).unwrap();
        let options = ImageFolderOptions {
            color: ColorMode::Rgb,
            size: Some((28, 28)),
            resize: false,
        };
        let folder = ImageFolder::unlabeled(dir.path(), &options).unwrap();
        assert_eq!(folder.items.len(), 2);
        assert!(folder.classes.is_empty());
        let png = &folder
            .paths
            .iter()
            .position(|p| p.ends_with("a.png"))
            .unwrap();
        let px = &folder.items[*png].image;
        assert_eq!(px.channels, 3);
        // Channel-first: the blue plane starts at 2 * 784.
        assert_eq!(px.pixels[2 * 784 + 100], 255 - sample.pixels[100]);
        assert_eq!(px.pixels[784 + 100], sample.pixels[100] / 2);
    }

    #[test]
    fn wrong_size_garbage_and_empty_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("cat");
        std::fs::create_dir(&class).unwrap();
        image::GrayImage::new(28, 28)
            .save(class.join("a.png"))
            .unwrap();
        image::GrayImage::new(30, 28)
            .save(class.join("b.png"))
            .unwrap();
        let err = ImageFolder::labeled(dir.path(), &ImageFolderOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ImageSize {
                    found_width: 30,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("b.png"));

        // With a size to resize to, the 30x28 image is resized instead of refused.
        let resized = ImageFolderOptions {
            size: Some((16, 16)),
            resize: true,
            ..Default::default()
        };
        let folder = ImageFolder::labeled(dir.path(), &resized).unwrap();
        assert!(folder.items.iter().all(|i| i.image.pixels.len() == 256));

        std::fs::write(class.join("b.png"), b"not a png at all").unwrap();
        let err = ImageFolder::labeled(dir.path(), &ImageFolderOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::ImageDecode { .. }), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = ImageFolder::unlabeled(empty.path(), &ImageFolderOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }));
        let err = ImageFolder::labeled(Path::new("/no/such/dir"), &Default::default()).unwrap_err();
        assert!(err.to_string().contains("/no/such/dir"));
    }
}
