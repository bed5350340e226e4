//! The SIMD kernels for `f32` and `f64` with runtime CPU-feature detection: a vectorized exp and
//! the coupling transforms. The public face is [`crate::simd`] (and [`crate::Real`]'s `f32`/`f64`
//! methods); this module sits below `Real` and knows only the two float types.
//!
//! One generic body per kernel (written against the small `Lanes` abstraction of the private
//! module `lanes`) is compiled three times: for AVX-512F, for AVX2 + FMA, and, on every other CPU,
//! replaced by the scalar loops of [`crate::ground`] over std's `exp`. [`Backend::detect`] picks
//! the best backend the running CPU has (once, then cached); the environment variable
//! `EXACTFLOW_SIMD=scalar|avx2|avx512` lowers the choice, for comparisons and debugging (a backend
//! the CPU lacks is never used).
//!
//! # Soundness by construction
//! The intrinsics run only on registers built from a CPU-feature token (`token`), and the
//! `#[target_feature]` entry points are reached only through a token (`Vectorize`, implemented by
//! the tokens). A token is made only by its `try_new` after runtime detection, so no safe code
//! path, in this crate either, can run an instruction the CPU lacks; the dispatch below holds no
//! `unsafe` at all. `Backend` picks the token: [`Backend::detect`] (with `EXACTFLOW_SIMD`) or an
//! explicit backend, resolved by `Backend::isa` to its token or to the scalar loops.

mod lanes;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod token;

use std::sync::OnceLock;

use crate::ground;
use crate::ground::AdamCoefficients;

use lanes::Lanes;
#[cfg(target_arch = "x86_64")]
use token::{Avx2Fma, Avx512F};

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
            Backend::Avx2 => Avx2Fma::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => Avx512F::try_new().is_some(),
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

    /// The token of this backend if the CPU supports it, the scalar code otherwise: never run
    /// instructions the CPU lacks.
    #[inline]
    fn isa(self) -> Isa {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => Avx2Fma::try_new().map_or(Isa::Scalar, Isa::Avx2),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => Avx512F::try_new().map_or(Isa::Scalar, Isa::Avx512),
            _ => Isa::Scalar,
        }
    }
}

/// A backend resolved on the running CPU: the token proving its features, or the scalar code.
#[derive(Clone, Copy, Debug)]
enum Isa {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2Fma),
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512F),
}

/// The `#[target_feature]` kernels of one instruction set for the element type `E`, implemented
/// by its token: holding the token is the proof those functions need, so these methods are safe.
#[cfg(target_arch = "x86_64")]
trait Vectorize<E> {
    /// `x = exp(x)` elementwise.
    fn exp(self, xs: &mut [E]);
    /// `x = tanh(x)` elementwise.
    fn tanh(self, xs: &mut [E]);
    /// The affine coupling, as [`VectorKernels::affine`].
    fn affine(self, forward: bool, a: &[E], s: &[E], t: &[E], out: &mut [E], log_det: &mut [E]);
    /// The additive coupling, as [`VectorKernels::additive`].
    fn additive(self, forward: bool, a: &[E], t: &[E], out: &mut [E]);
    /// One Adam update, as [`VectorKernels::adam`].
    fn adam(self, value: &mut [E], grad: &[E], m: &mut [E], v: &mut [E], k: &AdamCoefficients<E>) -> bool;
    /// The sum of squares in f64, as [`VectorKernels::sum_of_squares`].
    fn sum_of_squares(self, xs: &[E]) -> f64;
}

/// Registers that have a vectorized exp and tanh.
trait ElementaryLanes: Lanes {
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
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
    simd: L::Token,
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
            lanes::zip3::<L>(simd, a, s, t, out, &fwd);
        } else {
            lanes::zip3::<L>(simd, a, s, t, out, &inv);
        }
        if d > 0 {
            for (l, srow) in ld.iter_mut().zip(s.chunks_exact(d)) {
                let sum = lanes::row_sum::<L>(simd, srow);
                *l = if forward { *l + sum } else { *l - sum };
            }
        }
    }
}

