//! Checkpoints: one safetensors file per model (see FORMAT.md).
//!
//! - every parameter and real-valued buffer under its stable name (`flow.3.net.0.weight`,
//!   `base.mean`, ...), in the model's precision (F32 or F64), in the layer's PyTorch layout;
//! - every integer buffer (a permutation, signs, a flag) as integers: I64, I8 or BOOL;
//! - metadata `exactflow.format` = "3", `exactflow.config` = the [`ModelConfig`] as JSON,
//!   `exactflow.sha256` = the SHA-256 of every tensor's bytes and of the JSON entries, and, for a
//!   training checkpoint, `exactflow.train_state` = the training state as JSON (interpreted by
//!   `crate::train::TrainState`; this module only stores it, see [`TrainingRecord`]);
//! - for a training checkpoint, Adam's moments as F64 tensors `optim.m.{name}` and
//!   `optim.v.{name}`, and, when the saved model (the best one by validation NLL) is not the
//!   latest, the latest parameters as `latest.{name}`, from which training resumes. (Moments are
//!   tensors rather than JSON: a 4M-parameter model's moments would not fit the 100 MB header
//!   limit of safetensors, and JSON would round them.)
//!
//! Writes are atomic ([`crate::atomic_write`]). Reads check, before building anything, that the
//! config is valid and that the file is large enough to hold the parameters it describes
//! ([`ModelConfig::parameter_count`]); then every checksum; then refuse missing or unexpected
//! tensors and shape mismatches with an [`Error::Format`]. Files of format versions 1 and 2 (no
//! checksums; version 1 stored integer buffers as floats, exact integers that satisfy the
//! buffer's rule) still load, with [`Checksums::Absent`] in [`Loaded::checksums`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use exactflow_kernels::Real;
use exactflow_layers::{IntBuffer, IntKind, ParamKind, Params, Tensor};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::atomic_write::write_atomic;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::precision::Precision;

/// The checkpoint format version written by this library.
pub const FORMAT_VERSION: &str = "3";
/// The format versions this library reads.
pub const READABLE_VERSIONS: [&str; 3] = ["1", "2", "3"];
/// The versions without checksums.
const UNCHECKED_VERSIONS: [&str; 2] = ["1", "2"];
const KEY_FORMAT: &str = "exactflow.format";
const KEY_CONFIG: &str = "exactflow.config";
const KEY_STATE: &str = "exactflow.train_state";
const KEY_SHA256: &str = "exactflow.sha256";
/// The groups of tensors a training checkpoint adds, each `{prefix}.{parameter name}`.
const GROUPS: [&str; 4] = ["optim.m.", "optim.v.", "best.", "latest."];
const FORMAT: &str = "exactflow checkpoint (safetensors)";

/// Values by parameter name (f64, row-major), as stored for optimizer moments and snapshots.
pub type NamedValues = BTreeMap<String, Vec<f64>>;

/// What a training checkpoint carries beside the model: the training state (stored as JSON,
/// interpreted by `crate::train::TrainState`), Adam's moments and the parameters to resume from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainingRecord {
    /// The training state as JSON (metadata `exactflow.train_state`).
    pub state_json: String,
    /// Adam's first and second moments by trainable parameter name (`optim.m.*`, `optim.v.*`).
    pub moments: Option<(NamedValues, NamedValues)>,
    /// Format version 2 and earlier: the parameters of the best validation epoch by name
    /// (`best.*`), kept beside the latest ones when early stopping was on. Version 3 saves the
    /// best model itself as the checkpoint's model and never writes this group.
    pub best: Option<NamedValues>,
    /// The latest parameters by name (`latest.*`), when the checkpoint's model (the best so far)
    /// is not the latest: training resumes from these.
    pub latest: Option<NamedValues>,
}

/// Whether a loaded checkpoint's contents were verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksums {
    /// Every tensor and JSON entry matched its SHA-256 (format version 3).
    Verified,
    /// The file has no checksums: written by an older exactflow (format version 1 or 2).
    Absent {
        /// The file's format version.
        version: String,
    },
}

