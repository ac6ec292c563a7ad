//! # pretrain-data
//!
//! Turns real files into batches for self-supervised pre-training and few-label fine-tuning,
//! on burn's `Dataset`/`DataLoader`:
//!
//! - [`readers`]: IDX (MNIST family), CIFAR binary batches, image folders, numeric CSV, text
//!   corpora and labeled text, each with a typed [`DataError`] naming the file at fault;
//! - [`split`]: seeded splits and stratified `k` labels per class subsets;
//! - [`augment`]: seeded, composable image augmentations and multi-view datasets;
//! - [`mask`]: patch maskers (MAE, SimMIM, BEiT) and BERT token masking;
//! - [`tokenizer`]: WordPiece / byte-level BPE trained offline with `tokenizers`;
//! - [`batch`]: batchers producing tensors on any backend;
//! - [`data_source`]: a user's own data named by kind and path (the recipe's `source` table);
//! - [`shards`], [`prepare`]: sharded on-disk datasets read in place and their preparation;
//! - [`packed`]: documents packed into windows for causal language modeling;
//! - [`catalog`]: where the shipped samples and the larger obtainable data sets live;
//! - [`samples`]: the shipped samples loaded in one call each;
//! - [`names`]: the [`Named`] trait of the workspace's kebab-case enums.
//!
//! This crate knows no model: it ends at tensors.

pub mod augment;
pub mod batch;
pub mod catalog;
pub mod data_source;
pub mod error;
pub mod item;
pub mod mask;
pub mod names;
pub mod packed;
pub mod prepare;
pub mod readers;
pub mod rng;
pub mod samples;
pub mod shards;
pub mod source;
pub mod split;
pub mod text_dataset;
pub mod tokenizer;

#[cfg(test)]
mod testdata;

pub use error::{DataError, Result};
pub use item::{FeatureItem, Image, Image8, ImageItem, Labeled, TextItem};
pub use names::Named;
pub use source::TextEncoding;
