//! Adam with bias correction (Kingma & Ba, 2015), over a flow's trainable parameters by name.
//!
//! For each trainable parameter θ with gradient g at step t (1-based):
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `θ -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
//!
//! The update runs in the model's precision `T` (as PyTorch's Adam does for an f32 model): the
//! moments are `T`, and a step allocates nothing. In f64 every operation is the one the earlier
//! f64-only optimizer made, in the same order, so f64 runs are unchanged bit for bit. Checkpoints
//! store the moments as F64 tensors, which widens f32 moments exactly, so a resumed f32 run reads
//! back the very values it saved.

use exactflow_kernels::Real;
use exactflow_kernels::gemm::Parallelism;
use exactflow_kernels::optim::{self, AdamCoefficients};

use crate::checkpoint::NamedValues;
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

/// The moments of one trainable tensor.
#[derive(Clone, Debug, PartialEq)]
struct Slot<T> {
    name: String,
    m: Vec<T>,
    v: Vec<T>,
}

/// Adam's state: the moment estimates of every trainable parameter, in the model's precision
/// `T`, and the step count.
///
/// The moments are kept in the order in which the model visits its trainable parameters (one
/// slot per tensor, created at the first step), so that a step looks nothing up by name; the
/// names are checked against the slots on every step (a comparison, no allocation).
#[derive(Clone, Debug)]
pub struct Adam<T: Real = f64> {
    /// Hyper-parameters.
    pub config: AdamConfig,
    /// Steps taken so far.
    pub t: u64,
    slots: Vec<Slot<T>>,
    /// Moments given by name ([`Adam::with_moments`]) that no step has claimed yet.
    pending: (NamedValues, NamedValues),
    /// How many threads an update may use ([`Adam::set_parallelism`]); not part of the state.
    parallelism: Parallelism,
}

/// Equal states: the same hyper-parameters, step count and moments (the thread setting is not
/// state, and does not change the updates' bits).
impl<T: Real> PartialEq for Adam<T> {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.t == other.t && self.slots == other.slots && self.pending == other.pending
    }
}

impl<T: Real> Default for Adam<T> {
    fn default() -> Self {
        Adam::new(AdamConfig::default())
    }
}

impl<T: Real> Adam<T> {
    /// Fresh state.
    pub fn new(config: AdamConfig) -> Self {
        Adam {
            config,
            t: 0,
            slots: Vec::new(),
            pending: Default::default(),
            parallelism: Parallelism::Sequential,
        }
    }

    /// The state after `t` steps with the first and second moments `m` and `v` by parameter
    /// name (as a checkpoint stores them). Each value is rounded to `T` (exact for moments that
    /// an f32 run saved); a parameter without an entry starts from zero moments.
    pub fn with_moments(config: AdamConfig, t: u64, m: NamedValues, v: NamedValues) -> Self {
        Adam {
            config,
            t,
            slots: Vec::new(),
            pending: (m, v),
            parallelism: Parallelism::Sequential,
        }
    }

    /// The first and second moments by parameter name, widened to f64 (exactly, from f32).
    pub fn moments(&self) -> (NamedValues, NamedValues) {
        let (mut m, mut v) = self.pending.clone();
        for s in &self.slots {
            m.insert(s.name.clone(), s.m.iter().map(|x| x.as_f64()).collect());
            v.insert(s.name.clone(), s.v.iter().map(|x| x.as_f64()).collect());
        }
        (m, v)
    }

    /// The global L2 norm of the trainable gradients: per tensor
    /// [`exactflow_kernels::optim::sum_of_squares`] (in f64, in a fixed order, vectorized), the
    /// tensors' sums added in visiting order. NaN or infinite when a gradient is; for `f32`
    /// gradients a finite norm means every gradient is finite.
    pub fn grad_norm(model: &dyn Params<T>) -> f64 {
        let mut s = 0.0;
        model.visit_params("", &mut |_, p| {
            if p.kind == ParamKind::Trainable {
                s += optim::sum_of_squares(p.grad.as_slice());
            }
        });
        s.sqrt()
    }

    /// Lets the updates use two threads (`par` of two or more): large tensors are updated in two
    /// halves at once ([`optim::adam_update_on`]), with the same bits as on one thread. The
    /// trainer sets it when the run splits its matrix products ([`crate::train::Strategy`]), so
    /// that the helper thread is already awake.
    pub fn set_parallelism(&mut self, par: Parallelism) {
        self.parallelism = par;
    }

    /// Gradient-norm clipping and one update, as a training step makes them: the norm `N` of
    /// [`Adam::grad_norm`], then [`Adam::step`] with `grad_scale = max_norm / N` when a
    /// `max_norm` is given and `N > max_norm` (1 otherwise). Returns `N`.
    ///
    /// A finite `N` proves every gradient finite, so the separate scan of the gradients that
    /// [`Adam::step`] makes is skipped; a NaN or infinite `N` makes it, and a non-finite gradient
    /// is reported as there, before anything is written.
    ///
    /// # Errors
    /// As [`Adam::step`].
    pub fn clip_and_step(&mut self, model: &mut dyn Params<T>, lr: f64, max_norm: Option<f64>) -> Result<f64> {
        let norm = Self::grad_norm(&*model);
        let scale = match max_norm {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        self.update(model, lr, scale, norm.is_finite())?;
        Ok(norm)
    }

    /// One update with learning rate `lr`, after scaling every gradient by `grad_scale`
    /// (gradient-norm clipping passes `min(1, max_norm / norm)`). The parameters it writes are
    /// checked finite as they are written: this is the one place where a training run's
    /// parameters change, so the passes of the next step need not scan them again.
    ///
    /// # Errors
    /// [`Error::Diverged`] (at Adam's step count; the trainer puts in its own step) naming the
    /// first parameter whose gradient is not finite (nothing is updated then), or the first
    /// parameter the update made non-finite; [`Error::Config`] when the model's trainable
    /// parameters are not the ones this state was made for.
    pub fn step(&mut self, model: &mut dyn Params<T>, lr: f64, grad_scale: f64) -> Result<()> {
        self.update(model, lr, grad_scale, false)
    }

    /// [`Adam::step`]; `grads_finite` says the caller has proved every gradient finite (a finite
    /// [`Adam::grad_norm`]), which skips the scan.
    fn update(&mut self, model: &mut dyn Params<T>, lr: f64, grad_scale: f64, grads_finite: bool) -> Result<()> {
        let mut bad_grad = None;
        let mut mismatch = None;
        let mut i = 0;
        let slots = &self.slots;
        model.visit_params("", &mut |name, p| {
            if p.kind != ParamKind::Trainable {
                return;
            }
            if !grads_finite && bad_grad.is_none() && p.grad.first_non_finite().is_some() {
                bad_grad = Some(name.to_string());
            }
            if mismatch.is_none()
                && let Some(s) = slots.get(i)
                && (s.name != name || s.m.len() != p.value.len())
            {
                mismatch = Some(name.to_string());
            }
            i += 1;
        });
        if mismatch.is_none() && !slots.is_empty() && i != slots.len() {
            mismatch = Some(format!("count: {i} trainable tensors, expected {}", slots.len()));
        }
        if let Some(name) = mismatch {
            return Err(Error::Config(format!(
                "Adam's state was made for another model (parameter {name})"
            )));
        }
        if let Some(name) = bad_grad {
            return Err(Error::Diverged {
                step: self.t,
                reason: format!("the gradient of {name} is not finite"),
            });
        }
        self.t += 1;
        let AdamConfig { beta1, beta2, eps } = self.config;
        let c1 = T::lit(1.0 - beta1.powi(self.t.min(i32::MAX as u64) as i32));
        let c2 = T::lit(1.0 - beta2.powi(self.t.min(i32::MAX as u64) as i32));
        let k = AdamCoefficients {
            lr: T::lit(lr),
            beta1: T::lit(beta1),
            one_minus_beta1: T::lit(1.0 - beta1),
            beta2: T::lit(beta2),
            one_minus_beta2: T::lit(1.0 - beta2),
            bias1: c1,
            bias2: c2,
            eps: T::lit(eps),
            grad_scale: T::lit(grad_scale),
        };
        let (slots, pending, par) = (&mut self.slots, &mut self.pending, self.parallelism);
        let mut i = 0;
        let mut bad_value = None;
        let mut length_error = None;
        model.visit_params_mut("", &mut |name, p| {
            if p.kind != ParamKind::Trainable {
                return;
            }
            if i == slots.len() {
                // The first step (of a run, or after a resume) lays out the slots.
                let n = p.value.len();
                let take = |from: &mut NamedValues| match from.remove(name) {
                    Some(v) if v.len() == n => v.into_iter().map(T::lit).collect(),
                    _ => vec![T::zero(); n],
                };
                let (m, v) = (take(&mut pending.0), take(&mut pending.1));
                slots.push(Slot {
                    name: name.to_string(),
                    m,
                    v,
                });
            }
            let s = &mut slots[i];
            i += 1;
            let (value, grad) = (p.value.as_mut_slice(), p.grad.as_slice());
            let finite = match optim::adam_update_on(par, value, grad, &mut s.m, &mut s.v, &k) {
                Ok(finite) => finite,
                Err(e) => {
                    // A gradient whose length is not its parameter's: nothing of this tensor
                    // was written.
                    length_error.get_or_insert(e);
                    true
                }
            };
            if !finite && bad_value.is_none() {
                bad_value = Some(name.to_string());
            }
        });
        if let Some(e) = length_error {
            return Err(e.into());
        }
        match bad_value {
            Some(name) => Err(Error::Diverged {
                step: self.t,
                reason: format!("the update made {name} non-finite"),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactflow_layers::{IntBuffer, Param, Tensor};

    /// Two trainable tensors and a buffer.
    struct Toy<T: Real> {
        a: Param<T>,
        b: Param<T>,
        buf: Param<T>,
    }

    impl<T: Real> Params<T> for Toy<T> {
        fn visit_params(&self, _: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
            f("a", &self.a);
            f("buf", &self.buf);
            f("b", &self.b);
        }
        fn visit_params_mut(&mut self, _: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
            f("a", &mut self.a);
            f("buf", &mut self.buf);
            f("b", &mut self.b);
        }
        fn visit_int(&self, _: &str, _: &mut dyn FnMut(&str, &IntBuffer)) {}
        fn visit_int_mut(&mut self, _: &str, _: &mut dyn FnMut(&str, &mut IntBuffer)) {}
    }

    fn toy<T: Real>() -> Toy<T> {
        let t = |v: &[f64]| Tensor::new(&[v.len()], v.iter().map(|&x| T::lit(x)).collect()).expect("tensor");
        let mut a = Param::trainable(t(&[0.5, -1.0, 2.0]));
        a.grad = t(&[0.1, -0.2, 0.3]);
        let mut b = Param::trainable(t(&[1.0]));
        b.grad = t(&[-4.0]);
        Toy {
            a,
            b,
            buf: Param::buffer(t(&[7.0])),
        }
    }

    /// The f64 update is the textbook formula evaluated in f64, operation by operation (the
    /// expected values are computed here by the formula, not copied from a run).
    #[test]
    fn f64_steps_follow_the_formula_exactly_and_skip_buffers() {
        let mut model = toy::<f64>();
        let mut adam = Adam::<f64>::new(AdamConfig::default());
        let (b1, b2, eps, lr, scale) = (0.9f64, 0.999f64, 1e-8f64, 1e-2f64, 0.5f64);
        let mut w = vec![0.5, -1.0, 2.0];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=3 {
            adam.step(&mut model, lr, scale).expect("finite");
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            for k in 0..3 {
                let g = [0.1, -0.2, 0.3][k] * scale;
                m[k] = b1 * m[k] + (1.0 - b1) * g;
                v[k] = b2 * v[k] + (1.0 - b2) * g * g;
                w[k] -= lr * (m[k] / c1) / ((v[k] / c2).sqrt() + eps);
            }
        }
        assert_eq!(model.a.value.as_slice(), w.as_slice());
        assert_eq!(model.buf.value.as_slice(), &[7.0]);
        let (ms, vs) = adam.moments();
        assert_eq!(ms["a"], m);
        assert_eq!(vs["a"], v);
        assert!(!ms.contains_key("buf"));
    }

    /// Moments saved by name and given back continue the run exactly (in f32, whose moments
    /// widen to f64 and round back without change).
    #[test]
    fn moments_by_name_resume_exactly_in_f32() {
        let mut straight = toy::<f32>();
        let mut adam = Adam::<f32>::new(AdamConfig::default());
        adam.step(&mut straight, 1e-2, 1.0).expect("finite");
        let (m, v) = adam.moments();
        let mut resumed = Adam::<f32>::with_moments(adam.config, adam.t, m, v);
        let mut copy = toy::<f32>();
        copy.a.value = straight.a.value.clone();
        copy.b.value = straight.b.value.clone();
        adam.step(&mut straight, 1e-2, 1.0).expect("finite");
        resumed.step(&mut copy, 1e-2, 1.0).expect("finite");
        assert_eq!(straight.a.value.as_slice(), copy.a.value.as_slice());
        assert_eq!(straight.b.value.as_slice(), copy.b.value.as_slice());
        assert_eq!(adam.moments(), resumed.moments());
    }

    #[test]
    fn a_non_finite_gradient_updates_nothing_and_another_model_is_refused() {
        let mut model = toy::<f64>();
        model.b.grad = Tensor::new(&[1], vec![f64::NAN]).expect("tensor");
        let mut adam = Adam::<f64>::new(AdamConfig::default());
        let e = adam.step(&mut model, 1e-2, 1.0).expect_err("NaN gradient");
        assert!(e.to_string().contains("gradient of b"), "{e}");
        assert_eq!(model.a.value.as_slice(), &[0.5, -1.0, 2.0]);
        assert_eq!(adam.t, 0);
        let mut ok = toy::<f64>();
        adam.step(&mut ok, 1e-2, 1.0).expect("finite");
        let mut other = toy::<f64>();
        other.a.value = Tensor::new(&[2], vec![1.0, 2.0]).expect("tensor");
        other.a.grad = other.a.value.zeros_like();
        let e = adam.step(&mut other, 1e-2, 1.0).expect_err("another model");
        assert!(e.to_string().contains("another model"), "{e}");
    }

    #[test]
    fn an_update_that_overflows_is_a_divergence() {
        let mut model = toy::<f32>();
        model.b.value = Tensor::new(&[1], vec![f32::MAX]).expect("tensor");
        let mut adam = Adam::<f32>::new(AdamConfig::default());
        // lr 1e38 with |m̂ / sqrt(v̂)| = 1 moves b by about 1e38 beyond f32::MAX.
        let e = adam.step(&mut model, 1e38, 1.0).expect_err("overflow");
        assert!(e.to_string().contains("made b non-finite"), "{e}");
    }

    /// `clip_and_step` is `grad_norm`, the clipping factor and `step`, to the bit, both when it
    /// clips and when it does not; and with an infinite or NaN gradient it scans, reports the
    /// gradient and writes nothing.
    #[test]
    fn clip_and_step_is_norm_then_step_and_still_refuses_bad_gradients() {
        for max_norm in [None, Some(1e-3), Some(100.0)] {
            let (mut a, mut b) = (toy::<f32>(), toy::<f32>());
            let (mut adam_a, mut adam_b) = (Adam::<f32>::default(), Adam::<f32>::default());
            for _ in 0..3 {
                let norm = adam_a.clip_and_step(&mut a, 1e-2, max_norm).expect("finite");
                let expected = Adam::grad_norm(&b);
                assert_eq!(norm.to_bits(), expected.to_bits());
                let scale = match max_norm {
                    Some(c) if expected > c => c / expected,
                    _ => 1.0,
                };
                adam_b.step(&mut b, 1e-2, scale).expect("finite");
                assert_eq!(a.a.value.as_slice(), b.a.value.as_slice());
                assert_eq!(a.b.value.as_slice(), b.b.value.as_slice());
            }
        }
        for bad in [f32::NAN, f32::INFINITY] {
            let mut model = toy::<f32>();
            model.b.grad = Tensor::new(&[1], vec![bad]).expect("tensor");
            let mut adam = Adam::<f32>::default();
            let e = adam
                .clip_and_step(&mut model, 1e-2, Some(1.0))
                .expect_err("bad gradient");
            assert!(e.to_string().contains("gradient of b"), "{e}");
            assert_eq!(model.a.value.as_slice(), &[0.5, -1.0, 2.0]);
            assert_eq!(adam.t, 0);
        }
    }
}
