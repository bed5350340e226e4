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
///
/// All of them compute the same thing, `P A = L U` with partial pivoting (the pivot of largest
/// magnitude in its column, the first of equal ones), to within rounding: the factors of two
/// algorithms can differ in the last bits, and a near-tie between two candidate pivots can then
/// be broken differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LuAlgorithm {
    /// For n <= 32 the unblocked elimination; above, [`LuAlgorithm::Faer`] for `f32`/`f64` and
    /// [`LuAlgorithm::Recursive`] for the other scalars (dual numbers, intervals, ...).
    #[default]
    Auto,
    /// faer's `lu_in_place` ([`Real::lu_kernel`]; one thread) for the scalar types that have it,
    /// `f32` and `f64`; the recursive algorithm for the others. faer does not stop at a zero
    /// pivot, so a matrix on which it leaves NaN or infinity on U's diagonal (an exactly zero
    /// pivot before the last column, a pivot whose reciprocal overflows, an overflow in the
    /// updates) is factored again by the recursive algorithm, which reports such matrices as
    /// before: a singular matrix factors with its first zero pivot recorded, an overflow is an
    /// error.
    Faer,
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
    /// place on that copy) and checked for NaN/inf. faer's LU (f32/f64, see [`LuAlgorithm`])
    /// works on a column-major copy; its factors are transposed into the row-major layout of
    /// [`Lu::packed`] afterwards.
    ///
    /// # Errors
    /// As [`Lu::factor`].
    pub fn factor_with(a: &(impl MatrixInput<T> + ?Sized), algorithm: LuAlgorithm) -> Result<Self> {
        let n = check_square("lu", a, true)?;
        if let Some(native) = NativeLu::try_factor(n, algorithm, |buf| copy_transposed(a, n, buf)) {
            return Ok(native.into_lu());
        }
        let mut factors = Vec::with_capacity(n * n);
        copy_rows(a, n, &mut factors);
        check_finite(&factors, n)?;
        Self::factor_generic(factors, n, algorithm)
    }

    /// Factors a row-major `n x n` buffer in place, taking ownership. (faer's LU, for f32/f64
    /// above n = 32, needs a column-major copy; the generic algorithms copy nothing.)
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len() != n * n`; [`Error::NonFinite`] for NaN/inf.
    pub fn factor_in_place(data: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<Self> {
        check_length(&data, n)?;
        if let Some(native) = NativeLu::try_factor(n, algorithm, |buf| transpose_into(&data, n, buf)) {
            return Ok(native.into_lu());
        }
        check_finite(&data, n)?;
        Self::factor_generic(data, n, algorithm)
    }

    /// `log|det A|` by `algorithm`, without building the `Lu`. On the generic paths this is
    /// `Lu::factor_with(a, algorithm)?.log_det()`, bit for bit. On faer's path the determinant
    /// is taken from the factorization of `A^T` when `a` is row-major, since
    /// `det(A^T) = det(A)`: a row-major buffer read as column-major *is* `A^T`, so one plain
    /// copy replaces the transposition into column-major order (at n = 1024 and 2048 the
    /// transposition cost about as much as the 1.1x target of issue 15 allowed; BENCHMARKS.md,
    /// "Dense LU on AVX-512"). Partial pivoting on `A^T` is backward stable like on `A`, so the
    /// result is as accurate, though not the same bits as [`Lu::factor`]'s.
    pub(crate) fn log_det_of(a: &(impl MatrixInput<T> + ?Sized), algorithm: LuAlgorithm) -> Result<LogDet<T>> {
        let n = check_square("lu", a, true)?;
        let fill = |buf: &mut Vec<T>| match a.row_major() {
            Some(rows) => buf.extend_from_slice(rows),
            None => copy_transposed(a, n, buf),
        };
        if let Some(native) = NativeLu::try_factor(n, algorithm, fill) {
            return Ok(native.log_det());
        }
        let mut factors = Vec::with_capacity(n * n);
        copy_rows(a, n, &mut factors);
        check_finite(&factors, n)?;
        Ok(Self::factor_generic(factors, n, algorithm)?.log_det())
    }

    /// `log|det A|` of the row-major `data`, as [`Lu::log_det_of`]: on faer's path the
    /// factorization of `A^T` (a plain copy of `data`, which the generic code falls back to if
    /// faer's factors are not finite); on the generic paths `data` is factored in place.
    pub(crate) fn log_det_of_owned(data: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<LogDet<T>> {
        check_length(&data, n)?;
        if let Some(native) = NativeLu::try_factor(n, algorithm, |buf| buf.extend_from_slice(&data)) {
            return Ok(native.log_det());
        }
        check_finite(&data, n)?;
        Ok(Self::factor_generic(data, n, algorithm)?.log_det())
    }

    /// Factors the finite row-major `factors` in place with the generic code `algorithm` stands
    /// for (`Faer` and `Auto` above n = 32: the recursive algorithm), then checks U's diagonal.
    fn factor_generic(mut factors: Vec<T>, n: usize, algorithm: LuAlgorithm) -> Result<Self> {
        let mut perm: Vec<usize> = (0..n).collect();
        let info = match algorithm {
            LuAlgorithm::Unblocked => factor::factor_unblocked(&mut factors, n, &mut perm),
            LuAlgorithm::Recursive | LuAlgorithm::Faer => factor::factor_recursive(&mut factors, n, &mut perm),
            LuAlgorithm::Auto if n <= AUTO_UNBLOCKED_MAX => factor::factor_unblocked(&mut factors, n, &mut perm),
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
        signed_log_det(self.u_diagonal(), self.info.transpositions)
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

/// Up to this order `LuAlgorithm::Auto` runs the unblocked elimination (faster there than any
/// blocked code, faer's included; measured in BENCHMARKS.md).
const AUTO_UNBLOCKED_MAX: usize = 2 * factor::RECURSION_BASE;

/// `(sign, log|det|)` from U's diagonal and the number of row interchanges.
fn signed_log_det<T: Real>(diagonal: impl Iterator<Item = T> + Clone, transpositions: usize) -> LogDet<T> {
    let d = log_det_of_diagonal(diagonal);
    if transpositions % 2 == 1 && !d.is_singular() {
        LogDet {
            sign: -d.sign,
            log_abs: d.log_abs,
        }
    } else {
        d
    }
}

/// faer's factorization (for f32/f64), kept in faer's column-major layout.
struct NativeLu<T> {
    n: usize,
    /// The packed factors, column-major: entry (i, j) at `start + j * n + i`.
    col_major: Vec<T>,
    /// Where the matrix starts in `col_major`: the first entry on a 64-byte boundary.
    start: usize,
    perm: Vec<usize>,
    info: FactorInfo,
}

impl<T: Real> NativeLu<T> {
    /// Runs faer's LU when `algorithm` asks for it at this order and the scalar type has it.
    /// `fill` writes the input, column-major, into an empty buffer.
    ///
    /// `None` sends the caller to the generic code: no faer LU for this scalar or order, a
    /// non-finite input (the generic path reports its first entry in row-major order), or
    /// factors with NaN/inf on U's diagonal. The latter covers every way faer's code can fail
    /// (see [`LuAlgorithm::Faer`]): a NaN or infinity anywhere in the trailing matrix ends up on
    /// the diagonal (an infinity is the largest candidate pivot of its column; a NaN, never
    /// chosen, turns its whole row into NaN through its multiplier, and every row is a pivot row
    /// once), and an overflow in U's off-diagonal part reaches the trailing matrix through the
    /// next update. So a finite diagonal means finite factors; and as a zero pivot before the
    /// last column gives NaN multipliers (0 * 1/0), a finite diagonal can be zero only in its
    /// last entry.
    fn try_factor(n: usize, algorithm: LuAlgorithm, fill: impl FnOnce(&mut Vec<T>)) -> Option<Self> {
        let kernel = match algorithm {
            LuAlgorithm::Faer => T::lu_kernel()?,
            LuAlgorithm::Auto if n > AUTO_UNBLOCKED_MAX => T::lu_kernel()?,
            _ => return None,
        };
        // faer's kernels load whole cache lines: a matrix that starts 16 bytes into one (where
        // the allocator puts a large `Vec`) makes every column's loads straddle two. So the
        // matrix starts at the buffer's first 64-byte boundary, as faer's own `Mat` does.
        let mut col_major: Vec<T> = Vec::with_capacity(n * n + ALIGN_SLACK);
        let start = match col_major.as_ptr().align_offset(64) {
            k if k <= ALIGN_SLACK => k,
            _ => 0,
        };
        col_major.resize(start, T::zero());
        fill(&mut col_major);
        let a = &mut col_major[start..];
        if !a.iter().all(|v| v.is_finite_value()) {
            return None;
        }
        let mut perm: Vec<usize> = (0..n).collect();
        let transpositions = kernel(a, n, &mut perm);
        let diagonal = |i: usize| a[i * n + i];
        if !(0..n).all(|i| diagonal(i).is_finite_value()) {
            return None;
        }
        let info = FactorInfo {
            transpositions,
            first_zero_pivot: (0..n).find(|&i| diagonal(i) == T::zero()),
        };
        Some(NativeLu {
            n,
            col_major,
            start,
            perm,
            info,
        })
    }

    fn log_det(&self) -> LogDet<T> {
        let n = self.n;
        let a = &self.col_major[self.start..];
        signed_log_det((0..n).map(|i| a[i * n + i]), self.info.transpositions)
    }

    /// The [`Lu`], with the factors transposed (in place) into its row-major layout.
    fn into_lu(self) -> Lu<T> {
        let NativeLu {
            n,
            mut col_major,
            start,
            perm,
            info,
        } = self;
        col_major.drain(..start);
        transpose_square_in_place(&mut col_major, n);
        Lu {
            n,
            factors: col_major,
            perm,
            info,
        }
    }
}

/// Elements reserved before faer's working matrix so that it can start on a 64-byte boundary
/// (16 f32 or 8 f64 at most are needed).
const ALIGN_SLACK: usize = 16;

/// Side of the square tiles the transpositions work on: two 32 x 32 tiles of f64 (16 KiB) stay
/// in L1.
const TILE: usize = 32;

/// Appends the transpose of the row-major `n x n` `src` to `dst`, tile by tile.
fn transpose_into<T: Copy>(src: &[T], n: usize, dst: &mut Vec<T>) {
    let Some(&first) = src.first() else { return };
    let base = dst.len();
    dst.resize(base + n * n, first);
    let out = &mut dst[base..];
    for i0 in (0..n).step_by(TILE) {
        for j0 in (0..n).step_by(TILE) {
            for i in i0..(i0 + TILE).min(n) {
                for j in j0..(j0 + TILE).min(n) {
                    out[j * n + i] = src[i * n + j];
                }
            }
        }
    }
}

/// Transposes the `n x n` buffer in place, tile by tile.
fn transpose_square_in_place<T>(a: &mut [T], n: usize) {
    for i0 in (0..n).step_by(TILE) {
        for j0 in (i0..n).step_by(TILE) {
            for i in i0..(i0 + TILE).min(n) {
                // In the diagonal tile only the entries above the diagonal, each pair once.
                let j_start = if j0 == i0 { i + 1 } else { j0 };
                for j in j_start..(j0 + TILE).min(n) {
                    a.swap(i * n + j, j * n + i);
                }
            }
        }
    }
}

/// Appends the entries of the square `a` (order n) to `buf` column by column.
fn copy_transposed<T: Real>(a: &(impl MatrixInput<T> + ?Sized), n: usize, buf: &mut Vec<T>) {
    match a.row_major() {
        Some(s) => transpose_into(s, n, buf),
        None => {
            for j in 0..n {
                for i in 0..n {
                    buf.push(a.entry(i, j));
                }
            }
        }
    }
}

fn check_length<T>(data: &[T], n: usize) -> Result<()> {
    if data.len() != n * n {
        return Err(Error::LengthMismatch {
            op: "lu",
            what: "matrix data",
            expected: n * n,
            found: data.len(),
        });
    }
    Ok(())
}

/// [`Error::NonFinite`] naming the first NaN/inf entry of the row-major `n x n` `data`.
fn check_finite<T: Real>(data: &[T], n: usize) -> Result<()> {
    match data.iter().position(|v| !v.is_finite_value()) {
        Some(k) => Err(Error::NonFinite {
            op: "lu",
            what: "matrix",
            index: (k / n, k % n),
            value: data[k].as_f64(),
        }),
        None => Ok(()),
    }
}

/// Appends the rows of the square `a` (order n) to `buf`, row-major.
fn copy_rows<T: Real>(a: &(impl MatrixInput<T> + ?Sized), n: usize, buf: &mut Vec<T>) {
    match a.row_major() {
        Some(s) => buf.extend_from_slice(s),
        None => {
            for i in 0..n {
                for j in 0..n {
                    buf.push(a.entry(i, j));
                }
            }
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
            for alg in [
                LuAlgorithm::Recursive,
                LuAlgorithm::Unblocked,
                LuAlgorithm::Auto,
                LuAlgorithm::Faer,
            ] {
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
        // Faer meets the zero pivots of columns 1 and 7 before the last column, leaves NaN behind
        // and hands over to the recursive code; column 39 of 40 (and n = 1) it factors itself.
        for alg in [LuAlgorithm::Recursive, LuAlgorithm::Unblocked, LuAlgorithm::Faer] {
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
        for alg in [
            LuAlgorithm::Auto,
            LuAlgorithm::Recursive,
            LuAlgorithm::Unblocked,
            LuAlgorithm::Faer,
        ] {
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

    /// `||P A - L U||_1` computed in f64 from the factors (exact products of f32 factors; for
    /// f64 factors plus the rounding of that product, bounded by `gamma_n ||  |L| |U| ||_1` and
    /// added so that the result bounds the true residual).
    fn residual_norm1<T: Real>(a: &Matrix<f64>, lu: &Lu<T>) -> f64 {
        let n = a.rows();
        let f: Vec<f64> = lu.packed().iter().map(|v| v.as_f64()).collect();
        let (l, u) = (
            |i: usize, p: usize| if i == p { 1.0 } else { f[i * n + p] },
            |p: usize, j: usize| f[p * n + j],
        );
        let gamma = n as f64 * f64::EPSILON / (1.0 - n as f64 * f64::EPSILON);
        (0..n)
            .map(|j| {
                (0..n)
                    .map(|i| {
                        let (mut acc, mut abs) = (0.0, 0.0);
                        for p in 0..=i.min(j) {
                            acc += l(i, p) * u(p, j);
                            abs += (l(i, p) * u(p, j)).abs();
                        }
                        (a[(lu.perm()[i], j)] - acc).abs() + gamma * abs
                    })
                    .sum::<f64>()
            })
            .fold(0.0, f64::max)
    }

    /// faer's LU (the f32/f64 fast path) against the generic recursive code on the same matrix.
    ///
    /// Pivots may differ where rounding breaks a near-tie differently, so the factors are not
    /// compared entry by entry; what must agree is what both promise. Each is a permutation with
    /// `(-1)^transpositions` its sign, `|l_ij| <= 1`, and `L U = P (A + E)`. Then
    /// `ln|det(L U)| - ln|det A| = ln|det(I + X)|` with `X = A^-1 P^T E`, whose eigenvalues have
    /// modulus at most `x = ||A^-1||_1 ||E||_1`; for `x <= 1/2` each `|ln|1 + lambda||` is at
    /// most `-ln(1 - x) <= 2x` and `det(I + X) > 0`. So the signs agree exactly and the logs
    /// within `2 n x` for each factorization, plus the rounding of the log sums (each `ln|u_ii|`
    /// within 2 ulps, the compensated sum within 2 ulps of its total: at most
    /// `4 eps (sum |ln|u_ii|| + n)`). `||E||_1` is measured ([`residual_norm1`]); `||A^-1||_1`
    /// from the f64 inverse, whose relative error (about kappa eps_f64 < 1e-10 here) is far
    /// below the slack of the eigenvalue bound.
    fn check_fast_path_agrees<T: Real>(a64: &Matrix<f64>) {
        let n = a64.rows();
        let a = a64.map(T::lit);
        let exact = a.map(|v| v.as_f64()); // the matrix both factor, in f64
        let inv_norm = Lu::factor(&exact).unwrap().inverse().unwrap().norm_1();
        let mut bound = 0.0;
        let mut lds = Vec::new();
        for alg in [LuAlgorithm::Faer, LuAlgorithm::Recursive] {
            let lu = Lu::factor_with(&a, alg).unwrap();
            let mut seen = vec![false; n];
            lu.perm().iter().for_each(|&p| seen[p] = true);
            assert!(seen.iter().all(|&s| s), "{} n = {n} {alg:?}: perm", T::NAME);
            // Sign of the permutation from its cycles: (-1)^(n - cycles).
            let mut visited = vec![false; n];
            let mut cycles = 0;
            for s in 0..n {
                if !visited[s] {
                    cycles += 1;
                    let mut k = s;
                    while !visited[k] {
                        visited[k] = true;
                        k = lu.perm()[k];
                    }
                }
            }
            assert_eq!(
                (n - cycles) % 2,
                lu.info().transpositions % 2,
                "{} n = {n} {alg:?}",
                T::NAME
            );
            assert!(
                lu.l().as_slice().iter().all(|v| v.abs() <= T::one()),
                "{} {alg:?}: |l| > 1",
                T::NAME
            );
            let x = inv_norm * residual_norm1(&exact, &lu);
            assert!(x <= 0.5, "{} n = {n} {alg:?}: ||A^-1|| ||E|| = {x}", T::NAME);
            let sum_ln: f64 = lu.u_diagonal().map(|d| d.as_f64().abs().ln().abs()).sum();
            let eps = T::epsilon().as_f64();
            bound += 2.0 * n as f64 * x + 4.0 * eps * (sum_ln + n as f64);
            lds.push(lu.log_det().to_f64());
        }
        let (fast, generic) = (lds[0], lds[1]);
        assert_eq!(fast.sign, generic.sign, "{} n = {n}", T::NAME);
        assert!(
            (fast.log_abs - generic.log_abs).abs() <= bound,
            "{} n = {n}: {fast:?} vs {generic:?}, bound {bound}",
            T::NAME
        );
    }

    #[test]
    fn faer_path_agrees_with_the_generic_path() {
        for (k, &n) in [33usize, 64, 100, 257].iter().enumerate() {
            let a = random(n, 5000 + k as u64);
            check_fast_path_agrees::<f64>(&a);
            check_fast_path_agrees::<f32>(&a);
            // Auto is the fast path above n = 32.
            let fast = Lu::factor_with(&a, LuAlgorithm::Faer).unwrap();
            let auto = Lu::factor(&a).unwrap();
            assert_eq!(fast.packed(), auto.packed());
            assert_eq!(fast.perm(), auto.perm());
            // `log_det` factors A^T, owned or not: the bits of `Lu::factor(A^T)` (whose
            // column-major copy is A's row-major buffer), and A's log-det to rounding: these
            // random matrices are well conditioned (`check_fast_path_agrees` bounds
            // ||A^-1|| ||E|| by 0.5), measured 0 to 1.8e-15 relative; 1e-12 leaves room for other
            // platforms' faer kernels without hiding a wrong factorization (an error would be
            // O(1)).
            let at = Lu::factor_with(&a.transpose(), LuAlgorithm::Faer).unwrap().log_det();
            let ld = crate::log_det(&a).unwrap();
            assert_eq!(ld, at);
            let (owned_ld, _) = crate::log_det_owned(a.clone(), crate::LogDetMethod::Lu).unwrap();
            assert_eq!(owned_ld, ld);
            let direct = fast.log_det();
            assert_eq!(ld.sign, direct.sign);
            assert!(
                (ld.log_abs - direct.log_abs).abs() <= 1e-12 * direct.log_abs.abs().max(1.0),
                "n = {n}: {ld:?} vs {direct:?}"
            );
            let owned = Lu::factor_in_place(a.as_slice().to_vec(), n, LuAlgorithm::Faer).unwrap();
            assert_eq!(owned.packed(), fast.packed());
            // Column-major inputs take the other copy into faer's layout.
            assert_eq!(Lu::factor(&a.to_faer()).unwrap().packed(), fast.packed());
        }
        // A scalar without faer's LU takes the generic path under Faer too.
        let a = random(40, 5100);
        let d = a.map(F1::cst);
        let faer = Lu::factor_with(&d, LuAlgorithm::Faer).unwrap();
        let rec = Lu::factor_with(&d, LuAlgorithm::Recursive).unwrap();
        assert!(
            faer.packed()
                .iter()
                .zip(rec.packed())
                .all(|(p, q)| p.x.to_bits() == q.x.to_bits())
        );
        assert_eq!(faer.perm(), rec.perm());
    }

    /// The matrices faer's code cannot factor (NaN or infinity left on U's diagonal) go to the
    /// recursive code, whose result and errors are then exactly the recursive code's.
    #[test]
    fn faer_path_hands_over_what_it_cannot_factor() {
        let n = 40;
        // Subnormal pivots: faer multiplies by 1/p, which overflows.
        let tiny = Matrix::from_fn(n, n, |i, j| if i == j { 1e-310 * (1.0 + i as f64) } else { 0.0 });
        // A zero column before the last: faer's multipliers 0 * (1/0) are NaN.
        let mut singular = random(n, 5200);
        for i in 0..n {
            singular[(i, 3)] = 0.0;
        }
        for m in [&tiny, &singular] {
            let rec = Lu::factor_with(m, LuAlgorithm::Recursive).unwrap();
            for lu in [
                Lu::factor_with(m, LuAlgorithm::Faer).unwrap(),
                Lu::factor(m).unwrap(),
                Lu::factor_in_place(m.as_slice().to_vec(), n, LuAlgorithm::Faer).unwrap(),
            ] {
                assert_eq!(lu.packed(), rec.packed());
                assert_eq!(lu.perm(), rec.perm());
                assert_eq!(lu.info(), rec.info());
            }
            assert_eq!(crate::log_det(m).unwrap(), rec.log_det());
        }
        assert_eq!(Lu::factor(&singular).unwrap().info().first_zero_pivot, Some(3));
        let ld = crate::log_det(&tiny).unwrap();
        let expected: f64 = (0..n).map(|i| (1e-310 * (1.0 + i as f64)).ln()).sum();
        assert_eq!(ld.sign, 1.0);
        assert!((ld.log_abs - expected).abs() <= 1e-12 * expected.abs());
        // Finite entries whose elimination overflows: the same error as the generic code's.
        let mut big = random(n, 5300);
        big[(0, 0)] = 1e308;
        big[(1, 0)] = -1e308;
        big[(0, 1)] = 1e308;
        big[(1, 1)] = 1e308;
        let generic = Lu::factor_with(&big, LuAlgorithm::Recursive).unwrap_err();
        assert!(matches!(generic, Error::NonFinite { .. }), "{generic:?}");
        assert_eq!(Lu::factor_with(&big, LuAlgorithm::Faer).unwrap_err(), generic);
        assert_eq!(
            Lu::factor_in_place(big.as_slice().to_vec(), n, LuAlgorithm::Faer).unwrap_err(),
            generic
        );
        // A NaN input is reported at its first entry in row-major order, as before.
        let mut nan = random(n, 5400);
        nan[(7, 2)] = f64::NAN;
        nan[(2, 7)] = f64::INFINITY;
        assert!(matches!(
            Lu::factor_with(&nan, LuAlgorithm::Faer),
            Err(Error::NonFinite { index: (2, 7), .. })
        ));
    }
}
