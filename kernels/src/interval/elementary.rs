//! Elementary functions on intervals.
//!
//! Every function here is monotone on its domain, or split into monotone pieces by maryada, so
//! an enclosure of the image of `[lo, hi]` is a lower bound of the function at one end and an
//! upper bound at the other.
//!
//! | function | enclosure |
//! |---|---|
//! | `exp`, `ln`, `log2`, `log10`, `exp2`, trigonometric, `sinh`, `cosh`, `asinh`, `acosh`, `atanh`, `pow` | maryada (IEEE 1788.1; `exp`, `ln` within one step of the tightest) |
//! | `sqrt` | IEEE's correctly rounded square root, one step outward |
//! | `cbrt` | libm's cube root, checked by cubing it in interval arithmetic and stepped outward until the check holds |
//! | `tanh(t)`, `t >= 2^-9` | `(1 - e) / (1 + e)` with `e` an enclosure of `exp(-2t)` |
//! | `tanh(t)`, `0 <= t < 2^-9` | `S_4 <= tanh t <= S_3`, partial sums of the alternating Taylor series `t - t^3/3 + 2t^5/15 - 17t^7/315 + ...` (terms decrease for `t < 1.5`) |
//! | `ln_1p(t)`, `exp_m1(t)`, `|t| < 2^-9` | the Taylor polynomial of degree 6 plus or minus a bound of the remainder: `|t|^7 / (7 (1 - |t|))` for `ln_1p`, `2 |t|^7 / 7!` for `exp_m1` |
//! | `ln_1p(t)`, `exp_m1(t)` otherwise | `ln(1 + t)` and `exp(t) - 1` in interval arithmetic |
//!
//! Odd functions (`tanh`, `cbrt`) are evaluated on `|t|` and mirrored. An argument outside a
//! function's domain gives NaI; one that is only partly outside it (`ln [-1, 1]`) is recorded as
//! undecided and the result encloses the image of the part inside.

use maryada::{EnclosureOps, IntervalOps};

use super::Interval;
use super::arith::{div_up, down, mul_down, mul_up, sub_down, up};
use super::undecided;

/// Below this magnitude the small-argument series are used.
const SMALL: f64 = 1.0 / 512.0;

/// maryada's interval for the same set (`None` for NaI and for the points at infinity, which
/// IEEE 1788 intervals do not contain).
fn to_maryada(x: Interval) -> Option<maryada::Interval> {
    if x.is_nai() || x.lo == f64::INFINITY || x.hi == f64::NEG_INFINITY {
        return None;
    }
    Some(maryada::Interval::new(x.lo, x.hi))
}

fn from_maryada(m: maryada::Interval) -> Interval {
    if m.is_empty() {
        Interval::NAI
    } else {
        Interval::raw(m.inf(), m.sup())
    }
}

/// Applies a maryada function; at the points at infinity, the f64 function's value.
fn via_maryada(x: Interval, f: impl Fn(maryada::Interval) -> maryada::Interval, at_inf: fn(f64) -> f64) -> Interval {
    match to_maryada(x) {
        Some(m) => from_maryada(f(m)),
        None if x.is_nai() => Interval::NAI,
        None => Interval::point(at_inf(x.lo)),
    }
}

/// Where the domain `[d_lo, d_hi]` of `op` leaves `x`: `Some(result)` when nothing of `x` is in
/// the domain (NaI, or the f64 value at a single boundary point such as `ln 0 = -inf`), `None`
/// otherwise. An `x` partly outside is recorded as undecided.
fn leave_domain(op: &'static str, x: Interval, d_lo: f64, d_hi: f64) -> Option<Interval> {
    if x.is_nai() || x.hi < d_lo || x.lo > d_hi {
        return Some(Interval::NAI);
    }
    if x.lo < d_lo || x.hi > d_hi {
        undecided::record(op, || {
            format!("{op} of {x}: the argument leaves the domain [{d_lo:?}, {d_hi:?}]")
        });
    }
    None
}

/// The common elementary functions as inherent methods (the same as the `Float` ones), so that
/// they need no trait import.
impl Interval {
    /// An enclosure of `e^x` over the interval.
    pub fn exp(self) -> Interval {
        self.exp_i()
    }

    /// An enclosure of `ln x` (see the module documentation for arguments reaching `<= 0`).
    pub fn ln(self) -> Interval {
        self.ln_i()
    }

