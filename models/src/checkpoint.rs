//! Checkpoints: one safetensors file per model (see FORMAT.md).
//!
//! - every parameter and buffer under its stable name (`flow.3.net.0.weight`, `base.mean`, ...),
//!   in the model's precision (F32 or F64), in the layer's PyTorch layout;
//! - metadata `exactflow.format` = "1", `exactflow.config` = the [`ModelConfig`] as JSON, and,
//!   for a training checkpoint, `exactflow.train_state` = [`TrainState`] as JSON;
//! - for a training checkpoint, Adam's moments as F64 tensors `optim.m.{name}` and
//!   `optim.v.{name}`, and the best parameters so far as `best.{name}` when early stopping keeps
//!   them. (Moments are tensors rather than JSON: a 4M-parameter model's moments would not fit
//!   the 100 MB header limit of safetensors, and JSON would round them.)
//!
//! Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the
//! directory; a crash leaves either the old file or the new one. Reads refuse truncated or corrupt
//! files, missing or unexpected tensors and shape mismatches with an [`Error::Format`].

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use exactflow_kernels::{Error, Real, Result};
use exactflow_layers::{ParamKind, Params, Tensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::flow::Flow;
use crate::train::{Adam, AdamConfig, TrainConfig};

/// The checkpoint format version written by this library.
pub const FORMAT_VERSION: &str = "1";
const KEY_FORMAT: &str = "exactflow.format";
const KEY_CONFIG: &str = "exactflow.config";
const KEY_STATE: &str = "exactflow.train_state";
const FORMAT: &str = "exactflow checkpoint (safetensors)";

/// Values by parameter name (f64, row-major), as stored for optimizer moments and snapshots.
pub type NamedValues = BTreeMap<String, Vec<f64>>;

/// Where training stood when a checkpoint was written; enough to resume exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Epochs completed.
    pub epoch: usize,
    /// Batches done within the current epoch.
    pub batch_in_epoch: usize,
    /// The training configuration (seed included).
    pub config: TrainConfig,
    /// Adam's hyper-parameters.
    pub adam: AdamConfig,
    /// Adam's step count.
    pub adam_t: u64,
    /// Best validation NLL so far (nats per sample).
    pub best_val_nll: Option<f64>,
    /// The epoch that reached it.
    pub best_epoch: Option<usize>,
    /// Epochs since the best one.
    pub epochs_since_best: usize,
    /// Whether training ran to completion (the parameters are the final, best ones).
    pub finished: bool,
    /// Mean training NLL of each completed epoch.
    pub train_history: Vec<f64>,
    /// Validation NLL of each completed epoch.
    pub val_history: Vec<Option<f64>>,
    /// Adam's moments (written as tensors, not JSON).
    #[serde(skip)]
    pub moments: Option<(NamedValues, NamedValues)>,
    /// The best parameters so far (written as `best.*` tensors).
    #[serde(skip)]
    pub best_params: Option<BTreeMap<String, Vec<f64>>>,
}

impl TrainState {
    /// Rebuilds Adam from the saved moments.
    pub fn adam(&self) -> Adam {
        let (m, v) = self.moments.clone().unwrap_or_default();
        Adam {
            config: self.adam,
            t: self.adam_t,
            m,
            v,
        }
    }
}

/// A model read back from a checkpoint.
pub struct Loaded<T: Real> {
    /// The architecture.
    pub config: ModelConfig,
    /// The flow with the saved parameters.
    pub flow: Flow<T>,
    /// The training state, for a training checkpoint.
    pub state: Option<TrainState>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn fmt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        format: FORMAT,
        reason: reason.into(),
    }
}

fn to_bytes_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn tensor_bytes<T: Real>(t: &Tensor<T>, dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => t
            .as_slice()
            .iter()
            .flat_map(|x| (x.as_f64() as f32).to_le_bytes())
            .collect(),
        _ => t.as_slice().iter().flat_map(|x| x.as_f64().to_le_bytes()).collect(),
    }
}

