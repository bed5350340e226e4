//! Named parameters and the visitor that walks them.
//!
//! Every layer owns its parameters as [`Param`]s (values, an accumulated gradient of the same
//! shape, and whether the optimizer may change them) and exposes them through [`Params`]: a
//! visitor that yields each parameter under a stable, dotted name such as
//! `flow.3.coupling.net.0.weight`. Optimizers, parameter counting, checkpoints and gradient checks
//! are all written once against the visitor.
//!
//! Integer and boolean state that is saved but never trained (a permutation, the signs of an LU
//! diagonal, a "has been initialized" flag) is an [`IntBuffer`], visited by
//! [`Params::visit_int`]: it is exact whatever the scalar type, validated once when it is set
//! (never on every pass), and stored in checkpoints as integers.

use exactflow_kernels::{Error, Real, Result};

use crate::tensor::Tensor;

/// Whether the optimizer updates a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Learned by gradient descent; has a gradient.
    Trainable,
    /// Real-valued state saved with the model but not trained (batch norm's running
    /// statistics); its gradient stays zero. Integer state is an [`IntBuffer`] instead.
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

/// What the values of an [`IntBuffer`] mean, and so which values are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKind {
    /// A permutation of `0..len`: every index exactly once (stored as I64).
    Permutation,
    /// Signs: every entry is -1 or +1 (stored as I8).
    Sign,
    /// Booleans: every entry is 0 or 1 (stored as BOOL).
    Flag,
}

impl IntKind {
    /// A lower-case name for messages ("permutation", "sign", "flag").
    pub fn name(self) -> &'static str {
        match self {
            IntKind::Permutation => "permutation",
            IntKind::Sign => "sign",
            IntKind::Flag => "flag",
        }
    }
}

/// Integer or boolean state saved with a model but never trained: a fixed permutation, the
/// signs of an LU diagonal, an initialization flag. The values always satisfy the rule of their
/// [`IntKind`]: the constructors and [`IntBuffer::set`] check it, so layers read them without
/// re-validating on every pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntBuffer {
    values: Vec<i64>,
    kind: IntKind,
}

impl IntBuffer {
    /// A permutation buffer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `perm` is not a permutation of `0..perm.len()`.
    pub fn permutation(perm: &[usize]) -> Result<Self> {
        let values = perm.iter().map(|&p| i64::try_from(p).unwrap_or(-1)).collect();
        Self::new(IntKind::Permutation, values)
    }

    /// A sign buffer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when an entry is not -1 or +1.
    pub fn signs(signs: &[i64]) -> Result<Self> {
        Self::new(IntKind::Sign, signs.to_vec())
    }

    /// A one-entry flag.
    pub fn flag(on: bool) -> Self {
        IntBuffer {
            values: vec![i64::from(on)],
            kind: IntKind::Flag,
        }
    }

    fn new(kind: IntKind, values: Vec<i64>) -> Result<Self> {
        check_int(kind, &values)?;
        Ok(IntBuffer { values, kind })
    }

    /// The kind of state.
    pub fn kind(&self) -> IntKind {
        self.kind
    }

    /// The values.
    pub fn values(&self) -> &[i64] {
        &self.values
    }

    /// Number of entries (the buffer is a vector `[len]`).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A permutation buffer's values as indices. Valid by construction.
    pub fn indices(&self) -> Vec<usize> {
        // invariant: a Permutation buffer holds indices in 0..len (checked when set).
        self.values.iter().map(|&v| v as usize).collect()
    }

    /// A flag buffer's first entry.
    pub fn is_set(&self) -> bool {
        self.values.first().is_some_and(|&v| v != 0)
    }

    /// Replaces the values (e.g. from a checkpoint), keeping the length and the kind.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] for another length; [`Error::InvalidArgument`] when the values
    /// break the kind's rule (the buffer is then unchanged).
    pub fn set(&mut self, values: Vec<i64>) -> Result<()> {
        if values.len() != self.values.len() {
            return Err(Error::LengthMismatch {
                op: "IntBuffer::set",
                what: "values",
                expected: self.values.len(),
                found: values.len(),
            });
        }
        check_int(self.kind, &values)?;
        self.values = values;
        Ok(())
    }
}

fn check_int(kind: IntKind, values: &[i64]) -> Result<()> {
    let bad = |i: usize, why: String| {
        Err(Error::invalid(
            "IntBuffer",
            "values",
            format!("entry {i} of a {} buffer {why}", kind.name()),
        ))
    };
    match kind {
        IntKind::Permutation => {
            let n = values.len();
            let mut seen = vec![false; n];
            for (i, &v) in values.iter().enumerate() {
                let Some(k) = usize::try_from(v).ok().filter(|&k| k < n) else {
                    return bad(i, format!("is {v}, expected an index in 0..{n}"));
                };
                if std::mem::replace(&mut seen[k], true) {
                    return bad(i, format!("repeats the index {k}"));
                }
            }
        }
        IntKind::Sign => {
            if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| v.abs() != 1) {
                return bad(i, format!("is {v}, expected -1 or +1"));
            }
        }
        IntKind::Flag => {
            if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !(0..=1).contains(*v)) {
                return bad(i, format!("is {v}, expected 0 or 1"));
            }
        }
    }
    Ok(())
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

    /// Calls `f(name, buffer)` for every integer buffer (none by default).
    fn visit_int(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &IntBuffer)) {}

    /// Calls `f(name, buffer)` for every integer buffer, mutably (loading).
    fn visit_int_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut IntBuffer)) {}

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
