//! A numerical audit of a dense log-determinant: how far the computed `(sign, log|det|)` can be
//! from the true one, with the evidence.
//!
//! [`audit_matrix`] computes the log-det as [`crate::log_det_with`] does, the LU from
//! `Lu::factor(A)` (the audit needs `A`'s own factors for the backward error; above n = 32,
//! `log_det` itself factors `A^T` for f32/f64, whose determinant is the same, so its value agrees
//! with the audited one within the two factorizations' bounds, and the audit of the transposed
//! matrix reports it bit for bit), and reports, in a [`MatrixAudit`] that serializes to JSON
//! under stable keys:
//!
//! 1. **Backward error** of the LU factorization `P A = L U`, as LAPACK's test ratio (xGET01)
//!
//!    `backward_error = ||P A - L U||_1 / (n ||A||_1 eps)`,
//!
//!    with `eps` the machine epsilon of the input precision (2^-52 for f64, 2^-23 for f32). The
//!    residual `R = P A - L U` is computed from the factors converted to f64 with an accurate dot
//!    product (TwoSum and an fma for each product's error, Ogita-Rump-Oishi's Dot2): as if in
//!    twice the f64 precision, so the ratio measures the factorization, not the check. Then
//!    `L U = P (A + E)` exactly with `E = -P^T R`, `||E||_1 = ||R||_1`: the computed log-det is
//!    the exact log-det of `A + E`. For a backward-stable factorization the ratio is O(1).
//!    The triangular method reads the determinant off the diagonal of `A` itself: no
//!    factorization, so its backward error is 0.
//! 2. **Condition number** `cond1_estimate = ||A||_1 est(||B^-1||_1)` for `B = P^T L U = A + E`,
//!    the matrix the factors represent, with `est` Hager's estimator as refined by Higham
//!    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, Algorithm 15.4;
//!    the algorithm of LAPACK's xLACN2, which xGECON runs on the LU factors): a few solves with
//!    `B` and `B^T` (at most 5 iterations) and Higham's extra alternating-sign test vector. The
//!    estimate is a norm `||B^-1 x||_1` of a vector with `||x||_1 = 1`, hence a lower bound on
//!    `||B^-1||_1`, and in practice nearly always exact or within a factor 3 (Higham, Sec. 15.3).
//!    The solves run in f64 whatever the input precision (an estimate needs no more, and f64
//!    does not overflow where an f32 solve of a nearly singular matrix would).
//! 3. **An error bound** on `log|det|`. Write `B = A + E` and `eta = ||B^-1||_1 ||E||_1`, i.e.
//!
//!    `eta = cond1_estimate * ||E||_1 / ||A||_1 = cond1_estimate * backward_error * n * eps`.
//!
//!    Then `log|det A| - log|det B| = log|det(I - B^-1 E)| = sum_i log|1 - lambda_i|` over the
//!    eigenvalues of `M = B^-1 E`, each of modulus at most `||M||_1 <= eta`. For `eta < 1` every
//!    term lies within `-log(1 - eta)` of 0 (and `A`, `B` have determinants of the same sign, as
//!    `det(B - tE)` never vanishes for t in [0, 1]), so
//!
//!    `|log|det A| - log|det B|| <= -n log(1 - eta) = n eta + O(n eta^2)`,
//!
//!    which to first order is the classical `|tr(A^-1 E)| <= n ||A^-1 E||_1 <= n kappa_1
//!    ||E||_1 / ||A||_1`. To that is added the rounding of forming the result from the exact
//!    diagonal `d_i` of U (or of A): each `ln|d_i|` is within one ulp, at most
//!    `eps |ln|d_i||`, and their compensated (Neumaier) sum `s` within `eps |s| + 4 n eps^2
//!    sum_i |ln|d_i||`. In all:
//!
//!    `log_abs_error_bound = -n ln(1 - eta) + eps (|s| + (1 + 4 n eps) sum_i |ln|d_i||)`.
//!
//!    The bound is reported only while `eta < 1/2` ([`BOUND_VALID_LIMIT`]): beyond, the
//!    perturbation can move the determinant through zero, and (the condition number being an
//!    estimate from below) the margin to `eta = 1` is what keeps an underestimate by up to a
//!    factor 2 harmless. Otherwise `log_abs_error_bound = +inf` and `bound_valid = false`; a
//!    singular result (sign 0) always has an invalid bound. The bound is rigorous up to the
//!    condition estimate (a lower bound, usually exact) and the rounding of the residual itself
//!    (relative `O(n eps_f64)`, negligible).
//! 4. For **f32 input**, the log-det of the same values recomputed in f64 ([`Recompute`]).
//! 5. For **integer matrices** (every entry an integer of at most 63 bits), the exact
//!    determinant by fraction-free Bareiss elimination on arbitrary-precision integers
//!    ([`bareiss_determinant`], [`ExactDeterminant`]), with its log computed from its bits
//!    ([`log_abs_bigint`]), and whether the computed result agrees with it within the bound.
//!
//! Non-finite numbers have no JSON representation: in the serialized form `+inf`, `-inf` and
//! NaN are written as the strings `"inf"`, `"-inf"` and `"NaN"` (as the CLI writes `log_abs`).
//!
//! ```
//! use exactflow_kernels::audit::audit_matrix;
//! # fn main() -> exactflow_kernels::Result<()> {
//! let audit = audit_matrix(&[2.0, 1.0, 4.0, -3.0], 2, false)?;
//! assert_eq!(audit.sign, -1.0);
//! assert!((audit.log_abs - 10f64.ln()).abs() <= audit.log_abs_error_bound);
//! assert!(audit.backward_error < 10.0 && audit.bound_valid);
//! let exact = audit.exact.as_ref().expect("an integer matrix");
//! assert_eq!(exact.digits, "-10");
//! assert!(exact.agrees);
//! # Ok(())
//! # }
//! ```

use num_traits::Zero;
use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::logdet::{LogDet, LogDetMethod, UsedMethod};
use crate::lu::Lu;
use crate::matrix::{Matrix, MatrixInput, check_finite, check_square};
use crate::real::Real;
use crate::triangular::{log_det_triangular, triangle_of};

/// The arbitrary-precision integer of the exact determinant (from the `num-bigint` crate).
pub use num_bigint::BigInt;

const OP: &str = "audit_matrix";

/// The error bound on `log|det|` is reported only while `eta = cond1 * ||E||_1 / ||A||_1` is
/// below this value (see the [module documentation](self)).
pub const BOUND_VALID_LIMIT: f64 = 0.5;

/// The largest order for which [`audit_matrix`] computes the exact determinant of an integer
/// matrix: Bareiss elimination costs about `n^3 / 3` big-integer multiply-and-divides on numbers
/// of up to `n (b + log2 n)` bits (for `b`-bit entries): about 0.2 s at n = 128 with one-digit
/// entries and 2.5 s with 63-bit ones (measured on one core), hence the limit.
pub const EXACT_MAX_N: usize = 128;

