//! The project's dense matrix type and the interop trait every log-det and LU entry point takes.
//!
//! [`Matrix`] is owned, contiguous and row-major. [`MatrixInput`] is what `log_det`, [`crate::Lu`]
//! and the triangular kernels read from: it is implemented for [`Matrix`], [`MatSlice`],
//! `nalgebra::DMatrix`, `faer::MatRef` and `faer::Mat`, so a caller never converts first. Readers
//! go through [`MatrixInput::entry`] (any strides) or, when the data already is contiguous
//! row-major, through the slice [`MatrixInput::row_major`] returns.

use std::ops::{Index, IndexMut};

use crate::error::{Error, Result};
use crate::gemm;
use crate::real::Real;
use crate::view::{MatSlice, MatSliceMut, Parallelism};

/// An owned, contiguous, row-major dense matrix: entry (i, j) is `data[i * cols + j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix<T> {
    rows: usize,
    cols: usize,
    data: Vec<T>,
}

impl<T: Real> Matrix<T> {
    /// A `rows x cols` matrix over row-major `data`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<T>) -> Result<Self> {
        let expected = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::invalid("Matrix::new", "shape", format!("{rows}x{cols} overflows")))?;
        if data.len() != expected {
            return Err(Error::LengthMismatch {
                op: "Matrix::new",
                what: "data",
                expected,
                found: data.len(),
            });
        }
        Ok(Matrix { rows, cols, data })
    }

    /// The `rows x cols` zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![T::zero(); rows * cols],
        }
    }

    /// The `n x n` identity.
    pub fn identity(n: usize) -> Self {
        Matrix::from_fn(n, n, |i, j| if i == j { T::one() } else { T::zero() })
    }

    /// A matrix whose entry (i, j) is `f(i, j)`.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> T) -> Self {
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                data.push(f(i, j));
            }
        }
        Matrix { rows, cols, data }
    }

    /// A matrix from its rows.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when the rows differ in length.
    pub fn from_rows<R: AsRef<[T]>>(rows: &[R]) -> Result<Self> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * cols);
        for r in rows {
            let r = r.as_ref();
            if r.len() != cols {
                return Err(Error::LengthMismatch {
                    op: "Matrix::from_rows",
                    what: "row",
                    expected: cols,
                    found: r.len(),
                });
            }
            data.extend_from_slice(r);
        }
        Ok(Matrix {
            rows: rows.len(),
            cols,
            data,
        })
    }

    /// A copy of any [`MatrixInput`] (a nalgebra or faer matrix, a view).
    pub fn from_input(m: &(impl MatrixInput<T> + ?Sized)) -> Self {
        if let Some(s) = m.row_major() {
            return Matrix {
                rows: m.nrows(),
                cols: m.ncols(),
                data: s.to_vec(),
            };
        }
        Matrix::from_fn(m.nrows(), m.ncols(), |i, j| m.entry(i, j))
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Whether the matrix is square.
    pub fn is_square(&self) -> bool {
        self.rows == self.cols
    }

    /// The row-major data.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The row-major data, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The row-major data, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// Entry (i, j), or `None` out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<T> {
        (i < self.rows && j < self.cols).then(|| self.data[i * self.cols + j])
    }

    /// Row `i` as a slice, or `None` out of range.
    pub fn row(&self, i: usize) -> Option<&[T]> {
        (i < self.rows).then(|| &self.data[i * self.cols..(i + 1) * self.cols])
    }

    /// The transpose.
    #[must_use]
    pub fn transpose(&self) -> Self {
        Matrix::from_fn(self.cols, self.rows, |i, j| self.data[j * self.cols + i])
    }

    /// Every entry multiplied by `c`.
    #[must_use]
    pub fn scale(&self, c: T) -> Self {
        self.map(|v| v * c)
    }

    /// A matrix of `f` applied to every entry.
    pub fn map<U: Real>(&self, f: impl Fn(T) -> U) -> Matrix<U> {
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// The value parts as `f64`.
    pub fn to_f64(&self) -> Matrix<f64> {
        self.map(|v| v.as_f64())
    }

    /// Swaps rows `a` and `b`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when either row is out of range.
    pub fn swap_rows(&mut self, a: usize, b: usize) -> Result<()> {
        if a >= self.rows || b >= self.rows {
            return Err(Error::invalid(
                "Matrix::swap_rows",
                "row",
                format!("rows {a} and {b} of a matrix with {} rows", self.rows),
            ));
        }
        if a != b {
            let c = self.cols;
            let (lo, hi) = (a.min(b), a.max(b));
            let (top, bottom) = self.data.split_at_mut(hi * c);
            top[lo * c..(lo + 1) * c].swap_with_slice(&mut bottom[..c]);
        }
        Ok(())
    }

    /// The product `self * rhs` (through [`gemm::gemm`], so faer's gemm for f32/f64).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `self.cols() != rhs.rows()`.
    pub fn matmul(&self, rhs: &Matrix<T>) -> Result<Matrix<T>> {
        let mut out = Matrix::zeros(self.rows, rhs.cols);
        gemm::gemm(
            T::one(),
            self.view(),
            rhs.view(),
            T::zero(),
            MatSliceMut::new(&mut out.data, self.rows, rhs.cols)?,
            Parallelism::Sequential,
        )?;
        Ok(out)
    }

    /// A read-only view for [`gemm::gemm`].
    pub fn view(&self) -> MatSlice<'_, T> {
        MatSlice::strided(&self.data, self.rows, self.cols, self.cols.max(1))
            .unwrap_or_else(|_| unreachable!("invariant: a Matrix's data holds rows * cols entries"))
    }

    /// The 1-norm: the largest column sum of absolute values (as `f64`).
    pub fn norm_1(&self) -> f64 {
        let mut sums = vec![0.0f64; self.cols];
        for row in self.data.chunks_exact(self.cols.max(1)) {
            for (s, v) in sums.iter_mut().zip(row) {
                *s += v.as_f64().abs();
            }
        }
        sums.into_iter().fold(0.0, f64::max)
    }

    /// The first non-finite entry, as ((row, column), value).
    pub fn first_non_finite(&self) -> Option<((usize, usize), f64)> {
        first_non_finite(self)
    }

    /// Converts to a `nalgebra::DMatrix` (column-major, so this copies).
    pub fn to_nalgebra(&self) -> nalgebra::DMatrix<T> {
        nalgebra::DMatrix::from_row_slice(self.rows, self.cols, &self.data)
    }

    /// Converts to a `faer::Mat` (column-major, so this copies).
    pub fn to_faer(&self) -> faer::Mat<T> {
        faer::Mat::from_fn(self.rows, self.cols, |i, j| self.data[i * self.cols + j])
    }
}

