//! Certified log-determinants: an interval guaranteed to contain `log|det A|`, and the sign.
//!
//! # Method (a verification method, after Rump and Ogita)
//!
//! Naive interval elimination widens exponentially with n. Instead:
//!
//! 1. factor `P A ~ L U` in floating point (exactflow's LU with partial pivoting);
//! 2. invert the factors approximately, `XL ~ L^-1` and `XU ~ U^-1` (faer's triangular
//!    inverses). XL is stored as an exactly unit lower triangular f64 matrix, so `det XL = 1`,
//!    and XU is exactly upper triangular with diagonal `d_i`, so `det XU = prod d_i`;
//! 3. enclose `B = XL (P A) XU` with verified products (faer's triangular gemm, with an error
//!    bound valid for any summation order; see `matmul` and `enclose_e`). B is close to I;
//! 4. with `E = B - I` and an upper bound `eps >= ||E||_inf` (max row sum of |E|, computed from
//!    the enclosure), every eigenvalue `lambda` of E has `|lambda| <= eps`. If `eps < 1`, every
//!    eigenvalue `1 + lambda` of B has a positive real part, so `det B > 0`, and
//!
//!    `log det B = sum Re ln(1 + lambda_i) = tr E + rho`,  `|rho| <= n eps^2 / (2 (1 - eps))`,
//!
//!    because `|ln(1 + lambda) - lambda| <= sum_{m>=2} |lambda|^m / m <= eps^2 / (2 (1 - eps))`.
//!    The trace is enclosed from B's diagonal;
//! 5. `det(P A) = det B / prod d_i`, so
//!
//!    `log|det A| = log det B - sum ln|d_i|`,  `sign det A = sign(P) prod sign(d_i)`.
//!
//! Every step is rounded outward, so the interval contains the exact `log|det A|` of the given
//! f64 matrix. If `eps >= 1` (A singular, or too ill-conditioned for the f64 factors to
//! precondition it), or the LU meets a zero pivot, no sign is certified.
//!
//! The cost is one LU, two triangular inverses and three triangular matrix products (n^3 flops
//! each, against the LU's 2n^3/3), plus O(n^2) work.

use crate::error::{Error, Result};
use crate::logdet_value::LogDet;
use crate::lu::{Lu, LuAlgorithm};
use crate::view::{MatSlice, Parallelism};

use super::Interval;
use faer::linalg::matmul::triangular::BlockStructure;

use super::arith::{add_up, div_up, mul_up, sub_down, sub_up};
use super::matmul::{Dense, gamma, underflow_allowance};

/// The result of [`certify_log_det`].
#[derive(Clone, Debug, PartialEq)]
pub enum CertifiedLogDet {
    /// The sign of det A and an interval containing log|det A|, both guaranteed.
    Certified {
        /// +1 or -1.
        sign: f64,
        /// Contains the exact log|det A|.
        log_abs: Interval,
        /// The bound `eps >= ||XL P A XU - I||_inf` the certificate rests on (smaller is better;
        /// it must be below 1).
        residual_bound: f64,
        /// The floating-point LU's (uncertified) result.
        approx: LogDet<f64>,
    },
    /// No sign could be certified: the matrix is singular or too close to singular for the
    /// verification.
    SignUnknown {
        /// Why, in words.
        reason: String,
        /// The floating-point LU's (uncertified) result.
        approx: LogDet<f64>,
    },
}

impl CertifiedLogDet {
    /// The certified sign, if any.
    pub fn sign(&self) -> Option<f64> {
        match self {
            CertifiedLogDet::Certified { sign, .. } => Some(*sign),
            CertifiedLogDet::SignUnknown { .. } => None,
        }
    }

    /// The certified enclosure of log|det A|, if any.
    pub fn log_abs(&self) -> Option<Interval> {
        match self {
            CertifiedLogDet::Certified { log_abs, .. } => Some(*log_abs),
            CertifiedLogDet::SignUnknown { .. } => None,
        }
    }

    /// The floating-point LU's result.
    pub fn approx(&self) -> LogDet<f64> {
        match self {
            CertifiedLogDet::Certified { approx, .. } | CertifiedLogDet::SignUnknown { approx, .. } => *approx,
        }
    }
}

