//! # pretrain
//!
//! Unsupervised pre-training on [burn](https://burn.dev): one facade over the workspace crates
//! and the backend selection.
//!
//! - [`data`]: readers, augmentations, maskers, tokenizers, loaders;
//! - [`models`]: autoencoders, ViT/MAE, transformer encoder, heads, initialization;
//! - [`objectives`]: masked modeling, denoising, contrastive and BYOL-style losses;
//! - [`train`]: the training engine;
//! - [`finetune`]: linear probe, kNN, full fine-tuning, LoRA, adapters;
//! - [`hf`]: Hugging Face checkpoints in and out (GPT-2);
//! - [`backend`]: which backends are compiled in (`flex`, `ndarray`, `wgpu`, `cuda` features).

pub mod backend;

pub use pretrain_data as data;
pub use pretrain_finetune as finetune;
pub use pretrain_hf as hf;
pub use pretrain_models as models;
pub use pretrain_objectives as objectives;
pub use pretrain_train as train;

pub use burn;
