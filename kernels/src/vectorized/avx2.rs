//! AVX2 + FMA registers (`__m256`, `__m256d`) as [`Lanes`].
//!
//! Every register holds an [`Avx2Fma`] token, so each method may run AVX2 and FMA instructions:
//! the token could only have been made on a CPU that has them.

use std::arch::x86_64::*;

use super::lanes::{Lanes, TWO_23, TWO_52};
use super::token::Avx2Fma;

/// Four `f64` lanes, with the token that proves AVX2 and FMA run here.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F64x4 {
    v: __m256d,
    simd: Avx2Fma,
}

/// Eight `f32` lanes, with the token that proves AVX2 and FMA run here.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F32x8 {
    v: __m256,
    simd: Avx2Fma,
}

// SAFETY: a value is built only by `load` and `splat`, which take an `Avx2Fma`, or by a method of
// a value that holds one (the fields are private to this module); `load` and `store` access
// exactly W = 4 elements.
unsafe impl Lanes for F64x4 {
    type Token = Avx2Fma;
    type E = f64;
    const W: usize = 4;

    #[inline(always)]
    fn token(self) -> Avx2Fma {
        self.simd
    }
    #[inline(always)]
    unsafe fn load(simd: Avx2Fma, p: *const f64) -> Self {
        // SAFETY: `simd` proves AVX; the caller guarantees `p` is valid for reading 4 elements.
        let v = unsafe { _mm256_loadu_pd(p) };
        F64x4 { v, simd }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        // SAFETY: `self.simd` proves AVX; the caller guarantees `p` is valid for writing 4 elements.
        unsafe { _mm256_storeu_pd(p, self.v) }
    }
    #[inline(always)]
    fn splat(simd: Avx2Fma, v: f64) -> Self {
        // SAFETY: `simd` proves AVX.
        let v = unsafe { _mm256_set1_pd(v) };
        F64x4 { v, simd }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_add_pd(self.v, o.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_sub_pd(self.v, o.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_mul_pd(self.v, o.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        // SAFETY: `self.simd` proves FMA.
        let v = unsafe { _mm256_fmadd_pd(self.v, b.v, c.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_xor_pd(self.v, _mm256_set1_pd(-0.0)) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_div_pd(self.v, o.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_andnot_pd(_mm256_set1_pd(-0.0), self.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe {
            let m = _mm256_set1_pd(-0.0);
            _mm256_or_pd(_mm256_andnot_pd(m, self.v), _mm256_and_pd(m, sign.v))
        };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_max_pd(self.v, o.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_min_pd(self.v, o.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_floor_pd(self.v) };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // k + 2^52 + 1023 holds k + 1023 in its low mantissa bits; shifting them into the
        // exponent field gives the bit pattern of 2^k.
        // SAFETY: `self.simd` proves AVX and AVX2 (the 64-bit shift).
        let v = unsafe {
            let biased = _mm256_add_pd(self.v, _mm256_set1_pd(TWO_52 + 1023.0));
            _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_castpd_si256(biased)))
        };
        F64x4 { v, ..self }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        // SAFETY: `x.simd` proves AVX.
        let v = unsafe {
            let nan = _mm256_cmp_pd::<_CMP_UNORD_Q>(x.v, x.v);
            _mm256_blendv_pd(res.v, _mm256_add_pd(x.v, x.v), nan)
        };
        F64x4 { v, ..x }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f64 {
        let mut buf = [0.0f64; 4];
        // SAFETY: `self.simd` proves AVX; `buf` holds the 4 elements written.
        unsafe { _mm256_storeu_pd(buf.as_mut_ptr(), self.v) };
        (buf[0] + buf[1]) + (buf[2] + buf[3])
    }
}

// SAFETY: a value is built only by `load` and `splat`, which take an `Avx2Fma`, or by a method of
// a value that holds one (the fields are private to this module); `load` and `store` access
// exactly W = 8 elements.
unsafe impl Lanes for F32x8 {
    type Token = Avx2Fma;
    type E = f32;
    const W: usize = 8;

    #[inline(always)]
    fn token(self) -> Avx2Fma {
        self.simd
    }
    #[inline(always)]
    unsafe fn load(simd: Avx2Fma, p: *const f32) -> Self {
        // SAFETY: `simd` proves AVX; the caller guarantees `p` is valid for reading 8 elements.
        let v = unsafe { _mm256_loadu_ps(p) };
        F32x8 { v, simd }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `self.simd` proves AVX; the caller guarantees `p` is valid for writing 8 elements.
        unsafe { _mm256_storeu_ps(p, self.v) }
    }
    #[inline(always)]
    fn splat(simd: Avx2Fma, v: f32) -> Self {
        // SAFETY: `simd` proves AVX.
        let v = unsafe { _mm256_set1_ps(v) };
        F32x8 { v, simd }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_add_ps(self.v, o.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_sub_ps(self.v, o.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_mul_ps(self.v, o.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        // SAFETY: `self.simd` proves FMA.
        let v = unsafe { _mm256_fmadd_ps(self.v, b.v, c.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_xor_ps(self.v, _mm256_set1_ps(-0.0)) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_div_ps(self.v, o.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn copysign(self, sign: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe {
            let m = _mm256_set1_ps(-0.0);
            _mm256_or_ps(_mm256_andnot_ps(m, self.v), _mm256_and_ps(m, sign.v))
        };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_max_ps(self.v, o.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_min_ps(self.v, o.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn round(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        // SAFETY: `self.simd` proves AVX.
        let v = unsafe { _mm256_floor_ps(self.v) };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // SAFETY: `self.simd` proves AVX and AVX2 (the 32-bit shift).
        let v = unsafe {
            let biased = _mm256_add_ps(self.v, _mm256_set1_ps(TWO_23 + 127.0));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(biased)))
        };
        F32x8 { v, ..self }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        // SAFETY: `x.simd` proves AVX.
        let v = unsafe {
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x.v, x.v);
            _mm256_blendv_ps(res.v, _mm256_add_ps(x.v, x.v), nan)
        };
        F32x8 { v, ..x }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        let mut b = [0.0f32; 8];
        // SAFETY: `self.simd` proves AVX; `b` holds the 8 elements written.
        unsafe { _mm256_storeu_ps(b.as_mut_ptr(), self.v) };
        ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))
    }
}
