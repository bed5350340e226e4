//! [`Stage`]: the one interface a flow composes, an invertible layer or a factor-out.
//!
//! A flow is a list of stages applied in the forward (data -> latent) direction. Most stages are
//! [`Bijector`]s wrapped in a [`Layer`] (see [`layer`]). A *factor-out* stage
//! (a multi-scale [`crate::Split`]) also hands part of its input out of the flow as a latent of its
//! own ([`Factored`]): the rest continues through the following stages. The factored latent is
//! scored either by the stage's own conditional prior (Glow) or, when the stage has none, by the
//! flow's base distribution (RealNVP); so a stage reports `log_p: None` for the latter and the
//! flow fills it in.
//!
//! For the inverse direction a factor-out stage needs its latent back: [`Stage::inverse`] takes
//! it as `factored`, which the caller takes from a stored encoding or draws with
//! [`Stage::sample_factored`]. Plain layers ignore `factored` and report `None` from
//! [`Stage::factored_shape`].

use exactflow_kernels::{F1, Interval, Real, Result};
use rand::RngCore;

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass};
use crate::ctx::Ctx;
use crate::params::{IntBuffer, Param, Params};
use crate::tensor::Tensor;

/// A latent a stage factors out of the flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Factored<T> {
    /// The latent, `[N, ...]` of the stage's [`Stage::factored_shape`].
    pub z: Tensor<T>,
    /// Its log-density under the stage's own prior, per sample; `None` when the flow's base
    /// distribution scores it.
    pub log_p: Option<Vec<T>>,
}

/// What a stage's forward pass returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<T> {
    /// The output that continues through the flow.
    pub out: Tensor<T>,
    /// log|det d out / d x| per sample (0 for a factor-out, which only moves elements).
    pub log_det: Vec<T>,
    /// The latent this stage factored out, if it is a factor-out stage.
    pub factored: Option<Factored<T>>,
}

/// One stage of a flow: an invertible layer or a factor-out (see the module documentation).
///
/// The direction and the [`Ctx`] are those of [`Bijector`]. A training pass's [`Cache`] goes to
/// [`Stage::backward`]; a memory-efficient caller may drop it and rebuild it from the output
/// ([`Stage::inverse_replay`], then `forward_train(.., Pass::Replay)`).
pub trait Stage<T: Real>: Params<T> + Send + Sync {
    /// A short name of the stage type ("AffineCoupling", "Split", ...).
    fn kind(&self) -> &'static str;

