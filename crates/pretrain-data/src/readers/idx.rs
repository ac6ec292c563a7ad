//! IDX files: the format of MNIST, Fashion-MNIST and KMNIST (gzipped or not).
//!
//! Layout: a big-endian magic `0x0000_TTDD` (`TT` = element type, `DD` = number of dimensions),
//! `DD` big-endian `u32` dimension sizes, then the values. Only unsigned bytes (`TT = 0x08`) are
//! used by the image datasets and supported here.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::item::{Image8, ImageItem};
use crate::source::read_bytes;

const UBYTE: u8 = 0x08;

/// An n-dimensional array of bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with `expected_dims` dimensions.
pub fn read_idx(path: &Path, expected_dims: usize) -> Result<IdxArray> {
    let bytes = read_bytes(path)?;
    parse_idx(&bytes, expected_dims, path)
}

fn parse_idx(bytes: &[u8], expected_dims: usize, path: &Path) -> Result<IdxArray> {
    let header_len = 4 + 4 * expected_dims;
    if bytes.len() < 4 {
        return Err(truncated(path, "IDX magic number", 4, bytes.len()));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected_magic = (u32::from(UBYTE) << 8) | expected_dims as u32;
    if magic != expected_magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: if expected_dims == 3 {
                "0x00000803 (IDX images of unsigned bytes)"
            } else {
                "0x00000801 (IDX labels of unsigned bytes)"
            },
            found: magic,
        });
    }
    if bytes.len() < header_len {
        return Err(truncated(path, "IDX header", header_len, bytes.len()));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::CountMismatch {
            path: path.to_path_buf(),
            what: "IDX dimensions overflow".into(),
            expected: usize::MAX,
            found: 0,
        })?;
    let body = &bytes[header_len..];
    if body.len() < count {
        return Err(truncated(path, "IDX values", count, body.len()));
    }
    if body.len() > count {
        return Err(DataError::CountMismatch {
            path: path.to_path_buf(),
            what: format!("IDX values for dimensions {dims:?} (trailing bytes)"),
            expected: count,
            found: body.len(),
        });
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

fn truncated(path: &Path, what: &'static str, expected: usize, found: usize) -> DataError {
    DataError::Truncated {
        path: path.to_path_buf(),
        what,
        expected,
        found,
    }
}

/// Paths of one split of an IDX image dataset (images + labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxPaths {
    /// `*-images-idx3-ubyte[.gz]`.
    pub images: PathBuf,
    /// `*-labels-idx1-ubyte[.gz]`.
    pub labels: PathBuf,
}

impl IdxPaths {
    /// The conventional file names of split `prefix` (`train` or `t10k`) inside `dir`, preferring
    /// gzipped files when both exist.
    pub fn in_dir(dir: &Path, prefix: &str) -> Self {
        let pick = |stem: String| {
            let gz = dir.join(format!("{stem}.gz"));
            if gz.exists() { gz } else { dir.join(stem) }
        };
        Self {
            images: pick(format!("{prefix}-images-idx3-ubyte")),
            labels: pick(format!("{prefix}-labels-idx1-ubyte")),
        }
    }
}

/// Reads grey images and their labels from an IDX pair; labels must be below `num_classes`.
pub fn read_idx_images(paths: &IdxPaths, num_classes: usize) -> Result<Vec<ImageItem>> {
    let images = read_idx_unlabeled(&paths.images)?;
    let labels = read_idx(&paths.labels, 1)?;
    let n = images.len();
    if labels.dims[0] != n {
        return Err(DataError::CountMismatch {
            path: paths.labels.clone(),
            what: format!("labels for the {n} images of {}", paths.images.display()),
            expected: n,
            found: labels.dims[0],
        });
    }
    images
        .into_iter()
        .zip(&labels.data)
        .enumerate()
        .map(|(i, (item, &label))| {
            let label = usize::from(label);
            if label >= num_classes {
                return Err(DataError::BadField {
                    path: paths.labels.clone(),
                    line: i + 1,
                    column: "label".into(),
                    message: format!("label {label} is not below the {num_classes} classes"),
                });
            }
            Ok(ImageItem {
                label: Some(label),
                ..item
            })
        })
        .collect()
}

