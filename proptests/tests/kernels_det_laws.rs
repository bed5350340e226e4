//! Determinant laws on the kernels' log-det, and agreement with nalgebra's and faer's determinants.
//!
//! Laws: det(A^-1) = 1/det(A), det(AB) = det(A) det(B), det(A^T) = det(A), det(cA) = c^n det(A),
//! a row swap flips the sign, a permutation matrix has the determinant of its parity; the O(n)
//! triangular kernel equals LU on triangular input. Plus quickcheck laws of the `LogDet` algebra.
//!
//! Tolerances come from `common::logdet_bound(n, kappa)`: the first-order effect of a backward
//! error of 30 n eps ||X||_1 (LAPACK's threshold, tested in `kernels_lu_backward_error`) on
//! log|det X|, for a matrix of 1-norm condition number kappa. The matrices are
//! `common::well_conditioned` (kappa <= 4 by construction) unless a test says otherwise. A law
//! compared through k computed log-dets gets the sum of their bounds. Signs must agree exactly.

mod common;

use common::{WELL_KAPPA, close, config, kappa_1, logdet_bound, parity, permutation, uniform, well_conditioned};
use exactflow_kernels::{
    LogDet, LogDetMethod, Lu, LuAlgorithm, Matrix, UsedMethod, log_det, log_det_lower, log_det_upper, log_det_with,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use quickcheck::{QuickCheck, TestResult};

fn ld(a: &Matrix<f64>) -> Result<LogDet<f64>, TestCaseError> {
    log_det(a).map_err(|e| TestCaseError::fail(e.to_string()))
}

fn ld_with(a: &Matrix<f64>, alg: LuAlgorithm) -> Result<LogDet<f64>, TestCaseError> {
    Lu::factor_with(a, alg)
        .map(|lu| lu.log_det())
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

fn size() -> impl Strategy<Value = usize> {
    // Sizes across the unblocked (<= 32) and recursive paths of `Auto`.
    prop_oneof![1usize..=20, 30usize..=40, Just(64usize)]
}

fn well() -> impl Strategy<Value = Matrix<f64>> {
    size().prop_flat_map(well_conditioned)
}

proptest! {
    #![proptest_config(config(128))]

    /// det(A^-1) = 1/det(A): same sign, negated log. A^-1 is the kernels' inverse; its own
    /// error (||A Â^-1 - I|| <= n kappa 30 n eps as a backward error) enters like a third log-det.
    #[test]
    fn inverse_inverts_the_determinant(a in well()) {
        let n = a.rows();
        let inv = Lu::factor(&a).unwrap().inverse().unwrap();
        let (d, di) = (ld(&a)?, ld(&inv)?);
        prop_assert_eq!(di.sign, d.sign);
        close("log|det A^-1| + log|det A|", di.log_abs, -d.log_abs, 3.0 * logdet_bound(n, WELL_KAPPA))?;
        let inv_ld = d.inv().unwrap();
        prop_assert_eq!(inv_ld.sign, di.sign);
    }

    /// det(AB) = det(A) det(B). AB is formed by gemm (faer), with error <= n eps |A||B|, which
    /// is within the backward-error budget of one more log-det; kappa(AB) <= 16.
    #[test]
    fn product_multiplies_determinants((a, b) in size().prop_flat_map(|n| (well_conditioned(n), well_conditioned(n)))) {
        let n = a.rows();
        let ab = a.matmul(&b).unwrap();
        let lhs = ld(&ab)?;
        let rhs = ld(&a)? * ld(&b)?;
        prop_assert_eq!(lhs.sign, rhs.sign);
        let tol = 2.0 * logdet_bound(n, WELL_KAPPA * WELL_KAPPA) + 2.0 * logdet_bound(n, WELL_KAPPA);
        close("log|det AB|", lhs.log_abs, rhs.log_abs, tol)?;
    }

    /// det(A^T) = det(A), for both algorithms (different pivots, same determinant).
    #[test]
    fn transpose_keeps_the_determinant(a in well()) {
        let n = a.rows();
        for alg in [LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            let (d, dt) = (ld_with(&a, alg)?, ld_with(&a.transpose(), alg)?);
            prop_assert_eq!(d.sign, dt.sign);
            close("log|det A^T|", dt.log_abs, d.log_abs, 2.0 * logdet_bound(n, WELL_KAPPA))?;
        }
    }

    /// det(cA) = c^n det(A) (`LogDet::scaled`), c of magnitude in [1/4, 4] with either sign.
    /// Rounding cA adds a relative u per entry, within the budget of the second log-det.
    #[test]
    fn scaling_scales_by_c_to_the_n(a in well(), mag in 0.25..4.0f64, neg in any::<bool>()) {
        let n = a.rows();
        let c = if neg { -mag } else { mag };
        let lhs = ld(&a.scale(c))?;
        let rhs = ld(&a)?.scaled(c, n);
        prop_assert_eq!(lhs.sign, rhs.sign);
        // n ln|c| adds at most 2 n eps |ln 4| of rounding.
        let tol = 2.0 * logdet_bound(n, WELL_KAPPA) + 4.0 * n as f64 * f64::EPSILON;
        close("log|det cA|", lhs.log_abs, rhs.log_abs, tol)?;
    }

    /// A row swap flips the sign and keeps |det|.
    #[test]
    fn a_row_swap_flips_the_sign(
        (a, i, j) in (2usize..=40).prop_flat_map(|n| (well_conditioned(n), 0..n, 1..n))
    ) {
        let n = a.rows();
        let j = (i + j) % n; // j != i: an offset in 1..n, encoded in the range
        let mut b = a.clone();
        b.swap_rows(i, j).unwrap();
        for alg in [LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            let (d, ds) = (ld_with(&a, alg)?, ld_with(&b, alg)?);
            prop_assert_eq!(ds.sign, -d.sign);
            close("log|det| after a swap", ds.log_abs, d.log_abs, 2.0 * logdet_bound(n, WELL_KAPPA))?;
        }
    }

    /// A permutation matrix has determinant sign(perm) exactly (its LU involves no rounding).
    #[test]
    fn permutation_matrix_has_the_determinant_of_its_parity(p in (0usize..=70).prop_flat_map(permutation)) {
        let n = p.len();
        let m = Matrix::from_fn(n, n, |i, j| if p[i] == j { 1.0 } else { 0.0 });
        for alg in [LuAlgorithm::Auto, LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            let d = ld_with(&m, alg)?;
            prop_assert_eq!(d.sign, parity(&p));
            prop_assert_eq!(d.log_abs, 0.0);
        }
        // The same matrix scaled by 2 and transposed: det = parity * 2^n.
        let d = ld(&m.transpose().scale(2.0))?;
        prop_assert_eq!(d.sign, parity(&p));
        close("log|det 2P^T|", d.log_abs, n as f64 * 2f64.ln(), 2.0 * n as f64 * f64::EPSILON)?;
    }

    /// The O(n) triangular kernel equals LU on triangular input. With a dominant diagonal LU does
    /// no row exchange and no arithmetic on U's diagonal, so the two agree bit for bit; on general
    /// triangular input (pivoting reorders rows) they agree within the LU's bound, with kappa
    /// measured by nalgebra.
    #[test]
    fn triangular_kernel_equals_lu(
        (m, d, neg, n) in (1usize..=48).prop_flat_map(|n| (
            uniform(n, -1.0, 1.0),
            prop::collection::vec(0.05..2.0f64, n),
            prop::collection::vec(any::<bool>(), n),
            Just(n),
        )),
        dominant in any::<bool>(),
    ) {
        let scale = if dominant { 0.025 / n as f64 } else { 1.0 }; // off-diagonal sums < 0.05
        let diag = |i: usize| if neg[i] { -d[i] } else { d[i] };
        let lower = Matrix::from_fn(n, n, |i, j| if i == j { diag(i) } else if i > j { scale * m[(i, j)] } else { 0.0 });
        let upper = lower.transpose();
        for (tri, fast) in [(&lower, log_det_lower(&lower).unwrap()), (&upper, log_det_upper(&upper).unwrap())] {
            let (auto, used) = log_det_with(tri, LogDetMethod::Auto).unwrap();
            prop_assert!(matches!(used, UsedMethod::Triangular(_)), "unexpected result");
            prop_assert_eq!(auto, fast);
            for alg in [LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
                let lu = ld_with(tri, alg)?;
                prop_assert_eq!(lu.sign, fast.sign);
                if dominant {
                    prop_assert_eq!(lu.log_abs, fast.log_abs);
                } else {
                    close("triangular vs LU", lu.log_abs, fast.log_abs, logdet_bound(n, kappa_1(tri)))?;
                }
            }
        }
    }

    /// Agreement with nalgebra's `determinant` and faer's (both LU with partial pivoting, forming
    /// the product, which cannot overflow here: |det| <= 2^n with n <= 128). Two computed
    /// log-dets: twice the bound.
    #[test]
    fn agrees_with_nalgebra_and_faer(a in prop_oneof![1usize..=40, Just(65usize), Just(128usize)].prop_flat_map(well_conditioned)) {
        let n = a.rows();
        let ours = ld(&a)?;
        let na = LogDet::from_value(a.to_nalgebra().determinant());
        let fa = LogDet::from_value(a.to_faer().as_ref().determinant());
        for (name, other) in [("nalgebra", na), ("faer", fa)] {
            prop_assert_eq!(ours.sign, other.sign, "{}", name);
            close(name, ours.log_abs, other.log_abs, 2.0 * logdet_bound(n, WELL_KAPPA))?;
        }
    }

    /// The same agreement on unstructured random matrices (entries in [-1, 1]), whose condition
    /// number is not bounded by construction: the bound uses kappa_1 measured with nalgebra's
    /// inverse.
    #[test]
    fn agrees_with_nalgebra_and_faer_on_random_matrices(a in (1usize..=48).prop_flat_map(|n| uniform(n, -1.0, 1.0))) {
        let n = a.rows();
        let kappa = kappa_1(&a);
        let ours = ld(&a)?;
        let na = LogDet::from_value(a.to_nalgebra().determinant());
        let fa = LogDet::from_value(a.to_faer().as_ref().determinant());
        for (name, other) in [("nalgebra", na), ("faer", fa)] {
            if kappa.is_finite() && kappa < 1e12 {
                prop_assert_eq!(ours.sign, other.sign, "{}", name);
                close(name, ours.log_abs, other.log_abs, 2.0 * logdet_bound(n, kappa))?;
            }
        }
    }
}

/// faer's low-level in-place LU (the kernel-level API) gives the same U diagonal magnitudes and
/// transposition parity, so the same (sign, log|det|).
#[test]
fn agrees_with_faer_lu_in_place() {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::lu::partial_pivoting::factor::{lu_in_place, lu_in_place_scratch};
    let mut runner = proptest::test_runner::TestRunner::new(config(64));
    runner
        .run(&(1usize..=80).prop_flat_map(well_conditioned), |a| {
            let n = a.rows();
            let mut f = a.to_faer();
            let (mut fwd, mut bwd) = (vec![0usize; n], vec![0usize; n]);
            let par = faer::Par::Seq;
            let mut mem = MemBuffer::new(lu_in_place_scratch::<usize, f64>(n, n, par, Default::default()));
            let (info, _) = lu_in_place(
                f.as_mut(),
                &mut fwd,
                &mut bwd,
                par,
                MemStack::new(&mut mem),
                Default::default(),
            );
            let mut theirs = LogDet::one();
            for i in 0..n {
                theirs = theirs * LogDet::from_value(f[(i, i)]);
            }
            if info.transposition_count % 2 == 1 {
                theirs.sign = -theirs.sign;
            }
            let ours = ld(&a)?;
            prop_assert_eq!(ours.sign, theirs.sign);
            close(
                "faer lu_in_place",
                ours.log_abs,
                theirs.log_abs,
                2.0 * logdet_bound(n, WELL_KAPPA),
            )
        })
        .unwrap();
}

/// Small algebraic laws of `LogDet` in quickcheck's style: arbitrary finite non-zero values.
mod logdet_algebra {
    use super::*;

    fn qc() -> QuickCheck {
        QuickCheck::new().tests(common::cases(200) as u64)
    }

    fn usable(v: f64) -> bool {
        v.is_finite() && v != 0.0
    }

    #[test]
    fn product_of_values() {
        fn prop(a: f64, b: f64) -> TestResult {
            let p = a * b;
            if !usable(a) || !usable(b) || !usable(p) || !p.is_normal() {
                return TestResult::discard();
            }
            let lhs = LogDet::from_value(a) * LogDet::from_value(b);
            let rhs = LogDet::from_value(p);
            // ln|a| + ln|b| vs ln|fl(ab)|: each log is within an ulp of its value, the sum adds
            // one rounding, fl(ab) a relative u (absolute u in the log): 4 eps of the magnitudes.
            let tol = 4.0 * f64::EPSILON * (lhs.log_abs.abs() + rhs.log_abs.abs() + 1.0);
            TestResult::from_bool(lhs.sign == rhs.sign && (lhs.log_abs - rhs.log_abs).abs() <= tol)
        }
        qc().quickcheck(prop as fn(f64, f64) -> TestResult);
    }

    #[test]
    fn multiplication_commutes_and_inverse_cancels() {
        fn prop(a: f64, b: f64) -> TestResult {
            if !usable(a) || !usable(b) {
                return TestResult::discard();
            }
            let (x, y) = (LogDet::from_value(a), LogDet::from_value(b));
            let cancel = x * x.inv().unwrap();
            TestResult::from_bool(
                x * y == y * x
                    && x.inv().unwrap().inv().unwrap() == x
                    && cancel == LogDet::one()
                    && x * LogDet::singular() == LogDet::singular()
                    && LogDet::<f64>::singular().inv().is_none(),
            )
        }
        qc().quickcheck(prop as fn(f64, f64) -> TestResult);
    }

    #[test]
    fn scaled_is_repeated_multiplication() {
        fn prop(a: f64, c: f64, n: u8) -> TestResult {
            let n = (n % 12) as usize;
            if !usable(a) || !usable(c) {
                return TestResult::discard();
            }
            let x = LogDet::from_value(a);
            let mut rep = x;
            for _ in 0..n {
                rep = rep * LogDet::from_value(c);
            }
            let s = x.scaled(c, n);
            // n additions of ln|c| vs one product n ln|c|: n + 1 roundings of magnitudes up to
            // |ln|a|| + n |ln|c||.
            let tol = (n as f64 + 2.0) * f64::EPSILON * (x.log_abs.abs() + n as f64 * c.abs().ln().abs() + 1.0);
            TestResult::from_bool(s.sign == rep.sign && (s.log_abs - rep.log_abs).abs() <= tol)
        }
        qc().quickcheck(prop as fn(f64, f64, u8) -> TestResult);
    }

    #[test]
    fn det_round_trips_through_from_value() {
        fn prop(a: f64) -> TestResult {
            if !usable(a) || !a.is_normal() {
                return TestResult::discard();
            }
            let back = LogDet::from_value(a).det();
            // exp(ln|a|): ln is within an ulp, exp amplifies the absolute log error |ln a| eps
            // into a relative one: (|ln|a|| + 2) eps relative.
            let tol = (a.abs().ln().abs() + 2.0) * f64::EPSILON * a.abs();
            TestResult::from_bool((back - a).abs() <= tol && back.signum() == a.signum())
        }
        qc().quickcheck(prop as fn(f64) -> TestResult);
    }
}
