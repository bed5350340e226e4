//! The training loop.
//!
//! One step: a minibatch (rows in the epoch's seeded order; discrete data dequantized with noise
//! seeded by the step), `loss = -mean log p(x)`, backward, global gradient-norm clipping, an Adam
//! update at the scheduled learning rate. After every epoch: the validation NLL, the divergence
//! test, early-stopping bookkeeping, a checkpoint.
//!
//! **Reproducibility.** The epoch order depends only on `(seed, epoch)` and the noise only on
//! `(seed, step)`, so with one thread a seed gives bit-for-bit the same run, and a run resumed from
//! a checkpoint continues exactly as the uninterrupted one would have.
//!
//! **The best model.** With a validation set, the parameters of the epoch with the lowest
//! validation NLL are kept (a snapshot), the checkpoint's model is always that best one (a worse
//! epoch never replaces it on disk), and the flow holds it when training ends. To resume exactly,
//! the checkpoint also stores the latest parameters (`latest.*`) when they differ from the best,
//! and Adam's moments (FORMAT.md). Without a validation set, the latest model is the checkpoint.
//!
//! **Divergence.** Training has diverged when
//!
//! - an output, log-det, the loss, a gradient or a parameter Adam has written is not finite
//!   (named by stage or parameter and step), or
//! - at the end of an epoch, the validation NLL is not finite, or is worse than the initial
//!   model's (measured before the first step) by more than [`DIVERGENCE_MARGIN_PER_DIM`] nats per
//!   data dimension: a learning rate that blows the model up without reaching infinity.
//!
//! Either stops training with [`Error::Diverged`] naming the step; nothing is written for the
//! diverged epoch, so the checkpoint on disk stays the last good one.
//!
//! **Threads.** `threads` is a value of the run, used as [`Strategy::choose`] decides: one shard
//! of each minibatch per thread ([`super::shards`]; a step that initializes ActNorm from its
//! minibatch runs unsharded), the flow's matrix products on
//! `Parallelism::from_threads(threads)`, or one thread; either inside a rayon pool of that size made for this
//! run, and the flow's own parallelism is restored afterwards. A given thread count is
//! reproducible bit for bit. Nothing process-wide changes, so two
//! trainings in one process (even on two threads at once) do not affect each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use exactflow_kernels::Real;
use exactflow_kernels::gemm::Parallelism;
use exactflow_layers::Params;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adam::{Adam, AdamConfig};
use super::observer::{EpochReport, Observer, StepReport};
use super::schedule::{Decay, Schedule};
use super::shards::{Replicas, Strategy, needs_batch_init};
use super::state::TrainState;
use crate::checkpoint::{self, restore_params, snapshot_params};
use crate::config::ModelConfig;
use crate::data::{Dataset, epoch_order};
use crate::error::{Error, Result};
use crate::eval::{data_log_likelihood, evaluate, model_context, model_input};
use crate::flow::{Flow, TrainMode};

/// The divergence margin, in nats per data dimension: at the end of an epoch, a validation NLL
/// (nats per sample, of samples of D values) above `initial + DIVERGENCE_MARGIN_PER_DIM * D`,
/// where `initial` is the NLL of the model before training, means the run has diverged. One nat
/// per dimension (1.44 bits/dim) is far beyond what an epoch of a working run loses (runs improve
/// on their initial NLL by a few tenths of a nat per dimension on the data sets of the tests and
/// benchmarks) and far below what an exploding learning rate reaches (1e68 nats on two moons).
pub const DIVERGENCE_MARGIN_PER_DIM: f64 = 1.0;

/// The most threads a run may use ([`TrainConfig::threads`]).
pub const MAX_THREADS: usize = 1024;