    /// The sample shape the stage accepts, and the one it passes on.
    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>);

    /// The sample shape of the latent the stage factors out; `None` for a plain layer.
    fn factored_shape(&self) -> Option<Vec<usize>> {
        None
    }

    /// Forward (data -> latent), inference mode.
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Step<T>>;

    /// Forward in training mode, with the cache for [`Stage::backward`].
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, pass: Pass) -> Result<(Step<T>, Cache)>;

    /// Inverse (latent -> data): the stage's input from its output `z` and, for a factor-out
    /// stage, its factored latent; with log|det dx/dz| per sample.
    ///
    /// # Errors
    /// As [`Bijector::inverse`]; a factor-out stage without its latent, or a plain layer given one.
    fn inverse(&self, z: &Tensor<T>, factored: Option<&Tensor<T>>, cx: Ctx<'_, T>) -> Result<Mapped<T>>;

    /// The inverse of the last `Pass::Train` map (batch statistics), for memory-efficient
    /// training.
    ///
    /// # Errors
    /// As [`Stage::inverse`].
    fn inverse_replay(&self, z: &Tensor<T>, factored: Option<&Tensor<T>>, cx: Ctx<'_, T>) -> Result<Tensor<T>>;

    /// A draw of the factored latent given the rest from the stage's own prior at `temperature`,
    /// with its log-density; `None` when the stage has no prior (the flow's base distribution
    /// draws it) or is not a factor-out.
    ///
    /// # Errors
    /// A wrong shape or NaN/inf in `rest`; a negative or non-finite temperature.
    fn sample_factored(
        &self,
        _rest: &Tensor<T>,
        _temperature: f64,
        _rng: &mut dyn RngCore,
        _cx: Ctx<'_, T>,
    ) -> Result<Option<(Tensor<T>, Vec<T>)>> {
        Ok(None)
    }

    /// Backpropagates dL/dout, dL/dfactored (`None`: zero, or a prior-scored latent whose
    /// gradient the stage computes itself) and dL/dlog_p per sample (the weight of the stage's
    /// log-det and of its prior's log-density), accumulating parameter gradients.
    ///
    /// # Errors
    /// As [`Bijector::backward`].
    fn backward(
        &mut self,
        cache: Cache,
        dout: &Tensor<T>,
        dfactored: Option<&Tensor<T>>,
        dlog_p: &[T],
    ) -> Result<InputGrad<T>>;

    /// The same stage (parameters and state) in f64.
    fn to_f64(&self) -> Box<dyn Stage<f64>>;

    /// The same stage on forward-mode dual numbers.
    fn to_dual(&self) -> Box<dyn Stage<F1>>;

    /// The same stage on intervals (parameters as point intervals), for certified enclosures.
    fn to_interval(&self) -> Box<dyn Stage<Interval>>;

    /// The stage as a layer (`None` for a factor-out), for per-layer checks such as the audit.
    fn as_bijector(&self) -> Option<&dyn Bijector<T>> {
        None
    }
}

/// A [`Bijector`] as a stage that factors nothing out.
pub struct Layer<T: Real>(pub Box<dyn Bijector<T>>);

/// A layer as a boxed stage.
pub fn layer<T: Real>(b: impl Bijector<T> + 'static) -> Box<dyn Stage<T>> {
    Box::new(Layer(Box::new(b)))
}

fn no_factored(op: &'static str, factored: Option<&impl Sized>) -> Result<()> {
    if factored.is_some() {
        return Err(exactflow_kernels::Error::invalid(
            op,
            "factored latent",
            "a layer that factors nothing out was given a factored latent",
        ));
    }
    Ok(())
}

impl<T: Real> Params<T> for Layer<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        self.0.visit_params(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        self.0.visit_params_mut(prefix, f);
    }

    fn visit_int(&self, prefix: &str, f: &mut dyn FnMut(&str, &IntBuffer)) {
        self.0.visit_int(prefix, f);
    }

    fn visit_int_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut IntBuffer)) {
        self.0.visit_int_mut(prefix, f);
    }
}

impl<T: Real> Stage<T> for Layer<T> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        self.0.sample_shapes()
    }

    fn as_bijector(&self) -> Option<&dyn Bijector<T>> {
        Some(self.0.as_ref())
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Step<T>> {
        let (out, log_det) = self.0.forward(x, cx)?;
        Ok(Step {
            out,
            log_det,
            factored: None,
        })
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, pass: Pass) -> Result<(Step<T>, Cache)> {
        let (out, log_det, cache) = self.0.forward_train(x, cx, pass)?;
        let step = Step {
            out,
            log_det,
            factored: None,
        };
        Ok((step, cache))
    }

    fn inverse(&self, z: &Tensor<T>, factored: Option<&Tensor<T>>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        no_factored("Stage::inverse", factored)?;
        self.0.inverse(z, cx)
    }

    fn inverse_replay(&self, z: &Tensor<T>, factored: Option<&Tensor<T>>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        no_factored("Stage::inverse_replay", factored)?;
        self.0.inverse_replay(z, cx)
    }

    fn backward(
        &mut self,
        cache: Cache,
        dout: &Tensor<T>,
        dfactored: Option<&Tensor<T>>,
        dlog_p: &[T],
    ) -> Result<InputGrad<T>> {
        no_factored("Stage::backward", dfactored)?;
        self.0.backward(cache, dout, dlog_p)
    }

    fn to_f64(&self) -> Box<dyn Stage<f64>> {
        Box::new(Layer(self.0.to_f64()))
    }

    fn to_dual(&self) -> Box<dyn Stage<F1>> {
        Box::new(Layer(self.0.to_dual()))
    }

    fn to_interval(&self) -> Box<dyn Stage<Interval>> {
        Box::new(Layer(self.0.to_interval()))
    }
}
