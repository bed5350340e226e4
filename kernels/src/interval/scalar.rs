//! [`Interval`] as a [`Real`]: the hooks the generic code calls.

use crate::error::{Error, Result};
use crate::real::Real;
use crate::view::{MatSlice, MatSliceMut, Parallelism};

use super::logdet::{CertifiedLogDet, certify_log_det};
use super::{Interval, matmul};

/// Every generic default runs on intervals (each operation encloses); the matrix product is the
/// verified one of `matmul`, and determinants of point matrices are certified.
impl Real for Interval {
    const NAME: &'static str = "interval";

    const ENCLOSURE: bool = true;

    /// The midpoint (an estimate: see the module documentation).
    #[inline]
    fn as_f64(self) -> f64 {
        self.mid()
    }

    #[inline]
    fn lit(x: f64) -> Self {
        Interval::point(x)
    }

    fn constant(x: f64) -> Self {
        Interval::around(x, 2)
    }

    /// Both bounds finite: an unbounded enclosure (an overflow) is not a finite value.
    #[inline]
    fn is_finite_value(self) -> bool {
        self.lo().is_finite() && self.hi().is_finite()
    }

    /// The point 0 only: kernels skip work on it, and must not skip an interval that merely
    /// contains 0.
    #[inline]
    fn is_exact_zero(self) -> bool {
        self.is_point() && self.lo() == 0.0
    }

    fn gemm_kernel(
        alpha: Self,
        a: MatSlice<'_, Self>,
        b: MatSlice<'_, Self>,
        beta: Self,
        c: MatSliceMut<'_, Self>,
        par: Parallelism,
    ) {
        matmul::gemm(alpha, a, b, beta, c, par);
    }

    /// [`certify_log_det`] of the matrix, whose entries must be points (a layer's weights cast
    /// from f64 are).
    fn log_abs_det_enclosure(a: &[Self], n: usize) -> Option<Result<Self>> {
        const OP: &str = "Interval::log_abs_det_enclosure";
        if let Some(k) = a.iter().position(|v| !v.is_point()) {
            return Some(Err(Error::invalid(
                OP,
                "matrix",
                format!(
                    "entry ({}, {}) is the interval {} (the certified determinant takes points)",
                    k / n.max(1),
                    k % n.max(1),
                    a[k]
                ),
            )));
        }
        let points: Vec<f64> = a.iter().map(|v| v.lo()).collect();
        Some(
            MatSlice::new(&points, n, n)
                .and_then(|m| certify_log_det(&m))
                .and_then(|c| match c {
                    CertifiedLogDet::Certified { log_abs, .. } => Ok(log_abs),
                    CertifiedLogDet::SignUnknown { reason, .. } => Err(Error::invalid(OP, "matrix", reason)),
                }),
        )
    }
}
