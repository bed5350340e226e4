//! General matrix multiply on row-major data: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! Operands are strided row-major views ([`MatSlice`], [`MatSliceMut`]): element (i, j) of a view
//! with leading dimension `ld` sits at `data[i * ld + j]`, so a sub-block of a larger row-major
//! matrix is a view without a copy. `op` is the identity or the transpose ([`MatSlice::t`]).
//!
//! [`gemm`] validates the shapes and dispatches through [`Real::gemm_kernel`]: faer's gemm for
//! `f32` and `f64`, a plain loop for every other scalar (the dual numbers). Both run on one thread
//! or, with [`Parallelism::Rayon`], on rayon's pool.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::real::Real;

/// How many threads a kernel may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// One thread: results are bit-for-bit reproducible.
    #[default]
    Sequential,
    /// rayon's global pool, with at most this many threads (0 means all of the pool).
    Rayon(usize),
}

impl Parallelism {
    /// One thread for `threads <= 1`, else `Rayon(threads)`.
    pub fn from_threads(threads: usize) -> Self {
        if threads <= 1 {
            Parallelism::Sequential
        } else {
            Parallelism::Rayon(threads)
        }
    }

    /// The number of threads this setting allows.
    pub fn threads(self) -> usize {
        match self {
            Parallelism::Sequential => 1,
            Parallelism::Rayon(0) => rayon::current_num_threads(),
            Parallelism::Rayon(n) => n,
        }
    }
}

/// A read-only strided row-major matrix view, optionally transposed.
///
/// Element (i, j) of the *stored* matrix is `data[i * ld + j]`; [`MatSlice::t`] flips the view
/// without moving data. [`MatSlice::rows`] and [`MatSlice::cols`] give the shape after the flip.
#[derive(Clone, Copy, Debug)]
pub struct MatSlice<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    ld: usize,
    transposed: bool,
}

/// A mutable strided row-major matrix view: element (i, j) is `data[i * ld + j]`.
#[derive(Debug)]
pub struct MatSliceMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    ld: usize,
}

fn check_strided(op: &'static str, len: usize, rows: usize, cols: usize, ld: usize) -> Result<()> {
    if ld < cols {
        return Err(Error::invalid(
            op,
            "leading dimension",
            format!("{ld} is smaller than the column count {cols}"),
        ));
    }
    let needed = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1)
            .checked_mul(ld)
            .and_then(|v| v.checked_add(cols))
            .ok_or_else(|| Error::invalid(op, "shape", format!("{rows}x{cols} with ld {ld} overflows")))?
    };
    if len < needed {
        return Err(Error::LengthMismatch {
            op,
            what: "matrix data",
            expected: needed,
            found: len,
        });
    }
    Ok(())
}

impl<'a, T: Copy> MatSlice<'a, T> {
    /// A dense row-major `rows x cols` view of `data` (whose length must be `rows * cols`).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len() != rows * cols`.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        let expected = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::invalid("MatSlice::new", "shape", "rows * cols overflows"))?;
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                op: "MatSlice::new",
                what: "matrix data",
                expected,
                found: data.len(),
            });
        }
        Ok(MatSlice {
            data,
            rows,
            cols,
            ld: cols,
            transposed: false,
        })
    }

    /// A strided view: element (i, j) at `data[i * ld + j]`, `ld >= cols`.
    ///
    /// # Errors
    /// When `ld < cols` or `data` is too short for the last row.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Result<Self> {
        check_strided("MatSlice::strided", data.len(), rows, cols, ld)?;
        Ok(MatSlice {
            data,
            rows,
            cols,
            ld,
            transposed: false,
        })
    }

    /// The transposed view (no data moves).
    #[must_use]
    pub fn t(self) -> Self {
        MatSlice {
            transposed: !self.transposed,
            ..self
        }
    }

    /// Rows of the view (after any transpose).
    pub fn rows(&self) -> usize {
        if self.transposed { self.cols } else { self.rows }
    }

    /// Columns of the view (after any transpose).
    pub fn cols(&self) -> usize {
        if self.transposed { self.rows } else { self.cols }
    }

    /// Whether the view is the transpose of the stored data.
    pub fn is_transposed(&self) -> bool {
        self.transposed
    }

    /// Leading dimension of the stored data.
    pub fn ld(&self) -> usize {
        self.ld
    }

    /// The underlying storage.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// Element (i, j) of the view (after any transpose).
    ///
    /// # Panics
    /// When (i, j) is out of range (an internal invariant of the kernels that call it).
    #[inline]
    pub fn at(&self, i: usize, j: usize) -> T {
        debug_assert!(i < self.rows() && j < self.cols());
        if self.transposed {
            self.data[j * self.ld + i]
        } else {
            self.data[i * self.ld + j]
        }
    }
}

