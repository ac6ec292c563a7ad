//! Errors of scaling sweeps and fits.

use std::path::PathBuf;

/// Why a sweep, a fit or a report failed.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// A command-line option of the sweep is invalid (`--sizes`, `--flops`, `--lrs`...).
    #[error("{option}: {message}")]
    Option {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A fit was given fewer runs than it has parameters (or needs budgets).
    #[error("{fit} needs at least {needed} runs with a loss; the sweep has {have}")]
    TooFewPoints {
        /// Which fit.
        fit: String,
        /// Runs needed.
        needed: usize,
        /// Runs available.
        have: usize,
    },
    /// A fit failed on the runs it was given.
    #[error("{0}")]
    Fit(String),
    /// Reading or writing a sweep's files failed.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The sweep was stopped (Ctrl-C) during a run, which kept a checkpoint.
    #[error("stopped during the run in {run_dir}; run the same command again to continue")]
    Stopped {
        /// The interrupted run.
        run_dir: PathBuf,
    },
    /// A run of the sweep failed.
    #[error(transparent)]
    Recipe(#[from] pretrain_recipes::RecipeError),
    /// A model size cannot be built.
    #[error(transparent)]
    Model(#[from] pretrain::models::ModelError),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] pretrain_plot::PlotError),
}

impl ScalingError {
    /// [`ScalingError::Option`].
    pub fn option(option: &'static str, message: impl Into<String>) -> Self {
        Self::Option {
            option,
            message: message.into(),
        }
    }

    /// [`ScalingError::Io`] for `path`.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ScalingError> = std::result::Result<T, E>;
