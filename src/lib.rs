//! # exactflow
//!
//! Normalizing flows whose mathematics is verified, not trusted. This facade re-exports the
//! member crates and adds the pictures the command line writes:
//!
//! - [`kernels`]: log-determinants (triangular O(n), LU O(n^3)), dense LU, gemm and SIMD coupling
//!   kernels, generic over [`Real`];
//! - [`layers`]: invertible layers with exact log-dets and hand-written backward passes,
//!   conditioner networks, base distributions, Jacobian helpers;
//! - [`models`]: NICE, RealNVP and Glow flows, maximum-likelihood training, checkpoints, data
//!   sets, the audit; its [`Error`] is the one error type of the whole library;
//! - `pictures` (feature `pictures`, on with `cli`): PNG density maps, sample scatters, image
//!   grids and log-log plots;
//! - `allocator` (feature `allocator`, on with `cli`): the process-wide malloc settings the
//!   command line uses to keep a training step's freed buffers for the next step;
//! - `progress` (feature `progress`, on with `cli`): the training progress bar;
//! - [`training`]: a training run as `exactflow train` does it (options, defaults, metrics), and
//!   [`reports`]: the JSON documents of `exactflow logdet`; the command line and the Python
//!   package (`python/`) share both.
//!
//! With `default-features = false` a dependent gets the library alone: no command-line,
//! progress-bar, image or libc crates.
//!
//! Direction convention: `forward` maps data to latent (the normalizing direction) and returns
//! log|det dz/dx| per sample; `inverse` maps latent to data.

#![warn(missing_docs)]

#[cfg(feature = "allocator")]
pub mod allocator;
#[cfg(feature = "pictures")]
pub mod pictures;
#[cfg(feature = "progress")]
pub mod progress;
pub mod reports;
pub mod training;

pub use exactflow_kernels as kernels;
pub use exactflow_kernels::{LogDet, Matrix, Real};
pub use exactflow_layers as layers;
pub use exactflow_models as models;
pub use exactflow_models::{Error, Result};