/// Generates the `#[target_feature]` entry points of one backend for one element type, and the
/// `Vectorize` impl of the backend's token that is their only way in.
#[cfg(target_arch = "x86_64")]
macro_rules! entries {
    ($modname:ident, $feat:literal, $Token:ty, $L:ty, $E:ty, $expfn:path, $tanhfn:path) => {
        mod $modname {
            use super::*;

            impl ElementaryLanes for $L {
                #[inline(always)]
                fn exp(self) -> Self {
                    $expfn(self)
                }
                #[inline(always)]
                fn tanh(self) -> Self {
                    $tanhfn(self)
                }
            }

            #[target_feature(enable = $feat)]
            fn exp_with_features(simd: $Token, xs: &mut [$E]) {
                lanes::map_in_place::<$L>(simd, xs, |v: $L| v.exp())
            }

            #[target_feature(enable = $feat)]
            fn tanh_with_features(simd: $Token, xs: &mut [$E]) {
                lanes::map_in_place::<$L>(simd, xs, |v: $L| v.tanh())
            }

            #[target_feature(enable = $feat)]
            fn affine_with_features(
                simd: $Token,
                forward: bool,
                a: &[$E],
                s: &[$E],
                t: &[$E],
                out: &mut [$E],
                ld: &mut [$E],
            ) {
                affine_body::<$L>(
                    simd,
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
            fn additive_with_features(simd: $Token, forward: bool, a: &[$E], t: &[$E], out: &mut [$E]) {
                if forward {
                    lanes::zip2::<$L>(simd, a, t, out, |x: $L, t: $L| x.add(t))
                } else {
                    lanes::zip2::<$L>(simd, a, t, out, |y: $L, t: $L| y.sub(t))
                }
            }

            // The scalar loops of `ground`, inlined here and auto-vectorized for these features:
            // each is a chain of single IEEE operations, so the vector code gives their bits.
            #[target_feature(enable = $feat)]
            fn adam_with_features(
                _simd: $Token,
                value: &mut [$E],
                grad: &[$E],
                m: &mut [$E],
                v: &mut [$E],
                k: &AdamCoefficients<$E>,
            ) -> bool {
                ground::adam(value, grad, m, v, k)
            }

            #[target_feature(enable = $feat)]
            fn sum_of_squares_with_features(_simd: $Token, xs: &[$E]) -> f64 {
                ground::sum_of_squares(xs, f64::from)
            }

            impl Vectorize<$E> for $Token {
                #[inline(always)]
                fn exp(self, xs: &mut [$E]) {
                    // SAFETY: `self` exists, so `try_new` found on this CPU the features the
                    // function is compiled with.
                    unsafe { exp_with_features(self, xs) }
                }

                #[inline(always)]
                fn tanh(self, xs: &mut [$E]) {
                    // SAFETY: `self` exists, so `try_new` found on this CPU the features the
                    // function is compiled with.
                    unsafe { tanh_with_features(self, xs) }
                }

                #[inline(always)]
                fn affine(self, forward: bool, a: &[$E], s: &[$E], t: &[$E], out: &mut [$E], ld: &mut [$E]) {
                    // SAFETY: `self` exists, so `try_new` found on this CPU the features the
                    // function is compiled with.
                    unsafe { affine_with_features(self, forward, a, s, t, out, ld) }
                }

                #[inline(always)]
                fn additive(self, forward: bool, a: &[$E], t: &[$E], out: &mut [$E]) {
                    // SAFETY: `self` exists, so `try_new` found on this CPU the features the
                    // function is compiled with.
                    unsafe { additive_with_features(self, forward, a, t, out) }
                }

                #[inline(always)]
                fn adam(
                    self,
                    value: &mut [$E],
                    grad: &[$E],
                    m: &mut [$E],
                    v: &mut [$E],
                    k: &AdamCoefficients<$E>,
                ) -> bool {
                    // SAFETY: `self` exists, so `try_new` found on this CPU the features the
                    // function is compiled with.
                    unsafe { adam_with_features(self, value, grad, m, v, k) }
                }

                #[inline(always)]
                fn sum_of_squares(self, xs: &[$E]) -> f64 {
                    // SAFETY: `self` exists, so `try_new` found on this CPU the features the
                    // function is compiled with.
                    unsafe { sum_of_squares_with_features(self, xs) }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
entries!(
    avx2_f64,
    "avx2,fma",
    Avx2Fma,
    avx2::F64x4,
    f64,
    lanes::exp_f64,
    lanes::tanh_f64
);
#[cfg(target_arch = "x86_64")]
entries!(
    avx2_f32,
    "avx2,fma",
    Avx2Fma,
    avx2::F32x8,
    f32,
    lanes::exp_f32,
    lanes::tanh_f32
);
#[cfg(target_arch = "x86_64")]
entries!(
    avx512_f64,
    "avx512f",
    Avx512F,
    avx512::F64x8,
    f64,
    lanes::exp_f64,
    lanes::tanh_f64
);
#[cfg(target_arch = "x86_64")]
entries!(
    avx512_f32,
    "avx512f",
    Avx512F,
    avx512::F32x16,
    f32,
    lanes::exp_f32,
    lanes::tanh_f32
);

/// The vectorized kernels of one element type (`f32`, `f64`) on a chosen backend, the scalar one
/// if the CPU lacks it. Lengths must have been checked by the caller.
pub(crate) trait VectorKernels: Sized {
    /// `x = exp(x)` elementwise.
    fn exp(backend: Backend, xs: &mut [Self]);
    /// `x = tanh(x)` elementwise (the scalar backend: std's `tanh`).
    fn tanh(backend: Backend, xs: &mut [Self]);
    /// Affine coupling (forward: `out = a * exp(s) + t`, `log_det += row sums of s`; inverse:
    /// `out = (a - t) * exp(-s)`, `log_det -= row sums of s`): `a`, `s`, `t`, `out` hold
    /// `log_det.len()` rows of equal width.
    fn affine(
        backend: Backend,
        forward: bool,
        a: &[Self],
        s: &[Self],
        t: &[Self],
        out: &mut [Self],
        log_det: &mut [Self],
    );
    /// Additive coupling (forward: `out = a + t`; inverse: `out = a - t`).
    fn additive(backend: Backend, forward: bool, a: &[Self], t: &[Self], out: &mut [Self]);
    /// One Adam update ([`ground::adam`], the same bits on every backend); whether every updated
    /// value is finite. The four slices have equal lengths.
    fn adam(
        backend: Backend,
        value: &mut [Self],
        grad: &[Self],
        m: &mut [Self],
        v: &mut [Self],
        k: &AdamCoefficients<Self>,
    ) -> bool;
    /// `sum x^2` in f64 ([`ground::sum_of_squares`], the same bits on every backend).
    fn sum_of_squares(backend: Backend, xs: &[Self]) -> f64;
}

// The dispatch: a backend resolves to a token (or the scalar loops), and the token is the way into
// the `#[target_feature]` code. No `unsafe` here: without a token there is no call to make.
macro_rules! vector_kernels {
    ($E:ty) => {
        impl VectorKernels for $E {
            fn exp(backend: Backend, xs: &mut [Self]) {
                match backend.isa() {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(simd) => Vectorize::<$E>::exp(simd, xs),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(simd) => Vectorize::<$E>::exp(simd, xs),
                    Isa::Scalar => xs.iter_mut().for_each(|v| *v = v.exp()),
                }
            }

            fn tanh(backend: Backend, xs: &mut [Self]) {
                match backend.isa() {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(simd) => Vectorize::<$E>::tanh(simd, xs),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(simd) => Vectorize::<$E>::tanh(simd, xs),
                    Isa::Scalar => xs.iter_mut().for_each(|v| *v = v.tanh()),
                }
            }

            fn affine(
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
                match backend.isa() {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(simd) => Vectorize::<$E>::affine(simd, forward, a, s, t, out, log_det),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(simd) => Vectorize::<$E>::affine(simd, forward, a, s, t, out, log_det),
                    Isa::Scalar => {
                        if forward {
                            ground::affine_forward(a, s, t, out, log_det)
                        } else {
                            ground::affine_inverse(a, s, t, out, log_det)
                        }
                    }
                }
            }

            fn additive(backend: Backend, forward: bool, a: &[Self], t: &[Self], out: &mut [Self]) {
                assert!(a.len() == out.len() && t.len() == out.len());
                match backend.isa() {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(simd) => Vectorize::<$E>::additive(simd, forward, a, t, out),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(simd) => Vectorize::<$E>::additive(simd, forward, a, t, out),
                    Isa::Scalar => {
                        if forward {
                            ground::additive_forward(a, t, out)
                        } else {
                            ground::additive_inverse(a, t, out)
                        }
                    }
                }
            }

            fn adam(
                backend: Backend,
                value: &mut [Self],
                grad: &[Self],
                m: &mut [Self],
                v: &mut [Self],
                k: &AdamCoefficients<Self>,
            ) -> bool {
                let n = value.len();
                assert!(grad.len() == n && m.len() == n && v.len() == n);
                match backend.isa() {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(simd) => Vectorize::<$E>::adam(simd, value, grad, m, v, k),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(simd) => Vectorize::<$E>::adam(simd, value, grad, m, v, k),
                    Isa::Scalar => ground::adam(value, grad, m, v, k),
                }
            }

            fn sum_of_squares(backend: Backend, xs: &[Self]) -> f64 {
                match backend.isa() {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512(simd) => Vectorize::<$E>::sum_of_squares(simd, xs),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2(simd) => Vectorize::<$E>::sum_of_squares(simd, xs),
                    Isa::Scalar => ground::sum_of_squares(xs, f64::from),
                }
            }
        }
    };
}

vector_kernels!(f64);
vector_kernels!(f32);

#[cfg(test)]
mod tests {
    use super::*;

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
        // A backend resolves to its token exactly when the CPU supports it; an unsupported one
        // falls back to scalar rather than executing missing instructions.
        for b in Backend::available() {
            assert_eq!(matches!(b.isa(), Isa::Scalar), b == Backend::Scalar, "{b:?}");
        }
        for b in [Backend::Avx2, Backend::Avx512] {
            assert_eq!(matches!(b.isa(), Isa::Scalar), !b.is_supported(), "{b:?}");
        }
    }
}
