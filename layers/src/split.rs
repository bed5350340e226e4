//! The multi-scale split (factor-out) of RealNVP and Glow.
//!
//! # Formula
//! On samples `[C, H, W]` with `C` even, forward (data -> latent) keeps the first `C/2` channels
//! and factors out the rest:
//!
//! `rest = x[:C/2]`, `z_out = x[C/2:]`, and (Glow) `log_p = log N(z_out; mean, exp(logs)^2)`
//!
//! where `(mean, logs)` come from a conditioner on `rest` (Glow: a zero-initialized 3x3
//! convolution `[C/2, H, W] -> [C, H, W]`; output channels `0..C/2` are the mean, `C/2..C` the
//! log standard deviations), and per sample
//!
//! `log_p = sum over z_out's elements of -ln(2 pi)/2 - logs - ((z_out - mean) * exp(-logs))^2 / 2`.
//!
//! Without a prior (RealNVP), `log_p = 0` and the flow scores `z_out` with its own base
//! distribution. The map `x -> (rest, z_out)` only moves elements: its log-det is 0, and a flow
//! adds `log_p` to its log-likelihood.
//!
//! `Split` is not a [`crate::Bijector`] but a factor-out [`Stage`]: its inverse needs the
//! factored-out half back, `x = concat(rest, z_out)` along channels. Generation samples `z_out` from the prior
//! ([`Split::sample_out`]) or reuses a stored one; a multi-scale flow that resamples the stored
//! latents does not reconstruct its input.
//!
//! Openai's Glow interleaves the prior's outputs (`mean = h[..., 0::2]`, `logs = h[..., 1::2]`);
//! here they are blocks (`torch.chunk(h, 2, dim=1)`, as in rosinality's glow-pytorch), so an
//! imported openai prior needs its output channels reordered.

use exactflow_kernels::{Error, F1, Interval, Real, Result};
use rand::{Rng, RngCore};
use rand_distr::StandardNormal;

use crate::bijector::{Cache, InputGrad, Mapped, Pass, check_input};
use crate::ctx::Ctx;
use crate::nets::{Conditioner, Conv2d};
use crate::params::{Param, Params, join};
use crate::stage::{Factored, Stage, Step};
use crate::tensor::Tensor;

/// ln(2 pi) / 2.
fn half_ln_2pi<T: Real>() -> T {
    T::constant(0.5 * (2.0 * std::f64::consts::PI).ln())
}

/// The factor-out of a multi-scale flow (see the module documentation): `x -> (rest, z_out,
/// log_p)`, with an optional learned conditional diagonal Gaussian prior `p(z_out | rest)`.
/// The prior's parameters are named `prior.*` (e.g. `prior.weight`, `prior.bias`).
pub struct Split<T: Real> {
    prior: Option<Box<dyn Conditioner<T>>>,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
}

/// What [`Split::backward`] needs from [`Split::forward_train`].
struct SplitCache<T> {
    net: Option<Cache>,
    mean: Vec<T>,
    logs: Vec<T>,
    z_out: Tensor<T>,
    shape: Vec<usize>,
}

/// The outputs of [`Split::forward`]: `(rest, z_out, log_p)`.
pub type SplitOutput<T> = (Tensor<T>, Tensor<T>, Vec<T>);

/// The outputs of [`Split::forward_train`]: `(rest, z_out, log_p, cache)`.
pub type SplitTrainOutput<T> = (Tensor<T>, Tensor<T>, Vec<T>, Cache);

/// The prior's mean and log standard deviation at `rest` (each `n * C/2 * H * W` long, sample
/// after sample), with the network's cache in training passes.
struct PriorOut<T> {
    mean: Vec<T>,
    logs: Vec<T>,
    cache: Option<Cache>,
}

/// `(C, H, W)` of a split's sample shape, `C` even and positive.
fn split_shape(op: &'static str, sample_shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *sample_shape {
        [c, h, w] if c >= 2 && c % 2 == 0 && h > 0 && w > 0 => Ok((c, h, w)),
        _ => Err(Error::invalid(
            op,
            "sample shape",
            format!(
                "needs an image sample shape [C, H, W] with an even C >= 2 and positive H, W, found {sample_shape:?}"
            ),
        )),
    }
}