/// Everything about a training run except the model and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Total optimizer steps; when `None`, `epochs` full passes.
    pub steps: Option<u64>,
    /// Passes over the training set (used when `steps` is `None`).
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate, warmup and decay.
    pub schedule: Schedule,
    /// Adam's betas and epsilon.
    pub adam: AdamConfig,
    /// Rescale the gradient when its global L2 norm exceeds this.
    pub clip_grad_norm: Option<f64>,
    /// Stop after this many epochs without a better validation NLL (needs a validation set).
    pub patience: Option<usize>,
    /// Seed of the batch order and the dequantization noise.
    pub seed: u64,
    /// Threads of the run: one shard of each minibatch per thread, or the matrix products
    /// split over them, as [`Strategy::choose`] decides by shape. A given count is reproducible
    /// bit for bit (1: sequential, the same on any machine).
    pub threads: usize,
    /// Samples per evaluation batch.
    pub eval_batch: usize,
    /// Where to write the checkpoint after every epoch and at the end.
    pub checkpoint: Option<PathBuf>,
    /// Memory-efficient backward ([`TrainMode::MemoryEfficient`]): recompute each layer's input
    /// from its output instead of keeping every layer's activations, so activation memory does
    /// not grow with depth (about one extra inverse and forward pass per step). Same gradients up
    /// to rounding. Default false.
    #[serde(default)]
    pub memory_efficient: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: None,
            epochs: 10,
            batch_size: 256,
            schedule: Schedule {
                lr: 1e-3,
                warmup: 0,
                decay: Decay::Constant,
            },
            adam: AdamConfig::default(),
            clip_grad_norm: Some(100.0),
            patience: None,
            seed: 0,
            threads: 1,
            eval_batch: 1024,
            checkpoint: None,
            memory_efficient: false,
        }
    }
}

impl TrainConfig {
    /// Checks the settings a user can get wrong.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.schedule.lr.is_finite() && self.schedule.lr > 0.0) {
            return bad(format!(
                "learning rate must be positive and finite, found {}",
                self.schedule.lr
            ));
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
            return bad("training needs at least one step".into());
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad(format!(
                "threads must be between 1 and {MAX_THREADS}, found {}",
                self.threads
            ));
        }
        if self.eval_batch == 0 {
            return bad("the evaluation batch must be at least 1".into());
        }
        match self.schedule.decay {
            Decay::Constant => {}
            Decay::Cosine { min_ratio } if (0.0..=1.0).contains(&min_ratio) => {}
            Decay::Step { gamma, .. } if gamma.is_finite() && gamma > 0.0 => {}
            other => return bad(format!("impossible learning-rate decay {other:?}")),
        }
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return bad(format!("gradient clipping norm must be positive, found {c}"));
        }
        let AdamConfig { beta1, beta2, eps } = self.adam;
        if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) || eps.is_nan() || eps <= 0.0 {
            return bad(format!(
                "Adam needs 0 <= beta < 1 and eps > 0, found {beta1}, {beta2}, {eps}"
            ));
        }
        Ok(())
    }
}

/// What a training run did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainReport {
    /// Optimizer steps done (in total, including those before a resume).
    pub steps: u64,
    /// Epochs completed.
    pub epochs: usize,
    /// Mean training NLL of the last epoch (nats per sample).
    pub train_nll: f64,
    /// Best validation NLL (nats per sample), and its epoch.
    pub best_val_nll: Option<f64>,
    /// The epoch of the best validation NLL.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Training throughput (samples per second, steps only, in this process).
    pub samples_per_sec: f64,
    /// Wall-clock seconds of this process's training (validation included).
    pub wall_seconds: f64,
    /// Per-epoch reports.
    pub history: Vec<EpochReport>,
}

fn step_rng(seed: u64, step: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A separate ChaCha stream per step: independent noise, recomputable after a resume.
    rng.set_stream(step.wrapping_add(1));
    rng
}

