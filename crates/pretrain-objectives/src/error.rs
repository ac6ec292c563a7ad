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
    /// The model inside the objective cannot be built.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Result alias of this crate.
pub type Result<T, E = ObjectiveError> = std::result::Result<T, E>;

/// Fails with [`ObjectiveError::InvalidConfig`] when `ok` is false.
pub(crate) fn ensure_config(
    ok: bool,
    objective: &'static str,
    field: &'static str,
    message: impl FnOnce() -> String,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(ObjectiveError::InvalidConfig {
            objective,
            field,
            message: message(),
        })
    }
}

/// Fails with [`ObjectiveError::Batch`] when `ok` is false.
pub(crate) fn ensure_batch(
    ok: bool,
    objective: &'static str,
    what: &'static str,
    message: impl FnOnce() -> String,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(ObjectiveError::Batch {
            objective,
            what,
            message: message(),
        })
    }
}
