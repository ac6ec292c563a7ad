//! # pretrain-models
//!
//! The model zoo, generic over `B: Backend`, each model a serde `Config` with named presets and
//! an `init` that refuses invalid configurations:
//!
//! - [`autoencoder`]: MLP and convolutional autoencoders (`encode` gives the representation);
//! - [`cnn`]: small CNN and ResNet encoders for contrastive learning;
//! - [`encoder`]: image encoders and autoencoders behind enums chosen by configuration;
//! - [`heads`]: projection/predictor MLPs and linear classifiers;
//! - [`vit`]: vision transformer (`forward_features`, `forward_visible` for MAE);
//! - [`mae`]: masked autoencoder decoder on a ViT encoder, `patchify`/`unpatchify`;
//! - [`bert`]: BERT-style encoder with tied MLM head and pooler;
//! - [`block`]: the pre/post-norm transformer block both use;
//! - [`init`]: explicit initialization schemes;
//! - [`store`]: safetensors save/load with names mirroring the module tree;
//! - [`summary`]: parameter counts.
//!
//! Models know no objective: they map tensors to tensors.

pub mod autoencoder;
pub mod bert;
pub mod block;
pub mod cnn;
pub mod encoder;
pub mod error;
pub mod heads;
pub mod init;
pub mod layers;
pub mod mae;
pub mod pos_embed;
pub mod store;
pub mod summary;
pub mod vit;

pub use autoencoder::{
    ConvAutoencoder, ConvAutoencoderConfig, MlpAutoencoder, MlpAutoencoderConfig,
};
pub use bert::{Bert, BertConfig};
pub use block::{TransformerBlock, TransformerBlockConfig};
pub use cnn::{ResNet, ResNetConfig, SmallCnn, SmallCnnConfig};
pub use encoder::{Autoencoder, AutoencoderConfig, ImageEncoder, ImageEncoderConfig};
pub use error::{ModelError, Result};
pub use heads::{LinearHead, MlpHead, MlpHeadConfig};
pub use init::{InitScheme, truncated_normal};
pub use mae::{Mae, MaeConfig, patchify, unpatchify};
pub use store::{load_safetensors, save_safetensors, sync_running_stats};
pub use summary::{num_params, preset_summaries, summary};
pub use vit::{Pooling, PositionEmbedding, Vit, VitConfig};

#[cfg(test)]
mod gradient_flow_tests;
#[cfg(test)]
mod testing;
