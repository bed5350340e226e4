//! A double-double scalar (about 106 bits, relative error near 1e-31 per operation) implementing
//! `Real`: the independent high-precision reference the interval enclosures are tested against.
//!
//! A flow built for `Dd` from its config and given the f64 flow's parameters (exactly: every f64
//! is a `Dd`) runs the same formulas about 1e15 times more precisely than f64, so its `log p(x)`
//! agrees with the exact value far below the width of any enclosure under test; an enclosure
//! that misses it is wrong. The arithmetic is Dekker's and Knuth's error-free transformations
//! (TwoSum, TwoProduct by FMA); `exp` reduces by ln 2 and 2^-10 and sums a Taylor series, `ln`
//! refines libm's value by Newton steps on `exp`. The trigonometric functions are f64's (flows do
//! not use them).

#![allow(dead_code)]

use std::cmp::Ordering;
use std::num::FpCategory;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, RemAssign, Sub, SubAssign};

use exactflow_kernels::{Lu, LuAlgorithm, Real, Result as KResult};
use num_traits::{Float, FromPrimitive, Num, NumCast, One, ToPrimitive, Zero};

/// `hi + lo` with `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

/// pi and ln 2 to double-double precision.
pub const PI: Dd = Dd {
    hi: std::f64::consts::PI,
    lo: 1.224_646_799_147_353_2e-16,
};
pub const LN_2: Dd = Dd {
    hi: std::f64::consts::LN_2,
    lo: 2.319_046_813_846_299_6e-17,
};

impl Dd {
    pub const fn new(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    fn renorm(hi: f64, lo: f64) -> Dd {
        let (h, l) = quick_two_sum(hi, lo);
        Dd { hi: h, lo: l }
    }

    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }

    fn is_nan_(self) -> bool {
        self.hi.is_nan()
    }

    fn ldexp(self, e: i32) -> Dd {
        let s = 2f64.powi(e);
        Dd {
            hi: self.hi * s,
            lo: self.lo * s,
        }
    }

    pub fn exp_(self) -> Dd {
        if self.hi.is_nan() {
            return self;
        }
        if self.hi > 709.0 {
            return Dd::new(f64::INFINITY);
        }
        if self.hi < -745.0 {
            return Dd::new(0.0);
        }
        let k = (self.hi / LN_2.hi).round();
        let r = (self - LN_2 * Dd::new(k)).ldexp(-10);
        // Taylor series of e^r - 1, |r| < 2^-10 * 0.35: 14 terms leave < 1e-40.
        let mut term = r;
        let mut sum = r;
        for n in 2..=14 {
            term = term * r / Dd::new(n as f64);
            sum += term;
        }
        // (1 + s)^2 - 1 = 2s + s^2, ten times, keeps the small part exact.
        for _ in 0..10 {
            sum = sum * Dd::new(2.0) + sum * sum;
        }
        (sum + Dd::new(1.0)).ldexp(k as i32)
    }

    pub fn ln_(self) -> Dd {
        if self.hi <= 0.0 || self.hi.is_nan() {
            return Dd::new(if self.hi == 0.0 { f64::NEG_INFINITY } else { f64::NAN });
        }
        if self.hi.is_infinite() {
            return self;
        }
        let mut y = Dd::new(self.hi.ln());
        for _ in 0..3 {
            y = y + self * (-y).exp_() - Dd::new(1.0);
        }
        y
    }

    pub fn sqrt_(self) -> Dd {
        if self.hi <= 0.0 {
            return Dd::new(self.hi.sqrt());
        }
        let s = Dd::new(self.hi.sqrt());
        s + (self - s * s) / (Dd::new(2.0) * s)
    }

    pub fn tanh_(self) -> Dd {
        if self.hi < 0.0 {
            return -(-self).tanh_();
        }
        if self.hi > 40.0 {
            return Dd::new(1.0) - Dd::new(2.0) * (Dd::new(-2.0) * self).exp_();
        }
        let m = (Dd::new(2.0) * self).exp_m1_();
        m / (m + Dd::new(2.0))
    }

