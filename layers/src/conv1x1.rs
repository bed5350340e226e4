//! Glow's invertible 1x1 convolution, dense ([`Conv1x1`]) and LU-parameterized ([`Conv1x1Lu`]).
//!
//! # Formula
//! A 1x1 convolution mixes the channels of every pixel with one `C x C` matrix W. Forward (data
//! -> latent) on `[N, C, H, W]` (or `[N, C]`, one pixel):
//!
//! `z[n, :, h, w] = W x[n, :, h, w]`,  `log|det dz/dx| = H * W * log|det W|` per sample
//!
//! (the Jacobian of a sample is block diagonal with one W per pixel; forgetting the spatial
//! factor `H * W` is a bug flow libraries have shipped). The inverse is `x = W^-1 z`, log-det
//! `-H * W * log|det W|`. The log-det does not depend on the input.
//!
//! - [`Conv1x1`] stores W itself: its log-det and inverse go through an LU factorization,
//!   O(C^3) per call, computed **in f64** even in an f32 model (the f32 weights are converted
//!   exactly, factored in f64, and the results rounded back once).
//! - [`Conv1x1Lu`] stores Glow's factorization `W = P L (U + diag(sign * exp(log_s)))` with P a
//!   fixed permutation, L unit lower triangular and U strictly upper triangular: the log-det is
//!   `H * W * sum(log_s)`, O(C), and the inverse is two triangular solves, O(C^2) per pixel.
//!
//! Both start from a random rotation (an orthogonal matrix, log-det 0): the Q factor of the QR
//! factorization of a C x C matrix of independent standard normals, with the columns' signs
//! chosen so that R has a positive diagonal (which makes Q Haar-distributed), see
//! [`random_rotation`].

use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::{Error, Lu, Matrix, Real, Result};
use rand::Rng;
use rand_distr::StandardNormal;

use crate::actnorm::channels_and_pixels;
use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::params::{IntBuffer, Param, Params, join};
use crate::tensor::Tensor;

/// A random `c x c` rotation: `Q` of the QR factorization `G = Q R` (faer's Householder QR) of a
/// matrix `G` of independent N(0, 1) entries, with column j of Q multiplied by `sign(R_jj)` so
/// that the result is Haar-distributed on the orthogonal group. Its determinant is +-1.
pub fn random_rotation(c: usize, rng: &mut impl Rng) -> Matrix<f64> {
    let g = faer::Mat::<f64>::from_fn(c, c, |_, _| rng.sample(StandardNormal));
    let qr = g.qr();
    let q = qr.compute_Q();
    let r = qr.R();
    Matrix::from_fn(c, c, |i, j| {
        let s = if *r.get(j, j) < 0.0 { -1.0 } else { 1.0 };
        *q.get(i, j) * s
    })
}

/// `z_n = A x_n` for every sample, with `x_n` read as the row-major `[c, pixels]` block of sample
/// n and `A` a `c x c` view (possibly transposed).
fn mix<T: Real>(a: MatSlice<'_, T>, x: &[T], n: usize, c: usize, pixels: usize, par: Parallelism) -> Result<Vec<T>> {
    let mut z = vec![T::zero(); x.len()];
    if pixels == 1 {
        // Rows are samples: Z = X A^T in one product.
        gemm(
            T::one(),
            MatSlice::new(x, n, c)?,
            a.t(),
            T::zero(),
            MatSliceMut::new(&mut z, n, c)?,
            par,
        )?;
    } else {
        let m = c * pixels;
        for (zs, xs) in z.chunks_exact_mut(m).zip(x.chunks_exact(m)) {
            gemm(
                T::one(),
                a,
                MatSlice::new(xs, c, pixels)?,
                T::zero(),
                MatSliceMut::new(zs, c, pixels)?,
                par,
            )?;
        }
    }
    Ok(z)
}

/// `G = sum_n dz_n x_n^T` (`c x c`), the gradient of `sum <dz, W x>` with respect to W.
fn outer_sum<T: Real>(dz: &[T], x: &[T], n: usize, c: usize, pixels: usize, par: Parallelism) -> Result<Vec<T>> {
    let mut g = vec![T::zero(); c * c];
    if pixels == 1 {
        gemm(
            T::one(),
            MatSlice::new(dz, n, c)?.t(),
            MatSlice::new(x, n, c)?,
            T::zero(),
            MatSliceMut::new(&mut g, c, c)?,
            par,
        )?;
    } else {
        let m = c * pixels;
        for (ds, xs) in dz.chunks_exact(m).zip(x.chunks_exact(m)) {
            gemm(
                T::one(),
                MatSlice::new(ds, c, pixels)?,
                MatSlice::new(xs, c, pixels)?.t(),
                T::one(),
                MatSliceMut::new(&mut g, c, c)?,
                par,
            )?;
        }
    }
    Ok(g)
}