fn dtype_of<T: Real>() -> Result<Dtype> {
    match T::NAME {
        "f32" => Ok(Dtype::F32),
        "f64" => Ok(Dtype::F64),
        other => Err(Error::invalid(
            "checkpoint::save",
            "precision",
            format!("{other} models cannot be saved"),
        )),
    }
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync of the directory.
///
/// # Errors
/// [`Error::Io`] when any step fails (the old file, if any, is then untouched).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io_err(path, "not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Persist the rename; some file systems refuse fsync on a directory, which is harmless.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves a model (and, for a training checkpoint, its training state) to `path`, atomically.
///
/// # Errors
/// [`Error::Io`] when writing fails; an error for dual-number models.
pub fn save<T: Real>(path: &Path, config: &ModelConfig, flow: &Flow<T>, state: Option<&TrainState>) -> Result<()> {
    let dtype = dtype_of::<T>()?;
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    flow.visit_params("", &mut |name, p| {
        entries.push((
            name.to_string(),
            dtype,
            p.value.shape().to_vec(),
            tensor_bytes(&p.value, dtype),
        ));
    });
    let mut meta = HashMap::new();
    meta.insert(KEY_FORMAT.to_string(), FORMAT_VERSION.to_string());
    let cfg = serde_json::to_string(config).map_err(|e| io_err(path, e))?;
    meta.insert(KEY_CONFIG.to_string(), cfg);
    if let Some(st) = state {
        meta.insert(
            KEY_STATE.to_string(),
            serde_json::to_string(st).map_err(|e| io_err(path, e))?,
        );
        let shapes: BTreeMap<String, Vec<usize>> = entries.iter().map(|e| (e.0.clone(), e.2.clone())).collect();
        let mut extra = |prefix: &str, map: &BTreeMap<String, Vec<f64>>| {
            for (name, v) in map {
                let shape = shapes.get(name).cloned().unwrap_or_else(|| vec![v.len()]);
                entries.push((format!("{prefix}.{name}"), Dtype::F64, shape, to_bytes_f64(v)));
            }
        };
        if let Some((m, v)) = &st.moments {
            extra("optim.m", m);
            extra("optim.v", v);
        }
        if let Some(best) = &st.best_params {
            extra("best", best);
        }
    }
    let views = entries
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| io_err(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| io_err(path, e))?;
    write_atomic(path, &bytes)
}

fn read_values(path: &Path, name: &str, view: &TensorView<'_>, expected: &[usize]) -> Result<Vec<f64>> {
    if view.shape() != expected {
        return Err(fmt_err(
            path,
            format!(
                "tensor {name} has shape {:?}, the model expects {expected:?}",
                view.shape()
            ),
        ));
    }
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect()),
        Dtype::F64 => Ok(data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        other => Err(fmt_err(
            path,
            format!("tensor {name} has dtype {other:?}, expected F32 or F64"),
        )),
    }
}

/// Reads the file and its metadata.
fn open(path: &Path) -> Result<(Vec<u8>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| fmt_err(path, format!("unreadable header: {e}")))?;
    let meta = meta
        .metadata()
        .clone()
        .ok_or_else(|| fmt_err(path, "no exactflow metadata (not an exactflow checkpoint)"))?;
    match meta.get(KEY_FORMAT) {
        Some(v) if v == FORMAT_VERSION => {}
        Some(v) => {
            return Err(fmt_err(
                path,
                format!("format version {v}, this exactflow reads {FORMAT_VERSION}"),
            ));
        }
        None => return Err(fmt_err(path, "no exactflow.format entry (not an exactflow checkpoint)")),
    }
    Ok((bytes, meta))
}

/// Reads only the model configuration of a checkpoint.
///
/// # Errors
/// [`Error::Io`] or [`Error::Format`].
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let (_, meta) = open(path)?;
    parse_config(path, &meta)
}

fn parse_config(path: &Path, meta: &HashMap<String, String>) -> Result<ModelConfig> {
    let cfg = meta
        .get(KEY_CONFIG)
        .ok_or_else(|| fmt_err(path, "no exactflow.config entry"))?;
    serde_json::from_str(cfg).map_err(|e| fmt_err(path, format!("bad model config: {e}")))
}

