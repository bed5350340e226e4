//! The `(sign, log|det|)` value type and the diagonal-product helper that builds it.
//!
//! Kept apart from the dispatcher in [`crate::logdet`], which calls [`crate::lu`] and
//! [`crate::triangular`]: both of those build a [`LogDet`] from a diagonal, and importing it from
//! here keeps them from importing the module that imports them.

use crate::real::Real;

/// A determinant as `(sign, log|det|)`, like numpy's `slogdet`.
///
/// `sign` is -1, 0 or 1; `sign == 0` exactly when the matrix is singular, and then
/// `log_abs == -inf`. The determinant is `sign * exp(log_abs)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogDet<T> {
    /// -1, 0 (singular) or 1.
    pub sign: T,
    /// log|det|; -inf when singular.
    pub log_abs: T,
}

impl<T: Real> LogDet<T> {
    /// The determinant 1 (sign 1, log 0): what the empty product and the 0x0 matrix give.
    pub fn one() -> Self {
        LogDet {
            sign: T::one(),
            log_abs: T::zero(),
        }
    }

    /// The determinant 0 (sign 0, log -inf).
    pub fn singular() -> Self {
        LogDet {
            sign: T::zero(),
            log_abs: T::neg_infinity(),
        }
    }

    /// The log-det of a scalar determinant value: `(sign(v), ln|v|)`, or [`LogDet::singular`] for 0.
    pub fn from_value(v: T) -> Self {
        if v == T::zero() {
            Self::singular()
        } else {
            LogDet {
                sign: if v < T::zero() { -T::one() } else { T::one() },
                log_abs: v.abs().ln(),
            }
        }
    }

    /// Whether the determinant is zero.
    pub fn is_singular(&self) -> bool {
        self.sign == T::zero()
    }

    /// 1 / det(A) = det(A^-1): the same sign, the negated log; `None` when singular.
    pub fn inv(self) -> Option<Self> {
        (!self.is_singular()).then(|| LogDet {
            sign: self.sign,
            log_abs: -self.log_abs,
        })
    }

    /// det(cA) for an `n x n` matrix A: `c^n det(A)`, i.e. sign times `sign(c)^n`, log plus
    /// `n ln|c|`. Singular when `c == 0` and `n > 0`.
    #[must_use]
    pub fn scaled(self, c: T, n: usize) -> Self {
        if n == 0 {
            return self;
        }
        let factor = LogDet::from_value(c);
        if factor.is_singular() || self.is_singular() {
            return Self::singular();
        }
        let sign = if c < T::zero() && n % 2 == 1 {
            -self.sign
        } else {
            self.sign
        };
        LogDet {
            sign,
            log_abs: self.log_abs + T::lit(n as f64) * factor.log_abs,
        }
    }

    /// The determinant itself, `sign * exp(log_abs)`. It overflows to ±inf (or underflows to 0)
    /// when |det| is outside the floating-point range: that is why the pair is the primary result.
    pub fn det(self) -> T {
        if self.is_singular() {
            T::zero()
        } else {
            self.sign * self.log_abs.exp()
        }
    }

    /// The value parts as `f64`.
    pub fn to_f64(self) -> LogDet<f64> {
        LogDet {
            sign: self.sign.as_f64(),
            log_abs: self.log_abs.as_f64(),
        }
    }
}

impl<T: Real> std::ops::Mul for LogDet<T> {
    type Output = LogDet<T>;

    /// det(A) det(B) = det(AB): signs multiply, logs add. Singular if either is.
    fn mul(self, other: Self) -> Self {
        if self.is_singular() || other.is_singular() {
            return Self::singular();
        }
        LogDet {
            sign: self.sign * other.sign,
            log_abs: self.log_abs + other.log_abs,
        }
    }
}

/// Sum of logs with Neumaier's compensation, so that the rounding error of a long sum stays at
/// a few ulps instead of growing with n.
pub(crate) fn compensated_sum<T: Real>(values: impl IntoIterator<Item = T>) -> T {
    let mut sum = T::zero();
    let mut comp = T::zero();
    for v in values {
        let t = sum + v;
        if sum.abs() >= v.abs() {
            comp += (sum - t) + v;
        } else {
            comp += (v - t) + sum;
        }
        sum = t;
    }
    sum + comp
}

