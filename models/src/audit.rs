//! The numerical audit of a flow: for a batch of inputs, per layer and for the whole flow, how
//! far each computed quantity is from its reference.
//!
//! For every invertible layer of the flow, at the inputs that layer actually sees, the audit
//! measures:
//!
//! - **invertibility**: `inverse(forward(h))` against `h`, max and mean, absolute and relative
//!   (to `max |h|`), in the model's precision and again with the layer recomputed in f64;
//! - **log-det**: the layer's log-det against `log|det J|` of the exact Jacobian (forward-mode
//!   dual numbers running the layer's own code, see [`exactflow_layers::jacobian`]), in f64 and in
//!   the model's precision, and against the central-difference Jacobian;
//! - **conditioning**: the 1-norm condition number `||J||_1 ||J^-1||_1` of each sample's exact
//!   Jacobian (min and max over the batch);
//! - **gradients**: the worst mixed error of the hand-written backward pass against central
//!   differences ([`exactflow_layers::gradcheck::grad_check`], f64);
//!
//! and gives a verdict against [`Tolerances`]. The whole flow gets the same invertibility and
//! log-det checks on the map `x -> (z, factored latents)`. Split stages only move coordinates
//! (their log-det is 0); they get the invertibility check. Everything serializes to JSON.
//!
//! **Splines, per bin.** A layer of rational-quadratic splines (coupling or autoregressive)
//! also reports, for each bin k, statistics over every spline it evaluated at the audited batch
//! ([`exactflow_layers::BinStats`]): how many inputs fell in the bin, its smallest width and
//! height (the floor is the configured minimum), the smallest and largest slope in the bin and
//! their ratio, the bin's conditioning (the inverse's rounding error grows with it, see
//! [`exactflow_layers::spline`]), and the worst in-bin round trip. A bin fails when its slopes
//! are not finite and positive, or its round trip exceeds the model-precision tolerance.

use exactflow_kernels::{Lu, Matrix, Real};
use exactflow_layers::gradcheck::grad_check;
use exactflow_layers::jacobian::{forward_jacobian_exact, forward_jacobian_fd, jacobian_dual, jacobian_fd, log_dets};
use exactflow_layers::{Bijector, BinStats, Ctx, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::flow::Flow;

/// The thresholds of the verdicts, and why they are what they are.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerances {
    /// Round trip `inverse(forward(h))` in f64, relative to `max |h|`: 1e-9. One layer costs
    /// O(10) roundings at eps = 2.2e-16 amplified by its condition number; 1e-9 leaves a factor
    /// of about 1e5 for trained layers whose scales reach e^5.
    pub inverse_rel_f64: f64,
    /// The same in the model's precision: 1e-9 for f64 models, 1e-3 for f32 models (eps =
    /// 1.2e-7 and the same amplification).
    pub inverse_rel_model: f64,
    /// Log-det against the exact Jacobian's, f64: `|error| <= 1e-8 * (1 + |log-det|)`. Both are
    /// exact up to rounding; the LU of a D x D Jacobian adds O(D eps cond).
    pub logdet_exact: f64,
    /// Log-det against the central-difference Jacobian (step [`FD_STEP`]): `1e-4 * (1 + |log-det|)`.
    /// Truncation O(h^2 f''') and rounding O(eps / h) per entry, summed through the determinant.
    pub logdet_fd: f64,
    /// Worst mixed gradient error `|a - n| / max(1, |a|, |n|)` at step [`GRAD_STEP`]: 1e-5
    /// (central differences are O(h^2) = 1e-10 accurate on smooth maps; ReLU kinks are retried
    /// at smaller steps by the gradient check).
    pub grad: f64,
}

/// Step of the central-difference Jacobian.
pub const FD_STEP: f64 = 1e-6;
/// Step of the gradient check.
pub const GRAD_STEP: f64 = 1e-5;
/// Entries checked per parameter tensor by the gradient check (evenly spaced).
pub const GRAD_ENTRIES: usize = 8;

impl Tolerances {
    /// The documented tolerances for a model of precision `T`.
    pub fn for_precision<T: Real>() -> Self {
        Tolerances {
            inverse_rel_f64: 1e-9,
            inverse_rel_model: if T::NAME == "f32" { 1e-3 } else { 1e-9 },
            logdet_exact: 1e-8,
            logdet_fd: 1e-4,
            grad: 1e-5,
        }
    }
}

