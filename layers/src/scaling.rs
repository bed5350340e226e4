//! NICE's diagonal scaling layer: an elementwise scale `exp(s)` with one learned log-scale per
//! element of a sample.
//!
//! # Formula
//! For samples of any shape (`[D]`, `[C, H, W]`, ...), with a parameter `s` of the sample's shape,
//! forward (data -> latent):
//!
//! `z = exp(s) ⊙ x`,  `log|det dz/dx| = sum(s)` for every sample (constant in x);
//!
//! inverse (latent -> data) `x = exp(-s) ⊙ z`, log-det `-sum(s)`.
//!
//! NICE (Dinh et al., 2014, section 3.3) puts this layer last, after the additive couplings whose
//! log-det is 0, so that the flow can give each dimension its own scale. `s` starts at 0 (the
//! identity).

use exactflow_kernels::{Error, Real, Result};

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// Elementwise scaling `z = exp(s) ⊙ x`, log-det `sum(s)` per sample (see the module
/// documentation). One trainable parameter `s` of the sample's shape, initialized to 0.
#[derive(Clone, Debug)]
pub struct Scaling<T: Real> {
    /// The sample-shaped log-scale (trainable; named `s`).
    pub s: Param<T>,
    sample_shape: Vec<usize>,
}

/// What backward needs: the output (dL/ds = sum_n dz ⊙ z + sum_n dlogdet) and the scale.
struct ScalingCache<T> {
    z: Tensor<T>,
    scale: Vec<T>,
}

impl<T: Real> Scaling<T> {
    /// The identity scaling (`s = 0`) for samples of shape `sample_shape` (any rank).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty shape or a zero extent.
    pub fn new(sample_shape: &[usize]) -> Result<Self> {
        if sample_shape.is_empty() || sample_shape.contains(&0) {
            return Err(Error::invalid(
                "Scaling",
                "configuration",
                format!("needs a non-empty sample shape with positive extents, found {sample_shape:?}"),
            ));
        }
        Ok(Scaling {
            s: Param::trainable(Tensor::zeros(sample_shape)?),
            sample_shape: sample_shape.to_vec(),
        })
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Scaling<U> {
        Scaling {
            s: self.s.cast(),
            sample_shape: self.sample_shape.clone(),
        }
    }

    /// `sum(s)`.
    fn log_det(&self) -> T {
        self.s.values().iter().fold(T::zero(), |acc, &v| acc + v)
    }

    /// `out = scale ⊙ x` per sample.
    fn apply(x: &Tensor<T>, scale: &[T]) -> Tensor<T> {
        let mut out = x.clone();
        let m = scale.len().max(1);
        for row in out.as_mut_slice().chunks_exact_mut(m) {
            for (v, &e) in row.iter_mut().zip(scale) {
                *v *= e;
            }
        }
        out
    }

    fn forward_map(&self, x: &Tensor<T>) -> (Tensor<T>, Vec<T>, Vec<T>) {
        let scale: Vec<T> = self.s.values().iter().map(|v| v.exp()).collect();
        let z = Self::apply(x, &scale);
        (z, vec![self.log_det(); x.batch()], scale)
    }
}

impl<T: Real> Params<T> for Scaling<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "s"), &self.s);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "s"), &mut self.s);
    }
}

