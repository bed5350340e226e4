//! The rational-quadratic spline's mathematics (`exactflow_layers::spline`), in f64 and f32:
//! monotone; continuous and C1 at every knot; round trips everywhere, exactly at the knots, at
//! `+-B` and far in the tails; bins at the minimum width; the log-derivative against
//! dual-number and finite-difference derivatives; the backward passes of the map and of its
//! inverse against dual numbers and finite differences, inside and outside the domain. Then
//! one named regression test per bug the peers shipped, each on that bug's kind of input.
//!
//! Cases: K in 1..=10 bins, B in [0.5, 5], unnormalized parameters in [-3, 3] (a fifth of the
//! cases in [-12, 12], which push bins to the minimum width and derivatives to the minimum),
//! inputs in [-1.6 B, 1.6 B] plus the knots, `+-B` and far tails.
//!
//! Tolerances, with `u` the unit roundoff of the precision (1.1e-16 for f64, 6.0e-8 for f32):
//! - exactness: the value at a knot from either adjacent bin's formula is the knot (the formulas
//!   evaluate `Y_k + H * 0` and `Y_{k+1} - H * 0`); the inverse of a knot is the knot; the tails
//!   are the identity: all bit for bit.
//! - slope at a knot from either side against `D_k`: relative `64 u` (a handful of roundings of
//!   positive terms).
//! - monotone: consecutive sorted inputs give outputs that never decrease by more than
//!   `8 u (|y| + B)` (each output is a few roundings from the exact, increasing one), and the
//!   exact slope (dual numbers) is positive everywhere.
//! - round trip `inverse(forward(x))`: `|x' - x| <= 64 u (|x| + B) (1 + 1 / f'(x))`: the
//!   rounding of y (relative `u`) divided by the slope, plus the root's few roundings (the root's
//!   bound in the module documentation; a bin's slopes are within [`f'(x)`'s range] of each
//!   other over the cases drawn).
//! - log-derivative against the dual-number derivative: `|ld - ln f'| <= 64 u (1 + |ld| + cond)`
//!   with `cond` the bin's slope ratio (`bin_cond`): the log-derivative is a few roundings of
//!   positive terms, but the dual derivative of the bin's rational function subtracts terms of
//!   the size of the bin's largest slope. Against central differences (steps `1e-4 W` and
//!   `1e-6 W`, W the bin's width, the better kept; f64 only, away from knots where the second
//!   derivative jumps, in bins with `cond <= FD_COND`): relative `1e-6` (truncation
//!   `O((h / W)^2 f''' W^2 / f')`, rounding `O(u |y| / (h f'))`).
//! - backward against dual numbers (exact derivatives of the same code): mixed error
//!   `|a - e| / max(1, |a|, |e|) <= 1e-9 + 1.2e-12 cond` in f64 (the same cancellation, in both
//!   computations); against central differences `1e-6`, the `layer_harness` gradient tolerance,
//!   away from knots in bins with `cond <= FD_COND` (retried at steps `h / 10`, `h / 100`).
//! - f32 against f64 at the same parameters: the f32 knots, computed in f32, sit up to
//!   `(2K + 8) u_32 (|x| + 2B)` from the f64 ones, which moves the map's input by that much in
//!   effect (a bin next to a knot can have a log-derivative that changes by units over that
//!   distance), so the f32 value must lie in the f64 range over that neighbourhood within
//!   `1e-4 (|y| + B)`, the log-derivative within
//!   `1e-3 (1 + |ld|) + 64 u_32 cond` plus the shape term of `shape_tol` (a narrow bin's width
//!   and height are differences of rounded knots). The f32 log-derivative against the dual
//!   numbers likewise.

mod layer_harness;

use exactflow_kernels::{F1, Real};
use exactflow_layers::autoregressive::{Direction, SplineAutoregressive};
use exactflow_layers::gradcheck::{grad_check, mixed_error};
use exactflow_layers::nets::{Activation, MadeConfig, MlpConfig};
use exactflow_layers::spline::{Knots, RqSpline, SplineConfig};
use exactflow_layers::{Bijector, Ctx, Mask, MaskKind, SplineCoupling, Tensor};
use layer_harness::{GRAD_F64, GRAD_STEP, cases, perturb};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One spline and its inputs.
#[derive(Clone, Debug)]
struct Case {
    bins: usize,
    bound: f64,
    raw: Vec<f64>,
    /// Inputs as multiples of B.
    xs: Vec<f64>,
    /// Backward weights (dy, dld) per input.
    w: Vec<(f64, f64)>,
}

impl Case {
    fn cfg(&self) -> SplineConfig {
        SplineConfig::new(self.bins, self.bound).expect("the strategy draws valid configs")
    }

    fn knots<T: Real>(&self) -> Knots<T> {
        knots_of(self.cfg(), &self.raw)
    }

    /// The drawn inputs, the knots, `+-B` and far tails.
    fn inputs<T: Real>(&self) -> Vec<f64> {
        let k = self.knots::<f64>();
        let b = self.bound;
        let mut v: Vec<f64> = self.xs.iter().map(|x| x * b).collect();
        v.extend_from_slice(k.xs());
        v.extend([b, -b, 10.0 * b, -10.0 * b, 1e6, -1e6, 1e30, -1e30]);
        // Knots of f64 are not knots of f32: add f32's own.
        v.extend(self.knots::<T>().xs().iter().map(|x| x.as_f64()));
        v
    }
}

