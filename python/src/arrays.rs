//! NumPy arrays in and out.
//!
//! Inputs are float32 or float64 arrays of any memory order and strides (C, Fortran, sliced,
//! transposed); anything that is not an `ndarray` (a list, a scalar) goes through
//! `numpy.asarray(x, dtype=float64)` first. Each input is copied once, with the GIL held, into
//! the contiguous row-major buffer the computation owns: a C-contiguous array by one `memcpy`,
//! any other in logical (row-major) order. The computation then runs without the GIL on that
//! copy, so Python threads may go on using (and even changing) the array meanwhile.
//!
//! Outputs are new float64 (or, for float32 input of `slogdet`, float32) arrays that take over
//! the Rust buffer without a copy.

use exactflow::layers::Tensor;
use numpy::ndarray::{ArrayD, ArrayView2, ArrayViewD, Ix2, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{kernels_to_py, value_error};

/// The most values an array this package creates may hold (2^32, 32 GiB of float64): a request
/// for more (`sample(10**12)`) is refused before anything is allocated, instead of aborting the
/// process when the allocation fails.
pub const MAX_VALUES: usize = 1 << 32;

/// An input array copied into a row-major buffer, in its own precision.
pub enum Values {
    /// float32 input.
    F32(Vec<f32>),
    /// float64 input.
    F64(Vec<f64>),
}

/// An input array: its shape and values.
pub struct Input {
    /// The shape (every axis).
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Values,
    /// Whether the array was float32 (also when its values were converted to float64).
    pub from_f32: bool,
}

/// Reads `obj` (named `what` in messages) as a float32 or float64 array, kept in its precision.
///
/// # Errors
/// `ValueError` for an array of another dtype (naming it), or an object NumPy cannot turn into a
/// float64 array.
pub fn read(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Input> {
    read_as(obj, what, false)
}

/// [`read`], float32 values converted to float64 (exactly) during the one copy: the shape, the
/// values and whether they were float32.
///
/// # Errors
/// As [`read`].
pub fn read_f64_input(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<usize>, Vec<f64>, bool)> {
    let input = read_as(obj, what, true)?;
    let values = match input.values {
        Values::F64(v) => v,
        // Not reached: read_as converts float32 when asked to.
        Values::F32(v) => v.into_iter().map(f64::from).collect(),
    };
    Ok((input.shape, values, input.from_f32))
}

/// [`read_f64_input`] without the source precision.
///
/// # Errors
/// As [`read`].
pub fn read_f64(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<usize>, Vec<f64>)> {
    read_f64_input(obj, what).map(|(shape, values, _)| (shape, values))
}

fn read_as(obj: &Bound<'_, PyAny>, what: &str, to_f64: bool) -> PyResult<Input> {
    let py = obj.py();
    let owned;
    let arr: &Bound<'_, PyAny> = if obj.is_instance_of::<PyUntypedArray>() {
        obj
    } else {
        let np = py.import("numpy")?;
        owned = np
            .getattr("asarray")?
            .call1((obj, np.getattr("float64")?))
            .map_err(|e| {
                value_error(format!(
                    "{what}: expected a float32 or float64 array, found {}",
                    describe(obj, e)
                ))
            })?;
        &owned
    };
    if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
        let ro = a.try_readonly().map_err(|e| value_error(format!("{what}: {e}")))?;
        return Ok(Input {
            shape: ro.shape().to_vec(),
            values: Values::F64(row_major(ro.as_array())),
            from_f32: false,
        });
    }
    if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
        let ro = a.try_readonly().map_err(|e| value_error(format!("{what}: {e}")))?;
        let values = if to_f64 {
            Values::F64(row_major_map(ro.as_array(), f64::from))
        } else {
            Values::F32(row_major(ro.as_array()))
        };
        return Ok(Input {
            shape: ro.shape().to_vec(),
            values,
            from_f32: true,
        });
    }
    let dtype = arr
        .cast::<PyUntypedArray>()
        .map(|a| a.dtype().to_string())
        .unwrap_or_else(|_| "an unknown dtype".into());
    Err(value_error(format!(
        "{what}: expected a float32 or float64 array, found dtype {dtype} (convert it with .astype(numpy.float64))"
    )))
}

/// Why NumPy could not convert `obj`: its type and NumPy's message.
fn describe(obj: &Bound<'_, PyAny>, e: PyErr) -> String {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an object".into());
    format!("{ty} ({e})")
}

/// The array's values in row-major order: one `memcpy` for a C-contiguous array; otherwise each
/// trailing 2-D slice is copied tile by tile ([`copy_2d`]).
fn row_major<T: Copy + Default>(a: ArrayViewD<'_, T>) -> Vec<T> {
    match a.as_slice() {
        Some(s) => s.to_vec(),
        None => row_major_map(a, |v| v),
    }
}

