//! `num_traits` for [`Interval`]: the comparisons (decided or recorded), the conversions and
//! every `Float` method, each returning an enclosure of the f64 method's exact counterpart.

use std::cmp::Ordering;
use std::num::FpCategory;
use std::ops::{Rem, RemAssign};

use maryada::{EnclosureOps, IntervalOps};
use num_traits::{Float, FromPrimitive, Num, NumCast, One, ToPrimitive, Zero};

use super::Interval;
use super::undecided::record;

/// Records an undecided comparison `a op b` and returns the midpoints' answer.
fn undecided_cmp(op: &'static str, a: &Interval, b: &Interval, mid: fn(&f64, &f64) -> bool) -> bool {
    record(op, || format!("{a} {op} {b}: the intervals overlap"));
    mid(&a.mid(), &b.mid())
}

/// `==` is decided for two equal points (true) and for disjoint intervals (false); two
/// overlapping intervals may hold equal or different numbers, which is recorded as undecided.
/// NaI equals nothing (as NaN).
impl PartialEq for Interval {
    fn eq(&self, other: &Self) -> bool {
        if self.is_nai() || other.is_nai() {
            return false;
        }
        if self.is_point() && other.is_point() {
            return self.lo == other.lo;
        }
        if self.hi < other.lo || other.hi < self.lo {
            return false;
        }
        undecided_cmp("==", self, other, f64::eq)
    }
}

/// An order is decided when it holds, or fails, for every pair of points of the operands:
/// `a < b` is true when `a.hi < b.lo` and false when `a.lo >= b.hi`; anything between is recorded
/// as undecided (see the module documentation). Comparisons with NaI are false, as with NaN.
impl PartialOrd for Interval {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        if self.is_nai() || other.is_nai() {
            return None;
        }
        if self.hi < other.lo {
            Some(Ordering::Less)
        } else if self.lo > other.hi {
            Some(Ordering::Greater)
        } else if self.is_point() && other.is_point() {
            Some(Ordering::Equal)
        } else {
            record("partial_cmp", || format!("{self} cmp {other}: the intervals overlap"));
            self.mid().partial_cmp(&other.mid())
        }
    }

    fn lt(&self, other: &Self) -> bool {
        if self.is_nai() || other.is_nai() {
            false
        } else if self.hi < other.lo {
            true
        } else if self.lo >= other.hi {
            false
        } else {
            undecided_cmp("<", self, other, f64::lt)
        }
    }

    fn le(&self, other: &Self) -> bool {
        if self.is_nai() || other.is_nai() {
            false
        } else if self.hi <= other.lo {
            true
        } else if self.lo > other.hi {
            false
        } else {
            undecided_cmp("<=", self, other, f64::le)
        }
    }

    fn gt(&self, other: &Self) -> bool {
        if self.is_nai() || other.is_nai() {
            false
        } else if self.lo > other.hi {
            true
        } else if self.hi <= other.lo {
            false
        } else {
            undecided_cmp(">", self, other, f64::gt)
        }
    }

    fn ge(&self, other: &Self) -> bool {
        if self.is_nai() || other.is_nai() {
            false
        } else if self.lo >= other.hi {
            true
        } else if self.hi < other.lo {
            false
        } else {
            undecided_cmp(">=", self, other, f64::ge)
        }
    }
}

impl Zero for Interval {
    fn zero() -> Self {
        Interval::point(0.0)
    }

    /// True for the point 0, false for an interval without 0; undecided otherwise.
    fn is_zero(&self) -> bool {
        if self.is_point() {
            return self.lo == 0.0;
        }
        if self.lo > 0.0 || self.hi < 0.0 || self.is_nai() {
            return false;
        }
        record("is_zero", || format!("{self} contains 0 and other numbers"));
        self.mid() == 0.0
    }
}

impl One for Interval {
    fn one() -> Self {
        Interval::point(1.0)
    }
}

/// `x % y = x - trunc(x / y) * y` (f64's `%`, exact in f64). Decided where `trunc(x / y)` is one
/// integer over the operands; otherwise the hull of every remainder, `(-|y|, |y|)` cut to the
/// sign of `x`.
impl Rem for Interval {
    type Output = Interval;