/// Max and mean of an error, absolute and relative (to the largest magnitude of the reference).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ErrorStats {
    /// Largest absolute error.
    pub max_abs: f64,
    /// Mean absolute error.
    pub mean_abs: f64,
    /// Largest absolute error over `max |reference|` (or 1 if the reference is all zero).
    pub max_rel: f64,
    /// Mean absolute error over `max |reference|`.
    pub mean_rel: f64,
}

impl ErrorStats {
    /// The errors of `got` against `want` (same length).
    pub fn between(got: &[f64], want: &[f64]) -> Self {
        let n = got.len().max(1) as f64;
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale = if scale > 0.0 { scale } else { 1.0 };
        let (mut max, mut sum) = (0.0f64, 0.0);
        for (a, b) in got.iter().zip(want) {
            let e = (a - b).abs();
            // NaN propagates as +inf so that it can never look like a pass.
            let e = if e.is_nan() { f64::INFINITY } else { e };
            max = max.max(e);
            sum += e;
        }
        ErrorStats {
            max_abs: max,
            mean_abs: sum / n,
            max_rel: max / scale,
            mean_rel: sum / n / scale,
        }
    }
}

/// The audit of one stage (or of the whole flow).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageAudit {
    /// Stable name (`flow.{i}`, or `flow` for the whole flow).
    pub name: String,
    /// Layer type.
    pub kind: String,
    /// Round trip in the model's precision.
    pub inverse: ErrorStats,
    /// Round trip recomputed in f64.
    pub inverse_f64: ErrorStats,
    /// Largest `|log-det - exact|` in f64 (None for splits).
    pub logdet_exact_error: Option<f64>,
    /// Largest `|log-det - exact|` in the model's precision.
    pub logdet_exact_error_model: Option<f64>,
    /// Largest `|log-det - finite-difference log-det|`, f64.
    pub logdet_fd_error: Option<f64>,
    /// Largest `|log-det|` seen (the scale of the relative tolerances).
    pub logdet_scale: Option<f64>,
    /// Smallest 1-norm condition number of the per-sample Jacobians.
    pub cond_min: Option<f64>,
    /// Largest 1-norm condition number.
    pub cond_max: Option<f64>,
    /// Worst mixed error of the backward pass and the entry it was found at.
    pub grad_error: Option<f64>,
    /// Where the worst gradient error is ("input" or a parameter name).
    pub grad_worst: Option<String>,
    /// Per-bin statistics of a spline layer (`None` for other stages).
    pub bins: Option<Vec<BinStats>>,
    /// Whether every check is within its tolerance.
    pub pass: bool,
    /// The checks that failed, in words.
    pub failures: Vec<String>,
}

/// The audit of a flow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowAudit {
    /// The model's precision ("f32" or "f64").
    pub precision: String,
    /// Samples audited.
    pub samples: usize,
    /// The thresholds used.
    pub tolerances: Tolerances,
    /// One entry per stage, in forward order.
    pub stages: Vec<StageAudit>,
    /// The whole flow `x -> (z, factored latents)`.
    pub flow: StageAudit,
    /// Whether every stage and the whole flow pass.
    pub pass: bool,
}

fn to_f64s<T: Real>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.as_f64()).collect()
}

/// `||J||_1 ||J^-1||_1` of each matrix (+inf when singular).
fn conditions(jacs: &[Matrix<f64>]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = 0.0f64;
    for j in jacs {
        let c = Lu::factor(j)
            .and_then(|lu| lu.inverse())
            .map(|inv| j.norm_1() * inv.norm_1())
            .unwrap_or(f64::INFINITY);
        let c = if c.is_nan() { f64::INFINITY } else { c };
        lo = lo.min(c);
        hi = hi.max(c);
    }
    (lo, hi)
}

/// Log-det errors against the exact and finite-difference Jacobians, and the scale.
struct LogDetChecks {
    exact: f64,
    exact_model: f64,
    fd: f64,
    scale: f64,
    cond: (f64, f64),
}