fn knots_of<T: Real>(cfg: SplineConfig, raw: &[f64]) -> Knots<T> {
    let sp = RqSpline::<T>::new(cfg).expect("valid config");
    let mut k = sp.knots();
    let raw: Vec<T> = raw.iter().map(|&v| T::lit(v)).collect();
    k.set(&raw);
    k
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=10, 0.5f64..5.0, proptest::bool::weighted(0.2)).prop_flat_map(|(bins, bound, extreme)| {
        let r = if extreme { 12.0 } else { 3.0 };
        (
            proptest::collection::vec(-r..r, 3 * bins - 1),
            proptest::collection::vec(-1.6f64..1.6, 12),
            proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0), 40),
        )
            .prop_map(move |(raw, xs, w)| Case {
                bins,
                bound,
                raw,
                xs,
                w,
            })
    })
}

fn unit<T: Real>() -> f64 {
    if T::NAME == "f32" { 6.0e-8 } else { 1.2e-16 }
}

/// The exact slope `f'(x)` (dual numbers running the same code).
fn dual_slope(c: &Case, x: f64) -> f64 {
    sensitivities(c, x).0
}

/// `(f'(x), d ln f'(x) / dx)` exactly (dual numbers): how fast the value and the
/// log-derivative move with x, for tolerances at inputs that rounding moves.
fn sensitivities(c: &Case, x: f64) -> (f64, f64) {
    let k = c.knots::<F1>();
    let (y, ld) = k.forward(F1::var(x));
    (y.dx, ld.dx)
}

/// The conditioning of the bin holding `v` (an input, or an output for `inverse`): the ratio
/// of the largest to the smallest slope in it, `Knots::bin_slopes` (the audit's per-bin
/// number); 1 in the tails. The derivative of the bin's rational function, in the dual numbers
/// and in the hand-written backward alike, subtracts terms of the size of the bin's largest
/// slope to produce the local one, so its rounding error relative to the result grows like
/// `u * cond`; the comparisons below add that term to their tolerances.
fn bin_cond(c: &Case, v: f64, inverse: bool) -> f64 {
    if v.abs() >= c.bound {
        return 1.0;
    }
    let k = c.knots::<f64>();
    let knots = if inverse { k.ys() } else { k.xs() };
    let bin = knots[1..knots.len() - 1].partition_point(|&t| t <= v);
    let (lo, hi) = k.bin_slopes()[bin];
    hi / lo
}

