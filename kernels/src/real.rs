//! The scalar trait every exactflow algorithm is generic over.
//!
//! `Real` is `num_traits::Float` (with the compound assignments of `NumAssign`) plus the bounds a multi-threaded numerical library needs. It is
//! implemented for `f32`, `f64` and the forward-mode dual number [`autodiff::F1`], so that an exact
//! derivative runs through the very code that users run. Hot paths (gemm, the coupling transforms,
//! a vectorized exp) are trait methods whose default is a plain generic loop; `f32` and `f64`
//! override them with faer's gemm and the SIMD kernels of [`crate::simd`].
//!
//! The trait sits in the middle of the crate: it calls down into the generic loops, faer's gemm and
//! the SIMD kernels (none of which knows `Real`), and the checked entry points call it.

use std::fmt::Debug;

use autodiff::F1;
use num_traits::{Float, FromPrimitive, NumAssign};

use crate::faer_gemm;
use crate::faer_lu;
use crate::ground;
use crate::ground::AdamCoefficients;
use crate::vectorized::{Backend, VectorKernels};
use crate::view::{MatSlice, MatSliceMut, Parallelism};

/// An in-place LU factorization with partial pivoting of a column-major `n x n` buffer
/// (`a`, `n`, `perm`), returning the number of row interchanges: what [`Real::lu_kernel`] gives.
pub type LuKernel<T> = fn(a: &mut [T], n: usize, perm: &mut [usize]) -> usize;