    /// An enclosure of `sqrt x`.
    pub fn sqrt(self) -> Interval {
        self.sqrt_i()
    }

    /// An enclosure of `tanh x`.
    pub fn tanh(self) -> Interval {
        self.tanh_i()
    }

    /// An enclosure of `ln(1 + x)`.
    pub fn ln_1p(self) -> Interval {
        self.ln_1p_i()
    }

    /// An enclosure of `e^x - 1`.
    pub fn exp_m1(self) -> Interval {
        self.exp_m1_i()
    }
}

impl Interval {
    /// The intersection with `[d_lo, d_hi]` (assumed to meet it).
    fn clamp_to(self, d_lo: f64, d_hi: f64) -> Interval {
        Interval::raw(self.lo.max(d_lo), self.hi.min(d_hi))
    }

    /// `e^x`.
    pub(crate) fn exp_i(self) -> Interval {
        via_maryada(self, |m| m.exp(), f64::exp)
    }

    /// `2^x`.
    pub(crate) fn exp2_i(self) -> Interval {
        via_maryada(self, |m| m.exp2(), f64::exp2)
    }

    /// Natural logarithm; `ln [0, 0] = [-inf, -inf]` as in f64.
    pub(crate) fn ln_i(self) -> Interval {
        self.log_with("ln", |m| m.log(), f64::ln)
    }

    pub(crate) fn log2_i(self) -> Interval {
        self.log_with("log2", |m| m.log2(), f64::log2)
    }

    pub(crate) fn log10_i(self) -> Interval {
        self.log_with("log10", |m| m.log10(), f64::log10)
    }

    fn log_with(
        self,
        op: &'static str,
        f: impl Fn(maryada::Interval) -> maryada::Interval,
        g: fn(f64) -> f64,
    ) -> Interval {
        if self.is_point() && self.lo == 0.0 {
            return Interval::point(f64::NEG_INFINITY);
        }
        if let Some(r) = leave_domain(op, self, 0.0, f64::INFINITY) {
            return r;
        }
        let inside = self.clamp_to(0.0, f64::INFINITY);
        via_maryada(inside, f, g)
    }

    /// Square root: IEEE's correctly rounded `sqrt`, one step outward.
    pub(crate) fn sqrt_i(self) -> Interval {
        if let Some(r) = leave_domain("sqrt", self, 0.0, f64::INFINITY) {
            return r;
        }
        let x = self.clamp_to(0.0, f64::INFINITY);
        let lo = if x.lo == 0.0 { 0.0 } else { down(x.lo.sqrt()).max(0.0) };
        let hi = if x.hi == 0.0 || x.hi == f64::INFINITY {
            x.hi.sqrt()
        } else {
            up(x.hi.sqrt())
        };
        Interval::raw(lo, hi)
    }

    /// Cube root.
    pub(crate) fn cbrt_i(self) -> Interval {
        if self.is_nai() {
            return Interval::NAI;
        }
        Interval::raw(cbrt_bound(self.lo, false), cbrt_bound(self.hi, true))
    }

    /// Hyperbolic tangent (see the module table).
    pub(crate) fn tanh_i(self) -> Interval {
        if self.is_nai() {
            return Interval::NAI;
        }
        Interval::raw(tanh_bound(self.lo, false), tanh_bound(self.hi, true))
    }

    /// `ln(1 + x)`.
    pub(crate) fn ln_1p_i(self) -> Interval {
        if self.is_point() && self.lo == -1.0 {
            return Interval::point(f64::NEG_INFINITY);
        }
        if let Some(r) = leave_domain("ln_1p", self, -1.0, f64::INFINITY) {
            return r;
        }
        let x = self.clamp_to(-1.0, f64::INFINITY);
        let lo = ln_1p_point(x.lo).lo;
        let hi = ln_1p_point(x.hi).hi;
        Interval::raw(lo, hi)
    }

    /// `e^x - 1`.
    pub(crate) fn exp_m1_i(self) -> Interval {
        if self.is_nai() {
            return Interval::NAI;
        }
        Interval::raw(exp_m1_point(self.lo).lo, exp_m1_point(self.hi).hi)
    }

    /// `x^n` for an integer `n` (maryada's `pown`, which knows that even powers are >= 0).
    pub(crate) fn powi_i(self, n: i32) -> Interval {
        if n < 0 && self.lo <= 0.0 && self.hi >= 0.0 {
            undecided::record("powi", || {
                format!("{self}^{n}: a negative power of an interval containing 0")
            });
            return Interval::ENTIRE;
        }
        via_maryada(self, |m| m.pown(n), |v| v)
    }

