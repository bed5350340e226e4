//! Caller mistakes return the right `Error` variant, naming the argument or the index, and never
//! panic: non-square matrices, NaN/inf at a given index (the error names the first one in
//! row-major order), length mismatches in the coupling kernels and shape mismatches in gemm and
//! the LU solve.

mod common;

use common::{config, uniform};
use exactflow_kernels::coupling::{
    additive_forward, additive_inverse, additive_on, affine_forward, affine_forward_on, affine_inverse,
    affine_inverse_on,
};
use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::simd::Backend;
use exactflow_kernels::{
    Error, LogDetMethod, Lu, LuAlgorithm, Matrix, log_det, log_det_diagonal, log_det_lower, log_det_triangular,
    log_det_upper, log_det_with,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn expect_not_square<T: std::fmt::Debug>(r: Result<T, Error>, rows: usize, cols: usize) -> Result<(), TestCaseError> {
    match r {
        Err(Error::NotSquare { rows: r, cols: c, .. }) if (r, c) == (rows, cols) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "expected NotSquare {rows}x{cols}, got {other:?}"
        ))),
    }
}

fn expect_non_finite<T: std::fmt::Debug>(
    r: Result<T, Error>,
    at: (usize, usize),
    value: f64,
) -> Result<(), TestCaseError> {
    match r {
        Err(Error::NonFinite { index, value: v, .. })
            if index == at && (v == value || (v.is_nan() && value.is_nan())) =>
        {
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "expected NonFinite {value} at {at:?}, got {other:?}"
        ))),
    }
}

fn expect_length<T: std::fmt::Debug>(
    r: Result<T, Error>,
    what: &str,
    expected: usize,
    found: usize,
) -> Result<(), TestCaseError> {
    match r {
        Err(Error::LengthMismatch {
            what: w,
            expected: e,
            found: f,
            ..
        }) if w == what && e == expected && f == found => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "expected LengthMismatch on {what} ({found} for {expected}), got {other:?}"
        ))),
    }
}

const BAD: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