/// Hager-Higham iterations (LAPACK's ITMAX): the first solve with `(1/n, ..., 1/n)` counts.
const HAGER_MAX_ITER: usize = 5;

/// ln 2 split in two: `LN_2_HI + LN_2_LO` is ln 2 to about 2^-107.
const LN_2_HI: f64 = std::f64::consts::LN_2;
const LN_2_LO: f64 = 2.319_046_813_846_299_6e-17;

/// The audit of one log-determinant (see the [module documentation](self) for the formulas).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatrixAudit {
    /// Order of the matrix.
    pub n: usize,
    /// The precision of the main result: "f32" or "f64".
    pub precision: String,
    /// Sign of the determinant computed in the input precision: -1, 0 (singular) or 1.
    #[serde(serialize_with = "finite_or_string")]
    pub sign: f64,
    /// log|det| computed in the input precision (-inf when singular).
    #[serde(serialize_with = "finite_or_string")]
    pub log_abs: f64,
    /// How it was computed: "lu", "triangular-lower" or "triangular-upper" ([`UsedMethod::name`]).
    pub method: String,
    /// `||P A - L U||_1 / (n ||A||_1 eps)` of the LU factors, in units of the input precision's
    /// epsilon; 0 for the triangular method (no factorization) and for the zero matrix.
    #[serde(serialize_with = "finite_or_string")]
    pub backward_error: f64,
    /// `||A||_1 est(||(P^T L U)^-1||_1)` by Hager-Higham's estimator: a lower bound on the 1-norm
    /// condition number, usually equal to it; +inf when the factors are exactly singular.
    #[serde(serialize_with = "finite_or_string")]
    pub cond1_estimate: f64,
    /// `eta = cond1_estimate * backward_error * n * eps`: the relative perturbation
    /// `||B^-1||_1 ||E||_1` the bound is built on; +inf when singular.
    #[serde(serialize_with = "finite_or_string")]
    pub perturbation: f64,
    /// A bound on `|log_abs - log|det A||`: `-n ln(1 - eta)` plus the rounding of the logs and
    /// their sum; +inf when `bound_valid` is false.
    #[serde(serialize_with = "finite_or_string")]
    pub log_abs_error_bound: f64,
    /// Whether `eta < 1/2` ([`BOUND_VALID_LIMIT`]), where the bound holds; false when singular.
    pub bound_valid: bool,
    /// For f32 input: the log-det of the same values in f64, and the difference.
    pub f64_recompute: Option<Recompute>,
    /// For an integer matrix: the exact determinant.
    pub exact: Option<ExactDeterminant>,
    /// Why `exact` is absent (non-integer entries, entries beyond 63 bits, n too large).
    pub exact_note: Option<String>,
}

/// The log-det of f32 input recomputed from the same values in f64.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recompute {
    /// Sign of the f64 determinant.
    #[serde(serialize_with = "finite_or_string")]
    pub sign: f64,
    /// log|det| in f64.
    #[serde(serialize_with = "finite_or_string")]
    pub log_abs: f64,
    /// `log_abs` (f32 result) minus the f64 `log_abs`; 0 when both are singular, ±inf when one is.
    #[serde(serialize_with = "finite_or_string")]
    pub difference: f64,
}

/// The exact determinant of an integer matrix, by Bareiss elimination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExactDeterminant {
    /// -1, 0 or 1.
    #[serde(serialize_with = "finite_or_string")]
    pub sign: f64,
    /// log|det| from the integer's bits ([`log_abs_bigint`]); -inf when the determinant is 0.
    #[serde(serialize_with = "finite_or_string")]
    pub log_abs: f64,
    /// The determinant in decimal.
    pub digits: String,
    /// Whether the computed result agrees: both singular, or the same sign and
    /// `|log_abs - exact log_abs| <= log_abs_error_bound + 2 eps_f64 (1 + |exact log_abs|)`
    /// (the last term covers the rounding of the exact value's own log).
    pub agrees: bool,
}

/// Writes a finite f64 as a number and anything else as "inf", "-inf" or "NaN".
fn finite_or_string<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_str(&v.to_string())
    }
}

/// Audits the log-determinant of the `n x n` row-major matrix `values`, computed as
/// [`crate::log_det`] with [`LogDetMethod::Auto`] (the diagonal of a triangular matrix, LU of
/// `A` otherwise; see the module documentation for `log_det`'s `A^T`). See
/// [`audit_matrix_with`].
///
/// # Errors
/// As [`audit_matrix_with`].
pub fn audit_matrix(values: &[f64], n: usize, f32_input: bool) -> Result<MatrixAudit> {
    audit_matrix_with(values, n, f32_input, LogDetMethod::Auto)
}

/// Audits the log-determinant of the `n x n` row-major matrix `values` computed by `method`.
///
/// With `f32_input`, the values must be exactly representable in f32 (as read from a float32
/// file): the main result is computed in f32 (its backward error and bound in units of f32's
/// epsilon) and [`MatrixAudit::f64_recompute`] holds the same computation in f64. When every
/// value is an integer of at most 63 bits and `n <= EXACT_MAX_N`, [`MatrixAudit::exact`] holds
/// the exact determinant. A singular matrix is not an error: sign 0, `log_abs = -inf`,
/// `cond1_estimate = +inf`, an invalid bound.
///
/// # Errors
/// [`Error::Empty`] for n = 0; [`Error::LengthMismatch`] when `values.len() != n * n`;
/// [`Error::NonFinite`] naming the first NaN or infinite entry; [`Error::InvalidArgument`] for a
/// value that is not an f32 when `f32_input`, or for [`LogDetMethod::Triangular`] on a matrix
/// that is not triangular; [`Error::NonFinite`] when the elimination overflows (entries near the
/// largest float).
pub fn audit_matrix_with(values: &[f64], n: usize, f32_input: bool, method: LogDetMethod) -> Result<MatrixAudit> {
    if n == 0 {
        return Err(Error::Empty { op: OP, what: "matrix" });
    }
    let expected = n
        .checked_mul(n)
        .ok_or_else(|| Error::invalid(OP, "n", format!("{n}x{n} overflows")))?;
    if values.len() != expected {
        return Err(Error::LengthMismatch {
            op: OP,
            what: "matrix data",
            expected,
            found: values.len(),
        });
    }
    let a = Matrix::new(n, n, values.to_vec())?;
    check_finite(OP, "matrix", &a)?;

    let (main, precision, f64_recompute) = if f32_input {
        if let Some(k) = values.iter().position(|&v| f64::from(v as f32) != v) {
            return Err(Error::invalid(
                OP,
                "matrix",
                format!(
                    "f32 input: entry ({}, {}) = {:e} is not exactly representable in f32",
                    k / n,
                    k % n,
                    values[k]
                ),
            ));
        }
        let main = audit_core(&a.map(|v| v as f32), method)?;
        let wide = audit_core(&a, method)?;
        let difference = if main.log_det.is_singular() && wide.log_det.is_singular() {
            0.0
        } else {
            main.log_det.log_abs - wide.log_det.log_abs
        };
        let recompute = Recompute {
            sign: wide.log_det.sign,
            log_abs: wide.log_det.log_abs,
            difference,
        };
        (main, "f32", Some(recompute))
    } else {
        (audit_core(&a, method)?, "f64", None)
    };

    let (exact, exact_note) = match exact_determinant(values, n) {
        Ok(det) => {
            let exact_log = log_abs_bigint(&det);
            let exact_sign = match det.sign() {
                num_bigint::Sign::Minus => -1.0,
                num_bigint::Sign::NoSign => 0.0,
                num_bigint::Sign::Plus => 1.0,
            };
            let agrees = if exact_sign == 0.0 || main.log_det.is_singular() {
                exact_sign == main.log_det.sign
            } else {
                let reference_error = 2.0 * f64::EPSILON * (1.0 + exact_log.abs());
                exact_sign == main.log_det.sign
                    && (main.log_det.log_abs - exact_log).abs() <= main.bound + reference_error
            };
            let exact = ExactDeterminant {
                sign: exact_sign,
                log_abs: exact_log,
                digits: det.to_string(),
                agrees,
            };
            (Some(exact), None)
        }
        Err(note) => (None, Some(note)),
    };

    Ok(MatrixAudit {
        n,
        precision: precision.to_string(),
        sign: main.log_det.sign,
        log_abs: main.log_det.log_abs,
        method: main.used.name().to_string(),
        backward_error: main.backward_error,
        cond1_estimate: main.cond1,
        perturbation: main.eta,
        log_abs_error_bound: main.bound,
        bound_valid: main.bound_valid,
        f64_recompute,
        exact,
        exact_note,
    })
}

