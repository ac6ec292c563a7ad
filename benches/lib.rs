//! # pretrain-benches
//!
//! The workloads the project measures its speed on, beside the criterion benchmarks of this
//! folder (`cargo bench -p pretrain-benches`):
//!
//! - [`step`]: timed training steps of the four reference workloads through the engine's own
//!   [`Stepper`](pretrain::train::Stepper) (`pretrain bench step`, `compare`);
//! - [`fashion_mnist_images`]: the images the data-pipeline benchmarks read.

pub mod step;

use pretrain::data::catalog::{self, remote_dataset};
use pretrain::data::readers::{IdxPaths, read_idx_images};
use pretrain::data::{DataError, ImageItem};

/// Fashion-MNIST training images when `cargo xtask data` obtained them (checksums verified),
/// else the shipped 100-image sample repeated to `min_len` images.
pub fn fashion_mnist_images(min_len: usize) -> Result<(&'static str, Vec<ImageItem>), DataError> {
    let full = remote_dataset("fashion-mnist")?;
    if full.verify().is_ok() {
        return Ok((
            "fashion-mnist-train",
            read_idx_images(&IdxPaths::in_dir(&full.dir()?, "train"), 10)?,
        ));
    }
    let sample = read_idx_images(
        &IdxPaths::in_dir(&catalog::fashion_mnist_sample_dir()?, "t10k"),
        10,
    )?;
    Ok((
        "fashion-mnist-sample",
        sample
            .iter()
            .cycle()
            .take(min_len.max(sample.len()))
            .cloned()
            .collect(),
    ))
}
