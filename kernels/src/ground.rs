//! The generic reference loops: gemm, the affine and the additive couplings, for any float.
//!
//! They are written over `num_traits::Float` (with the compound assignments of `NumAssign`), not
//! over [`crate::Real`], so that they sit below it: `Real`'s default methods call them, the SIMD
//! kernels fall back to them, and the tests and property tests use them as the reference the
//! fast paths are compared with. The dual numbers run them as they are, so that a derivative
//! follows exactly the arithmetic written here.
//!
//! None of them validates its arguments; the checked entry points ([`crate::gemm::gemm`],
//! [`crate::coupling`]) do, before they get here.

use num_traits::{Float, NumAssign};
use rayon::prelude::*;

use crate::view::{MatSlice, MatSliceMut, Parallelism};

/// `c = alpha * op(a) * op(b) + beta * c`, the loop behind [`crate::Real::gemm_kernel`]'s default.
/// Shapes must already be validated.
///
/// Row i of C is computed as `beta * C[i, :] + alpha * sum_p op(A)[i, p] * op(B)[p, :]`, so the
/// inner loop runs along a row of B when B is not transposed, and as a dot product otherwise;
/// rows are independent, which is how the rayon variant splits the work.
///
/// `is_exact_zero` says which `alpha` and `beta` may be skipped: `==` is not enough for a dual
/// number, whose value may be 0 or 1 while its derivative is not, and `Float` cannot tell.
pub fn gemm<T>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
    is_exact_zero: impl Fn(T) -> bool + Sync,
) where
    T: Float + NumAssign + Send + Sync,
{
    let (m, n, k) = (c.rows, c.cols, a.cols());
    if m == 0 || n == 0 {
        return;
    }
    let ld = c.ld;
    let row_job = |i: usize, row: &mut [T]| {
        let row = &mut row[..n];
        // `is_exact_zero` rather than `==`: a dual `beta` or `alpha` whose value is 0 or 1 but
        // whose derivative is not must still be applied.
        if is_exact_zero(beta) {
            row.iter_mut().for_each(|v| *v = T::zero());
        } else if !is_exact_zero(beta - T::one()) {
            row.iter_mut().for_each(|v| *v *= beta);
        }
        if is_exact_zero(alpha) {
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

fn rows_of(len: usize, rows: usize) -> usize {
    len.checked_div(rows).unwrap_or(0)
}

/// The generic (and reference) affine forward. Lengths must agree.
///
/// # Panics
/// If `s`, `t` or `y` is shorter than `x`.
pub fn affine_forward<T: Float + NumAssign>(x: &[T], s: &[T], t: &[T], y: &mut [T], log_det: &mut [T]) {
    let d = rows_of(x.len(), log_det.len());
    if d == 0 {
        return;
    }
    for (i, l) in log_det.iter_mut().enumerate() {
        let r = i * d..(i + 1) * d;
        let mut sum = T::zero();
        for (((yv, &xv), &sv), &tv) in y[r.clone()].iter_mut().zip(&x[r.clone()]).zip(&s[r.clone()]).zip(&t[r]) {
            *yv = xv * sv.exp() + tv;
            sum += sv;
        }
        *l += sum;
    }
}

/// The generic (and reference) affine inverse. Lengths must agree.
///
/// # Panics
/// If `s`, `t` or `x` is shorter than `y`.
pub fn affine_inverse<T: Float + NumAssign>(y: &[T], s: &[T], t: &[T], x: &mut [T], log_det: &mut [T]) {
    let d = rows_of(y.len(), log_det.len());
    if d == 0 {
        return;
    }
    for (i, l) in log_det.iter_mut().enumerate() {
        let r = i * d..(i + 1) * d;
        let mut sum = T::zero();
        for (((xv, &yv), &sv), &tv) in x[r.clone()].iter_mut().zip(&y[r.clone()]).zip(&s[r.clone()]).zip(&t[r]) {
            *xv = (yv - tv) * (-sv).exp();
            sum += sv;
        }
        *l -= sum;
    }
}

/// The generic additive forward `y = x + t`.
pub fn additive_forward<T: Float>(x: &[T], t: &[T], y: &mut [T]) {
    for ((yv, &xv), &tv) in y.iter_mut().zip(x).zip(t) {
        *yv = xv + tv;
    }
}

/// The generic additive inverse `x = y - t`.
pub fn additive_inverse<T: Float>(y: &[T], t: &[T], x: &mut [T]) {
    for ((xv, &yv), &tv) in x.iter_mut().zip(y).zip(t) {
        *xv = yv - tv;
    }
}

/// The per-step constants of one Adam update (Kingma & Ba, 2015), in the parameters' scalar
/// type: see [`crate::optim::adam_update`] for the formula they enter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamCoefficients<T> {
    /// The learning rate.
    pub lr: T,
    /// `beta1`, the decay of the first moment.
    pub beta1: T,
    /// `1 - beta1`.
    pub one_minus_beta1: T,
    /// `beta2`, the decay of the second moment.
    pub beta2: T,
    /// `1 - beta2`.
    pub one_minus_beta2: T,
    /// The first moment's bias correction `1 - beta1^t` at step t (1-based).
    pub bias1: T,
    /// The second moment's bias correction `1 - beta2^t`.
    pub bias2: T,
    /// The denominator's `eps`.
    pub eps: T,
    /// The factor every gradient is multiplied by first (1, or the clipping factor).
    pub grad_scale: T,
}

/// One Adam update of every element, in this order and with these roundings:
/// `g = grad * grad_scale`, `m = beta1 m + (1 - beta1) g`, `v = beta2 v + ((1 - beta2) g) g`,
/// `value = value - lr (m / bias1) / (sqrt(v / bias2) + eps)`. Returns whether every updated value
/// is finite.
///
/// Every operation is a single IEEE operation (no fused multiply-add), so a vectorized copy of
/// this loop gives the same bits as the loop itself. Lengths must be equal.
#[inline(always)]
pub fn adam<T: Float>(value: &mut [T], grad: &[T], m: &mut [T], v: &mut [T], k: &AdamCoefficients<T>) -> bool {
    let mut finite = true;
    for (((w, &g), mi), vi) in value.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * k.grad_scale;
        *mi = k.beta1 * *mi + k.one_minus_beta1 * g;
        *vi = k.beta2 * *vi + k.one_minus_beta2 * g * g;
        let update = k.lr * (*mi / k.bias1) / ((*vi / k.bias2).sqrt() + k.eps);
        *w = *w - update;
        finite &= w.is_finite();
    }
    finite
}

/// Partial sums in [`crate::optim::sum_of_squares`]: 16 independent accumulators (two AVX-512 registers of
/// f64), so that the additions do not wait on each other and the order is the same on every
/// backend.
pub const SQUARES_LANES: usize = 16;

/// `sum_i widen(x_i)^2` in f64, accumulated in [`SQUARES_LANES`] partial sums: element `i` of
/// each full block of 16 goes to sum `i mod 16`, the tail to a 17th, then the sums are added in a
/// fixed tree. The order depends only on the length, never on the backend.
#[inline(always)]
pub fn sum_of_squares<T: Copy>(xs: &[T], widen: impl Fn(T) -> f64) -> f64 {
    let mut acc = [0.0f64; SQUARES_LANES];
    let blocks = xs.chunks_exact(SQUARES_LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for (a, &x) in acc.iter_mut().zip(block) {
            let x = widen(x);
            *a += x * x;
        }
    }
    let mut tail = 0.0;
    for &x in rest {
        let x = widen(x);
        tail += x * x;
    }
    let mut width = SQUARES_LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0] + tail
}