    fn rem(self, rhs: Interval) -> Interval {
        if self.is_nai() || rhs.is_nai() {
            return Interval::NAI;
        }
        if self.is_point() && rhs.is_point() {
            return Interval::point(self.lo % rhs.lo);
        }
        if rhs.lo <= 0.0 && rhs.hi >= 0.0 {
            record("%", || format!("{self} % {rhs}: the divisor contains 0"));
            return Interval::ENTIRE;
        }
        let q = self / rhs;
        let (a, b) = (q.lo.trunc(), q.hi.trunc());
        if a == b && a.is_finite() {
            return self - Interval::point(a) * rhs;
        }
        let m = rhs.mag();
        let lo = if self.lo >= 0.0 { 0.0 } else { -m };
        let hi = if self.hi <= 0.0 { 0.0 } else { m };
        Interval::raw(lo, hi)
    }
}

impl RemAssign for Interval {
    fn rem_assign(&mut self, rhs: Interval) {
        *self = *self % rhs;
    }
}

impl Num for Interval {
    type FromStrRadixErr = num_traits::ParseFloatError;

    /// Parses a number; the result encloses the number the text denotes (the parsed f64 widened
    /// by one step on each side, as the parse rounds).
    fn from_str_radix(s: &str, radix: u32) -> Result<Self, Self::FromStrRadixErr> {
        let x = <f64 as Num>::from_str_radix(s, radix)?;
        Ok(Interval::around(x, 1))
    }
}

/// An integer as an interval: exact when it is an f64, else its two neighbours.
fn from_integer(exact: i128, rounded: f64) -> Interval {
    if rounded.is_finite() && rounded as i128 == exact {
        Interval::point(rounded)
    } else {
        Interval::around(rounded, 1)
    }
}

impl ToPrimitive for Interval {
    /// Decided when both bounds truncate to the same integer.
    fn to_i64(&self) -> Option<i64> {
        self.integer_part("to_i64", |v| v.to_i64())
    }

    /// Decided when both bounds truncate to the same integer.
    fn to_u64(&self) -> Option<u64> {
        self.integer_part("to_u64", |v| v.to_u64())
    }

    /// The midpoint: an f64 estimate that leaves interval arithmetic.
    fn to_f64(&self) -> Option<f64> {
        Some(self.mid())
    }
}

impl Interval {
    fn integer_part<I: PartialEq>(self, op: &'static str, f: fn(f64) -> Option<I>) -> Option<I> {
        if self.is_nai() {
            return None;
        }
        let (a, b) = (f(self.lo), f(self.hi));
        if a.is_some() && a == b && self.lo.trunc() == self.hi.trunc() {
            return a;
        }
        record(op, || format!("{self} does not truncate to a single integer"));
        f(self.mid())
    }
}

impl NumCast for Interval {
    fn from<N: ToPrimitive>(n: N) -> Option<Self> {
        if let Some(i) = n.to_i64() {
            return Some(from_integer(i as i128, i as f64));
        }
        if let Some(u) = n.to_u64() {
            return Some(from_integer(u as i128, u as f64));
        }
        n.to_f64().map(Interval::point)
    }
}

impl FromPrimitive for Interval {
    fn from_i64(n: i64) -> Option<Self> {
        Some(from_integer(n as i128, n as f64))
    }

    fn from_u64(n: u64) -> Option<Self> {
        Some(from_integer(n as i128, n as f64))
    }

    fn from_f64(n: f64) -> Option<Self> {
        Some(Interval::point(n))
    }

    fn from_f32(n: f32) -> Option<Self> {
        Some(Interval::point(n as f64))
    }
}

/// Encloses pi: the f64 `PI` lies below it, its successor above.
fn pi() -> Interval {
    Interval::raw(std::f64::consts::PI, std::f64::consts::PI.next_up())
}

impl Float for Interval {
    fn nan() -> Self {
        Interval::NAI
    }

    fn infinity() -> Self {
        Interval::point(f64::INFINITY)
    }

    fn neg_infinity() -> Self {
        Interval::point(f64::NEG_INFINITY)
    }

    fn neg_zero() -> Self {
        Interval::point(-0.0)
    }

    fn min_value() -> Self {
        Interval::point(f64::MIN)
    }

    fn min_positive_value() -> Self {
        Interval::point(f64::MIN_POSITIVE)
    }