proptest! {
    #![proptest_config(config(128))]

    /// Every square-only entry point rejects a rectangular matrix, in every input layout.
    #[test]
    fn rectangular_matrices_are_not_square(rows in 0usize..8, extra in 1usize..6, wide in any::<bool>()) {
        let (r, c) = if wide { (rows, rows + extra) } else { (rows + extra, rows) };
        let m = Matrix::<f64>::zeros(r, c);
        expect_not_square(log_det(&m), r, c)?;
        for method in [LogDetMethod::Auto, LogDetMethod::Lu, LogDetMethod::Triangular] {
            expect_not_square(log_det_with(&m, method), r, c)?;
        }
        for alg in [LuAlgorithm::Auto, LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            expect_not_square(Lu::factor_with(&m, alg), r, c)?;
        }
        expect_not_square(log_det_lower(&m), r, c)?;
        expect_not_square(log_det_upper(&m), r, c)?;
        expect_not_square(Lu::factor(&m.to_nalgebra()), r, c)?;
        expect_not_square(Lu::factor(&m.to_faer()), r, c)?;
        expect_not_square(log_det(&m.to_faer().as_ref()), r, c)?;
        expect_not_square(log_det(&m.view()), r, c)?;
    }

    /// A NaN or infinity at (i, j), and possibly a second one later in row-major order: the error
    /// names (i, j) and its value, for every entry point and input layout.
    #[test]
    fn non_finite_entries_are_named_by_index(
        (m, i, j, bad, later) in (1usize..=40).prop_flat_map(|n| (
            uniform(n, -1.0, 1.0), 0..n, 0..n, 0..3usize, prop::option::of(0..n * n),
        ))
    ) {
        let n = m.rows();
        let mut a = m.clone();
        let first = i * n + j;
        if let Some(k) = later {
            // A second bad entry at or after the first (k mapped into first..n*n).
            let k = first + k % (n * n - first);
            a.as_mut_slice()[k] = f64::NAN;
        }
        a[(i, j)] = BAD[bad];
        let v = BAD[bad];
        expect_non_finite(log_det(&a), (i, j), v)?;
        for method in [LogDetMethod::Auto, LogDetMethod::Lu] {
            expect_non_finite(log_det_with(&a, method), (i, j), v)?;
        }
        for alg in [LuAlgorithm::Auto, LuAlgorithm::Faer, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            expect_non_finite(Lu::factor_with(&a, alg), (i, j), v)?;
            expect_non_finite(Lu::factor_in_place(a.as_slice().to_vec(), n, alg), (i, j), v)?;
        }
        expect_non_finite(Lu::factor(&a.to_nalgebra()), (i, j), v)?;
        expect_non_finite(Lu::factor(&a.to_faer()), (i, j), v)?;
        expect_non_finite(log_det(&a.view()), (i, j), v)?;
        // Transposed view: entry (i, j) of A is (j, i) of the view; the first bad entry of the
        // view in its own row-major order is reported.
        let t = a.transpose();
        let first_t = t.first_non_finite().map(|(ix, _)| ix).unwrap();
        prop_assert!(matches!(log_det(&a.view().t()), Err(Error::NonFinite { index, .. }) if index == first_t), "unexpected result");

        // The diagonal and triangular kernels read the diagonal: a bad diagonal entry d_k is (k, k).
        let mut diag: Vec<f64> = (0..n).map(|k| m[(k, k)]).collect();
        diag[i] = v;
        expect_non_finite(log_det_diagonal(&diag), (i, i), v)?;
        let mut tri = Matrix::from_fn(n, n, |r, c| if r >= c { m[(r, c)] } else { 0.0 });
        tri[(i, i)] = v;
        expect_non_finite(log_det_lower(&tri), (i, i), v)?;
        expect_non_finite(log_det_triangular(&tri.transpose(), exactflow_kernels::Triangle::Upper), (i, i), v)?;
        expect_non_finite(log_det_with(&tri, LogDetMethod::Triangular), (i, i), v)?;

        // The right-hand side of a solve.
        let lu = Lu::factor(&Matrix::<f64>::identity(n)).unwrap();
        let mut b = Matrix::zeros(n, 2);
        b[(i, j % 2)] = v;
        expect_non_finite(lu.solve(&b), (i, j % 2), v)?;
    }

    /// Each coupling argument of the wrong length is named, whatever the backend.
    #[test]
    fn coupling_length_mismatches(
        d in 1usize..=12,
        n in 1usize..=6,
        which in 0usize..4,
        delta in 1usize..5,
        longer in any::<bool>(),
    ) {
        let good = n * d;
        let bad = if longer { good + delta } else { good.saturating_sub(delta) };
        // bad != good: good >= 1, and delta >= 1 either way.
        let len = |k: usize| if k == which { bad } else { good };
        let (x, s, t) = (vec![0.5f64; len(0)], vec![0.1f64; len(1)], vec![0.2f64; len(2)]);
        let mut out = vec![0.0f64; len(3)];
        let mut ld = vec![0.0f64; n];
        let fwd_names = ["x", "s", "t", "y"];
        let inv_names = ["y", "s", "t", "x"];
        expect_length(affine_forward(d, &x, &s, &t, &mut out, &mut ld), fwd_names[which], good, bad)?;
        expect_length(affine_inverse(d, &x, &s, &t, &mut out, &mut ld), inv_names[which], good, bad)?;
        for b in [Backend::Scalar, Backend::Avx2, Backend::Avx512] {
            expect_length(affine_forward_on(b, d, &x, &s, &t, &mut out, &mut ld), fwd_names[which], good, bad)?;
            expect_length(affine_inverse_on(b, d, &x, &s, &t, &mut out, &mut ld), inv_names[which], good, bad)?;
        }
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let sf: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        let tf: Vec<f32> = t.iter().map(|&v| v as f32).collect();
        let mut outf = vec![0.0f32; len(3)];
        let mut ldf = vec![0.0f32; n];
        expect_length(affine_forward(d, &xf, &sf, &tf, &mut outf, &mut ldf), fwd_names[which], good, bad)?;
        // Additive: the output's length is the reference, the inputs are named.
        if which < 3 && which != 1 {
            let a = if which == 0 { &x } else { &t };
            let other = vec![0.0f64; good];
            let mut o = vec![0.0f64; good];
            let (xa, ta) = if which == 0 { (a, &other) } else { (&other, a) };
            expect_length(additive_forward(xa, ta, &mut o), if which == 0 { "x" } else { "t" }, good, bad)?;
            expect_length(additive_inverse(xa, ta, &mut o), if which == 0 { "y" } else { "t" }, good, bad)?;
            for b in [Backend::Scalar, Backend::Avx2, Backend::Avx512] {
                expect_length(additive_on(b, true, xa, ta, &mut o), if which == 0 { "input" } else { "t" }, good, bad)?;
            }
        }
    }

    /// The row count is log_det's length: a block that is not `log_det.len()` rows of width d is
    /// a mismatch on the first block argument; width 0 with rows present is an invalid argument.
    #[test]
    fn coupling_row_count_and_zero_width(d in 1usize..=8, n in 1usize..=6, extra_rows in 1usize..3) {
        let v = vec![0.0f64; n * d];
        let mut out = vec![0.0f64; n * d];
        let mut ld = vec![0.0f64; n + extra_rows];
        expect_length(affine_forward(d, &v, &v, &v, &mut out, &mut ld), "x", (n + extra_rows) * d, n * d)?;
        let mut ld = vec![0.0f64; n];
        prop_assert!(matches!(
            affine_forward(0, &[], &[], &[], &mut [], &mut ld),
            Err(Error::InvalidArgument { .. })
        ), "unexpected result");
    }

    /// gemm with disagreeing inner dimensions or a wrongly shaped C is a shape mismatch.
    #[test]
    fn gemm_shape_mismatches(m in 1usize..6, k in 1usize..6, n in 1usize..6, dk in 1usize..3, dm in 0usize..2, dn in 0usize..2) {
        let a = vec![1.0f64; m * k];
        let b = vec![1.0f64; (k + dk) * n];
        let mut c = vec![0.0f64; m * n];
        let r = gemm(
            1.0,
            MatSlice::new(&a, m, k).unwrap(),
            MatSlice::new(&b, k + dk, n).unwrap(),
            0.0,
            MatSliceMut::new(&mut c, m, n).unwrap(),
            Parallelism::Sequential,
        );
        prop_assert!(matches!(r, Err(Error::ShapeMismatch { op: "gemm", .. })), "{:?}", r);
        let b = vec![1.0f64; k * n];
        let mut c = vec![0.0f64; (m + dm) * (n + dn + 1 - dm.min(1))];
        let (cr, cc) = (m + dm, n + dn + 1 - dm.min(1)); // never exactly m x n
        let r = gemm(
            1.0,
            MatSlice::new(&a, m, k).unwrap(),
            MatSlice::new(&b, k, n).unwrap(),
            0.0,
            MatSliceMut::new(&mut c, cr, cc).unwrap(),
            Parallelism::Rayon(0),
        );
        prop_assert!(
            matches!(&r, Err(Error::ShapeMismatch { expected, found, .. }) if *expected == vec![m, n] && *found == vec![cr, cc]),
            "{:?}", r
        );
        // The same through the generic path (dual numbers).
        let ad: Vec<exactflow_kernels::F1> = a.iter().map(|&v| exactflow_kernels::F1::cst(v)).collect();
        let bd: Vec<exactflow_kernels::F1> = b.iter().map(|&v| exactflow_kernels::F1::cst(v)).collect();
        let mut cd = vec![exactflow_kernels::F1::cst(0.0); cr * cc];
        let r = gemm(
            exactflow_kernels::F1::cst(1.0),
            MatSlice::new(&ad, m, k).unwrap(),
            MatSlice::new(&bd, k, n).unwrap().t().t(),
            exactflow_kernels::F1::cst(0.0),
            MatSliceMut::new(&mut cd, cr, cc).unwrap(),
            Parallelism::Sequential,
        );
        prop_assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "unexpected result");
        // Views whose data is too short are length mismatches.
        prop_assert!(matches!(MatSlice::new(&a, m, k + 1), Err(Error::LengthMismatch { .. })), "unexpected result");
    }

    /// Solving with the wrong number of rows, and with a singular matrix.
    #[test]
    fn solve_shapes_and_singularity(n in 1usize..=20, wrong in 1usize..4, col in 0usize..20) {
        let a = Matrix::<f64>::identity(n);
        let lu = Lu::factor(&a).unwrap();
        prop_assert!(matches!(lu.solve(&Matrix::zeros(n + wrong, 1)), Err(Error::ShapeMismatch { .. })), "unexpected result");
        expect_length(lu.solve_vec(&vec![0.0; n + wrong]), "right-hand side", n, n + wrong)?;
        let col = col % n;
        let mut s = a.clone();
        s[(col, col)] = 0.0;
        let lu = Lu::factor(&s).unwrap();
        prop_assert!(matches!(lu.solve_vec(&vec![1.0; n]), Err(Error::Singular { column, .. }) if column == col), "unexpected result");
        prop_assert!(matches!(lu.inverse(), Err(Error::Singular { column, .. }) if column == col), "unexpected result");
        prop_assert!(log_det(&s).unwrap().is_singular());
    }
}

#[test]
fn empty_inputs_are_not_errors_where_they_make_sense() {
    let e = Matrix::<f64>::zeros(0, 0);
    assert_eq!(log_det(&e).unwrap().sign, 1.0);
    assert_eq!(log_det_diagonal::<f64>(&[]).unwrap().log_abs, 0.0);
    affine_forward::<f32>(3, &[], &[], &[], &mut [], &mut []).unwrap();
    additive_forward::<f64>(&[], &[], &mut []).unwrap();
    assert!(matches!(
        Matrix::new(2, 2, vec![1.0f64; 3]),
        Err(Error::LengthMismatch {
            expected: 4,
            found: 3,
            ..
        })
    ));
}