/// A certified enclosure of `log|det A|` and the sign of `det A` (see the module documentation
/// for the method and what it assumes).
///
/// # Errors
/// [`Error::NotSquare`], [`Error::Empty`] or [`Error::NonFinite`]. A singular or nearly singular
/// matrix is not an error: it gives [`CertifiedLogDet::SignUnknown`].
///
/// # Examples
/// ```
/// use exactflow_kernels::certify_log_det;
/// use exactflow_kernels::gemm::MatSlice;
/// # fn main() -> exactflow_kernels::Result<()> {
/// // f(x, y) = (2x + y, x + 3y) has det 5.
/// let a = [2.0, 1.0, 1.0, 3.0];
/// let c = certify_log_det(&MatSlice::new(&a, 2, 2)?)?;
/// assert_eq!(c.sign(), Some(1.0));
/// let i = c.log_abs().expect("certified");
/// assert!(i.lo() <= 5f64.ln() && 5f64.ln() <= i.hi() && i.width() < 1e-14);
/// # Ok(())
/// # }
/// ```
pub fn certify_log_det(a: &MatSlice<'_, f64>) -> Result<CertifiedLogDet> {
    certify_log_det_with(a, Parallelism::Sequential)
}

/// [`certify_log_det`] with the matrix products spread over threads.
///
/// # Errors
/// As [`certify_log_det`].
pub fn certify_log_det_with(a: &MatSlice<'_, f64>, par: Parallelism) -> Result<CertifiedLogDet> {
    const OP: &str = "certify_log_det";
    let (n, cols) = (a.rows(), a.cols());
    if n != cols {
        return Err(Error::NotSquare { op: OP, rows: n, cols });
    }
    if n == 0 {
        return Err(Error::Empty { op: OP, what: "matrix" });
    }
    let mut dense = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let v = a.at(i, j);
            if !v.is_finite() {
                return Err(Error::NonFinite {
                    op: OP,
                    what: "matrix",
                    index: (i, j),
                    value: v,
                });
            }
            dense.push(v);
        }
    }
    let lu = Lu::factor_in_place(dense.clone(), n, LuAlgorithm::Auto)?;
    let approx = lu.log_det();
    if let Some(column) = lu
        .info()
        .first_zero_pivot
        .or_else(|| lu.u_diagonal().position(|d| d == 0.0))
    {
        return Ok(CertifiedLogDet::SignUnknown {
            reason: format!("the LU met a zero pivot in column {column}: the matrix is singular or nearly so"),
            approx,
        });
    }
    let (xl, xu) = triangular_inverses(&lu, n, par);
    let d: Vec<f64> = (0..n).map(|i| xu.data[i * n + i]).collect();
    if let Some(i) = d.iter().position(|v| !v.is_finite() || *v == 0.0) {
        return Ok(CertifiedLogDet::SignUnknown {
            reason: format!(
                "the inverse of U has entry {} on its diagonal at {i}: U is too close to singular",
                d[i]
            ),
            approx,
        });
    }
    // P A: row i is row perm[i] of A.
    let pa = Dense {
        rows: n,
        cols: n,
        data: lu
            .perm()
            .iter()
            .flat_map(|&r| dense[r * n..(r + 1) * n].iter().copied())
            .collect(),
    };
    let Some((trace, eps)) = enclose_e(&xl, &pa, &xu, par) else {
        return Ok(CertifiedLogDet::SignUnknown {
            reason: "the verified product XL P A XU overflowed".to_string(),
            approx,
        });
    };
    // (A NaN bound is not below 1 either.)
    if eps.is_nan() || eps >= 1.0 {
        return Ok(CertifiedLogDet::SignUnknown {
            reason: format!(
                "||XL P A XU - I||_inf <= {eps:.3e} is not below 1: the matrix is singular or too \
                 ill-conditioned to verify"
            ),
            approx,
        });
    }
    // |log det B - tr E| <= n eps^2 / (2 (1 - eps)). (Doubling a lower bound is exact.)
    let rho = div_up(mul_up(n as f64, mul_up(eps, eps)), 2.0 * sub_down(1.0, eps));
    let log_det_b = trace + Interval::raw(-rho, rho);
    let log_d = d
        .iter()
        .fold(Interval::point(0.0), |acc, &v| acc + Interval::point(v.abs()).ln_i());
    let negatives = d.iter().filter(|v| **v < 0.0).count() + lu.info().transpositions;
    Ok(CertifiedLogDet::Certified {
        sign: if negatives % 2 == 0 { 1.0 } else { -1.0 },
        log_abs: log_det_b - log_d,
        residual_bound: eps,
        approx,
    })
}

