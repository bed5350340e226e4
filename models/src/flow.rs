//! `Flow<T>`: a list of stages and a base distribution, scored exactly by the change of variables.
//!
//! `log p(x) = log pi(z) + sum_k log|det dz_k / dz_{k-1}|` with z = the data pushed through every
//! stage in the *forward* (data -> latent) direction. Multi-scale flows factor latents out part
//! way (a factor-out [`Stage`] such as a split): those latents are scored by the stage's own
//! conditional prior (Glow) or the base distribution (RealNVP), and they are kept in the
//! [`Latent`] so that `decode(encode(x)) = x` exactly, up to rounding.
//!
//! # One walk per direction
//!
//! Every stage, a layer or a factor-out, is used through the one [`Stage`] interface, and the
//! flow walks its stages in four places only:
//!
//! - the **forward walk** (inference): [`Flow::log_prob`], [`Flow::encode`],
//!   [`Flow::encode_with_log_det`];
//! - the **inverse walk**, whose factored latents come either from a stored encoding
//!   ([`Flow::decode`]) or from the priors ([`Flow::sample`]);
//! - the **training forward walk** ([`Flow::forward_train`]), which keeps every stage's cache
//!   ([`TrainMode::Cached`]) or only the latents ([`TrainMode::MemoryEfficient`]);
//! - the **backward walk** ([`Flow::backward`]), which takes each stage's cache from the cached
//!   pass or rebuilds it from the stage's output (inverse replay, then a `Pass::Replay` forward).
//!
//! # Context and parallelism
//!
//! Every method takes the context of a conditional flow (`[N, C]`, one row per sample); an
//! unconditional flow (context width 0) refuses one. A conditional flow may have a context
//! embedding ([`Flow::with_embedding`], an MLP `e = E(c)`, parameters `embedding.*`): every pass
//! then maps the context once and the stages read `e` `[N, E]`; the backward pass sums dL/de over
//! the stages and back-propagates it through `E` to dL/dc. The flow carries the [`Parallelism`] of its
//! matrix products as a value ([`Flow::set_parallelism`]); nothing is process-wide.

use exactflow_kernels::gemm::Parallelism;
use exactflow_kernels::interval::undecided;
use exactflow_kernels::{F1, Interval, Real};
use exactflow_layers::distributions::Distribution;
use exactflow_layers::nets::{Conditioner, Mlp};
use exactflow_layers::params::{IntBuffer, Param, Params, join};
use exactflow_layers::{Cache, Ctx, InputGrad, Pass, Stage, Tensor};
use rand::RngCore;

use crate::error::{Error, Result};

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
        Ok(Tensor::new(&[n, width], data)?)
    }
}

/// What the training forward pass keeps for the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrainMode {
    /// Every stage's activations: the backward pass reads them (memory grows with depth).
    #[default]
    Cached,
    /// Only the latents: the backward pass recomputes each stage's input from its output with
    /// the stage's inverse and rebuilds its cache by a `Pass::Replay` forward, so activation
    /// memory is that of one stage whatever the depth, for about one extra inverse and forward
    /// pass of compute. Gradients equal the cached mode's up to the rounding of the inverses.
    MemoryEfficient,
}

/// A latent factored out during a training pass, and whether the base distribution (rather than
/// the stage's own prior) scored it.
struct FactoredOut<T> {
    z: Tensor<T>,
    base_scored: bool,
}

/// What [`Flow::backward`] needs from [`Flow::forward_train`].
pub struct FlowCache<T> {
    /// Every stage's cache in forward order ([`TrainMode::Cached`]), or none.
    caches: Option<Vec<Cache>>,
    factored: Vec<FactoredOut<T>>,
    z: Tensor<T>,
    /// The context the stages read (the embedded one with an embedding) and the parallelism of
    /// the pass, for the stages' backward passes and the replays of the memory-efficient mode.
    context: Option<Tensor<T>>,
    /// The context embedding's cache, when the flow has one.
    embedding: Option<Cache>,
    par: Parallelism,
}

impl<T> FlowCache<T> {
    /// Whether the cache is a memory-efficient one (no per-stage activations kept).
    pub fn is_memory_efficient(&self) -> bool {
        self.caches.is_none()
    }
}

