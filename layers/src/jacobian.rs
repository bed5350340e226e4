//! Dense per-sample Jacobians of any layer or composition, by central finite differences and,
//! exactly, by forward-mode dual numbers; and their log|det| through the kernels' LU.
//!
//! A layer maps each sample independently (in inference mode), so the Jacobian of the batch is
//! block diagonal and column j of every sample's block is obtained at once by perturbing (or
//! seeding the derivative of) coordinate j in all samples together: `D` passes for `[N, D]`.
//!
//! The dual-number Jacobian runs the layer's own generic code on [`F1`] (see
//! [`crate::Bijector::to_dual`]), so it is exact up to rounding: it is the reference the property
//! tests and the audit compare every log-det against.

use exactflow_kernels::{Error, F1, LogDet, Matrix, Result, log_det};

use crate::bijector::Bijector;
use crate::ctx::Ctx;
use crate::tensor::Tensor;

fn check_square_map(op: &'static str, in_len: usize, out_len: usize) -> Result<()> {
    if in_len != out_len {
        return Err(Error::invalid(
            op,
            "map",
            format!("a Jacobian determinant needs as many outputs ({out_len}) as inputs ({in_len})"),
        ));
    }
    Ok(())
}

/// Per-sample Jacobians `d f(x)_n / d x_n` (`[out_len, in_len]` each) of a batch map `f` by
/// central differences with step `h`: `(f(x + h e_j) - f(x - h e_j)) / 2h`, error O(h^2).
///
/// # Errors
/// Whatever `f` returns; [`Error::InvalidArgument`] for a non-positive step.
pub fn jacobian_fd(
    f: impl Fn(&Tensor<f64>) -> Result<Tensor<f64>>,
    x: &Tensor<f64>,
    h: f64,
) -> Result<Vec<Matrix<f64>>> {
    if h.is_nan() || h <= 0.0 {
        return Err(Error::invalid("jacobian_fd", "step", format!("{h} (must be positive)")));
    }
    let n = x.batch();
    let d = x.sample_len();
    let mut jacs: Vec<Matrix<f64>> = Vec::new();
    for j in 0..d {
        let mut plus = x.clone();
        let mut minus = x.clone();
        for s in 0..n {
            plus.as_mut_slice()[s * d + j] += h;
            minus.as_mut_slice()[s * d + j] -= h;
        }
        let fp = f(&plus)?;
        let fm = f(&minus)?;
        let m = fp.sample_len();
        if j == 0 {
            jacs = (0..n).map(|_| Matrix::zeros(m, d)).collect();
        }
        for (s, jac) in jacs.iter_mut().enumerate() {
            for i in 0..m {
                jac[(i, j)] = (fp.as_slice()[s * m + i] - fm.as_slice()[s * m + i]) / (2.0 * h);
            }
        }
    }
    Ok(jacs)
}

/// Per-sample Jacobians of a map on dual numbers, exactly: coordinate j of every sample is
/// seeded with derivative 1 and the derivative parts of the output form column j.
///
/// # Errors
/// Whatever `f` returns.
pub fn jacobian_dual(f: impl Fn(&Tensor<F1>) -> Result<Tensor<F1>>, x: &Tensor<f64>) -> Result<Vec<Matrix<f64>>> {
    let n = x.batch();
    let d = x.sample_len();
    let mut jacs: Vec<Matrix<f64>> = Vec::new();
    for j in 0..d {
        let mut xd: Tensor<F1> = x.map(F1::cst);
        for s in 0..n {
            xd.as_mut_slice()[s * d + j].dx = 1.0;
        }
        let y = f(&xd)?;
        let m = y.sample_len();
        if j == 0 {
            jacs = (0..n).map(|_| Matrix::zeros(m, d)).collect();
        }
        for (s, jac) in jacs.iter_mut().enumerate() {
            for i in 0..m {
                jac[(i, j)] = y.as_slice()[s * m + i].dx;
            }
        }
    }
    Ok(jacs)
}

/// The exact per-sample Jacobians of a layer's forward map with respect to `x` at `x` (via
/// [`Bijector::to_dual`]), the `context` (if any) held fixed.
///
/// # Errors
/// Whatever the layer's forward returns; an error when input and output sizes differ.
pub fn forward_jacobian_exact<T: exactflow_kernels::Real>(
    layer: &dyn Bijector<T>,
    x: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
) -> Result<Vec<Matrix<f64>>> {
    let dual = layer.to_dual();
    let (inp, out) = dual.sample_shapes();
    check_square_map("forward_jacobian_exact", inp.iter().product(), out.iter().product())?;
    let c = context.map(|c| c.cast::<F1>());
    jacobian_dual(|t| Ok(dual.forward(t, Ctx::new(c.as_ref()))?.0), x)
}

/// The exact per-sample Jacobians of a layer's inverse map at `z`, the `context` held fixed.
///
/// # Errors
/// As [`forward_jacobian_exact`].
pub fn inverse_jacobian_exact<T: exactflow_kernels::Real>(
    layer: &dyn Bijector<T>,
    z: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
) -> Result<Vec<Matrix<f64>>> {
    let dual = layer.to_dual();
    let c = context.map(|c| c.cast::<F1>());
    jacobian_dual(|t| Ok(dual.inverse(t, Ctx::new(c.as_ref()))?.0), z)
}

/// Per-sample Jacobians of a layer's forward map by central differences (in f64, via
/// [`Bijector::to_f64`]), the `context` held fixed.
///
/// # Errors
/// As [`forward_jacobian_exact`].
pub fn forward_jacobian_fd<T: exactflow_kernels::Real>(
    layer: &dyn Bijector<T>,
    x: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
    h: f64,
) -> Result<Vec<Matrix<f64>>> {
    let l = layer.to_f64();
    let (inp, out) = l.sample_shapes();
    check_square_map("forward_jacobian_fd", inp.iter().product(), out.iter().product())?;
    jacobian_fd(|t| Ok(l.forward(t, Ctx::new(context))?.0), x, h)
}

/// `(sign, log|det J_n|)` of each Jacobian, by the kernels' LU.
///
/// # Errors
/// A non-square or non-finite Jacobian.
pub fn log_dets(jacs: &[Matrix<f64>]) -> Result<Vec<LogDet<f64>>> {
    jacs.iter().map(log_det).collect()
}
