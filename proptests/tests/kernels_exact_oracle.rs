//! An exact oracle: integer matrices whose determinant fraction-free (Bareiss) elimination
//! computes exactly in i128, against the f64 log-det of every LU algorithm.
//!
//! - Non-singular, well-conditioned (column diagonally dominant with an integer margin >= 1, so
//!   ||A^-1||_1 <= 1 and kappa_1 <= ||A||_1 <= 2 (c + 1) M for c off-diagonal entries per column of
//!   magnitude <= M; rows and columns shuffled so pivoting has work to do): the sign must agree and
//!   log|det| must agree to 1e-12 relative (relative to ln|det| when that exceeds 1, else
//!   absolute, i.e. 1e-12 relative in det itself). Why 1e-12 holds: the first-order error is
//!   |tr(A^-1 dA)| <= n ||A^-1||_1 ||dA||_1, and the backward error of elimination is
//!   |dA| <= gamma_n |L||U| with |l_ij| <= 1 and a growth factor of at most 2 under column
//!   dominance, i.e. ||dA||_1 of order n eps ||A||_1: in all about n^2 kappa eps.
//!   [`oracle_params`] keeps n^2 (2c + 1) M eps <= 1e-12 (with kappa <= (2c + 1) M); the
//!   kernels' measured errors are ~1e-15.
//! - Singular by construction (a zero row, a zero column, or a row equal to +-1 times another,
//!   then shuffled): Bareiss gives 0 and the f64 log-det must be exactly singular (sign 0,
//!   log -inf). Elimination keeps these exact: a zero row or column stays zero, and in the
//!   unblocked elimination two rows that are equal up to sign receive identical updates until
//!   one is the pivot of the other, whose multiplier is then exactly +-1. The recursive
//!   algorithm (blocked, like LAPACK's getrf) computes the pivot row's part of U by a triangular
//!   solve and the copy's by a gemm, which round differently: there a copied row may leave a
//!   rounding residue instead of an exact zero pivot (measured |det| ~ 1e-15). For that case
//!   the test requires sign 0 or a computed |det| within the first-order effect of the backward
//!   error: |det(A + dA)| <= n ||adj A||_1 ||dA||_1 <= n (n H) (30 n eps ||A||_1), with every
//!   cofactor bounded by the Hadamard bound H of n - 1 columns.
//! - Unstructured small integer matrices (n <= 6, entries in [-3, 3]): the sign must agree and the
//!   log within 1e-7. Their condition number is bounded only through the adjugate: kappa_1 <=
//!   ||A||_1 ||adj A||_1 / |det A| <= 18 * 6 * (sqrt(5) * 3)^5 ~ 1.5e6 since |det A| >= 1, so
//!   n kappa eps times a growth factor of at most 2^5 gives ~3e-8.
//!
//! Sizes: the i128 bound. Every Bareiss intermediate is a minor of order <= n - 1 before the last
//! step, and a step multiplies two of them, so 2 H^2 < 2^127 suffices, with H the Hadamard bound
//! prod ||column||_2 over n - 1 columns. [`oracle_params`] picks, for each n, the densest band
//! and the widest entry range that keep 2 H^2 below 2^120 (a margin of 2^7), counting one extra
//! entry per column for the singular variants.

mod common;

use common::{bareiss_det, close, config, permutation};
use exactflow_kernels::{LogDetMethod, Lu, LuAlgorithm, Matrix, log_det, log_det_with};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const ALGORITHMS: [LuAlgorithm; 4] = [
    LuAlgorithm::Auto,
    LuAlgorithm::Faer,
    LuAlgorithm::Recursive,
    LuAlgorithm::Unblocked,
];

/// (bandwidth b, entry bound M) for order n: off-diagonal entries a_ij in [-M, M] for
/// 0 < |i - j| <= b, diagonal entries of magnitude (column off-diagonal sum + margin), margin in
/// [1, M]. The densest band, then the widest range, that keeps Bareiss within i128 and the
/// accuracy estimate within 1e-12 (c = min(2b, n - 1) off-diagonal entries per column).
fn oracle_params(n: usize) -> (usize, i64) {
    for b in (0..n.max(1)).rev() {
        for m in (1..=8i64).rev() {
            let c = (2 * b).min(n.saturating_sub(1)) as f64;
            let m = m as f64;
            let diag = (c + 1.0) * m;
            // Column norm^2: c off-diagonal entries, the diagonal, one replaced entry.
            let col2 = c * m * m + 2.0 * diag * diag;
            let log2_bound = 1.0 + (n.saturating_sub(1)) as f64 * col2.log2();
            // The accuracy estimate of the module documentation: n^2 kappa eps <= 1e-12.
            let accuracy = (n * n) as f64 * (2.0 * c + 1.0) * m * f64::EPSILON;
            if log2_bound < 120.0 && accuracy <= 1e-12 {
                return (b, m as i64);
            }
        }
    }
    (0, 1)
}

