//! The error type of the numerical crates (kernels and layers): shapes, lengths, non-finite
//! values, singular matrices and out-of-range arguments.
//!
//! Every variant says what was expected and what was found, so that the message alone is enough to
//! fix the call. Data-dependent outcomes that are not mistakes (a singular matrix in a log-det)
//! are values, not errors: see [`crate::LogDet`]. Files, configurations and training live one
//! level up: `exactflow_models::Error` wraps this type and adds them.

use thiserror::Error as ThisError;

/// Result alias used throughout exactflow.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a caller of the numerical kernels and layers can get wrong.
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
