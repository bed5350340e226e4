//! Solving `A X = B` with the factors: `X = U^-1 L^-1 P B`.

use super::Lu;
use crate::error::{Error, Result};
use crate::matrix::{Matrix, check_finite};
use crate::real::Real;

impl<T: Real> Lu<T> {
    /// Solves `A X = B` for a right-hand side `B` of `n` rows (any number of columns).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `B` does not have `n` rows; [`Error::NonFinite`] for NaN/inf
    /// in `B`; [`Error::Singular`] when `A` is singular.
    pub fn solve(&self, b: &Matrix<T>) -> Result<Matrix<T>> {
        let n = self.n;
        if b.rows() != n {
            return Err(Error::ShapeMismatch {
                op: "Lu::solve",
                expected: vec![n, b.cols()],
                found: vec![b.rows(), b.cols()],
            });
        }
        check_finite("Lu::solve", "right-hand side", b)?;
        self.require_nonsingular("Lu::solve")?;
        let k = b.cols();
        let mut x = Matrix::from_fn(n, k, |i, j| b[(self.perm[i], j)]);
        self.solve_permuted_in_place(x.as_mut_slice(), k);
        Ok(x)
    }

    /// Solves `A x = b` for one right-hand side.
    ///
    /// # Errors
    /// As [`Lu::solve`], with [`Error::LengthMismatch`] when `b.len() != n`.
    pub fn solve_vec(&self, b: &[T]) -> Result<Vec<T>> {
        if b.len() != self.n {
            return Err(Error::LengthMismatch {
                op: "Lu::solve_vec",
                what: "right-hand side",
                expected: self.n,
                found: b.len(),
            });
        }
        let m = Matrix::new(self.n, 1, b.to_vec())?;
        Ok(self.solve(&m)?.into_vec())
    }

    /// Forward substitution with unit L, then back substitution with U, on an already permuted
    /// right-hand side (row-major, `k` columns). A must be non-singular.
    pub(super) fn solve_permuted_in_place(&self, x: &mut [T], k: usize) {
        let n = self.n;
        let f = &self.factors;
        for i in 1..n {
            let (done, rest) = x.split_at_mut(i * k);
            let xi = &mut rest[..k];
            for p in 0..i {
                let l = f[i * n + p];
                if !l.is_exact_zero() {
                    for (v, &u) in xi.iter_mut().zip(&done[p * k..(p + 1) * k]) {
                        *v -= l * u;
                    }
                }
            }
        }
        for i in (0..n).rev() {
            let (head, tail) = x.split_at_mut((i + 1) * k);
            let xi = &mut head[i * k..];
            for p in i + 1..n {
                let u = f[i * n + p];
                if !u.is_exact_zero() {
                    for (v, &w) in xi.iter_mut().zip(&tail[(p - i - 1) * k..(p - i) * k]) {
                        *v -= u * w;
                    }
                }
            }
            let d = f[i * n + i];
            xi.iter_mut().for_each(|v| *v /= d);
        }
    }
}
