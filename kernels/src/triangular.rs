//! O(n) log-determinants of triangular matrices: det = product of the diagonal.
//!
//! `log|det| = sum_i ln|a_ii|` (a compensated sum of logs, so it never overflows where the
//! product would), and the sign is `(-1)^(number of negative diagonal entries)`; a zero on the
//! diagonal makes the matrix singular (sign 0, log -inf).
//!
//! These kernels read the diagonal only: the other triangle is taken to be zero, as LAPACK's
//! triangular routines do with their `uplo` argument. Use [`triangle_of`] (O(n^2)) to check the
//! structure, or [`crate::log_det_with`] with [`crate::LogDetMethod::Auto`] to let it decide.

use crate::error::{Error, Result};
use crate::logdet_value::{LogDet, log_det_of_diagonal};
use crate::matrix::{MatrixInput, check_square};
use crate::real::Real;

/// Which triangle of a matrix holds its non-zero entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Triangle {
    /// Zero above the diagonal.
    Lower,
    /// Zero below the diagonal.
    Upper,
}

fn check_diag<T: Real>(op: &'static str, diag: impl Iterator<Item = T>) -> Result<()> {
    for (i, d) in diag.enumerate() {
        if !d.is_finite_value() {
            return Err(Error::NonFinite {
                op,
                what: "diagonal",
                index: (i, i),
                value: d.as_f64(),
            });
        }
    }
    Ok(())
}

/// `(sign, log|prod d_i|)` of a diagonal given as a slice: the log-det of `diag(d)` and of any
/// triangular matrix with that diagonal. O(n). The empty diagonal gives sign 1, log 0.
///
/// # Errors
/// [`Error::NonFinite`] naming the first NaN or infinite entry.
///
/// # Examples
/// ```
/// use exactflow_kernels::log_det_diagonal;
/// # fn main() -> exactflow_kernels::Result<()> {
/// let ld = log_det_diagonal(&[2.0, -0.5, 3.0])?; // det = -3
/// assert_eq!(ld.sign, -1.0);
/// assert!((ld.log_abs - 3f64.ln()).abs() < 1e-15);
/// // 2000 factors of 1e300 overflow any product; their log-det does not.
/// let big = vec![1e300; 2000];
/// assert!((log_det_diagonal(&big)?.log_abs - 2000.0 * 1e300f64.ln()).abs() < 1e-9);
/// # Ok(())
/// # }
/// ```
pub fn log_det_diagonal<T: Real>(diag: &[T]) -> Result<LogDet<T>> {
    check_diag("log_det_diagonal", diag.iter().copied())?;
    Ok(log_det_of_diagonal(diag.iter().copied()))
}

/// Log-det of a lower or upper triangular square matrix from its diagonal, O(n).
///
/// # Errors
/// [`Error::NotSquare`]; [`Error::NonFinite`] for a NaN or infinite diagonal entry.
pub fn log_det_triangular<T: Real>(a: &(impl MatrixInput<T> + ?Sized), _triangle: Triangle) -> Result<LogDet<T>> {
    let n = check_square("log_det_triangular", a, true)?;
    check_diag("log_det_triangular", (0..n).map(|i| a.entry(i, i)))?;
    Ok(log_det_of_diagonal((0..n).map(|i| a.entry(i, i))))
}

/// Log-det of a lower triangular matrix (entries above the diagonal are not read), O(n).
///
/// # Errors
/// As [`log_det_triangular`].
///
/// # Examples
/// ```
/// use exactflow_kernels::{log_det_lower, Matrix};
/// # fn main() -> exactflow_kernels::Result<()> {
/// let l = Matrix::from_rows(&[[2.0f64, 0.0], [7.0, 4.0]])?;
/// assert!((log_det_lower(&l)?.det() - 8.0).abs() < 1e-14);
/// // nalgebra and faer matrices are accepted as they are:
/// let l_na = nalgebra::DMatrix::from_row_slice(2, 2, &[2.0, 0.0, 7.0, 4.0]);
/// assert_eq!(log_det_lower(&l_na)?, log_det_lower(&l)?);
/// # Ok(())
/// # }
/// ```
pub fn log_det_lower<T: Real>(a: &(impl MatrixInput<T> + ?Sized)) -> Result<LogDet<T>> {
    log_det_triangular(a, Triangle::Lower)
}

/// Log-det of an upper triangular matrix (entries below the diagonal are not read), O(n).
///
/// # Errors
/// As [`log_det_triangular`].
pub fn log_det_upper<T: Real>(a: &(impl MatrixInput<T> + ?Sized)) -> Result<LogDet<T>> {
    log_det_triangular(a, Triangle::Upper)
}