    fn epsilon() -> Self {
        Interval::point(f64::EPSILON)
    }

    fn max_value() -> Self {
        Interval::point(f64::MAX)
    }

    fn is_nan(self) -> bool {
        self.is_nai()
    }

    /// True when a bound is infinite: the enclosure is unbounded (it overflowed).
    fn is_infinite(self) -> bool {
        self.lo.is_infinite() || self.hi.is_infinite()
    }

    /// True when both bounds are finite.
    fn is_finite(self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }

    fn is_normal(self) -> bool {
        self.lo.is_normal() && self.hi.is_normal()
    }

    fn classify(self) -> FpCategory {
        if self.is_nai() {
            FpCategory::Nan
        } else if Float::is_infinite(self) {
            FpCategory::Infinite
        } else if self.is_point() {
            self.lo.classify()
        } else {
            self.mid().classify()
        }
    }

    fn floor(self) -> Self {
        Interval::raw(self.lo.floor(), self.hi.floor())
    }

    fn ceil(self) -> Self {
        Interval::raw(self.lo.ceil(), self.hi.ceil())
    }

    fn round(self) -> Self {
        Interval::raw(self.lo.round(), self.hi.round())
    }

    fn trunc(self) -> Self {
        Interval::raw(self.lo.trunc(), self.hi.trunc())
    }

    /// `x - trunc(x)` (exact in f64); across an integer, the hull of both sides.
    fn fract(self) -> Self {
        if self.is_nai() {
            return Interval::NAI;
        }
        if self.lo.trunc() == self.hi.trunc() && self.is_finite() {
            return Interval::raw(self.lo.fract(), self.hi.fract());
        }
        let lo = if self.lo >= 0.0 { 0.0 } else { -1.0 };
        let hi = if self.hi <= 0.0 { 0.0 } else { 1.0 };
        Interval::raw(lo, hi)
    }

    fn abs(self) -> Self {
        if self.lo >= 0.0 {
            self
        } else if self.hi <= 0.0 {
            -self
        } else if self.is_nai() {
            Interval::NAI
        } else {
            Interval::raw(0.0, (-self.lo).max(self.hi))
        }
    }

    /// The hull of the signs of the points (`[-1, 1]` across 0).
    fn signum(self) -> Self {
        if self.is_nai() {
            return Interval::NAI;
        }
        Interval::raw(self.lo.signum(), self.hi.signum())
    }

    /// Decided unless the interval holds numbers of both signs.
    fn is_sign_positive(self) -> bool {
        if self.is_point() || self.is_nai() {
            return self.lo.is_sign_positive();
        }
        if self.lo >= 0.0 {
            true
        } else if self.hi <= 0.0 {
            false
        } else {
            record("is_sign_positive", || format!("{self} holds numbers of both signs"));
            self.mid().is_sign_positive()
        }
    }

    /// Decided unless the interval holds numbers of both signs.
    fn is_sign_negative(self) -> bool {
        if self.is_point() || self.is_nai() {
            return self.lo.is_sign_negative();
        }
        if self.hi <= 0.0 && self.lo < 0.0 {
            true
        } else if self.lo >= 0.0 {
            false
        } else {
            record("is_sign_negative", || format!("{self} holds numbers of both signs"));
            self.mid().is_sign_negative()
        }
    }

    /// `self * a + b`, each operation enclosed (not fused).
    fn mul_add(self, a: Self, b: Self) -> Self {
        self * a + b
    }

    fn recip(self) -> Self {
        Interval::point(1.0) / self
    }

    fn powi(self, n: i32) -> Self {
        self.powi_i(n)
    }

    fn powf(self, n: Self) -> Self {
        self.powf_i(n)
    }

    fn sqrt(self) -> Self {
        self.sqrt_i()
    }

    fn exp(self) -> Self {
        self.exp_i()
    }

    fn exp2(self) -> Self {
        self.exp2_i()
    }

    fn ln(self) -> Self {
        self.ln_i()
    }

    /// `ln(self) / ln(base)`.
    fn log(self, base: Self) -> Self {
        self.ln_i() / base.ln_i()
    }

    fn log2(self) -> Self {
        self.log2_i()
    }

    fn log10(self) -> Self {
        self.log10_i()
    }