impl<T> Index<(usize, usize)> for Matrix<T> {
    type Output = T;

    /// Entry (i, j).
    ///
    /// # Panics
    /// Out of range, like slice indexing; use [`Matrix::get`] for a checked read.
    fn index(&self, (i, j): (usize, usize)) -> &T {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) out of range for a {}x{} matrix",
            self.rows,
            self.cols
        );
        &self.data[i * self.cols + j]
    }
}

impl<T> IndexMut<(usize, usize)> for Matrix<T> {
    /// Entry (i, j), mutably.
    ///
    /// # Panics
    /// Out of range, like slice indexing.
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut T {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) out of range for a {}x{} matrix",
            self.rows,
            self.cols
        );
        &mut self.data[i * self.cols + j]
    }
}

/// Read access to a dense matrix in any layout: what the log-det and LU entry points accept.
pub trait MatrixInput<T: Real> {
    /// Number of rows.
    fn nrows(&self) -> usize;
    /// Number of columns.
    fn ncols(&self) -> usize;
    /// Entry (i, j); callers guarantee `i < nrows()` and `j < ncols()`.
    fn entry(&self, i: usize, j: usize) -> T;
    /// The data as one contiguous row-major slice, when it is stored that way.
    fn row_major(&self) -> Option<&[T]> {
        None
    }
}

impl<T: Real> MatrixInput<T> for Matrix<T> {
    fn nrows(&self) -> usize {
        self.rows
    }
    fn ncols(&self) -> usize {
        self.cols
    }
    #[inline]
    fn entry(&self, i: usize, j: usize) -> T {
        self.data[i * self.cols + j]
    }
    fn row_major(&self) -> Option<&[T]> {
        Some(&self.data)
    }
}