/// Where the inverse walk takes the factored latents from.
enum LatentSource<'a, T> {
    /// A stored encoding, first split first (walked from the last).
    Stored(&'a [Tensor<T>]),
    /// Drawn from each stage's prior (or the base distribution) at a temperature, their
    /// log-densities added to the accumulator.
    Drawn { temperature: f64, rng: &'a mut dyn RngCore },
}

/// A normalizing flow: stages applied in the forward (data -> latent) direction, then a base
/// distribution. Parameter names are `flow.{stage}.{...}` and `base.{...}`.
pub struct Flow<T: Real> {
    stages: Vec<Box<dyn Stage<T>>>,
    base: Box<dyn Distribution<T>>,
    data_shape: Vec<usize>,
    context_dim: usize,
    /// The context embedding `e = E(c)` of a conditional flow, if any (see the module
    /// documentation).
    embedding: Option<Mlp<T>>,
    par: Parallelism,
    /// Set by the trainer while it runs: it checks every value its optimizer writes, so the
    /// passes skip their scans of the parameters ([`Ctx::params_checked`]).
    params_checked: bool,
}

fn stage_name(i: usize) -> String {
    format!("flow.{i}")
}

/// A non-finite entry of `v` (viewed as `n` samples), as (sample, offset, value).
fn first_bad<T: Real>(v: &[T], sample_len: usize) -> Option<((usize, usize), f64)> {
    let m = sample_len.max(1);
    v.iter()
        .position(|x| !x.is_finite_value())
        .map(|k| ((k / m, k % m), v[k].as_f64()))
}

fn non_finite(i: usize, kind: &'static str, what: &str, bad: ((usize, usize), f64)) -> Error {
    Error::NonFinite {
        stage: stage_name(i),
        kind,
        what: what.to_string(),
        index: bad.0,
        value: bad.1,
    }
}

/// A stage's error, with a non-finite value met inside it attributed to the stage, and a
/// non-finite parameter named as in a checkpoint (`flow.{i}.{name}`: the layer reports it under
/// the name of its operation, which precedes the first dot).
fn at_stage(i: usize, kind: &'static str, e: exactflow_kernels::Error) -> Error {
    match e {
        exactflow_kernels::Error::NonFiniteParameter { name, index, value } => {
            let local = name.split_once('.').map_or(name.as_str(), |(_, rest)| rest);
            Error::Numerical(exactflow_kernels::Error::NonFiniteParameter {
                name: join(&stage_name(i), local),
                index,
                value,
            })
        }
        exactflow_kernels::Error::NonFinite { op, what, index, value } => Error::NonFinite {
            stage: stage_name(i),
            kind,
            what: format!("{what} (in {op})"),
            index,
            value,
        },
        other => Error::Numerical(other),
    }
}

/// Fails unless a stage's output and its per-sample values are finite.
fn check_out<T: Real>(i: usize, kind: &'static str, out: &Tensor<T>, per_sample: &[T], what: &str) -> Result<()> {
    if let Some((k, v)) = out.first_non_finite() {
        let m = out.sample_len().max(1);
        return Err(non_finite(i, kind, "output", ((k / m, k % m), v)));
    }
    match first_bad(per_sample, 1) {
        Some(bad) => Err(non_finite(i, kind, what, bad)),
        None => Ok(()),
    }
}

fn add_into<T: Real>(acc: &mut [T], v: &[T]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

impl<T: Real> Flow<T> {
    /// An unconditional flow over samples of shape `data_shape`, checked so that consecutive
    /// stages agree on their sample shapes. One thread.
    ///
    /// # Errors
    /// [`Error::Config`] for no stages or mismatched shapes.
    pub fn new(stages: Vec<Box<dyn Stage<T>>>, base: Box<dyn Distribution<T>>, data_shape: &[usize]) -> Result<Self> {
        if stages.is_empty() {
            return Err(Error::Config("a flow needs at least one stage".into()));
        }
        let mut shape = data_shape.to_vec();
        for (i, s) in stages.iter().enumerate() {
            let (inp, out) = s.sample_shapes();
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
            context_dim: 0,
            embedding: None,
            par: Parallelism::Sequential,
            params_checked: false,
        })
    }

    /// The same flow as a conditional flow `p(x | c)` with a context of width `context_dim`
    /// (0: unconditional): every pass then needs a context `[N, context_dim]`. The stages must
    /// read it (a conditional conditioner); this only sets what the flow checks.
    pub fn with_context_dim(mut self, context_dim: usize) -> Self {
        self.context_dim = context_dim;
        self
    }

    /// The same conditional flow with a context embedding `e = embedding(c)`: every pass maps
    /// the context `[N, C]` once through the MLP and the stages read `e` `[N, E]` (they must be
    /// built for a context of width E). Its parameters are named `embedding.{j}.weight` and
    /// `embedding.{j}.bias`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unconditional flow, or an MLP that does not read `[C]` or itself
    /// reads a context.
    pub fn with_embedding(mut self, embedding: Mlp<T>) -> Result<Self> {
        if self.context_dim == 0 || embedding.in_shape() != [self.context_dim] || embedding.context_dim() != 0 {
            return Err(Error::Config(format!(
                "a context embedding must map the flow's context of width {} (an unconditional flow has none), found an MLP from {:?} (context {})",
                self.context_dim,
                embedding.in_shape(),
                embedding.context_dim()
            )));
        }
        self.embedding = Some(embedding);
        Ok(self)
    }

    /// The context embedding, if the flow has one.
    pub fn embedding(&self) -> Option<&Mlp<T>> {
        self.embedding.as_ref()
    }

    /// The context the stages read for `context`: its embedding `E(c)` when the flow has one,
    /// else the context itself.
    ///
    /// # Errors
    /// A context that does not fit the flow (as every pass); a non-finite embedding.
    pub fn stage_context(&self, n: usize, context: Option<&Tensor<T>>) -> Result<Option<Tensor<T>>> {
        let mut embedded = None;
        let cx = self.ctx("Flow::stage_context", n, context, &mut embedded)?;
        Ok(cx.context.cloned())
    }

    /// The sample shape of the data.
    pub fn data_shape(&self) -> &[usize] {
        &self.data_shape
    }

    /// The width of the context a conditional flow needs (0 for an unconditional flow).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }

    /// The sample shape of the final latent.
    pub fn latent_shape(&self) -> Vec<usize> {
        self.stages.last().map(|s| s.sample_shapes().1).unwrap_or_default()
    }

    /// The stages, in forward order.
    pub fn stages(&self) -> &[Box<dyn Stage<T>>] {
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

    /// The number of factor-out stages (the number of factored-out latents).
    pub fn num_splits(&self) -> usize {
        self.stages.iter().filter(|s| s.factored_shape().is_some()).count()
    }

    /// The parallelism of the flow's matrix products.
    pub fn parallelism(&self) -> Parallelism {
        self.par
    }

    /// Sets the parallelism of the flow's matrix products (`Parallelism::Sequential`, the
    /// default, is bit-for-bit reproducible on any machine).
    pub fn set_parallelism(&mut self, par: Parallelism) {
        self.par = par;
    }

    /// The trainer vouches (`true`) that every parameter is finite, having checked them, and
    /// checks every value it writes afterwards; the passes then skip their scans of the
    /// parameters. Crate-private: nothing else changes parameters under this promise.
    pub(crate) fn set_params_checked(&mut self, checked: bool) {
        self.params_checked = checked;
    }

    /// The flow with its matrix products on `par`.
    pub fn with_parallelism(mut self, par: Parallelism) -> Self {
        self.par = par;
        self
    }

    /// The call context of the stages for a batch of `n` samples: checks that a conditional
    /// flow has a finite context of `n` rows and the right width, and an unconditional one none;
    /// with an embedding, maps the context into `embedded` and hands the stages that.
    fn ctx<'a>(
        &self,
        op: &'static str,
        n: usize,
        context: Option<&'a Tensor<T>>,
        embedded: &'a mut Option<Tensor<T>>,
    ) -> Result<Ctx<'a, T>> {
        self.check_context(op, n, context)?;
        if let (Some(net), Some(c)) = (&self.embedding, context) {
            *embedded = Some(self.embed(op, net, c)?);
        }
        let embedded: &'a Option<Tensor<T>> = embedded;
        let cx = Ctx::new(embedded.as_ref().or(context))
            .with_par(self.par)
            .with_params_checked(self.params_checked);
        cx.check_batch(op, n)?;
        Ok(cx)
    }

    /// `E(c)`, after checking `c` (named by its row when not finite) and, unless the trainer
    /// vouches for them, the embedding's parameters; an overflowing output is
    /// [`Error::NonFinite`] naming the embedding.
    fn embed(&self, op: &'static str, net: &Mlp<T>, c: &Tensor<T>) -> Result<Tensor<T>> {
        c.check_finite(op, "context")?;
        if !self.params_checked {
            net.check_params_finite(crate::embedding::PREFIX)?;
        }
        let e = net.forward(c, Ctx::new(None).with_par(self.par))?;
        self.check_embedded(&e)?;
        Ok(e)
    }

    fn check_embedded(&self, e: &Tensor<T>) -> Result<()> {
        match e.first_non_finite() {
            Some((k, v)) => {
                let m = e.sample_len().max(1);
                Err(Error::NonFinite {
                    stage: crate::embedding::PREFIX.to_string(),
                    kind: "Mlp",
                    what: "embedded context".into(),
                    index: (k / m, k % m),
                    value: v,
                })
            }
            None => Ok(()),
        }
    }

    /// Checks that a conditional flow has a context of `n` rows and its width, and an
    /// unconditional one none.
    fn check_context(&self, op: &'static str, n: usize, context: Option<&Tensor<T>>) -> Result<()> {
        match (self.context_dim, context) {
            (0, None) => {}
            (0, Some(c)) => {
                return Err(Error::invalid(
                    op,
                    "context",
                    format!(
                        "this flow is unconditional, but a context of shape {:?} was given",
                        c.shape()
                    ),
                ));
            }
            (d, None) => {
                return Err(Error::invalid(
                    op,
                    "context",
                    format!("this flow is conditional and needs a context of shape [N, {d}], none was given"),
                ));
            }
            (d, Some(c)) => {
                c.expect_shape(op, &[n, d])?;
            }
        }
        Ok(())
    }

    fn check_data(&self, op: &'static str, x: &Tensor<T>) -> Result<()> {
        x.expect_sample_shape(op, &self.data_shape)?;
        x.check_finite(op, "data")?;
        Ok(())
    }

    /// The log-density of a factored latent: the stage's prior's, or the base distribution's.
    fn score_factored(&self, z: &Tensor<T>, own: Option<Vec<T>>, cx: Ctx<'_, T>) -> Result<Vec<T>> {
        match own {
            Some(lp) => Ok(lp),
            None => Ok(self.base.log_prob(z, cx)?),
        }
    }

    /// The forward walk: the latents of a batch and, per sample, the sum of the stages'
    /// log-dets, plus (`score`) the log-densities of the factored latents and of the final one.
    fn forward_walk(
        &self,
        op: &'static str,
        x: &Tensor<T>,
        context: Option<&Tensor<T>>,
        score: bool,
    ) -> Result<(Latent<T>, Vec<T>)> {
        self.check_data(op, x)?;
        let mut embedded = None;
        let cx = self.ctx(op, x.batch(), context, &mut embedded)?;
        let mut total = vec![T::zero(); x.batch()];
        let mut h = x.clone();
        let mut factored = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            let kind = s.kind();
            // On intervals, an undecided comparison is recorded with the stage it happened in.
            let step = if T::ENCLOSURE {
                undecided::in_scope(|| format!("{} ({kind})", stage_name(i)), || s.forward(&h, cx))
            } else {
                s.forward(&h, cx)
            }
            .map_err(|e| at_stage(i, kind, e))?;
            check_out(i, kind, &step.out, &step.log_det, "log-det")?;
            add_into(&mut total, &step.log_det);
            if let Some(f) = step.factored {
                if score {
                    let lp = self.score_factored(&f.z, f.log_p, cx)?;
                    if let Some(bad) = first_bad(&lp, 1) {
                        return Err(non_finite(i, kind, "log-density of the factored latent", bad));
                    }
                    add_into(&mut total, &lp);
                }
                factored.push(f.z);
            }
            h = step.out;
        }
        if score {
            let lp = if T::ENCLOSURE {
                undecided::in_scope(|| format!("base ({})", self.base.kind()), || self.base.log_prob(&h, cx))
            } else {
                self.base.log_prob(&h, cx)
            };
            add_into(&mut total, &lp?);
        }
        Ok((Latent { z: h, factored }, total))
    }

    /// Pushes a batch through every stage (forward direction) and returns its latents and
    /// `log p(x)` per sample (`log p(x | context)` for a conditional flow).
    ///
    /// # Errors
    /// A batch of the wrong shape or with NaN/inf; a context that does not fit the flow;
    /// [`Error::NonFinite`] naming the first stage whose output is not finite.
    pub fn encode_with_log_prob(&self, x: &Tensor<T>, context: Option<&Tensor<T>>) -> Result<(Latent<T>, Vec<T>)> {
        self.forward_walk("Flow::encode", x, context, true)
    }

    /// The latents of a batch and `sum_k log|det dz_k/dz_{k-1}|` per sample: the log-det of the
    /// whole map `x -> (z, factored latents)`, without the base distribution and split priors.
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn encode_with_log_det(&self, x: &Tensor<T>, context: Option<&Tensor<T>>) -> Result<(Latent<T>, Vec<T>)> {
        self.forward_walk("Flow::encode_with_log_det", x, context, false)
    }

    /// `log p(x)` per sample (nats).
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn log_prob(&self, x: &Tensor<T>, context: Option<&Tensor<T>>) -> Result<Vec<T>> {
        Ok(self.encode_with_log_prob(x, context)?.1)
    }

    /// The latents of a batch.
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn encode(&self, x: &Tensor<T>, context: Option<&Tensor<T>>) -> Result<Latent<T>> {
        Ok(self.encode_with_log_prob(x, context)?.0)
    }

    /// The inverse walk from the final latent `z`: each stage's inverse in reverse order, the
    /// factored latents taken from `source`. Per sample, `acc` receives `sign` times every
    /// stage's `log|det dx/dz|` and, for drawn latents, their log-densities.
    fn inverse_walk(
        &self,
        z: Tensor<T>,
        cx: Ctx<'_, T>,
        mut source: LatentSource<'_, T>,
        acc: &mut [T],
        sign: T,
    ) -> Result<Tensor<T>> {
        let mut h = z;
        let mut stored = match &source {
            LatentSource::Stored(latents) => latents.len(),
            LatentSource::Drawn { .. } => 0,
        };
        for (i, s) in self.stages.iter().enumerate().rev() {
            let kind = s.kind();
            let drawn;
            let factored = match (s.factored_shape(), &mut source) {
                (None, _) => None,
                (Some(_), LatentSource::Stored(latents)) => {
                    // invariant: the caller checked the count against num_splits.
                    stored = stored.checked_sub(1).ok_or_else(|| {
                        Error::invalid("Flow::decode", "latent", "fewer factored latents than splits")
                    })?;
                    Some(&latents[stored])
                }
                (Some(shape), LatentSource::Drawn { temperature, rng }) => {
                    let (z_out, lp) = match s
                        .sample_factored(&h, *temperature, &mut **rng, cx)
                        .map_err(|e| at_stage(i, kind, e))?
                    {
                        Some(drawn) => drawn,
                        None => {
                            let z_out = self.base.sample(h.batch(), &shape, *temperature, &mut **rng, cx)?;
                            let lp = self.base.log_prob(&z_out, cx)?;
                            (z_out, lp)
                        }
                    };
                    add_into(acc, &lp);
                    drawn = z_out;
                    Some(&drawn)
                }
            };
            let (x, ld) = s.inverse(&h, factored, cx).map_err(|e| at_stage(i, kind, e))?;
            check_out(i, kind, &x, &ld, "inverse log-det")?;
            for (a, &d) in acc.iter_mut().zip(&ld) {
                *a += sign * d;
            }
            h = x;
        }
        Ok(h)
    }

    /// The data a set of latents maps back to (the inverse of [`Flow::encode`]).
    ///
    /// # Errors
    /// Latents of the wrong shape or count; NaN/inf; a context that does not fit the flow;
    /// [`Error::NonFinite`] naming a stage whose inverse overflowed.
    pub fn decode(&self, latent: &Latent<T>, context: Option<&Tensor<T>>) -> Result<Tensor<T>> {
        latent.z.expect_sample_shape("Flow::decode", &self.latent_shape())?;
        latent.z.check_finite("Flow::decode", "latent")?;
        if latent.factored.len() != self.num_splits() {
            return Err(exactflow_kernels::Error::LengthMismatch {
                op: "Flow::decode",
                what: "factored latents",
                expected: self.num_splits(),
                found: latent.factored.len(),
            }
            .into());
        }
        let mut embedded = None;
        let cx = self.ctx("Flow::decode", latent.z.batch(), context, &mut embedded)?;
        let mut ld = vec![T::zero(); latent.z.batch()];
        let source = LatentSource::Stored(&latent.factored);
        self.inverse_walk(latent.z.clone(), cx, source, &mut ld, T::one())
    }

    /// `n` samples of the model at `temperature` (the base distribution's spread times T; T = 1 is
    /// the model itself, T = 0 its mode pushed through the inverse).
    ///
    /// # Errors
    /// A negative or non-finite temperature; a context that does not fit the flow.
    pub fn sample(
        &self,
        n: usize,
        temperature: f64,
        rng: &mut dyn RngCore,
        context: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>> {
        Ok(self.sample_and_log_prob(n, temperature, rng, context)?.0)
    }

    /// Samples and their model log-density `log p(x)`, from one inverse pass:
    /// `log p(x) = log pi(z) + sum_splits log p(z_l) - sum_k log|det dx/dz|_k`.
    ///
    /// # Errors
    /// A negative or non-finite temperature; a context that does not fit the flow;
    /// [`Error::TooLarge`] when `n` samples (and a pass's activations)
    /// would not fit in this machine's memory.
    pub fn sample_and_log_prob(
        &self,
        n: usize,
        temperature: f64,
        rng: &mut dyn RngCore,
        context: Option<&Tensor<T>>,
    ) -> Result<(Tensor<T>, Vec<T>)> {
        crate::memory::check(
            || format!("drawing {n} samples of shape {:?}", self.data_shape()),
            crate::eval::activation_bytes(self, n),
        )?;
        let mut embedded = None;
        let cx = self.ctx("Flow::sample", n, context, &mut embedded)?;
        let z = self.base.sample(n, &self.latent_shape(), temperature, rng, cx)?;
        let mut log_p = self.base.log_prob(&z, cx)?;
        let source = LatentSource::Drawn { temperature, rng };
        let x = self.inverse_walk(z, cx, source, &mut log_p, -T::one())?;
        Ok((x, log_p))
    }

    /// `steps` points on the straight line between the latents of `x_a` and `x_b` (single
    /// samples, batch 1), decoded: row 0 is `x_a`, row `steps - 1` is `x_b` (up to rounding). A
    /// conditional flow takes one context row, used for every point.
    ///
    /// # Errors
    /// Inputs that are not one sample each; `steps < 2`.
    pub fn interpolate(
        &self,
        x_a: &Tensor<T>,
        x_b: &Tensor<T>,
        steps: usize,
        context: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>> {
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
        let (la, lb) = (self.encode(x_a, context)?, self.encode(x_b, context)?);
        let lerp = |a: &Tensor<T>, b: &Tensor<T>| -> Result<Tensor<T>> {
            let m = a.sample_len();
            let mut data = Vec::with_capacity(steps * m);
            for k in 0..steps {
                let t = T::lit(k as f64 / (steps - 1) as f64);
                data.extend(a.as_slice().iter().zip(b.as_slice()).map(|(&p, &q)| p + t * (q - p)));
            }
            let mut shape = a.shape().to_vec();
            shape[0] = steps;
            Ok(Tensor::new(&shape, data)?)
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
        let repeated = context.map(|c| c.gather_batch(&vec![0; steps])).transpose()?;
        self.decode(&latent, repeated.as_ref())
    }

    /// The training forward walk: `log p(x)` per sample and the cache for [`Flow::backward`].
    /// Batch norm uses batch statistics; ActNorm initializes on its first call. `mode` decides
    /// what the cache keeps (see [`TrainMode`]).
    ///
    /// # Errors
    /// As [`Flow::encode_with_log_prob`].
    pub fn forward_train(
        &mut self,
        x: &Tensor<T>,
        context: Option<&Tensor<T>>,
        mode: TrainMode,
    ) -> Result<(Vec<T>, FlowCache<T>)> {
        let op = "Flow::forward_train";
        self.check_data(op, x)?;
        self.check_context(op, x.batch(), context)?;
        // The embedding's training pass runs once; every stage reads its output.
        let (embedded, embedding_cache) = match (&self.embedding, context) {
            (Some(net), Some(c)) => {
                c.check_finite(op, "context")?;
                if !self.params_checked {
                    net.check_params_finite(crate::embedding::PREFIX)?;
                }
                let (e, cache) = net.forward_train(c, Ctx::new(None).with_par(self.par))?;
                self.check_embedded(&e)?;
                (Some(e), Some(cache))
            }
            _ => (None, None),
        };
        let stage_context = embedded.as_ref().or(context);
        let cx = Ctx::new(stage_context)
            .with_par(self.par)
            .with_params_checked(self.params_checked);
        cx.check_batch(op, x.batch())?;
        let mut log_p = vec![T::zero(); x.batch()];
        let mut caches = (mode == TrainMode::Cached).then(|| Vec::with_capacity(self.stages.len()));
        let mut factored = Vec::new();
        let mut h = x.clone();
        for i in 0..self.stages.len() {
            let kind = self.stages[i].kind();
            let (step, cache) = self.stages[i]
                .forward_train(&h, cx, Pass::Train)
                .map_err(|e| at_stage(i, kind, e))?;
            check_out(i, kind, &step.out, &step.log_det, "log-det")?;
            add_into(&mut log_p, &step.log_det);
            if let Some(f) = step.factored {
                let base_scored = f.log_p.is_none();
                let lp = self.score_factored(&f.z, f.log_p, cx)?;
                if let Some(bad) = first_bad(&lp, 1) {
                    return Err(non_finite(i, kind, "log-density of the factored latent", bad));
                }
                add_into(&mut log_p, &lp);
                factored.push(FactoredOut { z: f.z, base_scored });
            }
            // In the memory-efficient mode the cache is dropped here; backward rebuilds it.
            if let Some(c) = caches.as_mut() {
                c.push(cache);
            }
            h = step.out;
        }
        add_into(&mut log_p, &self.base.log_prob(&h, cx)?);
        let cache = FlowCache {
            caches,
            factored,
            z: h,
            context: embedded.or_else(|| context.cloned()),
            embedding: embedding_cache,
            par: self.par,
        };
        Ok((log_p, cache))
    }

    /// The backward walk: backpropagates `dL/dlog p(x_i)` (one weight per sample) into every
    /// parameter's gradient, and returns dL/dx (and dL/dcontext for a conditional flow). A
    /// memory-efficient cache has each stage's activations recomputed on the way (see
    /// [`TrainMode::MemoryEfficient`]).
    ///
    /// # Errors
    /// A weight vector of the wrong length; a cache from another flow; [`Error::NonFinite`] when
    /// a recomputing inverse overflows.
    pub fn backward(&mut self, cache: FlowCache<T>, dlog_p: &[T]) -> Result<InputGrad<T>> {
        let FlowCache {
            mut caches,
            mut factored,
            z,
            context,
            embedding,
            par,
        } = cache;
        if dlog_p.len() != z.batch() {
            return Err(exactflow_kernels::Error::LengthMismatch {
                op: "Flow::backward",
                what: "dlog_p",
                expected: z.batch(),
                found: dlog_p.len(),
            }
            .into());
        }
        let mismatch = || Error::invalid("Flow::backward", "cache", "the cache does not match the flow's stages");
        if caches.as_ref().is_some_and(|c| c.len() != self.stages.len())
            || factored.len() != self.num_splits()
            || embedding.is_some() != self.embedding.is_some()
        {
            return Err(mismatch());
        }
        let cx = Ctx::new(context.as_ref()).with_par(par);
        let top = self.base.backward(&z, dlog_p, cx)?;
        let mut g = top.x;
        let mut dcontext = top.context;
        // The memory-efficient walk recomputes each stage's input from its output, starting here.
        let mut h = z;
        for i in (0..self.stages.len()).rev() {
            let kind = self.stages[i].kind();
            let out = if self.stages[i].factored_shape().is_some() {
                Some(factored.pop().ok_or_else(mismatch)?)
            } else {
                None
            };
            let dfactored = match &out {
                Some(f) if f.base_scored => {
                    let d = self.base.backward(&f.z, dlog_p, cx)?;
                    dcontext = exactflow_layers::bijector::sum_optional(dcontext, d.context)?;
                    Some(d.x)
                }
                _ => None,
            };
            let stage = &mut self.stages[i];
            let stage_cache = match caches.as_mut() {
                Some(c) => c.pop().ok_or_else(mismatch)?,
                None => {
                    let fz = out.as_ref().map(|f| &f.z);
                    let x = stage.inverse_replay(&h, fz, cx).map_err(|e| at_stage(i, kind, e))?;
                    if let Some((k, v)) = x.first_non_finite() {
                        let m = x.sample_len().max(1);
                        return Err(non_finite(i, kind, "recomputed input", ((k / m, k % m), v)));
                    }
                    let (_, c) = stage
                        .forward_train(&x, cx, Pass::Replay)
                        .map_err(|e| at_stage(i, kind, e))?;
                    h = x;
                    c
                }
            };
            let grad = stage
                .backward(stage_cache, &g, dfactored.as_ref(), dlog_p)
                .map_err(|e| at_stage(i, kind, e))?;
            g = grad.x;
            dcontext = exactflow_layers::bijector::sum_optional(dcontext, grad.context)?;
        }
        // dL/de summed over the stages, back through the embedding to dL/dc (a flow whose
        // stages ignore the context gives the embedding a zero dL/de).
        if let (Some(net), Some(cache), Some(e)) = (self.embedding.as_mut(), embedding, context.as_ref()) {
            let de = match dcontext {
                Some(d) => d,
                None => Tensor::zeros(e.shape())?,
            };
            dcontext = Some(net.backward(cache, &de)?.x);
        }
        Ok(InputGrad {
            x: g,
            context: dcontext,
        })
    }

    /// The same flow on forward-mode dual numbers, for exact Jacobians (the audit).
    pub fn to_dual(&self) -> Flow<F1> {
        Flow {
            stages: self.stages.iter().map(|s| s.to_dual()).collect(),
            base: self.base.to_dual(),
            data_shape: self.data_shape.clone(),
            context_dim: self.context_dim,
            embedding: self.embedding.as_ref().map(Mlp::cast),
            par: self.par,
            params_checked: false,
        }
    }

    /// The same flow on intervals: every parameter becomes the point interval of its value, so
    /// that [`Flow::log_prob`] returns, per sample, an interval containing the exact `log p(x)`
    /// of the stored parameters (see [`crate::certify`], which also checks that no comparison
    /// was left undecided). The matrix products stay sequential unless set otherwise.
    pub fn to_interval(&self) -> Flow<Interval> {
        Flow {
            stages: self.stages.iter().map(|s| s.to_interval()).collect(),
            base: self.base.to_interval(),
            data_shape: self.data_shape.clone(),
            context_dim: self.context_dim,
            embedding: self.embedding.as_ref().map(Mlp::cast),
            par: self.par,
            params_checked: false,
        }
    }

    /// The same flow (parameters and state) in f64.
    pub fn to_f64(&self) -> Flow<f64> {
        Flow {
            stages: self.stages.iter().map(|s| s.to_f64()).collect(),
            base: self.base.to_f64(),
            data_shape: self.data_shape.clone(),
            context_dim: self.context_dim,
            embedding: self.embedding.as_ref().map(Mlp::cast),
            par: self.par,
            params_checked: false,
        }
    }
}

impl<T: Real> Params<T> for Flow<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        for (i, s) in self.stages.iter().enumerate() {
            s.visit_params(&join(prefix, &stage_name(i)), f);
        }
        self.base.visit_params(&join(prefix, "base"), f);
        if let Some(e) = &self.embedding {
            e.visit_params(&join(prefix, crate::embedding::PREFIX), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        for (i, s) in self.stages.iter_mut().enumerate() {
            s.visit_params_mut(&join(prefix, &stage_name(i)), f);
        }
        self.base.visit_params_mut(&join(prefix, "base"), f);
        if let Some(e) = &mut self.embedding {
            e.visit_params_mut(&join(prefix, crate::embedding::PREFIX), f);
        }
    }

    fn visit_int(&self, prefix: &str, f: &mut dyn FnMut(&str, &IntBuffer)) {
        for (i, s) in self.stages.iter().enumerate() {
            s.visit_int(&join(prefix, &stage_name(i)), f);
        }
        self.base.visit_int(&join(prefix, "base"), f);
    }

    fn visit_int_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut IntBuffer)) {
        for (i, s) in self.stages.iter_mut().enumerate() {
            s.visit_int_mut(&join(prefix, &stage_name(i)), f);
        }
        self.base.visit_int_mut(&join(prefix, "base"), f);
    }
}
