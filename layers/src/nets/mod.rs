//! Conditioner networks: the functions of the conditioning part that parameterize a coupling.
//!
//! A conditioner need not be invertible; it maps the coupling's A part (shape
//! [`Conditioner::in_shape`]) to the inner transform's parameters ([`Conditioner::out_shape`]).
//! Every network here has a hand-written backward pass, checked against finite differences by the
//! property tests. Weight layouts are PyTorch's (Linear `[out, in]`, Conv2d `[out, in, kh, kw]`),
//! so weights carry across.

mod activation;
mod conv2d;
mod glow_net;
mod linear;
mod made;
mod mlp;
mod resnet;
mod shift_table;

pub use activation::Activation;
pub use conv2d::Conv2d;
pub use glow_net::GlowNet;
pub use linear::Linear;
pub use made::{Made, MadeCache, MadeConfig, hidden_degree};
pub use mlp::{Mlp, MlpConfig};
pub use resnet::{ResNet, ResNetConfig};

use exactflow_kernels::{F1, Interval, Real, Result};

use crate::bijector::{Cache, InputGrad};
use crate::ctx::Ctx;
use crate::params::Params;
use crate::tensor::Tensor;

/// The context rows a conditioner's pass reads: `None` for an unconditional network
/// (`width = 0`: a given context is ignored), the `[n, width]` context checked otherwise.
///
/// # Errors
/// A missing context (naming `net`, the conditioner's kind), or one of another shape.
pub(crate) fn context_rows<'a, T: Real>(
    net: &str,
    op: &'static str,
    n: usize,
    width: usize,
    cx: Ctx<'a, T>,
) -> Result<Option<&'a [T]>> {
    if width == 0 {
        return Ok(None);
    }
    let Some(ctx) = cx.context else {
        return Err(exactflow_kernels::Error::invalid(
            op,
            "context",
            format!("this {net} is conditional and needs a context [N, {width}], none was given"),
        ));
    };
    ctx.expect_shape(op, &[n, width])?;
    Ok(Some(ctx.as_slice()))
}

/// A differentiable network with a hand-written backward pass.
///
/// Every pass takes a [`Ctx`]: the networks here read its parallelism and ignore its context
/// (they condition on their input alone); a conditional network reads the context too and
/// returns its gradient in [`InputGrad::context`].
pub trait Conditioner<T: Real>: Params<T> + Send + Sync {
    /// A short name of the network type ("Mlp", "ResNet", ...).
    fn kind(&self) -> &'static str;

    /// The sample shape of the input (without the batch axis).
    fn in_shape(&self) -> Vec<usize>;

    /// The sample shape of the output.
    fn out_shape(&self) -> Vec<usize>;

    /// `y = net(x)`.
    ///
    /// # Errors
    /// A wrong input shape.
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>>;

    /// `y = net(x)` keeping the activations [`Conditioner::backward`] needs.
    ///
    /// # Errors
    /// A wrong input shape.
    fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)>;

    /// Given dL/dy, adds dL/dtheta into the parameter gradients and returns dL/dx (and
    /// dL/dcontext for a network that reads the context).
    ///
    /// # Errors
    /// A `dy` whose shape differs from the cached output; a foreign cache.
    fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>>;

    /// The same network in f64.
    fn to_f64(&self) -> Box<dyn Conditioner<f64>>;

    /// The same network on dual numbers.
    fn to_dual(&self) -> Box<dyn Conditioner<F1>>;

    /// The same network on intervals (parameters as point intervals).
    fn to_interval(&self) -> Box<dyn Conditioner<Interval>>;
}

/// Implements [`Conditioner::to_f64`], [`Conditioner::to_dual`] and
/// [`Conditioner::to_interval`] through a `cast::<U>()` method.
#[macro_export]
macro_rules! impl_net_cast {
    () => {
        fn to_f64(&self) -> Box<dyn $crate::nets::Conditioner<f64>> {
            Box::new(self.cast::<f64>())
        }
        fn to_dual(&self) -> Box<dyn $crate::nets::Conditioner<exactflow_kernels::F1>> {
            Box::new(self.cast::<exactflow_kernels::F1>())
        }
        fn to_interval(&self) -> Box<dyn $crate::nets::Conditioner<exactflow_kernels::Interval>> {
            Box::new(self.cast::<exactflow_kernels::Interval>())
        }
    };
}