/// Log-det of a product of diagonal factors: sign from the count of negative entries, log from a
/// compensated sum of `ln|d_i|`; singular as soon as one factor is zero.
pub(crate) fn log_det_of_diagonal<T: Real>(diag: impl Iterator<Item = T> + Clone) -> LogDet<T> {
    let mut negatives = 0usize;
    for d in diag.clone() {
        if d == T::zero() {
            return LogDet::singular();
        }
        if d < T::zero() {
            negatives += 1;
        }
    }
    LogDet {
        sign: if negatives % 2 == 1 { -T::one() } else { T::one() },
        log_abs: compensated_sum(diag.map(|d| d.abs().ln())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_algebra() {
        assert_eq!(
            LogDet::<f64>::one(),
            LogDet {
                sign: 1.0,
                log_abs: 0.0
            }
        );
        let s = LogDet::<f64>::singular();
        assert!(s.is_singular() && s.log_abs == f64::NEG_INFINITY && s.det() == 0.0);
        assert_eq!(LogDet::from_value(0.0f64), s);
        assert_eq!(LogDet::from_value(-0.0f64), s);
        let m = LogDet::from_value(-8.0f64);
        assert_eq!(m.sign, -1.0);
        assert_eq!(m.log_abs, 8f64.ln());
        // exp(ln 8) is within a couple of ulps of 8, not exactly 8.
        assert!((m.det() + 8.0).abs() <= 4.0 * 8.0 * f64::EPSILON);
        // det(A^-1) = 1 / det(A).
        assert_eq!(
            m.inv(),
            Some(LogDet {
                sign: -1.0,
                log_abs: -(8f64.ln())
            })
        );
        assert_eq!(s.inv(), None);
        // det(A) det(B) = det(AB); anything times a singular matrix is singular.
        let p = m * LogDet::from_value(0.25);
        assert_eq!(p.sign, -1.0);
        assert!((p.log_abs - 2f64.ln()).abs() < 1e-15);
        assert_eq!(m * s, s);
        assert_eq!(s * m, s);
        // det(cA) = c^n det(A).
        let a = LogDet::from_value(3.0f64);
        let sc = a.scaled(-2.0, 3);
        assert_eq!(sc.sign, -1.0);
        assert!((sc.log_abs - 24f64.ln()).abs() < 1e-14);
        assert_eq!(a.scaled(-2.0, 2).sign, 1.0);
        assert_eq!(a.scaled(0.0, 2), s);
        assert_eq!(a.scaled(0.0, 0), a, "the 0x0 matrix ignores the scale");
        assert_eq!(s.scaled(5.0, 3), s);
        assert_eq!(LogDet::from_value(-2.5f32).to_f64().sign, -1.0);
    }

    #[test]
    fn det_overflows_but_the_pair_does_not() {
        let huge = LogDet {
            sign: 1.0f64,
            log_abs: 1000.0,
        };
        assert_eq!(huge.det(), f64::INFINITY);
        assert_eq!((huge * huge.inv().unwrap()).det(), 1.0);
    }

    #[test]
    fn compensated_sum_keeps_small_terms() {
        // A plain left-to-right sum gives 0 here; Neumaier's gives the exact 2.
        assert_eq!(compensated_sum([1e16f64, 1.0, -1e16, 1.0]), 2.0);
        assert_eq!(compensated_sum(std::iter::empty::<f64>()), 0.0);
        // 10^6 copies of 0.1: the compensated sum is the correctly rounded 10^5 within one ulp.
        let s = compensated_sum(std::iter::repeat_n(0.1f64, 1_000_000));
        assert!((s - 100_000.0).abs() <= 100_000f64 * f64::EPSILON, "{s}");
    }

    #[test]
    fn diagonal_helper_counts_negatives_and_zeros() {
        let d = log_det_of_diagonal([2.0f64, -3.0, -0.5].into_iter());
        assert_eq!(d.sign, 1.0);
        assert!((d.log_abs - 3f64.ln()).abs() < 1e-15);
        assert!(log_det_of_diagonal([2.0f64, 0.0, -1.0].into_iter()).is_singular());
        assert_eq!(log_det_of_diagonal(std::iter::empty::<f64>()), LogDet::one());
    }
}
