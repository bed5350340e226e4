//! Base distributions pi(z) of a flow: log-density, sampling with a temperature, gradients.
//!
//! | distribution | log pi(z) per element | sample at temperature T |
//! |---|---|---|
//! | [`StandardNormal`] | `-z^2/2 - ln(2 pi)/2` | `T * e`, e ~ N(0, 1) |
//! | [`StandardLogistic`] (NICE) | `-softplus(z) - softplus(-z)` | `T * ln(u / (1 - u))`, u ~ U(0, 1) |
//! | [`DiagonalGaussian`] (learned) | `-((z - mu) / sigma)^2/2 - ln sigma - ln(2 pi)/2`, `sigma = exp(log_std)` | `mu + T * sigma * e` |
//!
//! A sample's log-density is the sum over its elements. Temperature scales the spread (Glow's
//! "temperature": the prior's standard deviation times T); T = 0 returns the mode.

use exactflow_kernels::{Error, F1, Interval, Real, Result};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal as StdNormalDist;

use crate::bijector::InputGrad;
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// A base distribution over latent samples of a fixed shape.
///
/// Every method takes a [`Ctx`]; the distributions here ignore its context (a conditional
/// distribution would read it and return its gradient in [`InputGrad::context`]).
pub trait Distribution<T: Real>: Params<T> + Send + Sync {
    /// A short name ("StandardNormal", ...).
    fn kind(&self) -> &'static str;

    /// log pi(z) for every sample of the batch.
    ///
    /// # Errors
    /// A shape the distribution does not cover; NaN/inf in `z`.
    fn log_prob(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Vec<T>>;

    /// `n` samples of sample shape `shape` at temperature `temperature` (>= 0).
    ///
    /// # Errors
    /// A negative or non-finite temperature; a shape the distribution does not cover.
    fn sample(
        &self,
        n: usize,
        shape: &[usize],
        temperature: f64,
        rng: &mut dyn RngCore,
        cx: Ctx<'_, T>,
    ) -> Result<Tensor<T>>;

    /// Given `w_i = dL/dlog pi(z_i)`, accumulates dL/dtheta and returns dL/dz (and dL/dcontext
    /// for a conditional distribution).
    ///
    /// # Errors
    /// Shape mismatches.
    fn backward(&mut self, z: &Tensor<T>, dlog_prob: &[T], cx: Ctx<'_, T>) -> Result<InputGrad<T>>;

    /// The same distribution in f64.
    fn to_f64(&self) -> Box<dyn Distribution<f64>>;

    /// The same distribution on dual numbers.
    fn to_dual(&self) -> Box<dyn Distribution<F1>>;

    /// The same distribution on intervals (parameters as point intervals).
    fn to_interval(&self) -> Box<dyn Distribution<Interval>>;
}

fn check_temperature(op: &'static str, t: f64) -> Result<()> {
    if !t.is_finite() || t < 0.0 {
        return Err(Error::invalid(
            op,
            "temperature",
            format!("{t} (must be finite and >= 0)"),
        ));
    }
    Ok(())
}

fn check_z<T: Real>(op: &'static str, z: &Tensor<T>, dlog_prob: Option<&[T]>) -> Result<()> {
    if z.rank() < 2 {
        return Err(Error::invalid(
            op,
            "z",
            format!("expected a batch [N, ...], found shape {:?}", z.shape()),
        ));
    }
    z.check_finite(op, "z")?;
    if let Some(w) = dlog_prob
        && w.len() != z.batch()
    {
        return Err(Error::LengthMismatch {
            op,
            what: "dlog_prob",
            expected: z.batch(),
            found: w.len(),
        });
    }
    Ok(())
}

fn batch_shape(n: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = vec![n];
    s.extend_from_slice(shape);
    s
}

/// ln(2 pi) / 2.
fn half_ln_2pi<T: Real>() -> T {
    T::constant(0.5 * (2.0 * std::f64::consts::PI).ln())
}

/// `ln(1 + e^x)` without overflow.
fn softplus<T: Real>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// The standard normal N(0, I) over samples of any shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardNormal;

/// The standard logistic distribution, elementwise (NICE's prior): heavier tails than the normal,
/// which gives larger gradients to far-out points.
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardLogistic;

crate::no_params_unit!(StandardNormal);
crate::no_params_unit!(StandardLogistic);

fn per_sample<T: Real>(z: &Tensor<T>, f: impl Fn(usize, T) -> T) -> Vec<T> {
    let m = z.sample_len();
    z.samples()
        .map(|s| {
            s.iter()
                .enumerate()
                .fold(T::zero(), |acc, (k, &v)| acc + f(k % m.max(1), v))
        })
        .collect()
}

fn weighted_grad<T: Real>(z: &Tensor<T>, w: &[T], f: impl Fn(usize, T) -> T) -> Tensor<T> {
    let m = z.sample_len().max(1);
    let mut g = z.zeros_like();
    for (k, (gv, &zv)) in g.as_mut_slice().iter_mut().zip(z.as_slice()).enumerate() {
        *gv = w[k / m] * f(k % m, zv);
    }
    g
}

impl<T: Real> Distribution<T> for StandardNormal {
    fn kind(&self) -> &'static str {
        "StandardNormal"
    }

    fn log_prob(&self, z: &Tensor<T>, _cx: Ctx<'_, T>) -> Result<Vec<T>> {
        check_z("StandardNormal::log_prob", z, None)?;
        let c = half_ln_2pi::<T>();
        let half = T::lit(0.5);
        Ok(per_sample(z, |_, v| -half * v * v - c))
    }

    fn sample(&self, n: usize, shape: &[usize], t: f64, rng: &mut dyn RngCore, _cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        check_temperature("StandardNormal::sample", t)?;
        Tensor::from_fn(&batch_shape(n, shape), |_| {
            let e: f64 = rng.sample(StdNormalDist);
            T::lit(t * e)
        })
    }

    fn backward(&mut self, z: &Tensor<T>, w: &[T], _cx: Ctx<'_, T>) -> Result<InputGrad<T>> {
        check_z("StandardNormal::backward", z, Some(w))?;
        Ok(InputGrad::input(weighted_grad(z, w, |_, v| -v)))
    }

    fn to_f64(&self) -> Box<dyn Distribution<f64>> {
        Box::new(StandardNormal)
    }

    fn to_dual(&self) -> Box<dyn Distribution<F1>> {
        Box::new(StandardNormal)
    }

    fn to_interval(&self) -> Box<dyn Distribution<Interval>> {
        Box::new(StandardNormal)
    }
}

impl<T: Real> Distribution<T> for StandardLogistic {
    fn kind(&self) -> &'static str {
        "StandardLogistic"
    }