impl<'a, T: Copy> MatSliceMut<'a, T> {
    /// A dense row-major `rows x cols` mutable view.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len() != rows * cols`.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self> {
        let expected = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::invalid("MatSliceMut::new", "shape", "rows * cols overflows"))?;
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                op: "MatSliceMut::new",
                what: "matrix data",
                expected,
                found: data.len(),
            });
        }
        Ok(MatSliceMut {
            data,
            rows,
            cols,
            ld: cols,
        })
    }

    /// A strided mutable view: element (i, j) at `data[i * ld + j]`, `ld >= cols`.
    ///
    /// # Errors
    /// When `ld < cols` or `data` is too short for the last row.
    pub fn strided(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Result<Self> {
        check_strided("MatSliceMut::strided", data.len(), rows, cols, ld)?;
        Ok(MatSliceMut { data, rows, cols, ld })
    }

    /// Rows of the view.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the view.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Leading dimension.
    pub fn ld(&self) -> usize {
        self.ld
    }

    /// The underlying storage.
    pub fn data_mut(&mut self) -> &mut [T] {
        self.data
    }
}

/// `C = alpha * op(A) * op(B) + beta * C`, row-major, with shape checks.
///
/// `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`. With `beta == 0` the old contents of
/// `C` are ignored (so NaN there does not propagate), as in BLAS.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the inner dimensions or the shape of `C` disagree.
///
/// # Examples
/// ```
/// use exactflow_kernels::gemm::{gemm, MatSlice, MatSliceMut, Parallelism};
/// # fn main() -> exactflow_kernels::Result<()> {
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
/// let mut c = [0.0; 4];
/// gemm(
///     1.0,
///     MatSlice::new(&a, 2, 2)?,
///     MatSlice::new(&b, 2, 2)?.t(), // B^T = [[5, 7], [6, 8]]
///     0.0,
///     MatSliceMut::new(&mut c, 2, 2)?,
///     Parallelism::Sequential,
/// )?;
/// assert_eq!(c, [17.0, 23.0, 39.0, 53.0]);
/// # Ok(())
/// # }
/// ```
pub fn gemm<T: Real>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
) -> Result<()> {
    if a.cols() != b.rows() {
        return Err(Error::ShapeMismatch {
            op: "gemm",
            expected: vec![a.cols(), b.cols()],
            found: vec![b.rows(), b.cols()],
        });
    }
    if c.rows != a.rows() || c.cols != b.cols() {
        return Err(Error::ShapeMismatch {
            op: "gemm",
            expected: vec![a.rows(), b.cols()],
            found: vec![c.rows, c.cols],
        });
    }
    T::gemm_kernel(alpha, a, b, beta, c, par);
    Ok(())
}

