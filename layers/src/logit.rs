//! RealNVP's logit preprocessing: maps data in `[0, 1]` (e.g. dequantized pixels) to the real line.
//!
//! # Formula
//! With `0 <= alpha < 1/2` and, elementwise, `v = alpha + (1 - 2 alpha) x`, forward
//! (data -> latent) is
//!
//! `z = logit(v) = ln v - ln(1 - v)`,
//! `log|det dz/dx| = sum_i [ln(1 - 2 alpha) - ln v_i - ln(1 - v_i)]` per sample,
//!
//! since `dz_i/dx_i = (1 - 2 alpha) / (v_i (1 - v_i))`. `1 - v` is evaluated as
//! `alpha + (1 - 2 alpha)(1 - x)`, which is exact at `x = 1` and keeps full relative precision near
//! it. Inverse (latent -> data): `x = (sigmoid(z) - alpha) / (1 - 2 alpha)`, log-det
//! `sum_i [-ln(1 - 2 alpha) + ln sigmoid(z_i) + ln sigmoid(-z_i)]` (with `ln sigmoid` evaluated as
//! `-softplus(-z)` so it neither overflows nor loses precision for large |z|).
//!
//! RealNVP (Dinh et al., 2017, section 4.1) uses `alpha = 0.05`; with `alpha > 0` the endpoints
//! 0 and 1 map to the finite values `-+logit(alpha)`.
//!
//! # Domain
//! `forward` accepts `x` in the closed interval `[0, 1]` when `alpha > 0`, and only the open
//! interval `(0, 1)` when `alpha = 0` (where 0 and 1 would map to -inf and +inf); anything else is
//! an error naming the (sample, offset) of the first offending element. An `alpha` that rounds to
//! 0 in the layer's scalar type (e.g. `1e-50` in f32) counts as 0. `inverse` accepts every finite
//! z; with `alpha > 0` its output lies in `(-alpha, 1 - alpha) / (1 - 2 alpha)`, slightly wider
//! than `[0, 1]` (generated samples are usually clipped to `[0, 1]` afterwards).

use std::marker::PhantomData;

use exactflow_kernels::{Error, Real, Result};

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::tensor::Tensor;

/// Elementwise `z = logit(alpha + (1 - 2 alpha) x)` with its log-det (see the module
/// documentation). No parameters.
#[derive(Clone, Debug)]
pub struct Logit<T: Real> {
    alpha: f64,
    sample_shape: Vec<usize>,
    _scalar: PhantomData<fn() -> T>,
}

crate::no_params!(Logit);

/// What backward needs: `v` and `1 - v` per element.
struct LogitCache<T> {
    v: Tensor<T>,
    u: Tensor<T>,
}

/// A checked forward pass: `v`, `u = 1 - v`, the output and the per-sample log-dets.
struct LogitPass<T> {
    v: Tensor<T>,
    u: Tensor<T>,
    z: Tensor<T>,
    ld: Vec<T>,
}