    pub fn exp_m1_(self) -> Dd {
        if self.hi.abs() < 0.25 {
            let mut term = self;
            let mut sum = self;
            for n in 2..=40 {
                term = term * self / Dd::new(n as f64);
                sum += term;
            }
            return sum;
        }
        self.exp_() - Dd::new(1.0)
    }

    pub fn ln_1p_(self) -> Dd {
        if self.hi.abs() < 0.25 {
            // ln(1 + x) = 2 atanh(x / (2 + x)) = 2 (u + u^3/3 + u^5/5 + ...), |u| < 1/7.
            let u = self / (Dd::new(2.0) + self);
            let u2 = u * u;
            let mut term = u;
            let mut sum = u;
            for n in 1..40 {
                term *= u2;
                sum += term / Dd::new((2 * n + 1) as f64);
            }
            return sum * Dd::new(2.0);
        }
        (Dd::new(1.0) + self).ln_()
    }

    /// `lo <= self <= hi`, decided exactly.
    pub fn within(self, lo: f64, hi: f64) -> bool {
        let below = Dd::new(lo) - self; // <= 0 when lo <= self
        let above = Dd::new(hi) - self; // >= 0 when self <= hi
        (below.hi < 0.0 || (below.hi == 0.0 && below.lo <= 0.0))
            && (above.hi > 0.0 || (above.hi == 0.0 && above.lo >= 0.0))
    }
}

impl Neg for Dd {
    type Output = Dd;
    fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
}

impl Add for Dd {
    type Output = Dd;
    fn add(self, b: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, b.hi);
        if !s.is_finite() {
            return Dd::new(s);
        }
        let (t, f) = two_sum(self.lo, b.lo);
        let (s, e) = quick_two_sum(s, e + t);
        Dd::renorm(s, e + f)
    }
}

impl Sub for Dd {
    type Output = Dd;
    fn sub(self, b: Dd) -> Dd {
        self + (-b)
    }
}

impl Mul for Dd {
    type Output = Dd;
    fn mul(self, b: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, b.hi);
        if !p.is_finite() {
            return Dd::new(p);
        }
        Dd::renorm(p, e + (self.hi * b.lo + self.lo * b.hi))
    }
}

impl Div for Dd {
    type Output = Dd;
    fn div(self, b: Dd) -> Dd {
        let q1 = self.hi / b.hi;
        if !q1.is_finite() {
            return Dd::new(q1);
        }
        let r = self - b * Dd::new(q1);
        let q2 = r.hi / b.hi;
        let r = r - b * Dd::new(q2);
        let q3 = r.hi / b.hi;
        Dd::renorm(q1, q2) + Dd::new(q3)
    }
}

impl Rem for Dd {
    type Output = Dd;
    fn rem(self, b: Dd) -> Dd {
        let q = (self / b).to_f64().trunc();
        self - b * Dd::new(q)
    }
}

macro_rules! assign {
    ($tr:ident, $m:ident, $op:tt) => {
        impl $tr for Dd {
            fn $m(&mut self, b: Dd) {
                *self = *self $op b;
            }
        }
    };
}
assign!(AddAssign, add_assign, +);
assign!(SubAssign, sub_assign, -);
assign!(MulAssign, mul_assign, *);
assign!(DivAssign, div_assign, /);
assign!(RemAssign, rem_assign, %);

impl PartialEq for Dd {
    fn eq(&self, o: &Dd) -> bool {
        self.hi == o.hi && self.lo == o.lo
    }
}

impl PartialOrd for Dd {
    fn partial_cmp(&self, o: &Dd) -> Option<Ordering> {
        match self.hi.partial_cmp(&o.hi) {
            Some(Ordering::Equal) => self.lo.partial_cmp(&o.lo),
            other => other,
        }
    }
}

impl Zero for Dd {
    fn zero() -> Dd {
        Dd::new(0.0)
    }
    fn is_zero(&self) -> bool {
        self.hi == 0.0
    }
}

impl One for Dd {
    fn one() -> Dd {
        Dd::new(1.0)
    }
}

