//! A small vector abstraction and the vectorized exp and tanh written once against it.
//!
//! Each instruction set implements [`Lanes`] for its `f32` and `f64` registers; the algorithms
//! here are `#[inline(always)]` generic bodies that are compiled inside `#[target_feature]` entry
//! points (see `mod.rs`), so one body serves every backend.
//!
//! A register is made only from the CPU-feature token of its instruction set (`load`, `splat`)
//! and carries it, so the lane operations are safe methods: holding a register proves the CPU
//! runs its instructions (see `token`). Only the memory side of `load` and `store` is `unsafe`.

/// Elements in the stack buffers that pad a slice's tail to a whole register.
const TAIL: usize = 16;

/// One SIMD register of `W` lanes of `E`, with the handful of operations the kernels need.
///
/// # Safety
/// An implementor guarantees that a value of the type exists only if a `Token` was obtained (its
/// constructors take one, its fields are private), which is what makes its instruction set safe
/// to run in every method; and that `load` and `store` access exactly `W` elements.
pub(crate) unsafe trait Lanes: Copy {
    /// The CPU-feature token whose existence proves this register's instructions run here.
    type Token: Copy;
    /// The element type (`f32` or `f64`).
    type E: Copy + Default + std::ops::Add<Output = Self::E> + std::ops::Sub<Output = Self::E>;
    /// Lanes per register.
    const W: usize;

    /// The token this register was made with, to make more registers of its kind.
    fn token(self) -> Self::Token;
    /// Unaligned load of `W` elements.
    ///
    /// # Safety
    /// `p` must be valid for reading `W` elements. (The token covers the instruction set.)
    unsafe fn load(simd: Self::Token, p: *const Self::E) -> Self;
    /// Unaligned store of `W` elements.
    ///
    /// # Safety
    /// `p` must be valid for writing `W` elements. (The register's token covers the instruction
    /// set.)
    unsafe fn store(self, p: *mut Self::E);
    /// `v` in every lane.
    fn splat(simd: Self::Token, v: Self::E) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `self * b + c` with a single rounding.
    fn fma(self, b: Self, c: Self) -> Self;
    fn neg(self) -> Self;
    /// Lane-wise `self / o`, correctly rounded.
    fn div(self, o: Self) -> Self;
    /// `|self|` (clears the sign bit).
    fn abs(self) -> Self;
    /// The magnitude of `self` with the sign bit of `sign`.
    fn copysign(self, sign: Self) -> Self;
    /// Lane-wise max; the result for a NaN lane is unspecified (the exp fixes NaN lanes itself).
    fn max(self, o: Self) -> Self;
    /// Lane-wise min; the result for a NaN lane is unspecified.
    fn min(self, o: Self) -> Self;
    /// Round to the nearest integer (ties to even).
    fn round(self) -> Self;
    fn floor(self) -> Self;
    /// `2^self` for lanes holding integers whose power of two is a normal number, built by
    /// writing the biased exponent directly.
    fn pow2i(self) -> Self;
    /// `x` where `x` is NaN, `res` elsewhere.
    fn keep_nan(x: Self, res: Self) -> Self;
    /// Sum of the lanes.
    fn reduce_sum(self) -> Self::E;
}

/// 2^52: adding it to an integer-valued f64 below 2^52 puts the integer in the low mantissa bits.
pub(crate) const TWO_52: f64 = (1u64 << 52) as f64;
/// 2^23: the same for f32.
pub(crate) const TWO_23: f32 = (1u32 << 23) as f32;

// fdlibm's split of ln 2: LN2_HI has trailing zero bits so that k * LN2_HI is exact for every k
// the clamped input can produce, and x - k * LN2_HI is then exact by Sterbenz's lemma.
const LN2_HI_64: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-1
const LN2_LO_64: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
const LOG2E_64: f64 = std::f64::consts::LOG2_E;
// Below -746, exp(x) < 2^-1076 rounds to 0; above 710 it overflows. Clamping keeps k in the
// range where the two-step scaling below stays exact.
const LO_64: f64 = -746.0;
const HI_64: f64 = 710.0;

