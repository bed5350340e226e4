//! Log-determinants with numpy's `slogdet` semantics.
//!
//! A determinant is returned as a [`LogDet`]: its sign and the log of its absolute value, so that
//! `det = sign * exp(log_abs)` never has to be formed (it overflows for n in the hundreds). A
//! singular matrix gives sign 0 and `log_abs = -inf`; the 0x0 matrix has determinant 1.
//!
//! # Worked examples (from the lecture)
//!
//! The map f(z1, z2) = (z1 + z2, 2 z1) has Jacobian J = [[1, 1], [2, 0]] and det J = -2; its
//! inverse (x1, x2) -> (x2 / 2, x1 - x2 / 2) has Jacobian [[0, 1/2], [1, -1/2]] and determinant
//! -1/2 = 1 / det J:
//!
//! ```
//! use exactflow_kernels::{log_det, Matrix};
//! # fn main() -> exactflow_kernels::Result<()> {
//! let j = Matrix::from_rows(&[[1.0, 1.0], [2.0, 0.0]])?;
//! let ld = log_det(&j)?;
//! assert_eq!(ld.sign, -1.0);
//! assert!((ld.log_abs - 2f64.ln()).abs() < 1e-15);
//!
//! let j_inv = Matrix::from_rows(&[[0.0, 0.5], [1.0, -0.5]])?;
//! let ld_inv = log_det(&j_inv)?;
//! assert_eq!(ld_inv.sign, -1.0);
//! assert!((ld_inv.log_abs + 2f64.ln()).abs() < 1e-15); // log|det J^-1| = -log|det J|
//! assert!(((ld * ld_inv).det() - 1.0).abs() < 1e-15); // det(J) det(J^-1) = 1
//! # Ok(())
//! # }
//! ```
//!
//! f(x, y) = (2x + y, x + 3y) is linear with matrix [[2, 1], [1, 3]] and determinant 5:
//!
//! ```
//! use exactflow_kernels::{log_det, Matrix};
//! # fn main() -> exactflow_kernels::Result<()> {
//! let a = Matrix::from_rows(&[[2.0f64, 1.0], [1.0, 3.0]])?;
//! let ld = log_det(&a)?;
//! assert_eq!(ld.sign, 1.0);
//! assert!((ld.det() - 5.0).abs() < 1e-14);
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use crate::lu::{Lu, LuAlgorithm};
use crate::matrix::{Matrix, MatrixInput, check_square};
use crate::real::Real;
use crate::triangular::{Triangle, log_det_triangular, triangle_of};

pub use crate::logdet_value::LogDet;

/// How [`log_det_with`] computes a determinant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogDetMethod {
    /// Triangular (O(n) after an O(n^2) structure check) when the matrix is lower or upper
    /// triangular, dense LU otherwise.
    #[default]
    Auto,
    /// Dense LU with partial pivoting, O(n^3).
    Lu,
    /// Sum of logs of the diagonal, O(n). The matrix must be lower or upper triangular.
    Triangular,
}

impl LogDetMethod {
    /// Every method's name, as [`LogDetMethod::from_str`](std::str::FromStr::from_str) reads it.
    pub const NAMES: [&'static str; 3] = ["auto", "lu", "triangular"];
}

impl std::str::FromStr for LogDetMethod {
    type Err = Error;

    /// `"auto"`, `"lu"` or `"triangular"`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(LogDetMethod::Auto),
            "lu" => Ok(LogDetMethod::Lu),
            "triangular" => Ok(LogDetMethod::Triangular),
            other => Err(Error::invalid(
                "log_det_with",
                "method",
                format!("unknown method '{other}': expected auto, lu or triangular"),
            )),
        }
    }
}

/// The method [`log_det_with`] actually ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsedMethod {
    /// Dense LU with partial pivoting.
    Lu,
    /// The diagonal of a triangular matrix of the given kind.
    Triangular(Triangle),
}

impl UsedMethod {
    /// "lu", "triangular-lower" or "triangular-upper".
    pub fn name(self) -> &'static str {
        match self {
            UsedMethod::Lu => "lu",
            UsedMethod::Triangular(Triangle::Lower) => "triangular-lower",
            UsedMethod::Triangular(Triangle::Upper) => "triangular-upper",
        }
    }
}

