//! Gradient checks of a layer's hand-written backward pass against central finite differences.
//!
//! The scalar checked is `L = sum(w_z * z) + sum(w_ld * logdet)` for fixed random weights, with
//! `(z, logdet) = forward_train(x, c)`: backward is called with `dz = w_z`, `dlogdet = w_ld`, and
//! every entry of dL/dx, of dL/dc when a context `c` is given, and of each trainable parameter's
//! gradient is compared with `(L(v + h) - L(v - h)) / 2h`.
//!
//! **Error measure.** `|analytic - numeric| / max(1, |analytic|, |numeric|)`: relative for
//! gradients larger than 1, absolute below. A pure relative error is meaningless for entries that
//! are zero or tiny (ReLU's dead units, symmetric cancellations), and the FD error itself is
//! absolute (truncation O(h^2 f''') plus rounding O(eps |L| / h)), which is why the floor is 1.
//! With `h = 1e-5` in f64 both terms are near 1e-10 for the layers here, far below the 1e-6 the
//! property tests demand.
//!
//! **Kinks.** Conditioners with ReLU (or LeakyReLU) are only piecewise smooth. When a
//! pre-activation lies within `h * |dp/dv|` of 0, the stencil `v +- h` straddles the kink and the
//! central difference is off by up to half the jump in slope (errors of 1e-3 to 1e-1 are typical),
//! although the backward pass is exact at `v`. For the small convolutional networks of the
//! property tests (a few thousand ReLU units) it happens in a few cases per thousand. So when the error at step `h` exceeds [`REFINE_ABOVE`], the
//! difference is recomputed at `h / 10` and `h / 100` and the smallest error is kept: on a smooth
//! piece every step agrees with the analytic value; a kink at distance `d` spoils only the steps
//! larger than `d`, so all three are spoiled only when `d < h / 100` (100 times rarer); and a wrong
//! backward pass is off by the same amount at every step, so it still fails. At `h / 100 = 1e-7`
//! the rounding error is O(eps |L| / 1e-7), about 2e-9 |L|. The tolerance itself is unchanged.

use exactflow_kernels::{Error, Result};

use crate::bijector::{Bijector, InputGrad, Pass};
use crate::ctx::Ctx;
use crate::nets::Conditioner;
use crate::params::{ParamKind, Params};
use crate::tensor::Tensor;

/// The mixed absolute/relative error between an analytic and a numeric derivative.
pub fn mixed_error(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs())
}

/// Mixed error above which [`grad_check`] and [`grad_check_net`] retry the central difference at
/// `h / 10` and `h / 100` (see the module documentation on kinks): 100 times the smooth-case error
/// at `h = 1e-5`, and 100 times below the property tests' tolerance.
pub const REFINE_ABOVE: f64 = 1e-8;

/// The smallest mixed error between `analytic` and the central differences
/// `(L(v + s) - L(v - s)) / 2s` for `s = h, h / 10, h / 100`, stopping at the first at most
/// [`REFINE_ABOVE`]. `loss_at(delta)` evaluates `L(v + delta)`.
fn fd_error(analytic: f64, h: f64, mut loss_at: impl FnMut(f64) -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for s in [h, h / 10.0, h / 100.0] {
        let lp = loss_at(s)?;
        let lm = loss_at(-s)?;
        best = best.min(mixed_error(analytic, (lp - lm) / (2.0 * s)));
        if best <= REFINE_ABOVE {
            break;
        }
    }
    Ok(best)
}

/// The worst errors found by [`grad_check`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradCheckReport {
    /// Worst error over the entries of dL/dx.
    pub input_error: f64,
    /// Worst error over the entries of dL/dcontext (0 when no context was given).
    pub context_error: f64,
    /// Worst error per trainable parameter, by name.
    pub param_errors: Vec<(String, f64)>,
}

