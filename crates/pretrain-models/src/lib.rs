//! # pretrain-models
//!
//! The model zoo, generic over `B: Backend`: autoencoders, vision transformer with MAE decoder,
//! transformer encoder, small CNN/ResNet encoders, heads, and explicit initialization schemes.
//! Models know no objective: they map tensors to tensors.

pub mod init;

pub use init::{InitScheme, truncated_normal};
