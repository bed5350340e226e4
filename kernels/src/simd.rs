//! SIMD kernels with runtime CPU-feature detection: a vectorized exp and the coupling transforms.
//!
//! One generic body per kernel is compiled three times: for AVX-512F, for AVX2 + FMA, and, on
//! every other CPU, replaced by a plain scalar loop over std's `exp`. [`Backend::detect`] picks the
//! best backend the running CPU has (once, then cached); the environment variable
//! `EXACTFLOW_SIMD=scalar|avx2|avx512` lowers the choice, for comparisons and debugging (a backend
//! the CPU lacks is never used).
//!
//! A backend the CPU lacks cannot be run by mistake either: the vectorized code is reachable only
//! through a zero-sized CPU-feature token that runtime detection alone can make, so the `unsafe`
//! inside is sound by construction, whatever backend is asked for ([`SimdFloat`]'s methods,
//! [`crate::coupling::affine_forward_on`] and the other `*_on` functions).
//!
//! # Accuracy of the vectorized exp
//! At most 4 ULP from std's `exp` over the whole finite input range, subnormal results and
//! overflow to +inf included; NaN gives NaN, -inf gives 0, +inf gives +inf. ULP distance is counted
//! on the ordered bit patterns, so +inf is one ULP above `MAX`. The bound is checked by the
//! property tests on random and edge inputs; measured, it is 1 ULP (f64) and 2 ULP (f32).

// This is the checked, `Real`-facing side; the kernels themselves live in the private
// `vectorized` module below `Real`, which `Real`'s f32/f64 methods call too.
use crate::real::Real;
use crate::vectorized::VectorKernels;

pub use crate::vectorized::Backend;