    /// `x^y`: `powi` for a point integer `y`, maryada's `pow` (defined for `x >= 0`) otherwise.
    pub(crate) fn powf_i(self, y: Interval) -> Interval {
        if y.is_point() && y.lo.fract() == 0.0 && y.lo.abs() <= i32::MAX as f64 {
            return self.powi_i(y.lo as i32);
        }
        if let Some(r) = leave_domain("powf", self, 0.0, f64::INFINITY) {
            return r;
        }
        if self.lo <= 0.0 && y.lo <= 0.0 {
            undecided::record("powf", || format!("{self}^{y}: 0 to a power <= 0"));
            return Interval::ENTIRE;
        }
        let x = self.clamp_to(0.0, f64::INFINITY);
        match (to_maryada(x), to_maryada(y)) {
            (Some(a), Some(b)) => from_maryada(a.pow(b)),
            _ => Interval::raw(
                self.lo.powf(y.lo).min(self.hi.powf(y.hi)),
                self.lo.powf(y.lo).max(self.hi.powf(y.hi)),
            ),
        }
    }

    /// Applies a maryada function with a domain `[d_lo, d_hi]`.
    pub(crate) fn via_domain(
        self,
        op: &'static str,
        d_lo: f64,
        d_hi: f64,
        f: impl Fn(maryada::Interval) -> maryada::Interval,
        g: fn(f64) -> f64,
    ) -> Interval {
        if let Some(r) = leave_domain(op, self, d_lo, d_hi) {
            return r;
        }
        via_maryada(self.clamp_to(d_lo, d_hi), f, g)
    }

    /// A maryada function defined everywhere.
    pub(crate) fn via(self, f: impl Fn(maryada::Interval) -> maryada::Interval, g: fn(f64) -> f64) -> Interval {
        via_maryada(self, f, g)
    }
}

/// A lower (`upper = false`) or upper bound of `cbrt(x)`, checked by cubing.
fn cbrt_bound(x: f64, upper: bool) -> f64 {
    if x == 0.0 || x.is_infinite() || x.is_nan() {
        return x;
    }
    if x < 0.0 {
        return -cbrt_bound(-x, !upper);
    }
    let mut c = x.cbrt();
    for _ in 0..4 {
        let cube = Interval::point(c) * Interval::point(c) * Interval::point(c);
        let ok = if upper { cube.lo >= x } else { cube.hi <= x };
        if ok {
            return c;
        }
        c = if upper { up(c) } else { down(c) };
    }
    // libm is far off: fall back to trivially valid bounds (cbrt x lies between 0, 1 and x).
    if upper { x.max(1.0) } else { 0.0 }
}

/// A lower or upper bound of `tanh(t)`.
fn tanh_bound(t: f64, upper: bool) -> f64 {
    if t == 0.0 {
        return 0.0;
    }
    if t < 0.0 {
        return -tanh_bound(-t, !upper);
    }
    if t.is_infinite() {
        return 1.0;
    }
    let x = Interval::point(t);
    if t < SMALL {
        // Alternating series: S_3 >= tanh t >= S_4.
        let x2 = x * x;
        let x3 = x2 * x;
        let x5 = x3 * x2;
        let s3 = x - x3 / Interval::point(3.0) + x5 * Interval::point(2.0) / Interval::point(15.0);
        return if upper {
            s3.hi
        } else {
            let x7 = x5 * x2;
            (s3 - x7 * Interval::point(17.0) / Interval::point(315.0)).lo
        };
    }
    let e = (x * Interval::point(-2.0)).exp_i();
    let one = Interval::point(1.0);
    // (1 - e) / (1 + e) decreases in e: the lower bound uses e's upper end and vice versa.
    if upper {
        let el = Interval::point(e.lo);
        ((one - el) / (one + el)).hi.min(1.0)
    } else {
        let eh = Interval::point(e.hi);
        ((one - eh) / (one + eh)).lo
    }
}

/// `sum_{n=1}^{6} c_n t^n` in interval arithmetic by Horner's rule, `c_n = num_n / den_n`.
fn taylor6(t: f64, coeffs: [(f64, f64); 6]) -> Interval {
    let x = Interval::point(t);
    let c = |(num, den): (f64, f64)| Interval::point(num) / Interval::point(den);
    let mut p = c(coeffs[5]);
    for &k in coeffs[..5].iter().rev() {
        p = p * x + c(k);
    }
    p * x
}