impl<T: Real> Split<T> {
    /// Glow's split of samples `[C, H, W]`: the prior is a zero-initialized 3x3 convolution
    /// (`Conv2d::new(C/2, C, 3, (H, W), true, rng)`), so `p(z_out | rest)` starts as N(0, I).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a sample shape that is not `[C, H, W]` with `C` even.
    pub fn glow(sample_shape: &[usize], rng: &mut impl Rng) -> Result<Self> {
        let (c, h, w) = split_shape("Split::glow", sample_shape)?;
        let net = Conv2d::new(c / 2, c, 3, (h, w), true, rng)?;
        Self::with_prior(sample_shape, Box::new(net))
    }

    /// RealNVP's split of samples `[C, H, W]`: no prior, `log_p = 0`.
    ///
    /// # Errors
    /// As [`Split::glow`].
    pub fn without_prior(sample_shape: &[usize]) -> Result<Self> {
        let (c, h, w) = split_shape("Split::without_prior", sample_shape)?;
        Ok(Split {
            prior: None,
            in_shape: sample_shape.to_vec(),
            out_shape: vec![c / 2, h, w],
        })
    }

    /// A split whose prior is any conditioner mapping `[C/2, H, W]` to `[C, H, W]` (mean, then
    /// log standard deviation).
    ///
    /// # Errors
    /// As [`Split::glow`]; [`Error::InvalidArgument`] when the conditioner's shapes do not match.
    pub fn with_prior(sample_shape: &[usize], prior: Box<dyn Conditioner<T>>) -> Result<Self> {
        let (c, h, w) = split_shape("Split::with_prior", sample_shape)?;
        let (need_in, need_out) = (vec![c / 2, h, w], vec![c, h, w]);
        if prior.in_shape() != need_in || prior.out_shape() != need_out {
            return Err(Error::invalid(
                "Split::with_prior",
                "prior",
                format!(
                    "on {sample_shape:?} the prior {} maps {:?} -> {:?}, expected {need_in:?} -> {need_out:?}",
                    prior.kind(),
                    prior.in_shape(),
                    prior.out_shape()
                ),
            ));
        }
        Ok(Split {
            prior: Some(prior),
            in_shape: sample_shape.to_vec(),
            out_shape: need_in,
        })
    }

    /// The input sample shape `[C, H, W]`.
    pub fn in_shape(&self) -> &[usize] {
        &self.in_shape
    }

    /// The sample shape `[C/2, H, W]` of both `rest` and `z_out`.
    pub fn out_shape(&self) -> &[usize] {
        &self.out_shape
    }

    /// Whether the split has a learned prior (Glow) or not (RealNVP).
    pub fn has_prior(&self) -> bool {
        self.prior.is_some()
    }

    /// The prior network, if any.
    pub fn prior(&self) -> Option<&dyn Conditioner<T>> {
        self.prior.as_deref()
    }

    /// The same split in f64 (through the prior's [`Conditioner::to_f64`]).
    pub fn to_f64(&self) -> Split<f64> {
        Split {
            prior: self.prior.as_ref().map(|p| p.to_f64()),
            in_shape: self.in_shape.clone(),
            out_shape: self.out_shape.clone(),
        }
    }

    /// The same split on dual numbers (through the prior's [`Conditioner::to_dual`]).
    pub fn to_dual(&self) -> Split<F1> {
        Split {
            prior: self.prior.as_ref().map(|p| p.to_dual()),
            in_shape: self.in_shape.clone(),
            out_shape: self.out_shape.clone(),
        }
    }

    /// The same split on intervals (through the prior's [`Conditioner::to_interval`]).
    pub fn to_interval(&self) -> Split<Interval> {
        Split {
            prior: self.prior.as_ref().map(|p| p.to_interval()),
            in_shape: self.in_shape.clone(),
            out_shape: self.out_shape.clone(),
        }
    }

    fn halves(&self, x: &Tensor<T>) -> Result<(Tensor<T>, Tensor<T>)> {
        let half: usize = self.out_shape.iter().product();
        let n = x.batch();
        let mut rest = Vec::with_capacity(n * half);
        let mut z = Vec::with_capacity(n * half);
        for s in x.samples() {
            rest.extend_from_slice(&s[..half]);
            z.extend_from_slice(&s[half..]);
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&self.out_shape);
        Ok((Tensor::new(&shape, rest)?, Tensor::new(&shape, z)?))
    }

