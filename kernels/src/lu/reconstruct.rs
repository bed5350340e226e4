//! Rebuilding `A = P^T L U` from the factors (for backward-error checks).

use super::Lu;
use crate::matrix::Matrix;
use crate::real::Real;

impl<T: Real> Lu<T> {
    /// The product `L U` (equal to `P A` up to rounding).
    pub fn lu_product(&self) -> Matrix<T> {
        let n = self.n;
        let f = &self.factors;
        // (L U)[i, j] = sum_{p <= min(i, j)} L[i, p] U[p, j] with L[i, i] = 1.
        Matrix::from_fn(n, n, |i, j| {
            let mut acc = T::zero();
            for p in 0..i.min(j + 1) {
                acc += f[i * n + p] * f[p * n + j];
            }
            if i <= j { acc + f[i * n + j] } else { acc }
        })
    }

    /// `P^T L U`, which equals `A` up to rounding.
    pub fn reconstruct(&self) -> Matrix<T> {
        let lu = self.lu_product();
        let n = self.n;
        let mut a = Matrix::zeros(n, n);
        for i in 0..n {
            let src = &lu.as_slice()[i * n..(i + 1) * n];
            a.as_mut_slice()[self.perm[i] * n..(self.perm[i] + 1) * n].copy_from_slice(src);
        }
        a
    }
}
