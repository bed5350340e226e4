//! `Sequential`: layers composed in order; its log-det is the sum of its members'.
//!
//! For z = f_K(...f_1(x)), log|det dz/dx| = sum_k log|det J_k| (the chain rule makes the
//! Jacobian a product, and the determinant of a product is the product of determinants).

use exactflow_kernels::{Error, F1, Real, Result};

use crate::bijector::{Bijector, Cache, Mapped, Pass};
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// Layers applied in order: `forward` runs them first to last, `inverse` last to first.
/// Parameter names are `{index}.{name}` (e.g. `3.net.0.weight`).
pub struct Sequential<T: Real> {
    layers: Vec<Box<dyn Bijector<T>>>,
}

impl<T: Real> Sequential<T> {
    /// A composition of `layers`, checked so that each layer's output sample shape is the next
    /// layer's input sample shape.
    ///
    /// # Errors
    /// [`Error::Empty`] for no layers; [`Error::ShapeMismatch`] naming the first mismatch.
    pub fn new(layers: Vec<Box<dyn Bijector<T>>>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Empty {
                op: "Sequential::new",
                what: "list of layers",
            });
        }
        for pair in layers.windows(2) {
            let out = pair[0].sample_shapes().1;
            let inp = pair[1].sample_shapes().0;
            if out != inp {
                return Err(Error::ShapeMismatch {
                    op: "Sequential::new",
                    expected: out,
                    found: inp,
                });
            }
        }
        Ok(Sequential { layers })
    }

    /// The layers, in forward order.
    pub fn layers(&self) -> &[Box<dyn Bijector<T>>] {
        &self.layers
    }

    /// The layers, mutably.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Bijector<T>>] {
        &mut self.layers
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers (never true for a constructed `Sequential`).
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Real> Params<T> for Sequential<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.visit_params(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_params_mut(&join(prefix, &i.to_string()), f);
        }
    }
}

fn add_into<T: Real>(acc: &mut [T], ld: &[T]) {
    for (a, &b) in acc.iter_mut().zip(ld) {
        *a += b;
    }
}

impl<T: Real> Bijector<T> for Sequential<T> {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn constant_log_det(&self) -> bool {
        self.layers.iter().all(|l| l.constant_log_det())
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        let first = self.layers.first().map(|l| l.sample_shapes().0).unwrap_or_default();
        let last = self.layers.last().map(|l| l.sample_shapes().1).unwrap_or_default();
        (first, last)
    }

    fn forward(&self, x: &Tensor<T>) -> Result<Mapped<T>> {
        let mut total = vec![T::zero(); x.batch()];
        let mut h = x.clone();
        for l in &self.layers {
            let (next, ld) = l.forward(&h)?;
            add_into(&mut total, &ld);
            h = next;
        }
        Ok((h, total))
    }

    fn inverse(&self, z: &Tensor<T>) -> Result<Mapped<T>> {
        let mut total = vec![T::zero(); z.batch()];
        let mut h = z.clone();
        for l in self.layers.iter().rev() {
            let (next, ld) = l.inverse(&h)?;
            add_into(&mut total, &ld);
            h = next;
        }
        Ok((h, total))
    }

    fn forward_train(&mut self, x: &Tensor<T>, pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        let mut total = vec![T::zero(); x.batch()];
        let mut caches = Vec::with_capacity(self.layers.len());
        let mut h = x.clone();
        for l in &mut self.layers {
            let (next, ld, c) = l.forward_train(&h, pass)?;
            add_into(&mut total, &ld);
            caches.push(c);
            h = next;
        }
        Ok((h, total, Cache::new("Sequential", caches)))
    }

    fn inverse_replay(&self, z: &Tensor<T>) -> Result<Tensor<T>> {
        let mut h = z.clone();
        for l in self.layers.iter().rev() {
            h = l.inverse_replay(&h)?;
        }
        Ok(h)
    }

    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<Tensor<T>> {
        let caches: Vec<Cache> = cache.take("Sequential")?;
        if caches.len() != self.layers.len() {
            return Err(Error::invalid(
                "Sequential::backward",
                "cache",
                "layer count changed since forward_train",
            ));
        }
        // Every member's log-det enters the sum with weight 1, so each receives the same dlogdet.
        let mut g = dz.clone();
        for (l, c) in self.layers.iter_mut().zip(caches).rev() {
            g = l.backward(c, &g, dlogdet)?;
        }
        Ok(g)
    }

    fn to_f64(&self) -> Box<dyn Bijector<f64>> {
        Box::new(Sequential {
            layers: self.layers.iter().map(|l| l.to_f64()).collect(),
        })
    }

    fn to_dual(&self) -> Box<dyn Bijector<F1>> {
        Box::new(Sequential {
            layers: self.layers.iter().map(|l| l.to_dual()).collect(),
        })
    }
}
