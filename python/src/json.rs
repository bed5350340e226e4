//! JSON documents (metrics, audits, configurations) as Python objects: objects as `dict`, arrays
//! as `list`, numbers as `int` or `float`, `null` as `None`.

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;

/// What to do with the strings `"inf"`, `"-inf"` and `"NaN"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// Keep them as strings.
    Keep,
    /// Turn them into the floats they stand for: the matrix audit writes non-finite numbers as
    /// these strings (JSON has no infinities), and no text field of it can take these values.
    FromStrings,
}

/// `v` as a Python object.
///
/// # Errors
/// Only Python's own (out of memory).
pub fn to_python<'py>(py: Python<'py>, v: &Value, non_finite: NonFinite) -> PyResult<Bound<'py, PyAny>> {
    match v {
        Value::Null => Ok(py.None().into_bound(py)),
        Value::Bool(b) => b.into_bound_py_any(py),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py),
            (None, Some(u)) => u.into_bound_py_any(py),
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py),
        },
        Value::String(s) => match (non_finite, s.as_str()) {
            (NonFinite::FromStrings, "inf") => f64::INFINITY.into_bound_py_any(py),
            (NonFinite::FromStrings, "-inf") => f64::NEG_INFINITY.into_bound_py_any(py),
            (NonFinite::FromStrings, "NaN") => f64::NAN.into_bound_py_any(py),
            _ => s.into_bound_py_any(py),
        },
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item, non_finite)?)?;
            }
            Ok(list.into_any())
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, to_python(py, item, non_finite)?)?;
            }
            Ok(dict.into_any())
        }
    }
}
