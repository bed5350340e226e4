//! A training run as `exactflow train` does it, as one library call: the options and their
//! defaults, the data and its splits, the model (a preset, or the checkpoint to resume), training,
//! the evaluation of every split, the pictures and the run's metrics.
//!
//! The command line and the Python package (`exactflow.train`) both go through
//! [`TrainingRun`], so they take the same options with the same defaults and report the same
//! metrics:
//!
//! ```no_run
//! use exactflow::training::{TrainData, TrainOptions, TrainingRun};
//! use exactflow::models::train::Silent;
//! # fn main() -> exactflow::Result<()> {
//! let mut options = TrainOptions::new("realnvp");
//! options.steps = Some(200);
//! let mut run = TrainingRun::prepare(&options, &TrainData::parse("moons")?)?;
//! let report = run.train(&mut Silent)?;
//! let results = run.finish(&report)?;
//! println!("test NLL {}", results.test.nll);
//! # Ok(())
//! # }
//! ```
//!
//! Without an output directory ([`TrainOptions::out`] = `None`) nothing is written: the trained
//! flow stays in [`TrainingRun::flow`]. With one, the run writes its checkpoint after every epoch
//! ([`CHECKPOINT_FILE`]), then the pictures and [`METRICS_FILE`], as the command line does.

use std::fmt;
use std::path::{Path, PathBuf};

use exactflow_kernels::Real;
use exactflow_layers::Tensor;
use exactflow_models::checkpoint;
use exactflow_models::data::{DataSpec, Dataset, FILE_HOLDOUT, Splits, split_train_val_test};
use exactflow_models::eval::fitting_batch;
use exactflow_models::train::{Decay, MAX_THREADS, Observer, Schedule, TrainConfig, TrainReport, TrainState, train};
use exactflow_models::{Error, Evaluation, Flow, ModelConfig, Precision, Result, evaluate};
use serde_json::{Value, json};

/// The model families `train` knows (the `model` option).
pub const FAMILIES: [&str; 6] = ["nice", "realnvp", "glow", "maf", "iaf", "nsf"];
/// Optimizer steps on toy data when neither `steps` nor `epochs` is given.
pub const TOY_STEPS: u64 = 2000;
/// Passes over the training set on other data when neither `steps` nor `epochs` is given.
pub const DEFAULT_EPOCHS: usize = 40;
/// Samples per optimizer step.
pub const DEFAULT_BATCH_SIZE: usize = 512;
/// Peak learning rate of Adam.
pub const DEFAULT_LR: f64 = 1e-3;
/// The arithmetic training runs in by default: f32, as in every peer (PyTorch, nflows, flowrs).
pub const DEFAULT_PRECISION: Precision = Precision::F32;
pub use exactflow_models::data::{DEFAULT_SIM_PAIRS, DEFAULT_TOY_SAMPLES};
/// Samples per batch when evaluating a split (`exactflow eval` and the metrics). Per-sample
/// log-likelihoods do not depend on it in exact arithmetic; with it fixed they agree bit for bit
/// between the command line and the Python package.
pub const EVAL_BATCH: usize = 1024;
/// The checkpoint's file name inside a run directory.
pub const CHECKPOINT_FILE: &str = "model.safetensors";
/// The metrics' file name inside a run directory.
pub const METRICS_FILE: &str = "metrics.json";
/// Fraction of the steps spent warming the learning rate up linearly.
const WARMUP_FRACTION: u64 = 50;
/// The cosine decay ends at this fraction of the peak learning rate.
const DECAY_MIN_RATIO: f64 = 0.01;
/// Mixed into the seed of the pictures' samples, so that they do not share a stream with the
/// initialization or the batches.
#[cfg(feature = "pictures")]
const PICTURE_SEED_TAG: u64 = 0x5a4d_91e5;

/// The options of a training run: the flags of `exactflow train`, the keyword arguments of
/// `exactflow.train`. [`TrainOptions::new`] gives every default.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Model family, one of [`FAMILIES`].
    pub model: String,
    /// Architecture preset of the family (see `ModelConfig::preset`). `None`: `digits` for the
    /// digits, `mnist` and `cifar10` for those, `toy` otherwise ([`TrainData::default_preset`]).
    pub preset: Option<String>,
    /// Passes over the training set (not together with `steps`).
    pub epochs: Option<usize>,
    /// Optimizer steps. When neither is given: [`TOY_STEPS`] for toy data, [`DEFAULT_EPOCHS`]
    /// epochs otherwise.
    pub steps: Option<u64>,
    /// Samples per optimizer step ([`DEFAULT_BATCH_SIZE`]).
    pub batch_size: usize,
    /// Peak learning rate of Adam ([`DEFAULT_LR`]), after a warmup of 2% of the steps, with a
    /// cosine decay to 1% of it.
    pub lr: f64,
    /// Seed of the initialization, the data splits, the batch order and the dequantization noise.
    pub seed: u64,
    /// Threads of the run (1 by default): shards of each minibatch or parallel matrix products,
    /// as `exactflow_models::train::Strategy::choose` decides by shape. A given count gives
    /// bit-for-bit reproducible runs.
    pub threads: usize,
    /// The arithmetic of training and of the checkpoint's tensors ([`DEFAULT_PRECISION`]). A
    /// resumed run keeps its checkpoint's precision whatever this says.
    pub precision: Precision,
    /// The run directory (created if missing) for the checkpoint, the pictures and the metrics;
    /// `None` writes nothing. The command line defaults it to [`default_out_dir`].
    pub out: Option<PathBuf>,
    /// Points drawn for a toy data set's or a simulator's training split; `None` takes the
    /// data set's default ([`DataSpec::default_samples`]: [`DEFAULT_TOY_SAMPLES`] points,
    /// [`DEFAULT_SIM_PAIRS`] simulated pairs).
    pub toy_samples: Option<usize>,
    /// Stop after this many epochs without a better validation NLL (the best model is kept).
    pub patience: Option<usize>,
    /// Continue the run whose checkpoint is in `out`, exactly where it stopped.
    pub resume: bool,
    /// Memory-efficient backward (recompute each layer's input from its output).
    pub memory_efficient: bool,
    /// A context embedding for a conditional model (`--context-embedding 64,64:16`): the
    /// context is mapped by this MLP once, and every conditioner reads its output (see
    /// `exactflow_models::embedding`). `None`: the conditioners read the context itself. Only
    /// for a new conditional model; a resumed run keeps its checkpoint's.
    pub context_embedding: Option<crate::models::ContextEmbedding>,
}

