//! faer's gemm on the crate's row-major views: the fast path of [`crate::Real::gemm_kernel`] for
//! `f32` and `f64`.
//!
//! It only translates a [`MatSlice`] into a `faer::MatRef` (a transposed view is a transposed
//! `MatRef`, no copy) and BLAS's `beta` into faer's `Accum`, so it needs no more than `Float`.

use std::ops::MulAssign;

use num_traits::Float;

use crate::team::MIN_SPLIT_MULS;
use crate::view::{MatSlice, MatSliceMut, Parallelism};

fn faer_ref<'a, T>(s: MatSlice<'a, T>) -> faer::MatRef<'a, T> {
    let view = faer::MatRef::from_row_major_slice_with_stride(s.data, s.rows, s.cols, s.ld);
    if s.transposed { view.transpose() } else { view }
}

/// faer's gemm for `f32` and `f64`. Shapes must already be validated.
///
/// With a [`Parallelism`] of two or more threads a product of at least [`MIN_SPLIT_MULS`]
/// multiply-adds is split in two halves, one on the calling thread and one on the helper of
/// [`crate::team`], and gives the sequential bits (faer's own parallel gemm, on rayon, loses more
/// to waking a sleeping worker than it gains on the 20-100 us products of a small model's step,
/// and its bits depend on the thread count). So a split product uses two cores at most.
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
    let (ar, br) = (faer_ref(a), faer_ref(b));
    let k = a.cols();
    let muls = m.saturating_mul(n).saturating_mul(k);
    if muls < MIN_SPLIT_MULS || par.threads() < 2 {
        faer::linalg::matmul::matmul(dst, accum, ar, br, alpha, faer::Par::Seq);
        return;
    }
    // The columns of C when it is wider than tall, else its rows, split at a multiple of
    // 16 so that both halves keep whole vector registers.
    if n >= m {
        let h = (n.div_ceil(32) * 16).min(n);
        let (d0, d1) = dst.split_at_col_mut(h);
        let (b0, b1) = br.split_at_col(h);
        crate::team::join(
            || faer::linalg::matmul::matmul(d0, accum, ar, b0, alpha, faer::Par::Seq),
            || faer::linalg::matmul::matmul(d1, accum, ar, b1, alpha, faer::Par::Seq),
        );
    } else {
        let h = (m.div_ceil(32) * 16).min(m);
        let (d0, d1) = dst.split_at_row_mut(h);
        let (a0, a1) = ar.split_at_row(h);
        crate::team::join(
            || faer::linalg::matmul::matmul(d0, accum, a0, br, alpha, faer::Par::Seq),
            || faer::linalg::matmul::matmul(d1, accum, a1, br, alpha, faer::Par::Seq),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled<T: Float>(len: usize, seed: u64) -> Vec<T> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // invariant: a value in [-1, 1) is representable in f32 and f64.
                T::from((s >> 11) as f64 / (1u64 << 52) as f64 - 1.0).unwrap()
            })
            .collect()
    }

    /// Two threads split a product into halves of C, each computed as a whole product over the
    /// same k, so the split gives the sequential product's bits: a two-thread run of the trainer's
    /// split products reproduces a one-thread run.
    fn two_threads_give_the_sequential_bits<T>()
    where
        T: Float + MulAssign + faer::traits::ComplexField + Send + Sync + std::fmt::Debug,
    {
        let shapes = [
            (64, 256, 256),
            (64, 64, 256),
            (256, 64, 32),
            (300, 17, 40),
            (33, 500, 64),
            (64, 32, 64),
        ];
        for (m, n, k) in shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                for beta in [0.0, 1.0, 0.5] {
                    let a = filled::<T>(m * k, 1);
                    let b = filled::<T>(k * n, 2);
                    let c0 = filled::<T>(m * n, 3);
                    let run = |par| {
                        let av = if ta {
                            MatSlice::new(&a, k, m).unwrap().t()
                        } else {
                            MatSlice::new(&a, m, k).unwrap()
                        };
                        let bv = if tb {
                            MatSlice::new(&b, n, k).unwrap().t()
                        } else {
                            MatSlice::new(&b, k, n).unwrap()
                        };
                        let mut c = c0.clone();
                        let alpha = T::from(0.75).unwrap();
                        gemm(
                            alpha,
                            av,
                            bv,
                            T::from(beta).unwrap(),
                            MatSliceMut::new(&mut c, m, n).unwrap(),
                            par,
                        );
                        c
                    };
                    let seq = run(Parallelism::Sequential);
                    let two = run(Parallelism::Rayon(2));
                    let same = seq.iter().zip(&two).all(|(x, y)| x == y);
                    assert!(same, "{m}x{n}x{k} ta {ta} tb {tb} beta {beta}");
                }
            }
        }
    }

    #[test]
    fn two_threads_give_the_sequential_bits_f64() {
        two_threads_give_the_sequential_bits::<f64>();
    }

    #[test]
    fn two_threads_give_the_sequential_bits_f32() {
        two_threads_give_the_sequential_bits::<f32>();
    }
}
