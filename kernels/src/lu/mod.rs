//! Dense LU factorization with partial pivoting: `P A = L U`.
//!
//! One file per operation, as in faer: [`factor`] (in place, returns what it found, never an
//! error), `solve`, `inverse` and `reconstruct`; [`Lu`] is the friendly owner on top that
//! validates input and returns [`Result`].
//!
//! `L` is unit lower triangular, `U` upper triangular, both packed in one row-major buffer; `P` is
//! a row permutation stored as `perm` (row i of `P A` is row `perm[i]` of `A`). Then
//! `det A = (-1)^t prod_i u_ii` for the `t` row interchanges, which is how [`Lu::log_det`] gets its
//! sign without forming the product.

pub mod factor;
mod inverse;
mod reconstruct;
mod solve;

use crate::error::{Error, Result};
use crate::logdet_value::{LogDet, log_det_of_diagonal};
use crate::matrix::{Matrix, MatrixInput, check_square};
use crate::real::Real;

pub use factor::FactorInfo;

/// Which factorization code [`Lu::factor_with`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LuAlgorithm {
    /// The recursive algorithm for n above a small threshold, unblocked below it.
    #[default]
    Auto,
    /// Toledo's recursive LU: nearly every flop in [`Real::gemm_kernel`] (faer's gemm for
    /// f32/f64). Generic over [`Real`].
    Recursive,
    /// The textbook right-looking elimination, one column at a time. Generic over [`Real`].
    Unblocked,
}

/// An LU factorization with partial pivoting, `P A = L U`, of a square matrix.
///
/// # Examples
/// ```
/// use exactflow_kernels::{Lu, Matrix};
/// # fn main() -> exactflow_kernels::Result<()> {
/// let a = Matrix::from_rows(&[[4.0f64, 3.0], [6.0, 3.0]])?;
/// let lu = Lu::factor(&a)?;
/// assert!((lu.log_det().det() - (-6.0)).abs() < 1e-14);
/// let x = lu.solve_vec(&[10.0, 12.0])?; // 4x + 3y = 10, 6x + 3y = 12
/// assert!((x[0] - 1.0).abs() < 1e-14 && (x[1] - 2.0).abs() < 1e-14);
/// let back = lu.reconstruct(); // P^T L U
/// assert!(back.as_slice().iter().zip(a.as_slice()).all(|(p, q)| (p - q).abs() < 1e-14));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Lu<T> {
    n: usize,
    factors: Vec<T>,
    perm: Vec<usize>,
    info: FactorInfo,
}

impl<T: Real> Lu<T> {
    /// Factors a square matrix with the default algorithm.
    ///
    /// # Errors
    /// [`Error::NotSquare`]; [`Error::NonFinite`] naming the first NaN/inf entry. A singular
    /// matrix factors fine (see [`Lu::is_singular`]).
    pub fn factor(a: &(impl MatrixInput<T> + ?Sized)) -> Result<Self> {
        Self::factor_with(a, LuAlgorithm::Auto)
    }

    /// Factors with a chosen algorithm. The input is copied once (the factorization works in
    /// place on that copy) and checked for NaN/inf during the copy.
    ///
    /// # Errors
    /// As [`Lu::factor`].
    pub fn factor_with(a: &(impl MatrixInput<T> + ?Sized), algorithm: LuAlgorithm) -> Result<Self> {
        let n = check_square("lu", a, true)?;
        let mut factors = Vec::with_capacity(n * n);
        match a.row_major() {
            Some(s) => factors.extend_from_slice(s),
            None => {
                for i in 0..n {
                    for j in 0..n {
                        factors.push(a.entry(i, j));
                    }
                }
            }
        }
        if let Some(k) = factors.iter().position(|v| !v.is_finite_value()) {
            return Err(Error::NonFinite {
                op: "lu",
                what: "matrix",
                index: (k / n, k % n),
                value: factors[k].as_f64(),
            });
        }
        Self::factor_owned(factors, n, algorithm)
    }