/// The range of `g` over `[x - r, x + r]`: 65 evenly spaced points and every knot inside. For a
/// continuous `g` (the value, the log-derivative) this is the set of values a computation
/// whose input (or knots) rounding moved by at most `r` may return: a backward-error check.
fn range_near(c: &Case, x: f64, r: f64, g: impl Fn(f64) -> f64) -> (f64, f64) {
    let k = c.knots::<f64>();
    let pts = (0..65)
        .map(|i| x - r + 2.0 * r * i as f64 / 64.0)
        .chain(k.xs().iter().copied().filter(|v| (v - x).abs() <= r));
    pts.map(g)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// How far `v` is outside `[lo, hi]` (0 inside).
fn outside(v: f64, (lo, hi): (f64, f64)) -> f64 {
    (lo - v).max(v - hi).max(0.0)
}

/// The exact log-derivative `ln f'(x)` (dual numbers).
fn exact_ld(c: &Case, x: f64) -> f64 {
    c.knots::<F1>().forward(F1::var(x)).0.dx.ln()
}

/// Whether `x` is within `r` of a knot abscissa (or ordinate, for the inverse's input) or of
/// `+-B`, where the spline is C1 but not C2, so a central difference of step `r` straddles a
/// jump of the second derivative.
fn near_knot(c: &Case, x: f64, r: f64, inverse: bool) -> bool {
    let k = c.knots::<f64>();
    let knots = if inverse { k.ys() } else { k.xs() };
    knots.iter().any(|k| (x - k).abs() <= r)
}

/// The documented bound on the inverse's root (see `exactflow_layers::spline`): relative error
/// of theta at most `16 u (1 + (P + Q) / (|b| + sqrt(disc)))`, evaluated in f64 on the
/// precision's own knots; returned as an error in x: `W` times that, plus the rounding of x.
fn root_error_bound<T: Real>(k: &Knots<T>, y: T, u: f64) -> f64 {
    let b_ = k.spline().bound().as_f64();
    if !k.spline().inside(y) {
        return 0.0;
    }
    let ys: Vec<f64> = k.ys().iter().map(|v| v.as_f64()).collect();
    let xs: Vec<f64> = k.xs().iter().map(|v| v.as_f64()).collect();
    let ds: Vec<f64> = k.ds().iter().map(|v| v.as_f64()).collect();
    let y = y.as_f64();
    let bin = ys[1..ys.len() - 1].partition_point(|&t| t <= y);
    let (w, h) = (xs[bin + 1] - xs[bin], ys[bin + 1] - ys[bin]);
    let s = h / w;
    let eta = ((y - ys[bin]) / h).clamp(0.0, 1.0);
    let p = ds[bin] * (1.0 - eta) + 2.0 * s * eta;
    let q = ds[bin + 1] * eta;
    let r = ds[bin] * (1.0 - eta) - ds[bin + 1] * eta;
    let disc = r * r + 4.0 * s * s * eta * (1.0 - eta);
    let rel = 16.0 * u * (1.0 + (p + q) / ((p - q).abs() + disc.sqrt()));
    w * rel + 4.0 * u * (y.abs() + b_)
}

/// Monotone: sorted inputs give non-decreasing outputs (up to rounding), and the exact slope is
/// positive everywhere.
fn check_monotone<T: Real>(c: &Case) -> Result<(), TestCaseError> {
    let k = c.knots::<T>();
    let mut xs = c.inputs::<T>();
    xs.sort_by(f64::total_cmp);
    let u = unit::<T>();
    let ys: Vec<f64> = xs.iter().map(|&x| k.forward(T::lit(x)).0.as_f64()).collect();
    for i in 1..xs.len() {
        let tol = 8.0 * u * (ys[i].abs() + c.bound);
        prop_assert!(
            ys[i] >= ys[i - 1] - tol,
            "not monotone: f({}) = {} < f({}) = {}",
            xs[i],
            ys[i],
            xs[i - 1],
            ys[i - 1]
        );
    }
    for &x in &xs {
        let s = dual_slope(c, x);
        prop_assert!(s > 0.0 && s.is_finite(), "slope {s} at {x}");
    }
    Ok(())
}

/// Continuous and C1 at every knot, including `+-B` where the tails (slope 1) begin.
fn check_knots<T: Real>(c: &Case) -> Result<(), TestCaseError> {
    let k = c.knots::<T>();
    let tol = 64.0 * unit::<T>();
    let kk = c.bins;
    for i in 0..kk {
        // Bin i at theta = 0 is knot i; at theta = 1 knot i + 1: value exactly, slope D.
        let (y0, s0) = k.bin_value_and_slope(i, T::zero());
        let (y1, s1) = k.bin_value_and_slope(i, T::one());
        prop_assert_eq!(y0, k.ys()[i], "bin {} at theta = 0", i);
        prop_assert_eq!(y1, k.ys()[i + 1], "bin {} at theta = 1", i);
        let (d0, d1) = (k.ds()[i].as_f64(), k.ds()[i + 1].as_f64());
        prop_assert!(
            ((s0.as_f64() - d0) / d0).abs() <= tol,
            "slope of bin {i} at its left knot {s0:?} vs D = {d0}"
        );
        prop_assert!(
            ((s1.as_f64() - d1) / d1).abs() <= tol,
            "slope of bin {i} at its right knot {s1:?} vs D = {d1}"
        );
        // The map at the knot abscissa is the knot ordinate, exactly.
        let (y, _) = k.forward(k.xs()[i]);
        prop_assert_eq!(y, k.ys()[i], "f(X_{})", i);
    }
    // The tails' slope 1 meets the boundary derivatives D_0 = D_K = 1.
    prop_assert_eq!(k.ds()[0], T::one());
    prop_assert_eq!(k.ds()[kk], T::one());
    let b = T::lit(c.bound);
    prop_assert_eq!(k.forward(b), (b, T::zero()));
    prop_assert_eq!(k.forward(-b), (-b, T::zero()));
    Ok(())
}

/// Round trips everywhere; exact at the knots, at `+-B` and in the tails; inverse log-derivative
/// is minus the forward one.
fn check_round_trip<T: Real>(c: &Case) -> Result<(), TestCaseError> {
    let k = c.knots::<T>();
    let u = unit::<T>();
    let b = c.bound;
    for x in c.inputs::<T>() {
        let xt = T::lit(x);
        let (y, ld) = k.forward(xt);
        let (back, ldi) = k.inverse(y);
        prop_assert!(back.is_finite_value() && ldi.is_finite_value(), "inverse of {y:?}");
        let slope = ld.as_f64().exp();
        let xv = xt.as_f64();
        // y's rounding, divided by the slope, plus the root's documented error.
        let tol = 64.0 * u * (xv.abs() + b) * (1.0 + 1.0 / slope) + root_error_bound(&k, y, u);
        prop_assert!(
            (back.as_f64() - xv).abs() <= tol,
            "inverse(forward({xv})) = {back:?}, tolerance {tol:e}"
        );
        // -ldi is the log-derivative at the computed root, which lies within `tol` of x: it must
        // be in the range of the exact log-derivative there (within rounding).
        if xv.abs() < b {
            let range = range_near(c, xv, tol + knot_shift_of::<T>(c, xv), |v| exact_ld(c, v));
            let kappa = bin_cond(c, xv, false);
            let ld_tol = 64.0 * u * (1.0 + ld.as_f64().abs() + kappa) + shape_tol::<T>(c, xv);
            prop_assert!(
                outside(-ldi.as_f64(), range) <= ld_tol,
                "inverse log-derivative {ldi:?} at f({xv}): exact range near x {range:?}, tolerance {ld_tol:e}"
            );
        }
        if xv.abs() >= b {
            prop_assert_eq!(y, xt, "tail");
            prop_assert_eq!(back, xt, "tail inverse");
        }
    }
    // The knots themselves, both ways, bit for bit.
    for (&x, &y) in k.xs().iter().zip(k.ys()) {
        prop_assert_eq!(k.forward(x).0, y);
        prop_assert_eq!(k.inverse(y).0, x);
    }
    Ok(())
}

/// The log-derivative against the dual-number derivative (forward and inverse) and, in f64, a
/// central difference. In f32 the knots are the f64 ones rounded, which moves the map's input
/// by up to `shift`; the f32 value must then be the exact one at some input within `shift`.
fn check_log_det<T: Real>(c: &Case) -> Result<(), TestCaseError> {
    let k = c.knots::<T>();
    let u = unit::<T>();
    let tol = 64.0 * u;
    for x in c.inputs::<T>() {
        let xt = T::lit(x);
        let x = xt.as_f64();
        let shift = knot_shift_of::<T>(c, x);
        let (y, ld) = k.forward(xt);
        let range = range_near(c, x, shift, |v| exact_ld(c, v));
        let kappa = bin_cond(c, x, false)
            .max(bin_cond(c, x - shift, false))
            .max(bin_cond(c, x + shift, false));
        let bound = tol * (1.0 + ld.as_f64().abs() + kappa) + shape_tol::<T>(c, x);
        prop_assert!(
            outside(ld.as_f64(), range) <= bound,
            "log-derivative at {x}: {ld:?} vs exact {range:?}, tolerance {bound:e}"
        );
        // The inverse at y: its log-derivative is -ln f' at the computed root, off by the
        // root's documented error.
        let (xr, ldi) = k.inverse(y);
        let root = root_error_bound(&k, y, u) + shift;
        let range = range_near(c, xr.as_f64(), root, |v| -exact_ld(c, v));
        let bound = tol * (1.0 + ldi.as_f64().abs() + kappa) + shape_tol::<T>(c, xr.as_f64());
        prop_assert!(
            outside(ldi.as_f64(), range) <= bound,
            "inverse log-derivative at {y:?}: {ldi:?} vs exact {range:?}, tolerance {bound:e}"
        );
        // Steps relative to the bin's width, the better of two kept: the truncation error is
        // O((h / W)^2 f''' W^2 / f'), the rounding O(u |y| / (h f')).
        let w = bin_width(c, x);
        if T::NAME == "f64" && x.abs() < 1e3 && !near_knot(c, x, 1e-3 * w, false) && bin_cond(c, x, false) <= FD_COND {
            let s = exact_ld(c, x).exp();
            let err = [1e-4 * w, 1e-6 * w]
                .iter()
                .map(|&h| {
                    let fd = (k.forward(T::lit(x + h)).0.as_f64() - k.forward(T::lit(x - h)).0.as_f64()) / (2.0 * h);
                    (fd - s).abs() / s.max(1.0)
                })
                .fold(f64::INFINITY, f64::min);
            prop_assert!(
                err <= 1e-6,
                "slope at {x}: central differences off by {err:e} (relative) from {s}"
            );
        }
    }
    Ok(())
}

/// The central-difference checks run in bins whose slopes vary by at most this factor. Beyond,
/// the truncation error `O(h^2 L''')` of the differences themselves (the third derivative grows
/// with the bin's conditioning) exceeds the tolerance at every step tried: the differences, not
/// the backward, are the inaccurate side there, and the dual numbers check those inputs.
const FD_COND: f64 = 100.0;

/// [`knot_shift`] for f32, 0 for f64 (whose reference knots are its own).
fn knot_shift_of<T: Real>(c: &Case, x: f64) -> f64 {
    if T::NAME == "f64" { 0.0 } else { knot_shift(c, x) }
}

/// How far the f32 computation can move the map's input, in effect: the f32 knots are
/// computed in f32 (a softmax and a cumulative sum of K terms, each rounding relative `u`, then
/// scaled by 2B), so they sit up to `(2K + 8) u_32 2B` from the f64 ones, and x itself is
/// rounded. (In f64 the reference uses the same knots: no shift.)
fn knot_shift(c: &Case, x: f64) -> f64 {
    (2.0 * c.bins as f64 + 8.0) * 6.0e-8 * (x.abs().min(1e3) + 2.0 * c.bound)
}

/// The log-derivative's sensitivity to the f32 knots' rounding through the bin's shape: a bin's
/// width and height are differences of knots that are each off by up to `knot_shift`, so
/// `s = H / W` is off by a relative `knot_shift (1 / W + 1 / H)`, and `ln f'` (which holds
/// `2 ln s` and terms of the same order) by up to 4 times that. 0 in f64 and in the tails.
fn shape_tol<T: Real>(c: &Case, x: f64) -> f64 {
    if T::NAME == "f64" || x.abs() >= c.bound {
        return 0.0;
    }
    let k = c.knots::<f64>();
    let bin = k.xs()[1..k.xs().len() - 1].partition_point(|&t| t <= x);
    let (w, h) = (k.xs()[bin + 1] - k.xs()[bin], k.ys()[bin + 1] - k.ys()[bin]);
    4.0 * knot_shift(c, x) * (1.0 / w + 1.0 / h)
}

/// The width of the bin holding `x` (`2B`, the whole interval, in the tails).
fn bin_width(c: &Case, x: f64) -> f64 {
    if x.abs() >= c.bound {
        return 2.0 * c.bound;
    }
    let k = c.knots::<f64>();
    let bin = k.xs()[1..k.xs().len() - 1].partition_point(|&t| t <= x);
    k.xs()[bin + 1] - k.xs()[bin]
}

/// `L = dy * y + dld * ld` of the forward map (or of the inverse) as a function of `(x, raw)`.
fn loss<T: Real>(cfg: SplineConfig, raw: &[T], x: T, w: (f64, f64), inverse: bool) -> T {
    let sp = RqSpline::<T>::new(cfg).expect("valid");
    let mut k = sp.knots();
    k.set(raw);
    let (y, ld) = if inverse { k.inverse(x) } else { k.forward(x) };
    T::lit(w.0) * y + T::lit(w.1) * ld
}

/// The backward passes against dual numbers (every entry) and central differences, at inputs
/// inside and outside `(-B, B)`.
fn check_backward(c: &Case, inverse: bool) -> Result<(), TestCaseError> {
    let cfg = c.cfg();
    let k = c.knots::<f64>();
    let p = c.raw.len();
    let mut draw = vec![0.0; p];
    let raw_d: Vec<F1> = c.raw.iter().map(|&v| F1::cst(v)).collect();
    for (i, x) in c.inputs::<f64>().into_iter().enumerate().filter(|(_, x)| x.abs() < 1e3) {
        let w = c.w[i % c.w.len()];
        // Backward of the inverse takes the map's output as its input.
        let at = if inverse { k.forward(x).0 } else { x };
        let dx = if inverse {
            k.inverse_backward(at, w.0, w.1, &mut draw)
        } else {
            k.backward(at, w.0, w.1, &mut draw)
        };
        prop_assert!(
            dx.is_finite() && draw.iter().all(|g| g.is_finite()),
            "non-finite gradient at {at}"
        );
        if at.abs() >= c.bound {
            // The tail branch alone: dL/dx = dy, no parameter gradient, exactly.
            prop_assert_eq!(dx, w.0);
            prop_assert!(draw.iter().all(|&g| g == 0.0), "parameter gradient in the tail");
            continue;
        }
        let exact = loss(cfg, &raw_d, F1::var(at), w, inverse).dx;
        // 1e-9 for moderate bins; beyond, both computations divide by the bin's width and
        // subtract terms of the size of its largest slope: the rounding grows with
        // cond * 2B / W (1e3 operations at u = 1.1e-16 each).
        let x_at = if inverse { k.inverse(at).0 } else { at };
        let amplification = bin_cond(c, at, inverse) * 2.0 * c.bound / bin_width(c, x_at);
        let tol = 1e-9 + 1e-13 * amplification;
        prop_assert!(mixed_error(dx, exact) <= tol, "dL/dx at {at}: {dx} vs dual {exact}");
        for j in 0..p {
            let mut rj = raw_d.clone();
            rj[j] = F1::var(c.raw[j]);
            let e = loss(cfg, &rj, F1::cst(at), w, inverse).dx;
            prop_assert!(
                mixed_error(draw[j], e) <= tol,
                "dL/draw[{j}] at {at}: {} vs dual {e}",
                draw[j]
            );
            // Central differences (a few parameters per input: they are the slow part). Not at
            // a knot: moving a width moves the knot across x, where the log-derivative is only
            // continuous; nor in bins worse conditioned than FD_COND. The duals above check
            // those inputs exactly.
            if j % 3 == i % 3 && !near_knot(c, at, 1e-3 * c.bound, inverse) && bin_cond(c, at, inverse) <= FD_COND {
                let best = [1e-5, 1e-6, 1e-7]
                    .iter()
                    .map(|&h| {
                        let mut rp = c.raw.clone();
                        let mut rm = c.raw.clone();
                        rp[j] += h;
                        rm[j] -= h;
                        let fd = (loss(cfg, &rp, at, w, inverse) - loss(cfg, &rm, at, w, inverse)) / (2.0 * h);
                        mixed_error(draw[j], fd)
                    })
                    .fold(f64::INFINITY, f64::min);
                prop_assert!(
                    best <= GRAD_F64,
                    "dL/draw[{j}] at {at} vs central differences: {best:e}"
                );
            }
        }
    }
    Ok(())
}

/// f32 against f64 at the same parameters: the f32 knots (and B) are the f64 ones rounded, so
/// the f32 map is the f64 one at an input moved by up to 4 ulps of `|x| + B`; its value and
/// log-derivative must lie in the f64 ranges over that neighbourhood, within rounding.
fn check_f32_matches_f64(c: &Case) -> Result<(), TestCaseError> {
    let k32 = c.knots::<f32>();
    let k64 = c.knots::<f64>();
    for x in c.inputs::<f32>() {
        let x32 = x as f32;
        let xs = x32 as f64;
        let (y32, l32) = k32.forward(x32);
        let shift = knot_shift(c, xs);
        let ys = range_near(c, xs, shift, |v| k64.forward(v).0);
        prop_assert!(
            outside(y32 as f64, ys) <= 1e-4 * (ys.1.abs() + c.bound),
            "f32 {y32} vs f64 {ys:?} near {x32}"
        );
        let kappa = bin_cond(c, xs, false)
            .max(bin_cond(c, xs - shift, false))
            .max(bin_cond(c, xs + shift, false));
        let lds = range_near(c, xs, shift, |v| k64.forward(v).1);
        prop_assert!(
            outside(l32 as f64, lds)
                <= 1e-3 * (1.0 + (l32 as f64).abs()) + 64.0 * 6.0e-8 * kappa + shape_tol::<f32>(c, xs),
            "f32 log-derivative {l32} vs f64 {lds:?} near {x32}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn spline_is_monotone(c in case()) {
        check_monotone::<f64>(&c)?;
        check_monotone::<f32>(&c)?;
    }

    #[test]
    fn spline_is_continuous_and_c1_at_every_knot(c in case()) {
        check_knots::<f64>(&c)?;
        check_knots::<f32>(&c)?;
    }

    #[test]
    fn spline_round_trips_everywhere(c in case()) {
        check_round_trip::<f64>(&c)?;
        check_round_trip::<f32>(&c)?;
    }

    #[test]
    fn spline_log_det_matches_dual_and_fd(c in case()) {
        check_log_det::<f64>(&c)?;
        check_log_det::<f32>(&c)?;
    }

    #[test]
    fn spline_backward_matches_dual_and_fd_inside_and_outside(c in case()) {
        check_backward(&c, false)?;
        check_backward(&c, true)?;
    }

    #[test]
    fn spline_f32_agrees_with_f64(c in case()) {
        check_f32_matches_f64(&c)?;
    }

    /// Bins at the minimum width and height: all but one width (and height) parameter far below
    /// the others, so the softmax gives those bins nothing beyond the minimum.
    #[test]
    fn spline_bins_at_minimum_width(bins in 2usize..=10, bound in 0.5f64..5.0, wide in 0usize..10, tall in 0usize..10,
                                    d in proptest::collection::vec(-3.0f64..3.0, 9),
                                    xs in proptest::collection::vec(-1.6f64..1.6, 12),
                                    w in proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0), 40)) {
        let (wide, tall) = (wide % bins, tall % bins);
        let mut raw = vec![-40.0; 2 * bins];
        raw[wide] = 40.0;
        raw[bins + tall] = 40.0;
        raw.extend(d.iter().take(bins - 1));
        let c = Case { bins, bound, raw, xs, w };
        let k = c.knots::<f64>();
        let m = c.cfg().min_bin_width * 2.0 * bound;
        for i in 0..bins {
            let width = k.xs()[i + 1] - k.xs()[i];
            let height = k.ys()[i + 1] - k.ys()[i];
            if i != wide {
                prop_assert!((width - m).abs() <= 1e-12 * bound, "bin {i} width {width} vs minimum {m}");
            }
            if i != tall {
                prop_assert!((height - m).abs() <= 1e-12 * bound, "bin {i} height {height} vs minimum {m}");
            }
            prop_assert!(width > 0.0 && height > 0.0);
        }
        check_monotone::<f64>(&c)?;
        check_monotone::<f32>(&c)?;
        check_knots::<f64>(&c)?;
        check_knots::<f32>(&c)?;
        check_round_trip::<f64>(&c)?;
        check_round_trip::<f32>(&c)?;
        check_log_det::<f64>(&c)?;
        check_backward(&c, false)?;
        check_backward(&c, true)?;
    }
}

