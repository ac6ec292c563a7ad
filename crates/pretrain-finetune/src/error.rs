//! Errors of fine-tuning and evaluation.

use pretrain_models::ModelError;
use pretrain_train::TrainError;

use crate::metrics::MetricsError;

/// Why a fine-tuning strategy or evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// A setting is invalid.
    #[error("invalid fine-tuning setting {field}: {message}")]
    Config {
        /// Offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The labels do not fit the task (count, range, classes missing).
    #[error("labels: {0}")]
    Labels(String),
    /// The strategy needs parts the model does not have.
    #[error("{strategy} cannot be applied to a {architecture} encoder: {message}")]
    Architecture {
        /// The strategy asked for.
        strategy: &'static str,
        /// The encoder's architecture.
        architecture: &'static str,
        /// What is missing.
        message: String,
    },
    /// Inputs of the wrong kind or shape.
    #[error("inputs: {0}")]
    Inputs(String),
    /// Building or loading a model failed (the message names the file or field).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Metrics could not be computed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A report could not be written.
    #[error("{path}: {message}")]
    Io {
        /// File at fault.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = FinetuneError> = std::result::Result<T, E>;
