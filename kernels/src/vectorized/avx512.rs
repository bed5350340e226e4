//! AVX-512F registers (`__m512`, `__m512d`) as [`Lanes`].
//!
//! Only AVX-512F instructions are used (no DQ/VL), so any AVX-512 CPU runs them. The methods are
//! `#[inline(always)]` and only reached from `#[target_feature(enable = "avx512f")]` entry points
//! after a runtime check.

use std::arch::x86_64::*;

use super::lanes::{Lanes, TWO_23, TWO_52};

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F64x8(__m512d);

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct F32x16(__m512);

const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
const DOWN: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;

// SAFETY (all methods): only reached from `#[target_feature(enable = "avx512f")]` code that the
// dispatcher calls after `is_x86_feature_detected!("avx512f")`.
impl Lanes for F64x8 {
    type E = f64;
    const W: usize = 8;

    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        unsafe { F64x8(_mm512_loadu_pd(p)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        unsafe { _mm512_storeu_pd(p, self.0) }
    }
    #[inline(always)]
    fn splat(v: f64) -> Self {
        unsafe { F64x8(_mm512_set1_pd(v)) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        unsafe { F64x8(_mm512_add_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        unsafe { F64x8(_mm512_sub_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        unsafe { F64x8(_mm512_mul_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        unsafe { F64x8(_mm512_fmadd_pd(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        unsafe {
            let sign = _mm512_set1_epi64(i64::MIN);
            F64x8(_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(self.0), sign)))
        }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        unsafe { F64x8(_mm512_max_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        unsafe { F64x8(_mm512_min_pd(self.0, o.0)) }
    }
    #[inline(always)]
    fn round(self) -> Self {
        unsafe { F64x8(_mm512_roundscale_pd::<NEAREST>(self.0)) }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        unsafe { F64x8(_mm512_roundscale_pd::<DOWN>(self.0)) }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        unsafe {
            let biased = _mm512_add_pd(self.0, _mm512_set1_pd(TWO_52 + 1023.0));
            F64x8(_mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_castpd_si512(
                biased,
            ))))
        }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        unsafe {
            let nan = _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(x.0, x.0);
            F64x8(_mm512_mask_blend_pd(nan, res.0, _mm512_add_pd(x.0, x.0)))
        }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f64 {
        let mut b = [0.0f64; 8];
        unsafe { _mm512_storeu_pd(b.as_mut_ptr(), self.0) };
        ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]))
    }
}

impl Lanes for F32x16 {
    type E = f32;
    const W: usize = 16;

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { F32x16(_mm512_loadu_ps(p)) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    fn splat(v: f32) -> Self {
        unsafe { F32x16(_mm512_set1_ps(v)) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        unsafe { F32x16(_mm512_add_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        unsafe { F32x16(_mm512_sub_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        unsafe { F32x16(_mm512_mul_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        unsafe { F32x16(_mm512_fmadd_ps(self.0, b.0, c.0)) }
    }
    #[inline(always)]
    fn neg(self) -> Self {
        unsafe {
            let sign = _mm512_set1_epi32(i32::MIN);
            F32x16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(self.0), sign)))
        }
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        unsafe { F32x16(_mm512_max_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        unsafe { F32x16(_mm512_min_ps(self.0, o.0)) }
    }
    #[inline(always)]
    fn round(self) -> Self {
        unsafe { F32x16(_mm512_roundscale_ps::<NEAREST>(self.0)) }
    }
    #[inline(always)]
    fn floor(self) -> Self {
        unsafe { F32x16(_mm512_roundscale_ps::<DOWN>(self.0)) }
    }
    #[inline(always)]
    fn pow2i(self) -> Self {
        unsafe {
            let biased = _mm512_add_ps(self.0, _mm512_set1_ps(TWO_23 + 127.0));
            F32x16(_mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(
                biased,
            ))))
        }
    }
    #[inline(always)]
    fn keep_nan(x: Self, res: Self) -> Self {
        unsafe {
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x.0, x.0);
            F32x16(_mm512_mask_blend_ps(nan, res.0, _mm512_add_ps(x.0, x.0)))
        }
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        let mut b = [0.0f32; 16];
        unsafe { _mm512_storeu_ps(b.as_mut_ptr(), self.0) };
        b.chunks_exact(4)
            .map(|c| (c[0] + c[1]) + (c[2] + c[3]))
            .fold(0.0, |a, v| a + v)
    }
}