    /// `self * (180 / pi)` with pi enclosed.
    fn to_degrees(self) -> Self {
        self * (Interval::point(180.0) / pi())
    }

    /// `self * (pi / 180)` with pi enclosed.
    fn to_radians(self) -> Self {
        self * (pi() / Interval::point(180.0))
    }

    /// The hull of `max(x, y)` over the operands: `[max(lo), max(hi)]`, never undecided (NaI
    /// operands are ignored, as f64's `max` ignores NaN).
    fn max(self, other: Self) -> Self {
        if self.is_nai() {
            return other;
        }
        if other.is_nai() {
            return self;
        }
        Interval::raw(self.lo.max(other.lo), self.hi.max(other.hi))
    }

    /// The hull of `min(x, y)`: `[min(lo), min(hi)]`, never undecided.
    fn min(self, other: Self) -> Self {
        if self.is_nai() {
            return other;
        }
        if other.is_nai() {
            return self;
        }
        Interval::raw(self.lo.min(other.lo), self.hi.min(other.hi))
    }

    /// `max(min(self, max), min)`: a hull, never undecided.
    fn clamp(self, min: Self, max: Self) -> Self {
        Float::max(Float::min(self, max), min)
    }

    fn abs_sub(self, other: Self) -> Self {
        Float::max(self - other, Interval::point(0.0))
    }

    fn cbrt(self) -> Self {
        self.cbrt_i()
    }

    /// `sqrt(x^2 + y^2)` in interval arithmetic.
    fn hypot(self, other: Self) -> Self {
        let (a, b) = (Float::abs(self), Float::abs(other));
        (a * a + b * b).sqrt_i()
    }

    fn sin(self) -> Self {
        self.via(|m| m.sin(), f64::sin)
    }

    fn cos(self) -> Self {
        self.via(|m| m.cos(), f64::cos)
    }

    fn tan(self) -> Self {
        self.via(|m| m.tan(), f64::tan)
    }

    fn asin(self) -> Self {
        self.via_domain("asin", -1.0, 1.0, |m| m.asin(), f64::asin)
    }

    fn acos(self) -> Self {
        self.via_domain("acos", -1.0, 1.0, |m| m.acos(), f64::acos)
    }

    fn atan(self) -> Self {
        self.via(|m| m.atan(), f64::atan)
    }

    /// `atan2(self, other)` (self = y, other = x), maryada's enclosure.
    fn atan2(self, other: Self) -> Self {
        if self.is_nai() || other.is_nai() || !self.is_finite() || !other.is_finite() {
            return Interval::point(self.mid().atan2(other.mid())).hull(Interval::raw(-4.0, 4.0));
        }
        let (y, x) = (
            maryada::Interval::new(self.lo, self.hi),
            maryada::Interval::new(other.lo, other.hi),
        );
        let r = maryada::atan2(y, x);
        if r.is_empty() {
            record("atan2", || format!("atan2({self}, {other}) is not defined"));
            return Interval::raw(-4.0, 4.0);
        }
        Interval::raw(r.inf(), r.sup())
    }

    fn sin_cos(self) -> (Self, Self) {
        (Float::sin(self), Float::cos(self))
    }

    fn exp_m1(self) -> Self {
        self.exp_m1_i()
    }

    fn ln_1p(self) -> Self {
        self.ln_1p_i()
    }

    fn sinh(self) -> Self {
        self.via(|m| m.sinh(), f64::sinh)
    }

    fn cosh(self) -> Self {
        self.via(|m| m.cosh(), f64::cosh)
    }

    fn tanh(self) -> Self {
        self.tanh_i()
    }

    fn asinh(self) -> Self {
        self.via(|m| m.asinh(), f64::asinh)
    }

    fn acosh(self) -> Self {
        self.via_domain("acosh", 1.0, f64::INFINITY, |m| m.acosh(), f64::acosh)
    }

    fn atanh(self) -> Self {
        self.via_domain("atanh", -1.0, 1.0, |m| m.atanh(), f64::atanh)
    }

    /// The midpoint's decomposition.
    fn integer_decode(self) -> (u64, i16, i8) {
        Float::integer_decode(self.mid())
    }

