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
//!
//! # Accuracy of the vectorized tanh
//! `tanh(x) = sign(x) e / (e + 2)` with `e = expm1(2|x|)`, so nothing cancels at any `|x|`. For
//! `f32` it is at most [`TANH_F32_MAX_ULPS`] ULP from the correctly rounded tanh, checked on every
//! finite f32 on both vector backends (the f64 tanh rounded to f32 is the reference): 96.1% of the
//! inputs come out correctly rounded, 3.9% one ULP off, 0.03% two (glibc's `tanhf`, sampled the
//! same way, is also 2 ULP). CI checks every 61st bit pattern; `PROPTEST_CASES` of 1000 or more
//! (the deep run) checks them all. It is odd bit for bit (`tanh(-x) = -tanh(x)`, `-0` stays `-0`),
//! NaN gives NaN, `±inf` gives `±1`, subnormals give themselves. For `f64` it is at most 4 ULP
//! from std's tanh (random tests); [`crate::Real::tanh_kernel`] uses it only for `f32`.

// This is the checked, `Real`-facing side; the kernels themselves live in the private
// `vectorized` module below `Real`, which `Real`'s f32/f64 methods call too.
use crate::real::Real;
use crate::vectorized::VectorKernels;

pub use crate::vectorized::Backend;

/// A float type with SIMD kernels: `f32` and `f64`. Sealed.
pub trait SimdFloat: Real + sealed::Sealed {
    /// `x = exp(x)` elementwise on the given backend (the scalar one if the CPU lacks it).
    fn simd_exp(backend: Backend, xs: &mut [Self]);
    /// `x = tanh(x)` elementwise on the given backend (the scalar one, std's `tanh`, if the CPU
    /// lacks it).
    fn simd_tanh(backend: Backend, xs: &mut [Self]);
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