/// Every bin at the minimum width: `K m_w = 1` leaves the softmax no room, so the bins are equal
/// whatever the parameters, and the spline still round-trips.
#[test]
fn all_bins_at_minimum_width_are_equal() {
    let mut cfg = SplineConfig::new(4, 2.0).unwrap();
    cfg.min_bin_width = 0.25;
    let k = knots_of::<f64>(cfg, &[5.0, -3.0, 0.0, 1.0, 0.2, 0.4, -0.1, 0.3, 1.5, -2.0, 0.7]);
    assert_eq!(k.xs(), &[-2.0, -1.0, 0.0, 1.0, 2.0]);
    for x in [-1.9, -1.0, -0.3, 0.0, 0.99, 1.7] {
        let (y, _) = k.forward(x);
        assert!((k.inverse(y).0 - x).abs() < 1e-14);
    }
}

/// The largest f32 below `y` (finite, non-zero `y`).
fn prev_f32(y: f32) -> f32 {
    f32::from_bits(if y > 0.0 { y.to_bits() - 1 } else { y.to_bits() + 1 })
}

/// nflows' inverse evaluated as it is written, in f32: `(a, b, c)` from the un-normalized bin
/// quantities and `b^2 - 4ac` subtracted directly. Returns the discriminant and `b`.
fn naive_discriminant(k: &Knots<f32>, bin: usize, y: f32) -> (f32, f32) {
    let (xk, xk1, yk, yk1) = (k.xs()[bin], k.xs()[bin + 1], k.ys()[bin], k.ys()[bin + 1]);
    let (w, h) = (xk1 - xk, yk1 - yk);
    let delta = h / w;
    let (d0, d1) = (k.ds()[bin], k.ds()[bin + 1]);
    let a = (y - yk) * (d0 + d1 - 2.0 * delta) + h * (delta - d0);
    let b = h * d0 - (y - yk) * (d0 + d1 - 2.0 * delta);
    let c = -delta * (y - yk);
    (b * b - 4.0 * a * c, b)
}