impl Num for Dd {
    type FromStrRadixErr = num_traits::ParseFloatError;
    fn from_str_radix(s: &str, r: u32) -> Result<Dd, Self::FromStrRadixErr> {
        <f64 as Num>::from_str_radix(s, r).map(Dd::new)
    }
}

impl ToPrimitive for Dd {
    fn to_i64(&self) -> Option<i64> {
        Dd::to_f64(*self).to_i64()
    }
    fn to_u64(&self) -> Option<u64> {
        Dd::to_f64(*self).to_u64()
    }
    fn to_f64(&self) -> Option<f64> {
        Some(Dd::to_f64(*self))
    }
}

impl NumCast for Dd {
    fn from<N: ToPrimitive>(n: N) -> Option<Dd> {
        n.to_f64().map(Dd::new)
    }
}

impl FromPrimitive for Dd {
    fn from_i64(n: i64) -> Option<Dd> {
        let hi = n as f64;
        Some(Dd::renorm(hi, (n as i128 - hi as i128) as f64))
    }
    fn from_u64(n: u64) -> Option<Dd> {
        let hi = n as f64;
        Some(Dd::renorm(hi, (n as i128 - hi as i128) as f64))
    }
    fn from_f64(n: f64) -> Option<Dd> {
        Some(Dd::new(n))
    }
}

/// f64's function of the value (the reference does not need these precisely).
fn low(f: fn(f64) -> f64, x: Dd) -> Dd {
    Dd::new(f(x.to_f64()))
}

impl Float for Dd {
    fn nan() -> Dd {
        Dd::new(f64::NAN)
    }
    fn infinity() -> Dd {
        Dd::new(f64::INFINITY)
    }
    fn neg_infinity() -> Dd {
        Dd::new(f64::NEG_INFINITY)
    }
    fn neg_zero() -> Dd {
        Dd::new(-0.0)
    }
    fn min_value() -> Dd {
        Dd::new(f64::MIN)
    }
    fn min_positive_value() -> Dd {
        Dd::new(f64::MIN_POSITIVE)
    }
    fn epsilon() -> Dd {
        Dd::new(f64::EPSILON * f64::EPSILON)
    }
    fn max_value() -> Dd {
        Dd::new(f64::MAX)
    }
    fn is_nan(self) -> bool {
        self.is_nan_()
    }
    fn is_infinite(self) -> bool {
        self.hi.is_infinite()
    }
    fn is_finite(self) -> bool {
        self.hi.is_finite()
    }
    fn is_normal(self) -> bool {
        self.hi.is_normal()
    }
    fn classify(self) -> FpCategory {
        self.hi.classify()
    }
    fn floor(self) -> Dd {
        let f = self.hi.floor();
        if f == self.hi {
            Dd::renorm(f, self.lo.floor())
        } else {
            Dd::new(f)
        }
    }
    fn ceil(self) -> Dd {
        -(-self).floor()
    }
    fn round(self) -> Dd {
        (self + Dd::new(0.5)).floor()
    }
    fn trunc(self) -> Dd {
        if self.hi >= 0.0 { self.floor() } else { self.ceil() }
    }
    fn fract(self) -> Dd {
        self - self.trunc()
    }
    fn abs(self) -> Dd {
        if self.hi < 0.0 { -self } else { self }
    }
    fn signum(self) -> Dd {
        Dd::new(self.hi.signum())
    }
    fn is_sign_positive(self) -> bool {
        self.hi.is_sign_positive()
    }
    fn is_sign_negative(self) -> bool {
        self.hi.is_sign_negative()
    }
    fn mul_add(self, a: Dd, b: Dd) -> Dd {
        self * a + b
    }
    fn recip(self) -> Dd {
        Dd::new(1.0) / self
    }
    fn powi(self, n: i32) -> Dd {
        let mut r = Dd::new(1.0);
        for _ in 0..n.unsigned_abs() {
            r *= self;
        }
        if n < 0 { r.recip() } else { r }
    }
    fn powf(self, n: Dd) -> Dd {
        (n * self.ln_()).exp_()
    }
    fn sqrt(self) -> Dd {
        self.sqrt_()
    }
    fn exp(self) -> Dd {
        self.exp_()
    }
    fn exp2(self) -> Dd {
        (self * LN_2).exp_()
    }
    fn ln(self) -> Dd {
        self.ln_()
    }
    fn log(self, base: Dd) -> Dd {
        self.ln_() / base.ln_()
    }
    fn log2(self) -> Dd {
        self.ln_() / LN_2
    }
    fn log10(self) -> Dd {
        self.ln_() / Dd::new(10.0).ln_()
    }
    fn max(self, o: Dd) -> Dd {
        if self.is_nan_() || o > self { o } else { self }
    }
    fn min(self, o: Dd) -> Dd {
        if self.is_nan_() || o < self { o } else { self }
    }
    fn abs_sub(self, o: Dd) -> Dd {
        (self - o).max(Dd::new(0.0))
    }
    fn cbrt(self) -> Dd {
        let c = Dd::new(self.to_f64().cbrt());
        c - (c * c * c - self) / (Dd::new(3.0) * c * c)
    }
    fn hypot(self, o: Dd) -> Dd {
        (self * self + o * o).sqrt_()
    }
    fn sin(self) -> Dd {
        low(f64::sin, self)
    }
    fn cos(self) -> Dd {
        low(f64::cos, self)
    }
    fn tan(self) -> Dd {
        low(f64::tan, self)
    }
    fn asin(self) -> Dd {
        low(f64::asin, self)
    }
    fn acos(self) -> Dd {
        low(f64::acos, self)
    }
    fn atan(self) -> Dd {
        low(f64::atan, self)
    }
    fn atan2(self, o: Dd) -> Dd {
        Dd::new(self.to_f64().atan2(o.to_f64()))
    }
    fn sin_cos(self) -> (Dd, Dd) {
        (self.sin(), self.cos())
    }
    fn exp_m1(self) -> Dd {
        self.exp_m1_()
    }
    fn ln_1p(self) -> Dd {
        self.ln_1p_()
    }
    fn sinh(self) -> Dd {
        (self.exp_() - (-self).exp_()) / Dd::new(2.0)
    }
    fn cosh(self) -> Dd {
        (self.exp_() + (-self).exp_()) / Dd::new(2.0)
    }
    fn tanh(self) -> Dd {
        self.tanh_()
    }
    fn asinh(self) -> Dd {
        low(f64::asinh, self)
    }
    fn acosh(self) -> Dd {
        low(f64::acosh, self)
    }
    fn atanh(self) -> Dd {
        low(f64::atanh, self)
    }
    fn integer_decode(self) -> (u64, i16, i8) {
        self.hi.integer_decode()
    }
}

