//! In-place LU factorization with partial pivoting, P A = L U, on a row-major n x n buffer.
//!
//! Two algorithms, both generic over [`Real`]:
//!
//! - [`factor_unblocked`]: the textbook right-looking elimination (LAPACK's `getf2`), one column
//!   at a time. O(n^3) scalar work; the reference.
//! - [`factor_recursive`]: Toledo's recursive LU. The columns are split in halves; the left half
//!   is factored, the right half is updated by a triangular solve and one matrix product
//!   `A22 -= L21 * U12`, then factored. Nearly all flops land in [`Real::gemm_kernel`] (faer's
//!   cache-blocked gemm for f32/f64), which is what makes it cache-blocked: there is no fixed
//!   block size to tune, every level works on blocks that halve until they fit.
//!
//! Both pick the pivot of largest magnitude in the column (ties: the first), swap whole rows at
//! once (so L's rows are always consistent with the permutation), and continue past an exactly
//! zero column, recording it: the factorization of a singular matrix is still P A = L U with a
//! zero on U's diagonal, which is what the log-det needs.

use crate::real::Real;
use crate::view::{MatSlice, MatSliceMut, Parallelism};

/// Below this many columns the recursion stops and the unblocked code finishes the panel.
pub(crate) const RECURSION_BASE: usize = 16;
/// Below this many rows a triangular solve is done by direct substitution.
const TRSM_BASE: usize = 32;

/// What a factorization found out, besides the factors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FactorInfo {
    /// Row interchanges performed: the sign of P is (-1)^transpositions.
    pub transpositions: usize,
    /// The first column whose pivot was exactly zero (the matrix is singular), if any.
    pub first_zero_pivot: Option<usize>,
}

fn swap_rows<T>(a: &mut [T], n: usize, r1: usize, r2: usize) {
    let (lo, hi) = (r1.min(r2), r1.max(r2));
    let (top, bottom) = a.split_at_mut(hi * n);
    top[lo * n..(lo + 1) * n].swap_with_slice(&mut bottom[..n]);
}

/// Eliminates columns `c0..c0 + w` over rows `c0..n`, updating only inside that column block.
fn panel<T: Real>(a: &mut [T], n: usize, c0: usize, w: usize, perm: &mut [usize], info: &mut FactorInfo) {
    for j in c0..c0 + w {
        let mut p = j;
        let mut best = a[j * n + j].abs();
        for i in j + 1..n {
            let v = a[i * n + j].abs();
            if v > best {
                best = v;
                p = i;
            }
        }
        if p != j {
            swap_rows(a, n, p, j);
            perm.swap(p, j);
            info.transpositions += 1;
        }
        let pivot = a[j * n + j];
        if pivot == T::zero() {
            // The whole column below is zero too: nothing to eliminate.
            info.first_zero_pivot.get_or_insert(j);
            continue;
        }
        let (top, bottom) = a.split_at_mut((j + 1) * n);
        let urow = &top[j * n + j + 1..j * n + c0 + w];
        for row in bottom.chunks_exact_mut(n) {
            let l = row[j] / pivot;
            row[j] = l;
            if !l.is_exact_zero() {
                for (x, &u) in row[j + 1..c0 + w].iter_mut().zip(urow) {
                    *x -= l * u;
                }
            }
        }
    }
}

/// Textbook right-looking LU with partial pivoting (LAPACK `getf2`). `perm` must start as the
/// identity; on return row i of P A is row `perm[i]` of A.
pub fn factor_unblocked<T: Real>(a: &mut [T], n: usize, perm: &mut [usize]) -> FactorInfo {
    assert!(
        a.len() == n * n && perm.len() == n,
        "invariant: buffer sizes checked by the caller"
    );
    let mut info = FactorInfo::default();
    panel(a, n, 0, n, perm, &mut info);
    info
}

/// Toledo's recursive LU with partial pivoting; the same contract as [`factor_unblocked`].
pub fn factor_recursive<T: Real>(a: &mut [T], n: usize, perm: &mut [usize]) -> FactorInfo {
    assert!(
        a.len() == n * n && perm.len() == n,
        "invariant: buffer sizes checked by the caller"
    );
    let mut info = FactorInfo::default();
    recurse(a, n, 0, n, perm, &mut info);
    info
}

fn recurse<T: Real>(a: &mut [T], n: usize, c0: usize, w: usize, perm: &mut [usize], info: &mut FactorInfo) {
    if w <= RECURSION_BASE {
        panel(a, n, c0, w, perm, info);
        return;
    }
    let w1 = w / 2;
    let w2 = w - w1;
    recurse(a, n, c0, w1, perm, info);
    // U12 = L11^-1 A12 (rows c0..c0+w1, columns c0+w1..c0+w).
    trsm_unit_lower(a, n, c0, w1, c0 + w1, w2);
    // A22 -= L21 U12 (rows c0+w1..n).
    let rows_below = n - c0 - w1;
    if rows_below > 0 {
        update(a, n, c0, w1, c0 + w1, w2, rows_below);
    }
    recurse(a, n, c0 + w1, w2, perm, info);
}

/// `A[r0+m.., c0..c0+k] -= A[r0+m.., l0..l0+m] * A[r0..r0+m, c0..c0+k]` for the `rows` rows
/// below `r0 + m`, where the left factor lives in columns `l0..l0+m` (disjoint from the updated
/// columns). The left factor is copied out because it shares rows with the block being written.
fn update<T: Real>(a: &mut [T], n: usize, l0: usize, m: usize, c0: usize, k: usize, rows: usize) {
    let r0 = l0; // the factored rows start where the factored columns do
    let split = (r0 + m) * n;
    let (top, bottom) = a.split_at_mut(split);
    let mut left = Vec::with_capacity(rows * m);
    for row in bottom.chunks_exact(n).take(rows) {
        left.extend_from_slice(&row[l0..l0 + m]);
    }
    let lhs = MatSlice::new(&left, rows, m).unwrap_or_else(|_| unreachable!("invariant: sized above"));
    let rhs = MatSlice::strided(&top[r0 * n + c0..], m, k, n)
        .unwrap_or_else(|_| unreachable!("invariant: inside the buffer"));
    let dst = MatSliceMut::strided(&mut bottom[c0..], rows, k, n)
        .unwrap_or_else(|_| unreachable!("invariant: inside the buffer"));
    T::gemm_kernel(-T::one(), lhs, rhs, T::one(), dst, Parallelism::Sequential);
}

/// Solves `L X = B` in place for the unit lower triangular `L = A[r0..r0+m, r0..r0+m]` and
/// `B = A[r0..r0+m, c0..c0+k]`, recursively so that the bulk is a gemm.
fn trsm_unit_lower<T: Real>(a: &mut [T], n: usize, r0: usize, m: usize, c0: usize, k: usize) {
    if m <= TRSM_BASE {
        for i in 1..m {
            let (top, bottom) = a.split_at_mut((r0 + i) * n);
            let row_i = &mut bottom[..n];
            for p in 0..i {
                let l = row_i[r0 + p];
                if !l.is_exact_zero() {
                    let row_p = &top[(r0 + p) * n + c0..(r0 + p) * n + c0 + k];
                    for (x, &u) in row_i[c0..c0 + k].iter_mut().zip(row_p) {
                        *x -= l * u;
                    }
                }
            }
        }
        return;
    }
    let m1 = m / 2;
    trsm_unit_lower(a, n, r0, m1, c0, k);
    update(a, n, r0, m1, c0, k, m - m1);
    trsm_unit_lower(a, n, r0 + m1, m - m1, c0, k);
}