/// A float type with SIMD kernels: `f32` and `f64`. Sealed.
pub trait SimdFloat: Real + sealed::Sealed {
    /// `x = exp(x)` elementwise on the given backend (the scalar one if the CPU lacks it).
    fn simd_exp(backend: Backend, xs: &mut [Self]);
    /// Affine coupling (forward: `out = a * exp(s) + t`, `log_det += row sums of s`; inverse:
    /// `out = (a - t) * exp(-s)`, `log_det -= row sums of s`) on the given backend. Lengths must
    /// have been checked: `a`, `s`, `t`, `out` hold `log_det.len()` rows of equal width.
    fn simd_affine(
        backend: Backend,
        forward: bool,
        a: &[Self],
        s: &[Self],
        t: &[Self],
        out: &mut [Self],
        log_det: &mut [Self],
    );
    /// Additive coupling (forward: `out = a + t`; inverse: `out = a - t`) on the given backend.
    fn simd_additive(backend: Backend, forward: bool, a: &[Self], t: &[Self], out: &mut [Self]);
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

// One impl per float type rather than a blanket one: `VectorKernels::exp` and `Float::exp` would
// be ambiguous on a type parameter.
macro_rules! simd_float {
    ($E:ty) => {
        impl SimdFloat for $E {
            fn simd_exp(backend: Backend, xs: &mut [Self]) {
                <$E as VectorKernels>::exp(backend, xs);
            }

            fn simd_affine(
                backend: Backend,
                forward: bool,
                a: &[Self],
                s: &[Self],
                t: &[Self],
                out: &mut [Self],
                log_det: &mut [Self],
            ) {
                <$E as VectorKernels>::affine(backend, forward, a, s, t, out, log_det);
            }

            fn simd_additive(backend: Backend, forward: bool, a: &[Self], t: &[Self], out: &mut [Self]) {
                <$E as VectorKernels>::additive(backend, forward, a, t, out);
            }
        }
    };
}

simd_float!(f64);
simd_float!(f32);

/// `x = exp(x)` elementwise with the best backend: for `f32`/`f64` the SIMD exp (at most 4 ULP
/// from std's), for any other [`crate::Real`] its own `exp`.
pub fn exp_in_place<T: crate::Real>(xs: &mut [T]) {
    T::exp_kernel(xs);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place, on bit patterns ordered like the numbers (so +inf is
    /// one ulp above MAX and -0 equals +0). NaN is at distance 0 from NaN, and infinitely far
    /// (u64::MAX) from anything else.
    fn ulps64(a: f64, b: f64) -> u64 {
        if a.is_nan() || b.is_nan() {
            return if a.is_nan() && b.is_nan() { 0 } else { u64::MAX };
        }
        let key = |v: f64| {
            let bits = v.to_bits() as i64;
            if bits < 0 { -(bits & i64::MAX) } else { bits }
        };
        (key(a) as i128 - key(b) as i128).unsigned_abs() as u64
    }

    fn ulps32(a: f32, b: f32) -> u64 {
        if a.is_nan() || b.is_nan() {
            return if a.is_nan() && b.is_nan() { 0 } else { u64::MAX };
        }
        let key = |v: f32| {
            let bits = v.to_bits() as i32;
            if bits < 0 {
                -(bits & i32::MAX) as i64
            } else {
                bits as i64
            }
        };
        (key(a) - key(b)).unsigned_abs()
    }

    #[test]
    fn ulp_distance_orders_bit_patterns() {
        assert_eq!(ulps64(f64::MAX, f64::INFINITY), 1);
        assert_eq!(ulps64(0.0, -0.0), 0);
        assert_eq!(ulps64(f64::from_bits(1), -f64::from_bits(1)), 2);
        assert_eq!(ulps64(f64::NAN, f64::NAN), 0);
        assert_eq!(ulps64(f64::NAN, 1.0), u64::MAX);
        assert_eq!(ulps32(f32::MAX, f32::INFINITY), 1);
        assert_eq!(ulps32(1.0, 1.0 + f32::EPSILON), 1);
    }

    /// Special values, every backend, every position in a slice (body lanes and padded tail).
    #[test]
    fn exp_special_values_in_every_lane() {
        let specials64 = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            709.782712893384,
            709.79,
            -745.13,
            -746.0,
            -1e308,
            1e308,
            1e-300,
        ];
        for b in Backend::available() {
            for len in 0..24 {
                for shift in 0..specials64.len() {
                    let input: Vec<f64> = (0..len).map(|i| specials64[(i + shift) % specials64.len()]).collect();
                    let mut xs = input.clone();
                    f64::simd_exp(b, &mut xs);
                    for (x, y) in input.iter().zip(&xs) {
                        // The documented accuracy: 4 ulp.
                        assert!(ulps64(*y, x.exp()) <= 4, "{b:?} exp({x}) = {y}, std {}", x.exp());
                    }
                }
            }
            let mut e = [1.0f64, 0.0, f64::NEG_INFINITY, f64::INFINITY];
            f64::simd_exp(b, &mut e);
            assert!(ulps64(e[0], std::f64::consts::E) <= 4);
            assert_eq!(&e[1..], &[1.0, 0.0, f64::INFINITY]);
            let mut f = [
                1.0f32,
                0.0,
                f32::NEG_INFINITY,
                f32::INFINITY,
                f32::NAN,
                88.7228,
                88.73,
                -103.3,
                -104.0,
            ];
            let input = f;
            f32::simd_exp(b, &mut f);
            for (x, y) in input.iter().zip(&f) {
                assert!(ulps32(*y, x.exp()) <= 4, "{b:?} exp({x}) = {y}, std {}", x.exp());
            }
        }
    }

    #[test]
    fn exp_in_place_uses_each_types_exp() {
        let mut a = [0.5f64, -2.0];
        exp_in_place(&mut a);
        assert!(ulps64(a[0], 0.5f64.exp()) <= 4 && ulps64(a[1], (-2f64).exp()) <= 4);
        let mut d = [autodiff::F1::var(0.5)];
        exp_in_place(&mut d);
        assert_eq!((d[0].x, d[0].dx), (0.5f64.exp(), 0.5f64.exp()));
    }

    #[test]
    fn row_sums_and_affine_per_backend_match_scalar() {
        for b in Backend::available() {
            for d in 1..20usize {
                let n = 3;
                let x: Vec<f64> = (0..n * d).map(|i| i as f64 * 0.25 - 2.0).collect();
                // Powers of two in s: the row sums are exact in any order.
                let s: Vec<f64> = (0..n * d).map(|i| [0.5, -0.25, 1.0, -2.0][i % 4]).collect();
                let t: Vec<f64> = (0..n * d).map(|i| 1.0 - i as f64 * 0.125).collect();
                let (mut y0, mut y1) = (vec![0.0; n * d], vec![0.0; n * d]);
                let (mut l0, mut l1) = (vec![1.0; n], vec![1.0; n]);
                f64::simd_affine(Backend::Scalar, true, &x, &s, &t, &mut y0, &mut l0);
                f64::simd_affine(b, true, &x, &s, &t, &mut y1, &mut l1);
                assert_eq!(l0, l1, "{b:?} d = {d}");
                for k in 0..n * d {
                    let scale = x[k].abs() * s[k].exp() + t[k].abs();
                    // 4 ulp of exp, then a fused vs. a separate multiply-add: 6 eps of the scale.
                    assert!(
                        (y0[k] - y1[k]).abs() <= 6.0 * f64::EPSILON * scale,
                        "{b:?} d = {d} k = {k}"
                    );
                }
                let mut back = vec![0.0; n * d];
                f64::simd_affine(b, false, &y1, &s, &t, &mut back, &mut l1);
                assert_eq!(l1, vec![1.0; n]);
                for k in 0..n * d {
                    // Round trip: 10 eps (|x| + |t| e^-s), derived in the property tests.
                    let bound = 10.0 * f64::EPSILON * (x[k].abs() + t[k].abs() * (-s[k]).exp());
                    assert!((back[k] - x[k]).abs() <= bound, "{b:?} d = {d} k = {k}");
                }
            }
        }
    }
}
