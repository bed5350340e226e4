//! # exactflow-kernels
//!
//! The numerical kernels under exactflow's normalizing flows, each generic over [`Real`]
//! (`f32`, `f64` and the forward-mode dual number `autodiff::F1`) with fast paths for `f32`/`f64`:
//!
//! - log-determinants as `(sign, log|det|)` ([`LogDet`]): O(n) for triangular matrices
//!   ([`log_det_diagonal`], [`log_det_lower`], [`log_det_upper`]), O(n^3) by LU for dense ones
//!   ([`log_det`], [`log_det_with`]);
//! - dense LU with partial pivoting ([`Lu`]): factor, log-det, solve, inverse, reconstruct;
//! - [`gemm`](gemm::gemm) on row-major data (faer's for f32/f64, single- or multi-threaded);
//! - coupling transforms ([`coupling`]) and a vectorized exp ([`simd`]) with runtime dispatch to
//!   AVX-512 / AVX2.
//!
//! Every entry point takes [`Matrix`], `nalgebra::DMatrix` or `faer::MatRef` through
//! [`MatrixInput`], and returns [`Result`]: a wrong shape or a NaN is an [`Error`] naming the
//! shape or the first bad index, never a panic.
//!
//! ```
//! use exactflow_kernels::{log_det, log_det_lower, Matrix};
//! # fn main() -> exactflow_kernels::Result<()> {
//! let l = Matrix::from_rows(&[[2.0, 0.0, 0.0], [1.0, -3.0, 0.0], [4.0, 5.0, 0.5]])?;
//! let fast = log_det_lower(&l)?; // O(n): the diagonal
//! let dense = log_det(&l)?; // O(n^3): LU
//! assert_eq!(fast.sign, -1.0);
//! assert!((fast.log_abs - 3f64.ln()).abs() < 1e-15);
//! assert!((fast.log_abs - dense.log_abs).abs() < 1e-14 && fast.sign == dense.sign);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod audit;
pub mod coupling;
pub mod error;
pub mod gemm;
pub mod logdet;
pub mod lu;
pub mod matrix;
pub mod real;
pub mod simd;
pub mod triangular;

pub use audit::{
    ExactDeterminant, MatrixAudit, Recompute, audit_matrix, audit_matrix_with, bareiss_determinant, cond1_estimate,
    log_abs_dyadic,
};
pub use error::{Error, Result};
pub use logdet::{LogDet, LogDetMethod, UsedMethod, log_det, log_det_owned, log_det_with};
pub use lu::{Lu, LuAlgorithm};
pub use matrix::{Matrix, MatrixInput};
pub use real::Real;
pub use triangular::{Triangle, log_det_diagonal, log_det_lower, log_det_triangular, log_det_upper, triangle_of};

/// The forward-mode dual number exactflow differentiates with (re-exported from `autodiff`).
pub use autodiff::F1;