impl TrainOptions {
    /// The options of `exactflow train --model MODEL` with every other flag left out.
    pub fn new(model: impl Into<String>) -> Self {
        TrainOptions {
            model: model.into(),
            preset: None,
            epochs: None,
            steps: None,
            batch_size: DEFAULT_BATCH_SIZE,
            lr: DEFAULT_LR,
            seed: 0,
            threads: 1,
            precision: DEFAULT_PRECISION,
            out: None,
            toy_samples: None,
            patience: None,
            resume: false,
            memory_efficient: false,
            context_embedding: None,
        }
    }

    /// Checks the options that are wrong on their own, before any data is read; returns the
    /// model family.
    ///
    /// # Errors
    /// An [`InvalidOption`] naming the option (in snake case: a front end words it as its flag or
    /// keyword).
    pub fn check(&self) -> std::result::Result<&'static str, InvalidOption> {
        let bad = |option, reason: String| Err(InvalidOption { option, reason });
        let Some(family) = FAMILIES.iter().copied().find(|f| *f == self.model) else {
            return bad(
                "model",
                format!(
                    "unknown model '{}': expected one of {}",
                    self.model,
                    FAMILIES.join(", ")
                ),
            );
        };
        if self.steps.is_some() && self.epochs.is_some() {
            return bad("epochs", "cannot be given together with steps".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be a positive number, found {}", self.lr));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return bad(
                "threads",
                format!("must be between 1 and {MAX_THREADS}, found {}", self.threads),
            );
        }
        if self.resume && self.out.is_none() {
            return bad("resume", "needs the run directory (out) holding the checkpoint".into());
        }
        if self.resume && self.context_embedding.is_some() {
            return bad(
                "context_embedding",
                "a resumed run keeps its checkpoint's architecture; leave it out with resume".into(),
            );
        }
        Ok(family)
    }
}

/// An option with a value it cannot take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOption {
    /// The option, in snake case (`batch_size`); the command line writes it as `--batch-size`.
    pub option: &'static str,
    /// What is wrong (shown after the option's name and a colon).
    pub reason: String,
}

impl InvalidOption {
    /// The option as a command-line flag: `--batch-size`.
    pub fn flag(&self) -> String {
        format!("--{}", self.option.replace('_', "-"))
    }
}

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.reason)
    }
}

impl From<InvalidOption> for Error {
    fn from(e: InvalidOption) -> Self {
        Error::Config(e.to_string())
    }
}

/// What a run trains on: a named source (a [`DataSpec`], as `--data` takes it), or samples in
/// memory, split 80/10/10 by the seed exactly as a `csv:` or `npy:` file of the same samples is.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainData {
    /// How the data are named in messages, in the metrics and in the default run directory: the
    /// spec as given, or the data set's name.
    pub label: String,
    source: Source,
    context: Option<Pairing>,
}

/// Where the context of a conditional model comes from, besides a simulator (which brings its
/// own).
#[derive(Clone, Debug, PartialEq)]
enum Pairing {
    /// A `[N, C]` array, one row per sample.
    Rows(Tensor<f64>),
    /// The last K columns of the samples.
    Columns(usize),
    /// A file (`npy:PATH` or `csv:PATH`) of `[N, C]`, one row per sample.
    File(DataSpec),
}

#[derive(Clone, Debug, PartialEq)]
enum Source {
    Spec(DataSpec),
    Samples(Dataset),
}

impl TrainData {
    /// A data spec (`moons`, `digits-image`, `csv:PATH`, ...; see [`DataSpec`]).
    ///
    /// # Errors
    /// An unknown spec (the message lists the valid ones).
    pub fn parse(spec: &str) -> Result<Self> {
        Ok(TrainData {
            label: spec.to_string(),
            source: Source::Spec(spec.parse()?),
            context: None,
        })
    }

    /// Samples in memory, labelled by the data set's name.
    pub fn samples(data: Dataset) -> Self {
        TrainData {
            label: data.name.clone(),
            source: Source::Samples(data),
            context: None,
        }
    }

    /// The samples with the conditioning input of a conditional flow, `[N, C]`: row i is the
    /// context of sample i. The model is then built conditional on a context of width C (a
    /// family without conditional models refuses it in [`TrainingRun::prepare`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a data set that cannot take one (a toy distribution, the digits,
    /// MNIST, CIFAR-10; a simulator brings its own); for samples in memory, a context that is not
    /// `[N, C]` for the N samples (the error names both counts) or holds NaN or an infinity (the
    /// error names its row). A `csv:`/`npy:` file's row count is checked when it is read.
    pub fn with_context(self, context: Tensor<f64>) -> Result<Self> {
        self.paired(Pairing::Rows(context))
    }

    /// The samples with their last `k` columns taken as the context (`--context-cols K`).
    ///
    /// # Errors
    /// As [`TrainData::with_context`]; `k = 0`. Whether the samples have more than `k` columns
    /// is checked when they are read.
    pub fn with_context_columns(self, k: usize) -> Result<Self> {
        if k == 0 {
            return Err(Error::Config("--context-cols needs K >= 1 columns".into()));
        }
        self.paired(Pairing::Columns(k))
    }

