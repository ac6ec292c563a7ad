//! # pretrain-objectives
//!
//! Self-supervised objectives: each is a burn `Module` holding the model(s) it trains and
//! implements [`Objective`], turning an unlabeled batch into a loss and named metrics on any
//! backend. The loss functions are public on their own and checked against PyTorch.
//!
//! - masked modeling: [`mae`] (MAE, `norm_pix_loss`), [`simmim`] (mask tokens, L1),
//!   [`mlm`] (BERT masked language modeling);
//! - generative: [`causal_lm`] (GPT next-token prediction over packed windows, perplexity and
//!   bits per byte);
//! - reconstruction: [`denoising`] (denoising / plain autoencoders, MSE or BCE);
//! - joint embedding: [`simclr`] (NT-Xent), [`moco`] (InfoNCE with a queue and momentum
//!   encoder), [`simsiam`], [`byol`] (EMA target), [`barlow_twins`], [`vicreg`];
//! - [`target`]: EMA targets and momentum schedules; [`monitor`]: collapse monitors;
//!   [`ops`]: shared tensor functions.

pub mod barlow_twins;
pub mod branch;
pub mod byol;
pub mod causal_lm;
pub mod collective;
pub mod denoising;
pub mod error;
pub mod mae;
pub mod masked_image;
pub mod mlm;
pub mod moco;
pub mod monitor;
pub mod objective;
pub mod ops;
pub mod simclr;
pub mod simmim;
pub mod simsiam;
pub mod target;
pub mod vicreg;

pub use barlow_twins::{BarlowTwins, BarlowTwinsConfig, barlow_twins_terms};
pub use branch::ProjectedEncoder;
pub use byol::{Byol, ByolConfig, byol_loss};
pub use causal_lm::{CausalLm, CausalLmConfig, bits_per_byte, mean_nats, next_token_cross_entropy};
pub use collective::Collective;
pub use denoising::{Denoising, DenoisingConfig, ReconstructionLoss, reconstruction_loss};
pub use error::{ObjectiveError, Result};
pub use mae::{MaeObjective, MaeObjectiveConfig, masked_patch_mse, normalize_patches};
pub use masked_image::MaskedImageConfig;
pub use mlm::{Mlm, MlmConfig, masked_token_cross_entropy};
pub use moco::{MoCo, MoCoConfig, info_nce};
pub use monitor::{effective_rank, normalized_embedding_std};
pub use objective::{Metrics, Objective, StepOutput, TrainProgress};
pub use simclr::{SimClr, SimClrConfig, nt_xent};
pub use simmim::{SimMim, SimMimConfig, masked_patch_l1};
pub use simsiam::{SimSiam, SimSiamConfig, negative_cosine};
pub use target::{MomentumSchedule, ema_update, momentum_target};
pub use vicreg::{VicReg, VicRegConfig, VicRegWeights, vicreg_terms};

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod training_tests;