fn logdet_checks(ld64: &[f64], ld_model: &[f64], exact: &[Matrix<f64>], fd: &[Matrix<f64>]) -> Result<LogDetChecks> {
    let ex = log_dets(exact)?;
    let fdl = log_dets(fd)?;
    let err = |a: &[f64], b: &[f64]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .map(|e| if e.is_nan() { f64::INFINITY } else { e })
            .fold(0.0, f64::max)
    };
    let exv: Vec<f64> = ex.iter().map(|l| l.log_abs).collect();
    let fdv: Vec<f64> = fdl.iter().map(|l| l.log_abs).collect();
    Ok(LogDetChecks {
        exact: err(ld64, &exv),
        exact_model: err(ld_model, &exv),
        fd: err(ld64, &fdv),
        scale: exv.iter().fold(0.0f64, |m, v| m.max(v.abs())),
        cond: conditions(exact),
    })
}

/// `value > bound`, with NaN counting as exceeding (a NaN error must never pass).
fn exceeds(value: f64, bound: f64) -> bool {
    value.is_nan() || value > bound
}

impl StageAudit {
    fn judge(&mut self, tol: &Tolerances, model_logdet_tol: f64) {
        let mut fails = Vec::new();
        if exceeds(self.inverse_f64.max_rel, tol.inverse_rel_f64) {
            fails.push(format!(
                "round trip in f64: relative error {:.2e} > {:.0e}",
                self.inverse_f64.max_rel, tol.inverse_rel_f64
            ));
        }
        if exceeds(self.inverse.max_rel, tol.inverse_rel_model) {
            fails.push(format!(
                "round trip in model precision: relative error {:.2e} > {:.0e}",
                self.inverse.max_rel, tol.inverse_rel_model
            ));
        }
        let scale = 1.0 + self.logdet_scale.unwrap_or(0.0);
        if let Some(e) = self.logdet_exact_error
            && exceeds(e, tol.logdet_exact * scale)
        {
            fails.push(format!(
                "log-det vs exact Jacobian: error {e:.2e} > {:.0e} (1 + |log-det|)",
                tol.logdet_exact
            ));
        }
        if let Some(e) = self.logdet_exact_error_model
            && exceeds(e, model_logdet_tol * scale)
        {
            fails.push(format!(
                "log-det in model precision vs exact Jacobian: error {e:.2e} > {model_logdet_tol:.0e} (1 + |log-det|)"
            ));
        }
        if let Some(e) = self.logdet_fd_error
            && exceeds(e, tol.logdet_fd * scale)
        {
            fails.push(format!(
                "log-det vs finite differences: error {e:.2e} > {:.0e} (1 + |log-det|)",
                tol.logdet_fd
            ));
        }
        if let Some(e) = self.grad_error
            && exceeds(e, tol.grad)
        {
            fails.push(format!(
                "backward vs finite differences: mixed error {e:.2e} > {:.0e} at {}",
                tol.grad,
                self.grad_worst.as_deref().unwrap_or("?")
            ));
        }
        if let Some(c) = self.cond_max
            && !c.is_finite()
        {
            fails.push("a Jacobian is singular (the layer is not invertible there)".into());
        }
        for b in self.bins.iter().flatten() {
            if !(b.slope_min > 0.0 && b.slope_max.is_finite() && b.cond.is_finite()) {
                fails.push(format!(
                    "spline bin {}: slopes not finite and positive (min {:.2e}, max {:.2e})",
                    b.bin, b.slope_min, b.slope_max
                ));
            }
            if exceeds(b.round_trip, tol.inverse_rel_model) {
                fails.push(format!(
                    "spline bin {}: round trip {:.2e} of 2B > {:.0e}",
                    b.bin, b.round_trip, tol.inverse_rel_model
                ));
            }
        }
        self.pass = fails.is_empty();
        self.failures = fails;
    }
}

/// Deterministic gradient weights in [-1, 1] (a fixed pattern: the audit must not depend on a
/// random generator).
fn weights(n: usize, salt: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i * 7919 + salt * 104_729) % 2001) as f64 / 1000.0) - 1.0)
        .collect()
}