    /// The samples paired with a context read from a `npy:PATH` or `csv:PATH` file of the same
    /// row count (`--context npy:PATH`).
    ///
    /// # Errors
    /// As [`TrainData::with_context`]; a spec other than `npy:` or `csv:`.
    pub fn with_context_file(self, spec: &str) -> Result<Self> {
        let spec: DataSpec = spec.parse()?;
        if !matches!(spec, DataSpec::Npy(_) | DataSpec::Csv(_)) {
            return Err(Error::Config(format!(
                "a context file is npy:PATH or csv:PATH, found {spec}"
            )));
        }
        self.paired(Pairing::File(spec))
    }

    fn paired(self, pairing: Pairing) -> Result<Self> {
        match &self.source {
            Source::Spec(DataSpec::Csv(_) | DataSpec::Npy(_)) => {}
            Source::Samples(ds) => {
                // Checked now, so that a bad context is named before anything else runs.
                pair(ds.clone(), &pairing)?;
            }
            Source::Spec(DataSpec::Sim(_)) => {
                return Err(Error::Config(format!(
                    "the simulator {} brings its own context (x); do not give another",
                    self.label
                )));
            }
            Source::Spec(_) => {
                return Err(Error::Config(format!(
                    "a context goes with samples in memory or a csv:/npy: file, not with the named data set {}",
                    self.label
                )));
            }
        }
        Ok(TrainData {
            context: Some(pairing),
            ..self
        })
    }

    /// The train / validation / test splits for `seed` ([`DataSpec::load`] for a spec;
    /// [`split_train_val_test`] with [`FILE_HOLDOUT`] for samples, as for a file). A context
    /// is paired with the samples before the split, so every split keeps its rows.
    ///
    /// # Errors
    /// As [`DataSpec::load`] and [`split_train_val_test`]; a context that does not pair with
    /// the samples (its row count, its NaN, too few columns for `--context-cols`).
    pub fn splits(&self, seed: u64, toy_samples: Option<usize>) -> Result<Splits> {
        let whole = match (&self.source, &self.context) {
            (Source::Spec(spec), None) => {
                return spec.load(seed, toy_samples.unwrap_or_else(|| spec.default_samples()));
            }
            (Source::Spec(DataSpec::Csv(p)), Some(_)) => exactflow_models::data::csv::read(p)?,
            (Source::Spec(DataSpec::Npy(p)), Some(_)) => exactflow_models::data::npy::read(p)?,
            (Source::Spec(spec), Some(_)) => {
                return Err(Error::Config(format!("{spec} cannot be paired with a context")));
            }
            (Source::Samples(ds), _) => ds.clone(),
        };
        let whole = match &self.context {
            Some(p) => pair(whole, p)?,
            None => whole,
        };
        split_train_val_test(&whole, FILE_HOLDOUT, FILE_HOLDOUT, seed)
    }

    /// Whether the data are a toy distribution or a simulator (which train [`TOY_STEPS`] steps
    /// by default).
    pub fn is_toy(&self) -> bool {
        matches!(self.source, Source::Spec(DataSpec::Toy(_) | DataSpec::Sim(_)))
    }

    /// The preset the data train with when none is given.
    pub fn default_preset(&self) -> &'static str {
        match &self.source {
            Source::Spec(DataSpec::Digits { .. }) => "digits",
            Source::Spec(DataSpec::Mnist(_)) => "mnist",
            Source::Spec(DataSpec::Cifar10(_)) => "cifar10",
            _ => "toy",
        }
    }
}

/// The samples `ds` with their context attached as `pairing` says.
fn pair(ds: Dataset, pairing: &Pairing) -> Result<Dataset> {
    match pairing {
        Pairing::Rows(c) => ds.with_context(c.clone()),
        Pairing::File(spec) => {
            let read = match spec {
                DataSpec::Npy(p) => exactflow_models::data::npy::read(p),
                DataSpec::Csv(p) => exactflow_models::data::csv::read(p),
                other => {
                    return Err(Error::Config(format!(
                        "a context file is npy:PATH or csv:PATH, found {other}"
                    )));
                }
            };
            // A NaN (or another numerical refusal) is named as the context's, not the data's.
            let c = read.map_err(|e| match e {
                Error::Numerical(n) => Error::Config(format!("the context file {spec}: {n}")),
                other => other,
            })?;
            if c.is_image() {
                return Err(Error::Config(format!(
                    "the context file {spec} holds images {:?}; a context is [N, C]",
                    c.data.shape()
                )));
            }
            if c.len() != ds.len() {
                return Err(Error::Config(format!(
                    "the context file {spec} has {} rows, but the data {} have {} samples: they must pair row for row",
                    c.len(),
                    ds.name,
                    ds.len()
                )));
            }
            ds.with_context(c.data)
        }
        Pairing::Columns(k) => {
            let d = ds.dim();
            if ds.is_image() || *k >= d {
                return Err(Error::Config(format!(
                    "--context-cols {k} needs vector data with more than {k} columns, but {} has samples of shape {:?}",
                    ds.name,
                    ds.sample_shape()
                )));
            }
            let n = ds.len();
            let (mut x, mut c) = (Vec::with_capacity(n * (d - k)), Vec::with_capacity(n * k));
            for row in ds.data.as_slice().chunks_exact(d) {
                x.extend_from_slice(&row[..d - k]);
                c.extend_from_slice(&row[d - k..]);
            }
            Dataset::new(
                ds.name.clone(),
                Tensor::new(&[n, d - k], x)?,
                ds.levels,
                ds.labels.clone(),
            )?
            .with_context(Tensor::new(&[n, *k], c)?)
        }
    }
}