/// A model read back from a checkpoint.
pub struct Loaded<T: Real> {
    /// The architecture.
    pub config: ModelConfig,
    /// The flow with the saved parameters.
    pub flow: Flow<T>,
    /// The training record, for a training checkpoint.
    pub record: Option<TrainingRecord>,
    /// Whether the contents were verified against checksums.
    pub checksums: Checksums,
    /// The precision the file stores the model in: [`Precision::F32`] when every real-valued
    /// model tensor is F32, else [`Precision::F64`]. Loading F32 values into a `Flow<f64>`
    /// widens them exactly; loading F64 values into a `Flow<f32>` rounds them to nearest.
    pub precision: Precision,
}

impl<T: Real> Loaded<T> {
    /// A one-line warning for a file whose contents could not be verified (no checksums), to be
    /// shown to the user; `None` for a verified file.
    pub fn warning(&self) -> Option<String> {
        match &self.checksums {
            Checksums::Verified => None,
            Checksums::Absent { version } => Some(format!(
                "this checkpoint (format version {version}, written by an older exactflow) has no \
                 checksums, so corruption cannot be detected; saving it again adds them"
            )),
        }
    }
}

/// The SHA-256 of `bytes` in lower-case hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        // invariant: writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(path, e)
}

fn fmt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::format(path, FORMAT, reason)
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

/// The dtype an integer buffer is stored as.
fn int_dtype(kind: IntKind) -> Dtype {
    match kind {
        IntKind::Permutation => Dtype::I64,
        IntKind::Sign => Dtype::I8,
        IntKind::Flag => Dtype::BOOL,
    }
}

fn int_bytes(b: &IntBuffer) -> Vec<u8> {
    match b.kind() {
        IntKind::Permutation => b.values().iter().flat_map(|v| v.to_le_bytes()).collect(),
        // invariant: signs are -1 or +1 and flags 0 or 1, so they fit one byte.
        IntKind::Sign => b.values().iter().map(|&v| v as i8 as u8).collect(),
        IntKind::Flag => b.values().iter().map(|&v| v as u8).collect(),
    }
}

