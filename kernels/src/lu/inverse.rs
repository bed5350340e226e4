//! The inverse from the factors: `A^-1 = U^-1 L^-1 P`.

use super::Lu;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::real::Real;

impl<T: Real> Lu<T> {
    /// `A^-1`, by solving `A X = I`.
    ///
    /// # Errors
    /// [`crate::Error::Singular`] when `A` is singular.
    pub fn inverse(&self) -> Result<Matrix<T>> {
        self.require_nonsingular("Lu::inverse")?;
        let n = self.n;
        // P I has a one at (i, perm[i]).
        let mut x = Matrix::from_fn(n, n, |i, j| if self.perm[i] == j { T::one() } else { T::zero() });
        self.solve_permuted_in_place(x.as_mut_slice(), n);
        Ok(x)
    }
}