/// The command line's run directory when `--out` is not given: `runs/{family}-{data}`, with
/// every character of the data label other than a letter, a digit or `-` replaced by `_`.
pub fn default_out_dir(family: &str, data_label: &str) -> PathBuf {
    let data: String = data_label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    PathBuf::from("runs").join(format!("{family}-{data}"))
}

/// The checkpoint a path names: `DIR/model.safetensors` for a run directory, the path itself
/// otherwise (as `exactflow eval`, `sample` and `audit` take it).
pub fn checkpoint_path(dir_or_file: &Path) -> PathBuf {
    if dir_or_file.is_dir() {
        dir_or_file.join(CHECKPOINT_FILE)
    } else {
        dir_or_file.to_path_buf()
    }
}

/// A run ready to train: the data split, the model built (or loaded to resume) and checked
/// against the data, the training configuration decided.
pub struct TrainingRun {
    /// The model family.
    pub family: &'static str,
    /// The preset (given or default).
    pub preset: String,
    /// The data's label.
    pub data: String,
    /// The data's splits.
    pub splits: Splits,
    /// The model's configuration.
    pub config: ModelConfig,
    /// The flow in f64 whatever the run's precision: initialized from the preset, or the
    /// resumed run's; after [`TrainingRun::train`], the trained one. An f32 run trains its own
    /// `Flow<f32>` and leaves here its parameters widened to f64, which is exact: the very model
    /// `exactflow eval` loads from the run's F32 checkpoint.
    pub flow: Flow<f64>,
    /// The arithmetic of training and of the checkpoint: the option's, or the resumed
    /// checkpoint's.
    pub precision: Precision,
    /// The training configuration: from the options, or the resumed run's own.
    pub train_config: TrainConfig,
    /// What the user should be told about the run before it starts, one line each (a resumed
    /// checkpoint of an older format, without checksums). The library prints nothing: the
    /// command line writes them to stderr, the Python package issues them as warnings.
    pub warnings: Vec<String>,
    options: TrainOptions,
    resume: Option<TrainState>,
    /// The flow an f32 run trains (`None` for an f64 run, which trains [`TrainingRun::flow`]).
    flow_f32: Option<Flow<f32>>,
}

impl TrainingRun {
    /// Checks the options, splits the data, creates the run directory (when there is one) and
    /// builds the model from its preset, or with `resume` loads it and its training state from the
    /// directory's checkpoint.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad option ([`TrainOptions::check`], worded with the option's
    /// snake-case name), an unknown preset, a resumed checkpoint of another family or without
    /// training state, or data whose sample shape is not the model's; the data's and the
    /// checkpoint's reading errors ([`Error::Io`], [`Error::Format`]).
    pub fn prepare(options: &TrainOptions, data: &TrainData) -> Result<Self> {
        let family = options.check()?;
        let splits = data.splits(options.seed, options.toy_samples)?;
        let preset = options
            .preset
            .clone()
            .unwrap_or_else(|| data.default_preset().to_string());
        let ckpt = match &options.out {
            Some(out) => {
                std::fs::create_dir_all(out)
                    .map_err(|e| Error::io(out, format!("cannot create the directory: {e}")))?;
                Some(out.join(CHECKPOINT_FILE))
            }
            None => None,
        };
        let shape = splits.train.sample_shape().to_vec();
        let mut warnings = Vec::new();
        let (config, flow, flow_f32, resume, precision) = match (&ckpt, options.resume) {
            // A resumed run keeps the precision its checkpoint stores.
            (Some(ckpt), true) => match checkpoint::read_precision(ckpt)? {
                Precision::F32 => {
                    let (config, flow, state) = load_to_resume::<f32>(ckpt, family, &mut warnings)?;
                    (config, flow.to_f64(), Some(flow), Some(state), Precision::F32)
                }
                Precision::F64 => {
                    let (config, flow, state) = load_to_resume::<f64>(ckpt, family, &mut warnings)?;
                    (config, flow, None, Some(state), Precision::F64)
                }
            },
            _ => {
                let mut config = ModelConfig::preset(family, &preset, &shape, options.seed)?;
                // A context in the data makes the model conditional on it.
                config.set_context_dim(splits.train.context_dim())?;
                if let Some(e) = &options.context_embedding {
                    if splits.train.context_dim() == 0 {
                        return Err(Error::Config(format!(
                            "--context-embedding needs a conditional model, but {} carry no context",
                            data.label
                        )));
                    }
                    config.set_context_embedding(Some(e.clone()))?;
                }
                match options.precision {
                    Precision::F32 => {
                        let flow = config.build::<f32>()?;
                        (config, flow.to_f64(), Some(flow), None, Precision::F32)
                    }
                    Precision::F64 => {
                        let flow = config.build::<f64>()?;
                        (config, flow, None, None, Precision::F64)
                    }
                }
            }
        };
        if flow.context_dim() != splits.train.context_dim() {
            let from = if options.resume {
                "the resumed model"
            } else {
                "the model"
            };
            return Err(Error::Config(match (flow.context_dim(), splits.train.context_dim()) {
                (0, c) => format!(
                    "{from} ({family}) is unconditional, but {} carry a context of width {c}",
                    data.label
                ),
                (m, 0) => format!(
                    "{from} ({family}) is conditional on a context of width {m}, but {} have none",
                    data.label
                ),
                (m, c) => format!(
                    "{from} ({family}) takes a context of width {m}, but {} carry one of width {c}",
                    data.label
                ),
            }));
        }
        if flow.data_shape() != shape.as_slice() {
            let from = ckpt
                .as_ref()
                .filter(|_| options.resume)
                .map(|c| format!("the model in {}", c.display()))
                .unwrap_or_else(|| "the model".into());
            return Err(Error::Config(format!(
                "{} has samples of shape {shape:?}, but {from} expects {:?}",
                data.label,
                flow.data_shape()
            )));
        }
        let train_config = match &resume {
            // A resumed run keeps its own settings, but writes where this run writes.
            Some(st) => TrainConfig {
                checkpoint: ckpt.clone(),
                ..st.config.clone()
            },
            None => new_train_config(
                options,
                data.is_toy(),
                splits.train.len(),
                ckpt.clone(),
                fitting_batch(&flow, EVAL_BATCH),
            ),
        };
        if let Some(st) = &resume {
            // A crafted or mismatched training state is refused before any step runs.
            st.check_resumable(&train_config, splits.train.len(), &flow)?;
        }
        Ok(TrainingRun {
            family,
            preset,
            data: data.label.clone(),
            splits,
            config,
            flow,
            precision,
            train_config,
            warnings,
            options: options.clone(),
            resume,
            flow_f32,
        })
    }

