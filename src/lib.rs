//! # exactflow
//!
//! Normalizing flows whose mathematics is verified, not trusted. This facade re-exports the
//! member crates:
//!
//! - [`kernels`]: log-determinants (triangular O(n), LU O(n^3)), dense LU, gemm and SIMD coupling
//!   kernels, generic over [`Real`].
//!
//! Direction convention: `forward` maps data to latent (the normalizing direction) and returns
//! log|det dz/dx| per sample; `inverse` maps latent to data.

pub use exactflow_kernels as kernels;
pub use exactflow_kernels::{Error, LogDet, Matrix, Real, Result};