/// A real scalar: `f32`, `f64`, a forward-mode dual number or an interval.
///
/// The fast-path methods (`gemm_kernel`, `exp_kernel`, the coupling kernels) are the hooks the
/// checked public functions call after validating their arguments: prefer [`crate::gemm::gemm`],
/// [`crate::coupling`] and [`crate::simd::exp_in_place`], which return errors instead of panicking.
pub trait Real: Float + FromPrimitive + NumAssign + Send + Sync + Debug + 'static {
    /// A short name for messages and benchmark ids ("f32", "f64", "dual").
    const NAME: &'static str;

    /// The value part as `f64` (for a dual number, its value without the derivative).
    fn as_f64(self) -> f64;

    /// Converts an `f64` constant (rounded to nearest for `f32`; a constant for a dual number;
    /// the point `[x, x]` for an interval: `x` itself is the value, exactly).
    fn lit(x: f64) -> Self;

    /// True for a scalar whose operations return enclosures of the exact results (the interval
    /// type): code that would compute something in f64 and convert it back with [`Real::lit`]
    /// must not do so for such a scalar, since the result would not enclose the exact value.
    const ENCLOSURE: bool = false;

    /// A mathematical constant that f64 cannot hold exactly (`ln(2 pi) / 2`, pi, ...), given as
    /// an f64 `x` within two units in the last place of it. Point scalars take `lit(x)`; the
    /// interval type widens `x` by two representable steps on each side, so that it contains
    /// the constant itself. Use [`Real::lit`] for numbers that are exactly the f64 given (a
    /// stored parameter, a hyperparameter, a small integer).
    fn constant(x: f64) -> Self {
        Self::lit(x)
    }

    /// An enclosure of `log|det A|` for a square row-major `n x n` matrix of this scalar type,
    /// or `None` for the scalar types that compute determinants of their values in f64 (every
    /// type but the interval type, which returns a certified enclosure or, for a matrix whose
    /// sign cannot be certified, an error).
    fn log_abs_det_enclosure(a: &[Self], n: usize) -> Option<crate::error::Result<Self>> {
        let _ = (a, n);
        None
    }

    /// True when the value part is neither NaN nor infinite. For a dual number only the value is
    /// looked at: a derivative may legitimately be large.
    fn is_finite_value(self) -> bool {
        self.as_f64().is_finite()
    }

    /// True when the number is zero in every part: the value and, for a dual number, the
    /// derivative too. Kernels skip work only on such zeros (a zero multiplier in an
    /// elimination, a zero entry when detecting a triangle); a dual number whose value is zero
    /// but whose derivative is not still carries a derivative and must not be skipped (`==` on
    /// dual numbers compares values only).
    fn is_exact_zero(self) -> bool {
        self == Self::zero()
    }

    /// faer's LU with partial pivoting for this scalar type, if it has one (`f32`, `f64`); `None`
    /// (the default) sends [`crate::Lu`] to its generic code.
    ///
    /// The function factors a **column-major** `n x n` buffer in place into the packed `L \ U` of
    /// `P A = L U`, writes the permutation (row i of `P A` is row `perm[i]` of `A`) and returns
    /// the number of row interchanges. It does not stop at a zero pivot: it may leave NaN or
    /// infinity in the factors, which the caller must check for (`Lu` does, and then factors the
    /// matrix again with the generic code). It panics if the lengths are not `n * n` and `n`.
    fn lu_kernel() -> Option<LuKernel<Self>> {
        None
    }

    /// `c = alpha * op(a) * op(b) + beta * c` on validated row-major operands.
    ///
    /// When `beta` is zero, `c` is not read (BLAS semantics: NaN in `c` does not propagate).
    /// The default is a straightforward loop, split over rows with rayon when `par` asks for
    /// threads; `f32` and `f64` call faer's gemm.
    fn gemm_kernel(
        alpha: Self,
        a: MatSlice<'_, Self>,
        b: MatSlice<'_, Self>,
        beta: Self,
        c: MatSliceMut<'_, Self>,
        par: Parallelism,
    ) {
        ground::gemm(alpha, a, b, beta, c, par, Self::is_exact_zero);
    }

    /// `x = exp(x)` elementwise. The default calls `Float::exp`; `f32` and `f64` use the SIMD exp
    /// of [`crate::simd`] (at most 4 ULP from std's exp).
    fn exp_kernel(xs: &mut [Self]) {
        for x in xs {
            *x = x.exp();
        }
    }

    /// `x = exp(x)` elementwise where only `f32` trades bits for speed: `f32` uses the SIMD exp
    /// of [`crate::simd`] (at most 4 ULP from std's), every other type (`f64` included) its own
    /// `exp`. For the layers whose f64 path has always called std's exp (the splines' bins), so
    /// that f64 results, the reference that old checkpoints score bit for bit in, stay as they
    /// were.
    fn exp_f32_fast_kernel(xs: &mut [Self]) {
        for x in xs {
            *x = x.exp();
        }
    }

    /// `x = tanh(x)` elementwise. The default calls `Float::tanh`. `f32` uses the SIMD tanh of
    /// [`crate::simd`] (at most [`crate::simd::TANH_F32_MAX_ULPS`] ULP from the correctly rounded
    /// value, checked on every f32 input); `f64` keeps std's, so that f64 results, the reference
    /// that old checkpoints score bit for bit in, stay as they were.
    fn tanh_kernel(xs: &mut [Self]) {
        for x in xs {
            *x = x.tanh();
        }
    }

    /// Affine coupling forward on rows of width `d`: `y = x * exp(s) + t`,
    /// `log_det[i] += sum_j s[i, j]`. Lengths must agree (`x`, `s`, `t`, `y`: `n * d`,
    /// `log_det`: `n`); the checked entry point is [`crate::coupling::affine_forward`].
    ///
    /// # Panics
    /// If the lengths disagree.
    fn affine_forward_kernel(x: &[Self], s: &[Self], t: &[Self], y: &mut [Self], log_det: &mut [Self]) {
        ground::affine_forward(x, s, t, y, log_det);
    }

    /// Affine coupling inverse on rows: `x = (y - t) * exp(-s)`, `log_det[i] -= sum_j s[i, j]`.
    /// The checked entry point is [`crate::coupling::affine_inverse`].
    ///
    /// # Panics
    /// If the lengths disagree.
    fn affine_inverse_kernel(y: &[Self], s: &[Self], t: &[Self], x: &mut [Self], log_det: &mut [Self]) {
        ground::affine_inverse(y, s, t, x, log_det);
    }

    /// Additive coupling on equal-length slices: forward `out = a + t`, inverse `out = a - t`.
    /// The checked entry points are [`crate::coupling::additive_forward`] and
    /// [`crate::coupling::additive_inverse`].
    ///
    /// # Panics
    /// If the lengths disagree.
    fn additive_kernel(forward: bool, a: &[Self], t: &[Self], out: &mut [Self]) {
        if forward {
            ground::additive_forward(a, t, out);
        } else {
            ground::additive_inverse(a, t, out);
        }
    }

    /// One Adam update of equal-length slices ([`crate::optim::adam_update`] is the checked
    /// entry point): returns whether every updated value is finite. The default is the scalar
    /// loop; `f32` and `f64` run it vectorized, with the same bits.
    ///
    /// # Panics
    /// If the lengths differ.
    fn adam_kernel(
        value: &mut [Self],
        grad: &[Self],
        m: &mut [Self],
        v: &mut [Self],
        k: &AdamCoefficients<Self>,
    ) -> bool {
        assert!(grad.len() == value.len() && m.len() == value.len() && v.len() == value.len());
        ground::adam(value, grad, m, v, k)
    }

    /// `sum x^2` of the values (see [`Real::as_f64`]) in f64, in the fixed order of
    /// [`crate::optim::sum_of_squares`]. `f32` and `f64` run it vectorized, with the same bits.
    fn sum_of_squares_kernel(xs: &[Self]) -> f64 {
        ground::sum_of_squares(xs, Self::as_f64)
    }
}

