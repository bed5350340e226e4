//! Coupling transforms on row-major `[N, D]` blocks, the inner loops of NICE and RealNVP layers.
//!
//! Direction as everywhere in exactflow: *forward* is data -> latent.
//!
//! | kernel | formula | log-det per row i |
//! |---|---|---|
//! | [`affine_forward`] | `y = x * exp(s) + t` | `log_det[i] += sum_j s[i, j]` |
//! | [`affine_inverse`] | `x = (y - t) * exp(-s)` | `log_det[i] -= sum_j s[i, j]` |
//! | [`additive_forward`] | `y = x + t` | 0 |
//! | [`additive_inverse`] | `x = y - t` | 0 |
//!
//! For `f32` and `f64` they run the SIMD code of [`crate::simd`] (AVX-512 / AVX2 when present);
//! every other [`Real`] runs the generic loops below, which are also the reference the SIMD code is
//! tested against. The `*_on` variants take an explicit [`Backend`] for tests and benchmarks.

use crate::error::{Error, Result};
use crate::real::Real;
use crate::simd::{Backend, SimdFloat};

fn check_block(op: &'static str, d: usize, rows: usize, parts: &[(&'static str, usize)]) -> Result<()> {
    let expected = rows
        .checked_mul(d)
        .ok_or_else(|| Error::invalid(op, "shape", format!("{rows} rows of width {d} overflow")))?;
    if d == 0 && rows > 0 {
        return Err(Error::invalid(
            op,
            "row width",
            "0 (a coupling block needs at least one column)",
        ));
    }
    for &(what, len) in parts {
        if len != expected {
            return Err(Error::LengthMismatch {
                op,
                what,
                expected,
                found: len,
            });
        }
    }
    Ok(())
}

/// Affine coupling, forward: `y = x * exp(s) + t` on `log_det.len()` rows of width `d`, adding
/// each row's `sum_j s[i, j]` (the log|det| of the elementwise map) to `log_det[i]`.
///
/// # Errors
/// [`Error::LengthMismatch`] when `x`, `s`, `t` or `y` is not `log_det.len() * d` long;
/// [`Error::InvalidArgument`] when `d == 0` with rows present.
///
/// # Examples
/// ```
/// use exactflow_kernels::coupling::affine_forward;
/// # fn main() -> exactflow_kernels::Result<()> {
/// let (x, s, t) = ([1.0, 2.0], [0.0, 2f64.ln()], [0.5, -1.0]);
/// let (mut y, mut log_det) = ([0.0; 2], [0.0]);
/// affine_forward(2, &x, &s, &t, &mut y, &mut log_det)?;
/// assert!((y[0] - 1.5).abs() < 1e-15 && (y[1] - 3.0).abs() < 1e-15);
/// assert!((log_det[0] - 2f64.ln()).abs() < 1e-15);
/// # Ok(())
/// # }
/// ```
pub fn affine_forward<T: Real>(d: usize, x: &[T], s: &[T], t: &[T], y: &mut [T], log_det: &mut [T]) -> Result<()> {
    check_block(
        "affine_forward",
        d,
        log_det.len(),
        &[("x", x.len()), ("s", s.len()), ("t", t.len()), ("y", y.len())],
    )?;
    T::affine_forward_kernel(x, s, t, y, log_det);
    Ok(())
}

/// Affine coupling, inverse: `x = (y - t) * exp(-s)`, subtracting each row's `sum_j s[i, j]`
/// from `log_det[i]` (the log|det| of the inverse map).
///
/// # Errors
/// As [`affine_forward`].
pub fn affine_inverse<T: Real>(d: usize, y: &[T], s: &[T], t: &[T], x: &mut [T], log_det: &mut [T]) -> Result<()> {
    check_block(
        "affine_inverse",
        d,
        log_det.len(),
        &[("y", y.len()), ("s", s.len()), ("t", t.len()), ("x", x.len())],
    )?;
    T::affine_inverse_kernel(y, s, t, x, log_det);
    Ok(())
}

