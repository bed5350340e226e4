//! `Flow<T>`: invertible stages and a base distribution, scored exactly by the change of variables.
//!
//! `log p(x) = log pi(z) + sum_k log|det dz_k / dz_{k-1}|` with z = the data pushed through every
//! stage in the *forward* (data -> latent) direction. Multi-scale flows factor latents out part
//! way (a split stage): those latents are scored by the split's conditional prior (Glow) or the
//! base distribution (RealNVP), and they are kept in the [`Latent`] so that
//! `decode(encode(x)) = x` exactly, up to rounding.

use exactflow_kernels::{Error, F1, Real, Result};
use exactflow_layers::distributions::Distribution;
use exactflow_layers::params::{Param, Params, join};
use exactflow_layers::{Bijector, Cache, Pass, Split, Tensor};
use rand::RngCore;

/// One stage of a flow.
pub enum Stage<T: Real> {
    /// An invertible layer.
    Layer(Box<dyn Bijector<T>>),
    /// A multi-scale factor-out: half the channels leave the flow as a latent, scored by the
    /// split's conditional prior (Glow) or, without one, by the flow's base distribution
    /// (RealNVP).
    Split(Split<T>),
}

impl<T: Real> Stage<T> {
    /// The layer type's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Stage::Layer(l) => l.kind(),
            Stage::Split(_) => "Split",
        }
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        match self {
            Stage::Layer(l) => l.visit_params(prefix, f),
            Stage::Split(sp) => sp.visit_params(prefix, f),
        }
    }

    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        match self {
            Stage::Layer(l) => l.visit_params_mut(prefix, f),
            Stage::Split(sp) => sp.visit_params_mut(prefix, f),
        }
    }

    fn shapes(&self) -> (Vec<usize>, Vec<usize>) {
        match self {
            Stage::Layer(l) => l.sample_shapes(),
            Stage::Split(sp) => (sp.in_shape().to_vec(), sp.out_shape().to_vec()),
        }
    }
}

/// Everything the forward pass maps a batch to: the final latent and the factored-out ones (in
/// the order they left the flow).
#[derive(Clone, Debug, PartialEq)]
pub struct Latent<T> {
    /// The latent at the end of the flow.
    pub z: Tensor<T>,
    /// Latents factored out by split stages, first split first.
    pub factored: Vec<Tensor<T>>,
}

impl<T: Real> Latent<T> {
    /// Every latent of each sample in one row: `[N, len(z) + sum len(factored)]`, the final
    /// latent first, then the factored-out ones in the order they left the flow.
    ///
    /// # Errors
    /// Latents with different batch sizes.
    pub fn flatten(&self) -> Result<Tensor<T>> {
        let n = self.z.batch();
        let parts: Vec<&Tensor<T>> = std::iter::once(&self.z).chain(&self.factored).collect();
        let width: usize = parts.iter().map(|t| t.sample_len()).sum();
        let mut data = Vec::with_capacity(n * width);
        for i in 0..n {
            for t in &parts {
                data.extend_from_slice(t.sample(i)?);
            }
        }
        Tensor::new(&[n, width], data)
    }
}

/// What one stage keeps for the backward pass.
enum StageCache<T> {
    Layer(Cache),
    /// The split's cache and the factored-out latent (scored by the base distribution when the
    /// split has no prior).
    Split(Cache, Tensor<T>),
}

/// What [`Flow::backward`] needs from [`Flow::forward_train`] (every stage's cache) or from
/// [`Flow::forward_train_memory_efficient`] (only the latents: the stages' inputs are recomputed
/// from their outputs during the backward pass).
pub struct FlowCache<T> {
    stages: CachedStages<T>,
    z: Tensor<T>,
}

/// The per-stage part of a [`FlowCache`].
enum CachedStages<T> {
    /// Every stage's cache, in forward order.
    Full(Vec<StageCache<T>>),
    /// Memory-efficient mode: no stage caches, only the factored-out latents (first split
    /// first), which are outputs of the flow and cannot be recomputed from `z`.
    Recompute(Vec<Tensor<T>>),
}

impl<T> FlowCache<T> {
    /// Whether the cache is a memory-efficient one (no per-stage activations kept).
    pub fn is_memory_efficient(&self) -> bool {
        matches!(self.stages, CachedStages::Recompute(_))
    }
}

