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
//! - coupling transforms ([`coupling`]), a vectorized exp ([`simd`]) and the elementwise work of
//!   an optimizer step ([`optim`]), with runtime dispatch to AVX-512 / AVX2;
//! - interval arithmetic ([`Interval`], a [`Real`] whose every operation encloses the exact
//!   result) and certified log-determinants ([`certify_log_det`]: an interval guaranteed to
//!   contain log|det A|, and the sign).
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
//!
//! # Layering
//!
//! Every module imports only from modules above it in this list, so the import graph has no
//! cycle (private modules in `code`):
//!
//! 1. [`error`]; `view`, the strided views and [`gemm::Parallelism`] (no [`Real`] yet);
//! 2. `ground`, the generic reference loops (gemm, couplings) over `num_traits::Float`;
//! 3. `faer_gemm`, `faer_lu` and `vectorized` (the SIMD kernels for f32/f64, [`simd::Backend`] and the
//!    CPU-feature tokens without which no SIMD instruction can be reached);
//! 4. [`real`], whose [`Real`] methods dispatch to 2 and 3;
//! 5. the checked entry points: [`gemm`], [`simd`], [`optim`] (Adam's update and the sum of
//!    squares of a gradient norm), then [`coupling`] and [`matrix`];
//!    `logdet_value` ([`LogDet`]);
//! 6. [`triangular`] and [`lu`], which build a [`LogDet`] from `logdet_value`; then [`logdet`], the
//!    dispatcher over both; then [`audit`];
//! 7. [`interval`]: the interval scalar, its verified matrix product on faer's gemm, its
//!    [`Real`] implementation and the certified log-determinant, which factors with [`lu`].

#![warn(missing_docs)]

pub mod audit;
pub mod coupling;
pub mod error;
mod faer_gemm;
mod faer_lu;
pub mod gemm;
mod ground;
pub mod interval;
pub mod logdet;
mod logdet_value;
pub mod lu;
pub mod matrix;
pub mod optim;
pub mod real;
pub mod simd;
pub mod team;
pub mod triangular;
mod vectorized;
mod view;

pub use audit::{
    ExactDeterminant, MatrixAudit, Recompute, audit_matrix, audit_matrix_with, bareiss_determinant, cond1_estimate,
    log_abs_dyadic,
};
pub use error::{Error, Result};
pub use interval::{CertifiedLogDet, Interval, certify_log_det};
pub use logdet::{LogDet, LogDetMethod, UsedMethod, log_det, log_det_owned, log_det_with};
pub use lu::{Lu, LuAlgorithm};
pub use matrix::{Matrix, MatrixInput};
pub use real::Real;
pub use triangular::{Triangle, log_det_diagonal, log_det_lower, log_det_triangular, log_det_upper, triangle_of};

/// The forward-mode dual number exactflow differentiates with (re-exported from `autodiff`).
pub use autodiff::F1;
