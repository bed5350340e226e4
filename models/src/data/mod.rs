//! Data sets: what a flow is trained on, and how it is fed to the flow.
//!
//! A [`Dataset`] is a tensor of samples, `[N, D]` for vectors or `[N, C, H, W]` for images (NCHW),
//! plus what the likelihood needs to know about it: the number of discrete levels `K` when the data
//! are integers in `0..K` (pixels: K = 256; the 8x8 digits: K = 17), and class labels when the
//! source has them (kept for plots and per-class audits, never used by the likelihood).
//!
//! Sources:
//!
//! - [`toy`]: seeded 2-D generators (two moons, circles, 8 Gaussians, checkerboard, pinwheel,
//!   two spirals), bit-for-bit deterministic per seed on a given platform.
//! - [`digits`]: the 1797 8x8 UCI handwritten digits, embedded in the crate (CC BY 4.0; see
//!   `models/data/README.md`).
//! - [`csv`] and [`npy`]: user files; [`mnist`] (IDX files) and [`cifar10`] (binary batches):
//!   user directories. [`read_matrix`] reads a single 2-D matrix (for log-determinant commands).
//!
//! A [`DataSpec`] names a source on the command line (`moons`, `digits-image`, `csv:PATH`, ...)
//! and [`DataSpec::load`] turns it into seeded train/validation/test [`Splits`].
//!
//! Discrete data are fed to a flow dequantized: [`dequantize`] maps integers `x` in `0..K` to
//! `u = (x + U[0,1)) / K` in `[0, 1)`, and a model of `u` gives a lower bound on the likelihood of
//! `x` after the `- D ln K` correction. Minibatches follow [`epoch_order`], a seeded shuffle.
//!
//! Randomness is always a `ChaCha8Rng` derived from explicit seeds; permutations use our own
//! Fisher-Yates over the raw ChaCha stream, so orders do not change with `rand` versions.

mod dataset;
mod matrix;
mod random;
mod spec;
mod split;

pub mod cifar10;
pub mod csv;
pub mod digits;
pub mod mnist;
pub mod npy;
pub mod sim;
pub mod toy;

pub(crate) mod io_util;

pub use dataset::Dataset;
pub use matrix::{MatrixSource, SourceDtype, read_matrix};
pub use random::{dequantize, derive_seed, epoch_order};
pub use spec::{DEFAULT_SIM_PAIRS, DEFAULT_TOY_SAMPLES, DataSpec, FILE_HOLDOUT, ToyKind, VAL_FRACTION};
pub use split::{Splits, split_train_val, split_train_val_test};