/// [`audit_matrix_with`] for any [`MatrixInput`] of f64 (a [`Matrix`], a nalgebra or faer
/// matrix).
///
/// # Errors
/// [`Error::NotSquare`] for a rectangular matrix, [`Error::Empty`] for the 0x0 one; otherwise
/// as [`audit_matrix_with`].
pub fn audit_input(a: &(impl MatrixInput<f64> + ?Sized), f32_input: bool, method: LogDetMethod) -> Result<MatrixAudit> {
    let n = check_square(OP, a, false)?;
    let m = Matrix::from_input(a);
    audit_matrix_with(m.as_slice(), n, f32_input, method)
}

/// What one precision contributes to the audit.
struct Core {
    log_det: LogDet<f64>,
    used: UsedMethod,
    backward_error: f64,
    cond1: f64,
    eta: f64,
    bound: f64,
    bound_valid: bool,
}

/// Log-det, backward error, condition estimate and bound of a validated, square, non-empty `a`.
fn audit_core<T: Real>(a: &Matrix<T>, method: LogDetMethod) -> Result<Core> {
    let n = a.rows();
    let triangle = match method {
        LogDetMethod::Lu => None,
        LogDetMethod::Auto => triangle_of(a),
        LogDetMethod::Triangular => Some(triangle_of(a).ok_or_else(|| {
            Error::invalid(
                OP,
                "matrix",
                "method triangular needs a lower or upper triangular matrix, \
                 found non-zero entries on both sides of the diagonal",
            )
        })?),
    };
    let lu = Lu::factor(a)?;
    let a_norm = a.norm_1();
    let (log_det, diagonal, used, backward_error): (LogDet<T>, Vec<T>, UsedMethod, f64) = match triangle {
        Some(t) => (
            log_det_triangular(a, t)?,
            (0..n).map(|i| a[(i, i)]).collect(),
            UsedMethod::Triangular(t),
            0.0,
        ),
        None => (
            lu.log_det(),
            lu.u_diagonal().collect(),
            UsedMethod::Lu,
            lu_backward_error(a, &lu)?,
        ),
    };
    let cond1 = cond1_estimate(&lu, a_norm);
    let eps = T::epsilon().as_f64();
    let log_det = log_det.to_f64();
    let (eta, bound, bound_valid) = if log_det.is_singular() {
        (f64::INFINITY, f64::INFINITY, false)
    } else {
        // An exact factorization (or the triangular method) has E = 0 whatever the condition.
        let eta = if backward_error == 0.0 {
            0.0
        } else {
            cond1 * backward_error * n as f64 * eps
        };
        // `<` is false for NaN: an undefined eta gives an invalid bound.
        if eta < BOUND_VALID_LIMIT {
            let sum_abs_logs: f64 = diagonal.iter().map(|d| d.as_f64().abs().ln().abs()).sum();
            let rounding = eps * (log_det.log_abs.abs() + (1.0 + 4.0 * n as f64 * eps) * sum_abs_logs);
            (eta, -(n as f64) * (-eta).ln_1p() + rounding, true)
        } else {
            (eta, f64::INFINITY, false)
        }
    };
    Ok(Core {
        log_det,
        used,
        backward_error,
        cond1,
        eta,
        bound,
        bound_valid,
    })
}

/// `(s, e)` with `s = fl(a + b)` and `a + b = s + e` exactly (Knuth's TwoSum).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// LAPACK's LU test ratio (xGET01) `||P A - L U||_1 / (n ||A||_1 eps_T)` of the factors `lu` of
/// `a`, with `eps_T` the machine epsilon of `T`.
///
/// The residual is accumulated from the factors converted to f64 with Dot2 (Ogita, Rump and
/// Oishi: each product's rounding error recovered by an fma, each addition's by TwoSum), as if
/// computed in twice the f64 precision, so that it measures the factorization and not the check.
/// 0 for the empty and the zero matrix (where the factors are exact). O(n^3).
///
/// # Errors
/// [`Error::ShapeMismatch`] when `a` is not the `n x n` matrix `lu` factors.
pub fn lu_backward_error<T: Real>(a: &(impl MatrixInput<T> + ?Sized), lu: &Lu<T>) -> Result<f64> {
    let n = lu.n();
    if a.nrows() != n || a.ncols() != n {
        return Err(Error::ShapeMismatch {
            op: "lu_backward_error",
            expected: vec![n, n],
            found: vec![a.nrows(), a.ncols()],
        });
    }
    let f: Vec<f64> = lu.packed().iter().map(|v| v.as_f64()).collect();
    let perm = lu.perm();
    let mut col_sums = vec![0.0f64; n];
    let mut a_col_sums = vec![0.0f64; n];
    let mut sum = vec![0.0f64; n];
    let mut comp = vec![0.0f64; n];
    for i in 0..n {
        sum.fill(0.0);
        comp.fill(0.0);
        // Row i of L U: sum_{p < i} L[i, p] U[p, ..] + U[i, ..] (L has a unit diagonal).
        for p in 0..i {
            let l = f[i * n + p];
            if l == 0.0 {
                continue;
            }
            let u_row = &f[p * n..(p + 1) * n];
            for j in p..n {
                let prod = l * u_row[j];
                let prod_err = l.mul_add(u_row[j], -prod);
                let (s, e) = two_sum(sum[j], prod);
                sum[j] = s;
                comp[j] += e + prod_err;
            }
        }
        for j in i..n {
            let (s, e) = two_sum(sum[j], f[i * n + j]);
            sum[j] = s;
            comp[j] += e;
        }
        // Minus row i of P A, which is row perm[i] of A.
        for j in 0..n {
            let a_ij = a.entry(perm[i], j).as_f64();
            a_col_sums[j] += a_ij.abs();
            let (s, e) = two_sum(sum[j], -a_ij);
            col_sums[j] += (s + (comp[j] + e)).abs();
        }
    }
    let residual = col_sums.into_iter().fold(0.0, f64::max);
    let a_norm = a_col_sums.into_iter().fold(0.0, f64::max);
    if residual == 0.0 {
        return Ok(0.0);
    }
    Ok(residual / (n as f64 * a_norm * T::epsilon().as_f64()))
}

