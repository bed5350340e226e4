//! `exactflow.slogdet` and `exactflow.audit_matrix`.

use std::time::Instant;

use exactflow::kernels::audit::audit_matrix_with;
use exactflow::kernels::gemm::MatSlice;
use exactflow::kernels::{LogDet, LogDetMethod, Matrix, Real, log_det_owned, log_det_with};
use pyo3::prelude::*;

use crate::arrays::{self, Input, Values, python_shape};
use crate::errors::{detached, kernels_to_py, value_error};
use crate::json;

/// The `(sign, log|det|)` of every matrix of a stack `[..., n, n]` stored row-major in `values`
/// (the one copy from the array, made by the caller). A single matrix is factored in that buffer
/// itself; a matrix of a stack is read from it by the LU, which copies it once into its working
/// buffer.
fn slogdets<T: Real>(values: Vec<T>, count: usize, n: usize, method: LogDetMethod) -> PyResult<(Vec<T>, Vec<T>)> {
    if count == 1 {
        let m = Matrix::new(n, n, values).map_err(kernels_to_py)?;
        let (ld, _) = log_det_owned(m, method).map_err(kernels_to_py)?;
        return Ok((vec![ld.sign], vec![ld.log_abs]));
    }
    let (mut signs, mut logs) = (Vec::with_capacity(count), Vec::with_capacity(count));
    let size = n * n;
    for k in 0..count {
        let m = MatSlice::new(&values[k * size..(k + 1) * size], n, n).map_err(kernels_to_py)?;
        let (ld, _): (LogDet<T>, _) =
            log_det_with(&m, method).map_err(|e| value_error(format!("matrix {k} of the stack: {e}")))?;
        signs.push(ld.sign);
        logs.push(ld.log_abs);
    }
    Ok((signs, logs))
}

/// The stack shape `[...]` and the order `n` of an input of shape `[..., n, n]`.
fn stack_of(shape: &[usize]) -> PyResult<(Vec<usize>, usize)> {
    match shape {
        [stack @ .., r, c] if r == c => Ok((stack.to_vec(), *r)),
        [.., r, c] => Err(value_error(format!(
            "slogdet: the last two axes must be square, found {r} x {c} (shape {})",
            python_shape(shape)
        ))),
        _ => Err(value_error(format!(
            "slogdet: expected an array of at least two axes (..., n, n), found shape {}",
            python_shape(shape)
        ))),
    }
}

/// Sign and natural log of the absolute value of the determinant, with numpy.linalg.slogdet's
/// semantics.
///
/// Parameters
/// ----------
/// a : array_like, shape (..., n, n), float32 or float64
///     One square matrix or a stack of them, in any memory order and strides (C, Fortran,
///     sliced, transposed). It is copied once; the GIL is released while computing.
/// method : {"auto", "lu", "triangular"}
///     "auto" (default) reads a triangular matrix's diagonal in O(n) and factors any other by LU
///     with partial pivoting in O(n^3); "lu" always factors; "triangular" requires a triangular
///     matrix.
///
/// Returns
/// -------
/// (sign, logabsdet)
///     For one matrix, NumPy scalars of the input's precision; for a stack, arrays of shape
///     (...). sign is -1, 0 or 1; a singular matrix gives (0, -inf); the 0 x 0 matrix (1, 0).
///     det = sign * exp(logabsdet), which never overflows as det itself does.
///
/// Raises
/// ------
/// ValueError
///     Not square, fewer than two axes, another dtype, or a NaN or infinite entry (named by its
///     position); "triangular" on a matrix that is not.
#[pyfunction]
#[pyo3(signature = (a, method = "auto"))]
pub fn slogdet<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    method: &str,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let method: LogDetMethod = method.parse().map_err(kernels_to_py)?;
    let Input { shape, values, .. } = arrays::read(a, "slogdet")?;
    let (stack, n) = stack_of(&shape)?;
    let count = stack.iter().product::<usize>();
    // An empty stack has no matrix to compute; numpy returns empty arrays for it.
    let out_shape = if stack.is_empty() { vec![1] } else { stack.clone() };
    let (sign, log_abs) = match values {
        Values::F64(v) => {
            let (s, l) = detached(py, move || slogdets(v, count, n, method))?;
            (
                arrays::from_vec(py, &out_shape, s)?.into_any(),
                arrays::from_vec(py, &out_shape, l)?.into_any(),
            )
        }
        Values::F32(v) => {
            let (s, l) = detached(py, move || slogdets(v, count, n, method))?;
            (
                arrays::from_vec(py, &out_shape, s)?.into_any(),
                arrays::from_vec(py, &out_shape, l)?.into_any(),
            )
        }
    };
    if stack.is_empty() {
        // A single matrix: NumPy scalars of the input's precision, as numpy.linalg.slogdet gives.
        return Ok((sign.get_item(0)?, log_abs.get_item(0)?));
    }
    Ok((sign, log_abs))
}

/// The log-determinant of a square matrix with a numerical audit: the document
/// `exactflow logdet --audit --json` prints, as a dict with the same keys.
///
/// Parameters
/// ----------
/// a : array_like, shape (n, n), float32 or float64
///     The matrix, in any memory order. float32 input is computed in float32 and recomputed in
///     float64.
/// method : {"auto", "lu", "triangular"}
///     As for slogdet.
///
/// Returns
/// -------
/// dict
///     "n", "sign", "log_abs", "method" ("lu", "triangular-lower" or "triangular-upper"),
///     "seconds", and "audit": "precision", "backward_error" (||PA - LU||_1 / (n ||A||_1 eps)),
///     "cond1_estimate" (Hager-Higham), "perturbation", "log_abs_error_bound", "bound_valid",
///     "f64_recompute" (float32 input), "exact" (the exact determinant of an integer matrix, by
///     Bareiss elimination: "digits", "agrees", ...) and "exact_note". Where the JSON writes a
///     non-finite number as "inf", "-inf" or "NaN", the dict holds the float.
///
/// Raises
/// ------
/// ValueError
///     Not square, empty, another dtype, or a NaN or infinite entry.
#[pyfunction]
#[pyo3(signature = (a, method = "auto"))]
pub fn audit_matrix<'py>(py: Python<'py>, a: &Bound<'py, PyAny>, method: &str) -> PyResult<Bound<'py, PyAny>> {
    let method: LogDetMethod = method.parse().map_err(kernels_to_py)?;
    let (shape, values, f32_input) = arrays::read_f64_input(a, "audit_matrix")?;
    let n = match shape.as_slice() {
        [r, c] if r == c => *r,
        _ => {
            return Err(value_error(format!(
                "audit_matrix: expected a square matrix (n, n), found shape {}",
                python_shape(&shape)
            )));
        }
    };
    let doc = detached(py, move || {
        let t0 = Instant::now();
        let audit = audit_matrix_with(&values, n, f32_input, method).map_err(kernels_to_py)?;
        let seconds = t0.elapsed().as_secs_f64();
        exactflow::reports::logdet_audit(&audit, seconds).map_err(|e| value_error(format!("audit as JSON: {e}")))
    })?;
    json::to_python(py, &doc, json::NonFinite::FromStrings)
}
