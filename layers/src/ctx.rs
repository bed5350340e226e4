//! [`Ctx`]: what every layer, network and distribution call receives besides its input.
//!
//! Two things travel with a call rather than living in the layer or in process state:
//!
//! - the **context** `c` of a conditional flow, a batch `[N, C]` with one row per sample of the
//!   input (a conditional flow models `p(x | c)`; an unconditional layer ignores it);
//! - the **parallelism** of the matrix products, so that two flows (or two trainings) in one
//!   process can run with different thread counts at once, and a data-parallel trainer can run
//!   each shard single-threaded.
//!
//! `Ctx` is `Copy`: composites pass the same value to each member.

use exactflow_kernels::gemm::Parallelism;
use exactflow_kernels::{Error, Real, Result};

use crate::tensor::Tensor;

/// The conditioning context and the parallelism of one call (see the module documentation).
pub struct Ctx<'a, T> {
    /// The context batch `[N, C]` of a conditional flow, one row per input sample; `None` for an
    /// unconditional one.
    pub context: Option<&'a Tensor<T>>,
    /// The threads the call's matrix products may use. [`Parallelism::Sequential`] (the
    /// default) keeps results bit-for-bit reproducible whatever the machine.
    pub par: Parallelism,
    /// The caller vouches that every parameter of the layers it calls is finite (checked since
    /// they last changed), so the passes skip their scan of the parameters. Only a trainer that
    /// checks the values its optimizer writes sets it; the default is `false`.
    pub params_checked: bool,
}

// Derives would demand `T: Clone`; a `Ctx` only holds a reference.
impl<T> Clone for Ctx<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Ctx<'_, T> {}

impl<T: Real> std::fmt::Debug for Ctx<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let context = self.context.map(|c| c.shape().to_vec());
        f.debug_struct("Ctx")
            .field("context", &context)
            .field("par", &self.par)
            .field("params_checked", &self.params_checked)
            .finish()
    }
}

impl<T> Default for Ctx<'_, T> {
    fn default() -> Self {
        Self::NONE
    }
}

impl<'a, T> Ctx<'a, T> {
    /// No context, one thread.
    pub const NONE: Self = Ctx {
        context: None,
        par: Parallelism::Sequential,
        params_checked: false,
    };

    /// A call with `context` (or none) on one thread.
    pub fn new(context: Option<&'a Tensor<T>>) -> Self {
        Ctx { context, ..Self::NONE }
    }

    /// The same call with the matrix products on `par`.
    pub fn with_par(self, par: Parallelism) -> Self {
        Ctx { par, ..self }
    }

    /// The same call, vouching (`true`) or not that the parameters are finite (see
    /// [`Ctx::params_checked`]).
    pub fn with_params_checked(self, params_checked: bool) -> Self {
        Ctx { params_checked, ..self }
    }

    /// The same call with another context (a composite that transforms it, or a shard of it).
    pub fn with_context(self, context: Option<&'a Tensor<T>>) -> Self {
        Ctx { context, ..self }
    }
}

impl<T: Real> Ctx<'_, T> {
    /// Checks the context against an input batch of `n` samples: a rank-2 `[n, C]` tensor with
    /// finite entries, or none.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] naming both batch sizes when the context has another number of
    /// rows than the input has samples; [`Error::ShapeMismatch`] for a context that is not
    /// `[N, C]`; [`Error::NonFinite`] naming the row of the first NaN or infinity.
    pub fn check_batch(&self, op: &'static str, n: usize) -> Result<()> {
        let Some(c) = self.context else {
            return Ok(());
        };
        if c.rank() != 2 {
            return Err(Error::ShapeMismatch {
                op,
                expected: vec![n, c.sample_len()],
                found: c.shape().to_vec(),
            });
        }
        if c.batch() != n {
            return Err(Error::LengthMismatch {
                op,
                what: "context rows (the input's batch is the expected length)",
                expected: n,
                found: c.batch(),
            });
        }
        c.check_finite(op, "context")
    }

    /// The context's width `C`, or 0 without one.
    pub fn width(&self) -> usize {
        self.context.map_or(0, |c| c.sample_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bijector::Bijector;
    use crate::scaling::Scaling;

    #[test]
    fn a_context_of_another_batch_is_an_error_naming_both_sizes() {
        let layer = Scaling::<f64>::new(&[3]).unwrap();
        let x = Tensor::<f64>::zeros(&[4, 3]).unwrap();
        let c = Tensor::<f64>::zeros(&[5, 2]).unwrap();
        let e = layer.forward(&x, Ctx::new(Some(&c))).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains('4') && msg.contains('5'), "{msg}");
        assert!(matches!(
            e,
            Error::LengthMismatch {
                expected: 4,
                found: 5,
                ..
            }
        ));
        // An unconditional layer ignores a context of the right batch.
        let c = Tensor::<f64>::from_fn(&[4, 2], |k| k as f64).unwrap();
        assert_eq!(
            layer.forward(&x, Ctx::new(Some(&c))).unwrap(),
            layer.forward(&x, Ctx::NONE).unwrap()
        );
        // A context that is not [N, C], or holds NaN (named by its row), is refused.
        let c3 = Tensor::<f64>::zeros(&[4, 1, 2]).unwrap();
        assert!(matches!(
            layer.forward(&x, Ctx::new(Some(&c3))),
            Err(Error::ShapeMismatch { .. })
        ));
        let mut bad = c.clone();
        bad.as_mut_slice()[5] = f64::NAN;
        assert!(matches!(
            layer.forward(&x, Ctx::new(Some(&bad))),
            Err(Error::NonFinite { index: (2, 1), .. })
        ));
        assert_eq!(Ctx::new(Some(&c)).width(), 2);
        assert_eq!(Ctx::<f64>::NONE.width(), 0);
    }
}
