//! The monotone rational-quadratic spline of Neural Spline Flows (Durkan, Bekasov, Murray,
//! Papamakarios, 2019), written once: forward, inverse, log-derivative, and the hand-written
//! backward for the input and for the unnormalized widths, heights and derivatives. The spline
//! coupling ([`crate::spline_coupling::SplineCoupling`]) and the spline autoregressive layer
//! ([`crate::autoregressive`]) both evaluate it through [`Knots`].
//!
//! # The map (data -> latent direction)
//!
//! `K` bins cover `[-B, B]` (`B` = `tail_bound`). Outside, the map is the identity with
//! log-derivative 0 (linear tails). Inside, knots `(X_k, Y_k)`, `k = 0..=K`, with
//! `X_0 = Y_0 = -B`, `X_K = Y_K = B`, and positive derivatives `D_k` at the knots, `D_0 = D_K = 1`
//! so that the map is C1 at `+-B`. In bin k, with `W_k = X_{k+1} - X_k`, `H_k = Y_{k+1} - Y_k`,
//! `s = H_k / W_k`, `theta = (x - X_k) / W_k` in `[0, 1]`, `tau = theta (1 - theta)`:
//!
//! ```text
//! den = s (1 - 2 tau) + (D_k + D_{k+1}) tau                         (> 0: a sum of positive terms)
//! y   = Y_k     + H_k (s theta^2 + D_k tau) / den                    (used for theta <= 1/2)
//!     = Y_{k+1} - H_k (s (1 - theta)^2 + D_{k+1} tau) / den          (the same value, for theta > 1/2)
//! dy/dx = s^2 (D_{k+1} theta^2 + 2 s tau + D_k (1 - theta)^2) / den^2
//! ```
//!
//! (`den` is the paper's `s + (D_k + D_{k+1} - 2 s) tau` rearranged so that no term cancels.) The
//! two forms of `y` make the value exact at both knots of a bin (`y(X_k) = Y_k`, and `Y_{k+1}` at
//! `theta = 1`), and `dy/dx` is `D_k` at `theta = 0` and `D_{k+1}` at `theta = 1`: the spline is
//! continuous and C1 at every knot. The log-derivative `2 ln s + ln(Q) - 2 ln(den)`, with `Q` the
//! bracket of `dy/dx`, is a log of positive sums as well.
//!
//! # Parameters
//!
//! Each transformed element has `3K - 1` unnormalized parameters, in this order:
//! `uw_0..uw_{K-1}` (widths), `uh_0..uh_{K-1}` (heights), `ud_1..ud_{K-1}` (interior derivatives):
//!
//! ```text
//! w = m_w + (1 - K m_w) softmax(uw),   X_k = -B + 2B (w_0 + ... + w_{k-1}),  X_K = B
//! h = m_h + (1 - K m_h) softmax(uh),   Y_k = -B + 2B (h_0 + ... + h_{k-1}),  Y_K = B
//! D_k = m_d + softplus(beta ud_k) / beta,   beta = ln 2 / (1 - m_d),   D_0 = D_K = 1
//! ```
//!
//! with `m_w`, `m_h`, `m_d` the minimum bin width and height (as fractions of `2B`) and the minimum
//! derivative. All parameters zero give equal bins and `D_k = 1`: the identity (a conditioner
//! whose last layer starts at zero starts the flow at the identity). This is nflows'
//! `unconstrained_rational_quadratic_spline` with `tails="linear"` and `enable_identity_init=True`.
//!
//! # Inverse: the root without cancellation, and no clamp of the discriminant
//!
//! Given `y` in bin k (`Y_k <= y < Y_{k+1}`), `eta = (y - Y_k) / H_k` lies in `[0, 1]` exactly in
//! floating point too: `y - Y_k >= 0`, and rounding is monotone, so `fl(y - Y_k) <= fl(H_k)`. The
//! bin's equation, divided by `H_k`, is `a theta^2 + b theta + c = 0` with
//!
//! ```text
//! b = D_k (1 - eta) + 2 s eta - D_{k+1} eta,   a = s - b,   c = -s eta
//! b^2 - 4ac = (D_k (1 - eta) - D_{k+1} eta)^2 + 4 s^2 eta (1 - eta)
//! ```
//!
//! The discriminant is evaluated in the second form: a square plus a product of non-negative
//! factors, so it is `>= 0` in floating point by construction and is never clamped. (The naive
//! `b^2 - 4ac` cancels catastrophically where `D_{k+1}` is small and `eta` is near 1; that is what
//! makes nflows' assertion fail, nflows issue #87 and pull request #71.) The root in `[0, 1]` is
//!
//! ```text
//! theta = 2 s eta / (b + sqrt(disc))            if b >= 0
//! theta = (sqrt(disc) - b) / (2 (s - b))        if b < 0
//! ```
//!
//! Both are sums of non-negative terms divided by positive ones. The usual advice
//! "`2c / (-b - sqrt(disc))`, never `(-b + sqrt(disc)) / 2a`" is cancellation-free only for
//! `b >= 0`: `b` is negative where `D_{k+1} > 2s` and `eta` is near 1, and there the first form
//! subtracts nearly equal numbers (the test `negative_b_root_is_accurate_in_f32` measures it).
//!
//! **Error bound.** `b` is a difference of the non-negative sums `P = D_k (1 - eta) + 2 s eta` and
//! `Q = D_{k+1} eta`, computed with absolute error at most `3 u (P + Q)` (`u` the unit
//! roundoff); every other operation adds a relative error of a few `u`. So the computed `theta`
//! has relative error at most `c u (1 + (P + Q) / (|b| + sqrt(disc)))` for a small constant `c`.
//! The ratio is large only in a bin that is nearly flat somewhere (tiny `s` between large
//! `D_k`, `D_{k+1}`): the inverse problem itself is then ill-conditioned, by
//! `max dy/dx / min dy/dx` over the bin, which the audit reports per bin
//! ([`Knots::bin_slopes`]). The exact root lies in `[0, 1]`; the computed one is clamped to
//! `[0, 1]`, which can only move it closer to the exact root. `x = X_k + theta W_k` (or
//! `X_{k+1} - (1 - theta) W_k` for `theta > 1/2`), and the inverse log-derivative is minus the
//! forward one at `theta`.
//!
//! # Out of the domain
//!
//! An input with `x <= -B` or `x >= B` (or, inverting, `y`) takes the tail branch alone: the
//! spline's formulas are never evaluated for it, so no NaN or infinity can arise there and reach
//! an output or a gradient (flowjax issue #239, bayesflow issue #721, where `where`-style
//! selection evaluated both branches). At exactly `+-B` both branches agree (value `+-B`, slope 1).
//!
//! # Backward
//!
//! [`Knots::backward`] returns `dL/dx` and writes `dL/d(unnormalized parameters)` for
//! `L = dy * y + dld * log(dy/dx)`, by the chain rule through `theta`, `s`, `H_k`, `Y_k`, `X_k`,
//! `W_k`, `D_k`, `D_{k+1}`, the cumulative sums, the softmaxes and the softpluses. For inputs in
//! the tails, `dL/dx = dy` and the parameter gradient is zero.
//! [`Knots::inverse_backward`] does the same for the inverse map, by the implicit function
//! theorem on two forward backward passes.