    /// The optimizer steps the run will have done when it ends (without early stopping).
    pub fn total_steps(&self) -> u64 {
        let n = self.splits.train.len();
        let bs = self.train_config.batch_size.min(n.max(1));
        self.train_config
            .steps
            .unwrap_or_else(|| (self.train_config.epochs as u64).saturating_mul((n / bs).max(1) as u64))
    }

    /// The line the command line prints before training: model, preset, data, split sizes, sample
    /// shape, steps and precision.
    pub fn summary(&self) -> String {
        format!(
            "training {} ({}) on {} ({} train / {} validation / {} test samples of shape {:?}), {} steps in {}",
            self.family,
            self.preset,
            self.data,
            self.splits.train.len(),
            self.splits.val.len(),
            self.splits.test.len(),
            self.splits.train.sample_shape(),
            self.total_steps(),
            self.precision
        )
    }

    /// The checkpoint the run writes (after every epoch and at the end), when it has a directory.
    pub fn checkpoint(&self) -> Option<&Path> {
        self.train_config.checkpoint.as_deref()
    }

    /// Trains [`TrainingRun::flow`], reporting progress to `observer`.
    ///
    /// # Errors
    /// As [`exactflow_models::train::train`]: [`Error::Diverged`] when training blows up (the
    /// last good checkpoint, if any, is [`TrainingRun::checkpoint`]), [`Error::Io`] when a
    /// checkpoint cannot be written.
    pub fn train(&mut self, observer: &mut dyn Observer) -> Result<TrainReport> {
        let resume = self.resume.take();
        let (config, tc, splits) = (&self.config, &self.train_config, &self.splits);
        match &mut self.flow_f32 {
            Some(flow) => {
                let report = train_flow(flow, config, tc, splits, observer, resume);
                self.flow = flow.to_f64();
                report
            }
            None => train_flow(&mut self.flow, config, tc, splits, observer, resume),
        }
    }

    /// Evaluates every split, writes the pictures and [`METRICS_FILE`] into the run directory
    /// (when there is one), and returns the evaluations, the pictures and the metrics.
    ///
    /// # Errors
    /// A non-finite log-density while evaluating; a picture or the metrics that cannot be
    /// written.
    pub fn finish(&self, report: &TrainReport) -> Result<RunResults> {
        let eval = |ds: &Dataset| evaluate(&self.flow, ds, fitting_batch(&self.flow, EVAL_BATCH));
        let (tr, va, te) = (
            eval(&self.splits.train)?,
            eval(&self.splits.val)?,
            eval(&self.splits.test)?,
        );
        let pictures = match &self.options.out {
            Some(out) => self.write_pictures(out)?,
            None => Vec::new(),
        };
        let metrics = json!({
            "model": self.family,
            "preset": self.preset,
            "data": self.data,
            "seed": self.options.seed,
            "threads": self.options.threads,
            "precision": self.precision.name(),
            "train": split_json(&tr),
            "validation": split_json(&va),
            "test": split_json(&te),
            "steps": report.steps,
            "epochs": report.epochs,
            "best_epoch": report.best_epoch,
            "stopped_early": report.stopped_early,
            "samples_per_sec": report.samples_per_sec,
            "wall_seconds": report.wall_seconds,
            "config": self.config,
            "train_config": self.train_config,
            "pictures": pictures.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        });
        if let Some(out) = &self.options.out {
            let path = out.join(METRICS_FILE);
            let text = serde_json::to_string_pretty(&metrics)
                .map_err(|e| Error::io(&path, format!("metrics as JSON: {e}")))?;
            exactflow_models::atomic_write::write_atomic(&path, format!("{text}\n").as_bytes())?;
        }
        Ok(RunResults {
            train: tr,
            validation: va,
            test: te,
            pictures,
            metrics,
        })
    }

    #[cfg(feature = "pictures")]
    fn write_pictures(&self, out: &Path) -> Result<Vec<PathBuf>> {
        write_pictures(out, &self.flow, &self.splits.train, self.options.seed)
    }

    #[cfg(not(feature = "pictures"))]
    fn write_pictures(&self, _out: &Path) -> Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

/// What [`TrainingRun::finish`] measured and wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResults {
    /// The training split's evaluation.
    pub train: Evaluation,
    /// The validation split's.
    pub validation: Evaluation,
    /// The test split's.
    pub test: Evaluation,
    /// The pictures written.
    pub pictures: Vec<PathBuf>,
    /// The metrics (also written as [`METRICS_FILE`]): `model`, `preset`, `data`, `seed`,
    /// `threads`, `precision` (`f32` or `f64`, the training's; the evaluations are computed in
    /// f64 on the trained parameters, exactly as `exactflow eval` computes them from the
    /// checkpoint), `train` / `validation` / `test` (each `nll` and `bits_per_dim`), `steps`,
    /// `epochs`, `best_epoch`, `stopped_early`, `samples_per_sec`, `wall_seconds`, `config`,
    /// `train_config` and `pictures` (the paths written).
    pub metrics: Value,
}