/// `XL ~ L^-1` (exactly unit lower triangular) and `XU ~ U^-1` (exactly upper triangular).
fn triangular_inverses(lu: &Lu<f64>, n: usize, par: Parallelism) -> (Dense, Dense) {
    let f = lu.packed();
    let fpar = faer_par(par);
    // faer reads the strict lower triangle (L, unit diagonal implied) for one inverse and the
    // upper triangle with the diagonal (U) for the other.
    let packed = faer::MatRef::from_row_major_slice(f, n, n);
    let mut xl = faer::Mat::<f64>::zeros(n, n);
    faer::linalg::triangular_inverse::invert_unit_lower_triangular(xl.as_mut(), packed, fpar);
    let mut xu = faer::Mat::<f64>::zeros(n, n);
    faer::linalg::triangular_inverse::invert_upper_triangular(xu.as_mut(), packed, fpar);
    let mut l = Dense::zeros(n, n);
    let mut u = Dense::zeros(n, n);
    for i in 0..n {
        for j in 0..n {
            l.data[i * n + j] = match i.cmp(&j) {
                std::cmp::Ordering::Greater => xl[(i, j)],
                std::cmp::Ordering::Equal => 1.0,
                std::cmp::Ordering::Less => 0.0,
            };
            if i <= j {
                u.data[i * n + j] = xu[(i, j)];
            }
        }
    }
    (l, u)
}

fn faer_par(par: Parallelism) -> faer::Par {
    match par {
        Parallelism::Sequential => faer::Par::Seq,
        Parallelism::Rayon(t) => faer::Par::rayon(t),
    }
}

/// `fl(a b)` by faer's triangular matrix product, reading only the given triangles.
fn tri_product(a: &Dense, a_shape: BlockStructure, b: &Dense, b_shape: BlockStructure, par: Parallelism) -> Dense {
    let (m, n) = (a.rows, b.cols);
    let mut c = Dense::zeros(m, n);
    // A row-major m x n buffer is the transpose of a column-major n x m one.
    let dst = faer::MatMut::from_column_major_slice_mut(&mut c.data, n, m).transpose_mut();
    faer::linalg::matmul::triangular::matmul(
        dst,
        BlockStructure::Rectangular,
        faer::Accum::Replace,
        faer::MatRef::from_row_major_slice(&a.data, a.rows, a.cols),
        a_shape,
        faer::MatRef::from_row_major_slice(&b.data, b.rows, b.cols),
        b_shape,
        1.0,
        faer_par(par),
    );
    c
}