/// The inputs of nflows issue #87 and pull request #71: f32 splines (seeded, 2 to 8 bins on
/// [-3, 3]) with interior derivatives at the minimum, and latents in the last three
/// representable values below the top knot of such a bin. There `b^2 ~ 4ac ~ 4 s^2` while the
/// exact discriminant is about `D_{k+1}^2 = 1e-6` times `H^2`. Returns `(knots, bin, y)` for
/// which `select(naive discriminant, b)` holds.
fn naive_regime(select: impl Fn(f32, f32) -> bool) -> Vec<(Knots<f32>, usize, f32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(87);
    let mut found = Vec::new();
    for _ in 0..400 {
        let bins = rng.random_range(2..=8usize);
        let mut raw: Vec<f64> = (0..3 * bins - 1).map(|_| rng.random_range(-4.0..4.0)).collect();
        for r in raw[2 * bins..].iter_mut() {
            if rng.random::<bool>() {
                *r = -60.0;
            }
        }
        let k = knots_of::<f32>(SplineConfig::new(bins, 3.0).expect("valid"), &raw);
        for bin in 0..bins {
            if k.ds()[bin + 1] > 2e-3 {
                continue;
            }
            let mut y = k.ys()[bin + 1];
            for _ in 0..3 {
                y = prev_f32(y);
                let (disc, b) = naive_discriminant(&k, bin, y);
                if y > k.ys()[bin] && select(disc, b) {
                    found.push((k.clone(), bin, y));
                }
            }
        }
    }
    found
}