/// An integer matrix of order n: column diagonally dominant and banded as [`oracle_params`]
/// says, rows and columns shuffled. Returned row-major with its order.
fn dominant_integer(n: usize) -> impl Strategy<Value = (Vec<i64>, usize)> {
    let (b, m) = oracle_params(n);
    (
        prop::collection::vec(-m..=m, n * n),
        prop::collection::vec(1..=m, n),
        prop::collection::vec(any::<bool>(), n),
        permutation(n),
        permutation(n),
    )
        .prop_map(move |(off, margin, neg, p, q)| {
            let mut a = vec![0i64; n * n];
            for j in 0..n {
                let mut col_sum = 0;
                for i in 0..n {
                    if i != j && i.abs_diff(j) <= b {
                        a[i * n + j] = off[i * n + j];
                        col_sum += off[i * n + j].abs();
                    }
                }
                let d = col_sum + margin[j];
                a[j * n + j] = if neg[j] { -d } else { d };
            }
            (shuffle(&a, n, &p, &q), n)
        })
}

/// Entry (i, j) of the result is entry (p[i], q[j]) of `a`.
fn shuffle(a: &[i64], n: usize, p: &[usize], q: &[usize]) -> Vec<i64> {
    (0..n * n).map(|k| a[p[k / n] * n + q[k % n]]).collect()
}

/// How a singular matrix is made from a non-singular one.
#[derive(Clone, Copy, Debug)]
enum Defect {
    ZeroRow(usize),
    ZeroColumn(usize),
    /// Row `dst` := `sign` * row `src`.
    CopyRow {
        src: usize,
        dst: usize,
        negate: bool,
    },
}

fn singular_integer() -> impl Strategy<Value = (Vec<i64>, usize, Defect)> {
    (2usize..=24).prop_flat_map(|n| {
        let defect = prop_oneof![
            (0..n).prop_map(Defect::ZeroRow),
            (0..n).prop_map(Defect::ZeroColumn),
            // dst = src + offset (mod n) with offset in 1..n: never src itself.
            (0..n, 1..n, any::<bool>()).prop_map(move |(src, off, negate)| Defect::CopyRow {
                src,
                dst: (src + off) % n,
                negate
            }),
        ];
        (dominant_integer(n), defect, permutation(n), permutation(n)).prop_map(move |((a, n), defect, p, q)| {
            let mut a = a;
            match defect {
                Defect::ZeroRow(r) => a[r * n..(r + 1) * n].iter_mut().for_each(|v| *v = 0),
                Defect::ZeroColumn(c) => (0..n).for_each(|i| a[i * n + c] = 0),
                Defect::CopyRow { src, dst, negate } => {
                    for j in 0..n {
                        a[dst * n + j] = if negate { -a[src * n + j] } else { a[src * n + j] };
                    }
                }
            }
            (shuffle(&a, n, &p, &q), n, defect)
        })
    })
}

/// The Hadamard bound over the n - 1 largest column 2-norms: bounds every cofactor.
fn hadamard(m: &Matrix<f64>) -> f64 {
    let n = m.rows();
    let mut norms: Vec<f64> = (0..n)
        .map(|j| (0..n).map(|i| m[(i, j)] * m[(i, j)]).sum::<f64>().sqrt())
        .collect();
    norms.sort_by(|x, y| y.total_cmp(x));
    norms.iter().take(n.saturating_sub(1)).product()
}

fn to_matrix(a: &[i64], n: usize) -> Matrix<f64> {
    Matrix::from_fn(n, n, |i, j| a[i * n + j] as f64)
}

/// The exact (sign, ln|det|) from the i128 determinant (converting to f64 rounds by a relative
/// 2^-53, an absolute 1.1e-16 in the log).
fn exact(det: i128) -> (f64, f64) {
    (det.signum() as f64, (det.unsigned_abs() as f64).ln())
}