/// `e` as a divergence at `step`. The data were checked finite when loaded and the parameters
/// are checked after every update, so a non-finite value met inside a training pass (an output
/// that overflowed, or an input the memory-efficient backward recomputed by an inverse) means the
/// run diverged: it is reported as such, naming the stage, rather than as bad input.
fn diverged_at(e: Error, step: u64) -> Error {
    match e {
        Error::Diverged { reason, .. } => Error::Diverged { step, reason },
        Error::NonFinite {
            stage,
            kind,
            what,
            index,
            value,
        } => Error::Diverged {
            step,
            reason: format!("{what} of {stage} ({kind}) is not finite (first bad entry {value} at {index:?})"),
        },
        Error::Numerical(exactflow_kernels::Error::NonFinite { op, what, index, value }) => Error::Diverged {
            step,
            reason: format!("{what} of {op} is not finite (first bad entry {value} at {index:?})"),
        },
        other => other,
    }
}

/// Trains `flow` by maximum likelihood on `train` (validating on `val` after every epoch).
///
/// Pass `resume` (from [`TrainState::from_record`] of a checkpoint) to continue a run exactly
/// where it stopped.
///
/// # Errors
/// [`Error::Config`] for bad settings, data that does not fit the model or a resume state that
/// does not fit the run; [`Error::Diverged`] when training blows up; [`Error::Io`] when a
/// checkpoint cannot be written.
pub fn train<T: Real>(
    flow: &mut Flow<T>,
    model: &ModelConfig,
    cfg: &TrainConfig,
    train: &Dataset,
    val: Option<&Dataset>,
    observer: &mut dyn Observer,
    resume: Option<TrainState>,
) -> Result<TrainReport> {
    cfg.validate()?;
    train.data.expect_sample_shape("train", flow.data_shape())?;
    if let Some(v) = val {
        v.data
            .expect_sample_shape("train (validation set)", flow.data_shape())?;
    }
    crate::eval::check_context(flow, train)?;
    if let Some(v) = val {
        crate::eval::check_context(flow, v)?;
    }
    if train.data.batch() == 0 {
        return Err(Error::Config("the training set is empty".into()));
    }
    let plan = Plan::new(cfg, train.data.batch());
    crate::memory::check(
        || {
            format!(
                "a training step on batches of {} samples of shape {:?} ({} stages)",
                plan.batch,
                train.sample_shape(),
                flow.stages().len()
            )
        },
        crate::eval::activation_bytes(flow, plan.batch),
    )?;
    let state = match resume {
        Some(mut st) => {
            plan.check_resume(&st, flow)?;
            // The run goes on with `cfg` (the caller decides, e.g., where checkpoints go).
            st.config = cfg.clone();
            st
        }
        None => {
            let mut st = TrainState::start(cfg);
            st.initial_val_nll = initial_nll(flow, val, cfg.eval_batch)?;
            st
        }
    };
    let before = flow.parallelism();
    let strategy = Strategy::choose(flow, cfg.threads, plan.batch);
    flow.set_parallelism(match strategy {
        Strategy::ParallelGemm => Parallelism::from_threads(cfg.threads),
        Strategy::Sequential | Strategy::Shards => Parallelism::Sequential,
    });
    let result = if cfg.threads <= 1 {
        Run::new(flow, model, cfg, plan, train, val, observer, state).run(strategy)
    } else {
        match rayon::ThreadPoolBuilder::new().num_threads(cfg.threads).build() {
            Ok(pool) => pool.install(|| Run::new(flow, model, cfg, plan, train, val, observer, state).run(strategy)),
            Err(e) => Err(Error::Config(format!("cannot start {} threads: {e}", cfg.threads))),
        }
    };
    flow.set_parallelism(before);
    flow.set_params_checked(false);
    result
}

