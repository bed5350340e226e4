//! Dense LU factorization with partial pivoting: `P A = L U`.
//!
//! One file per operation, as in faer: [`factor`] (in place, returns what it found, never an
//! error), `solve`, `inverse` and `reconstruct`; [`Lu`] is the friendly owner on top that
//! validates input and returns [`Result`].
//!
//! `L` is unit lower triangular, `U` upper triangular, both packed in one row-major buffer; `P` is
//! a row permutation stored as `perm` (row i of `P A` is row `perm[i]` of `A`). Then
//! `det A = (-1)^t prod_i u_ii` for the `t` row interchanges, which is how [`Lu::log_det`] gets its
//! sign without forming the product.

pub mod factor;
mod inverse;
mod reconstruct;
mod solve;

use crate::error::{Error, Result};
use crate::logdet::{LogDet, log_det_of_diagonal};
use crate::matrix::{Matrix, MatrixInput, check_square};
use crate::real::Real;

pub use factor::FactorInfo;

/// Which factorization code [`Lu::factor_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LuAlgorithm {
    /// The recursive algorithm for n above a small threshold, unblocked below it.
    #[default]
    Auto,
    /// Toledo's recursive LU: nearly every flop in [`Real::gemm_kernel`] (faer's gemm for
    /// f32/f64). Generic over [`Real`].
    Recursive,
    /// The textbook right-looking elimination, one column at a time. Generic over [`Real`].
    Unblocked,
}

/// An LU factorization with partial pivoting, `P A = L U`, of a square matrix.
///
/// # Examples
/// ```
/// use exactflow_kernels::{Lu, Matrix};
/// # fn main() -> exactflow_kernels::Result<()> {
/// let a = Matrix::from_rows(&[[4.0, 3.0], [6.0, 3.0]])?;
/// let lu = Lu::factor(&a)?;
/// assert!((lu.log_det().det() - (-6.0)).abs() < 1e-14);
/// let x = lu.solve_vec(&[10.0, 12.0])?; // 4x + 3y = 10, 6x + 3y = 12
/// assert!((x[0] - 1.0).abs() < 1e-14 && (x[1] - 2.0).abs() < 1e-14);
/// let back = lu.reconstruct(); // P^T L U
/// assert!(back.as_slice().iter().zip(a.as_slice()).all(|(p, q)| (p - q).abs() < 1e-14));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Lu<T> {
    n: usize,
    factors: Vec<T>,
    perm: Vec<usize>,
    info: FactorInfo,
}

impl<T: Real> Lu<T> {
    /// Factors a square matrix with the default algorithm.
    ///
    /// # Errors
    /// [`Error::NotSquare`]; [`Error::NonFinite`] naming the first NaN/inf entry. A singular
    /// matrix factors fine (see [`Lu::is_singular`]).
    pub fn factor(a: &(impl MatrixInput<T> + ?Sized)) -> Result<Self> {
        Self::factor_with(a, LuAlgorithm::Auto)
    }

    /// Factors with a chosen algorithm. The input is copied once (the factorization works in
    /// place on that copy) and checked for NaN/inf during the copy.
    ///
    /// # Errors
    /// As [`Lu::factor`].
    pub fn factor_with(a: &(impl MatrixInput<T> + ?Sized), algorithm: LuAlgorithm) -> Result<Self> {
        let n = check_square("lu", a, true)?;
        let mut factors = Vec::with_capacity(n * n);
        match a.row_major() {
            Some(s) => factors.extend_from_slice(s),
            None => {
                for i in 0..n {
                    for j in 0..n {
                        factors.push(a.entry(i, j));
                    }
                }
            }
        }
        if let Some(k) = factors.iter().position(|v| !v.is_finite_value()) {
            return Err(Error::NonFinite {
                op: "lu",
                what: "matrix",
                index: (k / n, k % n),
                value: factors[k].as_f64(),
            });
        }
        Self::factor_owned(factors, n, algorithm)
    }

