//! The four operations on intervals, and the directed roundings they are built from.
//!
//! Rust computes in round-to-nearest, so a directed bound of one operation is the rounded result
//! moved one representable step outward ([`down`], [`up`]), except where the rounding error is
//! known: TwoSum gives a sum's error exactly (its sign says on which side the exact sum lies, and
//! a zero error keeps the sum exact), and a product or quotient with a zero operand is exactly
//! zero.

use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use super::Interval;
use super::undecided;

/// A lower bound of an exact value whose round-to-nearest result is `r` (one step down).
#[inline]
pub(crate) fn down(r: f64) -> f64 {
    r.next_down()
}

/// An upper bound of an exact value whose round-to-nearest result is `r` (one step up).
#[inline]
pub(crate) fn up(r: f64) -> f64 {
    r.next_up()
}

/// `s = fl(a + b)` and the rounding error `e = (a + b) - s`, exact when `s` is finite (Knuth's
/// TwoSum, valid in round-to-nearest for any finite `a`, `b` without overflow).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// A lower bound of `a + b` (tight: `fl(a + b)` when that is below or equal to the exact sum).
#[inline]
pub(crate) fn add_down(a: f64, b: f64) -> f64 {
    let (s, e) = two_sum(a, b);
    if !s.is_finite() {
        // Overflow of finite operands rounds to inf; the exact sum is at least f64::MAX.
        return if s == f64::INFINITY && a.is_finite() && b.is_finite() {
            f64::MAX
        } else {
            s
        };
    }
    if e < 0.0 { down(s) } else { s }
}

/// An upper bound of `a + b`.
#[inline]
pub(crate) fn add_up(a: f64, b: f64) -> f64 {
    -add_down(-a, -b)
}

/// An upper bound of `a - b`.
#[inline]
pub(crate) fn sub_up(a: f64, b: f64) -> f64 {
    add_up(a, -b)
}

/// A lower bound of `a - b`.
#[inline]
pub(crate) fn sub_down(a: f64, b: f64) -> f64 {
    add_down(a, -b)
}

/// A lower bound of `a * b`; exactly 0 when either factor is 0 (also against an infinite bound,
/// which stands for unbounded reals).
#[inline]
pub(crate) fn mul_down(a: f64, b: f64) -> f64 {
    if a == 0.0 || b == 0.0 {
        return 0.0;
    }
    let p = a * b;
    #[cfg(feature = "fault-injection")]
    if super::fault::active() == super::fault::Fault::ProductsRoundedToNearest {
        return p;
    }
    if p.is_infinite() && a.is_finite() && b.is_finite() {
        return if p > 0.0 { f64::MAX } else { p };
    }
    if p.is_infinite() { p } else { down(p) }
}

/// An upper bound of `a * b`.
#[inline]
pub(crate) fn mul_up(a: f64, b: f64) -> f64 {
    -mul_down(-a, b)
}

/// A lower bound of `a / b` for `b != 0`; exactly 0 for `a == 0`.
#[inline]
pub(crate) fn div_down(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        return 0.0;
    }
    let q = a / b;
    if q.is_infinite() && a.is_finite() {
        return if q > 0.0 { f64::MAX } else { q };
    }
    if q.is_infinite() { q } else { down(q) }
}

/// An upper bound of `a / b` for `b != 0`.
#[inline]
pub(crate) fn div_up(a: f64, b: f64) -> f64 {
    -div_down(-a, b)
}

impl Interval {
    /// `[a, b] * [c, d]`, by the signs of the operands (at most two products per bound).
    fn mul_interval(self, rhs: Interval) -> Interval {
        if self.is_nai() || rhs.is_nai() {
            return Interval::NAI;
        }
        let (a, b, c, d) = (self.lo, self.hi, rhs.lo, rhs.hi);
        if a == b && c == d {
            // Points: one product, rounded outward.
            let (x, y) = (a, c);
            return Interval::raw(mul_down(x, y), mul_up(x, y));
        }
        let (lo, hi) = if a >= 0.0 {
            if c >= 0.0 {
                (mul_down(a, c), mul_up(b, d))
            } else if d <= 0.0 {
                (mul_down(b, c), mul_up(a, d))
            } else {
                (mul_down(b, c), mul_up(b, d))
            }
        } else if b <= 0.0 {
            if c >= 0.0 {
                (mul_down(a, d), mul_up(b, c))
            } else if d <= 0.0 {
                (mul_down(b, d), mul_up(a, c))
            } else {
                (mul_down(a, d), mul_up(a, c))
            }
        } else if c >= 0.0 {
            (mul_down(a, d), mul_up(b, d))
        } else if d <= 0.0 {
            (mul_down(b, c), mul_up(a, c))
        } else {
            (mul_down(a, d).min(mul_down(b, c)), mul_up(a, c).max(mul_up(b, d)))
        };
        Interval::raw(lo, hi)
    }