            fn simd_tanh(backend: Backend, xs: &mut [Self]) {
                <$E as VectorKernels>::tanh(backend, xs);
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

/// The most the `f32` SIMD tanh is from the correctly rounded tanh, in ULP (see the module docs).
pub const TANH_F32_MAX_ULPS: u64 = 2;

/// `x = tanh(x)` elementwise with the best backend: for `f32` the SIMD tanh, for any other
/// [`crate::Real`] (`f64` included) its own `tanh` (see [`crate::Real::tanh_kernel`]).
pub fn tanh_in_place<T: crate::Real>(xs: &mut [T]) {
    T::tanh_kernel(xs);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Real::exp_f32_fast_kernel` is the SIMD exp in f32 (the bits of [`exp_in_place`]) and
    /// std's exp in f64 (its bits), on both signs, the underflow and overflow ranges and
    /// non-finite inputs.
    #[test]
    fn the_f32_only_exp_is_simd_in_f32_and_std_in_f64() {
        use crate::Real;
        let mut xs: Vec<f64> = (-2400..=1000).map(|i| i as f64 * 0.0437).collect();
        xs.extend([
            0.0,
            -0.0,
            -104.0,
            89.0,
            -746.0,
            710.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ]);
        let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
        let mut fast = xs32.clone();
        f32::exp_f32_fast_kernel(&mut fast);
        let mut simd = xs32.clone();
        exp_in_place(&mut simd);
        let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits32(&fast), bits32(&simd));
        let mut fast = xs.clone();
        f64::exp_f32_fast_kernel(&mut fast);
        for (x, y) in xs.iter().zip(&fast) {
            let e = x.exp();
            assert!(e.to_bits() == y.to_bits() || (e.is_nan() && y.is_nan()), "exp({x})");
        }
    }

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

    /// The correctly rounded f32 tanh, up to a double rounding that would need the f64 value
    /// within 2^-29 relative of an f32 midpoint.
    fn tanh32_reference(x: f32) -> f32 {
        (x as f64).tanh() as f32
    }

    /// Special values, every backend, every position in a slice (body lanes and padded tail).
    #[test]
    fn tanh_special_values_in_every_lane() {
        let specials: [f64; 18] = [
            0.0,
            -0.0,
            1.0,
            -0.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            9.0,
            9.01,
            10.0,
            -10.5,
            19.0,
            20.0,
            -21.0,
            1e30,
            1e-310,
            -1e-40,
            0.3466,
        ];
        for b in Backend::available() {
            for len in 0..24 {
                for shift in 0..specials.len() {
                    let in64: Vec<f64> = (0..len).map(|i| specials[(i + shift) % specials.len()]).collect();
                    let mut y64 = in64.clone();
                    f64::simd_tanh(b, &mut y64);
                    let in32: Vec<f32> = in64.iter().map(|&v| v as f32).collect();
                    let mut y32 = in32.clone();
                    f32::simd_tanh(b, &mut y32);
                    for (x, y) in in64.iter().zip(&y64) {
                        assert!(ulps64(*y, x.tanh()) <= 4, "{b:?} tanh({x}) = {y}, std {}", x.tanh());
                        assert_eq!(
                            y.is_sign_negative(),
                            x.is_sign_negative() && !x.is_nan(),
                            "{b:?} sign of tanh({x})"
                        );
                    }
                    for (x, y) in in32.iter().zip(&y32) {
                        let r = tanh32_reference(*x);
                        assert!(
                            ulps32(*y, r) <= TANH_F32_MAX_ULPS,
                            "{b:?} tanh({x}) = {y}, reference {r}"
                        );
                        assert_eq!(
                            y.is_sign_negative(),
                            x.is_sign_negative() && !x.is_nan(),
                            "{b:?} sign of tanh({x})"
                        );
                    }
                }
            }
            // Exact where the answer is representable: +-1 past the thresholds, x for subnormals.
            let mut e = [
                f32::INFINITY,
                -f32::MAX,
                9.5,
                f32::from_bits(3),
                -f32::from_bits(0x007f_ffff),
            ];
            f32::simd_tanh(b, &mut e);
            assert_eq!(
                e,
                [1.0, -1.0, 1.0, f32::from_bits(3), -f32::from_bits(0x007f_ffff)],
                "{b:?}"
            );
            let mut e = [f64::INFINITY, -f64::MAX, 19.5, f64::from_bits(3)];
            f64::simd_tanh(b, &mut e);
            assert_eq!(e, [1.0, -1.0, 1.0, f64::from_bits(3)], "{b:?}");
        }
    }

    /// The f32 bound on non-negative finite floats (every 61st bit pattern, or all of them in a
    /// deep run), and oddness bit for bit on the same inputs.
    #[test]
    fn tanh_f32_within_its_bound_on_every_float() {
        let deep = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n >= 1000);
        let stride = if deep { 1 } else { 61 };
        let end = f32::INFINITY.to_bits();
        for b in Backend::available() {
            let mut bits = 0u32;
            let mut xs = Vec::with_capacity(1 << 16);
            while bits < end {
                xs.clear();
                while bits < end && xs.len() < 1 << 16 {
                    xs.push(f32::from_bits(bits));
                    bits = bits.saturating_add(stride);
                }
                let mut y = xs.clone();
                f32::simd_tanh(b, &mut y);
                let mut neg: Vec<f32> = xs.iter().map(|v| -v).collect();
                f32::simd_tanh(b, &mut neg);
                for ((x, y), n) in xs.iter().zip(&y).zip(&neg) {
                    let r = tanh32_reference(*x);
                    assert!(
                        ulps32(*y, r) <= TANH_F32_MAX_ULPS,
                        "{b:?} tanh({x:e}) = {y:e}, reference {r:e}"
                    );
                    assert_eq!(n.to_bits(), (-y).to_bits(), "{b:?} tanh(-{x:e})");
                }
            }
        }
    }

    /// The f64 bound against std's tanh on random inputs: log-uniform magnitudes from 1e-20 to
    /// about 30 and uniform ones on [-20, 20].
    #[test]
    fn tanh_f64_within_4_ulp_of_std() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let xs: Vec<f64> = (0..200_000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                let v = if i % 2 == 0 {
                    40.0 * u - 20.0
                } else {
                    10f64.powf(-20.0 + 21.5 * u)
                };
                if i % 3 == 0 { -v } else { v }
            })
            .collect();
        for b in Backend::available() {
            let mut y = xs.clone();
            f64::simd_tanh(b, &mut y);
            for (x, y) in xs.iter().zip(&y) {
                assert!(
                    ulps64(*y, x.tanh()) <= 4,
                    "{b:?} tanh({x:e}) = {y:e}, std {:e}",
                    x.tanh()
                );
            }
        }
    }

    #[test]
    fn tanh_in_place_uses_the_simd_tanh_for_f32_only() {
        let mut a = [0.3f64, -2.0];
        tanh_in_place(&mut a);
        assert_eq!(a, [0.3f64.tanh(), (-2f64).tanh()]);
        let xs = [0.3f32, -2.0, 1e-4];
        let mut f = xs;
        tanh_in_place(&mut f);
        let mut v = xs;
        f32::simd_tanh(Backend::detect(), &mut v);
        assert_eq!(f, v);
        let mut d = [autodiff::F1::var(0.5)];
        tanh_in_place(&mut d);
        let t = 0.5f64.tanh();
        assert_eq!((d[0].x, d[0].dx), (t, 1.0 - t * t));
    }
}