    /// `|self|` with the sign of `sign` (decided as [`Float::is_sign_negative`]).
    fn copysign(self, sign: Self) -> Self {
        let a = Float::abs(self);
        if sign.is_sign_negative() { -a } else { a }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interval::undecided::watch;

    fn i(lo: f64, hi: f64) -> Interval {
        Interval::raw(lo, hi)
    }

    #[test]
    fn separated_intervals_compare_without_a_record() {
        let ((), d) = watch(|| {
            assert!(i(1.0, 2.0) < i(3.0, 4.0));
            assert!(i(1.0, 2.0).partial_cmp(&i(3.0, 4.0)) != Some(Ordering::Greater));
            assert!(i(0.0, 1.0) >= Interval::zero());
            assert!(i(-1.0, 0.0) <= Interval::zero());
            assert!(Interval::point(2.0) == Interval::point(2.0));
            assert!(i(1.0, 2.0) != i(3.0, 4.0));
            assert_eq!(i(1.0, 2.0).partial_cmp(&i(3.0, 4.0)), Some(Ordering::Less));
        });
        assert!(d.all_decided(), "{d:?}");
    }

    #[test]
    fn straddling_intervals_are_recorded_with_their_operation() {
        let x = i(-1e-17, 1e-17);
        let zero = Interval::zero();
        for (op, f) in [
            (
                "<",
                (|a: Interval, b: Interval| a < b) as fn(Interval, Interval) -> bool,
            ),
            ("<=", |a, b| a <= b),
            (">", |a, b| a > b),
            (">=", |a, b| a >= b),
            ("==", |a, b| a == b),
        ] {
            let (_, d) = watch(|| f(x, zero));
            assert_eq!(d.count, 1, "{op}");
            assert_eq!(d.first[0].op, op);
            assert!(d.first[0].detail.contains("overlap"));
        }
        let (_, d) = watch(|| x.is_sign_negative());
        assert_eq!(d.first[0].op, "is_sign_negative");
        let (_, d) = watch(|| i(0.5, 1.5).to_i64());
        assert_eq!(d.first[0].op, "to_i64");
        let (v, d) = watch(|| i(1.2, 1.7).to_i64());
        assert!(d.all_decided());
        assert_eq!(v, Some(1));
    }

    #[test]
    fn hulls_decide_max_min_abs_and_clamp() {
        let x = i(-1.0, 2.0);
        let ((), d) = watch(|| {
            let r = Float::max(x, Interval::zero());
            assert_eq!((r.lo, r.hi), (0.0, 2.0));
            let r = Float::min(x, Interval::zero());
            assert_eq!((r.lo, r.hi), (-1.0, 0.0));
            let r = Float::abs(x);
            assert_eq!((r.lo, r.hi), (0.0, 2.0));
            let r = Float::clamp(x, Interval::point(-0.5), Interval::point(0.5));
            assert_eq!((r.lo, r.hi), (-0.5, 0.5));
            let r = Float::fract(i(0.5, 1.5));
            assert_eq!((r.lo, r.hi), (0.0, 1.0));
        });
        assert!(d.all_decided());
    }

    #[test]
    fn integers_beyond_2_pow_53_are_enclosed() {
        let n = (1i64 << 53) + 1;
        let x = <Interval as FromPrimitive>::from_i64(n).unwrap_or(Interval::NAI);
        assert!(!x.is_point());
        assert!(x.lo < n as f64 + 1.0 && x.hi > n as f64 - 1.0);
        let y = <Interval as NumCast>::from(12u8).unwrap_or(Interval::NAI);
        assert!(y.is_point() && y.lo == 12.0);
    }

    #[test]
    fn parsed_decimals_enclose_the_decimal() {
        let x = <Interval as Num>::from_str_radix("0.1", 10).unwrap_or(Interval::NAI);
        // 0.1 is not an f64; the f64 nearest it is above it, and the interval reaches below.
        assert!(x.lo < 0.1 && 0.1 < x.hi);
    }

    #[test]
    fn remainders_enclose_fmod() {
        let r = i(5.0, 5.5) % Interval::point(2.0);
        assert!(r.lo <= 1.0 && 1.5 <= r.hi);
        let r = i(3.0, 5.0) % Interval::point(2.0);
        assert_eq!((r.lo, r.hi), (0.0, 2.0));
    }
}