    fn log_prob(&self, z: &Tensor<T>, _cx: Ctx<'_, T>) -> Result<Vec<T>> {
        check_z("StandardLogistic::log_prob", z, None)?;
        Ok(per_sample(z, |_, v| -(softplus(v) + softplus(-v))))
    }

    fn sample(&self, n: usize, shape: &[usize], t: f64, rng: &mut dyn RngCore, _cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        check_temperature("StandardLogistic::sample", t)?;
        Tensor::from_fn(&batch_shape(n, shape), |_| {
            // u in (0, 1): never exactly 0 or 1, so the logit is finite.
            let u: f64 = rng.random_range(f64::EPSILON..1.0 - f64::EPSILON);
            T::lit(t * (u / (1.0 - u)).ln())
        })
    }

    fn backward(&mut self, z: &Tensor<T>, w: &[T], _cx: Ctx<'_, T>) -> Result<InputGrad<T>> {
        check_z("StandardLogistic::backward", z, Some(w))?;
        // d/dz [-softplus(z) - softplus(-z)] = 1 - 2 sigmoid(z) = -tanh(z / 2).
        let half = T::lit(0.5);
        Ok(InputGrad::input(weighted_grad(z, w, |_, v| -(v * half).tanh())))
    }

    fn to_f64(&self) -> Box<dyn Distribution<f64>> {
        Box::new(StandardLogistic)
    }

    fn to_dual(&self) -> Box<dyn Distribution<F1>> {
        Box::new(StandardLogistic)
    }

    fn to_interval(&self) -> Box<dyn Distribution<Interval>> {
        Box::new(StandardLogistic)
    }
}

/// A diagonal Gaussian with learned mean `mean` and log standard deviation `log_std`, both of the
/// sample shape (Glow's learned top prior). Initialized to N(0, I).
#[derive(Clone, Debug)]
pub struct DiagonalGaussian<T: Real> {
    /// The mean, of the sample shape.
    pub mean: Param<T>,
    /// The log standard deviation, of the sample shape.
    pub log_std: Param<T>,
}