/// Loads a checkpoint into a model of precision `T` (F32 files load into f64 models and back).
///
/// # Errors
/// [`Error::Io`]; [`Error::Format`] for a truncated or corrupt file, a bad config, a missing,
/// unexpected or misshapen tensor.
pub fn load<T: Real>(path: &Path) -> Result<Loaded<T>> {
    let (bytes, meta) = open(path)?;
    let config = parse_config(path, &meta)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fmt_err(path, format!("corrupt or truncated: {e}")))?;
    let mut flow: Flow<T> = config.build()?;
    let mut state: Option<TrainState> = match meta.get(KEY_STATE) {
        Some(s) => Some(serde_json::from_str(s).map_err(|e| fmt_err(path, format!("bad training state: {e}")))?),
        None => None,
    };
    let names: std::collections::HashSet<String> = st.names().into_iter().map(str::to_string).collect();
    let mut expected = std::collections::HashSet::new();
    let mut failure = None;
    let mut shapes = BTreeMap::new();
    let mut trainable = Vec::new();
    let mut all = Vec::new();
    flow.visit_params_mut("", &mut |name, p| {
        expected.insert(name.to_string());
        all.push(name.to_string());
        shapes.insert(name.to_string(), p.value.shape().to_vec());
        if p.kind == ParamKind::Trainable {
            trainable.push(name.to_string());
        }
        if failure.is_some() {
            return;
        }
        let r = st
            .tensor(name)
            .map_err(|_| fmt_err(path, format!("missing tensor {name} (the config's model has it)")))
            .and_then(|view| read_values(path, name, &view, p.value.shape()));
        match r {
            Ok(v) => {
                for (slot, x) in p.value.as_mut_slice().iter_mut().zip(v) {
                    *slot = T::lit(x);
                }
            }
            Err(e) => failure = Some(e),
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let read_group = |prefix: &str, group: &[String]| -> Result<Option<BTreeMap<String, Vec<f64>>>> {
        let mut map = BTreeMap::new();
        for name in group {
            let key = format!("{prefix}.{name}");
            if names.contains(&key) {
                let view = st.tensor(&key).map_err(|e| fmt_err(path, e.to_string()))?;
                map.insert(name.clone(), read_values(path, &key, &view, &shapes[name])?);
            }
        }
        Ok((!map.is_empty()).then_some(map))
    };
    if let Some(s) = state.as_mut() {
        let m = read_group("optim.m", &trainable)?;
        let v = read_group("optim.v", &trainable)?;
        s.moments = m.zip(v);
        s.best_params = read_group("best", &all)?;
    }
    for n in &names {
        let known = expected.contains(n)
            || ["optim.m.", "optim.v.", "best."]
                .iter()
                .any(|p| n.strip_prefix(p).is_some_and(|rest| expected.contains(rest)));
        if !known {
            return Err(fmt_err(
                path,
                format!("unexpected tensor {n} (not part of the config's model)"),
            ));
        }
    }
    Ok(Loaded { config, flow, state })
}

/// Copies named f64 values into a model's parameters (restoring a snapshot).
pub fn restore_params<T: Real>(model: &mut dyn Params<T>, values: &BTreeMap<String, Vec<f64>>) {
    model.visit_params_mut("", &mut |name, p| {
        if let Some(v) = values.get(name) {
            for (slot, &x) in p.value.as_mut_slice().iter_mut().zip(v) {
                *slot = T::lit(x);
            }
        }
    });
}

/// A snapshot of a model's trainable parameters as f64.
pub fn snapshot_params<T: Real>(model: &dyn Params<T>) -> BTreeMap<String, Vec<f64>> {
    let mut map = BTreeMap::new();
    model.visit_params("", &mut |name, p| {
        map.insert(
            name.to_string(),
            p.value.as_slice().iter().map(|v| v.as_f64()).collect(),
        );
    });
    map
}