    fn concat(&self, rest: &Tensor<T>, z: &Tensor<T>) -> Result<Tensor<T>> {
        let half: usize = self.out_shape.iter().product();
        let mut x = Vec::with_capacity(rest.len() + z.len());
        for (r, zs) in rest.as_slice().chunks_exact(half).zip(z.as_slice().chunks_exact(half)) {
            x.extend_from_slice(r);
            x.extend_from_slice(zs);
        }
        let mut shape = vec![rest.batch()];
        shape.extend_from_slice(&self.in_shape);
        Tensor::new(&shape, x)
    }

    /// `(mean, logs)` of the prior at `rest`, each `n * C/2 * H * W` long, with the network's
    /// cache when `train`.
    fn prior_params(&self, rest: &Tensor<T>, cx: Ctx<'_, T>, train: bool) -> Result<Option<PriorOut<T>>> {
        let Some(net) = &self.prior else {
            return Ok(None);
        };
        let (h, cache) = if train {
            let (h, c) = net.forward_train(rest, cx)?;
            (h, Some(c))
        } else {
            (net.forward(rest, cx)?, None)
        };
        let half: usize = self.out_shape.iter().product();
        let mut mean = Vec::with_capacity(rest.len());
        let mut logs = Vec::with_capacity(rest.len());
        for s in h.samples() {
            mean.extend_from_slice(&s[..half]);
            logs.extend_from_slice(&s[half..]);
        }
        Ok(Some(PriorOut { mean, logs, cache }))
    }

    /// `log N(z; mean, exp(logs)^2)` per sample.
    fn log_density(&self, z: &Tensor<T>, mean: &[T], logs: &[T]) -> Vec<T> {
        let half = z.sample_len().max(1);
        let (c, h) = (half_ln_2pi::<T>(), T::lit(0.5));
        z.as_slice()
            .chunks_exact(half)
            .enumerate()
            .map(|(n, zs)| {
                zs.iter().enumerate().fold(T::zero(), |acc, (k, &v)| {
                    let (m, l) = (mean[n * half + k], logs[n * half + k]);
                    let u = (v - m) * (-l).exp();
                    acc - c - l - h * u * u
                })
            })
            .collect()
    }

    fn run(
        &self,
        op: &'static str,
        x: &Tensor<T>,
        cx: Ctx<'_, T>,
        train: bool,
    ) -> Result<(SplitOutput<T>, Option<SplitCache<T>>)> {
        check_input(self, op, x, cx, &self.in_shape)?;
        let (rest, z_out) = self.halves(x)?;
        let (log_p, mean, logs, net) = match self.prior_params(&rest, cx, train)? {
            Some(PriorOut { mean, logs, cache }) => (self.log_density(&z_out, &mean, &logs), mean, logs, cache),
            None => (vec![T::zero(); x.batch()], Vec::new(), Vec::new(), None),
        };
        let cache = train.then(|| SplitCache {
            net,
            mean,
            logs,
            z_out: z_out.clone(),
            shape: self.out_shape.clone(),
        });
        Ok(((rest, z_out, log_p), cache))
    }

    /// `x -> (rest = x[:C/2], z_out = x[C/2:], log_p)` with `log_p` the prior's log-density of
    /// `z_out` per sample (0 without a prior).
    ///
    /// # Errors
    /// A wrong input shape, NaN/inf in the input or a parameter.
    pub fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<SplitOutput<T>> {
        Ok(self.run("Split::forward", x, cx, false)?.0)
    }

    /// `x = concat(rest, z_out)` along channels.
    ///
    /// # Errors
    /// Shapes other than `[N, C/2, H, W]` (the same N for both); NaN/inf.
    pub fn inverse(&self, rest: &Tensor<T>, z_out: &Tensor<T>) -> Result<Tensor<T>> {
        rest.expect_sample_shape("Split::inverse", &self.out_shape)?;
        z_out.expect_shape("Split::inverse", rest.shape())?;
        rest.check_finite("Split::inverse", "rest")?;
        z_out.check_finite("Split::inverse", "z_out")?;
        self.concat(rest, z_out)
    }

