//! Adam with bias correction (Kingma & Ba, 2015), over a flow's trainable parameters by name.
//!
//! For each trainable parameter θ with gradient g at step t (1-based):
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `θ -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.

use std::collections::BTreeMap;

use exactflow_kernels::Real;

use crate::error::{Error, Result};
use exactflow_layers::{ParamKind, Params};
use serde::{Deserialize, Serialize};

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    /// Decay of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Adam's state: the moment estimates of every trainable parameter (kept in f64 whatever the
/// model's precision, so that an f32 model's tiny updates are not lost to rounding of the moments)
/// and the step count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adam {
    /// Hyper-parameters.
    pub config: AdamConfig,
    /// Steps taken so far.
    pub t: u64,
    /// First moments by parameter name.
    pub m: BTreeMap<String, Vec<f64>>,
    /// Second moments by parameter name.
    pub v: BTreeMap<String, Vec<f64>>,
}

impl Adam {
    /// Fresh state.
    pub fn new(config: AdamConfig) -> Self {
        Adam {
            config,
            ..Default::default()
        }
    }

    /// The global L2 norm of the trainable gradients.
    pub fn grad_norm<T: Real>(model: &dyn Params<T>) -> f64 {
        let mut s = 0.0;
        model.visit_params("", &mut |_, p| {
            if p.kind == ParamKind::Trainable {
                s += p.grad.as_slice().iter().map(|g| g.as_f64() * g.as_f64()).sum::<f64>();
            }
        });
        s.sqrt()
    }

    /// One update with learning rate `lr`, after scaling every gradient by `grad_scale`
    /// (gradient-norm clipping passes `min(1, max_norm / norm)`).
    ///
    /// # Errors
    /// [`Error::Diverged`] (at Adam's step count; the trainer puts in its own step) naming the
    /// first parameter whose gradient is not finite; nothing is updated then.
    pub fn step<T: Real>(&mut self, model: &mut dyn Params<T>, lr: f64, grad_scale: f64) -> Result<()> {
        let mut bad = None;
        model.visit_params("", &mut |name, p| {
            if bad.is_none() && p.kind == ParamKind::Trainable && p.grad.first_non_finite().is_some() {
                bad = Some(name.to_string());
            }
        });
        if let Some(name) = bad {
            return Err(Error::Diverged {
                step: self.t,
                reason: format!("the gradient of {name} is not finite"),
            });
        }
        self.t += 1;
        let AdamConfig { beta1, beta2, eps } = self.config;
        let c1 = 1.0 - beta1.powi(self.t.min(i32::MAX as u64) as i32);
        let c2 = 1.0 - beta2.powi(self.t.min(i32::MAX as u64) as i32);
        let (ms, vs) = (&mut self.m, &mut self.v);
        model.visit_params_mut("", &mut |name, p| {
            if p.kind != ParamKind::Trainable {
                return;
            }
            let n = p.value.len();
            let m = ms.entry(name.to_string()).or_insert_with(|| vec![0.0; n]);
            let v = vs.entry(name.to_string()).or_insert_with(|| vec![0.0; n]);
            let grads = p.grad.as_slice().to_vec();
            for (((w, g), mi), vi) in p
                .value
                .as_mut_slice()
                .iter_mut()
                .zip(grads)
                .zip(m.iter_mut())
                .zip(v.iter_mut())
            {
                let g = g.as_f64() * grad_scale;
                *mi = beta1 * *mi + (1.0 - beta1) * g;
                *vi = beta2 * *vi + (1.0 - beta2) * g * g;
                let update = lr * (*mi / c1) / ((*vi / c2).sqrt() + eps);
                *w = T::lit(w.as_f64() - update);
            }
        });
        Ok(())
    }
}
