//! Errors of objective construction and of batches an objective cannot use.

use pretrain_models::ModelError;

/// Why an objective cannot be built or cannot take a batch.
#[derive(Debug, thiserror::Error)]
pub enum ObjectiveError {
    /// A configuration value is invalid; caught at `init`.
    #[error("invalid {objective} config: {field} {message}")]
    InvalidConfig {
        /// Objective being configured.
        objective: &'static str,
        /// Offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A batch lacks what the objective needs or has the wrong shape.
    #[error("{objective}: batch {what} {message}")]
    Batch {
        /// Objective receiving the batch.
        objective: &'static str,
        /// Part of the batch at fault.
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A data-parallel collective operation failed.
    #[error("data-parallel worker {rank}: {operation} failed: {message}")]
    Collective {
        /// The worker that saw the failure.
        rank: usize,
        /// What it was doing.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The model inside the objective cannot be built.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Result alias of this crate.
pub type Result<T, E = ObjectiveError> = std::result::Result<T, E>;

impl ObjectiveError {
    /// [`ObjectiveError::InvalidConfig`] (a constructor [`ensure`] takes).
    pub fn config(objective: &'static str, field: &'static str, message: String) -> Self {
        Self::InvalidConfig {
            objective,
            field,
            message,
        }
    }

    /// [`ObjectiveError::Batch`] (a constructor [`ensure`] takes).
    pub fn batch(objective: &'static str, what: &'static str, message: String) -> Self {
        Self::Batch {
            objective,
            what,
            message,
        }
    }
}

pub(crate) use pretrain_data::error::ensure;