/// Which triangle a square matrix lives in, if any (O(n^2)). A diagonal matrix counts as lower.
///
/// An entry counts as zero when [`Real::is_exact_zero`]: for a dual number, value and derivative.
pub fn triangle_of<T: Real>(a: &(impl MatrixInput<T> + ?Sized)) -> Option<Triangle> {
    let n = a.nrows();
    if a.ncols() != n {
        return None;
    }
    let zero_above = (0..n).all(|i| (i + 1..n).all(|j| a.entry(i, j).is_exact_zero()));
    if zero_above {
        return Some(Triangle::Lower);
    }
    let zero_below = (0..n).all(|i| (0..i).all(|j| a.entry(i, j).is_exact_zero()));
    zero_below.then_some(Triangle::Upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lu::Lu;
    use crate::matrix::Matrix;

    #[test]
    fn diagonal_sign_log_zero_and_empty() {
        let ld = log_det_diagonal(&[2.0f64, -0.5, 3.0]).unwrap();
        assert_eq!(ld.sign, -1.0);
        assert!((ld.log_abs - 3f64.ln()).abs() < 1e-15);
        assert!(log_det_diagonal(&[1.0f64, 0.0, 2.0]).unwrap().is_singular());
        assert_eq!(log_det_diagonal::<f64>(&[]).unwrap(), LogDet::one());
        // 1000 factors of 1e-300 underflow any product to 0; the log-det is exact to rounding.
        let tiny = vec![1e-300f64; 1000];
        let ld = log_det_diagonal(&tiny).unwrap();
        assert_eq!(ld.sign, 1.0);
        // Compensated sum of 1000 equal logs: a few ulps of the total.
        assert!((ld.log_abs - 1000.0 * tiny[0].ln()).abs() <= 1e-9);
        match log_det_diagonal(&[1.0f32, 2.0, f32::NAN, f32::INFINITY]).unwrap_err() {
            Error::NonFinite { index, value, .. } => {
                assert_eq!(index, (2, 2));
                assert!(value.is_nan());
            }
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn triangular_kernels_read_only_the_diagonal_and_match_lu() {
        let l = Matrix::from_rows(&[[2.0, 0.0, 0.0], [7.0, -4.0, 0.0], [1.0, 5.0, 0.25]]).unwrap();
        let u = l.transpose();
        let by_lu = Lu::factor(&l).unwrap().log_det();
        for ld in [log_det_lower(&l).unwrap(), log_det_upper(&u).unwrap()] {
            assert_eq!(ld.sign, -1.0);
            assert!((ld.log_abs - 2f64.ln()).abs() < 1e-15);
            assert_eq!(ld.sign, by_lu.sign);
            assert!((ld.log_abs - by_lu.log_abs).abs() < 1e-15);
        }
        // The other triangle is not read (LAPACK's uplo convention), NaN there included.
        let mut junk = l.clone();
        junk[(0, 2)] = f64::NAN;
        assert_eq!(log_det_lower(&junk).unwrap(), log_det_lower(&l).unwrap());
        let mut bad = l.clone();
        bad[(1, 1)] = f64::NEG_INFINITY;
        assert!(matches!(
            log_det_lower(&bad),
            Err(Error::NonFinite { index: (1, 1), .. })
        ));
        assert!(matches!(
            log_det_upper(&Matrix::<f64>::zeros(3, 2)),
            Err(Error::NotSquare { rows: 3, cols: 2, .. })
        ));
        assert_eq!(log_det_lower(&Matrix::<f64>::zeros(0, 0)).unwrap(), LogDet::one());
        // nalgebra and faer inputs.
        assert_eq!(log_det_lower(&l.to_nalgebra()).unwrap(), log_det_lower(&l).unwrap());
        assert_eq!(log_det_upper(&u.to_faer()).unwrap(), log_det_upper(&u).unwrap());
    }

    #[test]
    fn triangle_detection() {
        let l = Matrix::from_rows(&[[1.0, 0.0], [3.0, 1.0]]).unwrap();
        assert_eq!(triangle_of(&l), Some(Triangle::Lower));
        assert_eq!(triangle_of(&l.transpose()), Some(Triangle::Upper));
        assert_eq!(triangle_of(&Matrix::<f64>::identity(3)), Some(Triangle::Lower));
        assert_eq!(
            triangle_of(&Matrix::from_rows(&[[1.0, 2.0], [3.0, 4.0]]).unwrap()),
            None
        );
        assert_eq!(triangle_of(&Matrix::<f64>::zeros(2, 3)), None);
        assert_eq!(triangle_of(&Matrix::<f64>::zeros(0, 0)), Some(Triangle::Lower));
        // A NaN off the diagonal is not a zero.
        let nan = Matrix::from_rows(&[[1.0, f64::NAN], [f64::NAN, 1.0]]).unwrap();
        assert_eq!(triangle_of(&nan), None);
    }
}
