//! Verified matrix products on faer's f64 gemm, in midpoint-radius form.
//!
//! # The bound
//!
//! Write the interval operands as `A = <mA, rA>` and `B = <mB, rB>` (midpoint, radius: every
//! point of `A` is within `rA` of `mA` entrywise). For any points `a` of `A` and `b` of `B`,
//! `ab - mA mB = (a - mA) b + mA (b - mB)`, so entrywise
//!
//! `|ab - mA mB| <= rA (|mB| + rB) + |mA| rB`.
//!
//! The midpoint product `Cm = fl(mA mB)` is faer's gemm, which is not correctly rounded entry by
//! entry and whose summation order (blocking, FMA, several accumulators) is its own. Every
//! product term of an inner dimension `k` passes through at most `k` roundings (one
//! multiplication or FMA and at most `k - 1` additions) whatever the order, so Higham's bound
//! (Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.5, with the underflow
//! model of section 2.1) holds for any order:
//!
//! `|Cm - mA mB| <= gamma_k |mA| |mB| + k eta`,  `gamma_k = k u / (1 - k u)`,
//!
//! with `u = 2^-53` and `eta = 2^-1074` (the smallest subnormal; each operation that underflows
//! adds at most eta/2). Hence the exact product of any points lies in `Cm +- R` with
//!
//! `R = (rA + gamma_k |mA|) (|mB| + rB) + |mA| rB + k eta`,
//!
//! which costs two more gemms, of nonnegative matrices (one when `B` is made of points, as a
//! layer's weights are). Their computed values `G` are lower than the exact products by at most
//! `gamma_k` relatively plus `k eta`, so the exact products are at most `(G + k eta) / (1 -
//! gamma_k)`; every elementwise step is rounded upward.
//!
//! Products whose operands or results are not finite fall back to the generic interval loop.

use crate::faer_gemm;
use crate::ground;
use crate::view::{MatSlice, MatSliceMut, Parallelism};

use super::Interval;
use super::arith::{add_up, div_up, mul_up, sub_down};

/// The unit roundoff of f64, `2^-53`.
pub(crate) const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;

/// The smallest positive subnormal f64, `2^-1074`.
pub(crate) const ETA: f64 = f64::from_bits(1);

/// An upper bound of `gamma_k = k u / (1 - k u)`, or `None` when `k u >= 1/2` (no useful bound).
pub(crate) fn gamma(k: usize) -> Option<f64> {
    #[cfg(feature = "fault-injection")]
    if super::fault::active() == super::fault::Fault::NoProductError {
        return Some(0.0);
    }
    let ku = mul_up(k as f64, UNIT_ROUNDOFF);
    if ku.is_nan() || ku >= 0.5 {
        return None;
    }
    Some(div_up(ku, sub_down(1.0, ku)))
}

/// An upper bound of `k * eta` (exact below 2^52).
pub(crate) fn underflow_allowance(k: usize) -> f64 {
    #[cfg(feature = "fault-injection")]
    if super::fault::active() == super::fault::Fault::NoProductError {
        return 0.0;
    }
    mul_up(k as f64, ETA)
}

/// A dense row-major f64 matrix.
pub(crate) struct Dense {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) data: Vec<f64>,
}

impl Dense {
    pub(crate) fn zeros(rows: usize, cols: usize) -> Self {
        Dense {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub(crate) fn view(&self) -> MatSlice<'_, f64> {
        MatSlice {
            data: &self.data,
            rows: self.rows,
            cols: self.cols,
            ld: self.cols,
            transposed: false,
        }
    }

    fn view_mut(&mut self) -> MatSliceMut<'_, f64> {
        MatSliceMut {
            data: &mut self.data,
            rows: self.rows,
            cols: self.cols,
            ld: self.cols,
        }
    }

    pub(crate) fn map(&self, f: impl Fn(f64) -> f64) -> Dense {
        Dense {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    pub(crate) fn zip(&self, other: &Dense, f: impl Fn(f64, f64) -> f64) -> Dense {
        Dense {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().zip(&other.data).map(|(&a, &b)| f(a, b)).collect(),
        }
    }

    pub(crate) fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.data.iter().all(|&v| v == 0.0)
    }
}

/// `fl(a b)` by faer (sequential or threaded as `par` says).
pub(crate) fn product(a: &Dense, b: &Dense, par: Parallelism) -> Dense {
    let mut c = Dense::zeros(a.rows, b.cols);
    faer_gemm::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut(), par);
    c
}