    /// `[a, b] / [c, d]`. A divisor containing 0 is recorded as undecided (the quotient is not
    /// defined everywhere) and gives `ENTIRE`.
    fn div_interval(self, rhs: Interval) -> Interval {
        if self.is_nai() || rhs.is_nai() {
            return Interval::NAI;
        }
        let (a, b, c, d) = (self.lo, self.hi, rhs.lo, rhs.hi);
        let (lo, hi) = if c > 0.0 {
            if a >= 0.0 {
                (div_down(a, d), div_up(b, c))
            } else if b <= 0.0 {
                (div_down(a, c), div_up(b, d))
            } else {
                (div_down(a, c), div_up(b, c))
            }
        } else if d < 0.0 {
            if a >= 0.0 {
                (div_down(b, d), div_up(a, c))
            } else if b <= 0.0 {
                (div_down(b, c), div_up(a, d))
            } else {
                (div_down(b, d), div_up(a, d))
            }
        } else {
            undecided::record("/", || format!("{self} / {rhs}: the divisor contains 0"));
            return Interval::ENTIRE;
        };
        // inf / inf (both bounds infinite) has no f64 value: the quotient is unbounded.
        Interval::raw(
            if lo.is_nan() { f64::NEG_INFINITY } else { lo },
            if hi.is_nan() { f64::INFINITY } else { hi },
        )
    }
}

impl Neg for Interval {
    type Output = Interval;
    #[inline]
    fn neg(self) -> Interval {
        Interval::raw(-self.hi, -self.lo)
    }
}

impl Add for Interval {
    type Output = Interval;
    #[inline]
    fn add(self, rhs: Interval) -> Interval {
        let lo = add_down(self.lo, rhs.lo);
        let hi = add_up(self.hi, rhs.hi);
        if lo.is_nan() || hi.is_nan() {
            // inf + (-inf): an unbounded interval plus another is unbounded, not undefined,
            // unless an operand is NaI.
            if self.is_nai() || rhs.is_nai() {
                return Interval::NAI;
            }
            return Interval::raw(
                if lo.is_nan() { f64::NEG_INFINITY } else { lo },
                if hi.is_nan() { f64::INFINITY } else { hi },
            );
        }
        Interval::raw(lo, hi)
    }
}

impl Sub for Interval {
    type Output = Interval;
    #[inline]
    fn sub(self, rhs: Interval) -> Interval {
        self + (-rhs)
    }
}

impl Mul for Interval {
    type Output = Interval;
    #[inline]
    fn mul(self, rhs: Interval) -> Interval {
        self.mul_interval(rhs)
    }
}

impl Div for Interval {
    type Output = Interval;
    #[inline]
    fn div(self, rhs: Interval) -> Interval {
        self.div_interval(rhs)
    }
}

impl AddAssign for Interval {
    #[inline]
    fn add_assign(&mut self, rhs: Interval) {
        *self = *self + rhs;
    }
}

impl SubAssign for Interval {
    #[inline]
    fn sub_assign(&mut self, rhs: Interval) {
        *self = *self - rhs;
    }
}

impl MulAssign for Interval {
    #[inline]
    fn mul_assign(&mut self, rhs: Interval) {
        *self = *self * rhs;
    }
}

impl DivAssign for Interval {
    #[inline]
    fn div_assign(&mut self, rhs: Interval) {
        *self = *self / rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sum_keeps_exact_sums_exact_and_brackets_inexact_ones() {
        assert_eq!(add_down(1.0, 2.0), 3.0);
        assert_eq!(add_up(1.0, 2.0), 3.0);
        let (lo, hi) = (add_down(1.0, 1e-30), add_up(1.0, 1e-30));
        assert_eq!(lo, 1.0);
        assert_eq!(hi, 1.0f64.next_up());
        let (lo, hi) = (add_down(1.0, -1e-30), add_up(1.0, -1e-30));
        assert_eq!(lo, 1.0f64.next_down());
        assert_eq!(hi, 1.0);
    }

    #[test]
    fn overflow_keeps_a_finite_inner_bound() {
        assert_eq!(add_down(f64::MAX, f64::MAX), f64::MAX);
        assert_eq!(add_up(f64::MAX, f64::MAX), f64::INFINITY);
        assert_eq!(mul_down(1e200, 1e200), f64::MAX);
        assert_eq!(mul_up(1e200, 1e200), f64::INFINITY);
        assert_eq!(mul_down(-1e200, 1e200), f64::NEG_INFINITY);
        assert_eq!(mul_up(-1e200, 1e200), -f64::MAX);
    }

    #[test]
    fn products_with_zero_are_exact_even_against_infinity() {
        let z = Interval::point(0.0);
        let half_line = Interval::raw(1.0, f64::INFINITY);
        let p = z * half_line;
        assert_eq!((p.lo, p.hi), (0.0, 0.0));
    }

    #[test]
    fn signs_of_the_operands_pick_the_right_corners() {
        let cases = [(-2.0, 3.0, -5.0, 7.0), (1.0, 2.0, -3.0, -1.0), (-4.0, -1.0, 2.0, 5.0)];
        for (a, b, c, d) in cases {
            let p = Interval::raw(a, b) * Interval::raw(c, d);
            let corners = [a * c, a * d, b * c, b * d];
            let lo = corners.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = corners.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!(p.lo <= lo && hi <= p.hi, "{p:?} vs [{lo}, {hi}]");
            assert!(p.lo >= lo.next_down() && p.hi <= hi.next_up());
        }
    }

    #[test]
    fn division_by_an_interval_containing_zero_is_recorded() {
        let (q, d) = undecided::watch(|| Interval::point(1.0) / Interval::raw(-1.0, 1.0));
        assert_eq!((q.lo, q.hi), (f64::NEG_INFINITY, f64::INFINITY));
        assert_eq!(d.count, 1);
        assert_eq!(d.first[0].op, "/");
    }
}
