//! The typed error every reader, transform and tokenizer of this crate returns.

use std::path::PathBuf;

/// Everything that can go wrong while turning files into training items.
///
/// Each variant names the file (or field) at fault so a user can act on the message.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to open or read a file.
    #[error("{path}: {source}")]
    Io {
        /// File or folder being read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file ends before the data its header announces.
    #[error("{path}: truncated file: expected {expected} bytes of {what}, found {found}")]
    Truncated {
        /// File being read.
        path: PathBuf,
        /// What was being read (header, image data, record...).
        what: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The file does not start with the magic number of its format.
    #[error("{path}: bad magic number 0x{found:08x}, expected {expected}")]
    BadMagic {
        /// File being read.
        path: PathBuf,
        /// Description of the accepted magic number(s).
        expected: &'static str,
        /// Magic number found.
        found: u32,
    },
    /// Two counts that must agree do not (images vs labels, header vs body, columns per row).
    #[error("{path}: {what}: expected {expected}, found {found}")]
    CountMismatch {
        /// File being read.
        path: PathBuf,
        /// What was counted.
        what: String,
        /// Count required.
        expected: usize,
        /// Count found.
        found: usize,
    },
    /// An image has another size than the dataset requires.
    #[error(
        "{path}: image is {found_width}x{found_height}, expected {expected_width}x{expected_height}"
    )]
    ImageSize {
        /// Image file.
        path: PathBuf,
        /// Required width.
        expected_width: usize,
        /// Required height.
        expected_height: usize,
        /// Width found.
        found_width: usize,
        /// Height found.
        found_height: usize,
    },
    /// An image file could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    ImageDecode {
        /// Image file.
        path: PathBuf,
        /// Decoder message.
        message: String,
    },
    /// Text is not valid in the requested encoding.
    #[error(
        "{path}: invalid UTF-8 at byte {offset} (if that is expected, set the source's encoding = \"latin1\" or \"utf8-lossy\")"
    )]
    BadUtf8 {
        /// Text file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A corpus or dataset holds no usable item.
    #[error("{path}: {what} is empty")]
    Empty {
        /// File or folder read.
        path: PathBuf,
        /// What was expected to hold items.
        what: &'static str,
    },
    /// A value in a text table (CSV/TSV) cannot be used.
    #[error("{path}: line {line}, column {column:?}: {message}")]
    BadField {
        /// Table file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Column name or index.
        column: String,
        /// What is wrong with it.
        message: String,
    },
    /// A configuration value is out of its valid range.
    #[error("invalid {field}: {message}")]
    InvalidConfig {
        /// Name of the configuration field.
        field: &'static str,
        /// Why it is invalid.
        message: String,
    },
    /// Items handed to a transform do not have the shape it needs.
    #[error("shape mismatch in {what}: expected {expected}, found {found}")]
    Shape {
        /// Transform or batch being built.
        what: &'static str,
        /// Expected shape.
        expected: String,
        /// Shape found.
        found: String,
    },
    /// The tokenizer library reported an error.
    #[error("tokenizer{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer {
        /// Tokenizer file, when one was involved.
        path: Option<PathBuf>,
        /// Library message.
        message: String,
    },
    /// A shard file or shard manifest is damaged or does not match its manifest.
    #[error("{path}: {message}")]
    Shard {
        /// Shard or manifest file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// A downloaded or installed file does not have the expected checksum.
    #[error("{path}: SHA-256 {found} does not match the expected {expected}")]
    Checksum {
        /// File checked.
        path: PathBuf,
        /// Expected digest (hex).
        expected: String,
        /// Digest found (hex).
        found: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`DataError::InvalidConfig`] for `field`.
    pub fn config(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            message: message.into(),
        }
    }
}

/// `Ok(())` when `ok`, else the error `error(owner, part, message())` (the message is built
/// only on failure): the one check behind the configuration and batch validation of every
/// crate, each passing its own error constructor (`ModelError::config`,
/// `ObjectiveError::batch`, ...).
pub fn ensure<E>(
    ok: bool,
    error: fn(&'static str, &'static str, String) -> E,
    owner: &'static str,
    part: &'static str,
    message: impl FnOnce() -> String,
) -> std::result::Result<(), E> {
    if ok {
        Ok(())
    } else {
        Err(error(owner, part, message()))
    }
}

/// The message of a caught panic (`&str` or `String` payloads; "malformed" otherwise), for the
/// guards that turn a dependency's panic on bad input into an error naming the file.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "malformed".into())
}
