//! Shared checks for every invertible layer: the laws each layer test applies to its layer.
//!
//! Tolerances (all in f64 unless stated), and why:
//! - round trip `inverse(forward(x)) = x`, `forward(inverse(z)) = z`: relative error <= 1e-10.
//!   Each layer is a handful of well-conditioned elementwise ops or a small dense solve; rounding
//!   of O(10) operations at eps = 2.2e-16, amplified by the layer's condition number (bounded by
//!   the parameter ranges the strategies draw), stays orders of magnitude below 1e-10.
//! - forward log-det vs log|det| of the exact dual-number Jacobian: <= 1e-9 absolute per sample
//!   (both are exact up to rounding; the LU of a D x D Jacobian with D <= 64 adds O(D eps cond)).
//! - vs the central-difference Jacobian with h = 1e-6: <= 1e-5 absolute (truncation O(h^2 f''')
//!   plus rounding O(eps / h) = 2e-10 per entry, summed through the log-det).
//! - inverse log-det at z = minus forward log-det at x: <= 1e-10 absolute.
//! - backward vs central differences (h = 1e-5): mixed error (see `gradcheck`) <= 1e-6.
//! - f32 vs f64 of the same parameters: relative <= 1e-4 (f32 eps is 1.2e-7; the layers here
//!   amplify it by at most ~1e2 for the parameter ranges drawn), round trip in f32 <= 1e-4.

#![allow(dead_code)]

use exactflow_kernels::Real;
use exactflow_layers::gradcheck::grad_check;
use exactflow_layers::jacobian::{forward_jacobian_exact, forward_jacobian_fd, log_dets};
use exactflow_layers::{Bijector, Ctx, Param, Params, Tensor};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Round-trip tolerance (relative), f64.
pub const ROUNDTRIP_F64: f64 = 1e-10;
/// Exact-Jacobian log-det tolerance (absolute per sample), f64.
pub const LOGDET_EXACT: f64 = 1e-9;
/// Finite-difference-Jacobian log-det tolerance (absolute per sample), f64.
pub const LOGDET_FD: f64 = 1e-5;
/// Finite-difference step for the Jacobian.
pub const FD_STEP: f64 = 1e-6;
/// Gradient-check tolerance (mixed error), f64.
pub const GRAD_F64: f64 = 1e-6;
/// Finite-difference step for the gradient check.
pub const GRAD_STEP: f64 = 1e-5;
/// f32 tolerance (relative) for round trips and agreement with f64.
pub const F32_TOL: f64 = 1e-4;

/// Number of cases: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `max |a - b| / max(max |b|, 1e-300)`.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
    let den = b.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-300);
    num / den
}

/// `max |a - b|`.
pub fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
}

/// A batch tensor of the given sample shape from a flat vector of values.
pub fn batch(n: usize, sample: &[usize], values: Vec<f64>) -> Tensor<f64> {
    let mut shape = vec![n];
    shape.extend_from_slice(sample);
    Tensor::new(&shape, values).expect("strategy draws exactly n * sample_len values")
}

/// Strategy: `n * len` values in `[-r, r]`.
pub fn values(len: usize, r: f64) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(-r..r, len)
}

/// Adds `scale * delta[k % delta.len()]` to every trainable parameter value, so that layers whose
/// last conditioner layer starts at zero (identity at init) are tested away from the identity.
pub fn perturb<T: Real, P: Params<T> + ?Sized>(p: &mut P, delta: &[f64], scale: f64) {
    let mut k = 0;
    p.visit_params_mut("", &mut |_, param: &mut Param<T>| {
        if param.kind == exactflow_layers::ParamKind::Trainable {
            for v in param.value.as_mut_slice() {
                *v += T::lit(scale * delta[k % delta.len()]);
                k += 1;
            }
        }
    });
}

/// Turns a library error into a test failure that says which step failed.
pub fn fail(what: &str) -> impl Fn(exactflow_kernels::Error) -> TestCaseError + '_ {
    move |e| TestCaseError::fail(format!("{what}: {e}"))
}