    /// Factors a row-major `n x n` buffer in place, taking ownership (no copy).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len() != n * n`; [`Error::NonFinite`] for NaN/inf.
    pub fn factor_in_place(data: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<Self> {
        if data.len() != n * n {
            return Err(Error::LengthMismatch {
                op: "lu",
                what: "matrix data",
                expected: n * n,
                found: data.len(),
            });
        }
        if let Some(k) = data.iter().position(|v| !v.is_finite_value()) {
            return Err(Error::NonFinite {
                op: "lu",
                what: "matrix",
                index: (k / n, k % n),
                value: data[k].as_f64(),
            });
        }
        Self::factor_owned(data, n, algorithm)
    }

    fn factor_owned(mut factors: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<Self> {
        let mut perm: Vec<usize> = (0..n).collect();
        let info = match algorithm {
            LuAlgorithm::Unblocked => factor::factor_unblocked(&mut factors, n, &mut perm),
            LuAlgorithm::Recursive => factor::factor_recursive(&mut factors, n, &mut perm),
            LuAlgorithm::Auto if n <= 2 * factor::RECURSION_BASE => {
                factor::factor_unblocked(&mut factors, n, &mut perm)
            }
            LuAlgorithm::Auto => factor::factor_recursive(&mut factors, n, &mut perm),
        };
        // Finite input can still overflow during elimination (entries near f64::MAX); report it
        // rather than hand back inf/NaN factors.
        if let Some(i) = (0..n).find(|&i| !factors[i * n + i].is_finite_value()) {
            return Err(Error::NonFinite {
                op: "lu",
                what: "U factor (overflow during elimination)",
                index: (i, i),
                value: factors[i * n + i].as_f64(),
            });
        }
        Ok(Lu { n, factors, perm, info })
    }

    /// The order n of the factored matrix.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The packed factors: the strict lower triangle is L (unit diagonal implied), the upper
    /// triangle with the diagonal is U; row-major n x n.
    pub fn packed(&self) -> &[T] {
        &self.factors
    }

    /// The row permutation: row i of `P A` is row `perm()[i]` of `A`.
    pub fn perm(&self) -> &[usize] {
        &self.perm
    }

    /// Row interchanges and zero pivots met during the factorization.
    pub fn info(&self) -> FactorInfo {
        self.info
    }

    /// Whether U has an exactly zero pivot (the matrix is singular).
    pub fn is_singular(&self) -> bool {
        (0..self.n).any(|i| self.factors[i * self.n + i] == T::zero())
    }

    /// The diagonal of U.
    pub fn u_diagonal(&self) -> impl Iterator<Item = T> + Clone + '_ {
        (0..self.n).map(move |i| self.factors[i * self.n + i])
    }

    /// `(sign, log|det A|)`: the sign of P times the signs of U's diagonal, and a compensated
    /// sum of `ln|u_ii|`. O(n) once factored.
    pub fn log_det(&self) -> LogDet<T> {
        let d = log_det_of_diagonal(self.u_diagonal());
        if self.info.transpositions % 2 == 1 && !d.is_singular() {
            LogDet {
                sign: -d.sign,
                log_abs: d.log_abs,
            }
        } else {
            d
        }
    }

    /// L as a dense matrix (unit lower triangular).
    pub fn l(&self) -> Matrix<T> {
        let n = self.n;
        Matrix::from_fn(n, n, |i, j| match i.cmp(&j) {
            std::cmp::Ordering::Greater => self.factors[i * n + j],
            std::cmp::Ordering::Equal => T::one(),
            std::cmp::Ordering::Less => T::zero(),
        })
    }

    /// U as a dense matrix (upper triangular).
    pub fn u(&self) -> Matrix<T> {
        let n = self.n;
        Matrix::from_fn(n, n, |i, j| if i <= j { self.factors[i * n + j] } else { T::zero() })
    }

    /// P as a dense permutation matrix (`P A = L U`).
    pub fn p(&self) -> Matrix<T> {
        let n = self.n;
        Matrix::from_fn(n, n, |i, j| if self.perm[i] == j { T::one() } else { T::zero() })
    }

    fn require_nonsingular(&self, op: &'static str) -> Result<()> {
        match (0..self.n).find(|&i| self.factors[i * self.n + i] == T::zero()) {
            Some(column) => Err(Error::Singular { op, column }),
            None => Ok(()),
        }
    }
}
