//! The invertible-layer trait and its training-pass plumbing.
//!
//! **Direction.** `forward` maps data to latent (the normalizing direction, G^-1 in the lecture's
//! notation) and returns `log|det dz/dx|` for each sample; `inverse` maps latent to data
//! (generation) and returns `log|det dx/dz|`, which is minus the forward log-det at the matching
//! point. A flow scores `log p(x) = log pi(z) + sum_k logdet_k`.
//!
//! **Training.** [`Bijector::forward_train`] runs the training-mode map (batch statistics for
//! batch norm, ActNorm's data-dependent initialization on its first batch) and returns a [`Cache`]
//! holding what [`Bijector::backward`] needs, so that backward never recomputes the forward.
//! `backward` takes dL/dz and dL/dlogdet, accumulates dL/dtheta into each [`Param::grad`] and
//! returns dL/dx.
//!
//! **Memory-efficient training.** A caller may drop the caches, recompute each layer's input from
//! its output with [`Bijector::inverse_replay`] and rebuild the cache with
//! `forward_train(x, Pass::Replay)`, which applies the very same map without touching the layer's
//! state. Activation memory then does not grow with depth.

use std::any::Any;

use exactflow_kernels::{Error, F1, Interval, Real, Result};

use crate::ctx::Ctx;
use crate::params::Params;
use crate::spline::BinStats;
use crate::tensor::Tensor;

#[allow(unused_imports)] // for the doc links
use crate::params::Param;

/// What a training forward pass may do to a layer's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// A training step: may initialize (ActNorm's first batch) and update running statistics
    /// (batch norm); layers record whatever they need to replay the same map.
    Train,
    /// Recompute the map of the last `Train` pass (memory-efficient backward): same output, no
    /// state change.
    Replay,
}

/// Activations a layer keeps from `forward_train` for its `backward`. Opaque to callers.
pub struct Cache {
    layer: &'static str,
    data: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.layer)
    }
}

impl Cache {
    /// Wraps a layer's activations.
    pub fn new<C: Any + Send + Sync>(layer: &'static str, data: C) -> Self {
        Cache {
            layer,
            data: Box::new(data),
        }
    }

    /// Unwraps the activations of the expected type.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the cache came from another kind of layer.
    pub fn take<C: Any>(self, layer: &'static str) -> Result<C> {
        let from = self.layer;
        self.data.downcast::<C>().map(|b| *b).map_err(|_| {
            Error::invalid(
                layer,
                "cache",
                format!("backward was given the cache of a {from} layer"),
            )
        })
    }
}

/// Output of a forward or inverse pass: the transformed tensor and one log-det per sample.
pub type Mapped<T> = (Tensor<T>, Vec<T>);

/// What a backward pass returns: dL/dx for its input and, when the call had a context that the
/// layer reads, dL/dcontext (`[N, C]`, the context's shape). `context` is `None` when the layer
/// does not depend on the context (its gradient is zero).
#[derive(Clone, Debug, PartialEq)]
pub struct InputGrad<T> {
    /// dL/dx, of the input's shape.
    pub x: Tensor<T>,
    /// dL/dcontext, of the context's shape, or `None` for zero.
    pub context: Option<Tensor<T>>,
}

impl<T: Real> InputGrad<T> {
    /// A gradient for the input only (the layer ignores the context).
    pub fn input(x: Tensor<T>) -> Self {
        InputGrad { x, context: None }
    }

    /// Adds another context gradient into this one (`None` is zero).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the two gradients have different shapes.
    pub fn add_context(&mut self, other: Option<Tensor<T>>) -> Result<()> {
        self.context = sum_optional(self.context.take(), other)?;
        Ok(())
    }
}

/// `a + b` where `None` stands for zero.
///
/// # Errors
/// [`Error::ShapeMismatch`] when both are present with different shapes.
pub fn sum_optional<T: Real>(a: Option<Tensor<T>>, b: Option<Tensor<T>>) -> Result<Option<Tensor<T>>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(a.zip_map(&b, |p, q| p + q)?),
        (a, None) => a,
        (None, b) => b,
    })
}

/// An invertible layer with an exact log-determinant and a hand-written backward pass.
///
/// Implementations are generic over [`Real`], so the same code runs in f32, f64 and on dual
/// numbers ([`Bijector::to_dual`]), which is how the property tests obtain exact Jacobians.
///
/// Every pass takes a [`Ctx`]: the context of a conditional flow (`[N, C]`, one row per sample;
/// unconditional layers ignore it, but still refuse one whose batch differs from the input's)
/// and the parallelism of the matrix products.
pub trait Bijector<T: Real>: Params<T> + Send + Sync {
    /// A short name of the layer type ("AffineCoupling", "ActNorm", ...).
    fn kind(&self) -> &'static str;