/// `|f(x) - y|` in f32 against its bound: the rounding of y and of the evaluation, plus the
/// slope times the rounding of x (the inverse is backward stable: it returns the exact root of
/// a neighbouring y).
fn backward_error_ok(k: &Knots<f32>, x: f32, y: f32) -> Result<(), String> {
    let (fx, ld) = k.forward(x);
    let u = 6.0e-8f64;
    let bound = 16.0 * u * (y.abs() as f64 + 3.0) + 2.0 * (ld as f64).exp() * u * (x.abs() as f64 + 3.0);
    let err = (fx as f64 - y as f64).abs();
    if err <= bound {
        Ok(())
    } else {
        Err(format!("f(inverse({y})) = f({x}) = {fx}: error {err:e} > {bound:e}"))
    }
}

/// nflows issue #87: sampling raised `AssertionError` because `b^2 - 4ac` came out negative. The
/// input: f32 latents just below a knot whose derivative is at the minimum (`naive_regime`). The
/// test first shows that nflows' formula gives a negative discriminant on these inputs, then
/// that exactflow's inverse returns, for each, a finite root inside the bin that maps back to
/// the latent within rounding.
#[test]
fn nflows_issue_87_negative_discriminant_when_sampling() {
    let cases = naive_regime(|disc, _| disc < 0.0);
    assert!(
        cases.len() >= 10,
        "the inputs reproduce nflows #87: {} negative naive discriminants",
        cases.len()
    );
    for (k, bin, y) in &cases {
        let (x, ld) = k.inverse(*y);
        assert!(x.is_finite() && ld.is_finite(), "inverse({y}) = {x}, {ld}");
        assert!(
            x >= k.xs()[*bin] && x <= k.xs()[bin + 1],
            "inverse({y}) = {x} left bin {bin}"
        );
        backward_error_ok(k, x, *y).unwrap();
    }
}