impl<T: Real> Bijector<T> for Scaling<T> {
    fn kind(&self) -> &'static str {
        "Scaling"
    }

    fn constant_log_det(&self) -> bool {
        true
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// `z = exp(s) ⊙ x` (data -> latent), log-det `sum(s)` per sample.
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Scaling::forward", x, cx, &self.sample_shape)?;
        let (z, ld, _) = self.forward_map(x);
        Ok((z, ld))
    }

    /// `x = exp(-s) ⊙ z` (latent -> data), log-det `-sum(s)` per sample.
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Scaling::inverse", z, cx, &self.sample_shape)?;
        let inv: Vec<T> = self.s.values().iter().map(|v| (-*v).exp()).collect();
        Ok((Self::apply(z, &inv), vec![-self.log_det(); z.batch()]))
    }

    /// The same map as [`Bijector::forward`] (the layer has no training state).
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, "Scaling::forward_train", x, cx, &self.sample_shape)?;
        let (z, ld, scale) = self.forward_map(x);
        Ok((z.clone(), ld, Cache::new("Scaling", ScalingCache { z, scale })))
    }

    /// `dL/dx = dz ⊙ exp(s)`, `dL/ds = sum_n dz_n ⊙ z_n + sum_n dlogdet_n` (every element of `s`
    /// enters each sample's log-det with weight 1).
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let ScalingCache { z, scale } = cache.take::<ScalingCache<T>>("Scaling")?;
        check_grads("Scaling::backward", dz, dlogdet, z.shape())?;
        let total = dlogdet.iter().fold(T::zero(), |acc, &g| acc + g);
        let mut ds = vec![total; scale.len()];
        let m = scale.len().max(1);
        let mut dx = dz.clone();
        for (drow, zrow) in dx.as_mut_slice().chunks_exact_mut(m).zip(z.as_slice().chunks_exact(m)) {
            for (((g, &zv), &e), d) in drow.iter_mut().zip(zrow).zip(&scale).zip(ds.iter_mut()) {
                *d += *g * zv;
                *g *= e;
            }
        }
        self.s.accumulate(&ds);
        Ok(InputGrad::input(dx))
    }

    crate::impl_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(shape: &[usize]) -> Scaling<f64> {
        let mut l = Scaling::<f64>::new(shape).unwrap();
        for (k, v) in l.s.value.as_mut_slice().iter_mut().enumerate() {
            *v = 0.3 * (k as f64) - 0.5;
        }
        l
    }

    #[test]
    fn scales_each_element_and_log_det_is_sum_of_s() {
        let l = layer(&[3]);
        let x = Tensor::new(&[2, 3], vec![1.0, 2.0, -1.0, 0.5, 0.0, 4.0]).unwrap();
        let (z, ld) = l.forward(&x, Ctx::NONE).unwrap();
        let s = [-0.5f64, -0.2, 0.1];
        for (k, (&zv, &xv)) in z.as_slice().iter().zip(x.as_slice()).enumerate() {
            assert!((zv - s[k % 3].exp() * xv).abs() < 1e-15);
        }
        let sum: f64 = s.iter().sum();
        assert!(ld.iter().all(|&l| (l - sum).abs() < 1e-15));
        let (xr, ldi) = l.inverse(&z, Ctx::NONE).unwrap();
        assert!(
            xr.as_slice()
                .iter()
                .zip(x.as_slice())
                .all(|(a, b)| (a - b).abs() < 1e-15)
        );
        assert!(ldi.iter().all(|&l| (l + sum).abs() < 1e-15));
    }

    #[test]
    fn images_and_identity_at_construction() {
        let x = Tensor::from_fn(&[2, 2, 2, 3], |k| k as f64 - 7.0).unwrap();
        let id = Scaling::<f64>::new(&[2, 2, 3]).unwrap();
        assert_eq!(id.forward(&x, Ctx::NONE).unwrap(), (x.clone(), vec![0.0; 2]));
        let l = layer(&[2, 2, 3]);
        let (z, _) = l.forward(&x, Ctx::NONE).unwrap();
        assert_eq!(z.shape(), x.shape());
        let names: Vec<String> = {
            let mut v = Vec::new();
            l.visit_params("net.4", &mut |n, p| v.push(format!("{n}:{:?}", p.value.shape())));
            v
        };
        assert_eq!(names, vec!["net.4.s:[2, 2, 3]".to_string()]);
    }

    #[test]
    fn backward_matches_formula() {
        let mut l = layer(&[2]);
        let x = Tensor::new(&[2, 2], vec![1.0, -2.0, 3.0, 0.5]).unwrap();
        let (z, _, cache) = l.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        let dz = Tensor::new(&[2, 2], vec![1.0, 1.0, 2.0, -1.0]).unwrap();
        let dx = l.backward(cache, &dz, &[0.5, 0.25]).unwrap().x;
        let e = [(-0.5f64).exp(), (-0.2f64).exp()];
        assert!((dx.as_slice()[2] - 2.0 * e[0]).abs() < 1e-15);
        let zs = z.as_slice();
        let expect0 = zs[0] + 2.0 * zs[2] + 0.75;
        assert!((l.s.grad.as_slice()[0] - expect0).abs() < 1e-14);
    }

    #[test]
    fn errors() {
        assert!(Scaling::<f64>::new(&[]).is_err());
        assert!(Scaling::<f64>::new(&[3, 0]).is_err());
        let mut l = layer(&[3]);
        assert!(l.forward(&Tensor::zeros(&[2, 4]).unwrap(), Ctx::NONE).is_err());
        assert!(l.inverse(&Tensor::zeros(&[2, 1, 3]).unwrap(), Ctx::NONE).is_err());
        let mut x = Tensor::zeros(&[2, 3]).unwrap();
        x.as_mut_slice()[4] = f64::NAN;
        assert!(matches!(
            l.forward(&x, Ctx::NONE),
            Err(Error::NonFinite { index: (1, 1), .. })
        ));
        let (_, _, cache) = l
            .forward_train(&Tensor::zeros(&[2, 3]).unwrap(), Ctx::NONE, Pass::Train)
            .unwrap();
        assert!(l.backward(cache, &Tensor::zeros(&[2, 3]).unwrap(), &[0.0]).is_err());
        l.s.value.as_mut_slice()[1] = f64::INFINITY;
        assert!(matches!(
            l.forward(&Tensor::zeros(&[1, 3]).unwrap(), Ctx::NONE),
            Err(Error::NonFiniteParameter { index: 1, .. })
        ));
    }
}