/// The LU factorization of a `c x c` weight, in f64.
fn lu_f64<T: Real>(w: &[T], c: usize) -> Result<Lu<f64>> {
    Lu::factor_in_place(w.iter().map(|v| v.as_f64()).collect(), c, Default::default())
}

/// Fails when the factored matrix is singular, naming the first zero pivot.
fn require_regular(op: &'static str, lu: &Lu<f64>) -> Result<()> {
    match lu.u_diagonal().position(|d| d == 0.0) {
        Some(column) => Err(Error::Singular { op, column }),
        None => Ok(()),
    }
}

/// Checks a weight tensor's shape against `[c, c]`.
fn check_weight_shape<T: Real>(op: &'static str, w: &Tensor<T>, c: usize) -> Result<()> {
    w.expect_shape(op, &[c, c])
}

/// The dense invertible 1x1 convolution `z = W x` per pixel, log-det `H * W * log|det W|` (see
/// the module documentation). Parameter: `weight` `[C, C]`, trainable: PyTorch's
/// `nn.Conv2d(C, C, 1, bias=False).weight` (`[C, C, 1, 1]`) with the two unit axes dropped
/// (`weight.view(C, C)` in PyTorch), row `o` holding the output channel's input weights.
#[derive(Clone, Debug)]
pub struct Conv1x1<T: Real> {
    /// `[C, C]`: `z[o] = sum_c weight[o, c] x[c]`.
    pub weight: Param<T>,
    sample_shape: Vec<usize>,
    channels: usize,
    pixels: usize,
}

struct Conv1x1Cache<T> {
    x: Tensor<T>,
    w: Vec<T>,
    par: Parallelism,
}

impl<T: Real> Conv1x1<T> {
    /// A 1x1 convolution on samples of shape `[C]` or `[C, H, W]`, initialized to a random
    /// rotation ([`random_rotation`]; Glow's initialization).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank or a zero extent.
    pub fn new(sample_shape: &[usize], rng: &mut impl Rng) -> Result<Self> {
        let (c, _) = channels_and_pixels("Conv1x1", sample_shape)?;
        let q = random_rotation(c, rng);
        Self::with_weight(sample_shape, Tensor::new(&[c, c], q.map(T::lit).into_vec())?)
    }

    /// A 1x1 convolution with the given `[C, C]` weight.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad sample shape; [`Error::ShapeMismatch`] for a weight that is
    /// not `[C, C]`. (A singular weight is accepted here and reported by the passes.)
    pub fn with_weight(sample_shape: &[usize], weight: Tensor<T>) -> Result<Self> {
        let (channels, pixels) = channels_and_pixels("Conv1x1", sample_shape)?;
        check_weight_shape("Conv1x1::with_weight", &weight, channels)?;
        Ok(Conv1x1 {
            weight: Param::trainable(weight),
            sample_shape: sample_shape.to_vec(),
            channels,
            pixels,
        })
    }

    /// `(sign, log|det W|)` of the weight, by LU in f64.
    ///
    /// # Errors
    /// [`Error::NonFinite`] for a non-finite weight.
    pub fn log_det_weight(&self) -> Result<exactflow_kernels::LogDet<f64>> {
        Ok(lu_f64(self.weight.values(), self.channels)?.log_det())
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Conv1x1<U> {
        Conv1x1 {
            weight: self.weight.cast(),
            sample_shape: self.sample_shape.clone(),
            channels: self.channels,
            pixels: self.pixels,
        }
    }

    /// `H * W * log|det W|` (from the f64 LU), rounded to `T` once; for the interval type, a
    /// certified enclosure ([`Real::log_abs_det_enclosure`]).
    fn forward_log_det(&self, op: &'static str) -> Result<T> {
        if let Some(enclosure) = T::log_abs_det_enclosure(self.weight.values(), self.channels) {
            return Ok(T::lit(self.pixels as f64) * enclosure?);
        }
        let lu = lu_f64(self.weight.values(), self.channels)?;
        require_regular(op, &lu)?;
        Ok(T::lit(self.pixels as f64 * lu.log_det().log_abs))
    }

    fn apply(&self, x: &Tensor<T>, par: Parallelism) -> Result<Tensor<T>> {
        let c = self.channels;
        let z = mix(
            MatSlice::new(self.weight.values(), c, c)?,
            x.as_slice(),
            x.batch(),
            c,
            self.pixels,
            par,
        )?;
        Tensor::new(x.shape(), z)
    }
}

impl<T: Real> Params<T> for Conv1x1<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "weight"), &self.weight);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
}

