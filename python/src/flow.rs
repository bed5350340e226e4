//! `exactflow.Flow`: a trained flow (any model family the library builds), in float64.
//!
//! Every method takes the flow's context as `context=` (`[N, C]`, one row per sample); an
//! unconditional flow refuses one, with the library's `ValueError`.

use std::path::PathBuf;

use exactflow::layers::Tensor;
use exactflow::models::audit::audit_flow;
use exactflow::models::{Flow, Latent, ModelConfig, checkpoint};
use exactflow::training::{EVAL_BATCH, checkpoint_path};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::arrays::{self, MAX_VALUES, python_shape};
use crate::errors::{detached, kernels_to_py, to_py, value_error, warn_user};
use crate::json::{self, NonFinite};

/// A trained normalizing flow, in float64: NICE, RealNVP, Glow or any family exactflow builds.
///
/// Load one with Flow.load(path), or get one from exactflow.train(...). Every method takes the
/// context of a conditional flow as context= (an array (N, C), one row per sample); an
/// unconditional flow refuses one with ValueError. The GIL is released while computing.
#[pyclass(module = "exactflow", name = "Flow", frozen)]
pub struct PyFlow {
    flow: Flow<f64>,
    config: ModelConfig,
}

impl PyFlow {
    /// Wraps a flow and the configuration it was built from.
    pub fn new(flow: Flow<f64>, config: ModelConfig) -> Self {
        PyFlow { flow, config }
    }

    /// The sample shapes of the final latent and of each factored-out latent, in the order of
    /// [`Latent::flatten`].
    fn latent_parts(&self) -> Vec<Vec<usize>> {
        std::iter::once(self.flow.latent_shape())
            .chain(self.flow.stages().iter().filter_map(|s| s.factored_shape()))
            .collect()
    }

    /// A flat latent `[N, D]` split back into the final latent and the factored ones (the
    /// inverse of [`Latent::flatten`]).
    fn unflatten(&self, flat: &Tensor<f64>) -> PyResult<Latent<f64>> {
        let n = flat.batch();
        let parts = self.latent_parts();
        let lens: Vec<usize> = parts.iter().map(|s| s.iter().product()).collect();
        let width: usize = lens.iter().sum();
        let mut tensors: Vec<Vec<f64>> = lens.iter().map(|l| Vec::with_capacity(n * l)).collect();
        for row in flat.as_slice().chunks(width.max(1)).take(n) {
            let mut at = 0;
            for (t, l) in tensors.iter_mut().zip(&lens) {
                t.extend_from_slice(&row[at..at + l]);
                at += l;
            }
        }
        let mut built = parts.into_iter().zip(tensors).map(|(shape, data)| {
            let mut full = vec![n];
            full.extend(shape);
            Tensor::new(&full, data).map_err(kernels_to_py)
        });
        let z = built.next().ok_or_else(|| value_error("the flow has no latent"))??;
        Ok(Latent {
            z,
            factored: built.collect::<PyResult<_>>()?,
        })
    }

    fn data_width(&self) -> usize {
        self.flow.data_shape().iter().product()
    }
}