/// `[r - b, r + b]` for an upper bound `b` of a remainder's magnitude.
fn plus_minus(r: Interval, b: f64) -> Interval {
    r + Interval::raw(-b, b)
}

/// An enclosure of `ln(1 + t)` for a point `t > -1` (or `t = inf`).
fn ln_1p_point(t: f64) -> Interval {
    if t == 0.0 {
        return Interval::point(0.0);
    }
    if t.abs() < SMALL {
        let p = taylor6(
            t,
            [
                (1.0, 1.0),
                (-1.0, 2.0),
                (1.0, 3.0),
                (-1.0, 4.0),
                (1.0, 5.0),
                (-1.0, 6.0),
            ],
        );
        // |sum_{n>=7} (-1)^(n+1) t^n / n| <= |t|^7 / (7 (1 - |t|)).
        let a = t.abs();
        let a7 = (0..6).fold(a, |acc, _| mul_up(acc, a));
        let denom = mul_down(7.0, sub_down(1.0, a));
        return plus_minus(p, div_up(a7, denom));
    }
    (Interval::point(1.0) + Interval::point(t)).ln_i()
}

/// An enclosure of `e^t - 1` for a point `t`.
fn exp_m1_point(t: f64) -> Interval {
    if t == 0.0 {
        return Interval::point(0.0);
    }
    if t == f64::NEG_INFINITY {
        return Interval::point(-1.0);
    }
    if t.abs() < SMALL {
        let p = taylor6(
            t,
            [
                (1.0, 1.0),
                (1.0, 2.0),
                (1.0, 6.0),
                (1.0, 24.0),
                (1.0, 120.0),
                (1.0, 720.0),
            ],
        );
        // |sum_{n>=7} t^n / n!| <= |t|^7 / 7! * e^|t| <= 2 |t|^7 / 5040 for |t| < 1/512.
        let a = t.abs();
        let a7 = (0..6).fold(a, |acc, _| mul_up(acc, a));
        return plus_minus(p, up(up(2.0 * a7) / 5040.0));
    }
    Interval::point(t).exp_i() - Interval::point(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encloses(i: Interval, v: f64) -> bool {
        i.lo <= v && v <= i.hi
    }

    #[test]
    fn small_and_large_arguments_enclose_std() {
        for &t in &[-3.0, -0.5, -1e-3, -1e-9, 1e-12, 1e-3, 0.0019, 0.002, 0.3, 2.0, 25.0] {
            let x = Interval::point(t);
            assert!(encloses(x.tanh_i(), t.tanh()), "tanh {t}: {:?}", x.tanh_i());
            assert!(encloses(x.exp_m1_i(), t.exp_m1()), "exp_m1 {t}");
            assert!(encloses(x.exp_i(), t.exp()), "exp {t}");
            if t > -1.0 {
                assert!(encloses(x.ln_1p_i(), t.ln_1p()), "ln_1p {t}");
            }
            // A few ulps wide at most, relative to the value.
            assert!(
                x.tanh_i().width() <= 1e-13 * t.tanh().abs().max(1e-300),
                "tanh {t} too wide"
            );
        }
    }

    #[test]
    fn small_argument_series_are_tight() {
        let t = 1e-4;
        let x = Interval::point(t);
        for i in [x.tanh_i(), x.ln_1p_i(), x.exp_m1_i()] {
            assert!(i.relative_width() < 1e-15, "{i:?}");
        }
    }

    #[test]
    fn domains_are_respected() {
        assert!(Interval::point(-1.0).ln_i().is_nai());
        assert_eq!(Interval::point(0.0).ln_i().lo, f64::NEG_INFINITY);
        let (r, d) = undecided::watch(|| Interval::raw(-1.0, 4.0).sqrt_i());
        assert_eq!(d.count, 1);
        assert!(r.lo == 0.0 && r.hi >= 2.0);
        let (_, d) = undecided::watch(|| Interval::raw(1.0, 4.0).sqrt_i());
        assert!(d.all_decided());
    }

    #[test]
    fn cube_roots_are_checked_by_cubing() {
        for &x in &[27.0, -8.0, 2.0, 1e-300, 3e200] {
            let c = Interval::point(x).cbrt_i();
            let cube = c * c * c;
            assert!(cube.lo <= x && x <= cube.hi, "{x}: {c:?}");
        }
    }
}