/// `(sign, log|det A|)` of a square matrix by LU with partial pivoting, O(n^3).
///
/// Accepts any [`MatrixInput`]: [`crate::Matrix`], `nalgebra::DMatrix`, `faer::MatRef`, ...
/// The input is copied once into the LU's working buffer (the factorization is in place). For
/// f32/f64 above n = 32 faer's `lu_in_place` factors it (see [`LuAlgorithm::Auto`]); a row-major
/// input is then copied as it is, which read column-major is `A^T`, and the determinant is that
/// of `A^T` (equal to `det A`; no transposition). Otherwise the result is that of
/// `Lu::factor(a)?.log_det()`, bit for bit; on faer's path it agrees with it to rounding (both are
/// backward stable).
///
/// # Errors
/// [`Error::NotSquare`] for a rectangular matrix; [`Error::NonFinite`] naming the first NaN or
/// infinite entry. A singular matrix is not an error: it gives [`LogDet::singular`].
///
/// # Examples
/// ```
/// use exactflow_kernels::{log_det, Matrix};
/// # fn main() -> exactflow_kernels::Result<()> {
/// let a = Matrix::from_rows(&[[0.0, 2.0], [3.0, 0.0]])?; // det = -6
/// let ld = log_det(&a)?;
/// assert_eq!(ld.sign, -1.0);
/// assert!((ld.log_abs - 6f64.ln()).abs() < 1e-15);
/// let singular = Matrix::from_rows(&[[1.0, 2.0], [2.0, 4.0]])?;
/// assert!(log_det(&singular)?.is_singular());
/// # Ok(())
/// # }
/// ```
pub fn log_det<T: Real>(a: &(impl MatrixInput<T> + ?Sized)) -> Result<LogDet<T>> {
    Lu::log_det_of(a, LuAlgorithm::Auto)
}

/// `(sign, log|det A|)` by the chosen method, and which method ran.
///
/// # Errors
/// As [`log_det`]; with [`LogDetMethod::Triangular`] also [`Error::InvalidArgument`] when the
/// matrix has non-zero entries on both sides of the diagonal.
pub fn log_det_with<T: Real>(
    a: &(impl MatrixInput<T> + ?Sized),
    method: LogDetMethod,
) -> Result<(LogDet<T>, UsedMethod)> {
    match route("log_det_with", a, method)? {
        UsedMethod::Triangular(tri) => Ok((log_det_triangular(a, tri)?, UsedMethod::Triangular(tri))),
        UsedMethod::Lu => Ok((log_det(a)?, UsedMethod::Lu)),
    }
}

/// [`log_det_with`] on a matrix it may consume: the generic LU factors the matrix's own buffer in
/// place instead of a copy of it. Same result, bit for bit; for a caller that has just copied the
/// matrix from elsewhere (a NumPy array, a file) this saves the second O(n^2) copy. (faer's LU,
/// which `Auto` runs for f32/f64 above n = 32, factors a plain copy, `A^T` as in [`log_det`]:
/// the original is kept for the generic code to fall back to.)
///
/// # Errors
/// As [`log_det_with`].
pub fn log_det_owned<T: Real>(a: Matrix<T>, method: LogDetMethod) -> Result<(LogDet<T>, UsedMethod)> {
    match route("log_det_owned", &a, method)? {
        UsedMethod::Triangular(tri) => Ok((log_det_triangular(&a, tri)?, UsedMethod::Triangular(tri))),
        UsedMethod::Lu => {
            let n = a.rows();
            Ok((
                Lu::log_det_of_owned(a.into_vec(), n, LuAlgorithm::Auto)?,
                UsedMethod::Lu,
            ))
        }
    }
}

