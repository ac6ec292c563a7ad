//! CIFAR-10 and CIFAR-100 binary batches (`data_batch_1.bin`, `train.bin`, ...).
//!
//! Each record is the label byte(s) followed by 3072 pixel bytes: 1024 red, 1024 green and
//! 1024 blue values of a 32x32 image, row-major, which is already channel-first.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::item::{Image8, ImageItem};
use crate::source::read_bytes;

const SIDE: usize = 32;
const PIXELS: usize = 3 * SIDE * SIDE;

/// Which label of a CIFAR-100 record to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CifarLabels {
    /// CIFAR-10: one label byte, 10 classes.
    #[default]
    Cifar10,
    /// CIFAR-100 with its 20 coarse super-classes.
    Cifar100Coarse,
    /// CIFAR-100 with its 100 fine classes.
    Cifar100Fine,
}

impl CifarLabels {
    fn label_bytes(self) -> usize {
        match self {
            CifarLabels::Cifar10 => 1,
            _ => 2,
        }
    }

    /// Number of classes of this labeling.
    pub fn num_classes(self) -> usize {
        match self {
            CifarLabels::Cifar10 => 10,
            CifarLabels::Cifar100Coarse => 20,
            CifarLabels::Cifar100Fine => 100,
        }
    }
}

/// Reads one CIFAR binary batch file.
pub fn read_cifar_batch(path: &Path, labels: CifarLabels) -> Result<Vec<ImageItem>> {
    parse_cifar(&read_bytes(path)?, labels, path)
}

fn parse_cifar(bytes: &[u8], labels: CifarLabels, path: &Path) -> Result<Vec<ImageItem>> {
    let record = labels.label_bytes() + PIXELS;
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "CIFAR batch",
        });
    }
    if !bytes.len().is_multiple_of(record) {
        let whole = bytes.len() / record;
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: "CIFAR record (file size is not a multiple of the record size)",
            expected: (whole + 1) * record,
            found: bytes.len(),
        });
    }
    bytes
        .chunks_exact(record)
        .enumerate()
        .map(|(i, rec)| {
            let label = usize::from(match labels {
                CifarLabels::Cifar10 | CifarLabels::Cifar100Coarse => rec[0],
                CifarLabels::Cifar100Fine => rec[1],
            });
            if label >= labels.num_classes() {
                return Err(DataError::BadField {
                    path: path.to_path_buf(),
                    line: i + 1,
                    column: "label".into(),
                    message: format!(
                        "record {i}: label {label} is not below {} classes (is this a {:?} file?)",
                        labels.num_classes(),
                        labels
                    ),
                });
            }
            Ok(ImageItem {
                image: Image8::new(3, SIDE, SIDE, rec[labels.label_bytes()..].to_vec())?,
                label: Some(label),
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testdata;

    /// A CIFAR-10 style batch built from the shipped Fashion-MNIST sample: each grey 28x28 image
    /// is padded to 32x32 and given a different intensity per channel.
    pub(crate) fn batch_from_fashion(labels: CifarLabels) -> Vec<u8> {
        let items = testdata::fashion_sample();
        let mut out = Vec::new();
        for item in &items {
            let label = item.label.unwrap() as u8;
            match labels {
                CifarLabels::Cifar10 => out.push(label),
                _ => out.extend_from_slice(&[label, label * 7 + 3]),
            }
            for c in 0..3u8 {
                for y in 0..SIDE {
                    for x in 0..SIDE {
                        let v = if (2..30).contains(&y) && (2..30).contains(&x) {
                            item.image.pixels[(y - 2) * 28 + (x - 2)]
                        } else {
                            0
                        };
                        out.push(v / (c + 1));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn reads_cifar10_and_100_records() {
        let bytes = batch_from_fashion(CifarLabels::Cifar10);
        let items = parse_cifar(&bytes, CifarLabels::Cifar10, Path::new("b.bin")).unwrap();
        assert_eq!(items.len(), 100);
        assert_eq!(items[0].label, Some(9));
        assert_eq!(items[0].image.pixels.len(), PIXELS);
        let fashion = testdata::fashion_sample();
        // Green channel is the grey image halved, shifted by the 2-pixel border.
        let green = &items[3].image.pixels[1024..2048];
        assert_eq!(green[5 * 32 + 7], fashion[3].image.pixels[3 * 28 + 5] / 2);

        let bytes = batch_from_fashion(CifarLabels::Cifar100Fine);
        let fine = parse_cifar(&bytes, CifarLabels::Cifar100Fine, Path::new("t.bin")).unwrap();
        let coarse = parse_cifar(&bytes, CifarLabels::Cifar100Coarse, Path::new("t.bin")).unwrap();
        assert_eq!(fine[0].label, Some(9 * 7 + 3));
        assert_eq!(coarse[0].label, Some(9));
    }

    #[test]
    fn broken_batches_give_clear_errors() {
        let p = Path::new("data_batch_1.bin");
        let bytes = batch_from_fashion(CifarLabels::Cifar10);
        let err = parse_cifar(&bytes[..5000], CifarLabels::Cifar10, p).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { expected: 6146, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("data_batch_1.bin"));
        // A CIFAR-100 file read as CIFAR-10 is misaligned: record sizes differ.
        let c100 = batch_from_fashion(CifarLabels::Cifar100Fine);
        assert!(parse_cifar(&c100, CifarLabels::Cifar10, p).is_err());
        let mut garbage = vec![200u8; 3073];
        garbage[0] = 200;
        let err = parse_cifar(&garbage, CifarLabels::Cifar10, p).unwrap_err();
        assert!(err.to_string().contains("label 200"), "{err}");
        assert!(matches!(
            parse_cifar(&[], CifarLabels::Cifar10, p),
            Err(DataError::Empty { .. })
        ));
    }
}