impl<T: Real> Bijector<T> for Conv1x1<T> {
    fn kind(&self) -> &'static str {
        "Conv1x1"
    }

    fn constant_log_det(&self) -> bool {
        true
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// `z = W x` per pixel, log-det `H * W * log|det W|`.
    ///
    /// # Errors
    /// Also [`Error::Singular`] when W is singular.
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Conv1x1::forward", x, cx, &self.sample_shape)?;
        let ld = self.forward_log_det("Conv1x1::forward")?;
        Ok((self.apply(x, cx.par)?, vec![ld; x.batch()]))
    }

    /// `x = W^-1 z` per pixel (W^-1 from the LU in f64, rounded to `T`), log-det
    /// `-H * W * log|det W|`.
    ///
    /// # Errors
    /// Also [`Error::Singular`] when W is singular.
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Conv1x1::inverse", z, cx, &self.sample_shape)?;
        if T::ENCLOSURE {
            // W^-1 comes from an f64 LU: rounded back to intervals it would not enclose the exact
            // inverse. Certified evaluation runs the forward direction only.
            return Err(Error::invalid(
                "Conv1x1::inverse",
                "scalar",
                "the dense inverse is computed in f64 and would not enclose the exact one on intervals",
            ));
        }
        let c = self.channels;
        let lu = lu_f64(self.weight.values(), c)?;
        require_regular("Conv1x1::inverse", &lu)?;
        let ld = T::lit(-(self.pixels as f64) * lu.log_det().log_abs);
        let w_inv: Vec<T> = lu.inverse()?.as_slice().iter().map(|&v| T::lit(v)).collect();
        let x = mix(
            MatSlice::new(&w_inv, c, c)?,
            z.as_slice(),
            z.batch(),
            c,
            self.pixels,
            cx.par,
        )?;
        Ok((Tensor::new(z.shape(), x)?, vec![ld; z.batch()]))
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, "Conv1x1::forward_train", x, cx, &self.sample_shape)?;
        let ld = self.forward_log_det("Conv1x1::forward_train")?;
        let z = self.apply(x, cx.par)?;
        let cache = Conv1x1Cache {
            x: x.clone(),
            w: self.weight.values().to_vec(),
            par: cx.par,
        };
        Ok((z, vec![ld; x.batch()], Cache::new("Conv1x1", cache)))
    }

    /// `dL/dx_n = W^T dz_n` per pixel; `dL/dW = sum_{n, pixels} dz x^T + (sum_n dlogdet_n) H W W^-T`
    /// (`d log|det W| / dW = W^-T`, from the f64 LU).
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let Conv1x1Cache { x, w, par } = cache.take::<Conv1x1Cache<T>>("Conv1x1")?;
        check_grads("Conv1x1::backward", dz, dlogdet, x.shape())?;
        let (c, hw, n) = (self.channels, self.pixels, x.batch());
        let mut g = outer_sum(dz.as_slice(), x.as_slice(), n, c, hw, par)?;
        let ld_total = dlogdet.iter().fold(T::zero(), |acc, &v| acc + v);
        if ld_total != T::zero() {
            let inv = lu_f64(&w, c)?.inverse()?;
            let k = ld_total * T::lit(hw as f64);
            for i in 0..c {
                for j in 0..c {
                    // (W^-T)[i, j] = (W^-1)[j, i].
                    g[i * c + j] += k * T::lit(inv[(j, i)]);
                }
            }
        }
        self.weight.accumulate(&g);
        let dx = mix(MatSlice::new(&w, c, c)?.t(), dz.as_slice(), n, c, hw, par)?;
        Ok(InputGrad::input(Tensor::new(dz.shape(), dx)?))
    }

    crate::impl_cast!();
}