/// Which computation `method` selects for `a`, after checking that `a` is square (the empty
/// matrix allowed). `Auto` tests the structure, O(n^2) at worst, and stops at the first non-zero
/// entry on each side of the diagonal.
fn route<T: Real>(op: &'static str, a: &(impl MatrixInput<T> + ?Sized), method: LogDetMethod) -> Result<UsedMethod> {
    check_square(op, a, true)?;
    if method == LogDetMethod::Lu {
        return Ok(UsedMethod::Lu);
    }
    match triangle_of(a) {
        Some(tri) => Ok(UsedMethod::Triangular(tri)),
        None if method == LogDetMethod::Auto => Ok(UsedMethod::Lu),
        None => Err(Error::invalid(
            op,
            "matrix",
            "method triangular needs a lower or upper triangular matrix, \
             found non-zero entries on both sides of the diagonal",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Matrix;
    use autodiff::F1;

    #[test]
    fn methods_and_what_ran() {
        let lower = Matrix::from_rows(&[[2.0, 0.0], [5.0, -3.0]]).unwrap();
        let upper = lower.transpose();
        let dense = Matrix::from_rows(&[[2.0f64, 1.0], [1.0, 3.0]]).unwrap();
        let (ld, used) = log_det_with(&lower, LogDetMethod::Auto).unwrap();
        assert_eq!(used, UsedMethod::Triangular(Triangle::Lower));
        assert_eq!(used.name(), "triangular-lower");
        assert_eq!(ld.sign, -1.0);
        assert!((ld.log_abs - 6f64.ln()).abs() < 1e-15);
        let (ld_u, used_u) = log_det_with(&upper, LogDetMethod::Triangular).unwrap();
        assert_eq!(used_u, UsedMethod::Triangular(Triangle::Upper));
        assert_eq!(ld_u, ld);
        let (ld_lu, used_lu) = log_det_with(&lower, LogDetMethod::Lu).unwrap();
        assert_eq!(used_lu, UsedMethod::Lu);
        assert_eq!(used_lu.name(), "lu");
        assert_eq!(ld_lu.sign, ld.sign);
        assert!((ld_lu.log_abs - ld.log_abs).abs() < 1e-15);
        let (ld_d, used_d) = log_det_with(&dense, LogDetMethod::Auto).unwrap();
        assert_eq!(used_d, UsedMethod::Lu);
        assert!((ld_d.det() - 5.0).abs() < 1e-14);
        assert!(matches!(
            log_det_with(&dense, LogDetMethod::Triangular),
            Err(Error::InvalidArgument { .. })
        ));
        for method in [LogDetMethod::Auto, LogDetMethod::Lu, LogDetMethod::Triangular] {
            assert!(matches!(
                log_det_with(&Matrix::<f64>::zeros(2, 3), method),
                Err(Error::NotSquare { rows: 2, cols: 3, .. })
            ));
            assert_eq!(
                log_det_with(&Matrix::<f64>::zeros(0, 0), method).unwrap().0,
                LogDet::one()
            );
        }
        assert_eq!(log_det(&Matrix::<f64>::zeros(0, 0)).unwrap(), LogDet::one());
    }

    #[test]
    fn owned_matrices_give_the_borrowed_result_bit_for_bit() {
        // A 70 x 70 dense matrix (above the recursive LU's base size of 32), its lower triangle,
        // a singular one, and the rejects: the owned path must agree in every case.
        let dense = Matrix::from_fn(70, 70, |i, j| {
            ((i * 31 + j * 17) % 23) as f64 - 11.0 + if i == j { 40.0 } else { 0.0 }
        });
        let lower = Matrix::from_fn(70, 70, |i, j| if j <= i { dense.as_slice()[i * 70 + j] } else { 0.0 });
        let singular = Matrix::from_rows(&[[1.0f64, 2.0], [2.0, 4.0]]).unwrap();
        for m in [&dense, &lower, &singular] {
            for method in [LogDetMethod::Auto, LogDetMethod::Lu] {
                assert_eq!(
                    log_det_owned(m.clone(), method).unwrap(),
                    log_det_with(m, method).unwrap()
                );
            }
        }
        let f32_dense = dense.map(|v| v as f32);
        assert_eq!(
            log_det_owned(f32_dense.clone(), LogDetMethod::Auto).unwrap(),
            log_det_with(&f32_dense, LogDetMethod::Auto).unwrap()
        );
        assert_eq!(
            log_det_owned(lower.clone(), LogDetMethod::Triangular).unwrap(),
            log_det_with(&lower, LogDetMethod::Triangular).unwrap()
        );
        assert!(matches!(
            log_det_owned(dense.clone(), LogDetMethod::Triangular),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            log_det_owned(Matrix::<f64>::zeros(2, 3), LogDetMethod::Lu),
            Err(Error::NotSquare { rows: 2, cols: 3, .. })
        ));
        let mut nan = dense.clone();
        nan.as_mut_slice()[5 * 70 + 3] = f64::NAN;
        assert!(matches!(
            log_det_owned(nan, LogDetMethod::Auto),
            Err(Error::NonFinite { index: (5, 3), .. })
        ));
        assert_eq!(
            log_det_owned(Matrix::<f64>::zeros(0, 0), LogDetMethod::Auto).unwrap().0,
            LogDet::one()
        );
    }

    #[test]
    fn method_names_parse() {
        for (name, method) in
            LogDetMethod::NAMES
                .iter()
                .zip([LogDetMethod::Auto, LogDetMethod::Lu, LogDetMethod::Triangular])
        {
            assert_eq!(name.parse::<LogDetMethod>().unwrap(), method);
        }
        let e = "qr".parse::<LogDetMethod>().unwrap_err().to_string();
        assert!(e.contains("'qr'") && e.contains("auto, lu or triangular"), "{e}");
    }

    #[test]
    fn auto_does_not_mistake_a_dual_with_zero_value_for_a_zero() {
        // Lower triangular in value, but a_01 carries a derivative: d log det / d a_01 = (A^-1)_10.
        // A = [[1, 0], [2, 1]], A^-1 = [[1, 0], [-2, 1]].
        let a = Matrix::from_rows(&[[F1::cst(1.0), F1::var(0.0)], [F1::cst(2.0), F1::cst(1.0)]]).unwrap();
        let (ld, used) = log_det_with(&a, LogDetMethod::Auto).unwrap();
        assert_eq!(used, UsedMethod::Lu);
        assert_eq!(ld.log_abs.dx, -2.0);
    }
}