impl GradCheckReport {
    /// The worst error over the input and every parameter.
    pub fn max_error(&self) -> f64 {
        self.param_errors
            .iter()
            .map(|p| p.1)
            .fold(self.input_error.max(self.context_error), f64::max)
    }

    /// The name of the worst entry ("input" or a parameter name) and its error.
    pub fn worst(&self) -> (String, f64) {
        let start = if self.context_error > self.input_error {
            ("context".to_string(), self.context_error)
        } else {
            ("input".to_string(), self.input_error)
        };
        self.param_errors
            .iter()
            .fold(start, |acc, (n, e)| if *e > acc.1 { (n.clone(), *e) } else { acc })
    }
}

fn loss(
    layer: &mut dyn Bijector<f64>,
    x: &Tensor<f64>,
    c: Option<&Tensor<f64>>,
    wz: &Tensor<f64>,
    wld: &[f64],
) -> Result<f64> {
    let (z, ld, _) = layer.forward_train(x, Ctx::new(c), Pass::Train)?;
    let a: f64 = z.as_slice().iter().zip(wz.as_slice()).map(|(p, q)| p * q).sum();
    let b: f64 = ld.iter().zip(wld).map(|(p, q)| p * q).sum();
    Ok(a + b)
}

/// Compares the backward pass of `layer` (in f64) with central differences of step `h`.
///
/// Checks every input entry, every entry of the `context` when one is given (a layer that
/// ignores it must report a zero gradient), and every entry of each trainable parameter with at most
/// `max_per_param` entries (an evenly spaced subset of larger ones). The layer's training state
/// may change (running statistics), so pass a copy (e.g. from [`Bijector::to_f64`]).
///
/// # Errors
/// Whatever the layer's passes return; shape mismatches between `x`, `wz` and `wld`.
pub fn grad_check(
    layer: &mut dyn Bijector<f64>,
    x: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
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
    let cx = Ctx::new(context);
    layer.forward_train(x, cx, Pass::Train)?;
    layer.visit_params_mut("", &mut |_, p| p.zero_grad());
    let (z, _, cache) = layer.forward_train(x, cx, Pass::Train)?;
    wz.expect_shape("grad_check", z.shape())?;
    let grad = layer.backward(cache, wz, wld)?;

    compare_with_fd(layer, x, context, &grad, h, max_per_param, |layer, x, c| {
        loss(layer, x, c, wz, wld)
    })
}

/// The worst [`fd_error`] over the entries of `v` against `analytic`, perturbing one entry of a
/// copy of `v` at a time.
fn entries_error(
    v: &Tensor<f64>,
    analytic: &[f64],
    h: f64,
    mut loss_at: impl FnMut(&Tensor<f64>) -> Result<f64>,
) -> Result<f64> {
    let mut worst = 0.0f64;
    let mut vp = v.clone();
    for (k, &a) in analytic.iter().enumerate().take(v.len()) {
        let orig = v.as_slice()[k];
        let e = fd_error(a, h, |d| {
            vp.as_mut_slice()[k] = orig + d;
            let l = loss_at(&vp);
            vp.as_mut_slice()[k] = orig;
            l
        })?;
        worst = worst.max(e);
    }
    Ok(worst)
}