/// Saves a model (and, for a training checkpoint, its training record) to `path`, atomically.
///
/// # Errors
/// [`Error::Io`] when writing fails; an error for dual-number models.
pub fn save<T: Real>(path: &Path, config: &ModelConfig, flow: &Flow<T>, record: Option<&TrainingRecord>) -> Result<()> {
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
    flow.visit_int("", &mut |name, b| {
        entries.push((name.to_string(), int_dtype(b.kind()), vec![b.len()], int_bytes(b)));
    });
    let mut meta = HashMap::new();
    meta.insert(KEY_FORMAT.to_string(), FORMAT_VERSION.to_string());
    let cfg = serde_json::to_string(config).map_err(|e| io_err(path, e))?;
    meta.insert(KEY_CONFIG.to_string(), cfg);
    if let Some(rec) = record {
        meta.insert(KEY_STATE.to_string(), rec.state_json.clone());
        let shapes: BTreeMap<String, Vec<usize>> = entries.iter().map(|e| (e.0.clone(), e.2.clone())).collect();
        let mut extra = |prefix: &str, map: &BTreeMap<String, Vec<f64>>| {
            for (name, v) in map {
                let shape = shapes.get(name).cloned().unwrap_or_else(|| vec![v.len()]);
                entries.push((format!("{prefix}.{name}"), Dtype::F64, shape, to_bytes_f64(v)));
            }
        };
        if let Some((m, v)) = &rec.moments {
            extra("optim.m", m);
            extra("optim.v", v);
        }
        if let Some(best) = &rec.best {
            extra("best", best);
        }
        if let Some(latest) = &rec.latest {
            extra("latest", latest);
        }
    }
    let mut sums: BTreeMap<String, String> = entries
        .iter()
        .map(|(name, _, _, bytes)| (name.clone(), sha256_hex(bytes)))
        .collect();
    for key in [KEY_CONFIG, KEY_STATE] {
        if let Some(text) = meta.get(key) {
            sums.insert(key.to_string(), sha256_hex(text.as_bytes()));
        }
    }
    let sums = serde_json::to_string(&sums).map_err(|e| io_err(path, e))?;
    meta.insert(KEY_SHA256.to_string(), sums);
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

/// A checkpoint file read into memory: its bytes, metadata and the size of its data section.
struct Opened {
    bytes: Vec<u8>,
    meta: HashMap<String, String>,
    data_len: usize,
}

/// Reads the file (a regular file only, up to its size) and its metadata.
fn open(path: &Path) -> Result<Opened> {
    let bytes = crate::data::io_util::read_bytes(path)?;
    let (header_len, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| fmt_err(path, format!("unreadable header: {e}")))?;
    let meta = meta
        .metadata()
        .clone()
        .ok_or_else(|| fmt_err(path, "no exactflow metadata (not an exactflow checkpoint)"))?;
    let data_len = bytes.len().saturating_sub(8usize.saturating_add(header_len));
    match meta.get(KEY_FORMAT) {
        Some(v) if READABLE_VERSIONS.contains(&v.as_str()) => {}
        Some(v) => {
            return Err(fmt_err(
                path,
                format!(
                    "format version {v}, this exactflow reads {}",
                    READABLE_VERSIONS.join(" and ")
                ),
            ));
        }
        None => return Err(fmt_err(path, "no exactflow.format entry (not an exactflow checkpoint)")),
    }
    Ok(Opened { bytes, meta, data_len })
}

/// The checksums of a file: `None` for versions 1 and 2, which have none; an error when a
/// version 3 file lacks them or they are not a JSON object of hex digests.
fn checksums(path: &Path, meta: &HashMap<String, String>) -> Result<Option<BTreeMap<String, String>>> {
    let version = meta.get(KEY_FORMAT).map(String::as_str).unwrap_or_default();
    match meta.get(KEY_SHA256) {
        None if UNCHECKED_VERSIONS.contains(&version) => Ok(None),
        None => Err(fmt_err(
            path,
            format!("no {KEY_SHA256} entry (format version {version} has checksums)"),
        )),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| fmt_err(path, format!("bad {KEY_SHA256} entry: {e}"))),
    }
}

/// Verifies a metadata entry against its checksum, if the file has checksums.
fn verify_entry(path: &Path, sums: Option<&BTreeMap<String, String>>, key: &str, text: &str) -> Result<()> {
    let Some(sums) = sums else {
        return Ok(());
    };
    match sums.get(key) {
        Some(want) if *want == sha256_hex(text.as_bytes()) => Ok(()),
        Some(_) => Err(fmt_err(
            path,
            format!("the metadata entry {key} fails its SHA-256 check (the file is corrupt or was edited)"),
        )),
        None => Err(fmt_err(path, format!("the metadata entry {key} has no checksum"))),
    }
}

/// Reads only the model configuration of a checkpoint (verified against its checksum when the
/// file has checksums).
///
/// # Errors
/// [`Error::Io`] or [`Error::Format`].
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let opened = open(path)?;
    let sums = checksums(path, &opened.meta)?;
    parse_config(path, &opened.meta, sums.as_ref())
}

/// The precision a checkpoint stores its model in (as [`Loaded::precision`]: F32 when every
/// real-valued model tensor is F32), read without building the model, to choose the type to
/// [`load`] it as. Nothing is verified here beyond the file's structure: [`load`] checks it all.
///
/// # Errors
/// [`Error::Io`] or [`Error::Format`] for a file that is not a readable checkpoint.
pub fn read_precision(path: &Path) -> Result<Precision> {
    let opened = open(path)?;
    let st =
        SafeTensors::deserialize(&opened.bytes).map_err(|e| fmt_err(path, format!("corrupt or truncated: {e}")))?;
    let mut floats = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| !GROUPS.iter().any(|g| name.starts_with(g)))
        .map(|(_, view)| view.dtype())
        .filter(|d| matches!(d, Dtype::F32 | Dtype::F64))
        .peekable();
    let any = floats.peek().is_some();
    Ok(if any && floats.all(|d| d == Dtype::F32) {
        Precision::F32
    } else {
        Precision::F64
    })
}

