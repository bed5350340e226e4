//! # exactflow from Python
//!
//! The `exactflow` Python extension module (PyO3, built by maturin as an abi3 wheel for
//! Python >= 3.9): exactflow's log-determinants, matrix audit, flows and training on NumPy
//! arrays, without a subprocess.
//!
//! - [`logdet`]: `slogdet` (numpy's semantics) and `audit_matrix` (the document of
//!   `exactflow logdet --audit --json`);
//! - [`flow`]: the `Flow` class (`load`, `log_prob`, `sample`, `encode`, `decode`, `audit`,
//!   `config`, `save`);
//! - [`train`]: `train` (the options and defaults of `exactflow train`) and `load_data`;
//! - [`arrays`]: NumPy arrays in and out (each input copied once); [`json`]: JSON documents as
//!   Python objects; [`errors`]: exceptions, and computations run without the GIL and with
//!   panics caught.
//!
//! The Python documentation (docstrings, types) is the stub file `exactflow.pyi` beside this
//! crate's `pyproject.toml`; the functions here carry it as their `__doc__` too.

#![warn(missing_docs)]

pub mod arrays;
pub mod errors;
pub mod flow;
pub mod json;
pub mod logdet;
pub mod train;

use pyo3::prelude::*;

/// exactflow: normalizing flows whose mathematics is verified, not trusted.
///
/// Log-determinants with numpy's slogdet semantics, the numerical audit of a log-determinant,
/// trained flows (NICE, RealNVP, Glow and every family exactflow builds) and their training, on
/// NumPy arrays. Inputs are float32 or float64 arrays of any memory order, copied once; every
/// computation releases the GIL.
///
/// Errors: ValueError for shapes, dtypes, non-finite input and impossible options; OSError for
/// files that cannot be read or written or are not what they claim; RuntimeError for a training
/// run that diverged (and for an internal error, which is a bug).
#[pymodule]
#[pyo3(name = "exactflow")]
fn exactflow_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(logdet::slogdet, m)?)?;
    m.add_function(wrap_pyfunction!(logdet::audit_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(train::load_data, m)?)?;
    m.add_class::<flow::PyFlow>()?;
    Ok(())
}