    /// A draw of `z_out` given `rest` from the prior at temperature `t` (the standard deviation
    /// times `t`): `z_out = mean(rest) + t * exp(logs(rest)) * e`, `e ~ N(0, I)`; `t = 0` gives
    /// the mean.
    ///
    /// # Errors
    /// A wrong shape or NaN/inf in `rest`; a negative or non-finite temperature;
    /// [`Error::InvalidArgument`] for a split without a prior (sample `z_out` from the flow's
    /// base distribution instead).
    pub fn sample_out(
        &self,
        rest: &Tensor<T>,
        temperature: f64,
        rng: &mut dyn RngCore,
        cx: Ctx<'_, T>,
    ) -> Result<Tensor<T>> {
        Ok(self.draw(rest, temperature, rng, cx)?.0)
    }

    /// [`Split::sample_out`] together with the prior's log-density of the draw per sample (what
    /// [`Split::forward`] returns as `log_p` for `concat(rest, z_out)`), from one pass of the
    /// prior network.
    ///
    /// # Errors
    /// As [`Split::sample_out`].
    pub fn sample_out_with_log_prob(
        &self,
        rest: &Tensor<T>,
        temperature: f64,
        rng: &mut dyn RngCore,
        cx: Ctx<'_, T>,
    ) -> Result<(Tensor<T>, Vec<T>)> {
        let (z_out, PriorOut { mean, logs, .. }) = self.draw(rest, temperature, rng, cx)?;
        let log_p = self.log_density(&z_out, &mean, &logs);
        Ok((z_out, log_p))
    }

    /// A draw of `z_out` from the prior at `rest`, with the prior's `(mean, logs)` it came from.
    fn draw(
        &self,
        rest: &Tensor<T>,
        temperature: f64,
        rng: &mut dyn RngCore,
        cx: Ctx<'_, T>,
    ) -> Result<(Tensor<T>, PriorOut<T>)> {
        check_input(self, "Split::sample_out", rest, cx, &self.out_shape)?;
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(Error::invalid(
                "Split::sample_out",
                "temperature",
                format!("{temperature} (must be finite and >= 0)"),
            ));
        }
        let prior = self.prior_params(rest, cx, false)?.ok_or_else(|| {
            Error::invalid(
                "Split::sample_out",
                "split",
                "this split has no prior: sample z_out from the flow's base distribution",
            )
        })?;
        let data = prior
            .mean
            .iter()
            .zip(&prior.logs)
            .map(|(&m, &l)| {
                let e: f64 = rng.sample(StandardNormal);
                m + T::lit(temperature * e) * l.exp()
            })
            .collect();
        Ok((Tensor::new(rest.shape(), data)?, prior))
    }

    /// [`Split::forward`] keeping what [`Split::backward`] needs.
    ///
    /// # Errors
    /// As [`Split::forward`].
    pub fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<SplitTrainOutput<T>> {
        let ((rest, z_out, log_p), cache) = self.run("Split::forward_train", x, cx, true)?;
        let cache = cache.unwrap_or_else(|| unreachable!("invariant: train mode keeps a cache"));
        Ok((rest, z_out, log_p, Cache::new("Split", cache)))
    }

    /// Given dL/drest, dL/dz_out and dL/dlog_p (one per sample), accumulates the prior's
    /// parameter gradients and returns dL/dx. With `u = (z_out - mean) exp(-logs)` and
    /// `g = dL/dlog_p` of the sample: `dlog_p/dz_out = -u exp(-logs)`, `dlog_p/dmean =
    /// u exp(-logs)`, `dlog_p/dlogs = u^2 - 1`; the mean and logs gradients go back through the
    /// prior into dL/drest (and into dL/dcontext when the prior reads the context).
    ///
    /// # Errors
    /// Shapes that differ from the cached pass; a cache of another layer.
    pub fn backward(
        &mut self,
        cache: Cache,
        d_rest: &Tensor<T>,
        d_z_out: &Tensor<T>,
        d_log_p: &[T],
    ) -> Result<InputGrad<T>> {
        let c: SplitCache<T> = cache.take("Split")?;
        let shape = c.z_out.shape().to_vec();
        d_rest.expect_shape("Split::backward", &shape)?;
        d_z_out.expect_shape("Split::backward", &shape)?;
        let n = shape[0];
        if d_log_p.len() != n {
            return Err(Error::LengthMismatch {
                op: "Split::backward",
                what: "d_log_p",
                expected: n,
                found: d_log_p.len(),
            });
        }
        if c.shape != self.out_shape {
            return Err(Error::invalid(
                "Split::backward",
                "cache",
                "sample shape changed since forward_train",
            ));
        }
        let (Some(net), Some(net_cache)) = (self.prior.as_mut(), c.net) else {
            return Ok(InputGrad::input(self.concat(d_rest, d_z_out)?));
        };
        let half = c.z_out.sample_len().max(1);
        let mut dz = d_z_out.clone();
        let mut dh = vec![T::zero(); 2 * c.z_out.len()];
        for (k, (g, &z)) in dz.as_mut_slice().iter_mut().zip(c.z_out.as_slice()).enumerate() {
            let (s, j) = (k / half, k % half);
            let w = d_log_p[s];
            let inv = (-c.logs[k]).exp();
            let u = (z - c.mean[k]) * inv;
            *g -= w * u * inv;
            dh[s * 2 * half + j] = w * u * inv;
            dh[s * 2 * half + half + j] = w * (u * u - T::one());
        }
        let mut hshape = vec![n];
        hshape.extend_from_slice(&net.out_shape());
        let d_prior = net.backward(net_cache, &Tensor::new(&hshape, dh)?)?;
        let dr = d_rest.zip_map(&d_prior.x, |a, b| a + b)?;
        Ok(InputGrad {
            x: self.concat(&dr, &dz)?,
            context: d_prior.context,
        })
    }
}