fn parse_config(
    path: &Path,
    meta: &HashMap<String, String>,
    sums: Option<&BTreeMap<String, String>>,
) -> Result<ModelConfig> {
    let cfg = meta
        .get(KEY_CONFIG)
        .ok_or_else(|| fmt_err(path, "no exactflow.config entry"))?;
    verify_entry(path, sums, KEY_CONFIG, cfg)?;
    serde_json::from_str(cfg).map_err(|e| fmt_err(path, format!("bad model config: {e}")))
}

/// Checks a config against the file before its model is built: the config is valid, and the
/// data section can hold its parameters (each at least 4 bytes, F32). A config whose model would
/// be larger than the file it came in is refused without allocating anything for it.
fn check_config_fits(path: &Path, config: &ModelConfig, data_len: usize) -> Result<()> {
    config
        .validate()
        .map_err(|e| fmt_err(path, format!("bad model config: {e}")))?;
    let count = config.parameter_count();
    let fits = count
        .and_then(|n| n.checked_mul(4))
        .is_some_and(|b| b <= data_len as u64);
    if !fits {
        let n = count.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
        return Err(fmt_err(
            path,
            format!(
                "the config describes a {} model of {n} parameters (at least 4 bytes each), but the file \
                 holds only {data_len} bytes of tensors",
                config.family()
            ),
        ));
    }
    Ok(())
}

/// Verifies every tensor of the file against its checksum, and that no checksum names a tensor
/// the file lacks.
fn verify_tensors(path: &Path, sums: &BTreeMap<String, String>, st: &SafeTensors<'_>) -> Result<()> {
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for name in &names {
        let view = st
            .tensor(name)
            .map_err(|e| fmt_err(path, format!("tensor {name}: {e}")))?;
        match sums.get(*name) {
            Some(want) if *want == sha256_hex(view.data()) => {}
            Some(_) => {
                return Err(fmt_err(
                    path,
                    format!("tensor {name} fails its SHA-256 check (the file is corrupt or was edited)"),
                ));
            }
            None => return Err(fmt_err(path, format!("tensor {name} has no checksum"))),
        }
    }
    let known = |k: &str| names.binary_search(&k).is_ok() || k == KEY_CONFIG || k == KEY_STATE;
    if let Some(k) = sums.keys().find(|k| !known(k)) {
        return Err(fmt_err(
            path,
            format!("{KEY_SHA256} has a checksum for {k}, which the file does not hold"),
        ));
    }
    Ok(())
}