// Cephes' split for single precision (LN2_HI has 9 significant bits).
const LN2_HI_32: f32 = f32::from_bits(0x3f31_8000); // 0.693359375
const LN2_LO_32: f32 = f32::from_bits(0xb95e_8083); // -2.12194440e-4
const LOG2E_32: f32 = std::f32::consts::LOG2_E;
const LO_32: f32 = -104.0;
const HI_32: f32 = 89.0;

/// `1/n!` for n = 13 down to 0: the Taylor coefficients of exp (all of them) and of
/// `(expm1(r) - r) / r^2` (the first twelve, `1/13!` to `1/2!`) in f64.
const INV_FACTORIALS_64: [f64; 14] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// `1/n!` for n = 8 down to 0 in f32: exp takes `1/7!` to `1/0!`, tanh's expm1 `1/8!` to `1/2!`.
const INV_FACTORIALS_32: [f32; 9] = [
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// exp for `f64` lanes: at most 4 ULP from std's exp over the whole range (measured ~1 ULP).
///
/// x = k ln 2 + r with |r| <= ln 2 / 2, exp(r) by its Taylor polynomial of degree 13 (truncation
/// below 4e-18 relative), and 2^k applied as 2^k1 * 2^k2 with k1 = floor(k / 2): both factors are
/// normal numbers, the first product is exact and the second rounds once, so subnormal results
/// are correctly rounded from p and overflow gives +inf as it should.
#[inline(always)]
pub(crate) fn exp_f64<L: Lanes<E = f64>>(x: L) -> L {
    let simd = x.token();
    let xc = x.max(L::splat(simd, LO_64)).min(L::splat(simd, HI_64));
    let k = xc.mul(L::splat(simd, LOG2E_64)).round();
    let hi = k.neg().fma(L::splat(simd, LN2_HI_64), xc);
    let r = k.neg().fma(L::splat(simd, LN2_LO_64), hi);
    let mut p = L::splat(simd, INV_FACTORIALS_64[0]);
    for &c in &INV_FACTORIALS_64[1..] {
        p = p.fma(r, L::splat(simd, c));
    }
    let k1 = k.mul(L::splat(simd, 0.5)).floor();
    let k2 = k.sub(k1);
    let res = p.mul(k1.pow2i()).mul(k2.pow2i());
    L::keep_nan(x, res)
}

/// exp for `f32` lanes, the same scheme with a degree-7 polynomial (truncation below 0.1 ULP).
#[inline(always)]
pub(crate) fn exp_f32<L: Lanes<E = f32>>(x: L) -> L {
    let simd = x.token();
    let xc = x.max(L::splat(simd, LO_32)).min(L::splat(simd, HI_32));
    let k = xc.mul(L::splat(simd, LOG2E_32)).round();
    let hi = k.neg().fma(L::splat(simd, LN2_HI_32), xc);
    let r = k.neg().fma(L::splat(simd, LN2_LO_32), hi);
    // Degree 7: 1/7! down to 1/0!.
    let mut p = L::splat(simd, INV_FACTORIALS_32[1]);
    for &c in &INV_FACTORIALS_32[2..] {
        p = p.fma(r, L::splat(simd, c));
    }
    let k1 = k.mul(L::splat(simd, 0.5)).floor();
    let k2 = k.sub(k1);
    let res = p.mul(k1.pow2i()).mul(k2.pow2i());
    L::keep_nan(x, res)
}

/// The constants of one precision for [`tanh_body`].
struct TanhConsts<E: 'static> {
    /// Inputs are clamped to `|x| <= clamp`, where tanh already rounds to 1 (see `tanh_f64`).
    clamp: E,
    log2e: E,
    ln2_hi: E,
    ln2_lo: E,
    /// `1/(j + 2)!` from the highest power down: `expm1(r) = r + r^2 * sum_j r^j / (j + 2)!`.
    poly: &'static [E],
}