/// Additive coupling, forward: `y = x + t` (log|det| 0).
///
/// # Errors
/// [`Error::LengthMismatch`] when the three slices differ in length.
pub fn additive_forward<T: Real>(x: &[T], t: &[T], y: &mut [T]) -> Result<()> {
    check_block("additive_forward", 1, y.len(), &[("x", x.len()), ("t", t.len())])?;
    T::additive_kernel(true, x, t, y);
    Ok(())
}

/// Additive coupling, inverse: `x = y - t` (log|det| 0).
///
/// # Errors
/// [`Error::LengthMismatch`] when the three slices differ in length.
pub fn additive_inverse<T: Real>(y: &[T], t: &[T], x: &mut [T]) -> Result<()> {
    check_block("additive_inverse", 1, x.len(), &[("y", y.len()), ("t", t.len())])?;
    T::additive_kernel(false, y, t, x);
    Ok(())
}

/// [`affine_forward`] on an explicit SIMD backend (the scalar one if the CPU lacks it).
///
/// # Errors
/// As [`affine_forward`].
pub fn affine_forward_on<T: SimdFloat>(
    backend: Backend,
    d: usize,
    x: &[T],
    s: &[T],
    t: &[T],
    y: &mut [T],
    log_det: &mut [T],
) -> Result<()> {
    check_block(
        "affine_forward_on",
        d,
        log_det.len(),
        &[("x", x.len()), ("s", s.len()), ("t", t.len()), ("y", y.len())],
    )?;
    T::simd_affine(backend, true, x, s, t, y, log_det);
    Ok(())
}

/// [`affine_inverse`] on an explicit SIMD backend (the scalar one if the CPU lacks it).
///
/// # Errors
/// As [`affine_forward`].
pub fn affine_inverse_on<T: SimdFloat>(
    backend: Backend,
    d: usize,
    y: &[T],
    s: &[T],
    t: &[T],
    x: &mut [T],
    log_det: &mut [T],
) -> Result<()> {
    check_block(
        "affine_inverse_on",
        d,
        log_det.len(),
        &[("y", y.len()), ("s", s.len()), ("t", t.len()), ("x", x.len())],
    )?;
    T::simd_affine(backend, false, y, s, t, x, log_det);
    Ok(())
}

/// [`additive_forward`] (`forward = true`) or [`additive_inverse`] on an explicit backend.
///
/// # Errors
/// [`Error::LengthMismatch`] when the three slices differ in length.
pub fn additive_on<T: SimdFloat>(backend: Backend, forward: bool, a: &[T], t: &[T], out: &mut [T]) -> Result<()> {
    check_block("additive_on", 1, out.len(), &[("input", a.len()), ("t", t.len())])?;
    T::simd_additive(backend, forward, a, t, out);
    Ok(())
}

/// `exp` in place on an explicit SIMD backend (the scalar one if the CPU lacks it).
pub fn exp_on<T: SimdFloat>(backend: Backend, xs: &mut [T]) {
    T::simd_exp(backend, xs);
}

fn rows_of(len: usize, rows: usize) -> usize {
    len.checked_div(rows).unwrap_or(0)
}

/// The generic (and reference) affine forward. Lengths must agree.
///
/// # Panics
/// If `s`, `t` or `y` is shorter than `x`.
pub fn generic_affine_forward<T: Real>(x: &[T], s: &[T], t: &[T], y: &mut [T], log_det: &mut [T]) {
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
pub fn generic_affine_inverse<T: Real>(y: &[T], s: &[T], t: &[T], x: &mut [T], log_det: &mut [T]) {
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
pub fn generic_additive_forward<T: Real>(x: &[T], t: &[T], y: &mut [T]) {
    for ((yv, &xv), &tv) in y.iter_mut().zip(x).zip(t) {
        *yv = xv + tv;
    }
}

/// The generic additive inverse `x = y - t`.
pub fn generic_additive_inverse<T: Real>(y: &[T], t: &[T], x: &mut [T]) {
    for ((xv, &yv), &tv) in x.iter_mut().zip(y).zip(t) {
        *xv = yv - tv;
    }
}