/// `ln(2 pi) / 2` to double-double precision.
pub fn half_ln_2pi() -> Dd {
    (Dd::new(2.0) * PI).ln_() * Dd::new(0.5)
}

impl Real for Dd {
    const NAME: &'static str = "dd";

    fn as_f64(self) -> f64 {
        self.to_f64()
    }

    fn lit(x: f64) -> Dd {
        Dd::new(x)
    }

    /// The constants exactflow's formulas use, to double-double precision; any other constant
    /// is a test bug (it would silently cap the reference at f64 precision).
    fn constant(x: f64) -> Dd {
        let h = half_ln_2pi();
        if (x - h.hi).abs() <= 4.0 * f64::EPSILON {
            return h;
        }
        if (x - PI.hi).abs() <= 8.0 * f64::EPSILON {
            return PI;
        }
        if (x - LN_2.hi).abs() <= 2.0 * f64::EPSILON {
            return LN_2;
        }
        panic!("Dd::constant: no double-double value known for {x:?}");
    }

    fn is_exact_zero(self) -> bool {
        self.hi == 0.0 && self.lo == 0.0
    }

    /// log|det A| by the generic LU in double-double.
    fn log_abs_det_enclosure(a: &[Dd], n: usize) -> Option<KResult<Dd>> {
        Some(Lu::factor_in_place(a.to_vec(), n, LuAlgorithm::Unblocked).map(|lu| lu.log_det().log_abs))
    }
}