/// `ln(1 + e^t)` without overflow: `max(t, 0) + ln(1 + e^-|t|)`.
fn softplus<T: Real>(t: T) -> T {
    if t > T::zero() {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

impl<T: Real> Logit<T> {
    /// The logit layer for samples of shape `sample_shape` (any rank) with squeeze `alpha`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `0 <= alpha < 0.5`, or for an empty shape or a zero extent.
    pub fn new(sample_shape: &[usize], alpha: f64) -> Result<Self> {
        if !(0.0..0.5).contains(&alpha) {
            return Err(Error::invalid(
                "Logit",
                "configuration",
                format!("needs 0 <= alpha < 0.5, found alpha = {alpha}"),
            ));
        }
        if sample_shape.is_empty() || sample_shape.contains(&0) {
            return Err(Error::invalid(
                "Logit",
                "configuration",
                format!("needs a non-empty sample shape with positive extents, found {sample_shape:?}"),
            ));
        }
        Ok(Logit {
            alpha,
            sample_shape: sample_shape.to_vec(),
            _scalar: PhantomData,
        })
    }

    /// The squeeze `alpha` (as given to [`Logit::new`]).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Logit<U> {
        Logit {
            alpha: self.alpha,
            sample_shape: self.sample_shape.clone(),
            _scalar: PhantomData,
        }
    }

    /// `(alpha, 1 - 2 alpha)` in `T`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `1 - 2 alpha` rounds to 0 in `T` (alpha within rounding of 0.5).
    fn coefficients(&self, op: &'static str) -> Result<(T, T)> {
        let a = T::lit(self.alpha);
        let k = T::one() - T::lit(2.0) * a;
        if k <= T::zero() {
            return Err(Error::invalid(
                op,
                "alpha",
                format!("1 - 2 alpha rounds to 0 in this precision (alpha = {})", self.alpha),
            ));
        }
        Ok((a, k))
    }

    /// Checks the domain (see the module documentation) and returns `v`, `1 - v`, `z` and the
    /// per-sample log-dets.
    fn forward_map(&self, op: &'static str, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<LogitPass<T>> {
        check_input(self, op, x, cx, &self.sample_shape)?;
        let (a, k) = self.coefficients(op)?;
        let open = a == T::zero();
        let m = x.sample_len().max(1);
        if let Some(pos) = x.as_slice().iter().position(|&xi| {
            if open {
                !(xi > T::zero() && xi < T::one())
            } else {
                !(xi >= T::zero() && xi <= T::one())
            }
        }) {
            let interval = if open { "(0, 1) (alpha = 0)" } else { "[0, 1]" };
            return Err(Error::invalid(
                op,
                "input",
                format!(
                    "element (sample {}, offset {}) is {}, expected a value in {interval}",
                    pos / m,
                    pos % m,
                    x.as_slice()[pos].as_f64()
                ),
            ));
        }
        let v = x.map(|xi| a + k * xi);
        let u = x.map(|xi| a + k * (T::one() - xi));
        let ln_k = k.ln();
        let mut z = v.clone();
        let mut ld = Vec::with_capacity(x.batch());
        for ((zs, vs), us) in z
            .as_mut_slice()
            .chunks_exact_mut(m)
            .zip(v.as_slice().chunks_exact(m))
            .zip(u.as_slice().chunks_exact(m))
        {
            let mut acc = T::zero();
            for ((zi, &vi), &ui) in zs.iter_mut().zip(vs).zip(us) {
                let (lv, lu) = (vi.ln(), ui.ln());
                *zi = lv - lu;
                acc += ln_k - lv - lu;
            }
            ld.push(acc);
        }
        Ok(LogitPass { v, u, z, ld })
    }
}

impl<T: Real> Bijector<T> for Logit<T> {
    fn kind(&self) -> &'static str {
        "Logit"
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// `z = logit(alpha + (1 - 2 alpha) x)` (data -> latent), log-det
    /// `sum(ln(1 - 2 alpha) - ln v - ln(1 - v))` per sample.
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        let LogitPass { z, ld, .. } = self.forward_map("Logit::forward", x, cx)?;
        Ok((z, ld))
    }

    /// `x = (sigmoid(z) - alpha) / (1 - 2 alpha)` (latent -> data), log-det
    /// `sum(-ln(1 - 2 alpha) - softplus(-z) - softplus(z))` per sample.
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Logit::inverse", z, cx, &self.sample_shape)?;
        let (a, k) = self.coefficients("Logit::inverse")?;
        let ln_k = k.ln();
        let m = z.sample_len().max(1);
        let mut x = z.clone();
        let mut ld = Vec::with_capacity(z.batch());
        for xs in x.as_mut_slice().chunks_exact_mut(m) {
            let mut acc = T::zero();
            for xi in xs.iter_mut() {
                let zi = *xi;
                // sigmoid(z) = 1 / (1 + e^-z), evaluated on the side where the exponential is <= 1.
                let sig = if zi >= T::zero() {
                    T::one() / (T::one() + (-zi).exp())
                } else {
                    let e = zi.exp();
                    e / (T::one() + e)
                };
                *xi = (sig - a) / k;
                acc += -ln_k - softplus(-zi) - softplus(zi);
            }
            ld.push(acc);
        }
        Ok((x, ld))
    }

    /// The same map as [`Bijector::forward`] (the layer has no training state).
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        let LogitPass { v, u, z, ld } = self.forward_map("Logit::forward_train", x, cx)?;
        Ok((z, ld, Cache::new("Logit", LogitCache { v, u })))
    }

    /// With `k = 1 - 2 alpha`: `dL/dx_i = dz_i k / (v_i (1 - v_i)) + dlogdet_n k (2 v_i - 1) /
    /// (v_i (1 - v_i))`, the second term being `d/dx_i [-ln v_i - ln(1 - v_i)]`.
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let LogitCache { v, u } = cache.take::<LogitCache<T>>("Logit")?;
        check_grads("Logit::backward", dz, dlogdet, v.shape())?;
        let (_, k) = self.coefficients("Logit::backward")?;
        let m = v.sample_len().max(1);
        let mut dx = dz.clone();
        for (((ds, vs), us), &gl) in dx
            .as_mut_slice()
            .chunks_exact_mut(m)
            .zip(v.as_slice().chunks_exact(m))
            .zip(u.as_slice().chunks_exact(m))
            .zip(dlogdet)
        {
            for ((g, &vi), &ui) in ds.iter_mut().zip(vs).zip(us) {
                *g = k * (*g + gl * (vi - ui)) / (vi * ui);
            }
        }
        Ok(InputGrad::input(dx))
    }

    crate::impl_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn forward_matches_formula_and_round_trips() {
        let alpha = 0.05;
        let l = Logit::<f64>::new(&[2], alpha).unwrap();
        let x = Tensor::new(&[2, 2], vec![0.0, 0.25, 1.0, 0.9]).unwrap();
        let (z, ld) = l.forward(&x, Ctx::NONE).unwrap();
        for (s, xs) in x.samples().enumerate() {
            let mut expect_ld = 0.0;
            for (j, &xi) in xs.iter().enumerate() {
                let v = alpha + (1.0 - 2.0 * alpha) * xi;
                assert!((z.as_slice()[2 * s + j] - logit(v)).abs() < 1e-14);
                expect_ld += (1.0 - 2.0 * alpha).ln() - v.ln() - (1.0 - v).ln();
            }
            assert!((ld[s] - expect_ld).abs() < 1e-13);
        }
        // Endpoints map to -+logit(alpha) exactly.
        assert_eq!(z.as_slice()[0], -z.as_slice()[2]);
        let (xr, ldi) = l.inverse(&z, Ctx::NONE).unwrap();
        for (a, b) in xr.as_slice().iter().zip(x.as_slice()) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        for (a, b) in ld.iter().zip(&ldi) {
            assert!((a + b).abs() < 1e-13);
        }
    }

    #[test]
    fn large_latents_stay_finite() {
        let l = Logit::<f64>::new(&[3], 0.0).unwrap();
        let z = Tensor::new(&[1, 3], vec![-800.0, 0.0, 800.0]).unwrap();
        let (x, ld) = l.inverse(&z, Ctx::NONE).unwrap();
        assert_eq!(x.as_slice(), &[0.0, 0.5, 1.0]);
        // -softplus(800) - softplus(-800) = -800 - 2 * e^-800 - ..., twice, plus ln(1/4).
        assert!((ld[0] - (-1600.0 + 0.25f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn backward_matches_central_differences() {
        let mut l = Logit::<f64>::new(&[2], 0.1).unwrap();
        let x = Tensor::new(&[1, 2], vec![0.3, 0.85]).unwrap();
        let (_, _, cache) = l.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        let dz = Tensor::new(&[1, 2], vec![0.7, -1.3]).unwrap();
        let dx = l.backward(cache, &dz, &[0.4]).unwrap().x;
        let loss = |x: &Tensor<f64>| {
            let (z, ld) = l.forward(x, Ctx::NONE).unwrap();
            0.7 * z.as_slice()[0] - 1.3 * z.as_slice()[1] + 0.4 * ld[0]
        };
        for k in 0..2 {
            let (mut p, mut m) = (x.clone(), x.clone());
            p.as_mut_slice()[k] += 1e-6;
            m.as_mut_slice()[k] -= 1e-6;
            let fd = (loss(&p) - loss(&m)) / 2e-6;
            assert!(
                (fd - dx.as_slice()[k]).abs() < 1e-7 * fd.abs().max(1.0),
                "{fd} vs {}",
                dx.as_slice()[k]
            );
        }
    }

    #[test]
    fn domain_errors_name_the_element() {
        assert!(Logit::<f64>::new(&[2], 0.5).is_err());
        assert!(Logit::<f64>::new(&[2], -0.1).is_err());
        assert!(Logit::<f64>::new(&[2], f64::NAN).is_err());
        assert!(Logit::<f64>::new(&[], 0.1).is_err());
        assert!(Logit::<f64>::new(&[2, 0], 0.1).is_err());
        let closed = Logit::<f64>::new(&[2], 0.05).unwrap();
        let open = Logit::<f64>::new(&[2], 0.0).unwrap();
        let x = Tensor::new(&[2, 2], vec![0.5, 0.5, 1.0, 0.0]).unwrap();
        assert!(closed.forward(&x, Ctx::NONE).is_ok());
        let msg = open.forward(&x, Ctx::NONE).unwrap_err().to_string();
        assert!(msg.contains("sample 1, offset 0") && msg.contains("(0, 1)"), "{msg}");
        let x = Tensor::new(&[2, 2], vec![0.5, -0.01, 0.5, 0.5]).unwrap();
        let msg = closed.forward(&x, Ctx::NONE).unwrap_err().to_string();
        assert!(msg.contains("sample 0, offset 1") && msg.contains("[0, 1]"), "{msg}");
        let mut nan = Tensor::new(&[1, 2], vec![0.5, 0.5]).unwrap();
        nan.as_mut_slice()[1] = f64::NAN;
        assert!(matches!(closed.forward(&nan, Ctx::NONE), Err(Error::NonFinite { .. })));
        assert!(closed.inverse(&Tensor::zeros(&[1, 3]).unwrap(), Ctx::NONE).is_err());
        // An alpha that underflows in f32 behaves as alpha = 0 there.
        let tiny = Logit::<f64>::new(&[1], 1e-50).unwrap().cast::<f32>();
        assert!(
            tiny.forward(&Tensor::new(&[1, 1], vec![0.0f32]).unwrap(), Ctx::NONE)
                .is_err()
        );
        // An alpha that rounds to 0.5 in f32 is an error there, not a division by zero.
        let near_half = Logit::<f64>::new(&[1], 0.5 - 1e-12).unwrap().cast::<f32>();
        assert!(
            near_half
                .forward(&Tensor::new(&[1, 1], vec![0.5f32]).unwrap(), Ctx::NONE)
                .is_err()
        );
        assert!(
            near_half
                .inverse(&Tensor::new(&[1, 1], vec![0.5f32]).unwrap(), Ctx::NONE)
                .is_err()
        );
    }
}
