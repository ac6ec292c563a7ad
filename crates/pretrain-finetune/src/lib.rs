//! # pretrain-finetune
//!
//! Turns a pre-trained encoder into a labeled-task model and measures how good its
//! representation is: linear probe, kNN, full fine-tuning with layer-wise LR decay, partial
//! freezing, adapters and LoRA, with accuracy, macro-F1 and confusion matrices.

pub mod metrics;

pub use metrics::{ClassificationReport, MetricsError};