/// tanh as `sign(x) * e / (e + 2)` with `e = expm1(2|x|)`.
///
/// `expm1` rather than `exp` so that nothing cancels: `e / (e + 2)` has a relative error of at most
/// `e`'s plus two roundings for every `|x|` (`d(e/(e+2))/(e/(e+2)) = 2/(e+2) * de/e <= de/e`).
/// `expm1(y) = 2^k (q + 1) - 1 = 2^k q + (2^k - 1)` with `y = k ln 2 + r`, `|r| <= ln 2 / 2` and
/// `q = expm1(r)` by its Taylor polynomial written as `r + r^2 P(r)`, so that `q` keeps full
/// relative accuracy as `r -> 0` (for k = 0, `e = q` exactly; tiny and subnormal `x` give `x`).
/// `y = 2|x|` is exact, `k ln2_hi` is exact for the clamped range (`ln2_hi` has trailing zero
/// bits) and `y - k ln2_hi` is exact by Sterbenz's lemma, as in the exp above. One FMA forms `e`
/// from `q`, and for k >= 1 the term `2^k q` is at most 1.42 times `e` (`q >= expm1(-ln 2 / 2)`),
/// so `q`'s error is not amplified further.
#[inline(always)]
fn tanh_body<L: Lanes>(x: L, c: &TanhConsts<L::E>, one: L::E, two: L::E) -> L
where
    L::E: 'static,
{
    let simd = x.token();
    let a = x.abs().min(L::splat(simd, c.clamp));
    let y = a.add(a);
    let k = y.mul(L::splat(simd, c.log2e)).round();
    let hi = k.neg().fma(L::splat(simd, c.ln2_hi), y);
    let r = k.neg().fma(L::splat(simd, c.ln2_lo), hi);
    let mut p = L::splat(simd, c.poly[0]);
    for &coef in &c.poly[1..] {
        p = p.fma(r, L::splat(simd, coef));
    }
    let q = r.mul(r).fma(p, r);
    let s = k.pow2i();
    let e = s.fma(q, s.sub(L::splat(simd, one)));
    let t = e.div(e.add(L::splat(simd, two)));
    L::keep_nan(x, t.copysign(x))
}

// Above 20, 1 - tanh(x) < 2e-17 is below half an ulp of 1 in f64 (the threshold is 19.06), and
// there `e + 2` rounds to `e`, so the result is exactly 1; 2x = 40 keeps k = 58 where 2^k is normal.
const TANH_64: TanhConsts<f64> = TanhConsts {
    clamp: 20.0,
    log2e: LOG2E_64,
    ln2_hi: LN2_HI_64,
    ln2_lo: LN2_LO_64,
    // 1/(j+2)! for j = 11 down to 0: the polynomial ends at r^13 / 13!, and the first omitted term
    // r^14 / 14! is below 1.2e-17 relative to q ~ r for |r| <= ln 2 / 2 (0.1 ulp).
    poly: INV_FACTORIALS_64.split_at(12).0,
};

// Above 10, 1 - tanh(x) < 4.2e-9 is below half an ulp of 1 in f32 (the threshold is 9.01), and
// `e + 2` rounds to `e`; 2x = 20 keeps k = 29.
const TANH_32: TanhConsts<f32> = TanhConsts {
    clamp: 10.0,
    log2e: LOG2E_32,
    ln2_hi: LN2_HI_32,
    ln2_lo: LN2_LO_32,
    // Up to r^8 / 8!; the first omitted term is below 6e-10 relative (0.01 ulp).
    poly: INV_FACTORIALS_32.split_at(7).0,
};

/// tanh for `f64` lanes (see [`tanh_body`]; the accuracy is stated and tested in `crate::simd`).
#[inline(always)]
pub(crate) fn tanh_f64<L: Lanes<E = f64>>(x: L) -> L {
    tanh_body(x, &TANH_64, 1.0, 2.0)
}

/// tanh for `f32` lanes (see [`tanh_body`]; checked against the f64 tanh on every f32 input, see
/// `crate::simd`).
#[inline(always)]
pub(crate) fn tanh_f32<L: Lanes<E = f32>>(x: L) -> L {
    tanh_body(x, &TANH_32, 1.0, 2.0)
}

/// Applies `f` to every element of `xs` in place, `W` at a time; the tail goes through a padded
/// register so that it sees exactly the same arithmetic as the body.
#[inline(always)]
pub(crate) fn map_in_place<L: Lanes>(simd: L::Token, xs: &mut [L::E], f: impl Fn(L) -> L) {
    const { assert!(L::W <= TAIL) };
    let mut chunks = xs.chunks_exact_mut(L::W);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly W elements.
        unsafe { f(L::load(simd, c.as_ptr())).store(c.as_mut_ptr()) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut buf = [L::E::default(); TAIL];
        buf[..tail.len()].copy_from_slice(tail);
        // SAFETY: buf holds TAIL >= W elements (asserted at compile time above).
        unsafe { f(L::load(simd, buf.as_ptr())).store(buf.as_mut_ptr()) };
        tail.copy_from_slice(&buf[..tail.len()]);
    }
}