/// An enclosure of `tr E` and an upper bound of `||E||_inf` for `E = XL (P A) XU - I`, or `None`
/// when a bound overflows.
///
/// With `G = XL (P A)` computed as `Gm` (faer, any summation order), `|G - Gm| <= rG = gamma_n
/// |XL| |P A| + n eta`, the exact `|XL| |P A|` bounded above from its computed value as in
/// `matmul`. With `Bm = fl(Gm XU)`, `|B - Bm| <= (rG + gamma_n |Gm|) |XU| + n eta =: R`. Only two
/// functionals of R are needed, its row sums and its diagonal, and both are O(n^2) with upward
/// rounding: the row sums are `P (|XU| 1)` and the diagonal `sum_j P_ij |XU_ji|` with
/// `P = rG + gamma_n |Gm|`. So the certificate costs three triangular products, not four full
/// ones.
fn enclose_e(xl: &Dense, pa: &Dense, xu: &Dense, par: Parallelism) -> Option<(Interval, f64)> {
    let n = pa.rows;
    let g = gamma(n)?;
    let slack = underflow_allowance(n);
    let gm = tri_product(
        xl,
        BlockStructure::UnitTriangularLower,
        pa,
        BlockStructure::Rectangular,
        par,
    );
    let abs_xl = xl.map(f64::abs);
    let abs_pa = pa.map(f64::abs);
    let mut rg = tri_product(
        &abs_xl,
        BlockStructure::TriangularLower,
        &abs_pa,
        BlockStructure::Rectangular,
        par,
    );
    let denom = sub_down(1.0, g);
    rg.data
        .iter_mut()
        .for_each(|v| *v = add_up(mul_up(g, div_up(add_up(*v, slack), denom)), slack));
    let bm = tri_product(
        &gm,
        BlockStructure::Rectangular,
        xu,
        BlockStructure::TriangularUpper,
        par,
    );
    if !(gm.all_finite() && rg.all_finite() && bm.all_finite()) {
        return None;
    }
    // P = rG + gamma |Gm|, and v = |XU| 1, both rounded upward.
    let p = rg.zip(&gm, |r, m| add_up(r, mul_up(g, m.abs())));
    let v: Vec<f64> = (0..n)
        .map(|j| {
            xu.data[j * n..(j + 1) * n]
                .iter()
                .fold(0.0, |acc, &x| add_up(acc, x.abs()))
        })
        .collect();
    let mut trace = Interval::point(0.0);
    let mut eps: f64 = 0.0;
    for i in 0..n {
        let prow = &p.data[i * n..(i + 1) * n];
        let row_rad = prow
            .iter()
            .zip(&v)
            .fold(0.0, |acc, (&pv, &vv)| add_up(acc, mul_up(pv, vv)));
        let diag_rad = prow
            .iter()
            .enumerate()
            .fold(0.0, |acc, (j, &pv)| add_up(acc, mul_up(pv, xu.data[j * n + i].abs())));
        let brow = &bm.data[i * n..(i + 1) * n];
        let mut row = add_up(row_rad, mul_up(n as f64, slack));
        for (j, &b) in brow.iter().enumerate() {
            row = add_up(
                row,
                if i == j {
                    sub_up(b, 1.0).abs().max(sub_down(b, 1.0).abs())
                } else {
                    b.abs()
                },
            );
        }
        eps = eps.max(row);
        let r = add_up(diag_rad, slack);
        trace += Interval::raw(sub_down(brow[i], 1.0), sub_up(brow[i], 1.0)) + Interval::raw(-r, r);
    }
    if trace.is_nai() || !eps.is_finite() {
        return None;
    }
    Some((trace, eps))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certify(a: &[f64], n: usize) -> CertifiedLogDet {
        certify_log_det(&MatSlice::new(a, n, n).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn diagonal_and_permuted_matrices() {
        let c = certify(&[0.0, 2.0, 3.0, 0.0], 2);
        assert_eq!(c.sign(), Some(-1.0));
        let i = c.log_abs().unwrap_or(Interval::NAI);
        assert!(i.contains(6f64.ln()), "{i:?}");
        let c = certify(&[-4.0], 1);
        assert_eq!(c.sign(), Some(-1.0));
        assert!(c.log_abs().unwrap_or(Interval::NAI).contains(4f64.ln()));
    }

    #[test]
    fn singular_matrices_have_no_sign() {
        let c = certify(&[1.0, 2.0, 2.0, 4.0], 2);
        assert!(c.sign().is_none(), "{c:?}");
        let c = certify(&[0.0; 9], 3);
        assert!(c.sign().is_none());
    }

    #[test]
    fn bad_input_is_an_error() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let m = MatSlice::new(&a, 2, 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(certify_log_det(&m), Err(Error::NotSquare { .. })));
        let a = [1.0, f64::NAN, 0.0, 1.0];
        let m = MatSlice::new(&a, 2, 2).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            certify_log_det(&m),
            Err(Error::NonFinite { index: (0, 1), .. })
        ));
        let m = MatSlice::new(&[], 0, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(certify_log_det(&m), Err(Error::Empty { .. })));
    }
}
