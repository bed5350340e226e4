//! AVX2 + FMA registers (`__m256`, `__m256d`) as [`Lanes`].
//!
//! The methods are `#[inline(always)]` and are only ever called from functions compiled with
//! `#[target_feature(enable = "avx2,fma")]` after a runtime check that the CPU has both.

use std::arch::x86_64::*;

use super::lanes::{Lanes, TWO_23, TWO_52};

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F64x4(__m256d);

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F32x8(__m256);

// SAFETY (all methods): only reached from `#[target_feature(enable = "avx2,fma")]` code that the
// dispatcher calls after `is_x86_feature_detected!` confirmed AVX2 and FMA.
impl Lanes for F64x4 {
    type E = f64;
    const W: usize = 4;

    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        unsafe { F64x4(_mm256_loadu_pd(p)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        unsafe { _mm256_storeu_pd(p, self.0) }
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        unsafe { F64x4(_mm256_set1_pd(v)) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        unsafe { F64x4(_mm256_add_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        unsafe { F64x4(_mm256_sub_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        unsafe { F64x4(_mm256_mul_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        unsafe { F64x4(_mm256_fmadd_pd(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        unsafe { F64x4(_mm256_xor_pd(self.0, _mm256_set1_pd(-0.0))) }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        unsafe { F64x4(_mm256_max_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        unsafe { F64x4(_mm256_min_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn round(self) -> Self {
        unsafe {
            F64x4(_mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                self.0,
            ))
        }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        unsafe { F64x4(_mm256_floor_pd(self.0)) }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        // k + 2^52 + 1023 holds k + 1023 in its low mantissa bits; shifting them into the
        // exponent field gives the bit pattern of 2^k.
        unsafe {
            let biased = _mm256_add_pd(self.0, _mm256_set1_pd(TWO_52 + 1023.0));
            F64x4(_mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_castpd_si256(
                biased,
            ))))
        }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        unsafe {
            let nan = _mm256_cmp_pd::<_CMP_UNORD_Q>(x.0, x.0);
            F64x4(_mm256_blendv_pd(res.0, _mm256_add_pd(x.0, x.0), nan))
        }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f64 {
        let mut buf = [0.0f64; 4];
        unsafe { _mm256_storeu_pd(buf.as_mut_ptr(), self.0) };
        (buf[0] + buf[1]) + (buf[2] + buf[3])
    }
}

impl Lanes for F32x8 {
    type E = f32;
    const W: usize = 8;

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { F32x8(_mm256_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        unsafe { F32x8(_mm256_set1_ps(v)) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        unsafe { F32x8(_mm256_add_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        unsafe { F32x8(_mm256_sub_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        unsafe { F32x8(_mm256_mul_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        unsafe { F32x8(_mm256_fmadd_ps(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        unsafe { F32x8(_mm256_xor_ps(self.0, _mm256_set1_ps(-0.0))) }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        unsafe { F32x8(_mm256_max_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        unsafe { F32x8(_mm256_min_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn round(self) -> Self {
        unsafe {
            F32x8(_mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                self.0,
            ))
        }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        unsafe { F32x8(_mm256_floor_ps(self.0)) }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        unsafe {
            let biased = _mm256_add_ps(self.0, _mm256_set1_ps(TWO_23 + 127.0));
            F32x8(_mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(
                biased,
            ))))
        }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        unsafe {
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x.0, x.0);
            F32x8(_mm256_blendv_ps(res.0, _mm256_add_ps(x.0, x.0), nan))
        }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        let mut b = [0.0f32; 8];
        unsafe { _mm256_storeu_ps(b.as_mut_ptr(), self.0) };
        ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))
    }
}
