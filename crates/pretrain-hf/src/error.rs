//! Errors of reading and writing Hugging Face checkpoints.

use std::path::PathBuf;

use pretrain_models::ModelError;

/// Why a checkpoint cannot be read, mapped or written.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file is missing, unreadable or malformed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `config.json` field has a value the mapping cannot honour.
    #[error("{path}: field {field}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor is missing, unexpected, or of the wrong shape or type.
    #[error("{path}: tensor {name}: {message}")]
    Tensor {
        /// The weights file (or directory).
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The model cannot be built or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Result alias of this crate.
pub type Result<T, E = HfError> = std::result::Result<T, E>;

impl HfError {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        Self::File {
            path: path.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Config {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(
        path: impl Into<PathBuf>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Tensor {
            path: path.into(),
            name: name.into(),
            message: message.into(),
        }
    }
}
