//! LAPACK's LU acceptance test (xGET01) on the kernels' LU: for P A = L U,
//! `||P A - L U||_1 / (n ||A||_1 eps) <= 30`, with the residual computed as if in twice the f64
//! precision (`common::lu_ratio`), for faer's, the recursive and the unblocked algorithm, f64
//! and f32, every size of `common::LU_SIZES` (straddling the recursion thresholds 16 and 32, up
//! to 256), on random, graded (condition numbers up to 1e12), triangular, diagonal and
//! permutation matrices.
//!
//! Tolerance: 30 is LAPACK's threshold (THRESH in its test suite's input files). Partial pivoting
//! is backward stable with |dA| <= gamma_n |L||U| (Higham, Thm. 9.3); the ratio stays O(1) for
//! growth factors met in practice, and the threshold leaves room for an unlucky growth factor of a
//! few units. A pivoting bug or an update applied to the wrong block gives ratios of 1e10 and more.
//! Diagonal and permutation matrices factor without a single rounding: their ratio must be 0.

mod common;

use common::{LU_SIZES, eps, for_each_size, lu_ratio, permutation, uniform};
use exactflow_kernels::{Lu, LuAlgorithm, Matrix, Real};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// LAPACK's threshold for the LU test ratio.
const THRESH: f64 = 30.0;

/// Factors `a` with both algorithms and checks the ratio and the shape of the factors.
fn check<T: Real>(a: &Matrix<T>, exact: bool) -> Result<(), TestCaseError> {
    for alg in [LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
        let lu = Lu::factor_with(a, alg).map_err(|e| TestCaseError::fail(format!("{alg:?}: {e}")))?;
        let r = lu_ratio(a, &lu);
        prop_assert!(r <= THRESH, "{} {alg:?} n = {}: ratio {r}", T::NAME, a.rows());
        if exact {
            prop_assert_eq!(r, 0.0, "{} {:?}: exact input, inexact factors", T::NAME, alg);
        }
        // Partial pivoting: every multiplier is at most 1 in magnitude.
        prop_assert!(lu.l().as_slice().iter().all(|v| v.abs() <= T::one()));
    }
    Ok(())
}

fn check_both(a: &Matrix<f64>, exact: bool) -> Result<(), TestCaseError> {
    check(a, exact)?;
    check(&a.map(|v| v as f32), exact)
}

/// A = D1 R D2: a random R with rows and columns scaled by geometric sequences of total spread
/// 10^e1 and 10^e2 (e1, e2 <= 6), assigned in random order: condition numbers up to about 1e12
/// times that of R.
fn graded_scaling(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    (
        uniform(n, -1.0, 1.0),
        0.0..6.0f64,
        0.0..6.0f64,
        permutation(n),
        permutation(n),
    )
        .prop_map(move |(r, e1, e2, p1, p2)| {
            let step = 1.0 / (n.max(2) - 1) as f64;
            Matrix::from_fn(n, n, |i, j| {
                10f64.powf(-e1 * p1[i] as f64 * step) * r[(i, j)] * 10f64.powf(-e2 * p2[j] as f64 * step)
            })
        })
}

/// A = U diag(sigma) V with U, V orthogonal (the Q factors of random matrices) and singular
/// values sigma_i = 10^(-c i / (n - 1)), c <= 12: 2-norm condition number 10^c, up to 1e12.
fn graded_svd(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    (uniform(n, -1.0, 1.0), uniform(n, -1.0, 1.0), 0.0..12.0f64).prop_map(move |(g1, g2, c)| {
        let q1 = g1.to_nalgebra().qr().q();
        let q2 = g2.to_nalgebra().qr().q();
        let step = 1.0 / (n.max(2) - 1) as f64;
        let sigma = nalgebra::DVector::from_fn(n, |i, _| 10f64.powf(-c * i as f64 * step));
        let a = q1 * nalgebra::DMatrix::from_diagonal(&sigma) * q2;
        Matrix::from_fn(n, n, |i, j| a[(i, j)])
    })
}

/// Lower (`lower`) or upper triangular with entries in [-1, 1] and a diagonal of magnitude in
/// [0.5, 2] with random signs.
fn triangular(n: usize, lower: bool) -> impl Strategy<Value = Matrix<f64>> {
    (
        uniform(n, -1.0, 1.0),
        prop::collection::vec(0.5..2.0f64, n),
        prop::collection::vec(any::<bool>(), n),
    )
        .prop_map(move |(m, d, neg)| {
            Matrix::from_fn(n, n, |i, j| match (i == j, (i > j) == lower) {
                (true, _) => {
                    if neg[i] {
                        -d[i]
                    } else {
                        d[i]
                    }
                }
                (false, true) => m[(i, j)],
                (false, false) => 0.0,
            })
        })
}

/// A diagonal matrix with entries of magnitude 10^e, e in [-30, 30] (f32 range), random signs.
fn diagonal(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    (
        prop::collection::vec(-30.0..30.0f64, n),
        prop::collection::vec(any::<bool>(), n),
    )
        .prop_map(move |(e, neg)| {
            Matrix::from_fn(n, n, |i, j| {
                if i != j {
                    0.0
                } else if neg[i] {
                    -(10f64.powf(e[i]))
                } else {
                    10f64.powf(e[i])
                }
            })
        })
}

fn permutation_matrix(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    permutation(n).prop_map(move |p| Matrix::from_fn(n, n, |i, j| if p[i] == j { 1.0 } else { 0.0 }))
}

#[test]
fn random_matrices() {
    for_each_size(&LU_SIZES, 4, |n| uniform(n, -1.0, 1.0), |_, a| check_both(&a, false));
}

#[test]
fn graded_by_row_and_column_scaling() {
    for_each_size(&LU_SIZES, 4, graded_scaling, |_, a| check_both(&a, false));
}

#[test]
fn graded_by_singular_values() {
    for_each_size(&LU_SIZES, 2, graded_svd, |_, a| check_both(&a, false));
}

#[test]
fn lower_triangular() {
    for_each_size(&LU_SIZES, 2, |n| triangular(n, true), |_, a| check_both(&a, false));
}

#[test]
fn upper_triangular() {
    for_each_size(&LU_SIZES, 2, |n| triangular(n, false), |_, a| check_both(&a, false));
}

#[test]
fn diagonal_matrices_factor_exactly() {
    for_each_size(&LU_SIZES, 1, diagonal, |_, a| check_both(&a, true));
}

#[test]
fn permutation_matrices_factor_exactly() {
    for_each_size(&LU_SIZES, 1, permutation_matrix, |_, a| check_both(&a, true));
}

/// The ratio is a meaningful measure: a factorization perturbed by a few hundred ulps in one
/// entry of U fails it (so a pass is not vacuous).
#[test]
fn the_ratio_detects_a_perturbed_factor() {
    let a = Matrix::from_fn(40, 40, |i, j| {
        ((i * 37 + j * 11) % 17) as f64 - 8.0 + if i == j { 20.0 } else { 0.0 }
    });
    let lu = Lu::factor(&a).unwrap();
    assert!(lu_ratio(&a, &lu) <= THRESH);
    // Perturb A instead of U: factoring A and measuring against A + dA sees ||dA||.
    let mut b = a.clone();
    b[(5, 7)] += 1e4 * eps::<f64>() * 40.0 * a.norm_1();
    assert!(lu_ratio(&b, &lu) > THRESH);
}
