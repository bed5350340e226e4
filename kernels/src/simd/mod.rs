//! SIMD kernels with runtime CPU-feature detection: a vectorized exp and the coupling transforms.
//!
//! One generic body per kernel (written against the small `Lanes` abstraction of the private
//! module `lanes`) is compiled three times: for AVX-512F, for AVX2 + FMA, and, on every other CPU,
//! replaced by a plain scalar loop over std's `exp`. [`Backend::detect`] picks the best backend the running CPU has
//! (once, then cached); the environment variable `EXACTFLOW_SIMD=scalar|avx2|avx512` lowers the
//! choice, for comparisons and debugging (a backend the CPU lacks is never used).
//!
//! # Accuracy of the vectorized exp
//! At most 4 ULP from std's `exp` over the whole finite input range, subnormal results and
//! overflow to +inf included; NaN gives NaN, -inf gives 0, +inf gives +inf. ULP distance is counted
//! on the ordered bit patterns, so +inf is one ULP above `MAX`. The bound is checked by the
//! property tests on random and edge inputs; measured, it is 1 ULP (f64) and 2 ULP (f32).

mod lanes;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use std::sync::OnceLock;

use lanes::Lanes;

/// An instruction set the SIMD kernels can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Portable scalar code with std's `exp` (also the reference the others are tested against).
    Scalar,
    /// x86-64 AVX2 with FMA: 4 f64 or 8 f32 lanes.
    Avx2,
    /// x86-64 AVX-512F: 8 f64 or 16 f32 lanes.
    Avx512,
}

impl Backend {
    /// The best backend this CPU supports, lowered by `EXACTFLOW_SIMD` if set. Cached after the
    /// first call.
    pub fn detect() -> Backend {
        static CHOICE: OnceLock<Backend> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            let best = Backend::available().into_iter().last().unwrap_or(Backend::Scalar);
            match std::env::var("EXACTFLOW_SIMD")
                .ok()
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("scalar") => Backend::Scalar,
                Some("avx2") if Backend::Avx2.is_supported() => Backend::Avx2,
                _ => best,
            }
        })
    }

    /// Whether the running CPU can execute this backend.
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every backend this CPU supports, from the most portable to the widest.
    pub fn available() -> Vec<Backend> {
        [Backend::Scalar, Backend::Avx2, Backend::Avx512]
            .into_iter()
            .filter(|b| b.is_supported())
            .collect()
    }

    /// A lower-case name ("scalar", "avx2", "avx512").
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// Lanes per register for an element of `bytes` bytes (1 for the scalar backend).
    pub fn lanes(self, bytes: usize) -> usize {
        match self {
            Backend::Scalar => 1,
            Backend::Avx2 => 32 / bytes,
            Backend::Avx512 => 64 / bytes,
        }
    }

    /// This backend if the CPU supports it, the scalar one otherwise: never run instructions the
    /// CPU lacks.
    fn checked(self) -> Backend {
        if self.is_supported() { self } else { Backend::Scalar }
    }
}

/// Registers that have a vectorized exp.
trait ExpLanes: Lanes {
    fn exp(self) -> Self;
}

/// Rows per block are chosen so that a block of `s` (about 16 KiB) stays in L1 between the
/// elementwise pass and the row sums.
const BLOCK_ELEMS: usize = 4096;

#[inline(always)]
fn rows_per_block(d: usize) -> usize {
    (BLOCK_ELEMS / d.max(1)).max(1)
}

// The elementwise operations are passed in as closures that the `#[target_feature]` entry points
// define themselves: a closure inherits the target features of the function it is written in, but
// one written here (in a plain generic function) would be compiled for the baseline CPU and every
// intrinsic in it would become an out-of-line call (measured: 10x slower than scalar code).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn affine_body<L: Lanes>(
    forward: bool,
    a: &[L::E],
    s: &[L::E],
    t: &[L::E],
    out: &mut [L::E],
    log_det: &mut [L::E],
    fwd: impl Fn(L, L, L) -> L,
    inv: impl Fn(L, L, L) -> L,
) {
    let n = log_det.len();
    if n == 0 {
        return;
    }
    let d = a.len() / n;
    let rows = rows_per_block(d);
    for (blk, ld) in log_det.chunks_mut(rows).enumerate() {
        let lo = blk * rows * d;
        let hi = lo + ld.len() * d;
        let (a, s, t, out) = (&a[lo..hi], &s[lo..hi], &t[lo..hi], &mut out[lo..hi]);
        if forward {
            lanes::zip3::<L>(a, s, t, out, &fwd);
        } else {
            lanes::zip3::<L>(a, s, t, out, &inv);
        }
        if d > 0 {
            for (l, srow) in ld.iter_mut().zip(s.chunks_exact(d)) {
                let sum = lanes::row_sum::<L>(srow);
                *l = if forward { *l + sum } else { *l - sum };
            }
        }
    }
}