impl<T: Real> DiagonalGaussian<T> {
    /// N(0, I) over samples of shape `shape`.
    ///
    /// # Errors
    /// An empty shape.
    pub fn new(shape: &[usize]) -> Result<Self> {
        Ok(DiagonalGaussian {
            mean: Param::trainable(Tensor::zeros(shape)?),
            log_std: Param::trainable(Tensor::zeros(shape)?),
        })
    }

    /// The same distribution in another scalar type.
    pub fn cast<U: Real>(&self) -> DiagonalGaussian<U> {
        DiagonalGaussian {
            mean: self.mean.cast(),
            log_std: self.log_std.cast(),
        }
    }

    fn check_shape(&self, op: &'static str, z: &Tensor<T>) -> Result<()> {
        z.expect_sample_shape(op, self.mean.value.shape())
    }
}

impl<T: Real> Params<T> for DiagonalGaussian<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "mean"), &self.mean);
        f(&join(prefix, "log_std"), &self.log_std);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "mean"), &mut self.mean);
        f(&join(prefix, "log_std"), &mut self.log_std);
    }
}

impl<T: Real> Distribution<T> for DiagonalGaussian<T> {
    fn kind(&self) -> &'static str {
        "DiagonalGaussian"
    }

    fn log_prob(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Vec<T>> {
        check_z("DiagonalGaussian::log_prob", z, None)?;
        self.check_shape("DiagonalGaussian::log_prob", z)?;
        if !cx.params_checked {
            self.check_params_finite("DiagonalGaussian")?;
        }
        let (mu, ls) = (self.mean.values(), self.log_std.values());
        let c = half_ln_2pi::<T>();
        let half = T::lit(0.5);
        Ok(per_sample(z, |k, v| {
            let u = (v - mu[k]) * (-ls[k]).exp();
            -half * u * u - ls[k] - c
        }))
    }

    fn sample(&self, n: usize, shape: &[usize], t: f64, rng: &mut dyn RngCore, _cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        check_temperature("DiagonalGaussian::sample", t)?;
        if shape != self.mean.value.shape() {
            return Err(Error::ShapeMismatch {
                op: "DiagonalGaussian::sample",
                expected: self.mean.value.shape().to_vec(),
                found: shape.to_vec(),
            });
        }
        let (mu, ls) = (self.mean.values(), self.log_std.values());
        let m = mu.len();
        Tensor::from_fn(&batch_shape(n, shape), |k| {
            let e: f64 = rng.sample(StdNormalDist);
            mu[k % m] + T::lit(t * e) * ls[k % m].exp()
        })
    }

    fn backward(&mut self, z: &Tensor<T>, w: &[T], _cx: Ctx<'_, T>) -> Result<InputGrad<T>> {
        check_z("DiagonalGaussian::backward", z, Some(w))?;
        self.check_shape("DiagonalGaussian::backward", z)?;
        let m = z.sample_len();
        let mu = self.mean.values().to_vec();
        let ls = self.log_std.values().to_vec();
        let mut dmu = vec![T::zero(); m];
        let mut dls = vec![T::zero(); m];
        let mut dz = z.zeros_like();
        for (k, (g, &v)) in dz.as_mut_slice().iter_mut().zip(z.as_slice()).enumerate() {
            let (j, wi) = (k % m, w[k / m]);
            let inv_var = (-T::lit(2.0) * ls[j]).exp();
            let diff = v - mu[j];
            // d/dz = -(z - mu) / sigma^2; d/dmu = +(z - mu) / sigma^2;
            // d/dlog_std = (z - mu)^2 / sigma^2 - 1.
            *g = -wi * diff * inv_var;
            dmu[j] += wi * diff * inv_var;
            dls[j] += wi * (diff * diff * inv_var - T::one());
        }
        self.mean.accumulate(&dmu);
        self.log_std.accumulate(&dls);
        Ok(InputGrad::input(dz))
    }

    fn to_f64(&self) -> Box<dyn Distribution<f64>> {
        Box::new(self.cast::<f64>())
    }

    fn to_dual(&self) -> Box<dyn Distribution<F1>> {
        Box::new(self.cast::<F1>())
    }

    fn to_interval(&self) -> Box<dyn Distribution<Interval>> {
        Box::new(self.cast::<Interval>())
    }
}
