//! faer's LU with partial pivoting on a column-major buffer: the fast path of
//! [`crate::Real::lu_kernel`] for `f32` and `f64`.
//!
//! It works on a **column-major** `n x n` buffer, which `lu::Lu` fills with the transpose of its
//! row-major input (a log-determinant alone copies the row-major input as it is and factors
//! `A^T`, whose determinant is the same): faer's LU on a row-major view of the same data was 1.6x to 2.8x slower than
//! on a column-major copy at n = 1024 and 2048 (its panel walks down columns and its row
//! interchanges are applied column by column; BENCHMARKS.md, issue 15). faer applies its row
//! interchanges to the whole rows, so the buffer ends up holding the packed factors of
//! `P A = L U`, and faer's forward permutation has the crate's meaning (row i of `P A` is row
//! `perm[i]` of `A`): both are built by applying the same transpositions, in order, to the
//! identity.
//!
//! faer multiplies by the reciprocal of each pivot and does not stop at a zero one: a zero pivot
//! (before the last column), a subnormal pivot whose reciprocal overflows, or an overflow in the
//! updates leaves NaN or infinity in the factors. The caller checks U's diagonal and falls back
//! to the generic code; see `lu::Lu::factor_with` for why the diagonal is enough.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::lu::partial_pivoting::factor::{lu_in_place as faer_lu_in_place, lu_in_place_scratch};

/// Factors the column-major `n x n` buffer `a` in place with faer's `lu_in_place` (`Par::Seq`,
/// default parameters); writes the row permutation to `perm` and returns the number of row
/// interchanges.
///
/// # Panics
/// If `a.len() != n * n` or `perm.len() != n` (the caller has checked both).
pub(crate) fn lu_in_place<T: faer::traits::ComplexField>(a: &mut [T], n: usize, perm: &mut [usize]) -> usize {
    assert!(
        a.len() == n * n && perm.len() == n,
        "invariant: buffer sizes checked by the caller"
    );
    let view = faer::MatMut::from_column_major_slice_mut(a, n, n);
    let mut perm_inv = vec![0usize; n];
    let par = faer::Par::Seq;
    let mut mem = MemBuffer::new(lu_in_place_scratch::<usize, T>(n, n, par, Default::default()));
    let (info, _) = faer_lu_in_place(
        view,
        perm,
        &mut perm_inv,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    info.transposition_count
}
