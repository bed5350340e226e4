//! The training loop.
//!
//! One step: a minibatch (rows in the epoch's seeded order; discrete data dequantized with noise
//! seeded by the step), `loss = -mean log p(x)`, backward, global gradient-norm clipping, an Adam
//! update at the scheduled learning rate. After every epoch: the validation NLL, early-stopping
//! bookkeeping (the best parameters are kept and restored at the end), a checkpoint.
//!
//! **Reproducibility.** The epoch order depends only on `(seed, epoch)` and the noise only on
//! `(seed, step)`, so with one thread a seed gives bit-for-bit the same run, and a run resumed from
//! a checkpoint continues exactly as the uninterrupted one would have.
//!
//! **Divergence.** A non-finite output, log-det, loss or gradient stops training with
//! [`Error::Diverged`] naming the step and the layer; no checkpoint is written after the last good
//! epoch, so the last good checkpoint is left untouched.

use std::path::PathBuf;
use std::time::Instant;

use exactflow_kernels::gemm::{Parallelism, default_parallelism, set_default_parallelism};
use exactflow_kernels::{Error, Real, Result};
use exactflow_layers::Params;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adam::{Adam, AdamConfig};
use super::observer::{EpochReport, Observer, StepReport};
use super::schedule::{Decay, Schedule};
use crate::checkpoint::{self, TrainState, restore_params, snapshot_params};
use crate::config::ModelConfig;
use crate::data::{Dataset, epoch_order};
use crate::eval::{data_log_likelihood, evaluate, model_input};
use crate::flow::Flow;