/// Hager's 1-norm estimator with Higham's refinements (Higham, *Accuracy and Stability of
/// Numerical Algorithms*, 2nd ed., Algorithm 15.4; the algorithm of LAPACK's xLACN2), for an
/// `n x n` operator `B` given by its action: `apply(x)` overwrites `x` with `B x`,
/// `apply_transpose(x)` with `B^T x`.
///
/// Starting from `x = (1/n, ..., 1/n)`, it alternates `y = B x`, `xi = sign(y)` (sign 0 = +1),
/// `z = B^T xi` and moves to `x = e_j` for the `j` maximizing `|z_j|`: a subgradient ascent of
/// the convex function `||B x||_1` over the unit ball of the 1-norm, whose maximum `||B||_1`
/// is attained at a vertex `e_j`. It stops when the sign vector repeats, when the estimate
/// stops growing, when `z_jlast >= ||z||_inf` (no ascent direction: a local maximum), or after
/// 5 iterations. Then Higham's test vector `x_i = (-1)^i (1 + i / (n - 1))` (with
/// `||x||_1 = 3n/2`) catches matrices on which the ascent is fooled: the estimate is the
/// largest of the norms seen, `||B x||_1 / ||x||_1` with the largest weight `2 ||B x||_1 / (3n)`.
///
/// Every candidate is `||B x||_1` for some `||x||_1 = 1`: the result never exceeds `||B||_1`
/// (up to the rounding of `apply`). At most 11 products. Returns +inf as soon as a product
/// overflows or is not a number (a nearly singular `B^-1`), 0 for n = 0. Exact for n = 1.
pub fn norm1_estimate(n: usize, mut apply: impl FnMut(&mut [f64]), mut apply_transpose: impl FnMut(&mut [f64])) -> f64 {
    fn norm1(x: &[f64]) -> f64 {
        let s: f64 = x.iter().map(|v| v.abs()).sum();
        // NaN (inf - inf inside a solve) is as good as infinite here.
        if s.is_nan() { f64::INFINITY } else { s }
    }
    fn signs(x: &[f64]) -> Vec<f64> {
        x.iter().map(|&v| if v >= 0.0 { 1.0 } else { -1.0 }).collect()
    }
    /// The first index of the largest |z_j| (BLAS's i_amax).
    fn argmax_abs(z: &[f64]) -> usize {
        let mut best = 0;
        for (j, v) in z.iter().enumerate() {
            if v.abs() > z[best].abs() {
                best = j;
            }
        }
        best
    }

    if n == 0 {
        return 0.0;
    }
    let mut x = vec![1.0 / n as f64; n];
    apply(&mut x);
    let mut est = norm1(&x);
    if n == 1 || !est.is_finite() {
        return est;
    }
    let mut xi = signs(&x);
    let mut z = xi.clone();
    apply_transpose(&mut z);
    if !norm1(&z).is_finite() {
        return f64::INFINITY;
    }
    let mut j = argmax_abs(&z);
    let mut iter = 2;
    loop {
        x.fill(0.0);
        x[j] = 1.0;
        apply(&mut x);
        let e = norm1(&x);
        if !e.is_finite() {
            return f64::INFINITY;
        }
        let new_xi = signs(&x);
        // A repeated sign vector: converged. No growth: cycling. Either way stop, keeping the
        // larger estimate (both are lower bounds).
        if new_xi == xi || e <= est {
            est = est.max(e);
            break;
        }
        est = e;
        xi = new_xi;
        z.copy_from_slice(&xi);
        apply_transpose(&mut z);
        if !norm1(&z).is_finite() {
            return f64::INFINITY;
        }
        let j_last = j;
        j = argmax_abs(&z);
        if z[j_last] >= z[j].abs() || iter >= HAGER_MAX_ITER {
            break;
        }
        iter += 1;
    }
    // Higham's alternating-sign vector, ||x||_1 = n + n / 2.
    let denom = (n - 1) as f64;
    for (i, v) in x.iter_mut().enumerate() {
        let magnitude = 1.0 + i as f64 / denom;
        *v = if i % 2 == 0 { magnitude } else { -magnitude };
    }
    apply(&mut x);
    let alt = 2.0 * norm1(&x) / (3.0 * n as f64);
    est.max(alt)
}

/// An estimate of `||B^-1||_1` for the matrix `B = P^T L U` an LU factorization represents, by
/// [`norm1_estimate`] with solves by `B` and by `B^T` using the same factors (as LAPACK's xGECON
/// does): `B^-1 x = U^-1 L^-1 P x` and `B^-T x = P^T L^-T U^-T x`, in f64 whatever `T` is.
///
/// +inf when U has an exactly zero pivot or a solve overflows; 0 for n = 0.
pub fn inverse_norm1_estimate<T: Real>(lu: &Lu<T>) -> f64 {
    if lu.is_singular() {
        return f64::INFINITY;
    }
    let factors = F64Factors::of(lu);
    let mut work = vec![0.0f64; lu.n()];
    let mut work_t = vec![0.0f64; lu.n()];
    norm1_estimate(
        lu.n(),
        |x| factors.solve(x, &mut work),
        |x| factors.solve_transpose(x, &mut work_t),
    )
}

/// LU factors converted to f64, for the estimator's solves.
struct F64Factors<'a> {
    n: usize,
    f: Vec<f64>,
    perm: &'a [usize],
}

impl<'a> F64Factors<'a> {
    fn of<T: Real>(lu: &'a Lu<T>) -> Self {
        F64Factors {
            n: lu.n(),
            f: lu.packed().iter().map(|v| v.as_f64()).collect(),
            perm: lu.perm(),
        }
    }

