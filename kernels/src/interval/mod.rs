//! Interval arithmetic: a [`Real`](crate::Real) scalar whose every operation returns an interval
//! guaranteed to contain the exact result.
//!
//! An [`Interval`] `[lo, hi]` stands for an unknown real number `x` with `lo <= x <= hi`. Each
//! operation returns an interval that contains the exact result of the operation applied to
//! every point of its operands (the *inclusion property*), so a whole computation run on
//! intervals ends with an interval containing the value that exact real arithmetic would give
//! for the same inputs and the same formulas. A flow evaluated on intervals thereby *certifies*
//! its log-likelihood: see `Flow::to_interval` in exactflow-models.
//!
//! # What the guarantee rests on
//!
//! - **Basic operations** (`+ - * /`, `sqrt`): IEEE 754 binary64 rounded to nearest (Rust's
//!   only mode) returns the representable number nearest the exact result, so the exact result
//!   lies strictly between the neighbours of the rounded one: `[next_down(r), next_up(r)]`
//!   encloses it, in the subnormal range (whose spacing is constant) and at overflow too
//!   (`next_down(inf) = f64::MAX`). Sums are rounded tighter: the error-free transformation
//!   TwoSum gives the rounding error's sign, so an exact sum stays exact. No rounding mode is
//!   switched and no flush-to-zero may be on (Rust never turns it on).
//! - **Elementary functions**: `exp` and `ln` come from the IEEE 1788.1 crate `maryada`, which
//!   widens its pinned `libm` 0.2.16 results by one representable step on the strength of the
//!   error bound below one ulp stated in those sources (maryada's CONFORMANCE.md). `tanh`,
//!   `ln_1p` and `exp_m1` are built here from those two, with rigorous series bounds for small
//!   arguments (see `elementary`); the trigonometric and inverse hyperbolic functions and `pow`
//!   are maryada's (its "valid" enclosures). `sqrt` and `cbrt` are verified here directly.
//! - **Matrix products** ([`Real::gemm_kernel`](crate::Real::gemm_kernel)) use faer's f64 gemm in
//!   midpoint-radius form with an a-priori error bound that holds for any summation order
//!   (module `matmul`).
//!
//! # Comparisons and branches
//!
//! Generic code branches on `<`, `>=`, `==`, `partial_cmp`, `is_sign_positive`, integer
//! conversions and the like. On intervals such a branch is *decided* when every point of the
//! operands gives the same answer (`[1, 2] < [3, 4]` is true, `[1, 2] < [0, 1]` is false); an
//! interval that straddles the branch point is *undecided*. An undecided comparison is never
//! silently resolved: it is recorded in a per-thread log ([`undecided`]), and the certified
//! evaluation reports the sample as not certified, naming the operation and its operands. (The
//! comparison still returns the midpoints' answer so that the computation can run to its end.)
//! Functions with a natural interval extension do not branch at all: `max`, `min`, `abs`,
//! `floor`, `signum`, ... return the hull of every point's result, which is how a ReLU written
//! with `max` stays decided at 0. Operations whose domain an interval may leave (a divisor
//! containing 0, `ln` or `sqrt` of an interval reaching below 0) are recorded the same way.
//!
//! The log is per thread; exactflow's generic code runs a scalar's operations on the calling
//! thread (the one parallel generic loop, gemm, is replaced for intervals by a comparison-free
//! product). Code that fans interval work out to threads must gather each thread's log.
//!
//! `as_f64` and `to_f64` return the midpoint: they leave interval arithmetic, and code must not
//! branch on them.

mod arith;
mod elementary;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod float;
pub mod logdet;
pub(crate) mod matmul;
mod scalar;
pub mod undecided;

use std::fmt;

use crate::error::{Error, Result};

pub use logdet::{CertifiedLogDet, certify_log_det, certify_log_det_with};
pub use undecided::{Decisions, Undecided, watch};

/// A closed interval `[lo, hi]` of reals with f64 bounds, or NaI ("not an interval": the result of
/// an undefined operation or of a NaN input, both bounds NaN).
///
/// Bounds may be infinite (an enclosure that overflowed); `[inf, inf]` and `[-inf, -inf]` stand
/// for the f64 infinities, which generic code uses as sentinels.
///
/// ```
/// use exactflow_kernels::Interval;
/// # fn main() -> exactflow_kernels::Result<()> {
/// let tenth = Interval::point(0.1); // the f64 nearest 0.1, exactly
/// let x = tenth * Interval::point(3.0);
/// assert!(x.lo() <= 0.1 * 3.0 && 0.1 * 3.0 <= x.hi());
/// assert!(x.width() <= 2.0 * f64::EPSILON);
/// let y = Interval::new(1.0, 2.0)?.exp();
/// assert!(y.lo() <= 1f64.exp() && 2f64.exp() <= y.hi());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct Interval {
    lo: f64,
    hi: f64,
}