/// Glow's LU-parameterized 1x1 convolution: `z = W x` per pixel with
///
/// `W = P L (U + diag(sign * exp(log_s)))`,  `log|det dz/dx| = H * W * sum(log_s)` per sample.
///
/// Parameters (all `[C, C]` or `[C]`):
/// - `lower` (trainable): its strict lower triangle is L below the diagonal (L has a unit
///   diagonal); entries on and above the diagonal are ignored and their gradients stay zero.
/// - `upper` (trainable): its strict upper triangle is U; entries on and below the diagonal are
///   ignored and their gradients stay zero.
/// - `log_s` (trainable): the log of |U's diagonal|.
/// - `sign` (integer buffer): the sign of U's diagonal, each +1 or -1.
/// - `perm` (integer buffer): P as indices, `W[perm[i], :] = (L U')[i, :]` with `U' = U + diag(..)`, i.e.
///   P has its ones at `(perm[i], i)`. This is the row permutation of the kernels' LU (`P_lu A =
///   L U` with row i of `P_lu A` equal to row `perm[i]` of A) and `P = P_lu^T`. Glow's (and
///   PyTorch ports') permutation matrix `w_p` is the `[C, C]` matrix P itself:
///   `w_p = eye(C)[:, perm]` and `perm = w_p.argmax(axis=0)`.
#[derive(Clone, Debug)]
pub struct Conv1x1Lu<T: Real> {
    /// `[C, C]`, strict lower triangle used.
    pub lower: Param<T>,
    /// `[C, C]`, strict upper triangle used.
    pub upper: Param<T>,
    /// `[C]`, log|diagonal of U'|.
    pub log_s: Param<T>,
    /// `[C]`: sign of U's diagonal (+-1).
    pub sign: IntBuffer,
    /// `[C]`: the permutation indices.
    pub perm: IntBuffer,
    sample_shape: Vec<usize>,
    channels: usize,
    pixels: usize,
}

/// The assembled factors of a [`Conv1x1Lu`]: `perm`, unit lower `l` and `u = U + diag(..)`, both
/// row-major `c x c`.
struct LuFactors<T> {
    perm: Vec<usize>,
    l: Vec<T>,
    u: Vec<T>,
}

struct Conv1x1LuCache<T> {
    x: Tensor<T>,
    f: LuFactors<T>,
    w: Vec<T>,
    par: Parallelism,
}

impl<T: Real> Conv1x1Lu<T> {
    /// An LU-parameterized 1x1 convolution on samples of shape `[C]` or `[C, H, W]`, initialized
    /// from the LU factorization of a random rotation (Glow's initialization; see
    /// [`Conv1x1Lu::from_weight`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank or a zero extent.
    pub fn new(sample_shape: &[usize], rng: &mut impl Rng) -> Result<Self> {
        let (c, _) = channels_and_pixels("Conv1x1Lu", sample_shape)?;
        let q = random_rotation(c, rng);
        Self::from_matrix(sample_shape, &q)
    }

    /// The LU parameterization of a given `[C, C]` weight W: the kernels' LU with partial
    /// pivoting `P_lu W = L U0` (in f64) gives `perm = P_lu`'s indices, `lower = L`,
    /// `upper = U0` above the diagonal, `sign = sign(diag U0)`, `log_s = ln|diag U0|`.
    ///
    /// # Errors
    /// As [`Conv1x1Lu::new`]; [`Error::ShapeMismatch`] for a weight that is not `[C, C]`;
    /// [`Error::NonFinite`] or [`Error::Singular`] for a weight that has no such factorization.
    pub fn from_weight(sample_shape: &[usize], weight: &Tensor<T>) -> Result<Self> {
        let (c, _) = channels_and_pixels("Conv1x1Lu", sample_shape)?;
        check_weight_shape("Conv1x1Lu::from_weight", weight, c)?;
        let w = Matrix::new(c, c, weight.as_slice().iter().map(|v| v.as_f64()).collect())?;
        Self::from_matrix(sample_shape, &w)
    }