/// Loads a checkpoint into a model of precision `T` (F32 files load into f64 models and back).
///
/// In order: the file (a regular file, read up to its size), its header and version; the config
/// (its checksum, its validity, and that the file can hold the parameters it describes); every
/// tensor's checksum; then the model is built and filled.
///
/// # Errors
/// [`Error::Io`]; [`Error::Format`] for a truncated or corrupt file, a checksum that does not
/// match (naming the tensor or entry), a bad config or one that describes more parameters than
/// the file holds, a missing, unexpected or misshapen tensor; [`Error::TooLarge`] for a model
/// larger than this machine's memory.
pub fn load<T: Real>(path: &Path) -> Result<Loaded<T>> {
    let Opened { bytes, meta, data_len } = open(path)?;
    let sums = checksums(path, &meta)?;
    let config = parse_config(path, &meta, sums.as_ref())?;
    check_config_fits(path, &config, data_len)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fmt_err(path, format!("corrupt or truncated: {e}")))?;
    let checksums = match &sums {
        Some(sums) => {
            verify_tensors(path, sums, &st)?;
            Checksums::Verified
        }
        None => Checksums::Absent {
            version: meta.get(KEY_FORMAT).cloned().unwrap_or_default(),
        },
    };
    if let Some(state) = meta.get(KEY_STATE) {
        verify_entry(path, sums.as_ref(), KEY_STATE, state)?;
    }
    let mut flow: Flow<T> = config.build()?;
    let mut record = meta.get(KEY_STATE).map(|s| TrainingRecord {
        state_json: s.clone(),
        ..TrainingRecord::default()
    });
    let names: std::collections::HashSet<String> = st.names().into_iter().map(str::to_string).collect();
    let mut expected = std::collections::HashSet::new();
    let mut failure = None;
    let mut shapes = BTreeMap::new();
    let mut trainable = Vec::new();
    let mut all = Vec::new();
    // Whether every real-valued model tensor is F32 (a model without any counts as F64).
    let mut stored_f32 = true;
    let mut any_real = false;
    flow.visit_params_mut("", &mut |name, p| {
        expected.insert(name.to_string());
        all.push(name.to_string());
        any_real = true;
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
            .and_then(|view| {
                stored_f32 &= view.dtype() == Dtype::F32;
                read_values(path, name, &view, p.value.shape())
            });
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
    flow.visit_int_mut("", &mut |name, b| {
        expected.insert(name.to_string());
        if failure.is_some() {
            return;
        }
        let r = st
            .tensor(name)
            .map_err(|_| fmt_err(path, format!("missing tensor {name} (the config's model has it)")))
            .and_then(|view| read_ints(path, name, &view, b.len()))
            .and_then(|v| b.set(v).map_err(|e| fmt_err(path, format!("tensor {name}: {e}"))));
        if let Err(e) = r {
            failure = Some(e);
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
    if let Some(r) = record.as_mut() {
        let m = read_group("optim.m", &trainable)?;
        let v = read_group("optim.v", &trainable)?;
        r.moments = m.zip(v);
        r.best = read_group("best", &all)?;
        r.latest = read_group("latest", &all)?;
    }
    for n in &names {
        let known = expected.contains(n)
            || GROUPS
                .iter()
                .any(|p| n.strip_prefix(p).is_some_and(|rest| expected.contains(rest)));
        if !known {
            return Err(fmt_err(
                path,
                format!("unexpected tensor {n} (not part of the config's model)"),
            ));
        }
    }
    Ok(Loaded {
        config,
        flow,
        record,
        checksums,
        precision: if any_real && stored_f32 {
            Precision::F32
        } else {
            Precision::F64
        },
    })
}

/// Reads an integer buffer of `len` entries: any integer dtype, or (format version 1) F32/F64
/// values that are exact integers.
fn read_ints(path: &Path, name: &str, view: &TensorView<'_>, len: usize) -> Result<Vec<i64>> {
    if view.shape() != [len] {
        return Err(fmt_err(
            path,
            format!("tensor {name} has shape {:?}, the model expects [{len}]", view.shape()),
        ));
    }
    let data = view.data();
    let floats = |v: Vec<f64>| -> Result<Vec<i64>> {
        v.iter()
            .map(|&f| {
                // Exact integers only: a rounded index or sign would silently change the model.
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Ok(f as i64)
                } else {
                    Err(fmt_err(path, format!("tensor {name} holds {f}, expected an integer")))
                }
            })
            .collect()
    };
    match view.dtype() {
        Dtype::I64 => Ok(data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()),
        Dtype::I32 => Ok(data
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()),
        Dtype::I8 => Ok(data.iter().map(|&b| i64::from(b as i8)).collect()),
        Dtype::U8 | Dtype::BOOL => Ok(data.iter().map(|&b| i64::from(b)).collect()),
        Dtype::F32 => floats(
            data.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
        ),
        Dtype::F64 => floats(
            data.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        other => Err(fmt_err(
            path,
            format!("tensor {name} has dtype {other:?}, expected an integer type"),
        )),
    }
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