/// A normalizing flow: stages applied in the forward (data -> latent) direction, then a base
/// distribution. Parameter names are `flow.{stage}.{...}` and `base.{...}`.
pub struct Flow<T: Real> {
    stages: Vec<Stage<T>>,
    base: Box<dyn Distribution<T>>,
    data_shape: Vec<usize>,
}

fn stage_name(i: usize) -> String {
    format!("flow.{i}")
}

fn check_finite_out<T: Real>(name: &str, kind: &str, t: &Tensor<T>, ld: &[T]) -> Result<()> {
    if t.first_non_finite().is_some() {
        return Err(Error::Diverged {
            step: 0,
            layer: format!("{name} ({kind})"),
            what: "output".into(),
        });
    }
    if ld.iter().any(|v| !v.is_finite_value()) {
        return Err(Error::Diverged {
            step: 0,
            layer: format!("{name} ({kind})"),
            what: "log-det".into(),
        });
    }
    Ok(())
}

impl<T: Real> Flow<T> {
    /// A flow over samples of shape `data_shape`, checked so that consecutive stages agree on
    /// their sample shapes.
    ///
    /// # Errors
    /// [`Error::Config`] for no stages or mismatched shapes.
    pub fn new(stages: Vec<Stage<T>>, base: Box<dyn Distribution<T>>, data_shape: &[usize]) -> Result<Self> {
        if stages.is_empty() {
            return Err(Error::Config("a flow needs at least one stage".into()));
        }
        let mut shape = data_shape.to_vec();
        for (i, s) in stages.iter().enumerate() {
            let (inp, out) = s.shapes();
            if inp != shape {
                return Err(Error::Config(format!(
                    "stage {i} ({}) expects samples of shape {inp:?}, but receives {shape:?}",
                    s.kind()
                )));
            }
            shape = out;
        }
        Ok(Flow {
            stages,
            base,
            data_shape: data_shape.to_vec(),
        })
    }

    /// The sample shape of the data.
    pub fn data_shape(&self) -> &[usize] {
        &self.data_shape
    }

    /// The sample shape of the final latent.
    pub fn latent_shape(&self) -> Vec<usize> {
        self.stages.last().map(|s| s.shapes().1).unwrap_or_default()
    }

    /// The stages, in forward order.
    pub fn stages(&self) -> &[Stage<T>] {
        &self.stages
    }

    /// The base distribution.
    pub fn base(&self) -> &dyn Distribution<T> {
        self.base.as_ref()
    }

    /// The stable name of stage `i` (`flow.{i}`).
    pub fn stage_name(i: usize) -> String {
        stage_name(i)
    }

    fn check_data(&self, op: &'static str, x: &Tensor<T>) -> Result<()> {
        x.expect_sample_shape(op, &self.data_shape)?;
        x.check_finite(op, "data")
    }

    /// Pushes a batch through every stage (forward direction) and returns its latents and
    /// `log p(x)` per sample.
    ///
    /// # Errors
    /// A batch of the wrong shape or with NaN/inf; [`Error::Diverged`] naming the first stage
    /// whose output is not finite.
    pub fn encode_with_log_prob(&self, x: &Tensor<T>) -> Result<(Latent<T>, Vec<T>)> {
        self.encode_walk("Flow::encode", x, true)
    }

