//! `exactflow.train` and `exactflow.load_data`: the command line's `train` (same options, same
//! defaults, same metrics, through `exactflow::training`) and its data splits.

use std::path::PathBuf;

use exactflow::models::data::{DataSpec, Dataset};
use exactflow::models::train::{Observer, Silent};
use exactflow::progress::Progress;
use exactflow::training::{TrainData, TrainOptions, TrainingRun};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{self, count, python_shape};
use crate::errors::{detached, kernels_to_py, to_py, to_py_noting, value_error, warn_user};
use crate::flow::PyFlow;
use crate::json::{self, NonFinite};

/// The name of samples given as an array (in messages and the metrics' `data`).
const ARRAY_NAME: &str = "array";

/// Training samples given as an array: float32 or float64 (continuous) or uint8 (discrete, 256
/// levels), `[N, D]` or `[N, C, H, W]`: what `npy:PATH` reads from the same array saved by
/// `numpy.save`.
fn samples_of(obj: &Bound<'_, PyAny>) -> PyResult<Dataset> {
    if let Ok(a) = obj.cast::<PyArrayDyn<u8>>() {
        let ro = a.try_readonly().map_err(|e| value_error(format!("data: {e}")))?;
        let shape = ro.shape().to_vec();
        let view = ro.as_array();
        let values: Vec<f64> = match view.as_slice() {
            Some(s) => s.iter().map(|&v| f64::from(v)).collect(),
            None => view.iter().map(|&v| f64::from(v)).collect(),
        };
        return dataset(&shape, values, Some(256));
    }
    if obj.is_instance_of::<PyUntypedArray>() || !obj.is_instance_of::<pyo3::types::PyString>() {
        let (shape, values) = arrays::read_f64(obj, "data")?;
        return dataset(&shape, values, None);
    }
    Err(value_error("data: expected a data spec (str) or an array"))
}

fn dataset(shape: &[usize], values: Vec<f64>, levels: Option<u32>) -> PyResult<Dataset> {
    if shape.len() != 2 && shape.len() != 4 {
        return Err(value_error(format!(
            "data: expected an array of shape (N, D) or (N, C, H, W), found shape {}",
            python_shape(shape)
        )));
    }
    let t = exactflow::layers::Tensor::new(shape, values).map_err(kernels_to_py)?;
    Dataset::new(ARRAY_NAME, t, levels, None).map_err(to_py)
}

