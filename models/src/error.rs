//! The error type of exactflow's models: the numerical errors of the kernels and layers, plus
//! files, configurations, non-finite stage outputs and training divergence.
//!
//! The levels are kept apart so that each crate's API changes only with its own concerns:
//! `exactflow_kernels::Error` (shapes, lengths, non-finite inputs, singular matrices, invalid
//! arguments) is wrapped as [`Error::Numerical`]; a flow reports a stage whose output overflowed
//! as [`Error::NonFinite`] naming the stage; only the trainer calls that [`Error::Diverged`].

use thiserror::Error as ThisError;

/// Result alias of the models crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a caller of exactflow's models can get wrong, and everything the outside world
/// (files, configurations) can hand them broken.
#[derive(Debug, ThisError, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A numerical or shape error from the kernels or a layer.
    #[error(transparent)]
    Numerical(#[from] exactflow_kernels::Error),
    /// A configuration is impossible (zero layers, an image size the squeezes cannot halve, an
    /// unknown preset, ...).
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
    /// A stage of a flow produced NaN or an infinity from finite inputs (an overflow), or met
    /// one inside its computation.
    #[error("{stage} ({kind}): {what} is not finite (first bad entry {value} at {index:?})")]
    NonFinite {
        /// The stage's stable name (`flow.7`).
        stage: String,
        /// The stage's layer type.
        kind: &'static str,
        /// Which quantity ("output", "log-det", "log-density of the factored latent", ...).
        what: String,
        /// (sample, offset within the sample) of the first bad entry.
        index: (usize, usize),
        /// The offending value.
        value: f64,
    },
    /// An allocation sized by user input (a sample count, an image shape, a size declared by a
    /// file or a checkpoint's config) would need more memory than this machine has; checked
    /// before allocating (see [`crate::memory`]).
    #[error(
        "{what} needs {}, more than the {} of memory (RAM and swap) this machine has",
        crate::memory::show(*.needed),
        crate::memory::show(Some(*.available))
    )]
    TooLarge {
        /// What the memory was for.
        what: String,
        /// The bytes needed (`None`: more than a `u64` counts).
        needed: Option<u64>,
        /// The bytes this machine has ([`crate::memory::machine_bytes`]).
        available: u64,
    },
    /// Training stopped because it diverged.
    #[error("training diverged at step {step}: {reason}")]
    Diverged {
        /// The optimizer step at which it was detected (0-based).
        step: u64,
        /// What was detected, naming the stage or parameter where one is known.
        reason: String,
    },
}

impl Error {
    /// Builds an invalid-argument error (a [`exactflow_kernels::Error::InvalidArgument`]).
    pub fn invalid(op: &'static str, what: &'static str, reason: impl Into<String>) -> Self {
        Error::Numerical(exactflow_kernels::Error::invalid(op, what, reason))
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: &std::path::Path, format: &'static str, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.display().to_string(),
            format,
            reason: reason.into(),
        }
    }
}