use exactflow_kernels::{Error, Real, Result};
use serde::{Deserialize, Serialize};

/// Largest number of bins a spline may have (a guard against absurd configurations: every
/// transformed element carries `3K - 1` parameters).
pub const MAX_BINS: usize = 4096;

/// Smallest allowed minimum bin width, bin height and derivative. With `m >= 1e-6`, more than 8
/// times f32's unit roundoff, consecutive knots stay strictly increasing in f32 and f64 whatever
/// the number of bins (each step of the cumulative sum adds at least `m`), so no bin ever has a
/// zero width or height.
pub const SMALLEST_MINIMUM: f64 = 1e-6;

/// The shape of a rational-quadratic spline: `bins` bins on `[-tail_bound, tail_bound]`, linear
/// (identity) tails, and the minimum bin width, height and derivative.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplineConfig {
    /// Number of bins K (at least 1).
    pub bins: usize,
    /// B: the spline acts on `[-B, B]` (positive, finite).
    pub tail_bound: f64,
    /// Minimum bin width `m_w`, a fraction of `2B`: `K m_w <= 1`.
    pub min_bin_width: f64,
    /// Minimum bin height `m_h`, a fraction of `2B`: `K m_h <= 1`.
    pub min_bin_height: f64,
    /// Minimum derivative `m_d` at the interior knots, in `[1e-6, 1)`.
    pub min_derivative: f64,
}