/// An optional non-negative integer option.
fn opt_count(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<usize>> {
    obj.filter(|o| !o.is_none()).map(|o| count(o, what, 0)).transpose()
}

/// Trains a flow by maximum likelihood, as `exactflow train` does: the same options with the
/// same defaults, the same metrics. Returns (flow, metrics).
///
/// Parameters
/// ----------
/// model : str
///     The model family: "nice", "realnvp" (vector RealNVP, or the multi-scale RealNVP on image
///     data) or "glow" (image data).
/// data : str or array
///     A data spec ("moons", "circles", "8gaussians", "checkerboard", "pinwheel", "spirals",
///     "digits", "digits-image", "csv:PATH", "npy:PATH", "mnist:DIR", "cifar10:DIR"), or the
///     samples themselves: an array (N, D) or (N, C, H, W), float32/float64 (continuous) or uint8
///     (256 levels, dequantized), split 80/10/10 by the seed exactly as "npy:PATH" splits the
///     same array saved by numpy.save.
/// preset : str, optional
///     The family's architecture preset; default "digits" for the digits, "mnist" and "cifar10"
///     for those, "toy" otherwise.
/// steps : int, optional
///     Optimizer steps; when neither steps nor epochs is given, 2000 for toy data and 40 epochs
///     otherwise.
/// epochs : int, optional
///     Passes over the training set (not together with steps).
/// batch_size : int
///     Samples per step (512).
/// lr : float
///     Peak learning rate of Adam (1e-3), after a warmup of 2% of the steps, cosine decay to 1%
///     of it.
/// seed : int
///     Seed of the initialization, the splits, the batch order and the noise (0).
/// threads : int
///     Threads of the run (1): one shard of each minibatch per thread where every shard gets
///     at least 128 rows (a spline row counts 4, an IAF row one per dimension) and no batch
///     norm couples the samples, else split matrix products over
///     two threads, as `exactflow train --threads` describes.
///     A given count is bit-for-bit reproducible.
/// precision : str
///     "f32" (the default, as PyTorch and every peer train) or "f64": the arithmetic of training
///     and of the checkpoint's tensors. The returned flow holds the trained parameters in f64
///     (exactly widened from f32), and the metrics are computed in f64, as the command line's
///     eval computes them. A resumed run keeps its checkpoint's precision.
/// out : str or path, optional
///     Run directory for the checkpoint (written after every epoch), the pictures and
///     metrics.json, as the command line writes them. The command line defaults it to
///     runs/MODEL-DATA; here the default None writes nothing.
/// toy_samples : int, optional
///     Training points drawn from a toy distribution, or pairs from a simulator (default 20000
///     points, 200000 simulated pairs; validation and test get a quarter each).
/// patience : int, optional
///     Stop after this many epochs without a better validation NLL (the best model is kept).
/// resume : bool
///     Continue the run whose checkpoint is in out, exactly where it stopped.
/// memory_efficient : bool
///     Recompute each layer's input from its output in the backward pass, so memory does not
///     grow with depth.
/// context : array, optional
///     The conditioning input (N, C) of a conditional model, one row per sample of an array
///     data; an unconditional model refuses it (ValueError).
/// context_embedding : str, optional
///     A learned embedding of the context before every conditioner reads it (as sbi's
///     embedding_net), in the command line's --context-embedding form: "64,64:16" is an MLP
///     C -> 64 -> 64 -> 16 with the preset's activation, "16" one linear map. Needs a
///     conditional model; not with resume (ValueError).
/// progress : bool
///     Show the command line's progress bar on stderr when it is a terminal (one line per epoch
///     otherwise). True by default.
///
/// Returns
/// -------
/// (Flow, dict)
///     The trained flow and the metrics of metrics.json: "model", "preset", "data", "seed",
///     "threads", "precision", "train", "validation" and "test" (each "nll" in nats and "bits_per_dim" for
///     discrete data), "steps", "epochs", "best_epoch", "stopped_early", "samples_per_sec",
///     "wall_seconds", "config", "train_config", "pictures".
///
/// Raises
/// ------
/// ValueError
///     An unknown model, preset or data spec, an impossible option, data of the wrong shape or
///     dtype, NaN in the data.
/// OSError
///     A data file or checkpoint that cannot be read or written.
/// RuntimeError
///     Training diverged (the message names the step, the stage and the last good
///     checkpoint).
#[pyfunction]
#[pyo3(signature = (
    model, data, preset = None, steps = None, *, epochs = None, batch_size = None, lr = None,
    seed = None, threads = None, precision = None, out = None, toy_samples = None, patience = None, resume = false,
    memory_efficient = false, context = None, context_embedding = None, progress = true,
))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    model: String,
    data: &Bound<'py, PyAny>,
    preset: Option<String>,
    steps: Option<&Bound<'py, PyAny>>,
    epochs: Option<&Bound<'py, PyAny>>,
    batch_size: Option<&Bound<'py, PyAny>>,
    lr: Option<f64>,
    seed: Option<&Bound<'py, PyAny>>,
    threads: Option<&Bound<'py, PyAny>>,
    precision: Option<String>,
    out: Option<PathBuf>,
    toy_samples: Option<&Bound<'py, PyAny>>,
    patience: Option<&Bound<'py, PyAny>>,
    resume: bool,
    memory_efficient: bool,
    context: Option<&Bound<'py, PyAny>>,
    context_embedding: Option<String>,
    progress: bool,
) -> PyResult<(PyFlow, Bound<'py, PyAny>)> {
    let mut o = TrainOptions::new(model);
    o.preset = preset;
    o.steps = opt_count(steps, "steps")?.map(|s| s as u64);
    o.epochs = opt_count(epochs, "epochs")?;
    o.batch_size = opt_count(batch_size, "batch_size")?.unwrap_or(o.batch_size);
    o.lr = lr.unwrap_or(o.lr);
    o.seed = match seed.filter(|s| !s.is_none()) {
        Some(s) => arrays::seed(s)?,
        None => o.seed,
    };
    o.threads = opt_count(threads, "threads")?.unwrap_or(o.threads);
    if let Some(p) = precision {
        o.precision = p.parse().map_err(to_py)?;
    }
    o.out = out;
    o.toy_samples = opt_count(toy_samples, "toy_samples")?.or(o.toy_samples);
    o.patience = opt_count(patience, "patience")?;
    o.resume = resume;
    o.memory_efficient = memory_efficient;
    o.context_embedding = context_embedding
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(to_py)?;
    o.check().map_err(|e| value_error(e.to_string()))?;

    let mut train_data = match data.extract::<String>() {
        Ok(spec) => TrainData::parse(&spec).map_err(to_py)?,
        Err(_) => TrainData::samples(samples_of(data)?),
    };
    if let Some(c) = arrays::context(context)? {
        train_data = train_data.with_context(c).map_err(to_py)?;
    }
    let (run, report) = detached(py, move || {
        let mut run = TrainingRun::prepare(&o, &train_data).map_err(to_py)?;
        let mut bar = progress.then(|| {
            eprintln!("{}", run.summary());
            Progress::new(run.total_steps())
        });
        let observer: &mut dyn Observer = match &mut bar {
            Some(b) => b,
            None => &mut Silent,
        };
        let result = run.train(observer);
        if let Some(b) = &bar {
            b.finish();
        }
        let report = result.map_err(|e| match run.checkpoint() {
            Some(ckpt) => to_py_noting(e, &format!("the last good checkpoint (if any) is {}", ckpt.display())),
            None => to_py(e),
        })?;
        let results = run.finish(&report).map_err(to_py)?;
        Ok((run, results.metrics))
    })?;
    for w in &run.warnings {
        warn_user(py, w)?;
    }
    let metrics = json::to_python(py, &report, NonFinite::Keep)?;
    Ok((PyFlow::new(run.flow, run.config), metrics))
}