    /// Factors a row-major `n x n` buffer in place, taking ownership (no copy).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len() != n * n`; [`Error::NonFinite`] for NaN/inf.
    pub fn factor_in_place(data: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<Self> {
        if data.len() != n * n {
            return Err(Error::LengthMismatch {
                op: "lu",
                what: "matrix data",
                expected: n * n,
                found: data.len(),
            });
        }
        if let Some(k) = data.iter().position(|v| !v.is_finite_value()) {
            return Err(Error::NonFinite {
                op: "lu",
                what: "matrix",
                index: (k / n, k % n),
                value: data[k].as_f64(),
            });
        }
        Self::factor_owned(data, n, algorithm)
    }

    fn factor_owned(mut factors: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<Self> {
        let mut perm: Vec<usize> = (0..n).collect();
        let info = match algorithm {
            LuAlgorithm::Unblocked => factor::factor_unblocked(&mut factors, n, &mut perm),
            LuAlgorithm::Recursive => factor::factor_recursive(&mut factors, n, &mut perm),
            LuAlgorithm::Auto if n <= 2 * factor::RECURSION_BASE => {
                factor::factor_unblocked(&mut factors, n, &mut perm)
            }
            LuAlgorithm::Auto => factor::factor_recursive(&mut factors, n, &mut perm),
        };
        // Finite input can still overflow during elimination (entries near f64::MAX); report it
        // rather than hand back inf/NaN factors.
        if let Some(i) = (0..n).find(|&i| !factors[i * n + i].is_finite_value()) {
            return Err(Error::NonFinite {
                op: "lu",
                what: "U factor (overflow during elimination)",
                index: (i, i),
                value: factors[i * n + i].as_f64(),
            });
        }
        Ok(Lu { n, factors, perm, info })
    }

    /// The order n of the factored matrix.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The packed factors: the strict lower triangle is L (unit diagonal implied), the upper
    /// triangle with the diagonal is U; row-major n x n.
    pub fn packed(&self) -> &[T] {
        &self.factors
    }

    /// The row permutation: row i of `P A` is row `perm()[i]` of `A`.
    pub fn perm(&self) -> &[usize] {
        &self.perm
    }

    /// Row interchanges and zero pivots met during the factorization.
    pub fn info(&self) -> FactorInfo {
        self.info
    }

    /// Whether U has an exactly zero pivot (the matrix is singular).
    pub fn is_singular(&self) -> bool {
        (0..self.n).any(|i| self.factors[i * self.n + i] == T::zero())
    }

    /// The diagonal of U.
    pub fn u_diagonal(&self) -> impl Iterator<Item = T> + Clone + '_ {
        (0..self.n).map(move |i| self.factors[i * self.n + i])
    }

    /// `(sign, log|det A|)`: the sign of P times the signs of U's diagonal, and a compensated
    /// sum of `ln|u_ii|`. O(n) once factored.
    pub fn log_det(&self) -> LogDet<T> {
        let d = log_det_of_diagonal(self.u_diagonal());
        if self.info.transpositions % 2 == 1 && !d.is_singular() {
            LogDet {
                sign: -d.sign,
                log_abs: d.log_abs,
            }
        } else {
            d
        }
    }

    /// L as a dense matrix (unit lower triangular).
    pub fn l(&self) -> Matrix<T> {
        let n = self.n;
        Matrix::from_fn(n, n, |i, j| match i.cmp(&j) {
            std::cmp::Ordering::Greater => self.factors[i * n + j],
            std::cmp::Ordering::Equal => T::one(),
            std::cmp::Ordering::Less => T::zero(),
        })
    }

    /// U as a dense matrix (upper triangular).
    pub fn u(&self) -> Matrix<T> {
        let n = self.n;
        Matrix::from_fn(n, n, |i, j| if i <= j { self.factors[i * n + j] } else { T::zero() })
    }

    /// P as a dense permutation matrix (`P A = L U`).
    pub fn p(&self) -> Matrix<T> {
        let n = self.n;
        Matrix::from_fn(n, n, |i, j| if self.perm[i] == j { T::one() } else { T::zero() })
    }

    fn require_nonsingular(&self, op: &'static str) -> Result<()> {
        match (0..self.n).find(|&i| self.factors[i * self.n + i] == T::zero()) {
            Some(column) => Err(Error::Singular { op, column }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Fixed-seed checks of the factorization: sizes straddling the recursion thresholds (16 for
    //! the panel, 32 for the triangular solve) and faer's block boundaries, both algorithms.
    use super::*;
    use autodiff::F1;

    /// splitmix64: a fixed, dependency-free stream of test values.
    struct Stream(u64);

    impl Stream {
        fn next_unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // 53 random bits in [-1, 1).
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn random(n: usize, seed: u64) -> Matrix<f64> {
        let mut s = Stream(seed);
        Matrix::from_fn(n, n, |_, _| s.next_unit())
    }

    /// ||P A - L U||_1 / (n ||A||_1 eps), with L U accumulated in f64 from exact products (the
    /// factors here are f64, so this includes the rounding of the product itself, as LAPACK's
    /// xGET01 does).
    fn backward_error(a: &Matrix<f64>, lu: &Lu<f64>) -> f64 {
        let n = a.rows();
        let lu_prod = lu.lu_product();
        let pa = Matrix::from_fn(n, n, |i, j| a[(lu.perm()[i], j)]);
        let diff = Matrix::from_fn(n, n, |i, j| pa[(i, j)] - lu_prod[(i, j)]);
        diff.norm_1() / (n as f64 * a.norm_1() * f64::EPSILON)
    }

    const SIZES: [usize; 13] = [1, 2, 3, 15, 16, 17, 31, 32, 33, 128, 255, 256, 257];

    #[test]
    fn factors_have_lapack_backward_error_for_both_algorithms() {
        for (k, &n) in SIZES.iter().enumerate() {
            let a = random(n, 1000 + k as u64);
            for alg in [LuAlgorithm::Recursive, LuAlgorithm::Unblocked, LuAlgorithm::Auto] {
                let lu = Lu::factor_with(&a, alg).unwrap();
                // LAPACK's acceptance threshold for xGET01 (TESTING/LIN: THRESH = 30).
                let r = backward_error(&a, &lu);
                assert!(r <= 30.0, "n = {n}, {alg:?}: backward error ratio {r}");
                // Partial pivoting: every multiplier is at most 1 in magnitude.
                let l = lu.l();
                assert!(l.as_slice().iter().all(|v| v.abs() <= 1.0), "n = {n}, {alg:?}: |l| > 1");
                // perm is a permutation.
                let mut seen = vec![false; n];
                lu.perm().iter().for_each(|&p| seen[p] = true);
                assert!(seen.iter().all(|&s| s), "n = {n}: perm is not a permutation");
                // P^T L U rebuilds A (same check, other composition).
                let back = lu.reconstruct();
                let err = back
                    .as_slice()
                    .iter()
                    .zip(a.as_slice())
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f64::max);
                // Entry-wise: |A - P^T L U| <= gamma_n |L||U| <= n * u * n (|l| <= 1, |u| <= growth * max|a|,
                // growth is small for these random matrices); 64 n eps is far above what is seen.
                assert!(
                    err <= 64.0 * n as f64 * f64::EPSILON,
                    "n = {n}, {alg:?}: reconstruct error {err}"
                );
            }
        }
    }

    #[test]
    fn algorithms_agree_on_log_det() {
        for (k, &n) in SIZES.iter().enumerate() {
            let a = random(n, 2000 + k as u64);
            let r = Lu::factor_with(&a, LuAlgorithm::Recursive).unwrap().log_det();
            let u = Lu::factor_with(&a, LuAlgorithm::Unblocked).unwrap().log_det();
            assert_eq!(r.sign, u.sign, "n = {n}");
            // Both are backward stable; for these random matrices (condition numbers of a few
            // hundred to a few thousand) the logs agree to ~1e-13. 1e-10 leaves a wide margin
            // without hiding a wrong pivot (which changes the log by O(1)).
            assert!((r.log_abs - u.log_abs).abs() <= 1e-10, "n = {n}: {r:?} vs {u:?}");
        }
    }

    #[test]
    fn solve_and_inverse_are_accurate() {
        for (k, &n) in [1usize, 2, 3, 17, 33, 64].iter().enumerate() {
            // Diagonally dominant: condition number below 4, so a residual of a few n eps is
            // what a backward-stable solve must give.
            let mut a = random(n, 3000 + k as u64);
            for i in 0..n {
                a[(i, i)] += 2.0 * n as f64;
            }
            let lu = Lu::factor(&a).unwrap();
            let inv = lu.inverse().unwrap();
            let prod = a.matmul(&inv).unwrap();
            let err = (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .map(|(i, j)| (prod[(i, j)] - if i == j { 1.0 } else { 0.0 }).abs())
                .fold(0.0, f64::max);
            // |A A^-1 - I| <= c n u kappa with kappa < 4: 16 n eps.
            assert!(err <= 16.0 * n as f64 * f64::EPSILON, "n = {n}: |A inv - I| = {err}");
            let b: Vec<f64> = (0..n).map(|i| i as f64 - 1.5).collect();
            let x = lu.solve_vec(&b).unwrap();
            for i in 0..n {
                let r: f64 = (0..n).map(|j| a[(i, j)] * x[j]).sum::<f64>() - b[i];
                // Same bound, relative to |A||x| + |b| which is O(n^2) here.
                assert!(
                    r.abs() <= 16.0 * n as f64 * f64::EPSILON * (3.0 * n as f64 + 2.0 * n as f64),
                    "n = {n}"
                );
            }
        }
    }

    #[test]
    fn singular_matrix_gives_sign_zero_and_solve_errors() {
        for alg in [LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            for &(n, col) in &[(1usize, 0usize), (3, 1), (40, 7), (40, 39)] {
                let mut a = random(n, 4000 + n as u64);
                for i in 0..n {
                    a[(i, col)] = 0.0;
                }
                let lu = Lu::factor_with(&a, alg).unwrap();
                assert!(lu.is_singular());
                let ld = lu.log_det();
                assert_eq!(ld.sign, 0.0, "n = {n}, {alg:?}");
                assert_eq!(ld.log_abs, f64::NEG_INFINITY);
                assert_eq!(lu.info().first_zero_pivot, Some(col), "n = {n}, {alg:?}");
                assert!(matches!(lu.inverse(), Err(Error::Singular { .. })));
                assert!(matches!(lu.solve_vec(&vec![1.0; n]), Err(Error::Singular { .. })));
                assert!(matches!(
                    lu.solve(&Matrix::zeros(n, 2)),
                    Err(Error::Singular { op: "Lu::solve", .. })
                ));
            }
        }
        // Two equal rows: elimination subtracts a row from its exact copy.
        let a = Matrix::from_rows(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.5], [1.0, 2.0, 3.0]]).unwrap();
        // (What `crate::log_det` runs; called directly so that `lu` does not import its caller.)
        assert!(Lu::factor(&a).unwrap().log_det().is_singular());
    }

    #[test]
    fn empty_matrix_has_determinant_one() {
        let a = Matrix::<f64>::zeros(0, 0);
        for alg in [LuAlgorithm::Auto, LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            let lu = Lu::factor_with(&a, alg).unwrap();
            assert_eq!(lu.log_det(), LogDet::one());
            assert_eq!(lu.inverse().unwrap().shape(), (0, 0));
            assert_eq!(lu.solve(&Matrix::zeros(0, 3)).unwrap().shape(), (0, 3));
            assert!(lu.solve_vec(&[]).unwrap().is_empty());
        }
    }

    #[test]
    fn known_small_determinants_and_permutation_sign() {
        let a = Matrix::from_rows(&[[0.0, 2.0], [3.0, 0.0]]).unwrap();
        let lu = Lu::factor(&a).unwrap();
        assert_eq!(lu.info().transpositions, 1);
        assert_eq!(lu.perm(), &[1, 0]);
        assert_eq!(lu.log_det().sign, -1.0);
        assert!((lu.log_det().log_abs - 6f64.ln()).abs() < 1e-15);
        // The 3-cycle has determinant +1 (two transpositions).
        let p = Matrix::from_rows(&[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]).unwrap();
        let ld = Lu::factor_with(&p, LuAlgorithm::Recursive).unwrap().log_det();
        assert_eq!((ld.sign, ld.log_abs), (1.0, 0.0));
        // P A = L U and the dense P agrees with perm.
        let b = random(5, 77);
        let lu = Lu::factor(&b).unwrap();
        let pa = lu.p().matmul(&b).unwrap();
        let perm_rows = Matrix::from_fn(5, 5, |i, j| b[(lu.perm()[i], j)]);
        assert_eq!(pa, perm_rows);
    }

    #[test]
    fn caller_mistakes_are_errors() {
        let rect = Matrix::<f64>::zeros(2, 3);
        assert_eq!(
            Lu::factor(&rect).unwrap_err(),
            Error::NotSquare {
                op: "lu",
                rows: 2,
                cols: 3
            }
        );
        let mut a = random(4, 5);
        a[(2, 1)] = f64::NAN;
        a[(3, 0)] = f64::INFINITY;
        match Lu::factor(&a).unwrap_err() {
            Error::NonFinite { index, value, .. } => {
                assert_eq!(index, (2, 1));
                assert!(value.is_nan());
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(matches!(
            Lu::factor_in_place(vec![1.0; 5], 2, LuAlgorithm::Auto),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 5,
                ..
            })
        ));
        assert!(matches!(
            Lu::factor_in_place(vec![1.0, f64::NEG_INFINITY, 0.0, 1.0], 2, LuAlgorithm::Auto),
            Err(Error::NonFinite { index: (0, 1), .. })
        ));
        let lu = Lu::factor(&random(3, 6)).unwrap();
        assert!(matches!(
            lu.solve(&Matrix::zeros(2, 1)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            lu.solve_vec(&[1.0]),
            Err(Error::LengthMismatch {
                expected: 3,
                found: 1,
                ..
            })
        ));
        let mut b = Matrix::zeros(3, 1);
        b[(1, 0)] = f64::NAN;
        assert!(matches!(lu.solve(&b), Err(Error::NonFinite { index: (1, 0), .. })));
        // Finite entries whose elimination overflows: reported, not returned as inf factors.
        let big = Matrix::from_rows(&[[1e308, 1e308], [-1e308, 1e308]]).unwrap();
        assert!(matches!(Lu::factor(&big), Err(Error::NonFinite { index: (1, 1), .. })));
    }

    #[test]
    fn input_layouts_give_the_same_factorization() {
        let a = random(20, 8);
        let ours = Lu::factor(&a).unwrap();
        let na = Lu::factor(&a.to_nalgebra()).unwrap();
        let fa = Lu::factor(&a.to_faer()).unwrap();
        let fr = Lu::factor(&a.to_faer().as_ref()).unwrap();
        assert_eq!(ours.packed(), na.packed());
        assert_eq!(ours.packed(), fa.packed());
        assert_eq!(ours.packed(), fr.packed());
        assert_eq!(ours.perm(), fa.perm());
    }

    /// Jacobi's formula through the dual numbers: d log|det A| / d a_ij = (A^-1)_ji, also when
    /// the seeded entry (or a multiplier) has value zero. Regression test: the elimination used to
    /// skip a multiplier whose *value* is zero, dropping its derivative.
    #[test]
    fn dual_log_det_follows_jacobi_formula_through_zero_entries() {
        // A unit upper triangular matrix: every multiplier has value 0.
        let a = Matrix::from_rows(&[[1.0, 2.0, 0.5], [0.0, 1.0, -1.0], [0.0, 0.0, 2.0]]).unwrap();
        let inv = Lu::factor(&a).unwrap().inverse().unwrap();
        for alg in [LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
            for i in 0..3 {
                for j in 0..3 {
                    let d = Matrix::from_fn(3, 3, |r, c| {
                        if (r, c) == (i, j) {
                            F1::var(a[(r, c)])
                        } else {
                            F1::cst(a[(r, c)])
                        }
                    });
                    let ld = Lu::factor_with(&d, alg).unwrap().log_det();
                    // Small integers and halves: every step is exact.
                    assert_eq!(ld.log_abs.dx, inv[(j, i)], "{alg:?}, entry ({i}, {j})");
                    assert_eq!(ld.sign.dx, 0.0);
                }
            }
        }
        // A larger sparse case through the recursive path (gemm and triangular solve on duals).
        let n = 40;
        let mut b = random(n, 9);
        for i in 0..n {
            for j in 0..n {
                if (i * 7 + j * 3) % 5 == 0 && i != j {
                    b[(i, j)] = 0.0;
                }
            }
            b[(i, i)] += 2.0 * n as f64;
        }
        let inv = Lu::factor(&b).unwrap().inverse().unwrap();
        for &(i, j) in &[(0usize, 0usize), (3, 0), (0, 3), (39, 1), (17, 33)] {
            assert_eq!(b[(i, j)] == 0.0, (i * 7 + j * 3) % 5 == 0 && i != j);
            let d = Matrix::from_fn(n, n, |r, c| {
                if (r, c) == (i, j) {
                    F1::var(b[(r, c)])
                } else {
                    F1::cst(b[(r, c)])
                }
            });
            for alg in [LuAlgorithm::Recursive, LuAlgorithm::Unblocked] {
                let dx = Lu::factor_with(&d, alg).unwrap().log_det().log_abs.dx;
                // Diagonally dominant (condition number < 4): both the tangent and the inverse
                // are accurate to a few n eps of max|A^-1| (~1 / (2n)).
                assert!(
                    (dx - inv[(j, i)]).abs() <= 16.0 * n as f64 * f64::EPSILON,
                    "{alg:?} ({i}, {j})"
                );
            }
        }
    }

    #[test]
    fn dual_solve_differentiates_through_zero_multipliers() {
        // x(t) = A(t)^-1 b with a_10 = t seeded at 0: dx/dt = -A^-1 (dA/dt) x.
        let a = [[2.0, 1.0], [0.0, 4.0]];
        let m = Matrix::from_fn(2, 2, |r, c| {
            if (r, c) == (1, 0) {
                F1::var(a[r][c])
            } else {
                F1::cst(a[r][c])
            }
        });
        let lu = Lu::factor(&m).unwrap();
        let x = lu.solve_vec(&[F1::cst(3.0), F1::cst(4.0)]).unwrap();
        // x = (1, 1); dA x = (0, x0) = (0, 1); A^-1 (0, 1) = (-1/8, 1/4).
        assert_eq!((x[0].x, x[1].x), (1.0, 1.0));
        assert_eq!((x[0].dx, x[1].dx), (0.125, -0.25));
    }
}