/// Reads grey images from an IDX file of `[n, height, width]` bytes, without labels.
pub fn read_idx_unlabeled(path: &Path) -> Result<Vec<ImageItem>> {
    let images = read_idx(path, 3)?;
    let (h, w) = (images.dims[1], images.dims[2]);
    if h == 0 || w == 0 {
        return Err(DataError::CountMismatch {
            path: path.to_path_buf(),
            what: format!("pixels per image (dimensions {:?})", images.dims),
            expected: 1,
            found: 0,
        });
    }
    images
        .data
        .chunks_exact(h * w)
        .map(|pixels| {
            Ok(ImageItem {
                image: Image8::new(1, h, w, pixels.to_vec())?,
                label: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn reads_shipped_fashion_mnist_sample() {
        let items = read_idx_images(&testdata::fashion_sample_paths(), 10).unwrap();
        assert_eq!(items.len(), 100);
        assert_eq!(items[0].image.pixels.len(), 784);
        assert_eq!((items[0].image.height, items[0].image.width), (28, 28));
        // First test labels of Fashion-MNIST: ankle boot, pullover, trouser, trouser, shirt.
        let labels: Vec<_> = items.iter().take(5).map(|i| i.label.unwrap()).collect();
        assert_eq!(labels, vec![9, 2, 1, 1, 6]);
        let mut counts = [0usize; 10];
        items.iter().for_each(|i| counts[i.label.unwrap()] += 1);
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        // Images are mostly background: the first row of the first image is all zeros.
        assert!(items[0].image.pixels[..28].iter().all(|&p| p == 0));
        assert!(items[0].image.pixels.iter().any(|&p| p == 255 || p > 200));
    }

    fn raw_sample() -> (Vec<u8>, Vec<u8>) {
        let p = testdata::fashion_sample_paths();
        (
            read_bytes(&p.images).unwrap(),
            read_bytes(&p.labels).unwrap(),
        )
    }

    #[test]
    fn broken_files_give_clear_errors() {
        let (images, labels) = raw_sample();
        let p = Path::new("imgs");
        let err = parse_idx(&images[..1000], 3, p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 78400,
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_idx(&images[..10], 3, p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    what: "IDX header",
                    ..
                }
            ),
            "{err}"
        );
        let err = parse_idx(&labels, 3, p).unwrap_err();
        assert!(
            matches!(err, DataError::BadMagic { found: 0x801, .. }),
            "{err}"
        );
        let err = parse_idx(b"\xde\xad\xbe\xef garbage", 1, p).unwrap_err();
        assert!(err.to_string().contains("0xdeadbeef"), "{err}");
        let mut extra = images.clone();
        extra.push(0);
        assert!(matches!(
            parse_idx(&extra, 3, p),
            Err(DataError::CountMismatch { .. })
        ));
        assert!(matches!(
            parse_idx(&[], 1, p),
            Err(DataError::Truncated { .. })
        ));
    }

    #[test]
    fn label_count_and_range_are_checked() {
        let (images, labels) = raw_sample();
        let dir = tempfile::tempdir().unwrap();
        let paths = IdxPaths {
            images: dir.path().join("i"),
            labels: dir.path().join("l"),
        };
        std::fs::write(&paths.images, &images).unwrap();
        // 99 labels for 100 images.
        let mut short = labels[..8].to_vec();
        short[7] = 99;
        short.extend_from_slice(&labels[8..107]);
        std::fs::write(&paths.labels, &short).unwrap();
        let err = read_idx_images(&paths, 10).unwrap_err();
        assert!(err.to_string().contains("expected 100, found 99"), "{err}");
        std::fs::write(&paths.labels, &labels).unwrap();
        let err = read_idx_images(&paths, 5).unwrap_err();
        assert!(err.to_string().contains("label 9"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let paths = IdxPaths::in_dir(Path::new("/nonexistent/dir"), "train");
        let err = read_idx_images(&paths, 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/dir/train-images-idx3-ubyte"),
            "{err}"
        );
    }

    #[test]
    fn zero_sized_images_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = IdxPaths::in_dir(dir.path(), "train");
        let idx = |dims: &[u32], body: &[u8]| {
            let mut bytes = vec![0, 0, UBYTE, dims.len() as u8];
            dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
            bytes.extend(body);
            bytes
        };
        std::fs::write(&paths.images, idx(&[2, 0, 28], &[])).unwrap();
        std::fs::write(&paths.labels, idx(&[2], &[1, 2])).unwrap();
        let err = read_idx_images(&paths, 10).unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte") && err.contains("[2, 0, 28]"),
            "{err}"
        );
    }
}