fn audit_layer<T: Real>(
    name: String,
    layer: &dyn Bijector<T>,
    h: &Tensor<T>,
    context: Option<&Tensor<T>>,
    tol: &Tolerances,
) -> Result<StageAudit> {
    let cx = Ctx::new(context);
    let (z, ld) = layer.forward(h, cx)?;
    let (back, _) = layer.inverse(&z, cx)?;
    let inverse = ErrorStats::between(&to_f64s(back.as_slice()), &to_f64s(h.as_slice()));
    let l64 = layer.to_f64();
    let h64: Tensor<f64> = h.cast();
    let c64: Option<Tensor<f64>> = context.map(|c| c.cast());
    let cx64 = Ctx::new(c64.as_ref());
    let (z64, ld64) = l64.forward(&h64, cx64)?;
    let (back64, _) = l64.inverse(&z64, cx64)?;
    let inverse_f64 = ErrorStats::between(back64.as_slice(), h64.as_slice());
    let exact = forward_jacobian_exact(layer, &h64, c64.as_ref())?;
    let fd = forward_jacobian_fd(layer, &h64, c64.as_ref(), FD_STEP)?;
    let checks = logdet_checks(&ld64, &to_f64s(&ld), &exact, &fd)?;
    let mut copy = layer.to_f64();
    let wz = Tensor::new(z64.shape(), weights(z64.len(), 1))?;
    let wld = weights(h.batch(), 2);
    let rep = grad_check(copy.as_mut(), &h64, c64.as_ref(), &wz, &wld, GRAD_STEP, GRAD_ENTRIES)?;
    let (worst, grad) = rep.worst();
    let bins = layer.bin_stats(h, cx)?;
    let mut a = StageAudit {
        name,
        kind: layer.kind().to_string(),
        inverse,
        inverse_f64,
        logdet_exact_error: Some(checks.exact),
        logdet_exact_error_model: Some(checks.exact_model),
        logdet_fd_error: Some(checks.fd),
        logdet_scale: Some(checks.scale),
        cond_min: Some(checks.cond.0),
        cond_max: Some(checks.cond.1),
        grad_error: Some(grad),
        grad_worst: Some(worst),
        bins,
        pass: false,
        failures: Vec::new(),
    };
    a.judge(tol, model_logdet_tolerance::<T>(tol));
    Ok(a)
}

/// The model-precision log-det tolerance: f64's for f64 models; for f32, relative 1e-4 (eps =
/// 1.2e-7 times the O(D) terms of a sum of logs and the amplification of the inputs' rounding).
fn model_logdet_tolerance<T: Real>(tol: &Tolerances) -> f64 {
    if T::NAME == "f32" { 1e-4 } else { tol.logdet_exact }
}

/// Audits `flow` at the batch `x` (a handful of samples: the cost is that of D forward passes
/// per layer for the Jacobians plus a gradient check), with `context` for a conditional flow.
///
/// # Errors
/// A batch of the wrong shape or with NaN/inf; a layer that fails outright (errors, not bad
/// numbers: those are what the audit reports).
pub fn audit_flow<T: Real>(flow: &Flow<T>, x: &Tensor<T>, context: Option<&Tensor<T>>) -> Result<FlowAudit> {
    let tol = Tolerances::for_precision::<T>();
    x.expect_sample_shape("audit", flow.data_shape())?;
    x.check_finite("audit", "input")?;
    // Every sample gets a D x D Jacobian per layer, in duals, finite differences and f64.
    let d = x.sample_len();
    crate::memory::check(
        || {
            format!(
                "auditing {} samples of {d} values (a {d} x {d} Jacobian each)",
                x.batch()
            )
        },
        crate::memory::bytes(&[x.batch(), d, d, 4], 8),
    )?;
    // Checks the context against the flow before any stage sees it.
    flow.encode_with_log_det(x, context)?;
    // The stages read the embedded context when the flow has an embedding (which is not a
    // layer: it has no Jacobian of its own to audit, and the layers are audited at its output).
    let staged = flow.stage_context(x.batch(), context)?;
    let context = staged.as_ref();
    let cx = Ctx::new(context);
    let c64: Option<Tensor<f64>> = context.map(|c| c.cast());
    let mut stages = Vec::new();
    let mut h = x.clone();
    for (i, s) in flow.stages().iter().enumerate() {
        let name = Flow::<T>::stage_name(i);
        match s.as_bijector() {
            Some(l) => {
                stages.push(audit_layer(name, l, &h, context, &tol)?);
                h = l.forward(&h, cx)?.0;
            }
            None => {
                // A factor-out: only invertibility applies (it moves elements, log-det 0).
                let step = s.forward(&h, cx)?;
                let fz = step.factored.as_ref().map(|f| &f.z);
                let (back, _) = s.inverse(&step.out, fz, cx)?;
                let inv = ErrorStats::between(&to_f64s(back.as_slice()), &to_f64s(h.as_slice()));
                let s64 = s.to_f64();
                let h64: Tensor<f64> = h.cast();
                let cx64 = Ctx::new(c64.as_ref());
                let step64 = s64.forward(&h64, cx64)?;
                let fz64 = step64.factored.as_ref().map(|f| &f.z);
                let (back64, _) = s64.inverse(&step64.out, fz64, cx64)?;
                let mut a = StageAudit {
                    name,
                    kind: s.kind().into(),
                    inverse: inv,
                    inverse_f64: ErrorStats::between(back64.as_slice(), h64.as_slice()),
                    logdet_exact_error: None,
                    logdet_exact_error_model: None,
                    logdet_fd_error: None,
                    logdet_scale: None,
                    cond_min: None,
                    cond_max: None,
                    grad_error: None,
                    grad_worst: None,
                    bins: None,
                    pass: false,
                    failures: Vec::new(),
                };
                a.judge(&tol, tol.logdet_exact);
                stages.push(a);
                h = step.out;
            }
        }
    }
    let whole = audit_whole(flow, x, context, &tol)?;
    let pass = whole.pass && stages.iter().all(|s| s.pass);
    Ok(FlowAudit {
        precision: T::NAME.to_string(),
        samples: x.batch(),
        tolerances: tol,
        stages,
        flow: whole,
        pass,
    })
}