/// `out[i] = f(a[i], b[i], c[i])`, `W` at a time with a padded tail. All four slices must have
/// the same length (checked by the callers).
#[inline(always)]
pub(crate) fn zip3<L: Lanes>(
    simd: L::Token,
    a: &[L::E],
    b: &[L::E],
    c: &[L::E],
    out: &mut [L::E],
    f: impl Fn(L, L, L) -> L,
) {
    const { assert!(L::W <= TAIL) };
    assert!(a.len() == out.len() && b.len() == out.len() && c.len() == out.len());
    let n = out.len();
    let body = n - n % L::W;
    let mut i = 0;
    while i < body {
        // SAFETY: i + W <= n for all four slices.
        unsafe {
            let r = f(
                L::load(simd, a.as_ptr().add(i)),
                L::load(simd, b.as_ptr().add(i)),
                L::load(simd, c.as_ptr().add(i)),
            );
            r.store(out.as_mut_ptr().add(i));
        }
        i += L::W;
    }
    if body < n {
        let m = n - body;
        let mut ba = [L::E::default(); TAIL];
        let mut bb = [L::E::default(); TAIL];
        let mut bc = [L::E::default(); TAIL];
        ba[..m].copy_from_slice(&a[body..]);
        bb[..m].copy_from_slice(&b[body..]);
        bc[..m].copy_from_slice(&c[body..]);
        // SAFETY: the buffers hold TAIL >= W elements (asserted at compile time above).
        unsafe {
            let r = f(
                L::load(simd, ba.as_ptr()),
                L::load(simd, bb.as_ptr()),
                L::load(simd, bc.as_ptr()),
            );
            r.store(ba.as_mut_ptr());
        }
        out[body..].copy_from_slice(&ba[..m]);
    }
}

/// `out[i] = f(a[i], b[i])`, `W` at a time with a padded tail.
#[inline(always)]
pub(crate) fn zip2<L: Lanes>(simd: L::Token, a: &[L::E], b: &[L::E], out: &mut [L::E], f: impl Fn(L, L) -> L) {
    const { assert!(L::W <= TAIL) };
    assert!(a.len() == out.len() && b.len() == out.len());
    let n = out.len();
    let body = n - n % L::W;
    let mut i = 0;
    while i < body {
        // SAFETY: i + W <= n for all three slices.
        unsafe {
            f(L::load(simd, a.as_ptr().add(i)), L::load(simd, b.as_ptr().add(i))).store(out.as_mut_ptr().add(i));
        }
        i += L::W;
    }
    if body < n {
        let m = n - body;
        let mut ba = [L::E::default(); TAIL];
        let mut bb = [L::E::default(); TAIL];
        ba[..m].copy_from_slice(&a[body..]);
        bb[..m].copy_from_slice(&b[body..]);
        // SAFETY: the buffers hold TAIL >= W elements (asserted at compile time above).
        unsafe { f(L::load(simd, ba.as_ptr()), L::load(simd, bb.as_ptr())).store(ba.as_mut_ptr()) };
        out[body..].copy_from_slice(&ba[..m]);
    }
}

/// Sum of a row: `W` lanes at a time, then the lanes, then the scalar tail.
#[inline(always)]
pub(crate) fn row_sum<L: Lanes>(simd: L::Token, row: &[L::E]) -> L::E {
    let n = row.len();
    let body = n - n % L::W;
    let mut total = L::E::default();
    if body > 0 {
        let mut acc = L::splat(simd, L::E::default());
        let mut i = 0;
        while i < body {
            // SAFETY: i + W <= n.
            acc = acc.add(unsafe { L::load(simd, row.as_ptr().add(i)) });
            i += L::W;
        }
        total = acc.reduce_sum();
    }
    for &v in &row[body..] {
        total = total + v;
    }
    total
}
