//! Strided row-major matrix views and the thread setting the kernels take.
//!
//! These sit at the bottom of the crate, beside [`crate::error`]: the generic loops, faer's gemm
//! and every checked entry point borrow data through them, so they know nothing of
//! [`crate::Real`] and are generic over any `Copy` element.
//!
//! Element (i, j) of a view with leading dimension `ld` sits at `data[i * ld + j]`, so a
//! sub-block of a larger row-major matrix is a view without a copy. `op` is the identity or the
//! transpose ([`MatSlice::t`]).

use crate::error::{Error, Result};

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
    // Crate-visible so that the gemm kernels can read the stored (untransposed) shape and slice
    // rows without going through the bounds-checked accessors.
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) ld: usize,
    pub(crate) transposed: bool,
}

/// A mutable strided row-major matrix view: element (i, j) is `data[i * ld + j]`.
#[derive(Debug)]
pub struct MatSliceMut<'a, T> {
    // Crate-visible for the gemm kernels, which consume the view and write its rows in place.
    pub(crate) data: &'a mut [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) ld: usize,
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
