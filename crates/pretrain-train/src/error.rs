//! Errors of the training engine.

use std::path::PathBuf;

use pretrain_models::ModelError;
use pretrain_objectives::ObjectiveError;

use crate::atomic::WriteError;

/// Why a run could not start, continue or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is invalid.
    #[error("invalid training config: {field} {message}")]
    Config {
        /// Offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint cannot be read, or does not belong to this run's configuration.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// File or folder at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Too many consecutive steps had a non-finite or spiking loss, or a non-finite gradient.
    #[error(
        "training diverged: {bad_steps} consecutive steps with a non-finite or spiking loss or a \
         non-finite gradient (step {step}); {} (lower the learning rate or enable gradient \
         clipping)",
        checkpoint_note(last_checkpoint.as_deref())
    )]
    Diverged {
        /// Steps completed when the run stopped.
        step: usize,
        /// Consecutive bad steps.
        bad_steps: usize,
        /// The newest checkpoint written, if any.
        last_checkpoint: Option<PathBuf>,
    },
    /// A resumed run's checkpoint is already at or past the steps asked for.
    #[error(
        "the run in {run_dir} already completed {done} steps (asked for {steps}); ask for more \
         steps to train further"
    )]
    AlreadyDone {
        /// The run directory.
        run_dir: PathBuf,
        /// Steps of its latest checkpoint.
        done: usize,
        /// Steps asked for.
        steps: usize,
    },
    /// The dataset is too small for one batch.
    #[error("data: {0}")]
    Data(String),
    /// A file of the run directory cannot be written or read.
    #[error("{path}: {source}")]
    Io {
        /// File at fault.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Atomic write failure.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The objective refused a batch.
    #[error(transparent)]
    Objective(#[from] ObjectiveError),
    /// Model weights cannot be saved or loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn checkpoint_note(checkpoint: Option<&std::path::Path>) -> String {
    match checkpoint {
        Some(dir) => format!("the last good checkpoint is {}", dir.display()),
        None => "it stopped before its first checkpoint, so no weights were kept".into(),
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Maps an I/O error to [`TrainError::Io`] naming `path`.
pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}
