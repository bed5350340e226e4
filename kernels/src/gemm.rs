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
    /// The number of threads this setting allows.
    pub fn threads(self) -> usize {
        match self {
            Parallelism::Sequential => 1,
            Parallelism::Rayon(0) => rayon::current_num_threads(),
            Parallelism::Rayon(n) => n,
        }
    }
}

static DEFAULT_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Sets the parallelism that layers and models use for their matrix products (one thread by
/// default, which keeps results bit-for-bit reproducible). `Rayon(0)` means all of rayon's pool.
pub fn set_default_parallelism(par: Parallelism) {
    let n = match par {
        Parallelism::Sequential => 1,
        Parallelism::Rayon(0) => 0,
        Parallelism::Rayon(n) => n.max(1),
    };
    DEFAULT_THREADS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// The parallelism set by [`set_default_parallelism`].
pub fn default_parallelism() -> Parallelism {
    match DEFAULT_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Parallelism::Sequential,
        n => Parallelism::Rayon(n),
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
        if beta == T::zero() {
            row.iter_mut().for_each(|v| *v = T::zero());
        } else if beta != T::one() {
            row.iter_mut().for_each(|v| *v *= beta);
        }
        if alpha == T::zero() {
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