/// The train / validation / test splits the command line (train, eval, audit) uses for a data
/// spec and seed: a dict with "train", "validation" and "test" (float64 arrays, raw values:
/// discrete data are not dequantized), "levels" (the number of discrete levels, or None) and
/// "name".
///
/// Raises ValueError for an unknown spec, OSError for a file that cannot be read.
#[pyfunction]
#[pyo3(signature = (spec, seed = None, toy_samples = None))]
pub fn load_data<'py>(
    py: Python<'py>,
    spec: &str,
    seed: Option<&Bound<'py, PyAny>>,
    toy_samples: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let spec: DataSpec = spec.parse().map_err(to_py)?;
    let seed = seed
        .filter(|s| !s.is_none())
        .map(arrays::seed)
        .transpose()?
        .unwrap_or(0);
    let toy_samples = opt_count(toy_samples, "toy_samples")?.unwrap_or_else(|| spec.default_samples());
    let splits = detached(py, move || spec.load(seed, toy_samples).map_err(to_py))?;
    let out = PyDict::new(py);
    out.set_item("levels", splits.train.levels)?;
    out.set_item("name", splits.train.name.clone())?;
    for (key, ds) in [
        ("train", splits.train),
        ("validation", splits.val),
        ("test", splits.test),
    ] {
        out.set_item(key, arrays::to_numpy(py, ds.data)?)?;
    }
    Ok(out)
}