/// Every law of an invertible layer in f64 at input `x`, with gradient weights `wz`, `wld`.
pub fn check_laws(
    layer: &mut dyn Bijector<f64>,
    x: &Tensor<f64>,
    wz: &[f64],
    wld: &[f64],
) -> Result<(), TestCaseError> {
    let (z, ld) = layer
        .forward(x, Ctx::NONE)
        .map_err(|e| TestCaseError::fail(format!("forward: {e}")))?;
    prop_assert_eq!(ld.len(), x.batch(), "one log-det per sample");
    // inverse(forward(x)) = x
    let (xr, ldi) = layer
        .inverse(&z, Ctx::NONE)
        .map_err(|e| TestCaseError::fail(format!("inverse: {e}")))?;
    let e = rel_err(xr.as_slice(), x.as_slice());
    prop_assert!(e <= ROUNDTRIP_F64, "inverse(forward(x)) relative error {e:e}");
    // forward(inverse(z)) = z at z = forward(x): forward of the reconstructed input
    let (zr, _) = layer
        .forward(&xr, Ctx::NONE)
        .map_err(|e| TestCaseError::fail(format!("forward: {e}")))?;
    let e = rel_err(zr.as_slice(), z.as_slice());
    prop_assert!(e <= ROUNDTRIP_F64, "forward(inverse(z)) relative error {e:e}");
    // inverse log-det at z = - forward log-det at x
    for (a, b) in ld.iter().zip(&ldi) {
        prop_assert!(
            (a + b).abs() <= ROUNDTRIP_F64 * (1.0 + a.abs()),
            "inverse log-det {b} vs forward {a}"
        );
    }
    // log-det vs exact dual Jacobian
    let exact =
        log_dets(&forward_jacobian_exact(layer, x, None).map_err(|e| TestCaseError::fail(format!("dual: {e}")))?)
            .map_err(|e| TestCaseError::fail(format!("slogdet: {e}")))?;
    for (s, (l, j)) in ld.iter().zip(&exact).enumerate() {
        prop_assert!(j.sign != 0.0, "Jacobian of sample {s} is singular");
        prop_assert!(
            (l - j.log_abs).abs() <= LOGDET_EXACT,
            "sample {s}: log-det {l} vs exact Jacobian {}",
            j.log_abs
        );
    }
    // log-det vs finite-difference Jacobian
    let fd =
        log_dets(&forward_jacobian_fd(layer, x, None, FD_STEP).map_err(|e| TestCaseError::fail(format!("fd: {e}")))?)
            .map_err(|e| TestCaseError::fail(format!("slogdet: {e}")))?;
    for (s, (l, j)) in ld.iter().zip(&fd).enumerate() {
        prop_assert!(
            (l - j.log_abs).abs() <= LOGDET_FD,
            "sample {s}: log-det {l} vs FD Jacobian {}",
            j.log_abs
        );
    }
    // backward vs finite differences (on a copy: training passes may update statistics)
    let mut copy = layer.to_f64();
    let wz = Tensor::new(z.shape(), wz[..z.len()].to_vec()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rep = grad_check(copy.as_mut(), x, None, &wz, &wld[..x.batch()], GRAD_STEP, 64)
        .map_err(|e| TestCaseError::fail(format!("grad check: {e}")))?;
    let (name, err) = rep.worst();
    prop_assert!(err <= GRAD_F64, "gradient of {name}: mixed error {err:e}");
    Ok(())
}

/// The layer in f32 agrees with its f64 copy, and round-trips in f32.
pub fn check_f32(layer: &dyn Bijector<f32>, x: &Tensor<f64>) -> Result<(), TestCaseError> {
    let x32: Tensor<f32> = x.cast();
    let (z32, ld32) = layer
        .forward(&x32, Ctx::NONE)
        .map_err(|e| TestCaseError::fail(format!("f32 forward: {e}")))?;
    let l64 = layer.to_f64();
    let (z64, ld64) = l64
        .forward(&x32.cast(), Ctx::NONE)
        .map_err(|e| TestCaseError::fail(format!("f64 forward: {e}")))?;
    let z32f: Vec<f64> = z32.as_slice().iter().map(|&v| v as f64).collect();
    let e = rel_err(&z32f, z64.as_slice());
    prop_assert!(e <= F32_TOL, "f32 vs f64 output relative error {e:e}");
    let ld32f: Vec<f64> = ld32.iter().map(|&v| v as f64).collect();
    let scale = ld64.iter().map(|v| v.abs()).fold(1.0, f64::max);
    prop_assert!(
        max_abs(&ld32f, &ld64) <= F32_TOL * scale,
        "f32 vs f64 log-det {ld32f:?} vs {ld64:?}"
    );
    let (xr, _) = layer
        .inverse(&z32, Ctx::NONE)
        .map_err(|e| TestCaseError::fail(format!("f32 inverse: {e}")))?;
    let xr: Vec<f64> = xr.as_slice().iter().map(|&v| v as f64).collect();
    let x32f: Vec<f64> = x32.as_slice().iter().map(|&v| v as f64).collect();
    let e = rel_err(&xr, &x32f);
    prop_assert!(e <= F32_TOL, "f32 round trip relative error {e:e}");
    Ok(())
}

/// A wrong input shape and a non-finite parameter are errors, not panics.
pub fn check_errors(layer: &mut dyn Bijector<f64>, x: &Tensor<f64>) -> Result<(), TestCaseError> {
    let mut bad_shape = x.shape().to_vec();
    *bad_shape.last_mut().expect("rank >= 2") += 1;
    let wrong = Tensor::zeros(&bad_shape).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        layer.forward(&wrong, Ctx::NONE).is_err(),
        "forward accepted shape {bad_shape:?}"
    );
    prop_assert!(
        layer.inverse(&wrong, Ctx::NONE).is_err(),
        "inverse accepted shape {bad_shape:?}"
    );
    let mut nan_x = x.clone();
    nan_x.as_mut_slice()[0] = f64::NAN;
    prop_assert!(
        layer.forward(&nan_x, Ctx::NONE).is_err(),
        "forward accepted a NaN input"
    );
    let mut poisoned = false;
    layer.visit_params_mut("", &mut |_, p| {
        if !poisoned && !p.value.is_empty() && p.kind == exactflow_layers::ParamKind::Trainable {
            p.value.as_mut_slice()[0] = f64::INFINITY;
            poisoned = true;
        }
    });
    if poisoned {
        prop_assert!(
            layer.forward(x, Ctx::NONE).is_err(),
            "forward accepted an infinite parameter"
        );
        prop_assert!(
            layer.inverse(x, Ctx::NONE).is_err(),
            "inverse accepted an infinite parameter"
        );
    }
    Ok(())
}
