//! A fully connected layer `y = x W^T + b` (PyTorch's `nn.Linear`: W is `[out, in]`).

use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::{Real, Result};
use rand::Rng;

use crate::params::{Param, join};
use crate::tensor::Tensor;

/// `y = x W^T + b` on `[N, in]` rows.
#[derive(Clone, Debug)]
pub struct Linear<T: Real> {
    /// `[out, in]`.
    pub weight: Param<T>,
    /// `[out]`.
    pub bias: Param<T>,
}

impl<T: Real> Linear<T> {
    /// PyTorch's default initialization: W and b uniform in `[-1/sqrt(in), 1/sqrt(in)]`; or all
    /// zeros when `zero` (a layer that starts as the constant 0).
    pub fn new(inp: usize, out: usize, zero: bool, rng: &mut impl Rng) -> Result<Self> {
        let bound = 1.0 / (inp.max(1) as f64).sqrt();
        let mut draw = |_| {
            if zero {
                T::zero()
            } else {
                T::lit(rng.random_range(-bound..=bound))
            }
        };
        let weight = Tensor::from_fn(&[out, inp], &mut draw)?;
        let bias = Tensor::from_fn(&[out], &mut draw)?;
        Ok(Linear {
            weight: Param::trainable(weight),
            bias: Param::trainable(bias),
        })
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// `y = x W^T + b` for `n` rows of `x` (row-major, `n * in` long), the product on `par`.
    pub fn forward_rows(&self, x: &[T], n: usize, par: Parallelism) -> Result<Vec<T>> {
        let (inp, out) = (self.in_dim(), self.out_dim());
        let mut y = Vec::with_capacity(n * out);
        for _ in 0..n {
            y.extend_from_slice(self.bias.values());
        }
        gemm(
            T::one(),
            MatSlice::new(x, n, inp)?,
            MatSlice::new(self.weight.values(), out, inp)?.t(),
            T::one(),
            MatSliceMut::new(&mut y, n, out)?,
            par,
        )?;
        Ok(y)
    }

    /// Backward for `n` rows: adds `dy^T x` to dW and the column sums of `dy` to db; returns
    /// `dy W` (the gradient w.r.t. `x`) when `want_dx`.
    pub fn backward_rows(
        &mut self,
        x: &[T],
        dy: &[T],
        n: usize,
        want_dx: bool,
        par: Parallelism,
    ) -> Result<Option<Vec<T>>> {
        let (inp, out) = (self.in_dim(), self.out_dim());
        gemm(
            T::one(),
            MatSlice::new(dy, n, out)?.t(),
            MatSlice::new(x, n, inp)?,
            T::one(),
            MatSliceMut::new(self.weight.grad.as_mut_slice(), out, inp)?,
            par,
        )?;
        let db = self.bias.grad.as_mut_slice();
        for row in dy.chunks_exact(out.max(1)) {
            for (g, &v) in db.iter_mut().zip(row) {
                *g += v;
            }
        }
        if !want_dx {
            return Ok(None);
        }
        let mut dx = vec![T::zero(); n * inp];
        gemm(
            T::one(),
            MatSlice::new(dy, n, out)?,
            MatSlice::new(self.weight.values(), out, inp)?,
            T::zero(),
            MatSliceMut::new(&mut dx, n, inp)?,
            par,
        )?;
        Ok(Some(dx))
    }

    /// Visits `weight` and `bias` under `prefix`.
    pub fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }

    /// Visits `weight` and `bias` mutably.
    pub fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "weight"), &mut self.weight);
        f(&join(prefix, "bias"), &mut self.bias);
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Linear<U> {
        Linear {
            weight: self.weight.cast(),
            bias: self.bias.cast(),
        }
    }
}