/// The training configuration of a new run: steps or epochs (by the defaults when neither is
/// given), batch size, the warmup-then-cosine schedule, patience, mode, seed, threads, checkpoint.
fn new_train_config(
    options: &TrainOptions,
    toy: bool,
    n: usize,
    checkpoint: Option<PathBuf>,
    eval_batch: usize,
) -> TrainConfig {
    let steps = match (options.steps, options.epochs) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) if toy => Some(TOY_STEPS),
        (None, None) => None,
    };
    let epochs = options.epochs.unwrap_or(DEFAULT_EPOCHS);
    let bs = options.batch_size.min(n.max(1));
    let total = steps.unwrap_or_else(|| (epochs as u64).saturating_mul((n / bs).max(1) as u64));
    TrainConfig {
        steps,
        epochs,
        batch_size: options.batch_size,
        schedule: Schedule {
            lr: options.lr,
            warmup: total / WARMUP_FRACTION,
            decay: Decay::Cosine {
                min_ratio: DECAY_MIN_RATIO,
            },
        },
        patience: options.patience,
        memory_efficient: options.memory_efficient,
        seed: options.seed,
        threads: options.threads,
        checkpoint,
        eval_batch,
        ..TrainConfig::default()
    }
}

/// Trains `flow`, in its precision `T`, on the training split, validating on the validation split.
fn train_flow<T: Real>(
    flow: &mut Flow<T>,
    config: &ModelConfig,
    train_config: &TrainConfig,
    splits: &Splits,
    observer: &mut dyn Observer,
    resume: Option<TrainState>,
) -> Result<TrainReport> {
    train(
        flow,
        config,
        train_config,
        &splits.train,
        Some(&splits.val),
        observer,
        resume,
    )
}

/// The model, the flow and the training state of the checkpoint `ckpt` that a run of `family`
/// resumes, in the precision `T` the checkpoint stores; the checkpoint's warning, if any, goes
/// to `warnings`.
fn load_to_resume<T: Real>(
    ckpt: &Path,
    family: &str,
    warnings: &mut Vec<String>,
) -> Result<(ModelConfig, Flow<T>, TrainState)> {
    let loaded = checkpoint::load::<T>(ckpt)?;
    if let Some(w) = loaded.warning() {
        warnings.push(format!("{}: {w}", ckpt.display()));
    }
    if loaded.config.family() != family {
        return Err(Error::Config(format!(
            "cannot resume: {} holds a {} model, not {family}",
            ckpt.display(),
            loaded.config.family()
        )));
    }
    let state = TrainState::of_checkpoint(ckpt, &loaded)?
        .ok_or_else(|| Error::Config(format!("cannot resume: {} has no training state", ckpt.display())))?;
    Ok((loaded.config, loaded.flow, state))
}

fn split_json(e: &Evaluation) -> Value {
    json!({ "nll": e.nll, "bits_per_dim": e.bits_per_dim })
}

