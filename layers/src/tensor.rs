//! `Tensor<T>`: an owned, contiguous, row-major n-dimensional array.
//!
//! Flows use two shapes: tabular data `[N, D]` and images `[N, C, H, W]` (NCHW, as in PyTorch, so
//! arrays and weights carry across). The first axis is always the batch: [`Tensor::batch`] is N
//! and [`Tensor::sample`] is the contiguous slice of one sample. Every operation that needs two
//! shapes to agree checks them and returns [`Error::ShapeMismatch`] rather than panicking.

use exactflow_kernels::{Error, Matrix, Real, Result};

/// An owned, contiguous, row-major array whose first axis is the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

fn numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(op, "shape", format!("{shape:?} has too many elements")))
}

impl<T: Real> Tensor<T> {
    /// A tensor of the given shape over row-major `data`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `data.len()` is not the product of `shape`;
    /// [`Error::InvalidArgument`] for an empty shape.
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::invalid(
                "Tensor::new",
                "shape",
                "a tensor needs at least one axis",
            ));
        }
        let n = numel("Tensor::new", shape)?;
        if data.len() != n {
            return Err(Error::LengthMismatch {
                op: "Tensor::new",
                what: "data",
                expected: n,
                found: data.len(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// The zero tensor of a shape.
    ///
    /// # Errors
    /// As [`Tensor::new`].
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        let n = numel("Tensor::zeros", shape)?;
        Self::new(shape, vec![T::zero(); n])
    }

    /// A tensor filled with `v`.
    ///
    /// # Errors
    /// As [`Tensor::new`].
    pub fn full(shape: &[usize], v: T) -> Result<Self> {
        let n = numel("Tensor::full", shape)?;
        Self::new(shape, vec![v; n])
    }

    /// A tensor whose element at flat index k is `f(k)`.
    ///
    /// # Errors
    /// As [`Tensor::new`].
    pub fn from_fn(shape: &[usize], f: impl FnMut(usize) -> T) -> Result<Self> {
        let n = numel("Tensor::from_fn", shape)?;
        Self::new(shape, (0..n).map(f).collect())
    }

    /// A tensor of the same shape as `self`, every element zero.
    pub fn zeros_like(&self) -> Self {
        Tensor {
            shape: self.shape.clone(),
            data: vec![T::zero(); self.data.len()],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The batch size N (the first axis).
    pub fn batch(&self) -> usize {
        self.shape[0]
    }

    /// Elements per sample: the product of every axis but the first.
    pub fn sample_len(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// The shape of one sample (every axis but the first).
    pub fn sample_shape(&self) -> &[usize] {
        &self.shape[1..]
    }

    /// The row-major data.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }

    /// The row-major data, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The data, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// Sample `i` as a contiguous slice.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `i >= batch()`.
    pub fn sample(&self, i: usize) -> Result<&[T]> {
        if i >= self.batch() {
            return Err(Error::invalid(
                "Tensor::sample",
                "index",
                format!("sample {i} of a batch of {}", self.batch()),
            ));
        }
        let m = self.sample_len();
        Ok(&self.data[i * m..(i + 1) * m])
    }

    /// Iterates over the samples (contiguous slices of `sample_len()` elements).
    pub fn samples(&self) -> impl Iterator<Item = &[T]> {
        let m = self.sample_len().max(1);
        self.data.chunks_exact(m).take(self.batch())
    }

    fn flat_index(&self, index: &[usize]) -> Result<usize> {
        if index.len() != self.shape.len() || index.iter().zip(&self.shape).any(|(i, d)| i >= d) {
            return Err(Error::invalid(
                "Tensor::get",
                "index",
                format!("{index:?} is outside shape {:?}", self.shape),
            ));
        }
        Ok(index.iter().zip(&self.shape).fold(0, |acc, (i, d)| acc * d + i))
    }

    /// The element at a multi-index.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the index has the wrong rank or is out of range.
    pub fn get(&self, index: &[usize]) -> Result<T> {
        Ok(self.data[self.flat_index(index)?])
    }

    /// Sets the element at a multi-index.
    ///
    /// # Errors
    /// As [`Tensor::get`].
    pub fn set(&mut self, index: &[usize], v: T) -> Result<()> {
        let k = self.flat_index(index)?;
        self.data[k] = v;
        Ok(())
    }

    /// The same data under another shape with the same number of elements.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the element counts differ.
    pub fn reshape(self, shape: &[usize]) -> Result<Self> {
        let n = numel("Tensor::reshape", shape)?;
        if n != self.data.len() || shape.is_empty() {
            return Err(Error::ShapeMismatch {
                op: "Tensor::reshape",
                expected: self.shape,
                found: shape.to_vec(),
            });
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data: self.data,
        })
    }

    /// Fails unless the shape is exactly `expected`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `op`.
    pub fn expect_shape(&self, op: &'static str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(Error::ShapeMismatch {
                op,
                expected: expected.to_vec(),
                found: self.shape.clone(),
            });
        }
        Ok(())
    }

    /// Fails unless the shape is `[N, sample...]` for some N, with the given sample shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `op` (the expected shape shows `N` as the found batch).
    pub fn expect_sample_shape(&self, op: &'static str, sample: &[usize]) -> Result<()> {
        if self.shape.len() != sample.len() + 1 || &self.shape[1..] != sample {
            let mut expected = vec![self.shape.first().copied().unwrap_or(0)];
            expected.extend_from_slice(sample);
            return Err(Error::ShapeMismatch {
                op,
                expected,
                found: self.shape.clone(),
            });
        }
        Ok(())
    }

    /// The first non-finite element, as (flat index, value).
    pub fn first_non_finite(&self) -> Option<(usize, f64)> {
        // `v * 0` is 0 for a finite v and NaN for NaN or +-inf. Summed into 8 independent
        // accumulators per block it is branch-free and vectorizes, so the common all-finite case
        // (every forward pass checks its input and its parameters) costs a fraction of a memory
        // pass; only a block that turns out non-finite is searched element by element.
        const BLOCK: usize = 512;
        for (b, block) in self.data.chunks(BLOCK).enumerate() {
            let mut acc = [T::zero(); 8];
            let mut lanes = block.chunks_exact(8);
            for c in &mut lanes {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += v * T::zero();
                }
            }
            let tail = lanes.remainder().iter().fold(T::zero(), |a, &v| a + v * T::zero());
            let probe = acc.iter().fold(tail, |a, &v| a + v);
            if !probe.is_finite_value()
                && let Some(k) = block.iter().position(|v| !v.is_finite_value())
            {
                let k = b * BLOCK + k;
                return Some((k, self.data[k].as_f64()));
            }
        }
        None
    }

    /// Fails when an element is NaN or infinite, naming its (sample, offset in the sample).
    ///
    /// # Errors
    /// [`Error::NonFinite`] with `index = (sample, offset)`.
    pub fn check_finite(&self, op: &'static str, what: &'static str) -> Result<()> {
        match self.first_non_finite() {
            None => Ok(()),
            Some((k, value)) => {
                let m = self.sample_len().max(1);
                Err(Error::NonFinite {
                    op,
                    what,
                    index: (k / m, k % m),
                    value,
                })
            }
        }
    }

    /// Elementwise map into a new tensor of the same shape.
    pub fn map<U: Real>(&self, f: impl Fn(T) -> U) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    /// Elementwise combination of two tensors of the same shape.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ.
    pub fn zip_map(&self, other: &Tensor<T>, f: impl Fn(T, T) -> T) -> Result<Tensor<T>> {
        other.expect_shape("Tensor::zip_map", &self.shape)?;
        Ok(Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().zip(&other.data).map(|(&a, &b)| f(a, b)).collect(),
        })
    }

    /// Converts every element (e.g. f32 -> f64, or to dual numbers), through `f64`.
    pub fn cast<U: Real>(&self) -> Tensor<U> {
        self.map(|v| U::lit(v.as_f64()))
    }

    /// The batch as an `[N, sample_len]` matrix (copies).
    pub fn to_matrix(&self) -> Matrix<T> {
        Matrix::from_fn(self.batch(), self.sample_len(), |i, j| {
            self.data[i * self.sample_len() + j]
        })
    }

    /// An `[N, D]` tensor from a matrix.
    pub fn from_matrix(m: &Matrix<T>) -> Self {
        Tensor {
            shape: vec![m.rows(), m.cols()],
            data: m.as_slice().to_vec(),
        }
    }

    /// An `[N, D]` tensor from a `nalgebra::DMatrix` (rows are samples).
    pub fn from_nalgebra(m: &nalgebra::DMatrix<T>) -> Self {
        let (r, c) = m.shape();
        Tensor {
            shape: vec![r, c],
            data: (0..r).flat_map(|i| (0..c).map(move |j| m[(i, j)])).collect(),
        }
    }

    /// The `[N, D]` tensor as a `nalgebra::DMatrix` (rows are samples).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the tensor is not of rank 2.
    pub fn to_nalgebra(&self) -> Result<nalgebra::DMatrix<T>> {
        self.expect_rank("Tensor::to_nalgebra", 2)?;
        Ok(nalgebra::DMatrix::from_row_slice(
            self.shape[0],
            self.shape[1],
            &self.data,
        ))
    }

    /// An `[N, D]` tensor from a `faer::Mat` (rows are samples).
    pub fn from_faer(m: &faer::Mat<T>) -> Self {
        let (r, c) = (m.nrows(), m.ncols());
        Tensor {
            shape: vec![r, c],
            data: (0..r).flat_map(|i| (0..c).map(move |j| *m.get(i, j))).collect(),
        }
    }

    /// The `[N, D]` tensor as a `faer::Mat` (rows are samples).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the tensor is not of rank 2.
    pub fn to_faer(&self) -> Result<faer::Mat<T>> {
        self.expect_rank("Tensor::to_faer", 2)?;
        let c = self.shape[1];
        Ok(faer::Mat::from_fn(self.shape[0], c, |i, j| self.data[i * c + j]))
    }

    /// Fails unless the tensor has `rank` axes.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `op`.
    pub fn expect_rank(&self, op: &'static str, rank: usize) -> Result<()> {
        if self.shape.len() != rank {
            return Err(Error::invalid(
                op,
                "tensor",
                format!("expected {rank} axes, found shape {:?}", self.shape),
            ));
        }
        Ok(())
    }

    /// Samples `range` of the batch as a new tensor.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the range exceeds the batch.
    pub fn slice_batch(&self, range: std::ops::Range<usize>) -> Result<Self> {
        if range.start > range.end || range.end > self.batch() {
            return Err(Error::invalid(
                "Tensor::slice_batch",
                "range",
                format!("{range:?} of a batch of {}", self.batch()),
            ));
        }
        let m = self.sample_len();
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Ok(Tensor {
            shape,
            data: self.data[range.start * m..range.end * m].to_vec(),
        })
    }

    /// The samples at `indices`, in that order, as a new tensor.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when an index exceeds the batch.
    pub fn gather_batch(&self, indices: &[usize]) -> Result<Self> {
        let m = self.sample_len();
        let mut data = Vec::with_capacity(indices.len() * m);
        for &i in indices {
            data.extend_from_slice(self.sample(i)?);
        }
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        Ok(Tensor { shape, data })
    }

    /// Stacks tensors with equal sample shapes along the batch axis.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when sample shapes differ; [`Error::Empty`] for no parts.
    pub fn concat_batch(parts: &[Tensor<T>]) -> Result<Self> {
        let first = parts.first().ok_or(Error::Empty {
            op: "Tensor::concat_batch",
            what: "list of tensors",
        })?;
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            p.expect_sample_shape("Tensor::concat_batch", first.sample_shape())?;
            data.extend_from_slice(&p.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.batch()).sum();
        Ok(Tensor { shape, data })
    }
}

impl<T: Real> From<Matrix<T>> for Tensor<T> {
    fn from(m: Matrix<T>) -> Self {
        Tensor::from_matrix(&m)
    }
}