    /// `x = B^-1 x = U^-1 L^-1 P x` (U non-singular); `work` has length n.
    fn solve(&self, x: &mut [f64], work: &mut [f64]) {
        let (n, f) = (self.n, &self.f);
        for (w, &p) in work.iter_mut().zip(self.perm) {
            *w = x[p];
        }
        for i in 1..n {
            let s: f64 = (0..i).map(|p| f[i * n + p] * work[p]).sum();
            work[i] -= s;
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|p| f[i * n + p] * work[p]).sum();
            work[i] = (work[i] - s) / f[i * n + i];
        }
        x.copy_from_slice(work);
    }

    /// `x = B^-T x = P^T L^-T U^-T x` (U non-singular); `work` has length n.
    fn solve_transpose(&self, x: &mut [f64], work: &mut [f64]) {
        let (n, f) = (self.n, &self.f);
        // U^T is lower triangular: forward substitution.
        for i in 0..n {
            let s: f64 = (0..i).map(|p| f[p * n + i] * work[p]).sum();
            work[i] = (x[i] - s) / f[i * n + i];
        }
        // L^T is unit upper triangular: back substitution.
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|p| f[p * n + i] * work[p]).sum();
            work[i] -= s;
        }
        for (w, &p) in work.iter().zip(self.perm) {
            x[p] = *w;
        }
    }
}

/// The 1-norm condition number estimate `||A||_1 est(||B^-1||_1)` of LAPACK's xGECON (which
/// reports its reciprocal), from the LU factors of `A` (`B = P^T L U`, equal to `A` up to the
/// backward error) and `a_norm1 = ||A||_1` ([`Matrix::norm_1`]). A lower bound on
/// `kappa_1(B) = ||B||_1 ||B^-1||_1`, usually equal to it (Higham, Sec. 15.3).
///
/// +inf for exactly singular factors; 0 for n = 0.
pub fn cond1_estimate<T: Real>(lu: &Lu<T>, a_norm1: f64) -> f64 {
    if lu.n() == 0 {
        return 0.0;
    }
    let inv = inverse_norm1_estimate(lu);
    if inv.is_infinite() {
        f64::INFINITY
    } else {
        a_norm1 * inv
    }
}

/// The exact determinant of an `n x n` row-major integer matrix by Bareiss's fraction-free
/// elimination (Bareiss, 1968) on arbitrary-precision integers.
///
/// Step k replaces `m_ij` (i, j > k) by `(m_kk m_ij - m_ik m_kj) / m_{k-1,k-1}` (with
/// `m_{-1,-1} = 1`): by Sylvester's identity every intermediate is a minor of the (row-swapped)
/// matrix, so every division is exact and the last pivot is the determinant. A zero pivot is
/// replaced by the first non-zero entry below it (a row swap flips the sign); a column with none
/// means a zero determinant. O(n^3) big-integer operations on numbers of at most
/// `log2(Hadamard bound)` bits. The 0x0 matrix has determinant 1.
///
/// # Errors
/// [`Error::LengthMismatch`] when `values.len() != n * n`.
///
/// ```
/// use exactflow_kernels::audit::bareiss_determinant;
/// # fn main() -> exactflow_kernels::Result<()> {
/// assert_eq!(bareiss_determinant(&[2i64, 1, 4, -3], 2)?.to_string(), "-10");
/// assert_eq!(bareiss_determinant(&[1i64, 2, 2, 4], 2)?.to_string(), "0");
/// # Ok(())
/// # }
/// ```
pub fn bareiss_determinant<I: Clone + Into<BigInt>>(values: &[I], n: usize) -> Result<BigInt> {
    let expected = n
        .checked_mul(n)
        .ok_or_else(|| Error::invalid("bareiss_determinant", "n", format!("{n}x{n} overflows")))?;
    if values.len() != expected {
        return Err(Error::LengthMismatch {
            op: "bareiss_determinant",
            what: "matrix data",
            expected,
            found: values.len(),
        });
    }
    if n == 0 {
        return Ok(BigInt::from(1));
    }
    let mut m: Vec<BigInt> = values.iter().cloned().map(Into::into).collect();
    let mut negate = false;
    let mut prev = BigInt::from(1);
    for k in 0..n {
        let Some(r) = (k..n).find(|&r| !m[r * n + k].is_zero()) else {
            return Ok(BigInt::zero());
        };
        if r != k {
            for j in 0..n {
                m.swap(k * n + j, r * n + j);
            }
            negate = !negate;
        }
        if k + 1 == n {
            break;
        }
        let (top, bottom) = m.split_at_mut((k + 1) * n);
        let row_k = &top[k * n..];
        let pivot = &row_k[k];
        for row_i in bottom.chunks_exact_mut(n) {
            let m_ik = std::mem::take(&mut row_i[k]);
            for j in k + 1..n {
                let num = pivot * &row_i[j] - &m_ik * &row_k[j];
                row_i[j] = num / &prev;
            }
        }
        prev = row_k[k].clone();
    }
    let det = std::mem::take(&mut m[n * n - 1]);
    Ok(if negate { -det } else { det })
}

/// `ln|x|` of an arbitrary-precision integer, accurate to about one ulp of the result plus
/// 4e-16 whatever its size (-inf for 0). See [`log_abs_dyadic`].
pub fn log_abs_bigint(x: &BigInt) -> f64 {
    log_abs_dyadic(x, 0)
}

/// `ln|x 2^exp2|`: the log of a dyadic rational, e.g. the determinant of a matrix of floats
/// scaled to integers by a power of two. Accurate to about one ulp of the result plus 4e-16
/// (-inf for x = 0), with no cancellation between the integer's size and the exponent.
///
/// With `x = m 2^e`, `m` in [1, 2) taken from the top 64 bits of `|x|` (the dropped bits change
/// `m` by a relative 2^-63, its rounding to f64 by 2^-53): `ln|x 2^exp2| = ln_1p(m - 1) +
/// (e + exp2) ln 2`, where the integer `e + exp2` is exact, and its product with ln 2 is formed
/// from a two-part ln 2 with the rounding error recovered by an fma, so that only the final
/// addition rounds at the scale of the result.
pub fn log_abs_dyadic(x: &BigInt, exp2: i64) -> f64 {
    let mag = x.magnitude();
    let bits = mag.bits();
    if bits == 0 {
        return f64::NEG_INFINITY;
    }
    let shift = bits.saturating_sub(64);
    // invariant: mag >> shift has between 1 and 64 bits, so exactly one u64 digit (the 0 is
    // never used).
    let top = (mag >> shift).iter_u64_digits().next().unwrap_or(0);
    // top has bits - shift <= 64 significant bits: divide by 2^(bits - shift - 1) exactly.
    let top_bits = (bits - shift) as i32;
    let m = top as f64 * 2f64.powi(1 - top_bits);
    let lead = (m - 1.0).ln_1p();
    // Exact in f64 for any integer of fewer than 2^53 bits.
    let e = (i128::from(bits) - 1 + i128::from(exp2)) as f64;
    if e == 0.0 {
        return lead;
    }
    let hi = e * LN_2_HI;
    let lo = e.mul_add(LN_2_HI, -hi) + e * LN_2_LO;
    hi + (lead + lo)
}

