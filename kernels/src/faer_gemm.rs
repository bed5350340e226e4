//! faer's gemm on the crate's row-major views: the fast path of [`crate::Real::gemm_kernel`] for
//! `f32` and `f64`.
//!
//! It only translates a [`MatSlice`] into a `faer::MatRef` (a transposed view is a transposed
//! `MatRef`, no copy) and BLAS's `beta` into faer's `Accum`, so it needs no more than `Float`.

use std::ops::MulAssign;

use num_traits::Float;

use crate::view::{MatSlice, MatSliceMut, Parallelism};

fn faer_ref<'a, T>(s: MatSlice<'a, T>) -> faer::MatRef<'a, T> {
    let view = faer::MatRef::from_row_major_slice_with_stride(s.data, s.rows, s.cols, s.ld);
    if s.transposed { view.transpose() } else { view }
}

/// faer's gemm for `f32` and `f64`. Shapes must already be validated.
pub(crate) fn gemm<T>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
) where
    T: Float + MulAssign + faer::traits::ComplexField,
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
