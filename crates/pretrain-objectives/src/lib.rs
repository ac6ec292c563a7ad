//! # pretrain-objectives
//!
//! Self-supervised objectives: masked image and language modeling, denoising, contrastive and
//! BYOL-style losses, each turning a model plus an unlabeled batch into a loss and named
//! metrics, on any backend. Also the collapse monitors every objective reports.

pub mod monitor;

pub use monitor::{effective_rank, normalized_embedding_std};
