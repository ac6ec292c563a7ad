//! # pretrain-models
//!
//! The model zoo, generic over `B: FusedBackend` (burn's `Backend` plus [`fused`] operations), each model a serde `Config` with named presets and
//! an `init` that refuses invalid configurations:
//!
//! - [`autoencoder`]: MLP and convolutional autoencoders (`encode` gives the representation);
//! - [`cnn`]: small CNN and ResNet encoders for contrastive learning;
//! - [`encoder`]: image encoders and autoencoders behind enums chosen by configuration;
//! - [`batch_norm`]: batch normalization on the CPU backends' vectorized paths;
//! - [`heads`]: projection/predictor MLPs and linear classifiers;
//! - [`vit`]: vision transformer (`forward_features`, `forward_visible` for MAE);
//! - [`mae`]: masked autoencoder decoder on a ViT encoder, `patchify`/`unpatchify`;
//! - [`bert`]: BERT-style encoder with tied MLM head and pooler;
//! - [`gpt`]: decoder-only transformer (GPT-2 layout, learned or rotary positions, KV cache);
//! - [`generate`]: seeded greedy, temperature, top-k and top-p sampling through the KV cache;
//! - [`ngram`]: unigram, bigram and Kneser-Ney trigram baselines of language models;
//! - [`block`]: the pre/post-norm transformer block both use, with [`attention`], optional
//!   [`adapter`]s, [`lora`] updates on its [`projection`]s and [`drop_path`];
//! - [`fused`]: the fused operations the models call ([`FusedBackend`], burn's backend
//!   extension pattern: generic defaults, Flex kernels, autodiff backward passes);
//! - [`norm`]: layer normalization through the fused operation, burn's parameter names;
//! - [`init`]: explicit initialization schemes;
//! - [`store`]: safetensors save/load with names mirroring the module tree;
//! - [`summary`]: parameter counts; [`path`]: dotted parameter paths.
//!
//! Models know no objective: they map tensors to tensors.

pub mod adapter;
pub mod attention;
pub mod autoencoder;
pub mod batch_norm;
pub mod bert;
pub mod block;
pub mod cnn;
pub mod drop_path;
pub mod encoder;
pub mod error;
pub mod fused;
pub mod generate;
pub mod gpt;
pub mod heads;
pub mod init;
pub mod layers;
pub mod lora;
pub mod mae;
pub mod ngram;
pub mod norm;
pub mod path;
pub mod pos_embed;
pub mod projection;
pub mod size;
pub mod store;
pub mod summary;
pub mod vit;

pub use adapter::{Adapter, AdapterConfig};
pub use attention::SelfAttention;
pub use autoencoder::{
    ConvAutoencoder, ConvAutoencoderConfig, MlpAutoencoder, MlpAutoencoderConfig,
};
pub use batch_norm::{BatchNorm, BatchNormConfig};
pub use bert::{Bert, BertConfig};
pub use block::{
    AdaptableBlock, ProjectionRole, TransformerBlock, TransformerBlockConfig, TransformerStack,
};
pub use cnn::{ResNet, ResNetConfig, SmallCnn, SmallCnnConfig};
pub use drop_path::{DropPath, linear_drop_path_rates};
pub use encoder::{Autoencoder, AutoencoderConfig, ImageEncoder, ImageEncoderConfig};
pub use error::{ModelError, Result};
pub use fused::{FusedAutodiffBackend, FusedBackend};
pub use generate::{SamplingConfig, generate, sample_token};
pub use gpt::{Gpt, GptConfig, GptPositions, KvCache};
pub use heads::{LinearHead, MlpHead, MlpHeadConfig};
pub use init::{InitScheme, truncated_normal};
pub use lora::{Lora, LoraConfig};
pub use mae::{Mae, MaeConfig, patchify, unpatchify};
pub use ngram::{NgramCounts, NgramKind};
pub use projection::Projection;
pub use store::{
    first_non_finite, load_safetensors, load_safetensors_bytes, load_safetensors_where,
    safetensors_bytes, save_safetensors, save_safetensors_where, sync_running_stats,
};
pub use summary::{num_params, preset_summaries, summary};
pub use vit::{Pooling, PositionEmbedding, Vit, VitConfig};

#[cfg(test)]
mod gradient_flow_tests;
#[cfg(test)]
mod testing;
