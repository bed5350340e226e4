//! Forward-mode derivatives through the kernels: the LU log-det run on dual numbers (`F1`, one
//! entry seeded with dx = 1) gives Jacobi's formula, d log|det A| / d a_ij = (A^-1)_ji, checked
//! against nalgebra's f64 inverse. The matrices have exact zeros (about a third of the
//! off-diagonal entries), so that seeded entries and multipliers of value zero are exercised:
//! a zero *value* may still carry a derivative.
//!
//! Tolerance: 32 n eps max|A^-1|. The tangent is propagated through the same elimination, so it
//! is computed with the accuracy of a linear solve with A's factors (relative error of order
//! n kappa eps against max|A^-1|); nalgebra's inverse has the same order. Two such errors, with
//! kappa_1 <= 4 for these matrices (column dominance, see `common::well_conditioned`), and a
//! factor 4 for pivot growth and the divisions by pivots: 2 * 4 * 4 n eps.

mod common;

use common::{WELL_KAPPA, config, permutation, permute_rows};
use exactflow_kernels::{F1, LogDetMethod, Lu, LuAlgorithm, Matrix, log_det_with};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Column diagonally dominant (kappa_1 <= 4, as `common::well_conditioned`) with about a third of
/// the off-diagonal entries exactly zero, before the row shuffle, and the shuffle: row i of the
/// test matrix is row `perm[i]` of the returned one.
fn sparse_well_parts(n: usize) -> impl Strategy<Value = (Matrix<f64>, Vec<usize>)> {
    let off = 0.5 / n as f64;
    (
        prop::collection::vec(-off..off, n * n),
        prop::collection::vec(prop::bool::weighted(0.35), n * n),
        prop::collection::vec(1.0..1.5f64, n),
        prop::collection::vec(any::<bool>(), n),
        permutation(n),
    )
        .prop_map(move |(o, zero, d, neg, p)| {
            let a = Matrix::from_fn(n, n, |i, j| match (i == j, zero[i * n + j]) {
                (true, _) => {
                    if neg[i] {
                        -d[i]
                    } else {
                        d[i]
                    }
                }
                (false, true) => 0.0,
                (false, false) => o[i * n + j],
            });
            (a, p)
        })
}

/// [`sparse_well_parts`] with the shuffle applied.
fn sparse_well(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    sparse_well_parts(n).prop_map(|(a, p)| permute_rows(&a, &p))
}

/// A as dual numbers with entry (i, j) seeded (dx = 1), every other entry constant.
fn seeded(a: &Matrix<f64>, i: usize, j: usize) -> Matrix<F1> {
    Matrix::from_fn(a.rows(), a.cols(), |r, c| {
        if (r, c) == (i, j) {
            F1::var(a[(r, c)])
        } else {
            F1::cst(a[(r, c)])
        }
    })
}

fn inverse_f64(a: &Matrix<f64>) -> Matrix<f64> {
    let inv = a.to_nalgebra().try_inverse().expect("well-conditioned by construction");
    Matrix::from_fn(a.rows(), a.cols(), |i, j| inv[(i, j)])
}

fn jacobi_tol(n: usize, inv: &Matrix<f64>) -> f64 {
    let max = inv.as_slice().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    8.0 * WELL_KAPPA * n as f64 * f64::EPSILON * max
}