impl<T: Real> Stage<T> for Split<T> {
    fn kind(&self) -> &'static str {
        "Split"
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.in_shape.clone(), self.out_shape.clone())
    }

    fn factored_shape(&self) -> Option<Vec<usize>> {
        Some(self.out_shape.clone())
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Step<T>> {
        let (rest, z, log_p) = Split::forward(self, x, cx)?;
        Ok(self.step(rest, z, log_p))
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Step<T>, Cache)> {
        let (rest, z, log_p, cache) = Split::forward_train(self, x, cx)?;
        Ok((self.step(rest, z, log_p), cache))
    }

    fn inverse(&self, z: &Tensor<T>, factored: Option<&Tensor<T>>, _cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        let x = Split::inverse(self, z, need_factored("Split::inverse", factored)?)?;
        Ok((x, vec![T::zero(); z.batch()]))
    }

    fn inverse_replay(&self, z: &Tensor<T>, factored: Option<&Tensor<T>>, _cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        Split::inverse(self, z, need_factored("Split::inverse_replay", factored)?)
    }

    fn sample_factored(
        &self,
        rest: &Tensor<T>,
        temperature: f64,
        rng: &mut dyn RngCore,
        cx: Ctx<'_, T>,
    ) -> Result<Option<(Tensor<T>, Vec<T>)>> {
        if !self.has_prior() {
            return Ok(None);
        }
        self.sample_out_with_log_prob(rest, temperature, rng, cx).map(Some)
    }

    fn backward(
        &mut self,
        cache: Cache,
        dout: &Tensor<T>,
        dfactored: Option<&Tensor<T>>,
        dlog_p: &[T],
    ) -> Result<InputGrad<T>> {
        match dfactored {
            Some(dz) => Split::backward(self, cache, dout, dz, dlog_p),
            None => Split::backward(self, cache, dout, &dout.zeros_like(), dlog_p),
        }
    }

    fn to_f64(&self) -> Box<dyn Stage<f64>> {
        Box::new(Split::to_f64(self))
    }

    fn to_dual(&self) -> Box<dyn Stage<F1>> {
        Box::new(Split::to_dual(self))
    }

    fn to_interval(&self) -> Box<dyn Stage<Interval>> {
        Box::new(Split::to_interval(self))
    }
}

impl<T: Real> Split<T> {
    /// A forward pass's outputs as a [`Step`]: the prior's log-density only when there is a
    /// prior, so that the flow's base distribution scores the latent otherwise.
    fn step(&self, rest: Tensor<T>, z: Tensor<T>, log_p: Vec<T>) -> Step<T> {
        let n = rest.batch();
        Step {
            out: rest,
            log_det: vec![T::zero(); n],
            factored: Some(Factored {
                z,
                log_p: self.has_prior().then_some(log_p),
            }),
        }
    }
}