/// The largest magnitude an f64 may have to be an i64: 2^63 (exclusive; -2^63 is allowed).
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// The exact determinant of the values when they are all integers of at most 63 bits and n is
/// small enough; otherwise the reason it is skipped.
fn exact_determinant(values: &[f64], n: usize) -> std::result::Result<BigInt, String> {
    if let Some(k) = values.iter().position(|v| v.fract() != 0.0) {
        return Err(format!(
            "not an integer matrix (entry ({}, {}) = {:e}): no exact determinant",
            k / n,
            k % n,
            values[k]
        ));
    }
    if let Some(k) = values.iter().position(|&v| !(-I64_BOUND..I64_BOUND).contains(&v)) {
        return Err(format!(
            "integer entry ({}, {}) = {:e} does not fit in 64 bits: exact determinant skipped",
            k / n,
            k % n,
            values[k]
        ));
    }
    if n > EXACT_MAX_N {
        return Err(format!(
            "n = {n} > {EXACT_MAX_N}: the exact determinant (O(n^3) big-integer operations) is skipped"
        ));
    }
    // Integers in [-2^63, 2^63): the conversion is exact.
    let ints: Vec<i64> = values.iter().map(|&v| v as i64).collect();
    bareiss_determinant(&ints, n).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 values in [-1, 1).
    struct Stream(u64);

    impl Stream {
        fn next_unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn random(n: usize, seed: u64) -> Matrix<f64> {
        let mut s = Stream(seed);
        Matrix::from_fn(n, n, |_, _| s.next_unit())
    }

    fn exact_inverse_norm(a: &Matrix<f64>) -> f64 {
        Lu::factor(a).unwrap().inverse().unwrap().norm_1()
    }

    #[test]
    fn hager_is_exact_on_diagonal_and_one_by_one() {
        let d = Matrix::from_rows(&[[2.0, 0.0, 0.0], [0.0, -0.25, 0.0], [0.0, 0.0, 8.0]]).unwrap();
        let lu = Lu::factor(&d).unwrap();
        assert_eq!(inverse_norm1_estimate(&lu), 4.0);
        assert_eq!(cond1_estimate(&lu, d.norm_1()), 32.0);
        let one = Matrix::from_rows(&[[-0.5]]).unwrap();
        assert_eq!(inverse_norm1_estimate(&Lu::factor(&one).unwrap()), 2.0);
        assert_eq!(norm1_estimate(0, |_| {}, |_| {}), 0.0);
        assert_eq!(
            cond1_estimate(&Lu::factor(&Matrix::<f64>::zeros(0, 0)).unwrap(), 0.0),
            0.0
        );
    }

    #[test]
    fn hager_is_a_lower_bound_and_usually_exact() {
        let mut exact = 0;
        let total = 60;
        for seed in 0..total {
            let n = 2 + (seed as usize % 12);
            let a = random(n, 100 + seed);
            let lu = Lu::factor(&a).unwrap();
            let est = inverse_norm1_estimate(&lu);
            let truth = exact_inverse_norm(&a);
            let kappa = a.norm_1() * truth;
            // Both come from solves with a backward error of order n eps: relative n kappa eps.
            let tol = 1e-10 + 64.0 * n as f64 * kappa * f64::EPSILON;
            assert!(est <= truth * (1.0 + tol), "n = {n}: {est} > {truth}");
            assert!(est >= truth / 3.0, "n = {n}: {est} << {truth}");
            if est >= truth * (1.0 - tol) {
                exact += 1;
            }
        }
        // Higham reports the estimate exact in the large majority of random cases.
        assert!(exact * 10 >= total * 8, "exact in only {exact} of {total} cases");
    }

    #[test]
    fn solves_match_the_explicit_inverse_and_its_transpose() {
        let n = 9;
        let a = random(n, 5);
        let lu = Lu::factor(&a).unwrap();
        let inv = lu.inverse().unwrap();
        let factors = F64Factors::of(&lu);
        let mut work = vec![0.0; n];
        let b: Vec<f64> = (0..n).map(|i| i as f64 - 3.5).collect();
        let mut x = b.clone();
        factors.solve(&mut x, &mut work);
        let mut xt = b.clone();
        factors.solve_transpose(&mut xt, &mut work);
        let scale = inv.norm_1() * 10.0;
        for i in 0..n {
            let want: f64 = (0..n).map(|k| inv[(i, k)] * b[k]).sum();
            let want_t: f64 = (0..n).map(|k| inv[(k, i)] * b[k]).sum();
            assert!((x[i] - want).abs() <= 1e-12 * scale, "{i}: {} vs {want}", x[i]);
            assert!((xt[i] - want_t).abs() <= 1e-12 * scale, "{i}: {} vs {want_t}", xt[i]);
        }
    }

    #[test]
    fn singular_factors_give_infinite_condition() {
        let a = Matrix::from_rows(&[[1.0, 2.0], [2.0, 4.0]]).unwrap();
        let lu = Lu::factor(&a).unwrap();
        assert!(lu.is_singular());
        assert_eq!(cond1_estimate(&lu, a.norm_1()), f64::INFINITY);
        // Overflow inside the solves reports +inf too, not NaN.
        let tiny = Matrix::from_rows(&[[1e-300, 0.0], [0.0, 1e-300]]).unwrap();
        let lu = Lu::factor(&tiny).unwrap();
        // 1 / 1e-300 rounded: within an ulp or two of 1e300.
        let est = inverse_norm1_estimate(&lu);
        assert!((est - 1e300).abs() <= 2.0 * f64::EPSILON * 1e300, "{est}");
        let tinier = Matrix::from_rows(&[[1e-310, 1.0], [0.0, 1e-310]]).unwrap();
        assert_eq!(inverse_norm1_estimate(&Lu::factor(&tinier).unwrap()), f64::INFINITY);
    }

    #[test]
    fn bareiss_known_values() {
        assert_eq!(bareiss_determinant::<i64>(&[], 0).unwrap(), BigInt::from(1));
        assert_eq!(bareiss_determinant(&[7i64], 1).unwrap(), BigInt::from(7));
        assert_eq!(bareiss_determinant(&[2i64, 1, 4, -3], 2).unwrap(), BigInt::from(-10));
        // A zero leading pivot needs a row swap: det [[0, 1], [1, 0]] = -1.
        assert_eq!(bareiss_determinant(&[0i64, 1, 1, 0], 2).unwrap(), BigInt::from(-1));
        // The 3-cycle: +1.
        assert_eq!(
            bareiss_determinant(&[0i64, 1, 0, 0, 0, 1, 1, 0, 0], 3).unwrap(),
            BigInt::from(1)
        );
        assert!(
            bareiss_determinant(&[1i64, 2, 3, 4, 5, 6, 7, 8, 9], 3)
                .unwrap()
                .is_zero()
        );
        // diag(2^62, ..., 2^62) of order 5: 2^310, far beyond any machine integer.
        let big = 1i64 << 62;
        let d: Vec<i64> = (0..25).map(|k| if k % 6 == 0 { big } else { 0 }).collect();
        assert_eq!(bareiss_determinant(&d, 5).unwrap(), BigInt::from(1) << 310usize);
        // Vandermonde on 1..=5: prod_{i<j} (x_j - x_i) = 1! 2! 3! 4! = 288.
        let v: Vec<i64> = (1..=5i64).flat_map(|x| (0..5).map(move |k| x.pow(k))).collect();
        assert_eq!(bareiss_determinant(&v, 5).unwrap(), BigInt::from(288));
        assert!(matches!(
            bareiss_determinant(&[1i64, 2, 3], 2),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 3,
                ..
            })
        ));
    }

    #[test]
    fn log_of_big_integers_is_accurate() {
        assert_eq!(log_abs_bigint(&BigInt::zero()), f64::NEG_INFINITY);
        assert_eq!(log_abs_bigint(&BigInt::from(1)), 0.0);
        assert_eq!(log_abs_bigint(&BigInt::from(-1)), 0.0);
        for v in [2i64, 3, 10, -12345, i64::MAX, i64::MIN] {
            let want = (v as f64).abs().ln();
            let got = log_abs_bigint(&BigInt::from(v));
            assert!((got - want).abs() <= 2.0 * f64::EPSILON * want, "{v}: {got} vs {want}");
        }
        // 2^k: k ln 2 with the two-part constant is correct to about an ulp.
        for k in [64usize, 100, 1000, 123_456] {
            let got = log_abs_bigint(&(BigInt::from(1) << k));
            let want = k as f64 * LN_2_HI + k as f64 * LN_2_LO;
            assert!((got - want).abs() <= f64::EPSILON * want, "2^{k}: {got} vs {want}");
        }
        // 10^300 = 1e300 (within half an ulp of the f64 1e300): ln is 300 ln 10.
        let p = num_traits::pow(BigInt::from(10), 300);
        let want = 1e300f64.ln();
        assert!((log_abs_bigint(&p) - want).abs() <= 2.0 * f64::EPSILON * want);
        // 3^1000 / 2^1585 (about 0.974): the exponents cancel exactly, not in floating point.
        // Reference: 1000 ln 3 - 1585 ln 2 to 80 digits, rounded.
        let p = num_traits::pow(BigInt::from(3), 1000);
        let got = log_abs_dyadic(&p, -1585);
        let want = -0.025_992_519_403_624_032;
        assert!((got - want).abs() <= 4e-16, "{got} vs {want}");
        assert!((log_abs_dyadic(&BigInt::from(3), -1) - 1.5f64.ln()).abs() <= f64::EPSILON);
        assert_eq!(log_abs_dyadic(&BigInt::from(1), -10), -10.0 * LN_2_HI + -10.0 * LN_2_LO);
        // 3^1000 = e^(1000 ln 3): checked against ln 3 to double-double accuracy.
        let p = num_traits::pow(BigInt::from(3), 1000);
        let ln3_hi = 1.098_612_288_668_109_8;
        let ln3_lo = -9.071_297_235_001_53e-17;
        let want = 1000.0 * ln3_hi + 1000.0 * ln3_lo;
        assert!(
            (log_abs_bigint(&p) - want).abs() <= f64::EPSILON * want,
            "{}",
            log_abs_bigint(&p) - want
        );
    }

    #[test]
    fn known_integer_matrix_is_exact_and_agrees() {
        let audit = audit_matrix(&[2.0, 1.0, 4.0, -3.0], 2, false).unwrap();
        assert_eq!(audit.n, 2);
        assert_eq!(audit.precision, "f64");
        assert_eq!(audit.method, "lu");
        assert_eq!(audit.sign, -1.0);
        assert!((audit.log_abs - 10f64.ln()).abs() <= 2.0 * f64::EPSILON * 10f64.ln());
        assert!(audit.bound_valid && audit.log_abs_error_bound.is_finite());
        assert!(audit.backward_error < 1.0, "{}", audit.backward_error);
        // A = [[2, 1], [4, -3]]: ||A||_1 = 6, A^-1 = [[3, 1], [4, -2]] / 10, ||A^-1||_1 = 0.7.
        assert!((audit.cond1_estimate - 4.2).abs() <= 1e-14, "{}", audit.cond1_estimate);
        let exact = audit.exact.as_ref().unwrap();
        assert_eq!(exact.digits, "-10");
        assert_eq!(exact.sign, -1.0);
        assert!((exact.log_abs - 10f64.ln()).abs() <= f64::EPSILON);
        assert!(exact.agrees);
        assert_eq!(audit.exact_note, None);
        assert_eq!(audit.f64_recompute, None);
    }

    #[test]
    fn singular_matrices_are_values_not_errors() {
        // Exactly singular in floating point too.
        let audit = audit_matrix(&[1.0, 2.0, 2.0, 4.0], 2, false).unwrap();
        assert_eq!((audit.sign, audit.log_abs), (0.0, f64::NEG_INFINITY));
        assert_eq!(audit.cond1_estimate, f64::INFINITY);
        assert_eq!(audit.log_abs_error_bound, f64::INFINITY);
        assert!(!audit.bound_valid);
        let exact = audit.exact.unwrap();
        assert_eq!((exact.digits.as_str(), exact.sign, exact.agrees), ("0", 0.0, true));
        assert_eq!(exact.log_abs, f64::NEG_INFINITY);
        // The zero matrix, in both precisions.
        for f32_input in [false, true] {
            let audit = audit_matrix(&[0.0; 9], 3, f32_input).unwrap();
            assert_eq!(audit.sign, 0.0);
            assert_eq!(audit.backward_error, 0.0);
            assert_eq!(audit.cond1_estimate, f64::INFINITY);
            assert!(audit.exact.unwrap().agrees);
        }
        // Singular, but elimination leaves a rounding residue in the last pivot: the exact
        // determinant says 0, the computed one does not, and the bound is flagged invalid.
        let audit = audit_matrix(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 3, false).unwrap();
        let exact = audit.exact.as_ref().unwrap();
        assert_eq!(exact.digits, "0");
        if audit.sign != 0.0 {
            assert!(!audit.bound_valid, "{audit:?}");
            assert!(audit.cond1_estimate > 1e15, "{audit:?}");
            assert!(!exact.agrees);
        } else {
            assert!(exact.agrees);
        }
    }

    #[test]
    fn f32_input_is_recomputed_in_f64() {
        let a = random(12, 42).map(|v| f64::from(v as f32));
        let audit = audit_matrix(a.as_slice(), 12, true).unwrap();
        assert_eq!(audit.precision, "f32");
        let f32_ld = crate::log_det(&a.map(|v| v as f32)).unwrap();
        assert_eq!(audit.log_abs, f64::from(f32_ld.log_abs));
        let wide = audit_matrix(a.as_slice(), 12, false).unwrap();
        let r = audit.f64_recompute.as_ref().unwrap();
        assert_eq!((r.sign, r.log_abs), (wide.sign, wide.log_abs));
        assert_eq!(r.difference, audit.log_abs - wide.log_abs);
        assert!(audit.bound_valid);
        assert!(r.difference.abs() <= audit.log_abs_error_bound + wide.log_abs_error_bound);
        // The f32 bound is in units of f32's epsilon: far wider than the f64 one.
        assert!(audit.log_abs_error_bound > 1e6 * wide.log_abs_error_bound);
        // Non-integer: no exact determinant, and a note saying why.
        assert!(audit.exact.is_none());
        assert!(audit.exact_note.as_deref().unwrap().contains("not an integer"));
    }

    #[test]
    fn triangular_method_has_no_backward_error() {
        let l = [2.0, 0.0, 0.0, 1.5, -3.0, 0.0, 4.0, 5.0, 0.5];
        let audit = audit_matrix(&l, 3, false).unwrap();
        assert_eq!(audit.method, "triangular-lower");
        assert_eq!(audit.backward_error, 0.0);
        assert_eq!(audit.perturbation, 0.0);
        assert_eq!(audit.sign, -1.0);
        assert!((audit.log_abs - 3f64.ln()).abs() <= audit.log_abs_error_bound);
        assert!(audit.log_abs_error_bound <= 1e-15);
        let lu = audit_matrix_with(&l, 3, false, LogDetMethod::Lu).unwrap();
        assert_eq!(lu.method, "lu");
        assert!(matches!(
            audit_matrix_with(&[1.0, 2.0, 3.0, 4.0], 2, false, LogDetMethod::Triangular),
            Err(Error::InvalidArgument { .. })
        ));
        let upper = audit_matrix_with(&[1.0, 2.0, 0.0, 4.0], 2, false, LogDetMethod::Triangular).unwrap();
        assert_eq!(upper.method, "triangular-upper");
    }

    #[test]
    fn exact_is_skipped_with_a_note() {
        let audit = audit_matrix(&[1e19, 0.0, 0.0, 1.0], 2, false).unwrap();
        assert!(audit.exact.is_none());
        assert!(audit.exact_note.unwrap().contains("64 bits"));
        // -2^63 and 2^63 - 1024 (the largest f64 below 2^63) both fit.
        let audit = audit_matrix(&[-I64_BOUND, 0.0, 0.0, I64_BOUND - 1024.0], 2, false).unwrap();
        let exact = audit.exact.unwrap();
        let want = BigInt::from(i64::MIN) * BigInt::from((1i64 << 62) + ((1i64 << 62) - 1024));
        assert_eq!(exact.digits, want.to_string());
        assert!(exact.agrees);
        let n = EXACT_MAX_N + 1;
        let eye: Vec<f64> = (0..n * n).map(|k| if k % (n + 1) == 0 { 1.0 } else { 0.0 }).collect();
        let audit = audit_matrix(&eye, n, false).unwrap();
        assert!(audit.exact.is_none());
        assert!(audit.exact_note.unwrap().contains("skipped"));
    }

    #[test]
    fn caller_mistakes_are_errors() {
        assert_eq!(
            audit_matrix(&[], 0, false).unwrap_err(),
            Error::Empty { op: OP, what: "matrix" }
        );
        assert!(matches!(
            audit_matrix(&[1.0; 5], 2, false),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 5,
                ..
            })
        ));
        match audit_matrix(&[1.0, 2.0, f64::NAN, 1.0], 2, false).unwrap_err() {
            Error::NonFinite { index, value, .. } => {
                assert_eq!(index, (1, 0));
                assert!(value.is_nan());
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(matches!(
            audit_matrix(&[1.0, 0.1, 0.0, 1.0], 2, true),
            Err(Error::InvalidArgument { .. })
        ));
        let rect = Matrix::<f64>::zeros(2, 3);
        assert!(matches!(
            audit_input(&rect, false, LogDetMethod::Auto),
            Err(Error::NotSquare { rows: 2, cols: 3, .. })
        ));
        let sq = Matrix::from_rows(&[[2.0, 1.0], [4.0, -3.0]]).unwrap();
        assert_eq!(
            audit_input(&sq.to_nalgebra(), false, LogDetMethod::Auto).unwrap(),
            audit_matrix(sq.as_slice(), 2, false).unwrap()
        );
        // Finite entries whose elimination overflows.
        assert!(matches!(
            audit_matrix(&[1e308, 1e308, -1e308, 1e308], 2, false),
            Err(Error::NonFinite { .. })
        ));
        let lu = Lu::factor(&sq).unwrap();
        assert!(matches!(
            lu_backward_error(&Matrix::<f64>::zeros(3, 3), &lu),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn serializes_with_stable_keys_and_string_infinities() {
        let audit = audit_matrix(&[1.0, 2.0, 2.0, 4.0], 2, true).unwrap();
        let v = serde_json::to_value(&audit).unwrap();
        for key in [
            "n",
            "precision",
            "sign",
            "log_abs",
            "method",
            "backward_error",
            "cond1_estimate",
            "perturbation",
            "log_abs_error_bound",
            "bound_valid",
            "f64_recompute",
            "exact",
            "exact_note",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["log_abs"], "-inf");
        assert_eq!(v["cond1_estimate"], "inf");
        assert_eq!(v["exact"]["digits"], "0");
        assert_eq!(v["f64_recompute"]["difference"], 0.0);
        assert_eq!(v["sign"], 0.0);
    }

    #[test]
    fn backward_error_matches_a_direct_residual() {
        // For f32 factors every product is exact in f64: a plain f64 residual (rounding far below
        // f32's epsilon) must give the same ratio to many digits.
        let a = random(20, 9).map(|v| v as f32);
        let lu = Lu::factor(&a).unwrap();
        let ratio = lu_backward_error(&a, &lu).unwrap();
        let l = lu.l().to_f64();
        let u = lu.u().to_f64();
        let lu_prod = l.matmul(&u).unwrap();
        let a64 = a.to_f64();
        let diff = Matrix::from_fn(20, 20, |i, j| a64[(lu.perm()[i], j)] - lu_prod[(i, j)]);
        let direct = diff.norm_1() / (20.0 * a64.norm_1() * f64::from(f32::EPSILON));
        assert!((ratio - direct).abs() <= 1e-6 * direct, "{ratio} vs {direct}");
        assert!(ratio > 0.0 && ratio < 10.0, "{ratio}");
    }
}