// The fast paths of `f64` and `f32` are the same calls on the two element types.
macro_rules! float_fast_paths {
    ($E:ty) => {
        fn lu_kernel() -> Option<LuKernel<Self>> {
            Some(faer_lu::lu_in_place::<$E>)
        }

        fn gemm_kernel(
            alpha: Self,
            a: MatSlice<'_, Self>,
            b: MatSlice<'_, Self>,
            beta: Self,
            c: MatSliceMut<'_, Self>,
            par: Parallelism,
        ) {
            faer_gemm::gemm(alpha, a, b, beta, c, par);
        }

        fn exp_kernel(xs: &mut [Self]) {
            <$E as VectorKernels>::exp(Backend::detect(), xs);
        }

        fn affine_forward_kernel(x: &[Self], s: &[Self], t: &[Self], y: &mut [Self], log_det: &mut [Self]) {
            <$E as VectorKernels>::affine(Backend::detect(), true, x, s, t, y, log_det);
        }

        fn affine_inverse_kernel(y: &[Self], s: &[Self], t: &[Self], x: &mut [Self], log_det: &mut [Self]) {
            <$E as VectorKernels>::affine(Backend::detect(), false, y, s, t, x, log_det);
        }

        fn additive_kernel(forward: bool, a: &[Self], t: &[Self], out: &mut [Self]) {
            <$E as VectorKernels>::additive(Backend::detect(), forward, a, t, out);
        }

        fn adam_kernel(
            value: &mut [Self],
            grad: &[Self],
            m: &mut [Self],
            v: &mut [Self],
            k: &AdamCoefficients<Self>,
        ) -> bool {
            <$E as VectorKernels>::adam(Backend::detect(), value, grad, m, v, k)
        }

        fn sum_of_squares_kernel(xs: &[Self]) -> f64 {
            <$E as VectorKernels>::sum_of_squares(Backend::detect(), xs)
        }
    };
}

impl Real for f64 {
    const NAME: &'static str = "f64";

    #[inline]
    fn as_f64(self) -> f64 {
        self
    }

    #[inline]
    fn lit(x: f64) -> Self {
        x
    }

    float_fast_paths!(f64);
}

impl Real for f32 {
    const NAME: &'static str = "f32";

    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }

    #[inline]
    fn lit(x: f64) -> Self {
        x as f32
    }

    fn tanh_kernel(xs: &mut [Self]) {
        <f32 as VectorKernels>::tanh(Backend::detect(), xs);
    }

    fn exp_f32_fast_kernel(xs: &mut [Self]) {
        <f32 as VectorKernels>::exp(Backend::detect(), xs);
    }

    float_fast_paths!(f32);
}

/// The dual number runs every generic default, so that its derivative part follows exactly the
/// arithmetic of the generic code.
impl Real for F1 {
    const NAME: &'static str = "dual";

    #[inline]
    fn as_f64(self) -> f64 {
        self.x
    }

    #[inline]
    fn lit(x: f64) -> Self {
        F1::cst(x)
    }

    #[inline]
    fn is_exact_zero(self) -> bool {
        self.x == 0.0 && self.dx == 0.0
    }
}