/// The pictures of a trained flow in `out`: for 2-D data the density beside samples; for
/// 64-dimensional digits or image data a grid of samples at temperatures 1.0, 0.7 and 0.5,
/// reconstructions beside their inputs, and a strip interpolating in latent space between two
/// training images. Returns the paths written.
///
/// # Errors
/// A flow that fails to sample, encode or decode; a picture that cannot be written.
#[cfg(feature = "pictures")]
pub fn write_pictures(out: &Path, flow: &Flow<f64>, train: &Dataset, seed: u64) -> Result<Vec<PathBuf>> {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::pictures;

    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ PICTURE_SEED_TAG);
    let mut written = Vec::new();
    if flow.context_dim() > 0 {
        // A posterior is drawn for one context at a time: `exactflow sample RUN --context ...`.
        return Ok(written);
    }
    if flow.data_shape() == [2] {
        let samples = flow.sample(2000, 1.0, &mut rng, None)?;
        let shown = train.subset(&(0..train.len().min(2000)).collect::<Vec<_>>())?;
        let path = out.join("density_samples.png");
        pictures::save_density_and_samples(&path, flow, &shown.data, &samples)?;
        written.push(path);
    } else if let Some(image_shape) = pictures::image_shape_of(flow.data_shape())
        && pictures::grid_pixels(30, image_shape[1], image_shape[2], 10, 4)
            .is_some_and(|p| p <= pictures::MAX_GRID_PIXELS)
    {
        // Images too large for a grid of 30 get no pictures (the samples can be written with
        // `exactflow sample --out FILE.npy`).
        let as_images = |t: Tensor<f64>| -> Result<Tensor<f64>> {
            let mut shape = vec![t.batch()];
            shape.extend_from_slice(&image_shape);
            Ok(t.reshape(&shape)?)
        };
        let mut rows = Vec::new();
        for t in [1.0, 0.7, 0.5] {
            rows.push(flow.sample(10, t, &mut rng, None)?);
        }
        let path = out.join("samples.png");
        pictures::image_grid(&as_images(Tensor::concat_batch(&rows)?)?, 10, 4)?.save(&path)?;
        written.push(path);
        // The Glow paper's figure: a straight line in latent space between two real images,
        // decoded. Discrete data are shown at the centre of their dequantization bins.
        if train.len() >= 2 {
            let to_input = |i: usize| -> Result<Tensor<f64>> {
                let x = train.data.slice_batch(i..i + 1)?;
                Ok(match train.levels {
                    Some(k) => x.map(|v| (v + 0.5) / k as f64),
                    None => x,
                })
            };
            // Reconstructions beside their inputs: the first row real images, the second
            // decode(encode(x)), which must look identical.
            let k = train.len().min(10);
            let inputs = Tensor::concat_batch(&(0..k).map(to_input).collect::<Result<Vec<_>>>()?)?;
            let recon = flow.decode(&flow.encode(&inputs, None)?, None)?;
            let path = out.join("reconstructions.png");
            pictures::image_grid(&as_images(Tensor::concat_batch(&[inputs, recon])?)?, k, 4)?.save(&path)?;
            written.push(path);
            let (a, b) = (to_input(0)?, to_input(train.len() / 2)?);
            let strip = flow.interpolate(&a, &b, 10, None)?;
            let path = out.join("interpolation.png");
            pictures::image_grid(&as_images(strip)?, 10, 4)?.save(&path)?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactflow_models::train::Silent;

    #[test]
    fn options_start_at_the_command_line_defaults_and_bad_ones_are_named() {
        let o = TrainOptions::new("realnvp");
        assert_eq!(o.check(), Ok("realnvp"));
        assert_eq!((o.batch_size, o.lr, o.seed, o.threads), (512, 1e-3, 0, 1));
        assert_eq!(o.precision, Precision::F32);
        assert_eq!((o.steps, o.epochs, o.toy_samples), (None, None, None));
        let bad = |f: fn(&mut TrainOptions)| {
            let mut o = TrainOptions::new("nice");
            f(&mut o);
            o.check().expect_err("an invalid option")
        };
        let e = bad(|o| o.model = "flowy".into());
        assert_eq!(e.option, "model");
        assert!(e.to_string().contains("nice, realnvp, glow"), "{e}");
        assert_eq!(bad(|o| o.batch_size = 0).flag(), "--batch-size");
        assert_eq!(bad(|o| o.lr = f64::NAN).option, "lr");
        assert_eq!(bad(|o| o.threads = 0).option, "threads");
        assert_eq!(bad(|o| o.resume = true).option, "resume");
        let e = bad(|o| {
            o.steps = Some(3);
            o.epochs = Some(1)
        });
        assert_eq!(e.to_string(), "epochs: cannot be given together with steps");
    }

    #[test]
    fn default_steps_presets_and_run_directory() {
        let moons = TrainData::parse("moons").expect("spec");
        let digits = TrainData::parse("digits").expect("spec");
        assert!(moons.is_toy() && !digits.is_toy());
        assert_eq!((moons.default_preset(), digits.default_preset()), ("toy", "digits"));
        let o = TrainOptions::new("realnvp");
        let toy = new_train_config(&o, true, 20_000, None, EVAL_BATCH);
        assert_eq!((toy.steps, toy.schedule.warmup), (Some(TOY_STEPS), TOY_STEPS / 50));
        let other = new_train_config(&o, false, 1294, None, EVAL_BATCH);
        // 40 epochs of floor(1294 / 512) = 2 batches.
        assert_eq!((other.steps, other.epochs, other.schedule.warmup), (None, 40, 1));
        assert_eq!(
            default_out_dir("glow", "mnist:/data/x y"),
            PathBuf::from("runs").join("glow-mnist__data_x_y")
        );
    }

    #[test]
    fn samples_in_memory_split_as_a_file_and_train_without_writing() {
        let x = Tensor::from_fn(&[200, 2], |k| ((k * 37 % 101) as f64) / 50.0 - 1.0).expect("tensor");
        let data = TrainData::samples(Dataset::new("array", x, None, None).expect("dataset"));
        let splits = data.splits(7, None).expect("splits");
        assert_eq!((splits.train.len(), splits.val.len(), splits.test.len()), (160, 20, 20));
        let mut o = TrainOptions::new("nice");
        o.steps = Some(3);
        o.batch_size = 32;
        o.seed = 7;
        let mut run = TrainingRun::prepare(&o, &data).expect("prepare");
        assert_eq!(run.total_steps(), 3);
        assert!(run.checkpoint().is_none());
        assert!(run.summary().starts_with("training nice (toy) on array (160 train"));
        let report = run.train(&mut Silent).expect("train");
        let m = run.finish(&report).expect("metrics").metrics;
        assert_eq!(m["steps"], 3);
        assert_eq!(m["data"], "array");
        assert!(m["test"]["nll"].as_f64().expect("a number").is_finite());
        assert_eq!(m["pictures"].as_array().expect("array").len(), 0);
        let mut wrong = TrainOptions::new("nice");
        wrong.preset = Some("digits".into());
        let images = TrainData::parse("digits-image").expect("spec");
        assert!(TrainingRun::prepare(&wrong, &images).is_err());
    }

    fn moons_run(precision: Precision, steps: u64, out: Option<PathBuf>, resume: bool) -> (TrainingRun, RunResults) {
        let mut o = TrainOptions::new("realnvp");
        o.steps = Some(steps);
        o.batch_size = 256;
        o.toy_samples = Some(2048);
        o.seed = 11;
        o.precision = precision;
        o.out = out;
        o.resume = resume;
        let mut run = TrainingRun::prepare(&o, &TrainData::parse("moons").expect("spec")).expect("prepare");
        let report = run.train(&mut Silent).expect("train");
        let results = run.finish(&report).expect("finish");
        (run, results)
    }

    /// f32 training reaches the f64 run's test NLL on a short moons run with the same seed
    /// (same initialization up to rounding, same batches). Tolerance 0.01 nats: the issue's
    /// parity target. The two runs differ only by rounding (f32's 6e-8 relative per operation,
    /// amplified along the trajectory); on this configuration they differ by about 3e-4 nats.
    #[test]
    fn f32_training_reaches_the_f64_nll_of_the_same_seed() {
        let (r32, m32) = moons_run(Precision::F32, 150, None, false);
        let (r64, m64) = moons_run(Precision::F64, 150, None, false);
        assert_eq!((r32.precision, r64.precision), (Precision::F32, Precision::F64));
        assert_eq!(m32.metrics["precision"], "f32");
        assert!(r32.summary().ends_with("150 steps in f32"), "{}", r32.summary());
        let (a, b) = (m32.test.nll, m64.test.nll);
        assert!(a.is_finite() && (a - b).abs() < 0.01, "f32 {a} against f64 {b}");
        // The runs are not the same computation: f32 really trained in f32.
        assert_ne!(a, b);
    }

    /// Interrupts a run (as a killed process would) once a step is reached.
    struct StopAt(u64);

    impl Observer for StopAt {
        fn on_step(&mut self, s: &exactflow_models::train::StepReport) {
            assert!(s.step < self.0, "interrupted at step {}", s.step);
        }
    }

    fn bits(f: &Flow<f64>) -> Vec<u64> {
        let mut v = Vec::new();
        exactflow_layers::Params::visit_params(f, "", &mut |_, p| {
            v.extend(p.value.as_slice().iter().map(|x| x.to_bits()))
        });
        v
    }

    /// An f32 run interrupted after its first checkpoint resumes in f32 (although the options
    /// ask for f64: a resumed run keeps its checkpoint's precision) and ends exactly as the
    /// uninterrupted run. Its checkpoint stores F32 tensors; loaded in f64 it holds exactly the
    /// run's parameters and scores the test split bit for bit as the run's metrics did.
    #[test]
    fn an_f32_run_resumes_in_f32_and_its_checkpoint_scores_identically() {
        let dir = std::env::temp_dir().join(format!("exactflow-precision-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (full, _) = moons_run(Precision::F32, 16, None, false);
        // 2048 / 256 = 8 steps per epoch: the checkpoint of step 8 is on disk at step 12.
        let mut o = TrainOptions::new("realnvp");
        (o.steps, o.batch_size, o.toy_samples, o.seed) = (Some(16), 256, Some(2048), 11);
        o.out = Some(dir.clone());
        let data = TrainData::parse("moons").expect("spec");
        let mut part = TrainingRun::prepare(&o, &data).expect("prepare");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| part.train(&mut StopAt(12))));
        assert!(r.is_err(), "the observer interrupts the run");
        let ckpt = dir.join(CHECKPOINT_FILE);
        assert_eq!(checkpoint::read_precision(&ckpt).expect("precision"), Precision::F32);
        let (run, results) = moons_run(Precision::F64, 16, Some(dir.clone()), true);
        assert_eq!(run.precision, Precision::F32);
        assert_eq!(bits(&run.flow), bits(&full.flow));
        let loaded = checkpoint::load::<f64>(&ckpt).expect("loads");
        assert_eq!(loaded.precision, Precision::F32);
        assert_eq!(bits(&loaded.flow), bits(&run.flow));
        assert!(bits(&loaded.flow).iter().all(|&b| {
            let x = f64::from_bits(b);
            f64::from(x as f32) == x
        }));
        let ev = evaluate(&loaded.flow, &run.splits.test, fitting_batch(&loaded.flow, EVAL_BATCH)).expect("eval");
        assert_eq!(ev.nll.to_bits(), results.test.nll.to_bits());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_context_trains_a_conditional_model_and_bad_ones_are_named() {
        let x = Tensor::from_fn(&[40, 2], |k| k as f64 / 80.0).expect("tensor");
        let data = TrainData::samples(Dataset::new("array", x, None, None).expect("dataset"));
        let rows = |n: usize| Tensor::<f64>::from_fn(&[n, 3], |k| (k as f64 * 0.3).sin()).expect("tensor");
        assert!(TrainData::parse("moons").expect("spec").with_context(rows(40)).is_err());
        assert!(
            TrainData::parse("sim:two-moons")
                .expect("spec")
                .with_context(rows(40))
                .is_err()
        );
        let e = data
            .clone()
            .with_context(rows(39))
            .expect_err("39 rows for 40 samples")
            .to_string();
        assert!(e.contains("39") && e.contains("40"), "{e}");
        let mut nan = rows(40);
        nan.as_mut_slice()[3 * 7 + 1] = f64::NAN;
        let e = data.clone().with_context(nan).expect_err("NaN").to_string();
        assert!(e.contains("(7, 1)") || e.contains("row 7"), "{e}");
        let with = data.clone().with_context(rows(40)).expect("context");
        // NICE has no conditional model.
        let mut o = TrainOptions::new("nice");
        o.steps = Some(1);
        let e = TrainingRun::prepare(&o, &with).err().expect("no conditional NICE");
        assert!(e.to_string().contains("conditional"), "{e}");
        // RealNVP, MAF and NSF train conditional on it, and are evaluated with it.
        for family in ["realnvp", "maf", "nsf"] {
            let mut o = TrainOptions::new(family);
            o.steps = Some(2);
            let mut run = TrainingRun::prepare(&o, &with).expect("prepare");
            assert_eq!(run.flow.context_dim(), 3);
            assert_eq!(run.config.context_dim(), 3);
            let report = run.train(&mut Silent).expect("train");
            let results = run.finish(&report).expect("finish");
            assert!(results.test.nll.is_finite());
        }
        // The last columns as the context.
        let x = Tensor::from_fn(&[40, 4], |k| (k as f64 * 0.1).cos()).expect("tensor");
        let cols = TrainData::samples(Dataset::new("array", x, None, None).expect("dataset"));
        assert!(cols.clone().with_context_columns(4).is_err());
        let run = TrainingRun::prepare(&TrainOptions::new("nsf"), &cols.with_context_columns(1).expect("cols"))
            .expect("prepare");
        assert_eq!((run.flow.data_shape(), run.flow.context_dim()), (&[3usize][..], 1));
    }
}