impl Interval {
    /// Not an interval: both bounds NaN.
    pub const NAI: Interval = Interval {
        lo: f64::NAN,
        hi: f64::NAN,
    };

    /// Every real number, `[-inf, inf]`.
    pub const ENTIRE: Interval = Interval {
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
    };

    /// The interval `[lo, hi]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a bound is NaN or `lo > hi`.
    pub fn new(lo: f64, hi: f64) -> Result<Self> {
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::invalid(
                "Interval::new",
                "bounds",
                format!("[{lo:e}, {hi:e}] is not an interval (expected lo <= hi, neither NaN)"),
            ));
        }
        Ok(Interval { lo, hi })
    }

    /// The point interval `[x, x]` (NaI for NaN).
    #[inline]
    pub const fn point(x: f64) -> Self {
        Interval { lo: x, hi: x }
    }

    /// Builds from bounds the caller knows to be ordered (or both NaN).
    #[inline]
    pub(crate) const fn raw(lo: f64, hi: f64) -> Self {
        Interval { lo, hi }
    }

    /// An interval containing a mathematical constant `c` given by an f64 `x` within `ulps`
    /// units in the last place of `c`: `x` widened by `ulps` representable steps on each side.
    pub fn around(x: f64, ulps: u32) -> Self {
        let (mut lo, mut hi) = (x, x);
        for _ in 0..ulps {
            lo = lo.next_down();
            hi = hi.next_up();
        }
        Interval { lo, hi }
    }

    /// The lower bound.
    #[inline]
    pub fn lo(self) -> f64 {
        self.lo
    }

    /// The upper bound.
    #[inline]
    pub fn hi(self) -> f64 {
        self.hi
    }

    /// The midpoint `(lo + hi) / 2` rounded to nearest (without overflow); 0 for `ENTIRE`, the
    /// infinite bound for a half-line, NaN for NaI.
    pub fn mid(self) -> f64 {
        if self.lo == self.hi {
            return self.lo;
        }
        match (self.lo.is_finite(), self.hi.is_finite()) {
            (true, true) => self.lo.midpoint(self.hi),
            (false, false) if self.lo < 0.0 && self.hi > 0.0 => 0.0,
            (false, _) => self.lo,
            (_, false) => self.hi,
        }
    }

    /// `hi - lo`, rounded up (so that it bounds the true width); 0 for a point, NaN for NaI.
    pub fn width(self) -> f64 {
        if self.lo == self.hi {
            return 0.0;
        }
        arith::sub_up(self.hi, self.lo)
    }

    /// An upper bound of the radius: every point of the interval is within it of [`Interval::mid`].
    pub fn rad(self) -> f64 {
        if self.lo == self.hi {
            return 0.0;
        }
        let m = self.mid();
        arith::sub_up(self.hi, m).max(arith::sub_up(m, self.lo))
    }

    /// The smallest absolute value of a point of the interval (0 when it contains 0).
    pub fn mig(self) -> f64 {
        if self.lo > 0.0 {
            self.lo
        } else if self.hi < 0.0 {
            -self.hi
        } else if self.is_nai() {
            f64::NAN
        } else {
            0.0
        }
    }

    /// The largest absolute value of a point of the interval.
    pub fn mag(self) -> f64 {
        self.lo.abs().max(self.hi.abs())
    }

    /// The relative width `(hi - lo) / mig`: a bound on the relative error of any point of the
    /// interval taken as the value. `inf` when the interval contains 0 (and is not the point 0),
    /// 0 for a point, NaN for NaI.
    pub fn relative_width(self) -> f64 {
        if self.lo == self.hi {
            return 0.0;
        }
        let m = self.mig();
        if m == 0.0 { f64::INFINITY } else { self.width() / m }
    }

    /// Whether `x` lies in the interval.
    pub fn contains(self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// Whether every point of `other` lies in `self`.
    pub fn encloses(self, other: Interval) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    /// Whether the interval is a single point.
    pub fn is_point(self) -> bool {
        self.lo == self.hi
    }

    /// Whether this is NaI.
    #[inline]
    pub fn is_nai(self) -> bool {
        self.lo.is_nan() || self.hi.is_nan()
    }

    /// The smallest interval containing both (NaI only when both are).
    pub fn hull(self, other: Interval) -> Interval {
        if self.is_nai() {
            return other;
        }
        if other.is_nai() {
            return self;
        }
        Interval::raw(self.lo.min(other.lo), self.hi.max(other.hi))
    }
}

impl fmt::Debug for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:e}, {:e}]", self.lo, self.hi)
    }
}

/// `[lo, hi]` with the bounds in Rust's shortest round-trip notation (so the printed bounds are
/// the exact f64 bounds).
impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nai() {
            return write!(f, "NaI");
        }
        write!(f, "[{:?}, {:?}]", self.lo, self.hi)
    }
}

impl From<f64> for Interval {
    fn from(x: f64) -> Self {
        Interval::point(x)
    }
}