impl SplineConfig {
    /// `bins` bins on `[-tail_bound, tail_bound]` with nflows' minima (1e-3 each).
    ///
    /// # Errors
    /// As [`SplineConfig::validate`].
    pub fn new(bins: usize, tail_bound: f64) -> Result<Self> {
        let c = SplineConfig {
            bins,
            tail_bound,
            min_bin_width: 1e-3,
            min_bin_height: 1e-3,
            min_derivative: 1e-3,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the setting: zero bins or more than [`MAX_BINS`], a tail
    /// bound that is not positive and finite, a minimum below [`SMALLEST_MINIMUM`], minimum widths
    /// or heights that cannot fit `K` bins (`K m > 1`), a minimum derivative of 1 or more.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &'static str, reason: String| Err(Error::invalid("SplineConfig", what, reason));
        if self.bins == 0 || self.bins > MAX_BINS {
            return bad("bins", format!("must be in 1..={MAX_BINS}, found {}", self.bins));
        }
        if !(self.tail_bound.is_finite() && self.tail_bound > 0.0) {
            return bad(
                "tail_bound",
                format!("must be positive and finite, found {}", self.tail_bound),
            );
        }
        let k = self.bins as f64;
        for (what, m) in [
            ("min_bin_width", self.min_bin_width),
            ("min_bin_height", self.min_bin_height),
        ] {
            if !(m >= SMALLEST_MINIMUM && m * k <= 1.0) {
                return bad(
                    what,
                    format!(
                        "must be at least {SMALLEST_MINIMUM:e} and at most 1 / bins = {}, found {m}",
                        1.0 / k
                    ),
                );
            }
        }
        let md = self.min_derivative;
        if !(SMALLEST_MINIMUM..1.0).contains(&md) {
            return bad(
                "min_derivative",
                format!("must be in [{SMALLEST_MINIMUM:e}, 1), found {md}"),
            );
        }
        Ok(())
    }

    /// Unnormalized parameters per transformed element: `3K - 1`.
    pub fn params_per_element(&self) -> usize {
        3 * self.bins - 1
    }
}

/// A validated spline shape with its constants in the scalar type `T`, and the factory of
/// [`Knots`].
#[derive(Clone, Copy, Debug)]
pub struct RqSpline<T> {
    cfg: SplineConfig,
    bound: T,
    two_b: T,
    min_w: T,
    free_w: T,
    min_h: T,
    free_h: T,
    min_d: T,
    beta: T,
}

impl<T: Real> RqSpline<T> {
    /// The spline of a configuration.
    ///
    /// # Errors
    /// As [`SplineConfig::validate`].
    pub fn new(cfg: SplineConfig) -> Result<Self> {
        cfg.validate()?;
        let k = cfg.bins as f64;
        Ok(RqSpline {
            cfg,
            bound: T::lit(cfg.tail_bound),
            two_b: T::lit(2.0 * cfg.tail_bound),
            min_w: T::lit(cfg.min_bin_width),
            free_w: T::lit(1.0 - k * cfg.min_bin_width),
            min_h: T::lit(cfg.min_bin_height),
            free_h: T::lit(1.0 - k * cfg.min_bin_height),
            min_d: T::lit(cfg.min_derivative),
            beta: T::lit(std::f64::consts::LN_2 / (1.0 - cfg.min_derivative)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> SplineConfig {
        self.cfg
    }

    /// The tail bound B.
    pub fn bound(&self) -> T {
        self.bound
    }

    /// Whether `v` is strictly inside `(-B, B)`, where the spline branch applies.
    #[inline]
    pub fn inside(&self, v: T) -> bool {
        v > -self.bound && v < self.bound
    }

    /// Scratch knots for this spline (set them from parameters with [`Knots::set`]).
    pub fn knots(&self) -> Knots<T> {
        let k = self.cfg.bins;
        Knots {
            sp: *self,
            xs: vec![T::zero(); k + 1],
            ys: vec![T::zero(); k + 1],
            ds: vec![T::one(); k + 1],
            pw: vec![T::zero(); k],
            ph: vec![T::zero(); k],
            sig: vec![T::zero(); k + 1],
        }
    }

    /// The same spline in another scalar type.
    pub fn cast<U: Real>(&self) -> RqSpline<U> {
        // invariant: the configuration was validated when `self` was built.
        RqSpline::new(self.cfg).unwrap_or_else(|_| unreachable!("a validated config stays valid"))
    }
}

/// `softmax(u)` into `p`, stabilized by the largest entry.
///
/// The shift is the largest entry's value as a constant (`lit(as_f64)`): softmax is exactly
/// invariant to any shift, so it need not be an entry of `u`, and choosing it compares plain
/// numbers. On intervals this matters: comparing two overlapping intervals is undecidable, and
/// the result does not depend on the answer. For f32 and f64 the shift is the same number as
/// before (`as_f64`/`lit` round-trip exactly).
fn softmax<T: Real>(u: &[T], p: &mut [T]) {
    let m = T::lit(u.iter().map(|v| v.as_f64()).fold(f64::NEG_INFINITY, f64::max));
    for (pi, &ui) in p.iter_mut().zip(u) {
        *pi = ui - m;
    }
    // f32 takes the SIMD exp here (the bins' exps were a fifth of a spline flow's samples);
    // f64 and intervals keep their own exp.
    T::exp_f32_fast_kernel(p);
    let mut sum = T::zero();
    for &pi in p.iter() {
        sum += pi;
    }
    p.iter_mut().for_each(|v| *v /= sum);
}

/// `(softplus(t), sigmoid(t))` = `(ln(1 + e^t), 1 / (1 + e^-t))` without overflow:
/// `max(t, 0) + ln_1p(e^-|t|)`, and `1 / (1 + e^-t)` for `t >= 0`, `e^t / (1 + e^t)` otherwise.
/// The sigmoid's two forms are the same function, so the branch is chosen on the plain value (see
/// [`softmax`] for why that matters on intervals).
///
/// For a float the sigmoid's exp argument (`-t` for `t >= 0`, `t` otherwise) is `-|t|`, the
/// softplus's, so one exp serves both (the exponentials were a fifth of a spline flow's samples
/// in a profile, BENCHMARKS.md), with the bits of the two functions computed apart (tested).
/// An enclosure takes its own: an interval that straddles 0 has another `-t` than `-|t|`, and
/// `1 / (1 + e^-|t|)` does not enclose the sigmoid on its negative part. So does `t = 0`, where
/// a dual number's `|t|` has another derivative than `t` or `-t`.
fn softplus_and_sigmoid<T: Real>(t: T) -> (T, T) {
    let e = (-t.abs()).exp();
    let soft = t.max(T::zero()) + e.ln_1p();
    let shared = !T::ENCLOSURE && t.as_f64() != 0.0;
    let sig = if t.as_f64() >= 0.0 {
        let en = if shared { e } else { (-t).exp() };
        T::one() / (T::one() + en)
    } else {
        let ep = if shared { e } else { t.exp() };
        ep / (T::one() + ep)
    };
    (soft, sig)
}

/// Knots `(X_k, Y_k, D_k)` of one element's spline, computed from its `3K - 1` unnormalized
/// parameters by [`Knots::set`], and the map, its inverse and their backward passes at those
/// knots. A `Knots` is scratch space: a layer keeps one and re-sets it for every element.
#[derive(Clone, Debug)]
pub struct Knots<T> {
    sp: RqSpline<T>,
    xs: Vec<T>,
    ys: Vec<T>,
    ds: Vec<T>,
    /// softmax(uw) and softmax(uh), for the backward.
    pw: Vec<T>,
    ph: Vec<T>,
    /// `dD_k / d ud_k = sigmoid(beta ud_k)` at the interior knots (0 at the ends).
    sig: Vec<T>,
}

/// The quantities of bin k at `theta` that the map, its log-derivative and its backward share.
struct Local<T> {
    k: usize,
    h: T,
    s: T,
    theta: T,
    tau: T,
    den: T,
    /// `D_{k+1} theta^2 + 2 s tau + D_k (1 - theta)^2`.
    q: T,
}

/// Per-bin statistics of splines at the inputs they saw (the audit's "per-bin conditioning").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BinStats {
    /// The bin index k (`0..K`).
    pub bin: usize,
    /// How many audited inputs fell in this bin.
    pub inputs: usize,
    /// The smallest width of this bin over the audited splines, as a fraction of `2B`
    /// (`min_bin_width` is the floor).
    pub min_width: f64,
    /// The smallest height, as a fraction of `2B`.
    pub min_height: f64,
    /// The smallest slope `dy/dx` found in the bin (over a grid of 33 points per spline).
    pub slope_min: f64,
    /// The largest slope found in the bin.
    pub slope_max: f64,
    /// `slope_max / slope_min` of the worst spline: the bin's conditioning (how unevenly it
    /// stretches; the inverse's rounding error grows with it, see the module documentation).
    pub cond: f64,
    /// The largest `|inverse(forward(x)) - x| / (2B)` over the audited inputs in this bin.
    pub round_trip: f64,
}

impl BinStats {
    fn new(bin: usize) -> Self {
        BinStats {
            bin,
            inputs: 0,
            min_width: f64::INFINITY,
            min_height: f64::INFINITY,
            slope_min: f64::INFINITY,
            slope_max: 0.0,
            cond: 1.0,
            round_trip: 0.0,
        }
    }

    /// Empty statistics for `bins` bins.
    pub fn for_bins(bins: usize) -> Vec<BinStats> {
        (0..bins).map(BinStats::new).collect()
    }
}

/// Points per bin at which [`Knots::bin_slopes`] evaluates the slope.
const SLOPE_GRID: usize = 33;

impl<T: Real> Knots<T> {
    /// The spline these knots belong to.
    pub fn spline(&self) -> &RqSpline<T> {
        &self.sp
    }

    /// The knot abscissae `X_0..=X_K`.
    pub fn xs(&self) -> &[T] {
        &self.xs
    }

    /// The knot ordinates `Y_0..=Y_K`.
    pub fn ys(&self) -> &[T] {
        &self.ys
    }

    /// The knot derivatives `D_0..=D_K` (`D_0 = D_K = 1`).
    pub fn ds(&self) -> &[T] {
        &self.ds
    }

    /// Sets the knots from one element's `3K - 1` unnormalized parameters `[uw | uh | ud]` (see
    /// the module documentation).
    ///
    /// # Panics
    /// When `raw` does not have `3K - 1` entries (a broken layer invariant).
    pub fn set(&mut self, raw: &[T]) {
        let k = self.sp.cfg.bins;
        assert_eq!(raw.len(), 3 * k - 1, "invariant: 3K - 1 spline parameters per element");
        let sp = self.sp;
        softmax(&raw[..k], &mut self.pw);
        softmax(&raw[k..2 * k], &mut self.ph);
        let cum = |p: &[T], min: T, free: T, out: &mut [T]| {
            let mut c = T::zero();
            out[0] = -sp.bound;
            for (j, &pj) in p.iter().enumerate().take(k - 1) {
                c += min + free * pj;
                out[j + 1] = -sp.bound + sp.two_b * c;
            }
            out[k] = sp.bound;
        };
        cum(&self.pw, sp.min_w, sp.free_w, &mut self.xs);
        cum(&self.ph, sp.min_h, sp.free_h, &mut self.ys);
        for i in 1..k {
            let u = sp.beta * raw[2 * k + i - 1];
            let (soft, sig) = softplus_and_sigmoid(u);
            self.ds[i] = sp.min_d + soft / sp.beta;
            self.sig[i] = sig;
        }
    }

    /// The bin `k` with `knots[k] <= v < knots[k + 1]`, for `v` inside `(-B, B)`.
    fn bin(knots: &[T], v: T) -> usize {
        let k = knots.len() - 1;
        knots[1..k].partition_point(|&t| t <= v)
    }

    fn local(&self, k: usize, theta: T) -> Local<T> {
        let w = self.xs[k + 1] - self.xs[k];
        let h = self.ys[k + 1] - self.ys[k];
        let s = h / w;
        let one = T::one();
        let two = T::lit(2.0);
        let tau = theta * (one - theta);
        let (dk, dk1) = (self.ds[k], self.ds[k + 1]);
        let den = s * (one - two * tau) + (dk + dk1) * tau;
        let om = one - theta;
        let q = dk1 * theta * theta + two * s * tau + dk * om * om;
        Local {
            k,
            h,
            s,
            theta,
            tau,
            den,
            q,
        }
    }

    /// `ln(dy/dx) = 2 ln s + ln q - 2 ln den`.
    fn log_slope(l: &Local<T>) -> T {
        let two = T::lit(2.0);
        two * l.s.ln() + l.q.ln() - two * l.den.ln()
    }

    /// `y` at `theta` in bin k, from the nearer knot. Both forms are the same function of
    /// `theta`, so the choice (on the plain value, decidable on intervals too) only affects
    /// rounding.
    fn value(&self, l: &Local<T>) -> T {
        let (dk, dk1) = (self.ds[l.k], self.ds[l.k + 1]);
        if l.theta.as_f64() <= 0.5 {
            self.ys[l.k] + l.h * (l.s * l.theta * l.theta + dk * l.tau) / l.den
        } else {
            let om = T::one() - l.theta;
            self.ys[l.k + 1] - l.h * (l.s * om * om + dk1 * l.tau) / l.den
        }
    }

    /// `(y, ln dy/dx)` at `x`: the spline inside `(-B, B)`, `(x, 0)` outside.
    pub fn forward(&self, x: T) -> (T, T) {
        if !self.sp.inside(x) {
            return (x, T::zero());
        }
        let k = Self::bin(&self.xs, x);
        let w = self.xs[k + 1] - self.xs[k];
        let l = self.local(k, (x - self.xs[k]) / w);
        (self.value(&l), Self::log_slope(&l))
    }

    /// The value of bin `k`'s rational quadratic at `theta` in `[0, 1]` and its slope `dy/dx`
    /// (for checks at and across the knots).
    pub fn bin_value_and_slope(&self, k: usize, theta: T) -> (T, T) {
        let l = self.local(k, theta);
        (self.value(&l), Self::log_slope(&l).exp())
    }

    /// `(x, ln dx/dy)` at `y`: the inverse of [`Knots::forward`] (see the module documentation
    /// for the root and its error bound).
    pub fn inverse(&self, y: T) -> (T, T) {
        if !self.sp.inside(y) {
            return (y, T::zero());
        }
        let k = Self::bin(&self.ys, y);
        let (one, two) = (T::one(), T::lit(2.0));
        let h = self.ys[k + 1] - self.ys[k];
        let w = self.xs[k + 1] - self.xs[k];
        let s = h / w;
        let eta = (y - self.ys[k]) / h;
        let (dk, dk1) = (self.ds[k], self.ds[k + 1]);
        let b = dk * (one - eta) + two * s * eta - dk1 * eta;
        let r = dk * (one - eta) - dk1 * eta;
        let disc = r * r + T::lit(4.0) * s * s * eta * (one - eta);
        let root = disc.sqrt();
        // Both forms are the same root (one is the other rationalized), so the branch is chosen
        // on plain values, as in `value`, and stays decidable on intervals.
        let theta = if b.as_f64() >= 0.0 {
            two * s * eta / (b + root)
        } else {
            (root - b) / (two * (s - b))
        };
        let theta = theta.max(T::zero()).min(one);
        let x = if theta.as_f64() <= 0.5 {
            self.xs[k] + theta * w
        } else {
            self.xs[k + 1] - (one - theta) * w
        };
        let l = self.local(k, theta);
        (x, -Self::log_slope(&l))
    }

    /// Backward of [`Knots::forward`] at `x`: for `L = dy * y + dld * ln(dy/dx)`, writes
    /// `dL/d(unnormalized parameters)` into `draw` (`3K - 1` entries, overwritten; all zero for an
    /// input in the tails) and returns `dL/dx`.
    ///
    /// # Panics
    /// When `draw` does not have `3K - 1` entries.
    pub fn backward(&self, x: T, dy: T, dld: T, draw: &mut [T]) -> T {
        let kb = self.sp.cfg.bins;
        assert_eq!(
            draw.len(),
            3 * kb - 1,
            "invariant: 3K - 1 spline parameters per element"
        );
        draw.iter_mut().for_each(|v| *v = T::zero());
        if !self.sp.inside(x) {
            return dy;
        }
        let k = Self::bin(&self.xs, x);
        let w = self.xs[k + 1] - self.xs[k];
        let l = self.local(k, (x - self.xs[k]) / w);
        let (one, two) = (T::one(), T::lit(2.0));
        let (dk, dk1) = (self.ds[k], self.ds[k + 1]);
        let Local {
            h,
            s,
            theta,
            tau,
            den,
            q,
            ..
        } = l;
        let om = one - theta;
        let den2 = den * den;
        let n1 = s * theta * theta + dk * tau;
        // den - n1 = s (1 - theta)^2 + D_{k+1} tau, a sum of positive terms.
        let n2 = s * om * om + dk1 * tau;
        let one_m2tau = one - two * tau;
        // Partial derivatives of y and of l = ln(dy/dx).
        let dy_dtheta = h * s * q / den2;
        let dy_ds = h * (theta * theta * den - n1 * one_m2tau) / den2;
        let dy_dh = n1 / den;
        let dy_ddk = h * tau * n2 / den2;
        let dy_ddk1 = -h * n1 * tau / den2;
        let q_theta = two * dk1 * theta + two * s * (one - two * theta) - two * dk * om;
        let den_theta = (dk + dk1 - two * s) * (one - two * theta);
        let dl_dtheta = q_theta / q - two * den_theta / den;
        let dl_ds = two / s + two * tau / q - two * one_m2tau / den;
        let dl_ddk = om * om / q - two * tau / den;
        let dl_ddk1 = theta * theta / q - two * tau / den;
        // Through theta = (x - X_k) / W_k and s = H_k / W_k.
        let tb = dy * dy_dtheta + dld * dl_dtheta;
        let sb = dy * dy_ds + dld * dl_ds;
        let hb = dy * dy_dh + sb / w;
        let wb = -(tb * theta + sb * s) / w;
        let xkb = -tb / w;
        let ykb = dy;
        // X_k = -B + 2B sum_{j<k} w_j and W_k = 2B w_k (likewise Y_k, H_k), then the softmax.
        let two_b = self.sp.two_b;
        let frac_grad = |p: &[T], free: T, below: T, at: T, out: &mut [T]| {
            let g = |j: usize| {
                two_b
                    * (if j < k {
                        below
                    } else if j == k {
                        at
                    } else {
                        T::zero()
                    })
            };
            let dot = p.iter().enumerate().fold(T::zero(), |acc, (j, &pj)| acc + pj * g(j));
            for (j, o) in out.iter_mut().enumerate() {
                *o = free * p[j] * (g(j) - dot);
            }
        };
        frac_grad(&self.pw, self.sp.free_w, xkb, wb, &mut draw[..kb]);
        frac_grad(&self.ph, self.sp.free_h, ykb, hb, &mut draw[kb..2 * kb]);
        // D_i = m_d + softplus(beta ud_i) / beta for the interior knots 1..K-1.
        if k >= 1 {
            draw[2 * kb + k - 1] += (dy * dy_ddk + dld * dl_ddk) * self.sig[k];
        }
        if k + 1 < kb {
            draw[2 * kb + k] += (dy * dy_ddk1 + dld * dl_ddk1) * self.sig[k + 1];
        }
        tb / w
    }

    /// Backward of [`Knots::inverse`] at `y`: for `L = dx * x + dld * ln(dx/dy)` with
    /// `x = inverse(y)`, writes `dL/d(unnormalized parameters)` into `draw` and returns `dL/dy`.
    ///
    /// With `f` the forward map, `f(x) = y` gives `dx/dy = 1 / f'(x)` and
    /// `dx/dp = -f_p / f'(x)`, and `ln(dx/dy) = -ln f'(x)`. So with `a = dx - dld d(ln f')/dx`,
    /// `dL/dy = a / f'(x)` and `dL/dp` is the forward backward's parameter gradient for
    /// `(dy, dld) = (-a / f'(x), -dld)`. Inputs in the tails give `dL/dy = dx` and zero.
    ///
    /// # Panics
    /// When `draw` does not have `3K - 1` entries.
    pub fn inverse_backward(&self, y: T, dx: T, dld: T, draw: &mut [T]) -> T {
        if !self.sp.inside(y) {
            draw.iter_mut().for_each(|v| *v = T::zero());
            return dx;
        }
        let (x, ld_inv) = self.inverse(y);
        let slope = (-ld_inv).exp();
        let dlog_slope_dx = self.backward(x, T::zero(), T::one(), draw);
        let g = (dx - dld * dlog_slope_dx) / slope;
        self.backward(x, -g, -dld, draw);
        g
    }

    /// The slopes of every bin on a grid of 33 points (`theta = j / 32`): `(min, max)` per bin.
    pub fn bin_slopes(&self) -> Vec<(f64, f64)> {
        (0..self.sp.cfg.bins)
            .map(|k| {
                (0..SLOPE_GRID).fold((f64::INFINITY, 0.0f64), |(lo, hi), j| {
                    let theta = T::lit(j as f64 / (SLOPE_GRID - 1) as f64);
                    let v = Self::log_slope(&self.local(k, theta)).exp().as_f64();
                    (lo.min(v), hi.max(v))
                })
            })
            .collect()
    }

    /// Adds these knots and one input `x` to per-bin statistics (see [`BinStats`]). Inputs in
    /// the tails are not counted in any bin.
    pub fn accumulate_stats(&self, x: T, stats: &mut [BinStats]) {
        let two_b = self.sp.two_b.as_f64();
        for (k, ((lo, hi), st)) in self.bin_slopes().into_iter().zip(stats.iter_mut()).enumerate() {
            st.min_width = st.min_width.min((self.xs[k + 1] - self.xs[k]).as_f64() / two_b);
            st.min_height = st.min_height.min((self.ys[k + 1] - self.ys[k]).as_f64() / two_b);
            st.slope_min = st.slope_min.min(lo);
            st.slope_max = st.slope_max.max(hi);
            let c = if lo > 0.0 { hi / lo } else { f64::INFINITY };
            st.cond = if c.is_nan() { f64::INFINITY } else { st.cond.max(c) };
        }
        if self.sp.inside(x) {
            let k = Self::bin(&self.xs, x);
            let (y, _) = self.forward(x);
            let (back, _) = self.inverse(y);
            let e = ((back - x).as_f64() / two_b).abs();
            let st = &mut stats[k];
            st.inputs += 1;
            st.round_trip = st.round_trip.max(if e.is_nan() { f64::INFINITY } else { e });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ln(1 + e^t)`, as `Knots::set` computed it before the exps were shared.
    fn softplus<T: Real>(t: T) -> T {
        t.max(T::zero()) + (-t.abs()).exp().ln_1p()
    }

    /// `1 / (1 + e^-t)`, as `Knots::set` computed it before the exps were shared.
    fn sigmoid<T: Real>(t: T) -> T {
        if t.as_f64() >= 0.0 {
            T::one() / (T::one() + (-t).exp())
        } else {
            let e = t.exp();
            e / (T::one() + e)
        }
    }

    /// The shared exponential gives the bits of [`softplus`] and [`sigmoid`] called apart, on f64
    /// and f32 (signed zeros, subnormals, the overflow and underflow ranges of exp, infinities,
    /// NaN), and on intervals: one straddling 0 gives the enclosures of the two functions called
    /// apart (the shared `e^-|t|` would not enclose `sigmoid` on its negative part), and both
    /// enclose the functions at points inside it.
    #[test]
    fn softplus_and_sigmoid_share_an_exp_with_the_bits_of_each() {
        let mut points = vec![0.0, -0.0, 1e-300, -1e-300, 5e-324, 0.5, -0.5, 1.0, -1.0, 3.7, -3.7];
        points.extend([20.0, -20.0, 88.0, -88.0, 104.0, -104.0, 709.0, -709.0, 746.0, -746.0]);
        points.extend([f64::MAX, -f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
        points.extend((0..2000).map(|i| (i as f64 - 1000.0) * 0.0173));
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for &t in &points {
            let (soft, sig) = softplus_and_sigmoid(t);
            assert!(same(soft, softplus(t)) && same(sig, sigmoid(t)), "f64 {t}");
            let t32 = t as f32;
            let (soft, sig) = softplus_and_sigmoid(t32);
            assert!(
                same(soft.into(), softplus(t32).into()) && same(sig.into(), sigmoid(t32).into()),
                "f32 {t32}"
            );
        }
        for (lo, hi) in [(-0.75, 0.5), (-2.0, 3.0), (0.25, 1.5), (-1.5, -0.25), (-1e-3, 0.0)] {
            let t = exactflow_kernels::Interval::new(lo, hi).expect("interval");
            let (soft, sig) = softplus_and_sigmoid(t);
            let (soft_apart, sig_apart) = (softplus(t), sigmoid(t));
            assert_eq!(
                (soft.lo(), soft.hi()),
                (soft_apart.lo(), soft_apart.hi()),
                "[{lo}, {hi}]"
            );
            assert_eq!((sig.lo(), sig.hi()), (sig_apart.lo(), sig_apart.hi()), "[{lo}, {hi}]");
            for k in 0..=20 {
                let x = lo + (hi - lo) * k as f64 / 20.0;
                assert!(
                    soft.contains(softplus(x)) && sig.contains(sigmoid(x)),
                    "{x} in [{lo}, {hi}]"
                );
            }
        }
    }

    fn spline(bins: usize, b: f64) -> RqSpline<f64> {
        RqSpline::new(SplineConfig::new(bins, b).unwrap()).unwrap()
    }

    #[test]
    fn zero_parameters_are_the_identity() {
        let sp = spline(8, 3.0);
        let mut kn = sp.knots();
        kn.set(&[0.0; 23]);
        for x in [-2.99, -1.0, 0.0, 0.3, 2.5] {
            let (y, ld) = kn.forward(x);
            assert!((y - x).abs() < 1e-14 && ld.abs() < 1e-14, "{x} -> {y}, {ld}");
        }
        assert!(kn.ds().iter().all(|d| (d - 1.0).abs() < 1e-15));
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(SplineConfig::new(0, 3.0).is_err());
        assert!(SplineConfig::new(8, 0.0).is_err());
        assert!(SplineConfig::new(8, -1.0).is_err());
        assert!(SplineConfig::new(8, f64::NAN).is_err());
        assert!(SplineConfig::new(8, f64::INFINITY).is_err());
        assert!(SplineConfig::new(MAX_BINS + 1, 3.0).is_err());
        let mut c = SplineConfig::new(8, 3.0).unwrap();
        c.min_bin_width = 0.2;
        assert!(c.validate().is_err(), "8 bins of width 0.2 do not fit");
        c.min_bin_width = 0.125;
        assert!(c.validate().is_ok(), "8 bins all at the minimum width 1/8 fit exactly");
        c.min_derivative = 1.0;
        assert!(c.validate().is_err());
        c.min_derivative = 0.0;
        assert!(c.validate().is_err());
    }
}
