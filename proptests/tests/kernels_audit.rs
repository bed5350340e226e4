//! The matrix audit (`exactflow_kernels::audit`) against independent references.
//!
//! - Backward error: for well-conditioned and uniformly random matrices the LAPACK ratio
//!   `||P A - L U||_1 / (n ||A||_1 eps)` is below 10, in f64 and f32, and equals the test suite's
//!   own implementation (`common::lu_ratio`). Why 10: partial pivoting gives
//!   `|E| <= gamma_n |L||U|` (Higham, Thm. 9.3) with `|l_ij| <= 1` and growth factors of at most
//!   2 (column dominance) or a few units (random matrices); rounding errors of independent
//!   operations do not add up in the worst case, so the ratio is observed at 0.01 to 1. LAPACK's
//!   own threshold is 30 (tested in `kernels_lu_backward_error`); 10 still catches any pivoting
//!   or update bug (ratios of 1e10 and more).
//! - Condition estimate: within `[kappa_1 / n, kappa_1 (1 + tol)]` of the exact `kappa_1` from
//!   nalgebra's explicit inverse, for random matrices of order <= 16. The estimate is
//!   `||A||_1 ||B^-1 x||_1` for a unit vector x, so at most `||A||_1 ||B^-1||_1`; `tol` covers the
//!   difference between `B^-1` (the computed factors' inverse) and nalgebra's computed inverse,
//!   each within a relative `30 n kappa eps` of `A^-1` (backward errors below LAPACK's
//!   threshold, to first order), plus 1e-8. The lower bound `kappa_1 / n` is not a theorem
//!   (Hager's estimator can be fooled) but Higham's alternating vector makes such failures
//!   exceptional; the estimate is typically exact.
//! - Near-singular matrices (Hilbert of order 10, and U diag(sigma) V with a smallest singular
//!   value 1e-12): a condition estimate above 1e10 and an error bound above 1e-6.
//! - The bound holds: the exact determinant of any f64 matrix is that of an integer matrix (the
//!   entries scaled by a common power of two) times a power of two, computed exactly by Bareiss
//!   elimination. Whenever the audit calls its bound valid, the computed log|det| (f64 or f32) is
//!   within it of the exact one (plus `2 eps (1 + |log|)` for the rounding of the exact value's
//!   own log), with the same sign.
//! - Integer matrices (n <= 6): Bareiss equals a brute-force permutation expansion in i128, the
//!   audit's exact digits are those, and the LU result agrees with them within the bound; a
//!   determinant that is exactly 0 is either found singular or flagged with an invalid bound.
//! - f32 input: the f64 recomputation is reported and differs from the f32 result by at most
//!   the sum of the two bounds.
//! - Singular input: sign 0 (or an invalid bound), no panic, exact 0 detected exactly.

mod common;

use common::{config, for_each_size, kappa_1, lu_ratio, uniform, well_conditioned};
use exactflow_kernels::audit::{BigInt, audit_matrix, audit_matrix_with, log_abs_dyadic};
use exactflow_kernels::{LogDetMethod, Lu, Matrix, bareiss_determinant, log_det};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// `(sign, log|det A|)` of the exact determinant of the f64 values of `a`: every finite f64 is
/// `mant 2^exp` with an integer `mant` of at most 53 bits, so with `e_min` the smallest exponent
/// `A = 2^e_min M` for an integer matrix M and `det A = 2^(n e_min) det M`.
fn exact_log_det(a: &Matrix<f64>) -> (f64, f64) {
    let n = a.rows();
    let decoded: Vec<(i64, i64)> = a
        .as_slice()
        .iter()
        .map(|&v| {
            let bits = v.to_bits();
            let field = ((bits >> 52) & 0x7ff) as i64;
            let frac = (bits & ((1u64 << 52) - 1)) as i64;
            let (mant, exp) = if field == 0 {
                (frac, -1074)
            } else {
                (frac | (1 << 52), field - 1075)
            };
            (if v < 0.0 { -mant } else { mant }, exp)
        })
        .collect();
    let Some(e_min) = decoded.iter().filter(|(m, _)| *m != 0).map(|&(_, e)| e).min() else {
        return (0.0, f64::NEG_INFINITY);
    };
    let ints: Vec<BigInt> = decoded
        .iter()
        .map(|&(m, e)| {
            if m == 0 {
                BigInt::from(0)
            } else {
                BigInt::from(m) << ((e - e_min) as usize)
            }
        })
        .collect();
    let det = bareiss_determinant(&ints, n).expect("n * n entries");
    let zero = BigInt::from(0);
    let sign = if det > zero {
        1.0
    } else if det < zero {
        -1.0
    } else {
        0.0
    };
    (sign, log_abs_dyadic(&det, n as i64 * e_min))
}