impl<T: Real> MatrixInput<T> for MatSlice<'_, T> {
    fn nrows(&self) -> usize {
        self.rows()
    }
    fn ncols(&self) -> usize {
        self.cols()
    }
    #[inline]
    fn entry(&self, i: usize, j: usize) -> T {
        self.at(i, j)
    }
    fn row_major(&self) -> Option<&[T]> {
        (!self.is_transposed() && self.ld() == self.cols()).then(|| &self.data()[..self.rows() * self.cols()])
    }
}

impl<T: Real> MatrixInput<T> for nalgebra::DMatrix<T> {
    fn nrows(&self) -> usize {
        self.nrows()
    }
    fn ncols(&self) -> usize {
        self.ncols()
    }
    #[inline]
    fn entry(&self, i: usize, j: usize) -> T {
        self[(i, j)]
    }
}

impl<T: Real> MatrixInput<T> for faer::MatRef<'_, T> {
    fn nrows(&self) -> usize {
        faer::MatRef::nrows(self)
    }
    fn ncols(&self) -> usize {
        faer::MatRef::ncols(self)
    }
    #[inline]
    fn entry(&self, i: usize, j: usize) -> T {
        *self.get(i, j)
    }
}

impl<T: Real> MatrixInput<T> for faer::Mat<T> {
    fn nrows(&self) -> usize {
        faer::Mat::nrows(self)
    }
    fn ncols(&self) -> usize {
        faer::Mat::ncols(self)
    }
    #[inline]
    fn entry(&self, i: usize, j: usize) -> T {
        *self.get(i, j)
    }
}

impl<T: Real, M: MatrixInput<T> + ?Sized> MatrixInput<T> for &M {
    fn nrows(&self) -> usize {
        (**self).nrows()
    }
    fn ncols(&self) -> usize {
        (**self).ncols()
    }
    fn entry(&self, i: usize, j: usize) -> T {
        (**self).entry(i, j)
    }
    fn row_major(&self) -> Option<&[T]> {
        (**self).row_major()
    }
}

/// The first non-finite entry in row-major order, as ((row, column), value).
pub fn first_non_finite<T: Real>(m: &(impl MatrixInput<T> + ?Sized)) -> Option<((usize, usize), f64)> {
    let cols = m.ncols();
    if let Some(s) = m.row_major() {
        return s
            .iter()
            .position(|v| !v.is_finite_value())
            .map(|k| ((k / cols, k % cols), s[k].as_f64()));
    }
    for i in 0..m.nrows() {
        for j in 0..cols {
            let v = m.entry(i, j);
            if !v.is_finite_value() {
                return Some(((i, j), v.as_f64()));
            }
        }
    }
    None
}

/// Checks that `m` is square and, unless `allow_empty`, non-empty.
pub(crate) fn check_square<T: Real>(
    op: &'static str,
    m: &(impl MatrixInput<T> + ?Sized),
    allow_empty: bool,
) -> Result<usize> {
    let (r, c) = (m.nrows(), m.ncols());
    if r != c {
        return Err(Error::NotSquare { op, rows: r, cols: c });
    }
    if r == 0 && !allow_empty {
        return Err(Error::Empty { op, what: "matrix" });
    }
    Ok(r)
}