fn check(a: &Matrix<f64>, i: usize, j: usize) -> Result<(), TestCaseError> {
    let n = a.rows();
    let inv = inverse_f64(a);
    let tol = jacobi_tol(n, &inv);
    let d = seeded(a, i, j);
    for alg in [LuAlgorithm::Auto, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
        let ld = Lu::factor_with(&d, alg)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .log_det();
        prop_assert_eq!(ld.sign.dx, 0.0, "the sign is locally constant");
        let got = ld.log_abs.dx;
        prop_assert!(
            (got - inv[(j, i)]).abs() <= tol,
            "{:?} n={} seed ({}, {}) (value {}): d log|det| = {} but (A^-1)_ji = {} (tol {:e})",
            alg,
            n,
            i,
            j,
            a[(i, j)],
            got,
            inv[(j, i)],
            tol
        );
        // The value part is the f64 computation: bit for bit where both run the same generic
        // elimination; where f64 runs faer's gemm (recursive paths) within the log-det bound.
        let plain = Lu::factor_with(a, alg).unwrap().log_det();
        prop_assert_eq!(ld.sign.x, plain.sign);
        if alg == LuAlgorithm::Unblocked || (alg == LuAlgorithm::Auto && n <= 32) {
            prop_assert_eq!(ld.log_abs.x, plain.log_abs);
        } else {
            prop_assert!((ld.log_abs.x - plain.log_abs).abs() <= 2.0 * common::logdet_bound(n, WELL_KAPPA));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// Sizes up to 48: `Auto` switches to the recursive algorithm (gemm and triangular solves on
    /// dual numbers) above 32, and `Recursive` recurses from 17 on.
    #[test]
    fn log_det_derivative_is_the_transposed_inverse(
        (a, i, j) in (1usize..=48).prop_flat_map(|n| (sparse_well(n), 0..n, 0..n))
    ) {
        check(&a, i, j)?;
    }

    /// Seeding an entry whose value is zero, on purpose (the case that the value-only `== 0`
    /// shortcut got wrong).
    #[test]
    fn derivative_at_a_zero_entry(
        ((a, p), r, c) in (2usize..=40).prop_flat_map(|n| (sparse_well_parts(n), 0..n, 1..n))
    ) {
        let n = a.rows();
        // Zero an off-diagonal entry (r, c) of the unshuffled matrix (c = r + offset, offset in
        // 1..n): dominance, hence invertibility, is kept. After the shuffle it sits in row i with
        // p[i] = r.
        let c = (r + c) % n;
        let mut z = a.clone();
        z[(r, c)] = 0.0;
        let i = p.iter().position(|&k| k == r).unwrap();
        check(&permute_rows(&z, &p), i, c)?;
    }

    /// A triangular matrix seeded in its zero triangle: `Auto` must not take the O(n) path, whose
    /// derivative in that entry would be 0 instead of (A^-1)_ji.
    #[test]
    fn triangular_structure_is_judged_with_derivatives(
        (a, i, j) in (2usize..=30).prop_flat_map(|n| (sparse_well(n), 0..n, 1..n))
    ) {
        let n = a.rows();
        // Undo the row shuffle's effect on structure: keep the lower triangle of A sorted so that
        // the dominant entry is on the diagonal (rows by position of their largest entry).
        let mut order: Vec<usize> = (0..n).collect();
        let argmax = |r: usize| (0..n).max_by(|&x, &y| a[(r, x)].abs().total_cmp(&a[(r, y)].abs())).unwrap();
        order.sort_by_key(|&r| argmax(r));
        let sorted = permute_rows(&a, &order);
        let lower = Matrix::from_fn(n, n, |r, c| if r >= c { sorted[(r, c)] } else { 0.0 });
        let j = (i + j) % n;
        let (r, c) = (i.min(j), i.max(j)); // strictly upper: a zero of the lower triangular matrix
        let inv = inverse_f64(&lower);
        let d = seeded(&lower, r, c);
        let (ld, _) = log_det_with(&d, LogDetMethod::Auto).unwrap();
        prop_assert!((ld.log_abs.dx - inv[(c, r)]).abs() <= jacobi_tol(n, &inv));
        // The value part agrees with the f64 log-det (which takes the O(n) path).
        let (plain, _) = log_det_with(&lower, LogDetMethod::Auto).unwrap();
        prop_assert!((ld.log_abs.x - plain.log_abs).abs() <= common::logdet_bound(n, WELL_KAPPA));
    }
}
