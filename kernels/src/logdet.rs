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
//! let a = Matrix::from_rows(&[[2.0, 1.0], [1.0, 3.0]])?;
//! let ld = log_det(&a)?;
//! assert_eq!(ld.sign, 1.0);
//! assert!((ld.det() - 5.0).abs() < 1e-14);
//! # Ok(())
//! # }
//! ```

use crate::error::{Error, Result};
use crate::lu::{Lu, LuAlgorithm};
use crate::matrix::{MatrixInput, check_square};
use crate::real::Real;
use crate::triangular::{Triangle, log_det_triangular, triangle_of};

/// A determinant as `(sign, log|det|)`, like numpy's `slogdet`.
///
/// `sign` is -1, 0 or 1; `sign == 0` exactly when the matrix is singular, and then
/// `log_abs == -inf`. The determinant is `sign * exp(log_abs)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogDet<T> {
    /// -1, 0 (singular) or 1.
    pub sign: T,
    /// log|det|; -inf when singular.
    pub log_abs: T,
}

impl<T: Real> LogDet<T> {
    /// The determinant 1 (sign 1, log 0): what the empty product and the 0x0 matrix give.
    pub fn one() -> Self {
        LogDet {
            sign: T::one(),
            log_abs: T::zero(),
        }
    }

    /// The determinant 0 (sign 0, log -inf).
    pub fn singular() -> Self {
        LogDet {
            sign: T::zero(),
            log_abs: T::neg_infinity(),
        }
    }

    /// The log-det of a scalar determinant value: `(sign(v), ln|v|)`, or [`LogDet::singular`] for 0.
    pub fn from_value(v: T) -> Self {
        if v == T::zero() {
            Self::singular()
        } else {
            LogDet {
                sign: if v < T::zero() { -T::one() } else { T::one() },
                log_abs: v.abs().ln(),
            }
        }
    }

    /// Whether the determinant is zero.
    pub fn is_singular(&self) -> bool {
        self.sign == T::zero()
    }

    /// 1 / det(A) = det(A^-1): the same sign, the negated log; `None` when singular.
    pub fn inv(self) -> Option<Self> {
        (!self.is_singular()).then(|| LogDet {
            sign: self.sign,
            log_abs: -self.log_abs,
        })
    }

    /// det(cA) for an `n x n` matrix A: `c^n det(A)`, i.e. sign times `sign(c)^n`, log plus
    /// `n ln|c|`. Singular when `c == 0` and `n > 0`.
    #[must_use]
    pub fn scaled(self, c: T, n: usize) -> Self {
        if n == 0 {
            return self;
        }
        let factor = LogDet::from_value(c);
        if factor.is_singular() || self.is_singular() {
            return Self::singular();
        }
        let sign = if c < T::zero() && n % 2 == 1 {
            -self.sign
        } else {
            self.sign
        };
        LogDet {
            sign,
            log_abs: self.log_abs + T::lit(n as f64) * factor.log_abs,
        }
    }

    /// The determinant itself, `sign * exp(log_abs)`. It overflows to ±inf (or underflows to 0)
    /// when |det| is outside the floating-point range: that is why the pair is the primary result.
    pub fn det(self) -> T {
        if self.is_singular() {
            T::zero()
        } else {
            self.sign * self.log_abs.exp()
        }
    }

    /// The value parts as `f64`.
    pub fn to_f64(self) -> LogDet<f64> {
        LogDet {
            sign: self.sign.as_f64(),
            log_abs: self.log_abs.as_f64(),
        }
    }
}

impl<T: Real> std::ops::Mul for LogDet<T> {
    type Output = LogDet<T>;

    /// det(A) det(B) = det(AB): signs multiply, logs add. Singular if either is.
    fn mul(self, other: Self) -> Self {
        if self.is_singular() || other.is_singular() {
            return Self::singular();
        }
        LogDet {
            sign: self.sign * other.sign,
            log_abs: self.log_abs + other.log_abs,
        }
    }
}

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
/// The input is copied once into the LU's working buffer (the factorization is in place).
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
    Ok(Lu::factor_with(a, LuAlgorithm::Auto)?.log_det())
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
    match method {
        LogDetMethod::Lu => Ok((log_det(a)?, UsedMethod::Lu)),
        LogDetMethod::Auto | LogDetMethod::Triangular => {
            check_square("log_det_with", a, true)?;
            match triangle_of(a) {
                Some(tri) => Ok((log_det_triangular(a, tri)?, UsedMethod::Triangular(tri))),
                None if method == LogDetMethod::Auto => Ok((log_det(a)?, UsedMethod::Lu)),
                None => Err(Error::invalid(
                    "log_det_with",
                    "matrix",
                    "method triangular needs a lower or upper triangular matrix, \
                     found non-zero entries on both sides of the diagonal",
                )),
            }
        }
    }
}

/// Sum of logs with Neumaier's compensation, so that the rounding error of a long sum stays at
/// a few ulps instead of growing with n.
pub(crate) fn compensated_sum<T: Real>(values: impl IntoIterator<Item = T>) -> T {
    let mut sum = T::zero();
    let mut comp = T::zero();
    for v in values {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            comp += (sum - t) + v;
        } else {
            comp += (v - t) + sum;
        }
        sum = t;
    }
    sum + comp
}

/// Log-det of a product of diagonal factors: sign from the count of negative entries, log from a
/// compensated sum of `ln|d_i|`; singular as soon as one factor is zero.
pub(crate) fn log_det_of_diagonal<T: Real>(diag: impl Iterator<Item = T> + Clone) -> LogDet<T> {
    let mut negatives = 0usize;
    for d in diag.clone() {
        if d == T::zero() {
            return LogDet::singular();
        }
        if d < T::zero() {
            negatives += 1;
        }
    }
    LogDet {
        sign: if negatives % 2 == 1 { -T::one() } else { T::one() },
        log_abs: compensated_sum(diag.map(|d| d.abs().ln())),
    }
}
