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
//! every other [`Real`] runs the generic loops re-exported below ([`generic_affine_forward`] and
//! the rest), which are also the reference the SIMD code is tested against. The `*_on` variants
//! take an explicit [`Backend`] for tests and benchmarks.

use crate::error::{Error, Result};
use crate::real::Real;
use crate::simd::{Backend, SimdFloat};

// The reference loops live in the ground module, below `Real` (whose default methods run them);
// they keep their public names here.
pub use crate::ground::{
    additive_forward as generic_additive_forward, additive_inverse as generic_additive_inverse,
    affine_forward as generic_affine_forward, affine_inverse as generic_affine_inverse,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use autodiff::F1;

    #[test]
    fn affine_forward_and_inverse_on_known_values() {
        // Two rows of width 3.
        let x = [1.0, -2.0, 0.5, 3.0, 0.0, -1.0];
        let s = [0.0, 2f64.ln(), -(2f64.ln()), 1.0, -1.0, 0.5];
        let t = [0.5, 1.0, -1.0, 0.0, 2.0, 0.25];
        let mut y = [0.0; 6];
        let mut ld = [10.0, -1.0];
        affine_forward(3, &x, &s, &t, &mut y, &mut ld).unwrap();
        let want = [1.5, -3.0, -0.75, 3.0 * 1f64.exp(), 2.0, -(0.5f64.exp()) + 0.25];
        for (g, w) in y.iter().zip(&want) {
            // exp is at most 4 ulp off std's, then one fused multiply-add: 6 eps relative.
            assert!((g - w).abs() <= 6.0 * f64::EPSILON * w.abs().max(1.0), "{g} vs {w}");
        }
        assert!((ld[0] - 10.0).abs() <= 4.0 * f64::EPSILON * 10.0);
        assert!((ld[1] - (-1.0 + 0.5)).abs() <= 4.0 * f64::EPSILON);
        let mut back = [0.0; 6];
        affine_inverse(3, &y, &s, &t, &mut back, &mut ld).unwrap();
        for (b, v) in back.iter().zip(&x) {
            // Round trip: ~10 eps of |x| + |t| exp(-s) (see the property tests for the bound).
            assert!((b - v).abs() <= 16.0 * f64::EPSILON * 4.0, "{b} vs {v}");
        }
        assert!((ld[0] - 10.0).abs() <= 8.0 * f64::EPSILON * 10.0);
        assert!((ld[1] + 1.0).abs() <= 8.0 * f64::EPSILON);
    }

    #[test]
    fn additive_is_exact() {
        let x = [1.0f32, 2.5, -3.0];
        let t = [0.5f32, -0.5, 1.0];
        let mut y = [0.0f32; 3];
        additive_forward(&x, &t, &mut y).unwrap();
        assert_eq!(y, [1.5, 2.0, -2.0]);
        let mut back = [0.0f32; 3];
        additive_inverse(&y, &t, &mut back).unwrap();
        assert_eq!(back, x);
        for b in Backend::available() {
            let mut o = [0.0f32; 3];
            additive_on(b, false, &y, &t, &mut o).unwrap();
            assert_eq!(o, x, "{b:?}");
        }
    }

    #[test]
    fn length_mismatches_name_the_argument() {
        let four = [0.0f64; 4];
        let three = [0.0f64; 3];
        let mut out4 = [0.0f64; 4];
        let mut ld2 = [0.0f64; 2];
        let expect = |r: Result<()>, what: &str| match r {
            Err(Error::LengthMismatch {
                what: w,
                expected: 4,
                found: 3,
                ..
            }) => assert_eq!(w, what),
            other => panic!("expected a length mismatch on {what}, got {other:?}"),
        };
        expect(affine_forward(2, &three, &four, &four, &mut out4, &mut ld2), "x");
        expect(affine_forward(2, &four, &three, &four, &mut out4, &mut ld2), "s");
        expect(affine_forward(2, &four, &four, &three, &mut out4, &mut ld2), "t");
        expect(affine_forward(2, &four, &four, &four, &mut [0.0; 3], &mut ld2), "y");
        expect(affine_inverse(2, &three, &four, &four, &mut out4, &mut ld2), "y");
        expect(affine_inverse(2, &four, &four, &four, &mut [0.0; 3], &mut ld2), "x");
        expect(
            affine_forward_on(Backend::Scalar, 2, &four, &three, &four, &mut out4, &mut ld2),
            "s",
        );
        expect(
            affine_inverse_on(Backend::Avx2, 2, &four, &four, &three, &mut out4, &mut ld2),
            "t",
        );
        // log_det's length sets the row count: 3 rows of width 2 need 6 entries.
        assert!(matches!(
            affine_forward(2, &four, &four, &four, &mut out4, &mut [0.0; 3]),
            Err(Error::LengthMismatch {
                expected: 6,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            affine_forward(0, &[], &[], &[], &mut [], &mut ld2),
            Err(Error::InvalidArgument { .. })
        ));
        // No rows: fine for any width.
        affine_forward::<f64>(0, &[], &[], &[], &mut [], &mut []).unwrap();
        affine_forward::<f64>(5, &[], &[], &[], &mut [], &mut []).unwrap();
        let mut out3 = [0.0f64; 3];
        assert!(matches!(
            additive_forward(&four, &three, &mut out3),
            Err(Error::LengthMismatch {
                what: "x",
                expected: 3,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            additive_inverse(&three, &four, &mut out3),
            Err(Error::LengthMismatch {
                what: "t",
                expected: 3,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            additive_on(Backend::Avx512, true, &three, &three, &mut out4),
            Err(Error::LengthMismatch {
                what: "input",
                expected: 4,
                found: 3,
                ..
            })
        ));
    }

    #[test]
    fn dual_numbers_run_the_generic_reference() {
        // d/ds of y = x exp(s) + t is x exp(s); of the log-det, 1.
        let x = [F1::cst(2.0)];
        let s = [F1::var(0.5)];
        let t = [F1::cst(1.0)];
        let mut y = [F1::cst(0.0)];
        let mut ld = [F1::cst(0.0)];
        affine_forward(1, &x, &s, &t, &mut y, &mut ld).unwrap();
        assert_eq!(y[0].x, 2.0 * 0.5f64.exp() + 1.0);
        assert_eq!(y[0].dx, 2.0 * 0.5f64.exp());
        assert_eq!((ld[0].x, ld[0].dx), (0.5, 1.0));
        let mut back = [F1::cst(0.0)];
        affine_inverse(1, &y, &s, &t, &mut back, &mut ld).unwrap();
        assert!((back[0].x - 2.0).abs() <= 4.0 * f64::EPSILON);
        // x(s) = (y(s) - t) exp(-s) = x: the derivative cancels to rounding.
        assert!(back[0].dx.abs() <= 8.0 * f64::EPSILON);
        assert_eq!((ld[0].x, ld[0].dx), (0.0, 0.0));
    }

    #[test]
    fn dispatch_equals_scalar_reference_within_exp_bound() {
        let d = 13;
        let n = 5;
        let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let s: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.11).cos() * 3.0).collect();
        let t: Vec<f32> = (0..n * d).map(|i| i as f32 * 0.01 - 0.3).collect();
        let (mut y_ref, mut y) = (vec![0.0f32; n * d], vec![0.0f32; n * d]);
        let (mut l_ref, mut l) = (vec![0.0f32; n], vec![0.0f32; n]);
        generic_affine_forward(&x, &s, &t, &mut y_ref, &mut l_ref);
        affine_forward(d, &x, &s, &t, &mut y, &mut l).unwrap();
        for k in 0..n * d {
            let scale = (x[k] as f64).abs() * (s[k] as f64).exp() + (t[k] as f64).abs();
            // 4 ulp of exp + the roundings of the product and sum: 6 eps (|x| e^s + |t|).
            assert!(
                ((y[k] - y_ref[k]) as f64).abs() <= 6.0 * f32::EPSILON as f64 * scale,
                "k = {k}"
            );
        }
        for i in 0..n {
            let abs_sum: f64 = s[i * d..(i + 1) * d].iter().map(|v| v.abs() as f64).sum();
            // Two summation orders of d terms, each within gamma_d of the exact sum.
            let gamma = d as f64 * f32::EPSILON as f64 / 2.0 / (1.0 - d as f64 * f32::EPSILON as f64 / 2.0);
            assert!(((l[i] - l_ref[i]) as f64).abs() <= 2.0 * gamma * abs_sum, "row {i}");
        }
    }
}