/// The audit's claim against the exact determinant: when the bound is valid, same sign and
/// `|computed - exact| <= bound + 2 eps (1 + |exact|)`.
fn check_bound_holds(what: &str, a: &Matrix<f64>, f32_input: bool) -> Result<(), TestCaseError> {
    let audit = audit_matrix(a.as_slice(), a.rows(), f32_input).map_err(|e| fail(format!("{what}: {e}")))?;
    let (sign, log) = exact_log_det(a);
    if !audit.bound_valid {
        return Ok(());
    }
    prop_assert_eq!(audit.sign, sign, "{}: sign, {:?}", what, audit);
    let err = (audit.log_abs - log).abs();
    let allowed = audit.log_abs_error_bound + 2.0 * f64::EPSILON * (1.0 + log.abs());
    prop_assert!(err <= allowed, "{what}: error {err:e} > bound {allowed:e}, {audit:?}");
    Ok(())
}

/// Determinant by the Leibniz formula over all n! permutations, in i128 (n <= 6, |a| <= 1000:
/// at most 720 terms of magnitude 1e18).
fn brute_force_det(a: &[i64], n: usize) -> i128 {
    fn rec(a: &[i64], n: usize, row: usize, used: &mut [bool], sign: i128, acc: i128) -> i128 {
        if row == n {
            return sign * acc;
        }
        let mut total = 0;
        // The sign of a permutation built row by row: each column chosen flips the sign once per
        // unused column to its left (the number of inversions it adds).
        let mut smaller_unused = 0;
        for col in 0..n {
            if used[col] {
                continue;
            }
            let s = if smaller_unused % 2 == 0 { sign } else { -sign };
            used[col] = true;
            total += rec(a, n, row + 1, used, s, acc * a[row * n + col] as i128);
            used[col] = false;
            smaller_unused += 1;
        }
        total
    }
    rec(a, n, 0, &mut vec![false; n], 1, 1)
}

#[test]
fn brute_force_oracle_is_right() {
    assert_eq!(brute_force_det(&[], 0), 1);
    assert_eq!(brute_force_det(&[2, 1, 4, -3], 2), -10);
    assert_eq!(brute_force_det(&[0, 1, 0, 0, 0, 1, 1, 0, 0], 3), 1);
    assert_eq!(brute_force_det(&[0, 1, 0, 1, 0, 0, 0, 0, 1], 3), -1);
    assert_eq!(brute_force_det(&[2, 0, 1, 1, 3, 2, 1, 1, 1], 3), 0);
    assert_eq!(brute_force_det(&[2, 0, 1, 1, 3, 2, 1, 1, 2], 3), 6);
}

#[test]
fn backward_error_is_order_one_for_well_conditioned_and_random_matrices() {
    let sizes = [1usize, 2, 3, 8, 16, 17, 33, 64];
    for (name, lo) in [("well-conditioned", true), ("uniform", false)] {
        for_each_size(
            &sizes,
            12,
            |n| {
                if lo {
                    well_conditioned(n).boxed()
                } else {
                    uniform(n, -1.0, 1.0).boxed()
                }
            },
            |n, a| {
                for f32_input in [false, true] {
                    let a = if f32_input {
                        a.map(|v| f64::from(v as f32))
                    } else {
                        a.clone()
                    };
                    let audit = audit_matrix_with(a.as_slice(), n, f32_input, LogDetMethod::Lu)
                        .map_err(|e| fail(e.to_string()))?;
                    prop_assert!(
                        audit.backward_error < 10.0,
                        "{name} n = {n} f32 = {f32_input}: ratio {}",
                        audit.backward_error
                    );
                    // The same quantity by the suite's own implementation, on the same factors.
                    let reference = if f32_input {
                        let a32 = a.map(|v| v as f32);
                        lu_ratio(&a32, &Lu::factor(&a32).map_err(|e| fail(e.to_string()))?)
                    } else {
                        lu_ratio(&a, &Lu::factor(&a).map_err(|e| fail(e.to_string()))?)
                    };
                    prop_assert!(
                        (audit.backward_error - reference).abs() <= 1e-9 * reference,
                        "{name} n = {n}: {} vs lu_ratio {reference}",
                        audit.backward_error
                    );
                }
                Ok(())
            },
        );
    }
}