    /// The forward pass behind [`Flow::encode_with_log_prob`] (`score`: add the split priors
    /// and the base distribution) and [`Flow::encode_with_log_det`] (only the log-dets).
    fn encode_walk(&self, op: &'static str, x: &Tensor<T>, score: bool) -> Result<(Latent<T>, Vec<T>)> {
        self.check_data(op, x)?;
        let mut total = vec![T::zero(); x.batch()];
        let mut h = x.clone();
        let mut factored = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            match s {
                Stage::Layer(l) => {
                    let (next, ld) = l.forward(&h)?;
                    check_finite_out(&stage_name(i), l.kind(), &next, &ld)?;
                    add_into(&mut total, &ld);
                    h = next;
                }
                Stage::Split(sp) => {
                    let (rest, z_out, lp) = sp.forward(&h)?;
                    if score {
                        let lp = split_log_p(self.base.as_ref(), sp, lp, &z_out)?;
                        check_finite_out(&stage_name(i), "Split", &rest, &lp)?;
                        add_into(&mut total, &lp);
                    }
                    factored.push(z_out);
                    h = rest;
                }
            }
        }
        if score {
            add_into(&mut total, &self.base.log_prob(&h)?);
        }
        Ok((Latent { z: h, factored }, total))
    }

    /// The latents of a batch and `sum_k log|det dz_k/dz_{k-1}|` per sample: the log-det of the
    /// whole map `x -> (z, factored latents)`, without the base distribution and split priors.
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn encode_with_log_det(&self, x: &Tensor<T>) -> Result<(Latent<T>, Vec<T>)> {
        self.encode_walk("Flow::encode_with_log_det", x, false)
    }

    /// `log p(x)` per sample (nats).
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn log_prob(&self, x: &Tensor<T>) -> Result<Vec<T>> {
        Ok(self.encode_with_log_prob(x)?.1)
    }

    /// The latents of a batch.
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn encode(&self, x: &Tensor<T>) -> Result<Latent<T>> {
        Ok(self.encode_with_log_prob(x)?.0)
    }

    /// The data a set of latents maps back to (the inverse of [`Flow::encode`]).
    ///
    /// # Errors
    /// Latents of the wrong shape or count; NaN/inf.
    pub fn decode(&self, latent: &Latent<T>) -> Result<Tensor<T>> {
        Ok(self.decode_with_log_det(latent)?.0)
    }

    /// The number of split stages (the number of factored-out latents).
    pub fn num_splits(&self) -> usize {
        self.stages.iter().filter(|s| matches!(s, Stage::Split(_))).count()
    }

    /// Decodes and returns `sum_k log|det dx/dz|` per sample along the way.
    fn decode_with_log_det(&self, latent: &Latent<T>) -> Result<(Tensor<T>, Vec<T>)> {
        latent.z.expect_sample_shape("Flow::decode", &self.latent_shape())?;
        if latent.factored.len() != self.num_splits() {
            return Err(Error::LengthMismatch {
                op: "Flow::decode",
                what: "factored latents",
                expected: self.num_splits(),
                found: latent.factored.len(),
            });
        }
        let mut ld_total = vec![T::zero(); latent.z.batch()];
        let mut h = latent.z.clone();
        let mut factored = latent.factored.iter().rev();
        for s in self.stages.iter().rev() {
            match s {
                Stage::Layer(l) => {
                    let (prev, ld) = l.inverse(&h)?;
                    add_into(&mut ld_total, &ld);
                    h = prev;
                }
                Stage::Split(sp) => {
                    // invariant: the count was checked against num_splits above.
                    let z_out = factored
                        .next()
                        .ok_or_else(|| Error::Config("factored latent missing".into()))?;
                    h = sp.inverse(&h, z_out)?;
                }
            }
        }
        Ok((h, ld_total))
    }

    /// `n` samples of the model at `temperature` (the base distribution's spread times T; T = 1 is
    /// the model itself, T = 0 its mode pushed through the inverse).
    ///
    /// # Errors
    /// A negative or non-finite temperature.
    pub fn sample(&self, n: usize, temperature: f64, rng: &mut dyn RngCore) -> Result<Tensor<T>> {
        Ok(self.sample_and_log_prob(n, temperature, rng)?.0)
    }

    /// Samples and their model log-density `log p(x)`, from one inverse pass:
    /// `log p(x) = log pi(z) - sum_k log|det dx/dz|_k`.
    ///
    /// # Errors
    /// A negative or non-finite temperature.
    pub fn sample_and_log_prob(
        &self,
        n: usize,
        temperature: f64,
        rng: &mut dyn RngCore,
    ) -> Result<(Tensor<T>, Vec<T>)> {
        let mut h = self.base.sample(n, &self.latent_shape(), temperature, rng)?;
        let mut log_p = self.base.log_prob(&h)?;
        for s in self.stages.iter().rev() {
            match s {
                Stage::Layer(l) => {
                    let (prev, ld) = l.inverse(&h)?;
                    for (p, d) in log_p.iter_mut().zip(&ld) {
                        *p -= *d;
                    }
                    h = prev;
                }
                Stage::Split(sp) => {
                    // A split with a prior draws its half from p(z_out | rest); one without draws
                    // it from the base distribution. Either way it is scored as in encode.
                    let (z_out, lp) = if sp.has_prior() {
                        sp.sample_out_with_log_prob(&h, temperature, rng)?
                    } else {
                        let z_out = self.base.sample(n, sp.out_shape(), temperature, rng)?;
                        let lp = self.base.log_prob(&z_out)?;
                        (z_out, lp)
                    };
                    add_into(&mut log_p, &lp);
                    h = sp.inverse(&h, &z_out)?;
                }
            }
        }
        Ok((h, log_p))
    }

    /// `steps` points on the straight line between the latents of `x_a` and `x_b` (single
    /// samples, batch 1), decoded: row 0 is `x_a`, row `steps - 1` is `x_b` (up to rounding).
    ///
    /// # Errors
    /// Inputs that are not one sample each; `steps < 2`.
    pub fn interpolate(&self, x_a: &Tensor<T>, x_b: &Tensor<T>, steps: usize) -> Result<Tensor<T>> {
        if x_a.batch() != 1 || x_b.batch() != 1 {
            return Err(Error::invalid(
                "Flow::interpolate",
                "inputs",
                "expected one sample each (batch 1)",
            ));
        }
        if steps < 2 {
            return Err(Error::invalid(
                "Flow::interpolate",
                "steps",
                format!("{steps} (need at least 2)"),
            ));
        }
        let (la, lb) = (self.encode(x_a)?, self.encode(x_b)?);
        let lerp = |a: &Tensor<T>, b: &Tensor<T>| -> Result<Tensor<T>> {
            let m = a.sample_len();
            let mut data = Vec::with_capacity(steps * m);
            for k in 0..steps {
                let t = T::lit(k as f64 / (steps - 1) as f64);
                data.extend(a.as_slice().iter().zip(b.as_slice()).map(|(&p, &q)| p + t * (q - p)));
            }
            let mut shape = a.shape().to_vec();
            shape[0] = steps;
            Tensor::new(&shape, data)
        };
        let latent = Latent {
            z: lerp(&la.z, &lb.z)?,
            factored: la
                .factored
                .iter()
                .zip(&lb.factored)
                .map(|(a, b)| lerp(a, b))
                .collect::<Result<_>>()?,
        };
        self.decode(&latent)
    }

    /// The training-mode forward pass: `log p(x)` per sample and the cache for
    /// [`Flow::backward`]. Batch norm uses batch statistics; ActNorm initializes on its first call.
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn forward_train(&mut self, x: &Tensor<T>) -> Result<(Vec<T>, FlowCache<T>)> {
        self.check_data("Flow::forward_train", x)?;
        let mut log_p = vec![T::zero(); x.batch()];
        let mut caches = Vec::with_capacity(self.stages.len());
        let mut h = x.clone();
        for (i, s) in self.stages.iter_mut().enumerate() {
            match s {
                Stage::Layer(l) => {
                    let (next, ld, c) = l.forward_train(&h, Pass::Train)?;
                    check_finite_out(&stage_name(i), l.kind(), &next, &ld)?;
                    add_into(&mut log_p, &ld);
                    caches.push(StageCache::Layer(c));
                    h = next;
                }
                Stage::Split(sp) => {
                    let (rest, z_out, lp, c) = sp.forward_train(&h)?;
                    let lp = split_log_p(self.base.as_ref(), sp, lp, &z_out)?;
                    check_finite_out(&stage_name(i), "Split", &rest, &lp)?;
                    add_into(&mut log_p, &lp);
                    caches.push(StageCache::Split(c, z_out));
                    h = rest;
                }
            }
        }
        add_into(&mut log_p, &self.base.log_prob(&h)?);
        Ok((
            log_p,
            FlowCache {
                stages: CachedStages::Full(caches),
                z: h,
            },
        ))
    }

    /// The training-mode forward pass of the memory-efficient mode: the same map and `log p(x)`
    /// as [`Flow::forward_train`] (the same `Pass::Train` of every layer: batch statistics,
    /// ActNorm's initialization), but each stage's cache is dropped as soon as it is made. The
    /// returned cache holds only the latents (the final one and the factored-out ones);
    /// [`Flow::backward`] then walks the stages in reverse, recomputes each layer's input from
    /// its output with [`Bijector::inverse_replay`] (a split's input as `concat(rest, z_out)`),
    /// rebuilds that layer's cache with `forward_train(x, Pass::Replay)` and backpropagates
    /// through it. Activation memory is then that of one stage, whatever the depth, for about
    /// one extra inverse and forward pass of compute. The gradients equal those of the cached
    /// mode up to the rounding of the inverses.
    ///
    /// # Errors
    /// As [`Flow::forward_train`].
    pub fn forward_train_memory_efficient(&mut self, x: &Tensor<T>) -> Result<(Vec<T>, FlowCache<T>)> {
        self.check_data("Flow::forward_train_memory_efficient", x)?;
        let mut log_p = vec![T::zero(); x.batch()];
        let mut factored = Vec::new();
        let mut h = x.clone();
        for (i, s) in self.stages.iter_mut().enumerate() {
            match s {
                Stage::Layer(l) => {
                    // The cache is dropped here: backward rebuilds it from a replay.
                    let (next, ld, _) = l.forward_train(&h, Pass::Train)?;
                    check_finite_out(&stage_name(i), l.kind(), &next, &ld)?;
                    add_into(&mut log_p, &ld);
                    h = next;
                }
                Stage::Split(sp) => {
                    let (rest, z_out, lp) = sp.forward(&h)?;
                    let lp = split_log_p(self.base.as_ref(), sp, lp, &z_out)?;
                    check_finite_out(&stage_name(i), "Split", &rest, &lp)?;
                    add_into(&mut log_p, &lp);
                    factored.push(z_out);
                    h = rest;
                }
            }
        }
        add_into(&mut log_p, &self.base.log_prob(&h)?);
        Ok((
            log_p,
            FlowCache {
                stages: CachedStages::Recompute(factored),
                z: h,
            },
        ))
    }

    /// [`Flow::forward_train_memory_efficient`] when `memory_efficient`, else
    /// [`Flow::forward_train`]; either cache goes to [`Flow::backward`].
    ///
    /// # Errors
    /// As [`Flow::forward_train`].
    pub fn forward_train_with(&mut self, x: &Tensor<T>, memory_efficient: bool) -> Result<(Vec<T>, FlowCache<T>)> {
        if memory_efficient {
            self.forward_train_memory_efficient(x)
        } else {
            self.forward_train(x)
        }
    }

    /// Backpropagates `dL/dlog p(x_i)` (one weight per sample) into every parameter's gradient.
    /// A cache of [`Flow::forward_train_memory_efficient`] recomputes each stage's activations
    /// from its output on the way (see there); one of [`Flow::forward_train`] uses the stored ones.
    ///
    /// # Errors
    /// A weight vector of the wrong length; a cache from another flow.
    pub fn backward(&mut self, cache: FlowCache<T>, dlog_p: &[T]) -> Result<()> {
        if dlog_p.len() != cache.z.batch() {
            return Err(Error::LengthMismatch {
                op: "Flow::backward",
                what: "dlog_p",
                expected: cache.z.batch(),
                found: dlog_p.len(),
            });
        }
        let mut g = self.base.backward(&cache.z, dlog_p)?;
        let caches = match cache.stages {
            CachedStages::Full(c) => c,
            CachedStages::Recompute(factored) => return self.backward_recompute(cache.z, factored, g, dlog_p),
        };
        if caches.len() != self.stages.len() {
            return Err(Error::invalid(
                "Flow::backward",
                "cache",
                "the cache does not match the flow's stages",
            ));
        }
        for (s, c) in self.stages.iter_mut().zip(caches).rev() {
            g = match (s, c) {
                (Stage::Layer(l), StageCache::Layer(c)) => l.backward(c, &g, dlog_p)?,
                (Stage::Split(sp), StageCache::Split(c, z_out)) => {
                    let dz_out = split_dz_out(self.base.as_mut(), sp, &z_out, dlog_p)?;
                    sp.backward(c, &g, &dz_out, dlog_p)?
                }
                _ => {
                    return Err(Error::invalid(
                        "Flow::backward",
                        "cache",
                        "the cache does not match the flow's stages",
                    ));
                }
            };
        }
        Ok(())
    }

    /// The backward pass of the memory-efficient mode: from the last stage to the first,
    /// recompute the stage's input from its output (`inverse_replay`, or `concat(rest, z_out)`
    /// for a split), rebuild its cache by a `Pass::Replay` forward, backpropagate `g` through it.
    fn backward_recompute(
        &mut self,
        z: Tensor<T>,
        mut factored: Vec<Tensor<T>>,
        mut g: Tensor<T>,
        dlog_p: &[T],
    ) -> Result<()> {
        let mismatch = || {
            Error::invalid(
                "Flow::backward",
                "cache",
                "the memory-efficient cache does not match the flow's splits",
            )
        };
        if factored.len() != self.num_splits() {
            return Err(mismatch());
        }
        let mut h = z;
        for s in self.stages.iter_mut().rev() {
            match s {
                Stage::Layer(l) => {
                    let x = l.inverse_replay(&h)?;
                    let (_, _, c) = l.forward_train(&x, Pass::Replay)?;
                    g = l.backward(c, &g, dlog_p)?;
                    h = x;
                }
                Stage::Split(sp) => {
                    // invariant: the count was checked against num_splits above.
                    let z_out = factored.pop().ok_or_else(mismatch)?;
                    let x = sp.inverse(&h, &z_out)?;
                    let (_, _, _, c) = sp.forward_train(&x)?;
                    let dz_out = split_dz_out(self.base.as_mut(), sp, &z_out, dlog_p)?;
                    g = sp.backward(c, &g, &dz_out, dlog_p)?;
                    h = x;
                }
            }
        }
        Ok(())
    }

    /// The same flow on forward-mode dual numbers, for exact Jacobians (the audit).
    pub fn to_dual(&self) -> Flow<F1> {
        Flow {
            stages: self
                .stages
                .iter()
                .map(|s| match s {
                    Stage::Layer(l) => Stage::Layer(l.to_dual()),
                    Stage::Split(sp) => Stage::Split(sp.to_dual()),
                })
                .collect(),
            base: self.base.to_dual(),
            data_shape: self.data_shape.clone(),
        }
    }

    /// The same flow (parameters and state) in f64.
    pub fn to_f64(&self) -> Flow<f64> {
        Flow {
            stages: self
                .stages
                .iter()
                .map(|s| match s {
                    Stage::Layer(l) => Stage::Layer(l.to_f64()),
                    Stage::Split(sp) => Stage::Split(sp.to_f64()),
                })
                .collect(),
            base: self.base.to_f64(),
            data_shape: self.data_shape.clone(),
        }
    }
}

