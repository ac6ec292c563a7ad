//! Errors of reading and running recipes.

use std::path::PathBuf;

/// Why a recipe cannot be read or run.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// No built-in recipe has this name and no such file exists.
    #[error("unknown recipe {name:?}: not a file, and the built-in recipes are: {valid}")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The built-in names.
        valid: String,
    },
    /// The TOML does not parse or has a bad or unknown field.
    #[error("recipe {source_name}: {message}")]
    Parse {
        /// File or built-in name.
        source_name: String,
        /// The parser's message (it names the field and line).
        message: String,
    },
    /// A value is not allowed.
    #[error("recipe field {field}: {message}")]
    Field {
        /// Dotted field name.
        field: String,
        /// What is wrong, with the valid choices where there is a list.
        message: String,
    },
    /// A command-line option of a benchmark is not allowed.
    #[error("{option}: {message}")]
    Option {
        /// The option, as written on the command line (`--batch`).
        option: String,
        /// What is wrong, with the valid choices where there is a list.
        message: String,
    },
    /// A resume asked for a recipe that differs from the run's saved one.
    #[error(
        "cannot resume: the run's recipe {path} differs from the one asked for at {difference}; \
         an exact resume needs the same settings (only the steps may change), so start a new \
         run directory instead"
    )]
    Resume {
        /// The saved recipe.
        path: PathBuf,
        /// The first difference, `field: saved X vs asked Y`.
        difference: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// File at fault.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Data loading failed.
    #[error(transparent)]
    Data(#[from] pretrain::data::DataError),
    /// A model could not be built or loaded.
    #[error(transparent)]
    Model(#[from] pretrain::models::ModelError),
    /// An objective could not be built.
    #[error(transparent)]
    Objective(#[from] pretrain::objectives::ObjectiveError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] pretrain::train::TrainError),
    /// Fine-tuning or evaluation failed.
    #[error(transparent)]
    Finetune(#[from] pretrain::finetune::FinetuneError),
    /// The backend is not available.
    #[error(transparent)]
    Backend(#[from] pretrain::backend::BackendError),
    /// A Hugging Face checkpoint could not be read or written.
    #[error(transparent)]
    Hf(#[from] pretrain::hf::HfError),
}

impl RecipeError {
    /// A bad value of a recipe field (dotted path).
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A bad command-line option or setting.
    pub fn option(option: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Option {
            option: option.into(),
            message: message.into(),
        }
    }

    /// A file or folder that could not be read or written.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = RecipeError> = std::result::Result<T, E>;