/// Everything about a training run except the model and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Threads for the matrix products (1: sequential and bit-for-bit reproducible).
    pub threads: usize,
    /// Samples per evaluation batch.
    pub eval_batch: usize,
    /// Where to write the checkpoint after every epoch and at the end.
    pub checkpoint: Option<PathBuf>,
    /// Memory-efficient backward ([`Flow::forward_train_memory_efficient`]): recompute each
    /// layer's input from its output instead of keeping every layer's activations, so activation
    /// memory does not grow with depth (about one extra inverse and forward pass per step).
    /// Same gradients up to rounding. Default false.
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
        if self.threads == 0 {
            return bad("threads must be at least 1".into());
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

/// `e` with the training step filled in. The data were checked finite when loaded and the
/// parameters are checked after every update, so a non-finite value met inside a training pass
/// (an output that overflowed, or an input the memory-efficient backward recomputed by an inverse)
/// means the run diverged: it is reported as such, naming the layer, rather than as bad input.
fn diverged_at(e: Error, step: u64) -> Error {
    match e {
        Error::Diverged { layer, what, .. } => Error::Diverged { step, layer, what },
        Error::NonFinite { op, what, index, value } => Error::Diverged {
            step,
            layer: op.to_string(),
            what: format!("{what} (first bad entry {value} at {index:?})"),
        },
        other => other,
    }
}

/// Trains `flow` by maximum likelihood on `train` (validating on `val` after every epoch).
///
/// Pass `resume` (from [`checkpoint::load`]) to continue a run exactly where it stopped.
///
/// # Errors
/// [`Error::Config`] for bad settings or data that does not fit the model; [`Error::Diverged`]
/// when training blows up; [`Error::Io`] when a checkpoint cannot be written.
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
    let n = train.data.batch();
    if n == 0 {
        return Err(Error::Config("the training set is empty".into()));
    }
    if cfg.threads <= 1 {
        return run(flow, model, cfg, train, val, observer, resume);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .build()
        .map_err(|e| Error::Config(format!("cannot start {} threads: {e}", cfg.threads)))?;
    let before = default_parallelism();
    set_default_parallelism(Parallelism::Rayon(cfg.threads));
    let r = pool.install(|| run(flow, model, cfg, train, val, observer, resume));
    set_default_parallelism(before);
    r
}

fn run<T: Real>(
    flow: &mut Flow<T>,
    model: &ModelConfig,
    cfg: &TrainConfig,
    train: &Dataset,
    val: Option<&Dataset>,
    observer: &mut dyn Observer,
    resume: Option<TrainState>,
) -> Result<TrainReport> {
    let start = Instant::now();
    let n = train.data.batch();
    let dim = train.data.sample_len();
    let bs = cfg.batch_size.min(n);
    let per_epoch = (n / bs).max(1);
    let total = cfg.steps.unwrap_or((cfg.epochs * per_epoch) as u64);
    let mut st = resume.unwrap_or_else(|| TrainState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        config: cfg.clone(),
        adam: cfg.adam,
        adam_t: 0,
        best_val_nll: None,
        best_epoch: None,
        epochs_since_best: 0,
        finished: false,
        train_history: Vec::new(),
        val_history: Vec::new(),
        moments: None,
        best_params: None,
    });
    let mut adam: Adam = st.adam();
    let mut best = st.best_params.take();
    let mut history = Vec::new();
    let mut order = epoch_order(n, cfg.seed, st.epoch as u64);
    let mut epoch_loss = 0.0;
    let mut epoch_batches = 0usize;
    let mut stopped_early = false;
    let mut step_time = 0.0f64;
    let mut steps_here = 0u64;
    let bpd = |nll: f64| train.levels.map(|_| nll / (dim as f64 * std::f64::consts::LN_2));
    while st.step < total {
        let t0 = Instant::now();
        let b = st.batch_in_epoch;
        let idx = &order[b * bs..(b + 1) * bs];
        let mut rng = step_rng(cfg.seed, st.step);
        let x = model_input::<T>(train, idx, &mut rng)?;
        flow.zero_grad();
        let (log_p, cache) = flow
            .forward_train_with(&x, cfg.memory_efficient)
            .map_err(|e| diverged_at(e, st.step))?;
        let mean_lp = log_p.iter().map(|v| v.as_f64()).sum::<f64>() / bs as f64;
        let loss = -data_log_likelihood(mean_lp, dim, train.levels);
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: st.step,
                layer: "flow".into(),
                what: "loss".into(),
            });
        }
        let w = vec![T::lit(-1.0 / bs as f64); bs];
        flow.backward(cache, &w).map_err(|e| diverged_at(e, st.step))?;
        let gn = Adam::grad_norm(&*flow);
        let scale = match cfg.clip_grad_norm {
            Some(c) if gn > c => c / gn,
            _ => 1.0,
        };
        let lr = cfg.schedule.lr_at(st.step, total);
        adam.step(&mut *flow, lr, scale).map_err(|e| diverged_at(e, st.step))?;
        step_time += t0.elapsed().as_secs_f64();
        steps_here += 1;
        st.step += 1;
        st.batch_in_epoch += 1;
        epoch_loss += loss;
        epoch_batches += 1;
        observer.on_step(&StepReport {
            step: st.step,
            total_steps: total,
            epoch: st.epoch,
            loss,
            bits_per_dim: bpd(loss),
            lr,
            grad_norm: gn,
            samples_per_sec: (steps_here * bs as u64) as f64 / step_time.max(1e-12),
            steps_per_sec: steps_here as f64 / step_time.max(1e-12),
        });
        if st.batch_in_epoch == per_epoch || st.step == total {
            let train_nll = epoch_loss / epoch_batches.max(1) as f64;
            let ev = val.map(|v| evaluate(flow, v, cfg.eval_batch)).transpose()?;
            let val_nll = ev.as_ref().map(|e| e.nll);
            let improved = match (val_nll, st.best_val_nll) {
                (Some(v), Some(b)) => v < b,
                (Some(v), None) => v.is_finite(),
                _ => false,
            };
            if improved {
                st.best_val_nll = val_nll;
                st.best_epoch = Some(st.epoch);
                st.epochs_since_best = 0;
                if cfg.patience.is_some() {
                    best = Some(snapshot_params(&*flow));
                }
            } else if val_nll.is_some() {
                st.epochs_since_best += 1;
            }
            let report = EpochReport {
                epoch: st.epoch,
                step: st.step,
                train_nll,
                val_nll,
                val_bits_per_dim: ev.and_then(|e| e.bits_per_dim),
                improved,
            };
            observer.on_epoch(&report);
            history.push(report);
            st.train_history.push(train_nll);
            st.val_history.push(val_nll);
            st.epoch += 1;
            st.batch_in_epoch = 0;
            order = epoch_order(n, cfg.seed, st.epoch as u64);
            epoch_loss = 0.0;
            epoch_batches = 0;
            stopped_early = cfg
                .patience
                .is_some_and(|p| st.epochs_since_best >= p && val_nll.is_some());
            if st.step < total && !stopped_early {
                save_checkpoint(cfg, model, flow, &mut st, &adam, best.as_ref(), false)?;
            }
            if stopped_early {
                break;
            }
        }
    }
    if let Some(b) = &best {
        restore_params(&mut *flow, b);
    }
    save_checkpoint(cfg, model, flow, &mut st, &adam, best.as_ref(), true)?;
    Ok(TrainReport {
        steps: st.step,
        epochs: st.epoch,
        train_nll: st.train_history.last().copied().unwrap_or(f64::NAN),
        best_val_nll: st.best_val_nll,
        best_epoch: st.best_epoch,
        stopped_early,
        samples_per_sec: (steps_here * bs as u64) as f64 / step_time.max(1e-12),
        wall_seconds: start.elapsed().as_secs_f64(),
        history,
    })
}

fn save_checkpoint<T: Real>(
    cfg: &TrainConfig,
    model: &ModelConfig,
    flow: &Flow<T>,
    st: &mut TrainState,
    adam: &Adam,
    best: Option<&std::collections::BTreeMap<String, Vec<f64>>>,
    finished: bool,
) -> Result<()> {
    let Some(path) = &cfg.checkpoint else {
        return Ok(());
    };
    st.finished = finished;
    st.adam = adam.config;
    st.adam_t = adam.t;
    st.moments = Some((adam.m.clone(), adam.v.clone()));
    st.best_params = best.cloned();
    let r = checkpoint::save(path, model, flow, Some(st));
    st.moments = None;
    st.best_params = None;
    r
}