/// Compares the input gradient, the context gradient (zero when absent) and every trainable
/// parameter's accumulated gradient of `model` with central differences of `loss_of` (an evenly
/// spaced subset of at most `max_per_param` entries for larger parameters), each retried at
/// `h / 10` and `h / 100` above [`REFINE_ABOVE`]. Values are restored by assignment, so the model
/// is left bit for bit as it was. [`grad_check`] and [`grad_check_net`] are this check for one
/// layer and one network; a composition (a whole flow) calls it with its own loss.
///
/// # Errors
/// Whatever `loss_of` returns; [`Error::ShapeMismatch`] when a gradient's shape differs from its
/// input's.
pub fn compare_with_fd<P: Params<f64> + ?Sized>(
    model: &mut P,
    x: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
    grad: &InputGrad<f64>,
    h: f64,
    max_per_param: usize,
    loss_of: impl Fn(&mut P, &Tensor<f64>, Option<&Tensor<f64>>) -> Result<f64>,
) -> Result<GradCheckReport> {
    grad.x.expect_shape("grad_check", x.shape())?;
    let mut report = GradCheckReport {
        input_error: entries_error(x, grad.x.as_slice(), h, |xp| loss_of(model, xp, context))?,
        ..GradCheckReport::default()
    };
    if let Some(c) = context {
        let zeros = c.zeros_like();
        let dc = grad.context.as_ref().unwrap_or(&zeros);
        dc.expect_shape("grad_check (context gradient)", c.shape())?;
        report.context_error = entries_error(c, dc.as_slice(), h, |cp| loss_of(model, x, Some(cp)))?;
    }

    let mut params = Vec::new();
    model.visit_params("", &mut |name, p| {
        if p.kind == ParamKind::Trainable {
            params.push((name.to_string(), p.value.len(), p.grad.as_slice().to_vec()));
        }
    });
    for (name, len, grad) in params {
        let stride = len.div_ceil(max_per_param.max(1)).max(1);
        let mut worst = 0.0f64;
        for k in (0..len).step_by(stride) {
            let mut orig = 0.0;
            model.visit_params("", &mut |n, p| {
                if n == name {
                    orig = p.value.as_slice()[k];
                }
            });
            // Restores by assignment, so the value is kept bit for bit.
            let set = |model: &mut P, v: f64| {
                model.visit_params_mut("", &mut |n, p| {
                    if n == name {
                        p.value.as_mut_slice()[k] = v;
                    }
                });
            };
            let e = fd_error(grad[k], h, |d| {
                set(model, orig + d);
                let l = loss_of(model, x, context);
                set(model, orig);
                l
            })?;
            worst = worst.max(e);
        }
        report.param_errors.push((name, worst));
    }
    Ok(report)
}

fn net_loss(net: &dyn Conditioner<f64>, x: &Tensor<f64>, c: Option<&Tensor<f64>>, w: &Tensor<f64>) -> Result<f64> {
    let y = net.forward(x, Ctx::new(c))?;
    w.expect_shape("grad_check_net", y.shape())?;
    Ok(y.as_slice().iter().zip(w.as_slice()).map(|(p, q)| p * q).sum())
}