/// An upper bound of the exact product `a b` of two nonnegative f64 matrices (inner dimension
/// `k`, `g = gamma_k`): `(fl(a b) + k eta) / (1 - g)`, rounded upward.
pub(crate) fn product_upper(a: &Dense, b: &Dense, g: f64, par: Parallelism) -> Dense {
    let k = a.cols;
    let slack = underflow_allowance(k);
    let denom = sub_down(1.0, g);
    let mut c = product(a, b, par);
    c.data.iter_mut().for_each(|v| *v = div_up(add_up(*v, slack), denom));
    c
}

/// A midpoint-radius matrix: every point is within `rad` of `mid`, entrywise.
pub(crate) struct MidRad {
    pub(crate) mid: Dense,
    pub(crate) rad: Dense,
}

impl MidRad {
    /// The midpoint-radius form of an interval matrix view.
    fn of_view(v: MatSlice<'_, Interval>) -> MidRad {
        let (rows, cols) = (v.rows(), v.cols());
        let mut mid = Dense::zeros(rows, cols);
        let mut rad = Dense::zeros(rows, cols);
        for i in 0..rows {
            for j in 0..cols {
                let x = v.at(i, j);
                mid.data[i * cols + j] = x.mid();
                rad.data[i * cols + j] = x.rad();
            }
        }
        MidRad { mid, rad }
    }
}

/// An enclosure `Cm +- R` of every product of points of `a` and `b` (see the module
/// documentation), or `None` when the inner dimension is too large for the bound or a value is
/// not finite.
pub(crate) fn product_enclosure(a: &MidRad, b: &MidRad, par: Parallelism) -> Option<MidRad> {
    let k = a.mid.cols;
    let g = gamma(k)?;
    if !(a.mid.all_finite() && a.rad.all_finite() && b.mid.all_finite() && b.rad.all_finite()) {
        return None;
    }
    let cm = product(&a.mid, &b.mid, par);
    let abs_am = a.mid.map(f64::abs);
    let p = a.rad.zip(&abs_am, |r, m| add_up(r, mul_up(g, m)));
    let q = b.mid.zip(&b.rad, |m, r| add_up(m.abs(), r));
    let mut r = product_upper(&p, &q, g, par);
    if !b.rad.is_zero() {
        let r2 = product_upper(&abs_am, &b.rad, g, par);
        r.data.iter_mut().zip(&r2.data).for_each(|(v, &w)| *v = add_up(*v, w));
    }
    let slack = underflow_allowance(k);
    r.data.iter_mut().for_each(|v| *v = add_up(*v, slack));
    if !(cm.all_finite() && r.all_finite()) {
        return None;
    }
    Some(MidRad { mid: cm, rad: r })
}