#[test]
fn condition_estimate_brackets_the_exact_condition_number() {
    for_each_size(
        &[1, 2, 3, 4, 5, 6, 8, 10, 16],
        24,
        |n| uniform(n, -1.0, 1.0),
        |n, a| {
            let audit = audit_matrix_with(a.as_slice(), n, false, LogDetMethod::Lu).map_err(|e| fail(e.to_string()))?;
            let truth = kappa_1(&a);
            let est = audit.cond1_estimate;
            let tol = 1e-8 + 60.0 * n as f64 * truth * f64::EPSILON;
            prop_assert!(est <= truth * (1.0 + tol), "n = {n}: estimate {est} > kappa {truth}");
            prop_assert!(
                est >= truth / n as f64,
                "n = {n}: estimate {est} < kappa / n = {}",
                truth / n as f64
            );
            Ok(())
        },
    );
}

fn hilbert(n: usize) -> Matrix<f64> {
    Matrix::from_fn(n, n, |i, j| 1.0 / (i + j + 1) as f64)
}

#[test]
fn hilbert_matrix_gets_a_large_condition_and_a_wide_bound_that_holds() {
    let a = hilbert(10);
    let audit = audit_matrix(a.as_slice(), 10, false).unwrap();
    // kappa_1(H_10) is about 3.5e13.
    assert!(audit.cond1_estimate > 1e10, "{audit:?}");
    assert!(audit.log_abs_error_bound > 1e-6, "{audit:?}");
    assert!(audit.exact.is_none(), "not an integer matrix");
    check_bound_holds("hilbert 10", &a, false).unwrap();
    // In f32 the Hilbert matrix of order 10 is numerically singular: no valid bound.
    let a32 = a.map(|v| f64::from(v as f32));
    let audit = audit_matrix(a32.as_slice(), 10, true).unwrap();
    assert!(audit.cond1_estimate > 1e6, "{audit:?}");
    assert!(
        !audit.bound_valid && audit.log_abs_error_bound == f64::INFINITY,
        "{audit:?}"
    );
}

/// U diag(sigma) V with U, V orthogonal (Q factors of random matrices), sigma_i spread
/// geometrically from 1 down to 1e-12: 2-norm condition number 1e12.
fn tiny_singular_value(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    (uniform(n, -1.0, 1.0), uniform(n, -1.0, 1.0)).prop_map(move |(g1, g2)| {
        let q1 = g1.to_nalgebra().qr().q();
        let q2 = g2.to_nalgebra().qr().q();
        let step = 1.0 / (n - 1) as f64;
        let sigma = nalgebra::DVector::from_fn(n, |i, _| 10f64.powf(-12.0 * i as f64 * step));
        let a = q1 * nalgebra::DMatrix::from_diagonal(&sigma) * q2;
        Matrix::from_fn(n, n, |i, j| a[(i, j)])
    })
}

#[test]
fn near_singular_matrices_get_a_large_condition_and_a_wide_bound() {
    for_each_size(&[3, 4, 6, 9, 12], 12, tiny_singular_value, |n, a| {
        let audit = audit_matrix(a.as_slice(), n, false).map_err(|e| fail(e.to_string()))?;
        // kappa_1 >= kappa_2 / n = 1e12 / n.
        prop_assert!(audit.cond1_estimate > 1e10, "n = {n}: {audit:?}");
        prop_assert!(audit.log_abs_error_bound > 1e-6, "n = {n}: {audit:?}");
        check_bound_holds("near-singular", &a, false)
    });
}

#[test]
fn the_bound_holds_against_the_exact_determinant() {
    config_run(|n| uniform(n, -1.0, 1.0), "uniform");
    config_run(well_conditioned, "well-conditioned");
    // Graded singular values 1 .. 10^-c, c in [0, 14]: from well-conditioned to the edge.
    config_run(
        |n| {
            (uniform(n, -1.0, 1.0), uniform(n, -1.0, 1.0), 0.0..14.0f64).prop_map(move |(g1, g2, c)| {
                let q1 = g1.to_nalgebra().qr().q();
                let q2 = g2.to_nalgebra().qr().q();
                let step = 1.0 / (n.max(2) - 1) as f64;
                let sigma = nalgebra::DVector::from_fn(n, |i, _| 10f64.powf(-c * i as f64 * step));
                let a = q1 * nalgebra::DMatrix::from_diagonal(&sigma) * q2;
                Matrix::from_fn(n, n, |i, j| a[(i, j)])
            })
        },
        "graded",
    );
}