/// Generates the `#[target_feature]` entry points of one backend for one element type.
#[cfg(target_arch = "x86_64")]
macro_rules! entries {
    ($modname:ident, $feat:literal, $L:ty, $E:ty, $expfn:path) => {
        mod $modname {
            use super::*;

            impl ExpLanes for $L {
                #[inline(always)]
                fn exp(self) -> Self {
                    $expfn(self)
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn exp(xs: &mut [$E]) {
                lanes::map_in_place::<$L>(xs, |v: $L| v.exp())
            }

            #[target_feature(enable = $feat)]
            pub(super) fn affine(forward: bool, a: &[$E], s: &[$E], t: &[$E], out: &mut [$E], ld: &mut [$E]) {
                affine_body::<$L>(
                    forward,
                    a,
                    s,
                    t,
                    out,
                    ld,
                    |x: $L, s: $L, t: $L| x.fma(s.exp(), t),
                    |y: $L, s: $L, t: $L| y.sub(t).mul(s.neg().exp()),
                )
            }

            #[target_feature(enable = $feat)]
            pub(super) fn additive(forward: bool, a: &[$E], t: &[$E], out: &mut [$E]) {
                if forward {
                    lanes::zip2::<$L>(a, t, out, |x: $L, t: $L| x.add(t))
                } else {
                    lanes::zip2::<$L>(a, t, out, |y: $L, t: $L| y.sub(t))
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
entries!(avx2_f64, "avx2,fma", avx2::F64x4, f64, lanes::exp_f64);
#[cfg(target_arch = "x86_64")]
entries!(avx2_f32, "avx2,fma", avx2::F32x8, f32, lanes::exp_f32);
#[cfg(target_arch = "x86_64")]
entries!(avx512_f64, "avx512f", avx512::F64x8, f64, lanes::exp_f64);
#[cfg(target_arch = "x86_64")]
entries!(avx512_f32, "avx512f", avx512::F32x16, f32, lanes::exp_f32);

/// A float type with SIMD kernels: `f32` and `f64`. Sealed.
pub trait SimdFloat: crate::Real + sealed::Sealed {
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

macro_rules! simd_float {
    ($E:ty, $m2:ident, $m512:ident) => {
        impl SimdFloat for $E {
            fn simd_exp(backend: Backend, xs: &mut [Self]) {
                match backend.checked() {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `checked` confirmed the CPU supports the backend's features.
                    Backend::Avx512 => unsafe { $m512::exp(xs) },
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx2 => unsafe { $m2::exp(xs) },
                    _ => xs.iter_mut().for_each(|v| *v = v.exp()),
                }
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
                assert!(a.len() == out.len() && s.len() == out.len() && t.len() == out.len());
                assert!(if log_det.is_empty() {
                    out.is_empty()
                } else {
                    out.len() % log_det.len() == 0
                });
                match backend.checked() {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `checked` confirmed the CPU supports the backend's features.
                    Backend::Avx512 => unsafe { $m512::affine(forward, a, s, t, out, log_det) },
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx2 => unsafe { $m2::affine(forward, a, s, t, out, log_det) },
                    _ => {
                        if forward {
                            crate::coupling::generic_affine_forward(a, s, t, out, log_det)
                        } else {
                            crate::coupling::generic_affine_inverse(a, s, t, out, log_det)
                        }
                    }
                }
            }

            fn simd_additive(backend: Backend, forward: bool, a: &[Self], t: &[Self], out: &mut [Self]) {
                assert!(a.len() == out.len() && t.len() == out.len());
                match backend.checked() {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `checked` confirmed the CPU supports the backend's features.
                    Backend::Avx512 => unsafe { $m512::additive(forward, a, t, out) },
                    #[cfg(target_arch = "x86_64")]
                    Backend::Avx2 => unsafe { $m2::additive(forward, a, t, out) },
                    _ => {
                        if forward {
                            crate::coupling::generic_additive_forward(a, t, out)
                        } else {
                            crate::coupling::generic_additive_inverse(a, t, out)
                        }
                    }
                }
            }
        }
    };
}

simd_float!(f64, avx2_f64, avx512_f64);
simd_float!(f32, avx2_f32, avx512_f32);

/// `x = exp(x)` elementwise with the best backend: for `f32`/`f64` the SIMD exp (at most 4 ULP
/// from std's), for any other [`crate::Real`] its own `exp`.
pub fn exp_in_place<T: crate::Real>(xs: &mut [T]) {
    T::exp_kernel(xs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coupling::exp_on;

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

    #[test]
    fn backends_are_listed_and_detected() {
        let av = Backend::available();
        assert_eq!(av[0], Backend::Scalar);
        assert!(av.iter().all(|b| b.is_supported()));
        assert!(Backend::detect().is_supported());
        assert_eq!(Backend::Avx2.lanes(8), 4);
        assert_eq!(Backend::Avx512.lanes(4), 16);
        assert_eq!(Backend::Scalar.lanes(8), 1);
        assert_eq!(Backend::Avx512.name(), "avx512");
        // An unsupported backend falls back to scalar rather than executing missing instructions.
        assert!(Backend::Avx512.checked().is_supported());
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
                    exp_on(b, &mut xs);
                    for (x, y) in input.iter().zip(&xs) {
                        // The documented accuracy: 4 ulp.
                        assert!(ulps64(*y, x.exp()) <= 4, "{b:?} exp({x}) = {y}, std {}", x.exp());
                    }
                }
            }
            let mut e = [1.0f64, 0.0, f64::NEG_INFINITY, f64::INFINITY];
            exp_on(b, &mut e);
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
            exp_on(b, &mut f);
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