/// nflows pull request #71: when `b^2 ~ 4ac` the computed `b^2 - 4ac` has an arbitrary sign, and
/// the PR sets it to zero when `|b^2 - 4ac| / b^2 < 1e-6`. On exactly those inputs exactflow's
/// discriminant is the exact one up to rounding (a sum of non-negative terms): its root stays in
/// the bin and maps back to the latent, while the zeroed discriminant's root `-2c / b` leaves
/// the bin (theta > 1) for some of them, where the bin's formulas no longer describe the map.
#[test]
fn nflows_pr_71_rounding_when_b_squared_equals_4ac() {
    let cases = naive_regime(|disc, b| (disc / (b * b)).abs() < 1e-6);
    assert!(
        cases.len() >= 10,
        "the inputs reproduce the b^2 ~ 4ac regime: {}",
        cases.len()
    );
    let mut outside = 0;
    for (k, bin, y) in &cases {
        let (x, _) = k.inverse(*y);
        assert!(
            x >= k.xs()[*bin] && x <= k.xs()[bin + 1],
            "inverse({y}) = {x} left bin {bin}"
        );
        backward_error_ok(k, x, *y).unwrap();
        let w = k.xs()[bin + 1] - k.xs()[*bin];
        let (yk, h) = (k.ys()[*bin], k.ys()[bin + 1] - k.ys()[*bin]);
        let (_, b) = naive_discriminant(k, *bin, *y);
        // The PR's root with the discriminant zeroed: 2c / (-b) with c = -(h / w)(y - yk).
        let theta = 2.0 * (h / w) * (y - yk) / b;
        if theta > 1.0 {
            outside += 1;
        }
    }
    assert!(
        outside > 0,
        "zeroing the discriminant sends some roots out of their bin"
    );
}