/// Checks that every entry of `m` is finite.
pub(crate) fn check_finite<T: Real>(
    op: &'static str,
    what: &'static str,
    m: &(impl MatrixInput<T> + ?Sized),
) -> Result<()> {
    match first_non_finite(m) {
        Some((index, value)) => Err(Error::NonFinite { op, what, index, value }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Matrix<f64> {
        Matrix::from_rows(&[[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]]).unwrap()
    }

    #[test]
    fn construction_and_access() {
        let m = sample();
        assert_eq!(m.shape(), (2, 3));
        assert!(!m.is_square());
        assert_eq!(m[(1, 2)], -6.0);
        assert_eq!(m.get(1, 2), Some(-6.0));
        assert_eq!(m.get(2, 0), None);
        assert_eq!(m.row(1), Some(&[4.0, 5.0, -6.0][..]));
        assert_eq!(m.row(2), None);
        assert_eq!(Matrix::new(2, 3, m.as_slice().to_vec()).unwrap(), m);
        assert!(matches!(
            Matrix::new(2, 2, vec![1.0; 3]),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 3,
                ..
            })
        ));
        assert!(matches!(
            Matrix::<f64>::new(usize::MAX, 2, vec![]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]),
            Err(Error::LengthMismatch {
                expected: 2,
                found: 1,
                ..
            })
        ));
        assert_eq!(Matrix::<f64>::from_rows::<[f64; 0]>(&[]).unwrap().shape(), (0, 0));
        assert_eq!(
            Matrix::<f64>::identity(3).as_slice(),
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(Matrix::<f32>::zeros(2, 1).into_vec(), vec![0.0; 2]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn indexing_out_of_range_panics_with_a_message() {
        let _ = sample()[(2, 0)];
    }

    #[test]
    fn transforms() {
        let m = sample();
        let t = m.transpose();
        assert_eq!(t.shape(), (3, 2));
        assert_eq!(t[(2, 1)], -6.0);
        assert_eq!(t.transpose(), m);
        assert_eq!(m.scale(-2.0)[(0, 1)], 4.0);
        assert_eq!(m.map(|v| v as f32)[(1, 0)], 4.0f32);
        // 1-norm: the largest absolute column sum, |3| + |-6| = 9.
        assert_eq!(m.norm_1(), 9.0);
        assert_eq!(Matrix::<f64>::zeros(0, 0).norm_1(), 0.0);
        let mut s = m.clone();
        s.swap_rows(0, 1).unwrap();
        assert_eq!(s.row(0), m.row(1));
        assert_eq!(s.row(1), m.row(0));
        s.swap_rows(1, 1).unwrap();
        assert_eq!(s.row(1), m.row(0));
        assert!(matches!(s.swap_rows(0, 2), Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn matmul_matches_the_definition() {
        let a = sample();
        let b = a.transpose();
        let p = a.matmul(&b).unwrap();
        // Small integers: exact.
        assert_eq!(p.as_slice(), &[14.0, -24.0, -24.0, 77.0]);
        assert!(matches!(a.matmul(&a), Err(Error::ShapeMismatch { .. })));
        let e = Matrix::<f64>::zeros(2, 0).matmul(&Matrix::zeros(0, 3)).unwrap();
        assert_eq!(e, Matrix::zeros(2, 3));
    }

    #[test]
    fn interop_round_trips_and_non_finite_search() {
        let m = sample();
        let na = m.to_nalgebra();
        assert_eq!(na[(1, 2)], -6.0);
        assert_eq!(Matrix::from_input(&na), m);
        let fa = m.to_faer();
        assert_eq!(*fa.get(0, 2), 3.0);
        assert_eq!(Matrix::from_input(&fa), m);
        assert_eq!(Matrix::from_input(&fa.as_ref()), m);
        assert_eq!(Matrix::from_input(&m.view()), m);
        assert_eq!(Matrix::from_input(&m.view().t()), m.transpose());
        assert_eq!(m.view().t().row_major(), None);
        let strided = [1.0, 2.0, 9.0, 3.0, 4.0, 9.0];
        let v = MatSlice::strided(&strided, 2, 2, 3).unwrap();
        assert_eq!(v.row_major(), None);
        assert_eq!(
            Matrix::from_input(&v),
            Matrix::from_rows(&[[1.0, 2.0], [3.0, 4.0]]).unwrap()
        );
        assert_eq!(m.first_non_finite(), None);
        let mut bad = m.clone();
        bad[(1, 1)] = f64::INFINITY;
        bad[(1, 2)] = f64::NAN;
        assert_eq!(bad.first_non_finite(), Some(((1, 1), f64::INFINITY)));
        assert_eq!(first_non_finite(&bad.to_nalgebra()), Some(((1, 1), f64::INFINITY)));
        assert_eq!(first_non_finite(&bad.view().t()), Some(((1, 1), f64::INFINITY)));
        assert!(matches!(
            check_finite("t", "m", &bad),
            Err(Error::NonFinite { index: (1, 1), .. })
        ));
        assert!(matches!(
            check_square("t", &m, true),
            Err(Error::NotSquare { rows: 2, cols: 3, .. })
        ));
        assert!(matches!(
            check_square("t", &Matrix::<f64>::zeros(0, 0), false),
            Err(Error::Empty { .. })
        ));
        assert_eq!(check_square("t", &Matrix::<f64>::zeros(0, 0), true).unwrap(), 0);
    }
}