/// Compares the backward pass of a conditioner network (in f64) with central differences of
/// step `h`, for the scalar `L = sum(w * net(x))`: backward is called with `dy = w` after
/// `forward_train(x)`, and every entry of dL/dx and of each trainable parameter's gradient (an
/// evenly spaced subset of at most `max_per_param` entries for larger parameters) is compared
/// with `(L(v + h) - L(v - h)) / 2h` by [`mixed_error`] (retried at `h / 10` and `h / 100` above
/// [`REFINE_ABOVE`], see the module documentation on kinks); so is every entry of dL/dcontext
/// when a `context` is given. The network's gradients are zeroed first.
///
/// # Errors
/// Whatever the network's passes return; [`Error::ShapeMismatch`] when `w` does not have the
/// output's shape.
pub fn grad_check_net(
    net: &mut dyn Conditioner<f64>,
    x: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
    w: &Tensor<f64>,
    h: f64,
    max_per_param: usize,
) -> Result<GradCheckReport> {
    net.visit_params_mut("", &mut |_, p| p.zero_grad());
    let (y, cache) = net.forward_train(x, Ctx::new(context))?;
    w.expect_shape("grad_check_net", y.shape())?;
    let grad = net.backward(cache, w)?;

    compare_with_fd(net, x, context, &grad, h, max_per_param, |net, x, c| {
        net_loss(net, x, c, w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bijector::Cache;
    use crate::params::{Param, Params};
    use exactflow_kernels::Real;

    /// `y = a * relu(x) + x^2 / 2` elementwise on `[N, D]`, whose backward multiplies by
    /// `1 + skew` (0 for the correct gradient).
    #[derive(Clone)]
    struct Toy<T: Real> {
        a: Param<T>,
        d: usize,
        skew: f64,
    }

    impl<T: Real> Toy<T> {
        fn cast<U: Real>(&self) -> Toy<U> {
            Toy {
                a: self.a.cast(),
                d: self.d,
                skew: self.skew,
            }
        }
    }

    impl<T: Real> Params<T> for Toy<T> {
        fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
            f(&crate::params::join(prefix, "a"), &self.a);
        }
        fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
            f(&crate::params::join(prefix, "a"), &mut self.a);
        }
    }

    impl<T: Real> Conditioner<T> for Toy<T> {
        fn kind(&self) -> &'static str {
            "Toy"
        }
        fn in_shape(&self) -> Vec<usize> {
            vec![self.d]
        }
        fn out_shape(&self) -> Vec<usize> {
            vec![self.d]
        }
        fn forward(&self, x: &Tensor<T>, _cx: Ctx<'_, T>) -> Result<Tensor<T>> {
            let a = self.a.values()[0];
            Ok(x.map(|v| a * v.max(T::zero()) + v * v / T::lit(2.0)))
        }
        fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)> {
            Ok((self.forward(x, cx)?, Cache::new("Toy", x.clone())))
        }
        fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>> {
            let x: Tensor<T> = cache.take("Toy")?;
            let (a, k) = (self.a.values()[0], T::lit(1.0 + self.skew));
            let da = x
                .as_slice()
                .iter()
                .zip(dy.as_slice())
                .fold(T::zero(), |acc, (&v, &g)| acc + g * v.max(T::zero()));
            self.a.accumulate(&[da * k]);
            let dx = x.zip_map(dy, |v, g| {
                let relu_slope = if v > T::zero() { a } else { T::zero() };
                g * (relu_slope + v) * k
            })?;
            Ok(InputGrad::input(dx))
        }
        crate::impl_net_cast!();
    }

    fn toy(skew: f64) -> Toy<f64> {
        Toy {
            a: Param::trainable(Tensor::full(&[1], 2.0).unwrap()),
            d: 3,
            skew,
        }
    }

    #[test]
    fn straddled_kink_is_refined_and_wrong_backward_still_fails() {
        // x[0] = 3e-6 lies within h = 1e-5 of the ReLU's kink: the plain central difference
        // is off by about a * (1 - 0.3) / 2 = 0.7.
        let x = Tensor::new(&[1, 3], vec![3e-6, -0.7, 1.3]).unwrap();
        let w = Tensor::new(&[1, 3], vec![1.0, -0.5, 0.25]).unwrap();
        let plain = mixed_error(
            2.0 + 3e-6,
            ((1e-5 + 3e-6) * 2.0 + 0.5 * (1.3e-5f64.powi(2) - 0.7e-5f64.powi(2))) / 2e-5,
        );
        assert!(plain > 0.1, "the example must straddle the kink, error {plain}");
        let rep = grad_check_net(&mut toy(0.0), &x, None, &w, 1e-5, 8).unwrap();
        assert!(rep.max_error() < 1e-8, "{rep:?}");
        // A backward that is off by 1e-4 relative fails at every step.
        let rep = grad_check_net(&mut toy(1e-4), &x, None, &w, 1e-5, 8).unwrap();
        assert!(rep.input_error > 5e-5 && rep.param_errors[0].1 > 2e-5, "{rep:?}");
        // Wrong output weights are an error.
        let bad_w = Tensor::new(&[1, 2], vec![1.0, 1.0]).unwrap();
        assert!(grad_check_net(&mut toy(0.0), &x, None, &bad_w, 1e-5, 8).is_err());
    }
}