/// The generic loop behind [`Real::gemm_kernel`]'s default. Shapes must already be validated.
///
/// Row i of C is computed as `beta * C[i, :] + alpha * sum_p op(A)[i, p] * op(B)[p, :]`, so the
/// inner loop runs along a row of B when B is not transposed, and as a dot product otherwise;
/// rows are independent, which is how the rayon variant splits the work.
pub fn generic_gemm<T: Real>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
) {
    let (m, n, k) = (c.rows, c.cols, a.cols());
    if m == 0 || n == 0 {
        return;
    }
    let ld = c.ld;
    let row_job = |i: usize, row: &mut [T]| {
        let row = &mut row[..n];
        // `is_exact_zero` rather than `==`: a dual `beta` or `alpha` whose value is 0 or 1 but
        // whose derivative is not must still be applied.
        if beta.is_exact_zero() {
            row.iter_mut().for_each(|v| *v = T::zero());
        } else if !(beta - T::one()).is_exact_zero() {
            row.iter_mut().for_each(|v| *v *= beta);
        }
        if alpha.is_exact_zero() {
            return;
        }
        if b.is_transposed() {
            for (j, out) in row.iter_mut().enumerate() {
                let mut acc = T::zero();
                for p in 0..k {
                    acc += a.at(i, p) * b.at(p, j);
                }
                *out += alpha * acc;
            }
        } else {
            for p in 0..k {
                let aip = alpha * a.at(i, p);
                let brow = &b.data[p * b.ld..p * b.ld + n];
                for (out, &bv) in row.iter_mut().zip(brow) {
                    *out += aip * bv;
                }
            }
        }
    };
    // The last row of a strided view may be shorter than ld; pad the slicing accordingly.
    let data = &mut c.data[..(m - 1) * ld + n];
    match par {
        Parallelism::Sequential => {
            for i in 0..m {
                let start = i * ld;
                row_job(i, &mut data[start..(start + n)]);
            }
        }
        Parallelism::Rayon(_) => {
            let (head, last) = data.split_at_mut((m - 1) * ld);
            head.par_chunks_mut(ld).enumerate().for_each(|(i, row)| row_job(i, row));
            row_job(m - 1, last);
        }
    }
}

fn faer_ref<'a, T>(s: MatSlice<'a, T>) -> faer::MatRef<'a, T> {
    let view = faer::MatRef::from_row_major_slice_with_stride(s.data, s.rows, s.cols, s.ld);
    if s.transposed { view.transpose() } else { view }
}

/// faer's gemm for `f32` and `f64`. Shapes must already be validated.
pub(crate) fn faer_gemm<T>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
) where
    T: Real + faer::traits::ComplexField,
{
    let (m, n) = (c.rows, c.cols);
    if m == 0 || n == 0 {
        return;
    }
    let ld = c.ld;
    let len = (m - 1) * ld + n;
    let data = &mut c.data[..len];
    let accum = if beta == T::zero() {
        faer::Accum::Replace
    } else {
        if beta != T::one() {
            for i in 0..m {
                data[i * ld..i * ld + n].iter_mut().for_each(|v| *v *= beta);
            }
        }
        faer::Accum::Add
    };
    // A row-major m x n block is the transpose of a column-major n x m one. (faer 0.24.4's own
    // `from_row_major_slice_with_stride_mut` builds a column-major view, so it is not used.)
    let dst = faer::MatMut::from_column_major_slice_with_stride_mut(data, n, m, ld).transpose_mut();
    let fpar = match par {
        Parallelism::Sequential => faer::Par::Seq,
        Parallelism::Rayon(t) => faer::Par::rayon(t),
    };
    faer::linalg::matmul::matmul(dst, accum, faer_ref(a), faer_ref(b), alpha, fpar);
}

#[cfg(test)]
mod tests {
    use super::*;
    use autodiff::F1;

    /// Deterministic test values in [-1, 1): a fixed linear congruential stream.
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// op(X)(i, j) for a stored rows x cols matrix with leading dimension ld.
    fn at(data: &[f64], ld: usize, transposed: bool, i: usize, j: usize) -> f64 {
        if transposed { data[j * ld + i] } else { data[i * ld + j] }
    }