fn need_factored<'a, T>(op: &'static str, factored: Option<&'a Tensor<T>>) -> Result<&'a Tensor<T>> {
    factored.ok_or_else(|| Error::invalid(op, "factored latent", "a split needs its factored-out half back"))
}

impl<T: Real> Params<T> for Split<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        if let Some(p) = &self.prior {
            p.visit_params(&join(prefix, "prior"), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        if let Some(p) = &mut self.prior {
            p.visit_params_mut(&join(prefix, "prior"), f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn glow_split(seed: u64) -> Split<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = Split::<f64>::glow(&[4, 2, 3], &mut rng).unwrap();
        let mut k = 0.0f64;
        s.visit_params_mut("", &mut |_, p| {
            for v in p.value.as_mut_slice() {
                k += 1.0;
                *v = 0.2 * (1.7 * k).sin();
            }
        });
        s
    }

    #[test]
    fn zero_prior_is_standard_normal_and_round_trips() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let s = Split::<f64>::glow(&[4, 2, 3], &mut rng).unwrap();
        let x = Tensor::from_fn(&[2, 4, 2, 3], |k| (k as f64 * 0.3).cos()).unwrap();
        let (rest, z, lp) = s.forward(&x, Ctx::NONE).unwrap();
        assert_eq!(rest.shape(), &[2, 2, 2, 3]);
        for n in 0..2 {
            assert_eq!(rest.sample(n).unwrap(), &x.sample(n).unwrap()[..12]);
            assert_eq!(z.sample(n).unwrap(), &x.sample(n).unwrap()[12..]);
        }
        for (n, zs) in z.samples().enumerate() {
            let expected: f64 = zs
                .iter()
                .map(|v| -0.5 * (2.0 * std::f64::consts::PI).ln() - 0.5 * v * v)
                .sum();
            assert!((lp[n] - expected).abs() < 1e-13);
        }
        assert_eq!(s.inverse(&rest, &z).unwrap(), x);
        let names: Vec<String> = {
            let mut v = Vec::new();
            s.visit_params("level", &mut |n, _| v.push(n.to_string()));
            v
        };
        assert_eq!(names, vec!["level.prior.weight", "level.prior.bias"]);
    }

    #[test]
    fn temperature_zero_gives_the_mean() {
        let s = glow_split(3);
        let x = Tensor::from_fn(&[2, 4, 2, 3], |k| (k as f64 * 0.7).sin()).unwrap();
        let (rest, _, _) = s.forward(&x, Ctx::NONE).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let z0 = s.sample_out(&rest, 0.0, &mut rng, Ctx::NONE).unwrap();
        let h = s.prior().unwrap().forward(&rest, Ctx::NONE).unwrap();
        for (n, hs) in h.samples().enumerate() {
            assert_eq!(z0.sample(n).unwrap(), &hs[..12]);
        }
        assert!(s.sample_out(&rest, -1.0, &mut rng, Ctx::NONE).is_err());
        assert!(
            Split::<f64>::without_prior(&[4, 2, 3])
                .unwrap()
                .sample_out(&rest, 1.0, &mut rng, Ctx::NONE)
                .is_err()
        );
    }

    #[test]
    fn without_prior_and_errors() {
        let mut s = Split::<f64>::without_prior(&[2, 1, 2]).unwrap();
        let x = Tensor::new(&[1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let (rest, z, lp, cache) = s.forward_train(&x, Ctx::NONE).unwrap();
        assert_eq!(
            (rest.as_slice(), z.as_slice(), lp),
            (&[1.0, 2.0][..], &[3.0, 4.0][..], vec![0.0])
        );
        let dx = s.backward(cache, &rest, &z, &[1.0]).unwrap().x;
        assert_eq!(dx, x);
        assert!(Split::<f64>::without_prior(&[3, 2, 2]).is_err());
        assert!(Split::<f64>::without_prior(&[4]).is_err());
        assert!(s.forward(&Tensor::zeros(&[1, 4, 1, 2]).unwrap(), Ctx::NONE).is_err());
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let wrong = Box::new(Conv2d::<f64>::new(1, 3, 3, (1, 2), true, &mut rng).unwrap());
        assert!(Split::with_prior(&[2, 1, 2], wrong).is_err());
    }
}