fn config_run<S: Strategy<Value = Matrix<f64>>>(strategy: impl Fn(usize) -> S, name: &str) {
    for_each_size(&[1, 2, 3, 5, 8, 12, 17], 10, strategy, |n, a| {
        check_bound_holds(&format!("{name} f64 n = {n}"), &a, false)?;
        check_bound_holds(&format!("{name} f32 n = {n}"), &a.map(|v| f64::from(v as f32)), true)
    });
}

/// Integer matrices of order 1..=6 with entries in [-r, r], r in {3, 1000}; `singular` copies a
/// multiple of one row onto another.
fn integer_matrix() -> impl Strategy<Value = (usize, Vec<i64>, bool)> {
    (1usize..=6, prop_oneof![Just(3i64), Just(1000i64)], any::<bool>()).prop_flat_map(|(n, r, singular)| {
        (
            Just(n),
            prop::collection::vec(-r..=r, n * n),
            Just(singular && n >= 2),
            0..n,
            0..n,
            -2i64..=2,
        )
            .prop_map(|(n, mut v, singular, src, dst, c)| {
                if singular {
                    let dst = if dst == src { (src + 1) % n } else { dst };
                    for j in 0..n {
                        v[dst * n + j] = c * v[src * n + j];
                    }
                }
                (n, v, singular)
            })
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn integer_matrices_exact_determinant_and_agreement((n, ints, singular) in integer_matrix()) {
        let brute = brute_force_det(&ints, n);
        let bareiss = bareiss_determinant(&ints, n).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(bareiss.to_string(), brute.to_string());
        if singular {
            prop_assert_eq!(brute, 0);
        }
        let values: Vec<f64> = ints.iter().map(|&v| v as f64).collect();
        for f32_input in [false, true] {
            let audit = audit_matrix(&values, n, f32_input).map_err(|e| fail(e.to_string()))?;
            let exact = audit.exact.as_ref().ok_or_else(|| fail(format!("no exact: {audit:?}")))?;
            prop_assert_eq!(&exact.digits, &brute.to_string());
            let exact_sign = brute.signum() as f64;
            prop_assert_eq!(exact.sign, exact_sign);
            if brute == 0 {
                prop_assert_eq!(exact.log_abs, f64::NEG_INFINITY);
                // Found exactly singular, or the perturbation bound gives up (the factors are
                // within their backward error of a singular matrix, which needs eta >= 1).
                prop_assert!(audit.sign == 0.0 || !audit.bound_valid, "{:?}", audit);
                prop_assert_eq!(exact.agrees, audit.sign == 0.0);
            } else {
                let want = (brute.unsigned_abs() as f64).ln();
                prop_assert!((exact.log_abs - want).abs() <= 2.0 * f64::EPSILON * (1.0 + want));
                prop_assert!(exact.agrees || !audit.bound_valid, "disagrees: {:?}", audit);
                if f32_input {
                    prop_assert!(audit.f64_recompute.is_some());
                }
            }
        }
    }
}

#[test]
fn known_exact_determinants() {
    let audit = audit_matrix(&[2.0, 1.0, 4.0, -3.0], 2, false).unwrap();
    let exact = audit.exact.unwrap();
    assert_eq!((exact.digits.as_str(), exact.sign, exact.agrees), ("-10", -1.0, true));
    assert_eq!(audit.sign, -1.0);
    for values in [[1.0, 2.0, 2.0, 4.0], [0.0, 0.0, 3.0, 5.0], [0.0, 7.0, 0.0, -1.0]] {
        let audit = audit_matrix(&values, 2, false).unwrap();
        let exact = audit.exact.unwrap();
        assert_eq!((exact.digits.as_str(), exact.sign), ("0", 0.0), "{values:?}");
        assert_eq!((audit.sign, audit.log_abs), (0.0, f64::NEG_INFINITY));
        assert!(exact.agrees);
    }
    // [[1, 2, 3], [4, 5, 6], [7, 8, 9]] is singular; elimination in f64 leaves a residue of
    // rounding in the last pivot. The exact determinant exposes it, and the bound gives up.
    let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let audit = audit_matrix(&values, 3, false).unwrap();
    let exact = audit.exact.as_ref().unwrap();
    assert_eq!(exact.digits, "0");
    assert!(audit.sign == 0.0 || (!audit.bound_valid && !exact.agrees), "{audit:?}");
    // A 6x6 integer matrix with a known large determinant: diag(10^9) has det 10^54.
    let d: Vec<f64> = (0..36).map(|k| if k % 7 == 0 { 1e9 } else { 0.0 }).collect();
    let audit = audit_matrix(&d, 6, false).unwrap();
    assert_eq!(audit.exact.unwrap().digits, format!("1{}", "0".repeat(54)));
}

#[test]
fn f32_input_reports_the_f64_recomputation_within_the_bounds() {
    for_each_size(
        &[1, 2, 3, 8, 17, 33, 64],
        8,
        |n| uniform(n, -1.0, 1.0),
        |n, a| {
            let a = a.map(|v| f64::from(v as f32));
            let audit = audit_matrix(a.as_slice(), n, true).map_err(|e| fail(e.to_string()))?;
            let wide = audit_matrix(a.as_slice(), n, false).map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(audit.precision.as_str(), "f32");
            // The audit reports the log-det of its own factorization, `Lu::factor(A)`, bit for
            // bit. `log_det` (f32/f64 above n = 32) factors `A^T` instead, whose audit bounds it:
            // both values are within their bounds of the same log|det A|, so they differ by at
            // most the sum of the two bounds.
            let a32 = a.map(|v| v as f32);
            let own = Lu::factor(&a32).map_err(|e| fail(e.to_string()))?.log_det();
            prop_assert_eq!(audit.log_abs, f64::from(own.log_abs));
            let direct = log_det(&a32).map_err(|e| fail(e.to_string()))?;
            let at = a.transpose();
            let audit_t = audit_matrix(at.as_slice(), n, true).map_err(|e| fail(e.to_string()))?;
            // Up to n = 32 `log_det` runs the unblocked code on `A` itself, the audit's value.
            let audited = if n > 32 { audit_t.log_abs } else { audit.log_abs };
            prop_assert_eq!(audited, f64::from(direct.log_abs));
            if audit.bound_valid && audit_t.bound_valid {
                prop_assert!(
                    (f64::from(direct.log_abs) - audit.log_abs).abs()
                        <= audit.log_abs_error_bound + audit_t.log_abs_error_bound,
                    "n = {n}: log_det {} against the audit's {}",
                    direct.log_abs,
                    audit.log_abs
                );
            }
            let r = audit
                .f64_recompute
                .as_ref()
                .ok_or_else(|| fail("no recompute".into()))?;
            prop_assert_eq!((r.sign, r.log_abs), (wide.sign, wide.log_abs));
            if audit.bound_valid && wide.bound_valid {
                prop_assert_eq!(audit.sign, r.sign);
                prop_assert!(
                    r.difference.abs() <= audit.log_abs_error_bound + wide.log_abs_error_bound,
                    "n = {n}: difference {:e}, bounds {:e} + {:e}",
                    r.difference,
                    audit.log_abs_error_bound,
                    wide.log_abs_error_bound
                );
            }
            Ok(())
        },
    );
}

#[test]
fn singular_input_is_handled() {
    for_each_size(
        &[1, 2, 3, 8, 17, 40],
        8,
        |n| (uniform(n, -1.0, 1.0), 0..n, 0..3usize),
        |n, (mut a, k, kind)| {
            // A zero column, a zero row, or (n >= 2) a row repeated.
            for j in 0..n {
                match kind {
                    0 => a[(j, k)] = 0.0,
                    1 => a[(k, j)] = 0.0,
                    _ if n >= 2 => a[((k + 1) % n, j)] = a[(k, j)],
                    _ => a[(k, j)] = 0.0,
                }
            }
            for f32_input in [false, true] {
                let a = if f32_input {
                    a.map(|v| f64::from(v as f32))
                } else {
                    a.clone()
                };
                let audit = audit_matrix(a.as_slice(), n, f32_input).map_err(|e| fail(e.to_string()))?;
                if audit.sign == 0.0 {
                    prop_assert_eq!(audit.log_abs, f64::NEG_INFINITY);
                    prop_assert_eq!(audit.cond1_estimate, f64::INFINITY);
                    prop_assert!(!audit.bound_valid && audit.log_abs_error_bound == f64::INFINITY);
                } else {
                    // A rounding residue instead of an exact zero pivot: the bound must give up.
                    prop_assert!(!audit.bound_valid, "n = {n} kind {kind}: {audit:?}");
                }
                check_bound_holds("singular", &a, f32_input)?;
            }
            Ok(())
        },
    );
}