    /// True when log|det| does not depend on the input (additive couplings, permutations,
    /// squeezes, 1x1 convolutions): callers may skip per-sample work.
    fn constant_log_det(&self) -> bool {
        false
    }

    /// The sample shape the layer accepts (without the batch axis), and the one it produces.
    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>);

    /// z = f(x), data -> latent, with log|det dz/dx| per sample. Inference mode (running
    /// statistics for batch norm).
    ///
    /// # Errors
    /// A wrong input shape, NaN/inf in the input or a parameter, a context whose batch differs
    /// from the input's.
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>>;

    /// x = f^-1(z), latent -> data, with log|det dx/dz| per sample. Inference mode.
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>>;

    /// The training-mode forward; returns z, the log-dets and the cache for [`Bijector::backward`].
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)>;

    /// The inverse of the map applied by the last `forward_train(.., Pass::Train)`. Equal to
    /// [`Bijector::inverse`] for every layer without batch statistics.
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn inverse_replay(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        Ok(self.inverse(z, cx)?.0)
    }

    /// Backpropagates: given the cache of `forward_train`, dL/dz and dL/dlogdet (one per sample),
    /// adds dL/dtheta into the parameters' gradients and returns dL/dx (and dL/dcontext when the
    /// layer reads the context). The cache remembers the context and parallelism of its pass.
    ///
    /// # Errors
    /// Shape mismatches between `dz`, `dlogdet` and the cached pass; a cache of another layer.
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>>;

    /// Per-bin statistics of a piecewise layer (a spline) at the batch `x`: for each bin, how
    /// many inputs fell in it, its smallest width and height and its conditioning (see
    /// [`BinStats`]); `None` for layers without bins. Used by the audit.
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn bin_stats(&self, _x: &Tensor<T>, _cx: Ctx<'_, T>) -> Result<Option<Vec<BinStats>>> {
        Ok(None)
    }

    /// The same layer (parameters and state) in f64.
    fn to_f64(&self) -> Box<dyn Bijector<f64>>;

    /// The same layer on forward-mode dual numbers, for exact Jacobians.
    fn to_dual(&self) -> Box<dyn Bijector<F1>>;

    /// The same layer on intervals, for certified enclosures: every parameter becomes the point
    /// interval of its value (exactly, from f32 or f64).
    fn to_interval(&self) -> Box<dyn Bijector<Interval>>;
}

/// Implements [`Bijector::to_f64`], [`Bijector::to_dual`] and [`Bijector::to_interval`]
/// through a `cast::<U>()` method of the layer type.
#[macro_export]
macro_rules! impl_cast {
    () => {
        fn to_f64(&self) -> Box<dyn $crate::Bijector<f64>> {
            Box::new(self.cast::<f64>())
        }
        fn to_dual(&self) -> Box<dyn $crate::Bijector<exactflow_kernels::F1>> {
            Box::new(self.cast::<exactflow_kernels::F1>())
        }
        fn to_interval(&self) -> Box<dyn $crate::Bijector<exactflow_kernels::Interval>> {
            Box::new(self.cast::<exactflow_kernels::Interval>())
        }
    };
}

/// Checks the shape and finiteness of a layer input, its context and its parameters: the common
/// prologue of every forward and inverse. The parameters are not scanned when the caller has
/// checked them ([`Ctx::params_checked`]).
///
/// # Errors
/// [`Error::ShapeMismatch`], [`Error::LengthMismatch`] (a context batch that differs from the
/// input's), [`Error::NonFinite`] or [`Error::NonFiniteParameter`].
pub fn check_input<T: Real, L: Params<T> + ?Sized>(
    layer: &L,
    op: &'static str,
    x: &Tensor<T>,
    cx: Ctx<'_, T>,
    sample_shape: &[usize],
) -> Result<()> {
    x.expect_sample_shape(op, sample_shape)?;
    x.check_finite(op, "input")?;
    cx.check_batch(op, x.batch())?;
    if cx.params_checked {
        return Ok(());
    }
    layer.check_params_finite(op)
}

/// Checks a backward pass's incoming gradients against the batch and shape of its cached pass.
///
/// # Errors
/// [`Error::ShapeMismatch`] or [`Error::LengthMismatch`].
pub fn check_grads<T: Real>(op: &'static str, dz: &Tensor<T>, dlogdet: &[T], out_shape: &[usize]) -> Result<()> {
    dz.expect_shape(op, out_shape)?;
    if dlogdet.len() != out_shape[0] {
        return Err(Error::LengthMismatch {
            op,
            what: "dlogdet",
            expected: out_shape[0],
            found: dlogdet.len(),
        });
    }
    Ok(())
}
