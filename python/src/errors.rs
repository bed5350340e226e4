//! exactflow's errors as Python exceptions, and the one way the package runs Rust computations:
//! without the GIL and with panics caught.
//!
//! | Rust error | Python exception |
//! |---|---|
//! | shapes, dtypes, non-finite input, invalid arguments, configurations (`Numerical`, `Config`, `NonFinite`) | `ValueError` |
//! | files that cannot be read or written, or are not what they claim (`Io`, `Format`) | `OSError` |
//! | a training run that diverged (`Diverged`) | `RuntimeError` |
//! | a panic (a broken internal invariant: a bug) | `RuntimeError` |

use std::panic::{AssertUnwindSafe, catch_unwind};

use exactflow::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A library error as the Python exception of its kind (table in the module documentation).
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    exception(&e, message)
}

fn exception(e: &Error, message: String) -> PyErr {
    match e {
        Error::Io { .. } | Error::Format { .. } => PyOSError::new_err(message),
        Error::Diverged { .. } => PyRuntimeError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// [`to_py`] with `note` appended to the message (`"{error}; {note}"`).
pub fn to_py_noting(e: Error, note: &str) -> PyErr {
    let message = format!("{e}; {note}");
    exception(&e, message)
}

/// A kernels (numerical) error as a `ValueError`.
pub fn kernels_to_py(e: exactflow::kernels::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A `ValueError` with `message`.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// Runs `f` with the GIL released, so that other Python threads run meanwhile, and turns a panic
/// inside it into a `RuntimeError` instead of letting it unwind into Python.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Send + FnOnce() -> PyResult<T>,
    T: Send,
{
    py.detach(|| catch_unwind(AssertUnwindSafe(f)))
        .unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
}

fn panic_error(payload: &(dyn std::any::Any + Send)) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    PyRuntimeError::new_err(format!(
        "internal error in exactflow (a bug: please report it with the call that caused it): {what}"
    ))
}

/// Issues `message` as a Python `UserWarning` (what the command line prints as `warning: ...`),
/// attributed to the caller of the exactflow function.
///
/// # Errors
/// The exception a warnings filter turns the warning into (`-W error`).
pub fn warn_user(py: Python<'_>, message: &str) -> PyResult<()> {
    // A NUL inside a path would end the C string early; the warning is for people, so it is
    // shown with the NULs replaced rather than dropped.
    let text = std::ffi::CString::new(message.replace('\0', "\u{fffd}")).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<pyo3::exceptions::PyUserWarning>(), &text, 1)
}