    fn from_matrix(sample_shape: &[usize], w: &Matrix<f64>) -> Result<Self> {
        let (channels, pixels) = channels_and_pixels("Conv1x1Lu", sample_shape)?;
        let lu = Lu::factor(w)?;
        require_regular("Conv1x1Lu::from_weight", &lu)?;
        let (l, u) = (lu.l(), lu.u());
        let c = channels;
        let lower = Tensor::from_fn(&[c, c], |k| {
            if k / c > k % c {
                T::lit(l[(k / c, k % c)])
            } else {
                T::zero()
            }
        })?;
        let upper = Tensor::from_fn(&[c, c], |k| {
            if k / c < k % c {
                T::lit(u[(k / c, k % c)])
            } else {
                T::zero()
            }
        })?;
        let diag: Vec<f64> = lu.u_diagonal().collect();
        Ok(Conv1x1Lu {
            lower: Param::trainable(lower),
            upper: Param::trainable(upper),
            log_s: Param::trainable(Tensor::from_fn(&[c], |i| T::lit(diag[i].abs().ln()))?),
            sign: IntBuffer::signs(&diag.iter().map(|d| if *d < 0.0 { -1 } else { 1 }).collect::<Vec<_>>())?,
            perm: IntBuffer::permutation(lu.perm())?,
            sample_shape: sample_shape.to_vec(),
            channels,
            pixels,
        })
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Conv1x1Lu<U> {
        Conv1x1Lu {
            lower: self.lower.cast(),
            upper: self.upper.cast(),
            log_s: self.log_s.cast(),
            sign: self.sign.clone(),
            perm: self.perm.clone(),
            sample_shape: self.sample_shape.clone(),
            channels: self.channels,
            pixels: self.pixels,
        }
    }

    /// Assembles L (unit lower) and `U' = U + diag(sign * exp(log_s))` (the integer buffers are
    /// valid by construction).
    fn factors(&self) -> LuFactors<T> {
        let c = self.channels;
        let perm = self.perm.indices();
        let (lo, up) = (self.lower.values(), self.upper.values());
        let ls = self.log_s.values();
        let sg: Vec<T> = self.sign.values().iter().map(|&v| T::lit(v as f64)).collect();
        let mut l = vec![T::zero(); c * c];
        let mut u = vec![T::zero(); c * c];
        for i in 0..c {
            for j in 0..c {
                let k = i * c + j;
                match i.cmp(&j) {
                    std::cmp::Ordering::Greater => l[k] = lo[k],
                    std::cmp::Ordering::Less => u[k] = up[k],
                    std::cmp::Ordering::Equal => {
                        l[k] = T::one();
                        u[k] = sg[i] * ls[i].exp();
                    }
                }
            }
        }
        LuFactors { perm, l, u }
    }

    /// `W = P L U'` from assembled factors: row `perm[i]` of W is row i of `L U'`.
    fn assemble(&self, f: &LuFactors<T>) -> Result<Vec<T>> {
        let c = self.channels;
        let lu = Matrix::new(c, c, f.l.clone())?.matmul(&Matrix::new(c, c, f.u.clone())?)?;
        let mut w = vec![T::zero(); c * c];
        for (i, &p) in f.perm.iter().enumerate() {
            w[p * c..(p + 1) * c].copy_from_slice(&lu.as_slice()[i * c..(i + 1) * c]);
        }
        Ok(w)
    }

    /// The weight `W = P L (U + diag(sign * exp(log_s)))` as a `[C, C]` tensor.
    ///
    /// # Errors
    /// Only on an internal shape inconsistency.
    pub fn weight(&self) -> Result<Tensor<T>> {
        let f = self.factors();
        Tensor::new(&[self.channels, self.channels], self.assemble(&f)?)
    }

    /// `H * W * sum(log_s)`.
    fn log_det(&self) -> T {
        let s = self.log_s.values().iter().fold(T::zero(), |acc, &v| acc + v);
        T::lit(self.pixels as f64) * s
    }

    fn run(&self, op: &'static str, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, LuFactors<T>, Vec<T>)> {
        check_input(self, op, x, cx, &self.sample_shape)?;
        let c = self.channels;
        let f = self.factors();
        let w = self.assemble(&f)?;
        let z = mix(
            MatSlice::new(&w, c, c)?,
            x.as_slice(),
            x.batch(),
            c,
            self.pixels,
            cx.par,
        )?;
        Ok((Tensor::new(x.shape(), z)?, f, w))
    }
}

impl<T: Real> Params<T> for Conv1x1Lu<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "lower"), &self.lower);
        f(&join(prefix, "upper"), &self.upper);
        f(&join(prefix, "log_s"), &self.log_s);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "lower"), &mut self.lower);
        f(&join(prefix, "upper"), &mut self.upper);
        f(&join(prefix, "log_s"), &mut self.log_s);
    }

    fn visit_int(&self, prefix: &str, f: &mut dyn FnMut(&str, &IntBuffer)) {
        f(&join(prefix, "sign"), &self.sign);
        f(&join(prefix, "perm"), &self.perm);
    }

    fn visit_int_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut IntBuffer)) {
        f(&join(prefix, "sign"), &mut self.sign);
        f(&join(prefix, "perm"), &mut self.perm);
    }
}