fn audit_whole<T: Real>(
    flow: &Flow<T>,
    x: &Tensor<T>,
    context: Option<&Tensor<T>>,
    tol: &Tolerances,
) -> Result<StageAudit> {
    let (latent, ld) = flow.encode_with_log_det(x, context)?;
    let back = flow.decode(&latent, context)?;
    let inverse = ErrorStats::between(&to_f64s(back.as_slice()), &to_f64s(x.as_slice()));
    let f64flow = flow.to_f64();
    let x64: Tensor<f64> = x.cast();
    let c64: Option<Tensor<f64>> = context.map(|c| c.cast());
    let (l64, ld64) = f64flow.encode_with_log_det(&x64, c64.as_ref())?;
    let back64 = f64flow.decode(&l64, c64.as_ref())?;
    let inverse_f64 = ErrorStats::between(back64.as_slice(), x64.as_slice());
    let dual = flow.to_dual();
    let cdual: Option<Tensor<exactflow_kernels::F1>> = context.map(|c| c.cast());
    // The Jacobian helpers work in the kernels' error type; a flow error is reported as the
    // invalid argument it is (the flow already ran on these inputs above).
    let as_kernel = |e: Error| match e {
        Error::Numerical(k) => k,
        other => exactflow_kernels::Error::invalid("audit", "flow", other.to_string()),
    };
    let exact = jacobian_dual(
        |t| {
            dual.encode_with_log_det(t, cdual.as_ref())
                .and_then(|l| l.0.flatten())
                .map_err(as_kernel)
        },
        &x64,
    )?;
    let fd = jacobian_fd(
        |t| {
            f64flow
                .encode_with_log_det(t, c64.as_ref())
                .and_then(|l| l.0.flatten())
                .map_err(as_kernel)
        },
        &x64,
        FD_STEP,
    )?;
    let checks = logdet_checks(&ld64, &to_f64s(&ld), &exact, &fd)?;
    let mut a = StageAudit {
        name: "flow".into(),
        kind: "Flow".into(),
        inverse,
        inverse_f64,
        logdet_exact_error: Some(checks.exact),
        logdet_exact_error_model: Some(checks.exact_model),
        logdet_fd_error: Some(checks.fd),
        logdet_scale: Some(checks.scale),
        cond_min: Some(checks.cond.0),
        cond_max: Some(checks.cond.1),
        grad_error: None,
        grad_worst: None,
        bins: None,
        pass: false,
        failures: Vec::new(),
    };
    a.judge(tol, model_logdet_tolerance::<T>(tol));
    Ok(a)
}