    /// The naive triple loop `alpha op(A) op(B) + beta C` in f64, on strided storage.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        (m, n, k): (usize, usize, usize),
        alpha: f64,
        a: (&[f64], usize, bool),
        b: (&[f64], usize, bool),
        beta: f64,
        c: &[f64],
        ldc: usize,
    ) -> Vec<f64> {
        let mut out = c.to_vec();
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| at(a.0, a.1, a.2, i, p) * at(b.0, b.1, b.2, p, j)).sum();
                let old = if beta == 0.0 { 0.0 } else { beta * c[i * ldc + j] };
                out[i * ldc + j] = alpha * s + old;
            }
        }
        out
    }

    /// Runs gemm for every transpose combination with padded leading dimensions, in the scalar
    /// type `T`, and compares with the naive loop (entries of op(A) op(B) are sums of k products of
    /// numbers in [-1, 1], so the rounding of either side is at most k u per entry, plus the
    /// beta C term).
    fn check_all<T: Real>(m: usize, n: usize, k: usize, eps: f64, par: Parallelism) {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2);
            let a64 = values(ar.max(1) * lda, (m * 31 + k) as u64);
            let b64 = values(br.max(1) * ldb, (n * 17 + k) as u64 + 5);
            let c64 = values(m.max(1) * ldc, 99);
            let (alpha, beta) = (0.75, -1.5);
            let expect = naive((m, n, k), alpha, (&a64, lda, ta), (&b64, ldb, tb), beta, &c64, ldc);
            let a: Vec<T> = a64.iter().map(|&v| T::lit(v)).collect();
            let b: Vec<T> = b64.iter().map(|&v| T::lit(v)).collect();
            let mut c: Vec<T> = c64.iter().map(|&v| T::lit(v)).collect();
            let av = MatSlice::strided(&a, ar, ac, lda).unwrap();
            let bv = MatSlice::strided(&b, br, bc, ldb).unwrap();
            let av = if ta { av.t() } else { av };
            let bv = if tb { bv.t() } else { bv };
            let cv = MatSliceMut::strided(&mut c, m, n, ldc).unwrap();
            gemm(T::lit(alpha), av, bv, T::lit(beta), cv, par).unwrap();
            for i in 0..m.max(1) {
                for j in 0..ldc {
                    let got = c[i * ldc + j].as_f64();
                    if i < m && j < n {
                        // |error| <= (k + 2) u (|alpha| k + |beta|) for inputs in [-1, 1].
                        let tol = (k as f64 + 2.0) * eps * (0.75 * k as f64 + 1.5);
                        assert!(
                            (got - expect[i * ldc + j]).abs() <= tol,
                            "{} {m}x{n}x{k} ta={ta} tb={tb} ({i}, {j}): {got} vs {}",
                            T::NAME,
                            expect[i * ldc + j]
                        );
                    } else {
                        // The padding between rows is never written.
                        assert_eq!(got, T::lit(c64[i * ldc + j]).as_f64(), "padding touched at ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn every_transpose_and_stride_matches_the_triple_loop() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 9, 33),
            (64, 65, 66),
            (4, 3, 0),
            (0, 3, 2),
            (2, 0, 2),
        ] {
            for par in [Parallelism::Sequential, Parallelism::Rayon(0)] {
                check_all::<f64>(m, n, k, f64::EPSILON, par);
                check_all::<f32>(m, n, k, f32::EPSILON as f64, par);
                check_all::<F1>(m, n, k, f64::EPSILON, par);
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        for par in [Parallelism::Sequential, Parallelism::Rayon(2)] {
            let mut c = [f64::NAN; 4];
            gemm(
                1.0,
                MatSlice::new(&a, 2, 2).unwrap(),
                MatSlice::new(&b, 2, 2).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
            let mut c = [f32::NAN; 4];
            let (af, bf) = (a.map(|v| v as f32), b.map(|v| v as f32));
            gemm(
                1.0f32,
                MatSlice::new(&af, 2, 2).unwrap(),
                MatSlice::new(&bf, 2, 2).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
            let mut c = [F1::cst(f64::NAN); 4];
            let (ad, bd) = (a.map(F1::cst), b.map(F1::cst));
            gemm(
                F1::cst(1.0),
                MatSlice::new(&ad, 2, 2).unwrap(),
                MatSlice::new(&bd, 2, 2).unwrap(),
                F1::cst(0.0),
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c.map(|v| v.x), [19.0, 22.0, 43.0, 50.0]);
            // An empty inner dimension with beta = 0 gives zeros, not the NaN.
            let mut c = [f64::NAN; 4];
            gemm(
                1.0,
                MatSlice::new(&[], 2, 0).unwrap(),
                MatSlice::new(&[], 0, 2).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c, [0.0; 4]);
        }
    }

    #[test]
    fn rayon_equals_sequential_bit_for_bit_on_the_generic_path() {
        let (m, n, k) = (37, 29, 41);
        let a: Vec<F1> = values(m * k, 1).into_iter().map(F1::cst).collect();
        let b: Vec<F1> = values(k * n, 2).into_iter().map(F1::cst).collect();
        let c0: Vec<F1> = values(m * n, 3).into_iter().map(F1::cst).collect();
        let run = |par, tb: bool| {
            let mut c = c0.clone();
            let bv = if tb {
                MatSlice::new(&b, n, k).unwrap().t()
            } else {
                MatSlice::new(&b, k, n).unwrap()
            };
            gemm(
                F1::cst(1.25),
                MatSlice::new(&a, m, k).unwrap(),
                bv,
                F1::cst(0.5),
                MatSliceMut::new(&mut c, m, n).unwrap(),
                par,
            )
            .unwrap();
            c.iter().map(|v| v.x.to_bits()).collect::<Vec<_>>()
        };
        for tb in [false, true] {
            let seq = run(Parallelism::Sequential, tb);
            for t in [0, 1, 2, 3] {
                assert_eq!(run(Parallelism::Rayon(t), tb), seq, "Rayon({t}), tb = {tb}");
            }
        }
    }

    #[test]
    fn dual_alpha_and_beta_carry_their_derivatives() {
        // d/dt of (alpha(t) A B + beta(t) C) with alpha = 0 + t, beta = 1 + t: A B + C.
        let a = [F1::cst(2.0)];
        let b = [F1::cst(3.0)];
        let mut c = [F1::cst(5.0)];
        gemm(
            F1::var(0.0),
            MatSlice::new(&a, 1, 1).unwrap(),
            MatSlice::new(&b, 1, 1).unwrap(),
            F1::var(1.0),
            MatSliceMut::new(&mut c, 1, 1).unwrap(),
            Parallelism::Sequential,
        )
        .unwrap();
        assert_eq!((c[0].x, c[0].dx), (5.0, 11.0));
    }

    #[test]
    fn shape_errors() {
        let a = [0.0f64; 6];
        let mut c = [0.0f64; 4];
        assert!(matches!(
            gemm(
                1.0,
                MatSlice::new(&a, 2, 3).unwrap(),
                MatSlice::new(&a, 2, 3).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                Parallelism::Sequential
            ),
            Err(Error::ShapeMismatch { op: "gemm", .. })
        ));
        assert!(matches!(
            gemm(
                1.0,
                MatSlice::new(&a, 2, 3).unwrap(),
                MatSlice::new(&a, 2, 3).unwrap().t(),
                0.0,
                MatSliceMut::new(&mut c[..3], 3, 1).unwrap(),
                Parallelism::Sequential
            ),
            Err(Error::ShapeMismatch { expected, found, .. }) if expected == vec![2, 2] && found == vec![3, 1]
        ));
        assert!(matches!(
            MatSlice::new(&a, 2, 2),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 6,
                ..
            })
        ));
        assert!(matches!(
            MatSliceMut::new(&mut c, 3, 3),
            Err(Error::LengthMismatch {
                expected: 9,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            MatSlice::strided(&a, 2, 3, 2),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            MatSlice::strided(&a, 3, 2, 3),
            Err(Error::LengthMismatch {
                expected: 8,
                found: 6,
                ..
            })
        ));
        assert!(matches!(
            MatSliceMut::strided(&mut c, 2, 3, 3),
            Err(Error::LengthMismatch {
                expected: 6,
                found: 4,
                ..
            })
        ));
        // The last row of a strided view may stop at its last column.
        assert!(MatSlice::strided(&a, 2, 2, 4).is_ok());
    }

    #[test]
    fn parallelism_settings() {
        assert_eq!(Parallelism::Sequential.threads(), 1);
        assert_eq!(Parallelism::Rayon(3).threads(), 3);
        assert!(Parallelism::Rayon(0).threads() >= 1);
        assert_eq!(Parallelism::default(), Parallelism::Sequential);
    }
}
