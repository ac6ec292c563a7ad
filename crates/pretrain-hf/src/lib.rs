//! Hugging Face `transformers` checkpoints in and out: a directory holding `config.json` and
//! `model.safetensors` (or shards listed in `model.safetensors.index.json`) becomes one of this
//! workspace's models, and a model becomes such a directory that `from_pretrained` loads with
//! no missing or unexpected keys.
//!
//! Each architecture has one module with its table of names and the config fields it reads;
//! a config value the import cannot honour is refused naming the field, never ignored.
//! Supported: GPT-2 ([`gpt2`]: `GPT2Model`, `GPT2LMHeadModel`, both ways), BERT ([`bert`]:
//! `BertModel`, `BertForMaskedLM`, `BertForSequenceClassification` in, `BertForMaskedLM` out),
//! ViT ([`vit`]: `ViTModel` and a ViT-MAE's encoder in, `ViTModel` out) and ViT-MAE
//! ([`vit_mae`]: `ViTMAEForPreTraining` both ways). Tokenizer files are read by
//! `pretrain_data::tokenizer::TextTokenizer::from_hf_dir`.
//!
//! ```no_run
//! use burn::backend::Flex;
//!
//! let (config, model) = pretrain_hf::gpt2::load::<Flex>("gpt2-checkpoint".as_ref(), &Default::default())?;
//! pretrain_hf::gpt2::save(&model, &config, None, "exported".as_ref())?;
//! # Ok::<(), pretrain_hf::HfError>(())
//! ```

pub mod bert;
pub mod checkpoint;
pub mod error;
pub mod gpt2;
mod mapping;
#[cfg(test)]
mod testing;
pub mod vit;
pub mod vit_mae;

pub use checkpoint::{HfCheckpoint, HfTensor};
pub use error::{HfError, Result};
