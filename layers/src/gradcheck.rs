//! Gradient checks of a layer's hand-written backward pass against central finite differences.
//!
//! The scalar checked is `L = sum(w_z * z) + sum(w_ld * logdet)` for fixed random weights, with
//! `(z, logdet) = forward_train(x)`: backward is called with `dz = w_z`, `dlogdet = w_ld`, and
//! every entry of dL/dx and of each trainable parameter's gradient is compared with
//! `(L(v + h) - L(v - h)) / 2h`.
//!
//! **Error measure.** `|analytic - numeric| / max(1, |analytic|, |numeric|)`: relative for
//! gradients larger than 1, absolute below. A pure relative error is meaningless for entries that
//! are zero or tiny (ReLU's dead units, symmetric cancellations), and the FD error itself is
//! absolute (truncation O(h^2 f''') plus rounding O(eps |L| / h)), which is why the floor is 1.
//! With `h = 1e-5` in f64 both terms are near 1e-10 for the layers here, far below the 1e-6 the
//! property tests demand.

use exactflow_kernels::{Error, Result};

use crate::bijector::{Bijector, Pass};
use crate::params::ParamKind;
use crate::tensor::Tensor;

/// The mixed absolute/relative error between an analytic and a numeric derivative.
pub fn mixed_error(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs())
}

/// The worst errors found by [`grad_check`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradCheckReport {
    /// Worst error over the entries of dL/dx.
    pub input_error: f64,
    /// Worst error per trainable parameter, by name.
    pub param_errors: Vec<(String, f64)>,
}

impl GradCheckReport {
    /// The worst error over the input and every parameter.
    pub fn max_error(&self) -> f64 {
        self.param_errors.iter().map(|p| p.1).fold(self.input_error, f64::max)
    }

    /// The name of the worst entry ("input" or a parameter name) and its error.
    pub fn worst(&self) -> (String, f64) {
        self.param_errors
            .iter()
            .fold(("input".to_string(), self.input_error), |acc, (n, e)| {
                if *e > acc.1 { (n.clone(), *e) } else { acc }
            })
    }
}

fn loss(layer: &mut dyn Bijector<f64>, x: &Tensor<f64>, wz: &Tensor<f64>, wld: &[f64]) -> Result<f64> {
    let (z, ld, _) = layer.forward_train(x, Pass::Train)?;
    let a: f64 = z.as_slice().iter().zip(wz.as_slice()).map(|(p, q)| p * q).sum();
    let b: f64 = ld.iter().zip(wld).map(|(p, q)| p * q).sum();
    Ok(a + b)
}

/// Compares the backward pass of `layer` (in f64) with central differences of step `h`.
///
/// Checks every input entry, and every entry of each trainable parameter with at most
/// `max_per_param` entries (an evenly spaced subset of larger ones). The layer's training state
/// may change (running statistics), so pass a copy (e.g. from [`Bijector::to_f64`]).
///
/// # Errors
/// Whatever the layer's passes return; shape mismatches between `x`, `wz` and `wld`.
pub fn grad_check(
    layer: &mut dyn Bijector<f64>,
    x: &Tensor<f64>,
    wz: &Tensor<f64>,
    wld: &[f64],
    h: f64,
    max_per_param: usize,
) -> Result<GradCheckReport> {
    if wld.len() != x.batch() {
        return Err(Error::LengthMismatch {
            op: "grad_check",
            what: "log-det weights",
            expected: x.batch(),
            found: wld.len(),
        });
    }
    // One training pass first, so data-dependent initialization (ActNorm) is already done and
    // every later evaluation applies the same map.
    layer.forward_train(x, Pass::Train)?;
    layer.visit_params_mut("", &mut |_, p| p.zero_grad());
    let (z, _, cache) = layer.forward_train(x, Pass::Train)?;
    wz.expect_shape("grad_check", z.shape())?;
    let dx = layer.backward(cache, wz, wld)?;

    let mut report = GradCheckReport::default();
    let mut xp = x.clone();
    for k in 0..x.len() {
        let v = x.as_slice()[k];
        xp.as_mut_slice()[k] = v + h;
        let lp = loss(layer, &xp, wz, wld)?;
        xp.as_mut_slice()[k] = v - h;
        let lm = loss(layer, &xp, wz, wld)?;
        xp.as_mut_slice()[k] = v;
        let e = mixed_error(dx.as_slice()[k], (lp - lm) / (2.0 * h));
        report.input_error = report.input_error.max(e);
    }

    let mut params = Vec::new();
    layer.visit_params("", &mut |name, p| {
        if p.kind == ParamKind::Trainable {
            params.push((name.to_string(), p.value.len(), p.grad.as_slice().to_vec()));
        }
    });
    for (name, len, grad) in params {
        let stride = len.div_ceil(max_per_param.max(1)).max(1);
        let mut worst = 0.0f64;
        for k in (0..len).step_by(stride) {
            let mut orig = 0.0;
            let mut set = |layer: &mut dyn Bijector<f64>, delta: Option<f64>| {
                layer.visit_params_mut("", &mut |n, p| {
                    if n == name {
                        let slot = &mut p.value.as_mut_slice()[k];
                        match delta {
                            Some(d) => {
                                orig = *slot;
                                *slot = orig + d;
                            }
                            None => *slot = orig,
                        }
                    }
                });
            };
            set(layer, Some(h));
            let lp = loss(layer, x, wz, wld)?;
            set(layer, None);
            set(layer, Some(-h));
            let lm = loss(layer, x, wz, wld)?;
            set(layer, None);
            worst = worst.max(mixed_error(grad[k], (lp - lm) / (2.0 * h)));
        }
        report.param_errors.push((name, worst));
    }
    Ok(report)
}
