//! The error type shared by every exactflow crate.
//!
//! Every variant says what was expected and what was found, so that the message alone is enough to
//! fix the call. Data-dependent outcomes that are not mistakes (a singular matrix in a log-det)
//! are values, not errors: see [`crate::LogDet`].

use thiserror::Error as ThisError;

/// Result alias used throughout exactflow.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a caller of exactflow can get wrong, and everything the outside world (files,
/// configurations) can hand us broken.
#[derive(Debug, ThisError, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An operation that needs a square matrix was given a rectangular one.
    #[error("{op}: expected a square matrix, found {rows}x{cols}")]
    NotSquare {
        /// The operation that was called.
        op: &'static str,
        /// Rows of the matrix that was passed.
        rows: usize,
        /// Columns of the matrix that was passed.
        cols: usize,
    },
    /// An operation that needs at least one element was given none.
    #[error("{op}: expected a non-empty {what}, found an empty one")]
    Empty {
        /// The operation that was called.
        op: &'static str,
        /// What was empty (a matrix, a batch, a slice).
        what: &'static str,
    },
    /// Two lengths that must agree do not.
    #[error("{op}: {what} has length {found}, expected {expected}")]
    LengthMismatch {
        /// The operation that was called.
        op: &'static str,
        /// Which argument has the wrong length.
        what: &'static str,
        /// The length the operation needed.
        expected: usize,
        /// The length it was given.
        found: usize,
    },
    /// Two shapes that must agree do not.
    #[error("{op}: expected shape {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The operation that was called.
        op: &'static str,
        /// The shape the operation needed.
        expected: Vec<usize>,
        /// The shape it was given.
        found: Vec<usize>,
    },
    /// An input holds NaN or an infinity. `index` is the (row, column) of the first bad entry in
    /// row-major order for matrices, or (0, i) for vectors.
    #[error("{op}: {what} has a non-finite entry {value} at index {index:?}")]
    NonFinite {
        /// The operation that was called.
        op: &'static str,
        /// Which argument holds the bad entry.
        what: &'static str,
        /// (row, column) of the first non-finite entry.
        index: (usize, usize),
        /// The offending value (NaN, inf or -inf), as f64.
        value: f64,
    },
    /// A square system could not be solved or inverted because the matrix is exactly singular.
    #[error("{op}: the matrix is singular (zero pivot in column {column})")]
    Singular {
        /// The operation that was called.
        op: &'static str,
        /// The column in which elimination met a zero pivot.
        column: usize,
    },
    /// A parameter is out of its valid range (a negative count, a zero batch size, ...).
    #[error("{op}: invalid {what}: {reason}")]
    InvalidArgument {
        /// The operation that was called.
        op: &'static str,
        /// Which argument is invalid.
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// A parameter of a layer or model holds NaN or an infinity.
    #[error("parameter {name} has a non-finite entry {value} at flat index {index}")]
    NonFiniteParameter {
        /// The parameter's stable name (e.g. `flow.3.coupling.net.0.weight`).
        name: String,
        /// Flat (row-major) index of the first bad entry.
        index: usize,
        /// The offending value, as f64.
        value: f64,
    },
    /// A configuration is impossible (zero layers, odd channel counts for a channel split, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file involved.
        path: String,
        /// What went wrong, from the operating system.
        message: String,
    },
    /// A file was read but its contents are malformed (corrupt, truncated, wrong format).
    #[error("{path}: not a valid {format}: {reason}")]
    Format {
        /// The file involved.
        path: String,
        /// The format that was expected (".npy", "safetensors checkpoint", "MNIST IDX", ...).
        format: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Training produced a non-finite loss or gradient and stopped.
    #[error("training diverged at step {step}: {what} of {layer} is not finite")]
    Diverged {
        /// The optimizer step at which it happened (0-based).
        step: u64,
        /// The layer (stable name) whose output or gradient went non-finite first.
        layer: String,
        /// Which quantity: "output", "log-det", "gradient", "loss".
        what: String,
    },
}

impl Error {
    /// Builds an [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            what,
            reason: reason.into(),
        }
    }
}
