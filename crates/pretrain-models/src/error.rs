//! Errors of model construction and checkpoint loading.

use std::path::PathBuf;

/// Why a model cannot be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration value is invalid; caught at `init`, before any forward pass.
    #[error("invalid {model} config: {field} {message}")]
    InvalidConfig {
        /// Model or layer being configured.
        model: &'static str,
        /// Offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A weights file cannot be read or does not fit the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// Weights file.
        path: PathBuf,
        /// What went wrong (missing tensors, shape mismatch, I/O...).
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    /// [`ModelError::InvalidConfig`] (the constructor [`ensure`] takes).
    pub fn config(model: &'static str, field: &'static str, message: String) -> Self {
        Self::InvalidConfig {
            model,
            field,
            message,
        }
    }
}

pub(crate) use pretrain_data::error::ensure;