impl<T: Real> Bijector<T> for Conv1x1Lu<T> {
    fn kind(&self) -> &'static str {
        "Conv1x1Lu"
    }

    fn constant_log_det(&self) -> bool {
        true
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// `z = P L U' x` per pixel, log-det `H * W * sum(log_s)`.
    ///
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        let (z, _, _) = self.run("Conv1x1Lu::forward", x, cx)?;
        Ok((z, vec![self.log_det(); x.batch()]))
    }

    /// `x = U'^-1 L^-1 P^T z` per pixel (a gather and two triangular solves), log-det
    /// `-H * W * sum(log_s)`.
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Conv1x1Lu::inverse", z, cx, &self.sample_shape)?;
        let LuFactors { perm, l, u } = self.factors();
        let (c, hw) = (self.channels, self.pixels);
        let m = c * hw;
        let mut x = z.zeros_like();
        let mut v = vec![T::zero(); m];
        for (xs, zs) in x.as_mut_slice().chunks_exact_mut(m).zip(z.as_slice().chunks_exact(m)) {
            // (P^T z)[i] = z[perm[i]], then L v = P^T z by forward substitution (unit diagonal).
            for i in 0..c {
                let (done, rest) = v.split_at_mut(i * hw);
                let vi = &mut rest[..hw];
                vi.copy_from_slice(&zs[perm[i] * hw..(perm[i] + 1) * hw]);
                for j in 0..i {
                    let lij = l[i * c + j];
                    for (a, &b) in vi.iter_mut().zip(&done[j * hw..(j + 1) * hw]) {
                        *a -= lij * b;
                    }
                }
            }
            // U' x = v by back substitution.
            for i in (0..c).rev() {
                let (head, solved) = xs.split_at_mut((i + 1) * hw);
                let xi = &mut head[i * hw..];
                xi.copy_from_slice(&v[i * hw..(i + 1) * hw]);
                for j in i + 1..c {
                    let uij = u[i * c + j];
                    let xj = &solved[(j - i - 1) * hw..(j - i) * hw];
                    for (a, &b) in xi.iter_mut().zip(xj) {
                        *a -= uij * b;
                    }
                }
                let d = u[i * c + i];
                xi.iter_mut().for_each(|a| *a /= d);
            }
        }
        Ok((x, vec![-self.log_det(); z.batch()]))
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        let (z, f, w) = self.run("Conv1x1Lu::forward_train", x, cx)?;
        let cache = Conv1x1LuCache {
            x: x.clone(),
            f,
            w,
            par: cx.par,
        };
        Ok((z, vec![self.log_det(); x.batch()], Cache::new("Conv1x1Lu", cache)))
    }

    /// With `G = dL/dW = sum_{n, pixels} dz x^T` and `W = P M`, `M = L U'`: `dL/dM = P^T G`,
    /// `dL/dL = (P^T G) U'^T` (strict lower part to `lower`), `dL/dU' = L^T (P^T G)` (strict upper
    /// part to `upper`), `dL/dlog_s_c = (dL/dU')_cc U'_cc + H * W * sum_n dlogdet_n`;
    /// `dL/dx_n = W^T dz_n` per pixel.
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let Conv1x1LuCache { x, f, w, par } = cache.take::<Conv1x1LuCache<T>>("Conv1x1Lu")?;
        check_grads("Conv1x1Lu::backward", dz, dlogdet, x.shape())?;
        let (c, hw, n) = (self.channels, self.pixels, x.batch());
        let g = outer_sum(dz.as_slice(), x.as_slice(), n, c, hw, par)?;
        // (P^T G)[i, :] = G[perm[i], :].
        let ptg = Matrix::from_fn(c, c, |i, j| g[f.perm[i] * c + j]);
        let l = Matrix::new(c, c, f.l)?;
        let u = Matrix::new(c, c, f.u)?;
        let dl = ptg.matmul(&u.transpose())?;
        let du = l.transpose().matmul(&ptg)?;
        let ld_total = dlogdet.iter().fold(T::zero(), |acc, &v| acc + v) * T::lit(hw as f64);
        let dlower: Vec<T> = (0..c * c)
            .map(|k| if k / c > k % c { dl.as_slice()[k] } else { T::zero() })
            .collect();
        let dupper: Vec<T> = (0..c * c)
            .map(|k| if k / c < k % c { du.as_slice()[k] } else { T::zero() })
            .collect();
        let dlog_s: Vec<T> = (0..c).map(|i| du[(i, i)] * u[(i, i)] + ld_total).collect();
        self.lower.accumulate(&dlower);
        self.upper.accumulate(&dupper);
        self.log_s.accumulate(&dlog_s);
        let dx = mix(MatSlice::new(&w, c, c)?.t(), dz.as_slice(), n, c, hw, par)?;
        Ok(InputGrad::input(Tensor::new(dz.shape(), dx)?))
    }

    crate::impl_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactflow_kernels::log_det;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn max_abs(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn random_rotation_is_orthogonal() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for c in [1, 2, 3, 7] {
            let q = random_rotation(c, &mut rng);
            let qtq = q.transpose().matmul(&q).unwrap();
            assert!(max_abs(qtq.as_slice(), Matrix::<f64>::identity(c).as_slice()) < 1e-14);
        }
    }

    #[test]
    fn dense_log_det_is_pixels_times_log_det_of_weight() {
        let w = Tensor::new(&[3, 3], vec![2.0, 1.0, 0.0, 0.5, -3.0, 1.0, 0.0, 1.0, 4.0]).unwrap();
        let conv = Conv1x1::<f64>::with_weight(&[3, 2, 5], w.clone()).unwrap();
        let (_, ld) = conv.forward(&Tensor::zeros(&[2, 3, 2, 5]).unwrap(), Ctx::NONE).unwrap();
        let m = Matrix::new(3, 3, w.into_vec()).unwrap();
        let expected = 10.0 * log_det(&m).unwrap().log_abs;
        // det = 2 (-12 - 1) - 1 (2 - 0) = -28.
        assert!((expected - 10.0 * 28f64.ln()).abs() < 1e-12);
        assert!(ld.iter().all(|&l| (l - expected).abs() < 1e-12), "{ld:?} vs {expected}");
        // z[:, :, h, w] = W x[:, :, h, w] at one pixel.
        let mut x = Tensor::zeros(&[1, 3, 2, 5]).unwrap();
        for (ch, v) in [1.0, -1.0, 2.0].into_iter().enumerate() {
            x.set(&[0, ch, 1, 3], v).unwrap();
        }
        let (z, _) = conv.forward(&x, Ctx::NONE).unwrap();
        let got: Vec<f64> = (0..3).map(|ch| z.get(&[0, ch, 1, 3]).unwrap()).collect();
        assert_eq!(got, vec![1.0, 5.5, 7.0]);
        assert_eq!(z.as_slice().iter().filter(|v| **v != 0.0).count(), 3);
    }

    #[test]
    fn f32_log_det_is_computed_in_f64() {
        // The f32 weights are converted exactly, factored in f64 and the log-det rounded once.
        let w = Tensor::from_fn(&[5, 5], |k| {
            ((k * 7 % 13) as f32 - 6.0) / 7.0 + if k % 6 == 0 { 2.0 } else { 0.0 }
        })
        .unwrap();
        let conv = Conv1x1::<f32>::with_weight(&[5, 3, 1], w.clone()).unwrap();
        let (_, ld) = conv.forward(&Tensor::zeros(&[1, 5, 3, 1]).unwrap(), Ctx::NONE).unwrap();
        let m = Matrix::new(5, 5, w.as_slice().iter().map(|&v| v as f64).collect()).unwrap();
        assert_eq!(ld[0], (3.0 * log_det(&m).unwrap().log_abs) as f32);
    }

    #[test]
    fn singular_weight_is_an_error() {
        let w = Tensor::new(&[2, 2], vec![1.0, 2.0, 2.0, 4.0]).unwrap();
        let conv = Conv1x1::<f64>::with_weight(&[2], w.clone()).unwrap();
        let x = Tensor::zeros(&[1, 2]).unwrap();
        assert!(matches!(conv.forward(&x, Ctx::NONE), Err(Error::Singular { .. })));
        assert!(matches!(conv.inverse(&x, Ctx::NONE), Err(Error::Singular { .. })));
        assert!(Conv1x1Lu::<f64>::from_weight(&[2], &w).is_err());
        assert!(Conv1x1::<f64>::with_weight(&[3], w).is_err());
    }

    #[test]
    fn lu_weight_reconstruction() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let c = 4;
        let q = random_rotation(c, &mut rng);
        let layer =
            Conv1x1Lu::<f64>::from_weight(&[c, 2, 2], &Tensor::new(&[c, c], q.as_slice().to_vec()).unwrap()).unwrap();
        // From the initialization: W = Q.
        assert!(max_abs(layer.weight().unwrap().as_slice(), q.as_slice()) < 1e-14);
        // Glow's formula with an explicit permutation matrix P (ones at (perm[i], i)), after
        // moving every parameter away from the initialization.
        let mut layer = layer;
        for (k, v) in layer.lower.value.as_mut_slice().iter_mut().enumerate() {
            *v += 0.1 * (k as f64).sin();
        }
        for (k, v) in layer.upper.value.as_mut_slice().iter_mut().enumerate() {
            *v -= 0.2 * (k as f64).cos();
        }
        layer.log_s.value.as_mut_slice()[1] += 0.3;
        let perm = layer.perm.indices();
        let p = Matrix::from_fn(c, c, |i, j| if perm[j] == i { 1.0 } else { 0.0 });
        let (lo, up) = (layer.lower.values(), layer.upper.values());
        let l = Matrix::from_fn(c, c, |i, j| match i.cmp(&j) {
            std::cmp::Ordering::Greater => lo[i * c + j],
            std::cmp::Ordering::Equal => 1.0,
            std::cmp::Ordering::Less => 0.0,
        });
        let u = Matrix::from_fn(c, c, |i, j| match i.cmp(&j) {
            std::cmp::Ordering::Less => up[i * c + j],
            std::cmp::Ordering::Equal => layer.sign.values()[i] as f64 * layer.log_s.values()[i].exp(),
            std::cmp::Ordering::Greater => 0.0,
        });
        let expected = p.matmul(&l).unwrap().matmul(&u).unwrap();
        let w = layer.weight().unwrap();
        assert!(max_abs(w.as_slice(), expected.as_slice()) < 1e-14);
        // Its log-det: h w sum(log_s) = h w log|det W|.
        let (_, ld) = layer
            .forward(&Tensor::zeros(&[1, c, 2, 2]).unwrap(), Ctx::NONE)
            .unwrap();
        let dense = 4.0 * log_det(&expected).unwrap().log_abs;
        assert!((ld[0] - dense).abs() < 1e-12, "{} vs {dense}", ld[0]);
        // The dense layer with the same W computes the same map.
        let dense_layer = Conv1x1::<f64>::with_weight(&[c, 2, 2], w).unwrap();
        let x = Tensor::from_fn(&[2, c, 2, 2], |k| (k as f64 * 0.37).sin()).unwrap();
        let (z1, _) = layer.forward(&x, Ctx::NONE).unwrap();
        let (z2, _) = dense_layer.forward(&x, Ctx::NONE).unwrap();
        assert!(max_abs(z1.as_slice(), z2.as_slice()) < 1e-14);
        let (x1, _) = layer.inverse(&z1, Ctx::NONE).unwrap();
        assert!(max_abs(x1.as_slice(), x.as_slice()) < 1e-13);
    }

    #[test]
    fn corrupt_lu_buffers_are_errors() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut layer = Conv1x1Lu::<f64>::new(&[3], &mut rng).unwrap();
        let x = Tensor::zeros(&[1, 3]).unwrap();
        assert!(layer.forward(&x, Ctx::NONE).is_ok());
        // Corrupt integer state (e.g. from a checkpoint) is refused when it is set and the layer
        // keeps working with its valid state.
        let (sign, perm) = (layer.sign.clone(), layer.perm.clone());
        assert!(layer.sign.set(vec![0, 1, 1]).is_err());
        assert!(layer.sign.set(vec![2, 1, -1]).is_err());
        assert!(layer.perm.set(vec![7, 0, 1]).is_err());
        assert!(layer.perm.set(vec![0, 0, 1]).is_err());
        assert_eq!((&layer.sign, &layer.perm), (&sign, &perm));
        assert!(layer.forward(&x, Ctx::NONE).is_ok() && layer.inverse(&x, Ctx::NONE).is_ok());
    }
}