/// The array's values in row-major order, each mapped by `f` (float32 to float64) in the same
/// single pass.
fn row_major_map<T: Copy, U: Copy + Default>(a: ArrayViewD<'_, T>, f: impl Fn(T) -> U + Copy) -> Vec<U> {
    if let Some(s) = a.as_slice() {
        return s.iter().map(|&v| f(v)).collect();
    }
    let mut out = Vec::with_capacity(a.len());
    copy_into(a, &mut out, f);
    out
}

fn copy_into<T: Copy, U: Copy + Default>(a: ArrayViewD<'_, T>, out: &mut Vec<U>, f: impl Fn(T) -> U + Copy) {
    match a.ndim() {
        0 | 1 => out.extend(a.iter().map(|&v| f(v))),
        2 => match a.clone().into_dimensionality::<Ix2>() {
            Ok(m) => copy_2d(m, out, f),
            // A 2-axis view always converts; the element walk is only a safe fallback.
            Err(_) => out.extend(a.iter().map(|&v| f(v))),
        },
        _ => {
            for sub in a.outer_iter() {
                copy_into(sub, out, f);
            }
        }
    }
}

/// Side of the square tiles of [`copy_2d`]: 32 x 32 doubles read from 32 columns (or rows) touch
/// 32 cache lines at a time, well within L1, whatever the strides.
const TILE: usize = 32;

/// Appends a strided matrix in row-major order, tile by tile, so that a Fortran-ordered (or
/// transposed) matrix is read a cache line at a time instead of one element per line.
fn copy_2d<T: Copy, U: Copy + Default>(m: ArrayView2<'_, T>, out: &mut Vec<U>, f: impl Fn(T) -> U) {
    let (rows, cols) = m.dim();
    let start = out.len();
    out.resize(start + rows * cols, U::default());
    let dst = &mut out[start..];
    for ib in (0..rows).step_by(TILE) {
        for jb in (0..cols).step_by(TILE) {
            for i in ib..(ib + TILE).min(rows) {
                let row = &mut dst[i * cols..(i + 1) * cols];
                for j in jb..(jb + TILE).min(cols) {
                    row[j] = f(m[[i, j]]);
                }
            }
        }
    }
}

/// Reads `obj` as a batch of float64 samples of shape `[N, *sample_shape]` (float32 converted
/// exactly); a single sample of shape `sample_shape` is taken as a batch of one.
///
/// # Errors
/// `ValueError` naming `what`, the expected and the found shape.
pub fn samples(obj: &Bound<'_, PyAny>, what: &str, sample_shape: &[usize]) -> PyResult<Tensor<f64>> {
    let (found, values) = read_f64(obj, what)?;
    let mut shape = found.clone();
    if shape == sample_shape {
        shape.insert(0, 1);
    }
    if shape.len() != sample_shape.len() + 1 || shape[1..] != *sample_shape {
        return Err(value_error(format!(
            "{what}: expected an array of shape (N, {}), found shape {}",
            sample_shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            python_shape(&found)
        )));
    }
    Tensor::new(&shape, values).map_err(kernels_to_py)
}

/// Reads an optional context: `None`, or a float array `[N, C]` (a single row `[C]` is taken as
/// `[1, C]`).
///
/// # Errors
/// `ValueError` for another rank or dtype.
pub fn context(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Tensor<f64>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let (found, values) = read_f64(obj, "context")?;
    let shape = match found.as_slice() {
        [c] => vec![1, *c],
        [n, c] => vec![*n, *c],
        other => {
            return Err(value_error(format!(
                "context: expected an array of shape (N, C), found shape {}",
                python_shape(other)
            )));
        }
    };
    Ok(Some(Tensor::new(&shape, values).map_err(kernels_to_py)?))
}

/// A shape as Python writes it: `(3, 4)`, `(5,)`, `()`.
pub fn python_shape(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A tensor as a new float64 array of its shape (the buffer is handed over, not copied).
pub fn to_numpy<'py>(py: Python<'py>, t: Tensor<f64>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let shape = t.shape().to_vec();
    from_vec(py, &shape, t.into_vec())
}

/// A row-major buffer as a new array of `shape` (handed over, not copied).
pub fn from_vec<'py, T: numpy::Element>(
    py: Python<'py>,
    shape: &[usize],
    v: Vec<T>,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let a = ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| value_error(format!("internal shape error: {e}")))?;
    Ok(a.into_pyarray(py))
}

/// A Python integer `>= min` as a count.
///
/// # Errors
/// `TypeError` for a non-integer; `ValueError` for one below `min` or too large for a count.
pub fn count(obj: &Bound<'_, PyAny>, what: &str, min: usize) -> PyResult<usize> {
    let v: i128 = obj.extract()?;
    usize::try_from(v)
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| value_error(format!("{what} must be an integer of at least {min}, found {v}")))
}

/// A Python integer as a seed: any integer in `0..2^64`.
///
/// # Errors
/// `TypeError` for a non-integer; `ValueError` outside that range.
pub fn seed(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    let v: i128 = obj.extract()?;
    u64::try_from(v).map_err(|_| value_error(format!("seed must be an integer in 0..2**64, found {v}")))
}