/// The 1e-12 relative check of the module documentation.
fn agree_1e12(what: &str, got: f64, want: f64) -> Result<(), TestCaseError> {
    close(what, got, want, 1e-12 * want.abs().max(1.0))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn nonsingular_integer_matrices_match_bareiss((a, n) in (1usize..=24).prop_flat_map(dominant_integer)) {
        let det = bareiss_det(&a, n);
        prop_assert_ne!(det, 0, "column diagonal dominance makes A non-singular");
        let (sign, log_abs) = exact(det);
        let m = to_matrix(&a, n);
        for alg in ALGORITHMS {
            let ld = Lu::factor_with(&m, alg).unwrap().log_det();
            prop_assert_eq!(ld.sign, sign, "{:?}", alg);
            agree_1e12(&format!("{alg:?} log|det|"), ld.log_abs, log_abs)?;
        }
        let (ld, _) = log_det_with(&m, LogDetMethod::Auto).unwrap();
        prop_assert_eq!(ld.sign, sign);
        agree_1e12("log_det_with(Auto)", ld.log_abs, log_abs)?;
    }

    #[test]
    fn singular_integer_matrices_give_sign_zero((a, n, defect) in singular_integer()) {
        prop_assert_eq!(bareiss_det(&a, n), 0, "{:?} makes A singular", defect);
        let m = to_matrix(&a, n);
        for alg in ALGORITHMS {
            let ld = Lu::factor_with(&m, alg).unwrap().log_det();
            // faer's LU (f64 here) is blocked above 16 columns, and below it computes a multiplier
            // as a * (1 / p), which is not exactly +-1 for a copied row either.
            let blocked = matches!(alg, LuAlgorithm::Recursive | LuAlgorithm::Faer) || (alg == LuAlgorithm::Auto && n > 32);
            if blocked && matches!(defect, Defect::CopyRow { .. }) {
                let bound = n as f64 * n as f64 * hadamard(&m) * 30.0 * n as f64 * f64::EPSILON * m.norm_1();
                prop_assert!(ld.sign == 0.0 || ld.log_abs <= bound.ln(), "{:?} {:?}: {:?} above {:e}", alg, defect, ld, bound);
            } else {
                prop_assert_eq!(ld.sign, 0.0, "{:?} {:?}: {:?}", alg, defect, ld);
                prop_assert_eq!(ld.log_abs, f64::NEG_INFINITY);
            }
        }
    }

    #[test]
    fn small_unstructured_integer_matrices(
        (a, n) in (1usize..=6).prop_flat_map(|n| (prop::collection::vec(-3i64..=3, n * n), Just(n)))
    ) {
        let det = bareiss_det(&a, n);
        let m = to_matrix(&a, n);
        let ld = log_det(&m).unwrap();
        if det == 0 {
            // Not structurally singular: elimination may leave a rounding residue instead of an
            // exact zero pivot. The computed value is det(A + dA) = tr(adj(A) dA) to first order,
            // at most n ||adj A||_1 ||dA||_1 <= 6 * 8e4 * (30 * 6 eps * 18) ~ 3.4e-7, far from the
            // smallest non-zero |det| of an integer matrix, 1.
            prop_assert!(ld.sign == 0.0 || ld.log_abs < (1e-6f64).ln(), "det 0 computed as {:?}", ld);
        } else {
            let (sign, log_abs) = exact(det);
            prop_assert_eq!(ld.sign, sign);
            close("log|det|", ld.log_abs, log_abs, 1e-7)?;
        }
    }
}

/// The oracle itself, on determinants known in closed form.
#[test]
fn bareiss_knows_its_determinants() {
    assert_eq!(bareiss_det(&[], 0), 1);
    assert_eq!(bareiss_det(&[-7], 1), -7);
    assert_eq!(bareiss_det(&[0, 2, 3, 0], 2), -6);
    // Needs a row exchange at the first step, and a zero appears later.
    assert_eq!(bareiss_det(&[0, 1, 2, 1, 0, 3, 4, -3, 8], 3), -2);
    // Vandermonde on 1..=6: prod_{i<j} (x_j - x_i) = prod_{k=1}^{5} k! = 34560.
    let v: Vec<i64> = (1..=6i64).flat_map(|x| (0..6u32).map(move |p| x.pow(p))).collect();
    assert_eq!(bareiss_det(&v, 6), 34_560);
    // A row swap flips the sign.
    let mut w = v.clone();
    for j in 0..6 {
        w.swap(j, 6 + j);
    }
    assert_eq!(bareiss_det(&w, 6), -34_560);
    // The largest case the strategies allow does not overflow: an all-maximal column pattern.
    for n in 1..=24 {
        let (b, m) = oracle_params(n);
        let a: Vec<i64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                if i == j {
                    (2 * b).min(n - 1) as i64 * m + m
                } else if i.abs_diff(j) <= b {
                    m
                } else {
                    0
                }
            })
            .collect();
        let det = bareiss_det(&a, n);
        assert_ne!(det, 0, "n = {n}");
        let ld = log_det(&to_matrix(&a, n)).unwrap();
        assert!(
            (ld.log_abs - exact(det).1).abs() <= 1e-12 * exact(det).1.abs().max(1.0),
            "n = {n}"
        );
    }
}