#[pymethods]
impl PyFlow {
    /// Loads a flow from a checkpoint: a training run directory (holding model.safetensors) or
    /// a checkpoint file.
    ///
    /// Raises OSError when the file cannot be read or is not a valid checkpoint. An older
    /// checkpoint without checksums loads with a UserWarning saying so.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let file = checkpoint_path(&path);
        let loaded = detached(py, || checkpoint::load::<f64>(&file).map_err(to_py))?;
        if let Some(w) = loaded.warning() {
            warn_user(py, &format!("{}: {w}", file.display()))?;
        }
        Ok(PyFlow::new(loaded.flow, loaded.config))
    }

    /// Writes the flow as a model-only checkpoint (safetensors, the format FORMAT.md
    /// specifies), atomically. Flow.load reads it back bit for bit.
    ///
    /// Raises OSError when the file cannot be written.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        detached(py, || {
            checkpoint::save(&path, &self.config, &self.flow, None).map_err(to_py)
        })
    }

    /// log p(x) of each sample, in nats: an array of shape (N,).
    ///
    /// x is an array (N, *data_shape) of float32 or float64 (a single sample of shape
    /// data_shape counts as N = 1). It is evaluated in batches of 1024 rows, as `exactflow eval`
    /// does, so that on the same continuous data the values equal those of
    /// `exactflow eval --per-sample` bit for bit (a batch of another size may differ in the last
    /// bits: matrix products sum in another order).
    ///
    /// Raises ValueError for a wrong shape or dtype, NaN or infinite input, or a context that
    /// does not fit the flow.
    #[pyo3(signature = (x, context = None))]
    fn log_prob<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = arrays::samples(x, "x", self.flow.data_shape())?;
        let cx = arrays::context(context)?;
        let n = x.batch();
        let lp = detached(py, || {
            if cx.as_ref().is_some_and(|c| c.batch() != n) || n <= EVAL_BATCH {
                // One call: the library checks the context against the flow and the batch.
                return self.flow.log_prob(&x, cx.as_ref()).map_err(to_py);
            }
            // In the batches `exactflow eval` uses, so that the values agree with its
            // --per-sample output bit for bit.
            let mut out = Vec::with_capacity(n);
            for start in (0..n).step_by(EVAL_BATCH) {
                let end = (start + EVAL_BATCH).min(n);
                let xb = x.slice_batch(start..end).map_err(kernels_to_py)?;
                let cb = cx.as_ref().map(|c| c.slice_batch(start..end)).transpose();
                out.extend(
                    self.flow
                        .log_prob(&xb, cb.map_err(kernels_to_py)?.as_ref())
                        .map_err(to_py)?,
                );
            }
            Ok(out)
        })?;
        Ok(arrays::from_vec(py, &[n], lp)?.into_any())
    }

    /// n samples of the model, an array (n, *data_shape). temperature scales the base
    /// distribution's spread (1: the model, 0: its mode). The same seed gives the same samples
    /// as `exactflow sample --seed`.
    ///
    /// Raises ValueError for n < 1, a negative or non-finite temperature, or more than 2**32
    /// values in all.
    #[pyo3(signature = (n, temperature = 1.0, seed = None, context = None))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: &Bound<'py, PyAny>,
        temperature: f64,
        seed: Option<&Bound<'py, PyAny>>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = arrays::count(n, "sample: n", 1)?;
        let seed = seed
            .filter(|s| !s.is_none())
            .map(arrays::seed)
            .transpose()?
            .unwrap_or(0);
        if n.checked_mul(self.data_width()).is_none_or(|v| v > MAX_VALUES) {
            return Err(value_error(format!(
                "sample: {n} samples of shape {} exceed the {MAX_VALUES} values an array may hold here",
                python_shape(self.flow.data_shape())
            )));
        }
        let cx = arrays::context(context)?;
        let x = detached(py, || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            self.flow.sample(n, temperature, &mut rng, cx.as_ref()).map_err(to_py)
        })?;
        Ok(arrays::to_numpy(py, x)?.into_any())
    }

    /// The latents of x, flattened to an array (N, D) with D = prod(data_shape): the final
    /// latent first, then each factored-out latent of a multi-scale flow in the order it left
    /// the flow. decode inverts it.
    ///
    /// Raises ValueError as log_prob does.
    #[pyo3(signature = (x, context = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = arrays::samples(x, "x", self.flow.data_shape())?;
        let cx = arrays::context(context)?;
        let flat = detached(py, || {
            let latent = self.flow.encode(&x, cx.as_ref()).map_err(to_py)?;
            latent.flatten().map_err(to_py)
        })?;
        Ok(arrays::to_numpy(py, flat)?.into_any())
    }

    /// The data a set of latents maps back to (the inverse of encode): z is an array (N, D) as
    /// encode returns; the result has shape (N, *data_shape).
    ///
    /// Raises ValueError for a wrong shape, NaN or infinite latents, or a stage whose inverse
    /// overflows (named).
    #[pyo3(signature = (z, context = None))]
    fn decode<'py>(
        &self,
        py: Python<'py>,
        z: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let z = arrays::samples(z, "z", &[self.data_width()])?;
        let cx = arrays::context(context)?;
        let latent = self.unflatten(&z)?;
        let x = detached(py, || self.flow.decode(&latent, cx.as_ref()).map_err(to_py))?;
        Ok(arrays::to_numpy(py, x)?.into_any())
    }

    /// The numerical audit of the flow at the samples x, stage by stage: the report
    /// `exactflow audit --json` prints, as a dict ("precision", "samples", "tolerances",
    /// "stages", "flow", "pass"). Each stage reports its inverse's error, its log-det against
    /// the exact (dual-number) and finite-difference Jacobians, the Jacobian's conditioning and
    /// a gradient check. Each sample costs D forward passes per stage: audit a few.
    ///
    /// Raises ValueError as log_prob does.
    #[pyo3(signature = (x, context = None))]
    fn audit<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        context: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = arrays::samples(x, "x", self.flow.data_shape())?;
        let cx = arrays::context(context)?;
        let report = detached(py, || {
            let report = audit_flow(&self.flow, &x, cx.as_ref()).map_err(to_py)?;
            serde_json::to_value(&report).map_err(|e| value_error(format!("audit as JSON: {e}")))
        })?;
        json::to_python(py, &report, NonFinite::Keep)
    }

    /// The model configuration as a dict: the JSON a checkpoint stores, with the family under
    /// "model"; it determines the architecture and, with its seed, the initial parameters.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.config).map_err(|e| value_error(format!("config as JSON: {e}")))?;
        json::to_python(py, &v, NonFinite::Keep)
    }

    /// The model family: "nice", "realnvp", "glow", ...
    #[getter]
    fn family(&self) -> &'static str {
        self.config.family()
    }

    /// The shape of one sample, (D,) or (C, H, W).
    #[getter]
    fn data_shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.flow.data_shape())
    }

    /// The width C of the context a conditional flow takes (0: unconditional).
    #[getter]
    fn context_dim(&self) -> usize {
        self.flow.context_dim()
    }

    fn __repr__(&self) -> String {
        format!(
            "Flow(family={:?}, data_shape={}, context_dim={}, stages={})",
            self.config.family(),
            python_shape(self.flow.data_shape()),
            self.flow.context_dim(),
            self.flow.stages().len()
        )
    }
}