/// `c = alpha * a b + beta * c` on intervals: the verified product, then interval arithmetic for
/// `alpha` and `beta` (`c` is not read when `beta` is exactly 0). Falls back to the generic loop,
/// sequentially, when the product has no finite enclosure.
pub(crate) fn gemm(
    alpha: Interval,
    a: MatSlice<'_, Interval>,
    b: MatSlice<'_, Interval>,
    beta: Interval,
    c: MatSliceMut<'_, Interval>,
    par: Parallelism,
) {
    let (m, n) = (c.rows, c.cols);
    if m == 0 || n == 0 {
        return;
    }
    let Some(prod) = product_enclosure(&MidRad::of_view(a), &MidRad::of_view(b), par) else {
        ground::gemm(alpha, a, b, beta, c, Parallelism::Sequential, |v: Interval| {
            v.is_point() && v.lo() == 0.0
        });
        return;
    };
    let ld = c.ld;
    let alpha_is_one = alpha.is_point() && alpha.lo() == 1.0;
    let beta_is_zero = beta.is_point() && beta.lo() == 0.0;
    for i in 0..m {
        for j in 0..n {
            let (cm, r) = (prod.mid.data[i * n + j], prod.rad.data[i * n + j]);
            let mut v = Interval::raw(sub_down(cm, r), add_up(cm, r));
            if !alpha_is_one {
                v = alpha * v;
            }
            let out = &mut c.data[i * ld + j];
            *out = if beta_is_zero { v } else { beta * *out + v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval_matrix(rows: usize, cols: usize, f: impl Fn(usize, usize) -> (f64, f64)) -> Vec<Interval> {
        (0..rows * cols)
            .map(|k| {
                let (lo, hi) = f(k / cols, k % cols);
                Interval::raw(lo, hi)
            })
            .collect()
    }

    #[test]
    fn gamma_grows_with_the_inner_dimension() {
        let g1 = gamma(1).unwrap_or(f64::NAN);
        assert!((UNIT_ROUNDOFF..1.1 * UNIT_ROUNDOFF).contains(&g1));
        let g = gamma(1000).unwrap_or(f64::NAN);
        assert!(g >= 1000.0 * UNIT_ROUNDOFF);
        assert!(gamma(1 << 52).is_none());
    }

    #[test]
    fn the_product_of_points_encloses_the_exact_product() {
        // a = i_a * 2^-30 with |i_a| < 2^40 and integer b with |b| <= 2^20: the exact dot products
        // (k = 300) are integers times 2^-30 of up to 68 bits, which f64 cannot hold, and i128
        // computes them exactly.
        let (m, k, n) = (7, 300, 5);
        let scale = 2f64.powi(-30);
        let ia: Vec<i128> = (0..m * k)
            .map(|t| ((t as i128 * 7_919_137_331) % (1 << 40)) - (1 << 39))
            .collect();
        let ib: Vec<i128> = (0..k * n)
            .map(|t| ((t as i128 * 104_729) % (1 << 21)) - (1 << 20))
            .collect();
        let a: Vec<Interval> = ia.iter().map(|&v| Interval::point(v as f64 * scale)).collect();
        let b: Vec<Interval> = ib.iter().map(|&v| Interval::point(v as f64)).collect();
        let mut c = vec![Interval::point(f64::NAN); m * n];
        gemm(
            Interval::point(1.0),
            MatSlice::new(&a, m, k).unwrap_or_else(|e| panic!("{e}")),
            MatSlice::new(&b, k, n).unwrap_or_else(|e| panic!("{e}")),
            Interval::point(0.0),
            MatSliceMut::new(&mut c, m, n).unwrap_or_else(|e| panic!("{e}")),
            Parallelism::Sequential,
        );
        let mut inexact = 0;
        for i in 0..m {
            for j in 0..n {
                let exact: i128 = (0..k).map(|p| ia[i * k + p] * ib[p * n + j]).sum();
                let x = c[i * n + j];
                // lo * 2^30 <= exact <= hi * 2^30, compared exactly through ceil and floor.
                let (lo, hi) = ((x.lo() / scale).ceil(), (x.hi() / scale).floor());
                assert!(
                    lo as i128 <= exact && exact <= hi as i128,
                    "{x:?} misses {exact} * 2^-30"
                );
                // The width is the a-priori bound: about 2 gamma_k sum |a| |b|, not more.
                let abs: f64 = (0..k).map(|p| (a[i * k + p].lo() * b[p * n + j].lo()).abs()).sum();
                let g = gamma(k).unwrap_or(f64::NAN);
                assert!(
                    x.width() <= 2.01 * g * abs,
                    "{x:?} wider than 2 gamma_k |a| |b| = {}",
                    2.0 * g * abs
                );
                if (exact as f64) as i128 != exact {
                    inexact += 1;
                }
            }
        }
        assert!(inexact > 0, "the test needs products that f64 rounds");
    }

    #[test]
    fn radii_of_the_operands_propagate() {
        let (m, k, n) = (3, 4, 2);
        let a = interval_matrix(m, k, |i, j| {
            let v = (i + 2 * j) as f64 - 3.0;
            (v - 0.25, v + 0.25)
        });
        let b = interval_matrix(k, n, |i, j| {
            let v = (i * j) as f64 + 0.5;
            (v - 0.5, v + 0.5)
        });
        let mut c = vec![Interval::point(0.0); m * n];
        gemm(
            Interval::point(1.0),
            MatSlice::new(&a, m, k).unwrap_or_else(|e| panic!("{e}")),
            MatSlice::new(&b, k, n).unwrap_or_else(|e| panic!("{e}")),
            Interval::point(0.0),
            MatSliceMut::new(&mut c, m, n).unwrap_or_else(|e| panic!("{e}")),
            Parallelism::Sequential,
        );
        // Every corner product of the operands' bounds lies in the result.
        for i in 0..m {
            for j in 0..n {
                for pick in 0..(1u32 << (2 * k)) {
                    let s: f64 = (0..k)
                        .map(|p| {
                            let x = a[i * k + p];
                            let y = b[p * n + j];
                            let xa = if pick >> (2 * p) & 1 == 1 { x.hi() } else { x.lo() };
                            let yb = if pick >> (2 * p + 1) & 1 == 1 { y.hi() } else { y.lo() };
                            xa * yb
                        })
                        .sum();
                    assert!(c[i * n + j].contains(s), "{:?} misses {s}", c[i * n + j]);
                }
            }
        }
    }
}
