//! Shared helpers of the kernel property tests: case counts, matrix strategies, accurate residuals,
//! the exact integer determinant and ULP distances.
//!
//! Strategies draw sizes first and then buffers of that size, and encode validity in ranges
//! (never filters), so that proptest shrinks within the valid set.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use exactflow_kernels::{Lu, Matrix, Real};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// Number of cases: `PROPTEST_CASES` if set (the deep run), else `default` (the CI default).
///
/// `ProptestConfig::with_cases` would override the environment variable, so it is read here.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A proptest configuration with [`cases`] cases.
///
/// Failing cases are saved under `tests/proptest-regressions/` (next to the test file) and
/// replayed first on later runs.
pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

/// Runs `test` on `cases_per_size` values of `strategy(n)` for every `n` in `sizes`, so that every
/// listed size is covered on every run (proptest's shrinking works within each size).
/// `PROPTEST_CASES`, when set, is the number of cases *per size*.
pub fn for_each_size<S, F>(sizes: &[usize], cases_per_size: u32, strategy: impl Fn(usize) -> S, test: F)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
    F: Fn(usize, S::Value) -> Result<(), TestCaseError>,
{
    for &n in sizes {
        let mut runner = TestRunner::new(Config {
            cases: cases(cases_per_size),
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy(n), |v| test(n, v)) {
            panic!("size {n}: {e}");
        }
    }
}

/// Sizes that straddle the LU's recursion thresholds (16 columns for the panel, 32 rows for the
/// triangular solve) and powers of two.
pub const LU_SIZES: [usize; 14] = [1, 2, 3, 15, 16, 17, 31, 32, 33, 64, 127, 128, 255, 256];

/// Unit roundoff-related constant: the machine epsilon of `T` as f64 (2^-52 for f64, 2^-23 for f32).
pub fn eps<T: Real>() -> f64 {
    T::epsilon().as_f64()
}

/// An `n x n` matrix with independent entries uniform in `[lo, hi)`.
pub fn uniform(n: usize, lo: f64, hi: f64) -> impl Strategy<Value = Matrix<f64>> {
    prop::collection::vec(lo..hi, n * n).prop_map(move |v| Matrix::new(n, n, v).expect("n * n entries"))
}

/// A random permutation of `0..n`.
pub fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

/// Rows of `a` reordered: row i of the result is row `perm[i]` of `a`.
pub fn permute_rows(a: &Matrix<f64>, perm: &[usize]) -> Matrix<f64> {
    Matrix::from_fn(a.rows(), a.cols(), |i, j| a[(perm[i], j)])
}

/// Parity of a permutation (+1 even, -1 odd), by its cycles.
pub fn parity(perm: &[usize]) -> f64 {
    let mut seen = vec![false; perm.len()];
    let mut transpositions = 0;
    for start in 0..perm.len() {
        let mut len = 0;
        let mut k = start;
        while !seen[k] {
            seen[k] = true;
            k = perm[k];
            len += 1;
        }
        if len > 0 {
            transpositions += len - 1;
        }
    }
    if transpositions % 2 == 0 { 1.0 } else { -1.0 }
}

/// A well-conditioned matrix of order `n` with pivoting work to do.
///
/// Column diagonally dominant: diagonal magnitudes in [1, 1.5] with random signs, off-diagonal
/// entries in [-1/(2n), 1/(2n)], so each column's off-diagonal sum is below 1/2. Then
/// ||A||_1 <= 2 and ||A^-1||_1 <= 1 / min_j(|a_jj| - sum_{i != j} |a_ij|) <= 2: the 1-norm
/// condition number is at most [`WELL_KAPPA`] = 4. Its rows are then shuffled, so partial
/// pivoting has to find the dominant entries again.
pub fn well_conditioned(n: usize) -> impl Strategy<Value = Matrix<f64>> {
    let off = 0.5 / n.max(1) as f64;
    (
        prop::collection::vec(-off..off, n * n),
        prop::collection::vec(1.0..1.5f64, n),
        prop::collection::vec(any::<bool>(), n),
        permutation(n),
    )
        .prop_map(move |(offd, diag, neg, perm)| {
            let a = Matrix::from_fn(n, n, |i, j| {
                if i == j {
                    if neg[i] { -diag[i] } else { diag[i] }
                } else {
                    offd[i * n + j]
                }
            });
            permute_rows(&a, &perm)
        })
}

/// The bound on the 1-norm condition number of [`well_conditioned`] matrices.
pub const WELL_KAPPA: f64 = 4.0;

/// Error bound for a computed `log|det X|` of an order-`n` matrix with 1-norm condition number
/// at most `kappa`.
///
/// An LU that meets LAPACK's backward-error threshold (P (X + dX) = L U with
/// ||dX||_1 <= 30 n eps ||X||_1, which `kernels_lu_backward_error` tests) returns the exact
/// log-det of X + dX. To first order log|det(X + dX)| - log|det X| = tr(X^-1 dX), and
/// |tr M| <= n ||M||_1, so the change is at most n kappa 30 n eps. The n logs and their
/// compensated sum add a few eps per term (|ln|u_ii|| is O(1) here): 4 n eps.
pub fn logdet_bound(n: usize, kappa: f64) -> f64 {
    let n = n as f64;
    30.0 * n * n * kappa * f64::EPSILON + 4.0 * n * f64::EPSILON
}

/// `||A||_1 * ||A^-1||_1` with nalgebra's inverse (independent of the kernels under test);
/// infinite if nalgebra finds A singular.
pub fn kappa_1(a: &Matrix<f64>) -> f64 {
    let na = a.to_nalgebra();
    match na.clone().try_inverse() {
        Some(inv) => {
            let inv = Matrix::from_fn(a.rows(), a.cols(), |i, j| inv[(i, j)]);
            a.norm_1() * inv.norm_1()
        }
        None => f64::INFINITY,
    }
}

/// `(s, e)` with `s = fl(a + b)` and `a + b = s + e` exactly (Knuth's TwoSum).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// An accurate dot product (Ogita, Rump and Oishi's Dot2): as if computed in twice the working
/// precision, then rounded. The error products are exact through fma.
pub fn dot2(terms: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for (a, b) in terms {
        let p = a * b;
        let pe = a.mul_add(b, -p);
        let (t, se) = two_sum(s, p);
        s = t;
        c += se + pe;
    }
    s + c
}

/// LAPACK's LU test ratio (xGET01): `||P A - L U||_1 / (n ||A||_1 eps_T)`.
///
/// The residual is computed from the factors converted to f64 with [`dot2`], in effect in twice
/// the f64 precision: it measures the factorization's error, not the rounding of the check
/// itself. 0 for the empty matrix or a zero matrix.
pub fn lu_ratio<T: Real>(a: &Matrix<T>, lu: &Lu<T>) -> f64 {
    let n = a.rows();
    if n == 0 {
        return 0.0;
    }
    let f: Vec<f64> = lu.packed().iter().map(|v| v.as_f64()).collect();
    let a64 = a.to_f64();
    let perm = lu.perm();
    let mut col_sums = vec![0.0f64; n];
    for i in 0..n {
        for j in 0..n {
            // (L U)[i, j] = sum_{p < min(i, j + 1)} L[i, p] U[p, j] + (U[i, j] if i <= j), L[i, i] = 1;
            // minus (P A)[i, j], all in one accurate sum.
            let k = i.min(j + 1);
            let products = (0..k).map(|p| (f[i * n + p], f[p * n + j]));
            let diag = if i <= j { Some((f[i * n + j], 1.0)) } else { None };
            let r = dot2(products.chain(diag).chain(std::iter::once((a64[(perm[i], j)], -1.0))));
            col_sums[j] += r.abs();
        }
    }
    let num = col_sums.into_iter().fold(0.0, f64::max);
    let den = n as f64 * a64.norm_1() * eps::<T>();
    if num == 0.0 { 0.0 } else { num / den }
}

/// Exact determinant of an integer matrix by fraction-free (Bareiss) elimination in i128, with
/// row pivoting on zeros. Every intermediate is a minor of the (row-permuted) matrix, and every
/// division is exact. Panics on i128 overflow (the strategies are sized so that it cannot
/// happen: see `exact_oracle_params`).
pub fn bareiss_det(a: &[i64], n: usize) -> i128 {
    assert_eq!(a.len(), n * n);
    if n == 0 {
        return 1;
    }
    let mut m: Vec<i128> = a.iter().map(|&v| v as i128).collect();
    let mut sign = 1i128;
    let mut prev = 1i128;
    for k in 0..n - 1 {
        if m[k * n + k] == 0 {
            match (k + 1..n).find(|&r| m[r * n + k] != 0) {
                Some(r) => {
                    for j in 0..n {
                        m.swap(k * n + j, r * n + j);
                    }
                    sign = -sign;
                }
                None => return 0,
            }
        }
        let pivot = m[k * n + k];
        for i in k + 1..n {
            for j in k + 1..n {
                let x = pivot
                    .checked_mul(m[i * n + j])
                    .and_then(|p| m[i * n + k].checked_mul(m[k * n + j]).and_then(|q| p.checked_sub(q)))
                    .expect("Bareiss: i128 overflow (entry ranges too wide for this size)");
                debug_assert_eq!(x % prev, 0, "Bareiss division must be exact");
                m[i * n + j] = x / prev;
            }
            m[i * n + k] = 0;
        }
        prev = pivot;
    }
    sign * m[n * n - 1]
}

/// Distance in units in the last place between two f64, on bit patterns ordered like the numbers:
/// -0 and +0 coincide, the smallest subnormal is one ulp above zero and +inf one ulp above MAX.
/// NaN is at distance 0 from NaN and `u64::MAX` from anything else.
pub fn ulps_f64(a: f64, b: f64) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() { 0 } else { u64::MAX };
    }
    let key = |v: f64| {
        let bits = v.to_bits() as i64;
        if bits < 0 { -(bits & i64::MAX) } else { bits }
    };
    (key(a) as i128 - key(b) as i128).unsigned_abs() as u64
}

/// [`ulps_f64`] for f32.
pub fn ulps_f32(a: f32, b: f32) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() { 0 } else { u64::MAX };
    }
    let key = |v: f32| {
        let bits = v.to_bits() as i32;
        if bits < 0 {
            -((bits & i32::MAX) as i64)
        } else {
            bits as i64
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// `|a - b| <= tol`, as a proptest assertion with a message.
pub fn close(what: &str, a: f64, b: f64, tol: f64) -> Result<(), TestCaseError> {
    if (a - b).abs() <= tol {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "{what}: {a} vs {b} differ by {:e} > {tol:e}",
            (a - b).abs()
        )))
    }
}
pub mod dd;
