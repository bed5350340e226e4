//! Named parameters and the visitor that walks them.
//!
//! Every layer owns its parameters as [`Param`]s (values, an accumulated gradient of the same
//! shape, and whether the optimizer may change them) and exposes them through [`Params`]: a
//! visitor that yields each parameter under a stable, dotted name such as
//! `flow.3.coupling.net.0.weight`. Optimizers, parameter counting, checkpoints and gradient checks
//! are all written once against the visitor.

use exactflow_kernels::{Error, Real, Result};

use crate::tensor::Tensor;

/// Whether the optimizer updates a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Learned by gradient descent; has a gradient.
    Trainable,
    /// State saved with the model but not trained (running statistics, the ActNorm `initialized`
    /// flag, fixed permutations); its gradient stays zero.
    Buffer,
}

/// A parameter tensor with its accumulated gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Param<T> {
    /// The values, in PyTorch's layout for the layer (Linear `[out, in]`, Conv2d `[out, in, kh, kw]`).
    pub value: Tensor<T>,
    /// dL/dvalue accumulated by backward passes since the last [`Param::zero_grad`].
    pub grad: Tensor<T>,
    /// Trainable or buffer.
    pub kind: ParamKind,
}

impl<T: Real> Param<T> {
    /// A trainable parameter with a zero gradient.
    pub fn trainable(value: Tensor<T>) -> Self {
        let grad = value.zeros_like();
        Param {
            value,
            grad,
            kind: ParamKind::Trainable,
        }
    }

    /// A buffer (saved, not trained).
    pub fn buffer(value: Tensor<T>) -> Self {
        let grad = value.zeros_like();
        Param {
            value,
            grad,
            kind: ParamKind::Buffer,
        }
    }

    /// The values as a flat slice.
    pub fn values(&self) -> &[T] {
        self.value.as_slice()
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grad.as_mut_slice().iter_mut().for_each(|g| *g = T::zero());
    }

    /// Adds `g` into the gradient.
    ///
    /// # Panics
    /// When `g` does not have as many elements as the parameter (a broken layer invariant).
    pub fn accumulate(&mut self, g: &[T]) {
        assert_eq!(
            g.len(),
            self.grad.len(),
            "invariant: gradient length equals parameter length"
        );
        for (a, &b) in self.grad.as_mut_slice().iter_mut().zip(g) {
            *a += b;
        }
    }

    /// The same parameter in another scalar type (values and gradient through f64).
    pub fn cast<U: Real>(&self) -> Param<U> {
        Param {
            value: self.value.cast(),
            grad: self.grad.cast(),
            kind: self.kind,
        }
    }
}

/// Joins a prefix and a name with a dot (no dot when the prefix is empty).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Something that owns named parameters.
pub trait Params<T: Real> {
    /// Calls `f(name, param)` for every parameter, names prefixed with `prefix`.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>));

    /// Calls `f(name, param)` for every parameter, mutably (optimizers, loading, zeroing).
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>));

    /// Number of trainable scalars.
    fn num_trainable(&self) -> usize {
        let mut n = 0;
        self.visit_params("", &mut |_, p| {
            if p.kind == ParamKind::Trainable {
                n += p.value.len();
            }
        });
        n
    }

    /// Zeroes every gradient.
    fn zero_grad(&mut self) {
        self.visit_params_mut("", &mut |_, p| p.zero_grad());
    }

    /// Fails on the first parameter holding NaN or an infinity, naming it.
    ///
    /// # Errors
    /// [`Error::NonFiniteParameter`].
    fn check_params_finite(&self, prefix: &str) -> Result<()> {
        let mut bad = None;
        self.visit_params(prefix, &mut |name, p| {
            if bad.is_none()
                && let Some((index, value)) = p.value.first_non_finite()
            {
                bad = Some(Error::NonFiniteParameter {
                    name: name.to_string(),
                    index,
                    value,
                });
            }
        });
        bad.map_or(Ok(()), Err)
    }
}

/// Implements [`Params`] for a type with no parameters.
#[macro_export]
macro_rules! no_params {
    ($ty:ident) => {
        impl<T: exactflow_kernels::Real> $crate::params::Params<T> for $ty<T> {
            fn visit_params(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &$crate::params::Param<T>)) {}
            fn visit_params_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut $crate::params::Param<T>)) {}
        }
    };
}

/// Implements [`Params`] for a unit struct with no parameters (for every scalar type).
#[macro_export]
macro_rules! no_params_unit {
    ($ty:ident) => {
        impl<T: exactflow_kernels::Real> $crate::params::Params<T> for $ty {
            fn visit_params(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &$crate::params::Param<T>)) {}
            fn visit_params_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut $crate::params::Param<T>)) {}
        }
    };
}