/// The log-density of a split's factored-out half: the split's own conditional prior `prior_lp`,
/// or, for a split without a prior (RealNVP), the base distribution's.
fn split_log_p<T: Real>(
    base: &dyn Distribution<T>,
    sp: &Split<T>,
    prior_lp: Vec<T>,
    z_out: &Tensor<T>,
) -> Result<Vec<T>> {
    if sp.has_prior() {
        Ok(prior_lp)
    } else {
        base.log_prob(z_out)
    }
}

/// dL/dz_out of a split's factored-out half from its scoring: zero when the split's own prior
/// scores it (the split's backward handles that term), the base distribution's gradient
/// otherwise.
fn split_dz_out<T: Real>(
    base: &mut dyn Distribution<T>,
    sp: &Split<T>,
    z_out: &Tensor<T>,
    dlog_p: &[T],
) -> Result<Tensor<T>> {
    if sp.has_prior() {
        Tensor::zeros(z_out.shape())
    } else {
        base.backward(z_out, dlog_p)
    }
}

fn add_into<T: Real>(acc: &mut [T], v: &[T]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

impl<T: Real> Params<T> for Flow<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        for (i, s) in self.stages.iter().enumerate() {
            s.visit(&join(prefix, &stage_name(i)), f);
        }
        self.base.visit_params(&join(prefix, "base"), f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        for (i, s) in self.stages.iter_mut().enumerate() {
            s.visit_mut(&join(prefix, &stage_name(i)), f);
        }
        self.base.visit_params_mut(&join(prefix, "base"), f);
    }
}
