//! AVX-512F registers (`__m512`, `__m512d`) as [`Lanes`].
//!
//! Only AVX-512F instructions are used (no DQ/VL), so any AVX-512 CPU runs them. Every register
//! holds an [`Avx512F`] token, so each method may run them: the token could only have been made on
//! a CPU that has AVX-512F.

use std::arch::x86_64::*;

use super::lanes::{Lanes, TWO_23, TWO_52};
use super::token::Avx512F;

/// Eight `f64` lanes, with the token that proves AVX-512F runs here.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F64x8 {
    v: __m512d,
    simd: Avx512F,
}

/// Sixteen `f32` lanes, with the token that proves AVX-512F runs here.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F32x16 {
    v: __m512,
    simd: Avx512F,
}

const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
const DOWN: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;

// SAFETY: a value is built only by `load` and `splat`, which take an `Avx512F`, or by a method of
// a value that holds one (the fields are private to this module); `load` and `store` access
// exactly W = 8 elements.
unsafe impl Lanes for F64x8 {
    type Token = Avx512F;
    type E = f64;
    const W: usize = 8;

    #[inline(always)]
    fn token(self) -> Avx512F {
        self.simd
    }
    #[inline(always)]
    unsafe fn load(simd: Avx512F, p: *const f64) -> Self {
        // SAFETY: `simd` proves AVX-512F; the caller guarantees `p` is valid for reading 8
        // elements.
        let v = unsafe { _mm512_loadu_pd(p) };
        F64x8 { v, simd }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        // SAFETY: `self.simd` proves AVX-512F; the caller guarantees `p` is valid for writing 8
        // elements.
        unsafe { _mm512_storeu_pd(p, self.v) }
    }
    #[inline(always)]
    fn splat(simd: Avx512F, v: f64) -> Self {
        // SAFETY: `simd` proves AVX-512F.
        let v = unsafe { _mm512_set1_pd(v) };
        F64x8 { v, simd }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_add_pd(self.v, o.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_sub_pd(self.v, o.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_mul_pd(self.v, o.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_fmadd_pd(self.v, b.v, c.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe {
            let sign = _mm512_set1_epi64(i64::MIN);
            _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(self.v), sign))
        };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_div_pd(self.v, o.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_abs_pd(self.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F (the integer and/or are AVX-512F, not DQ).
        let v = unsafe {
            let m = _mm512_set1_epi64(i64::MIN);
            let mag = _mm512_andnot_si512(m, _mm512_castpd_si512(self.v));
            _mm512_castsi512_pd(_mm512_or_si512(mag, _mm512_and_si512(m, _mm512_castpd_si512(sign.v))))
        };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_max_pd(self.v, o.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_min_pd(self.v, o.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_roundscale_pd::<NEAREST>(self.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_roundscale_pd::<DOWN>(self.v) };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe {
            let biased = _mm512_add_pd(self.v, _mm512_set1_pd(TWO_52 + 1023.0));
            _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_castpd_si512(biased)))
        };
        F64x8 { v, ..self }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        // SAFETY: `x.simd` proves AVX-512F.
        let v = unsafe {
            let nan = _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(x.v, x.v);
            _mm512_mask_blend_pd(nan, res.v, _mm512_add_pd(x.v, x.v))
        };
        F64x8 { v, ..x }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f64 {
        let mut b = [0.0f64; 8];
        // SAFETY: `self.simd` proves AVX-512F; `b` holds the 8 elements written.
        unsafe { _mm512_storeu_pd(b.as_mut_ptr(), self.v) };
        ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))
    }
}

// SAFETY: a value is built only by `load` and `splat`, which take an `Avx512F`, or by a method of
// a value that holds one (the fields are private to this module); `load` and `store` access
// exactly W = 16 elements.
unsafe impl Lanes for F32x16 {
    type Token = Avx512F;
    type E = f32;
    const W: usize = 16;

    #[inline(always)]
    fn token(self) -> Avx512F {
        self.simd
    }
    #[inline(always)]
    unsafe fn load(simd: Avx512F, p: *const f32) -> Self {
        // SAFETY: `simd` proves AVX-512F; the caller guarantees `p` is valid for reading 16
        // elements.
        let v = unsafe { _mm512_loadu_ps(p) };
        F32x16 { v, simd }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `self.simd` proves AVX-512F; the caller guarantees `p` is valid for writing 16
        // elements.
        unsafe { _mm512_storeu_ps(p, self.v) }
    }
    #[inline(always)]
    fn splat(simd: Avx512F, v: f32) -> Self {
        // SAFETY: `simd` proves AVX-512F.
        let v = unsafe { _mm512_set1_ps(v) };
        F32x16 { v, simd }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_add_ps(self.v, o.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_sub_ps(self.v, o.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_mul_ps(self.v, o.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_fmadd_ps(self.v, b.v, c.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe {
            let sign = _mm512_set1_epi32(i32::MIN);
            _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(self.v), sign))
        };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_div_ps(self.v, o.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_abs_ps(self.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F (the integer and/or are AVX-512F, not DQ).
        let v = unsafe {
            let m = _mm512_set1_epi32(i32::MIN);
            let mag = _mm512_andnot_si512(m, _mm512_castps_si512(self.v));
            _mm512_castsi512_ps(_mm512_or_si512(mag, _mm512_and_si512(m, _mm512_castps_si512(sign.v))))
        };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_max_ps(self.v, o.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_min_ps(self.v, o.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_roundscale_ps::<NEAREST>(self.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe { _mm512_roundscale_ps::<DOWN>(self.v) };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // SAFETY: `self.simd` proves AVX-512F.
        let v = unsafe {
            let biased = _mm512_add_ps(self.v, _mm512_set1_ps(TWO_23 + 127.0));
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(biased)))
        };
        F32x16 { v, ..self }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        // SAFETY: `x.simd` proves AVX-512F.
        let v = unsafe {
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x.v, x.v);
            _mm512_mask_blend_ps(nan, res.v, _mm512_add_ps(x.v, x.v))
        };
        F32x16 { v, ..x }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        let mut b = [0.0f32; 16];
        // SAFETY: `self.simd` proves AVX-512F; `b` holds the 16 elements written.
        unsafe { _mm512_storeu_ps(b.as_mut_ptr(), self.v) };
        b.chunks_exact(4)
            .map(|c| (c[0] + c[1]) + (c[2] + c[3]))
            .fold(0.0, |a, v| a + v)
    }
}