/// `b < 0` (a right derivative far above `2s`, `eta` near 1): the textbook form
/// `2c / (-b - sqrt(disc))` subtracts nearly equal numbers; exactflow switches to
/// `(sqrt(disc) - b) / 2a`. In f32 the switch keeps the root at f32 accuracy.
#[test]
fn negative_b_root_is_accurate_in_f32() {
    let cfg = SplineConfig::new(2, 3.0).unwrap();
    // Bin 0 wide and flat (s small), the interior derivative large.
    let raw = [1.0, -1.0, -1.0, 1.0, 12.0];
    let k32 = knots_of::<f32>(cfg, &raw);
    let k64 = knots_of::<f64>(cfg, &raw);
    let s = ((k64.ys()[1] - k64.ys()[0]) / (k64.xs()[1] - k64.xs()[0])) as f32;
    assert!(
        k32.ds()[1] > 20.0 * s,
        "D_1 = {} is far above 2s = {}",
        k32.ds()[1],
        2.0 * s
    );
    let mut worse = 0;
    let mut y = k32.ys()[1];
    let ys: Vec<f32> = (0..2048)
        .map(|_| {
            y = prev_f32(y);
            y
        })
        .collect();
    for y in ys.into_iter().step_by(64) {
        let (x, _) = k32.inverse(y);
        let (x64, _) = k64.inverse(y as f64);
        let err = (x as f64 - x64).abs();
        assert!(err <= 1e-5 * cfg.tail_bound, "f32 {x} vs f64 {x64} at {y}");
        // The single textbook form in f32, for comparison.
        let (yk, h) = (k32.ys()[0], k32.ys()[1] - k32.ys()[0]);
        let w = k32.xs()[1] - k32.xs()[0];
        let eta = (y - yk) / h;
        let (d0, d1) = (k32.ds()[0], k32.ds()[1]);
        let b = d0 * (1.0 - eta) + 2.0 * s * eta - d1 * eta;
        let r = d0 * (1.0 - eta) - d1 * eta;
        let disc = r * r + 4.0 * s * s * eta * (1.0 - eta);
        // 2c / (-b - sqrt(disc)) with c = -s eta.
        let theta = 2.0 * s * eta / (b + disc.sqrt());
        let x_textbook = k32.xs()[0] + theta * w;
        if (x_textbook as f64 - x64).abs() > err {
            worse += 1;
        }
    }
    assert!(worse > 0, "the textbook form loses accuracy on these inputs");
}

/// pyro issue #3139: the inverse ignored inputs outside the interval (and its discriminant went
/// negative there). Latents outside `[-B, B]`, at `+-B` and far out map to themselves with log-det
/// 0, in f64 and f32, and round-trip.
#[test]
fn pyro_issue_3139_inverse_outside_the_interval() {
    let cfg = SplineConfig::new(8, 3.0).unwrap();
    let raw: Vec<f64> = (0..23).map(|i| ((i * 7 % 11) as f64 - 5.0) / 2.0).collect();
    let k64 = knots_of::<f64>(cfg, &raw);
    let k32 = knots_of::<f32>(cfg, &raw);
    for y in [3.0, -3.0, 3.0 + 1e-12, -3.5, 4.0, 30.0, -1e6, 1e300, f64::MAX, f64::MIN] {
        assert_eq!(k64.inverse(y), (y, 0.0), "f64 inverse({y})");
        assert_eq!(k64.forward(k64.inverse(y).0).0, y);
        let y32 = y as f32;
        if y32.is_finite() {
            assert_eq!(k32.inverse(y32), (y32, 0.0), "f32 inverse({y32})");
        }
    }
}

/// flowjax issue #239: NaN gradients for out-of-bound inputs, from the unselected spline branch
/// evaluated anyway. exactflow never evaluates it: through a spline coupling and through the
/// inverse direction of an autoregressive spline (whose forward pass is the spline's inverse),
/// a batch mixing in-bound inputs with inputs at `10 B`, `50 B` and `-1e4` has finite gradients
/// that match central differences, and the out-of-bound elements contribute no parameter
/// gradient.
#[test]
fn flowjax_issue_239_no_nan_gradient_out_of_bounds() {
    let cfg = SplineConfig::new(6, 2.0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(239);
    let mlp = MlpConfig {
        hidden: vec![8],
        activation: Activation::Tanh,
        zero_last: false,
    };
    let made = MadeConfig {
        hidden: vec![8],
        residual_blocks: 0,
        activation: Activation::Tanh,
        zero_last: false,
    };
    let x = Tensor::new(&[3, 3], vec![0.3, 20.0, -1.1, 1.5, -100.0, 0.2, -1e4, 0.7, 1.9]).unwrap();
    let wz = Tensor::new(&[3, 3], vec![0.5, -1.0, 0.25, 0.8, 0.1, -0.6, 0.3, 0.9, -0.2]).unwrap();
    let wld = [0.7, -0.4, 1.1];
    let coupling = SplineCoupling::<f64>::with_mlp(3, Mask::new(MaskKind::Halves, false), cfg, &mlp, &mut rng).unwrap();
    let inverse = SplineAutoregressive::<f64>::spline(3, cfg, &made, Direction::Iaf, &mut rng).unwrap();
    for mut layer in [Box::new(coupling) as Box<dyn Bijector<f64>>, Box::new(inverse)] {
        perturb(layer.as_mut(), &[0.3, -0.2, 0.5, 0.1, -0.4], 1.0);
        let rep = grad_check(layer.as_mut(), &x, None, &wz, &wld, GRAD_STEP, 64).unwrap();
        let (name, err) = rep.worst();
        assert!(err.is_finite() && err <= GRAD_F64, "{}: {name} {err:e}", layer.kind());
        let (z, ld) = layer.forward(&x, Ctx::NONE).unwrap();
        assert!(z.as_slice().iter().chain(&ld).all(|v| v.is_finite()));
    }
    // The spline alone: an out-of-bound input's backward is dL/dx = dy and zero, exactly.
    let k = knots_of::<f64>(cfg, &[0.4; 17]);
    let mut draw = vec![1.0; 17];
    for y in [2.0, 20.0, -1e4] {
        assert_eq!(k.inverse_backward(y, 0.3, -0.8, &mut draw), 0.3);
        assert!(draw.iter().all(|&g| g == 0.0));
        assert_eq!(k.backward(y, 0.3, -0.8, &mut draw), 0.3);
        assert!(draw.iter().all(|&g| g == 0.0));
    }
}