/// The validation NLL of the model before training (the divergence test's reference), or `None`
/// without a validation set or when the initial model does not score it finitely.
fn initial_nll<T: Real>(flow: &Flow<T>, val: Option<&Dataset>, eval_batch: usize) -> Result<Option<f64>> {
    let Some(v) = val else {
        return Ok(None);
    };
    match evaluate(flow, v, eval_batch) {
        Ok(e) => Ok(Some(e.nll).filter(|x| x.is_finite())),
        Err(Error::NonFinite { .. } | Error::Numerical(exactflow_kernels::Error::NonFinite { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks that every entry of a resumed state's named values is a parameter of the flow, with
/// as many values.
fn check_named<T: Real>(flow: &Flow<T>, what: &str, values: Option<&BTreeMap<String, Vec<f64>>>) -> Result<()> {
    let Some(values) = values else {
        return Ok(());
    };
    let mut lens = BTreeMap::new();
    flow.visit_params("", &mut |name, p| {
        lens.insert(name.to_string(), p.value.len());
    });
    for (name, v) in values {
        match lens.get(name) {
            Some(&n) if n == v.len() => {}
            Some(&n) => {
                return Err(Error::Config(format!(
                    "the training state to resume has {} {what} values for {name}, the model has {n}",
                    v.len()
                )));
            }
            None => {
                return Err(Error::Config(format!(
                    "the training state to resume has {what} values for {name}, which the model does not have"
                )));
            }
        }
    }
    Ok(())
}

/// The shape of a run: batch size, batches per epoch, total steps.
#[derive(Clone, Copy, Debug)]
struct Plan {
    n: usize,
    batch: usize,
    per_epoch: usize,
    total: u64,
}

impl Plan {
    fn new(cfg: &TrainConfig, n: usize) -> Self {
        let batch = cfg.batch_size.min(n);
        let per_epoch = (n / batch).max(1);
        let total = cfg
            .steps
            .unwrap_or_else(|| (cfg.epochs as u64).saturating_mul(per_epoch as u64));
        Plan {
            n,
            batch,
            per_epoch,
            total,
        }
    }

    /// A resumed state that this plan can continue with `flow`: its position inside an epoch
    /// exists, and its moments and parameter snapshots fit the flow's parameters.
    fn check_resume<T: Real>(&self, st: &TrainState, flow: &Flow<T>) -> Result<()> {
        if st.batch_in_epoch >= self.per_epoch {
            return Err(Error::Config(format!(
                "the training state to resume is at batch {} of an epoch of {} batches",
                st.batch_in_epoch, self.per_epoch
            )));
        }
        if let Some((m, v)) = &st.moments {
            check_named(flow, "first-moment", Some(m))?;
            check_named(flow, "second-moment", Some(v))?;
        }
        check_named(flow, "best-parameter", st.best_params.as_ref())?;
        check_named(flow, "latest-parameter", st.latest_params.as_ref())?;
        Ok(())
    }
}

impl TrainState {
    /// Checks that this state can be resumed by [`train`] with `cfg`, `train_len` training
    /// samples and `flow` (the checkpoint's model): the checks `train` makes before it starts.
    ///
    /// # Errors
    /// [`Error::Config`] for bad settings, a position beyond the end of an epoch, or moments and
    /// parameter snapshots that do not fit the flow's parameters.
    pub fn check_resumable<T: Real>(&self, cfg: &TrainConfig, train_len: usize, flow: &Flow<T>) -> Result<()> {
        cfg.validate()?;
        Plan::new(cfg, train_len.max(1)).check_resume(self, flow)
    }
}

/// One training run in progress: the flow, its optimizer and bookkeeping.
struct Run<'a, T: Real> {
    flow: &'a mut Flow<T>,
    model: &'a ModelConfig,
    cfg: &'a TrainConfig,
    plan: Plan,
    train: &'a Dataset,
    val: Option<&'a Dataset>,
    observer: &'a mut dyn Observer,
    st: TrainState,
    adam: Adam<T>,
    /// The replicas that run shards 1..N of each minibatch ([`Strategy::Shards`]), else `None`.
    replicas: Option<Replicas<T>>,
    /// With replicas: whether the next step initializes ActNorm from its minibatch (so runs
    /// unsharded). Checked when the replicas are made and after each such step only: an
    /// initialized layer never becomes uninitialized during a run.
    batch_init_pending: bool,
    best: Option<BTreeMap<String, Vec<f64>>>,
    /// Whether the flow's parameters are the best ones (no step since the best epoch).
    best_is_current: bool,
    order: Vec<usize>,
    history: Vec<EpochReport>,
    epoch_loss: f64,
    epoch_batches: usize,
    step_time: f64,
    steps_here: u64,
    start: Instant,
}

impl<'a, T: Real> Run<'a, T> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        flow: &'a mut Flow<T>,
        model: &'a ModelConfig,
        cfg: &'a TrainConfig,
        plan: Plan,
        train: &'a Dataset,
        val: Option<&'a Dataset>,
        observer: &'a mut dyn Observer,
        mut st: TrainState,
    ) -> Self {
        let adam = st.adam();
        // A resumed flow holds the checkpoint's model: the best one when the latest parameters
        // were stored apart (format 3), else the latest (with, from format 2 and earlier, the
        // best kept as `best.*` when early stopping was on).
        let (best, best_is_current) = match st.latest_params.take() {
            Some(latest) => {
                let best = snapshot_params(&*flow);
                restore_params(&mut *flow, &latest);
                (Some(best), false)
            }
            None => match st.best_params.take() {
                Some(b) => (Some(b), false),
                None if st.best_val_nll.is_some() => (Some(snapshot_params(&*flow)), true),
                None => (None, false),
            },
        };
        let order = epoch_order(plan.n, cfg.seed, st.epoch as u64);
        Run {
            flow,
            model,
            cfg,
            plan,
            train,
            val,
            observer,
            st,
            adam,
            replicas: None,
            batch_init_pending: false,
            best,
            best_is_current,
            order,
            history: Vec::new(),
            epoch_loss: 0.0,
            epoch_batches: 0,
            step_time: 0.0,
            steps_here: 0,
            start: Instant::now(),
        }
    }

    fn bits_per_dim(&self, nll: f64) -> Option<f64> {
        let dim = self.train.data.sample_len();
        self.train.levels.map(|_| nll / (dim as f64 * std::f64::consts::LN_2))
    }

    fn run(mut self, strategy: Strategy) -> Result<TrainReport> {
        // The parameters are checked once here, and Adam checks every value it writes, so the
        // passes of the run skip their own scans of them.
        self.flow.check_params_finite("train")?;
        self.flow.set_params_checked(true);
        match strategy {
            Strategy::ParallelGemm => self.adam.set_parallelism(self.flow.parallelism()),
            Strategy::Shards => {
                // Two shards run on the team's helper (see `Replicas::forward_backward`), which
                // is then awake for Adam's large tensors too; with more shards the team would
                // compete with the rayon workers, so Adam stays on one thread.
                if self.cfg.threads == 2 {
                    self.adam.set_parallelism(Parallelism::from_threads(2));
                }
                self.replicas = Some(Replicas::new(self.model, self.flow, self.cfg.threads)?);
                self.batch_init_pending = needs_batch_init(&*self.flow);
            }
            Strategy::Sequential => {}
        }
        let mut stopped_early = false;
        while self.st.step < self.plan.total {
            let t0 = Instant::now();
            let (loss, lr, grad_norm) = self.step()?;
            self.step_time += t0.elapsed().as_secs_f64();
            self.steps_here += 1;
            self.report_step(loss, lr, grad_norm);
            if self.st.batch_in_epoch == self.plan.per_epoch || self.st.step == self.plan.total {
                stopped_early = self.end_epoch()?;
                if stopped_early {
                    break;
                }
            }
        }
        self.finish(stopped_early)
    }

    /// One optimizer step on the next minibatch: returns the loss, the learning rate and the
    /// gradient norm before clipping.
    fn step(&mut self) -> Result<(f64, f64, f64)> {
        let (bs, step) = (self.plan.batch, self.st.step);
        let b = self.st.batch_in_epoch;
        let idx = &self.order[b * bs..(b + 1) * bs];
        let mut rng = step_rng(self.cfg.seed, step);
        let x = model_input::<T>(self.train, idx, &mut rng)?;
        let c = model_context::<T>(self.train, idx)?;
        let mode = if self.cfg.memory_efficient {
            TrainMode::MemoryEfficient
        } else {
            TrainMode::Cached
        };
        // A step that initializes ActNorm from its minibatch runs as one pass over all of it.
        let initializing = self.batch_init_pending;
        let loss = match &mut self.replicas {
            // Data-parallel: the passes of the shards at once, their gradients summed.
            // Each shard takes its rows of the data and of the context.
            Some(replicas) if !initializing => {
                let log_p = replicas
                    .forward_backward(self.flow, &x, c.as_ref(), mode)
                    .map_err(|e| diverged_at(e, step))?;
                self.loss(&log_p, step)?
            }
            _ => {
                self.flow.zero_grad();
                let (log_p, cache) = self
                    .flow
                    .forward_train(&x, c.as_ref(), mode)
                    .map_err(|e| diverged_at(e, step))?;
                let loss = self.loss(&log_p, step)?;
                let w = vec![T::lit(-1.0 / bs as f64); bs];
                self.flow.backward(cache, &w).map_err(|e| diverged_at(e, step))?;
                if let Some(replicas) = &mut self.replicas {
                    replicas.sync_state(self.flow)?;
                    self.batch_init_pending = needs_batch_init(&*self.flow);
                }
                loss
            }
        };
        let lr = self.cfg.schedule.lr_at(step, self.plan.total);
        let grad_norm = self
            .adam
            .clip_and_step(&mut *self.flow, lr, self.cfg.clip_grad_norm)
            .map_err(|e| diverged_at(e, step))?;
        self.st.step += 1;
        self.st.batch_in_epoch += 1;
        self.best_is_current = false;
        self.epoch_loss += loss;
        self.epoch_batches += 1;
        Ok((loss, lr, grad_norm))
    }

    /// The minibatch's loss, `-mean log p(x)` (per data value for discrete data), checked
    /// finite.
    fn loss(&self, log_p: &[T], step: u64) -> Result<f64> {
        let mean_lp = log_p.iter().map(|v| v.as_f64()).sum::<f64>() / log_p.len() as f64;
        let loss = -data_log_likelihood(mean_lp, self.train.data.sample_len(), self.train.levels);
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step,
                reason: format!("the loss is {loss}"),
            });
        }
        Ok(loss)
    }

    fn report_step(&mut self, loss: f64, lr: f64, grad_norm: f64) {
        let samples = (self.steps_here * self.plan.batch as u64) as f64;
        let report = StepReport {
            step: self.st.step,
            total_steps: self.plan.total,
            epoch: self.st.epoch,
            loss,
            bits_per_dim: self.bits_per_dim(loss),
            lr,
            grad_norm,
            samples_per_sec: samples / self.step_time.max(1e-12),
            steps_per_sec: self.steps_here as f64 / self.step_time.max(1e-12),
        };
        self.observer.on_step(&report);
    }

    /// The end of an epoch: validation, early-stopping bookkeeping, a checkpoint. Returns
    /// whether early stopping ends the run.
    fn end_epoch(&mut self) -> Result<bool> {
        let train_nll = self.epoch_loss / self.epoch_batches.max(1) as f64;
        let last_step = self.st.step.saturating_sub(1);
        let ev = self
            .val
            .map(|v| evaluate(self.flow, v, self.cfg.eval_batch))
            .transpose()
            .map_err(|e| diverged_at(e, last_step))?;
        let val_nll = ev.as_ref().map(|e| e.nll);
        if let Some(v) = val_nll {
            self.check_divergence(v, last_step)?;
        }
        let improved = match (val_nll, self.st.best_val_nll) {
            (Some(v), Some(b)) => v < b,
            (Some(v), None) => v.is_finite(),
            _ => false,
        };
        if improved {
            self.st.best_val_nll = val_nll;
            self.st.best_epoch = Some(self.st.epoch);
            self.st.epochs_since_best = 0;
            self.best = Some(snapshot_params(&*self.flow));
            self.best_is_current = true;
        } else if val_nll.is_some() {
            self.st.epochs_since_best += 1;
        }
        let report = EpochReport {
            epoch: self.st.epoch,
            step: self.st.step,
            train_nll,
            val_nll,
            val_bits_per_dim: ev.and_then(|e| e.bits_per_dim),
            improved,
        };
        self.observer.on_epoch(&report);
        self.history.push(report);
        self.st.train_history.push(train_nll);
        self.st.val_history.push(val_nll);
        self.st.epoch += 1;
        self.st.batch_in_epoch = 0;
        self.order = epoch_order(self.plan.n, self.cfg.seed, self.st.epoch as u64);
        self.epoch_loss = 0.0;
        self.epoch_batches = 0;
        let stopped_early = self
            .cfg
            .patience
            .is_some_and(|p| self.st.epochs_since_best >= p && val_nll.is_some());
        if self.st.step < self.plan.total && !stopped_early {
            self.save_checkpoint(false)?;
        }
        Ok(stopped_early)
    }

    /// The divergence test of an epoch's validation NLL `v` (see the module documentation).
    fn check_divergence(&self, v: f64, step: u64) -> Result<()> {
        if !v.is_finite() {
            return Err(Error::Diverged {
                step,
                reason: format!("the validation NLL is {v}"),
            });
        }
        // A run resumed from a checkpoint of format 2 or earlier has no initial NLL: its first
        // epoch's stands in.
        let reference = self
            .st
            .initial_val_nll
            .or_else(|| self.st.val_history.iter().flatten().copied().find(|x| x.is_finite()));
        let Some(initial) = reference else {
            return Ok(());
        };
        let dim = self.train.data.sample_len();
        let margin = DIVERGENCE_MARGIN_PER_DIM * dim as f64;
        if v > initial + margin {
            return Err(Error::Diverged {
                step,
                reason: format!(
                    "the validation NLL {v:.6e} nats is worse than the initial model's {initial:.6} by more than \
                     the margin of {margin} nats ({DIVERGENCE_MARGIN_PER_DIM} per dimension x {dim} dimensions); \
                     lower the learning rate"
                ),
            });
        }
        Ok(())
    }

    /// Writes the final checkpoint, leaves the best parameters in the flow and reports.
    fn finish(mut self, stopped_early: bool) -> Result<TrainReport> {
        self.save_checkpoint(true)?;
        if let Some(b) = &self.best {
            restore_params(&mut *self.flow, b);
        }
        let samples = (self.steps_here * self.plan.batch as u64) as f64;
        Ok(TrainReport {
            steps: self.st.step,
            epochs: self.st.epoch,
            train_nll: self.st.train_history.last().copied().unwrap_or(f64::NAN),
            best_val_nll: self.st.best_val_nll,
            best_epoch: self.st.best_epoch,
            stopped_early,
            samples_per_sec: samples / self.step_time.max(1e-12),
            wall_seconds: self.start.elapsed().as_secs_f64(),
            history: self.history,
        })
    }

    /// Writes the checkpoint: the best model so far as the model (the latest when there is no
    /// best), and, when they differ, the latest parameters as `latest.*` to resume from.
    fn save_checkpoint(&mut self, finished: bool) -> Result<()> {
        let Some(path) = &self.cfg.checkpoint else {
            return Ok(());
        };
        let st = &mut self.st;
        st.finished = finished;
        st.adam = self.adam.config;
        st.adam_t = self.adam.t;
        st.moments = Some(self.adam.moments());
        let swap = match &self.best {
            Some(best) if !self.best_is_current => Some((best, snapshot_params(&*self.flow))),
            _ => None,
        };
        let result = (|| {
            let mut record = st.to_record()?;
            if let Some((best, latest)) = &swap {
                restore_params(&mut *self.flow, best);
                record.latest = Some(latest.clone());
            }
            checkpoint::save(path, self.model, self.flow, Some(&record))
        })();
        if let Some((_, latest)) = &swap {
            restore_params(&mut *self.flow, latest);
        }
        st.moments = None;
        result
    }
}
