//! A 2-D convolution with "same" zero padding and stride 1 (PyTorch's
//! `nn.Conv2d(in, out, k, padding=k // 2)` for k = 1 or 3): W is `[out, in, k, k]`, b is `[out]`,
//! inputs and outputs are NCHW.
//!
//! # Formula
//! `y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x[n, c, i + u - p, j + v - p]` with
//! `p = k / 2` and `x` read as 0 outside the image (a cross-correlation, as in PyTorch).
//!
//! It is computed as one matrix product per sample: with `col = im2col(x_n)` the `[in*k*k, H*W]`
//! matrix whose row `(c, u, v)` holds the input shifted by `(u - p, v - p)`,
//! `y_n = W_mat col + b 1^T` where `W_mat` is W read as `[out, in*k*k]` (its row-major layout).
//! A 1x1 convolution needs no im2col: `col = x_n` viewed as `[in, H*W]`. The backward pass is
//! `dW_mat += dy_n col^T`, `db += dy_n 1`, `dx_n = col2im(W_mat^T dy_n)` (col2im adds every
//! shifted row back onto the pixels it was read from).

use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::{Error, Real, Result};
use rand::Rng;

use super::Conditioner;
use crate::bijector::{Cache, InputGrad};
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// `y = conv(x, W) + b` with "same" zero padding, stride 1, square kernels of size 1 or 3, on
/// `[N, in, H, W]` inputs (see the module documentation for the formula). Parameters are named
/// `weight` (`[out, in, k, k]`) and `bias` (`[out]`), as in PyTorch.
#[derive(Clone, Debug)]
pub struct Conv2d<T: Real> {
    /// `[out, in, k, k]`.
    pub weight: Param<T>,
    /// `[out]`.
    pub bias: Param<T>,
    hw: (usize, usize),
}

fn check_len(op: &'static str, what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected != found {
        return Err(Error::LengthMismatch {
            op,
            what,
            expected,
            found,
        });
    }
    Ok(())
}

impl<T: Real> Conv2d<T> {
    /// A convolution from `in_ch` to `out_ch` channels with a `kernel x kernel` kernel (1 or 3) on
    /// images of size `hw = (H, W)`. PyTorch's default initialization: W and b uniform in
    /// `[-1/sqrt(fan_in), 1/sqrt(fan_in)]`, `fan_in = in_ch * kernel^2`; or all zeros when `zero`
    /// (a layer that starts as the constant 0, for couplings that start as the identity).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a kernel other than 1 or 3, or a zero channel count or
    /// image size.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        hw: (usize, usize),
        zero: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if kernel != 1 && kernel != 3 {
            return Err(Error::invalid(
                "Conv2d::new",
                "kernel",
                format!("supported kernels are 1 and 3, found {kernel}"),
            ));
        }
        if in_ch == 0 || out_ch == 0 || hw.0 == 0 || hw.1 == 0 {
            return Err(Error::invalid(
                "Conv2d::new",
                "shape",
                format!("needs positive channels and image size, found in {in_ch}, out {out_ch}, (H, W) {hw:?}"),
            ));
        }
        let bound = 1.0 / ((in_ch * kernel * kernel) as f64).sqrt();
        let mut draw = |_| {
            if zero {
                T::zero()
            } else {
                T::lit(rng.random_range(-bound..=bound))
            }
        };
        let weight = Tensor::from_fn(&[out_ch, in_ch, kernel, kernel], &mut draw)?;
        let bias = Tensor::from_fn(&[out_ch], &mut draw)?;
        Ok(Conv2d {
            weight: Param::trainable(weight),
            bias: Param::trainable(bias),
            hw,
        })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.value.shape()[1]
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.value.shape()[0]
    }

    /// The kernel size k (1 or 3).
    pub fn kernel_size(&self) -> usize {
        self.weight.value.shape()[2]
    }

    /// The image size `(H, W)`.
    pub fn hw(&self) -> (usize, usize) {
        self.hw
    }

    /// Rows of the im2col matrix: `in * k * k`.
    fn col_rows(&self) -> usize {
        self.in_channels() * self.kernel_size() * self.kernel_size()
    }

    /// `col[(c*k + u)*k + v, i*W + j] = x[c, i + u - p, j + v - p]` (0 outside the image), for one
    /// `[in, H, W]` sample. Only called for k = 3.
    fn im2col(&self, x: &[T], col: &mut [T]) {
        let (h, w) = self.hw;
        let k = self.kernel_size();
        let p = k / 2;
        let hw = h * w;
        for (c, xc) in x.chunks_exact(hw).enumerate() {
            for u in 0..k {
                for v in 0..k {
                    let row = &mut col[((c * k + u) * k + v) * hw..][..hw];
                    // Output column j reads input column j + v - p: valid for j in [j0, j1).
                    let j0 = p.saturating_sub(v);
                    let j1 = (w + p).saturating_sub(v).min(w);
                    for i in 0..h {
                        let out = &mut row[i * w..(i + 1) * w];
                        let si = i + u;
                        if si < p || si - p >= h || j0 >= j1 {
                            out.iter_mut().for_each(|e| *e = T::zero());
                            continue;
                        }
                        let src = &xc[(si - p) * w..(si - p + 1) * w];
                        out[..j0].iter_mut().for_each(|e| *e = T::zero());
                        out[j0..j1].copy_from_slice(&src[j0 + v - p..j1 + v - p]);
                        out[j1..].iter_mut().for_each(|e| *e = T::zero());
                    }
                }
            }
        }
    }

    /// The adjoint of [`Conv2d::im2col`]: `dx[c, i + u - p, j + v - p] += dcol[(c*k + u)*k + v, i*W + j]`.
    fn col2im_add(&self, dcol: &[T], dx: &mut [T]) {
        let (h, w) = self.hw;
        let k = self.kernel_size();
        let p = k / 2;
        let hw = h * w;
        for (c, dxc) in dx.chunks_exact_mut(hw).enumerate() {
            for u in 0..k {
                for v in 0..k {
                    let row = &dcol[((c * k + u) * k + v) * hw..][..hw];
                    let j0 = p.saturating_sub(v);
                    let j1 = (w + p).saturating_sub(v).min(w);
                    if j0 >= j1 {
                        continue;
                    }
                    for i in 0..h {
                        let si = i + u;
                        if si < p || si - p >= h {
                            continue;
                        }
                        let dst = &mut dxc[(si - p) * w + j0 + v - p..(si - p) * w + j1 + v - p];
                        for (d, &g) in dst.iter_mut().zip(&row[i * w + j0..i * w + j1]) {
                            *d += g;
                        }
                    }
                }
            }
        }
    }

    /// `y = conv(x, W) + b` for `n` samples of `x` (NCHW, `n * in * H * W` long); returns the
    /// `n * out * H * W` outputs, NCHW.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `x` does not hold `n` samples.
    pub fn forward_batch(&self, x: &[T], n: usize, par: Parallelism) -> Result<Vec<T>> {
        let (h, w) = self.hw;
        let hw = h * w;
        let (cin, cout, k) = (self.in_channels(), self.out_channels(), self.kernel_size());
        check_len("Conv2d::forward_batch", "input", n * cin * hw, x.len())?;
        let mut y = Vec::with_capacity(n * cout * hw);
        for &b in self.bias.values().iter().cycle().take(n * cout) {
            y.extend(std::iter::repeat_n(b, hw));
        }
        let kk = self.col_rows();
        let wmat = MatSlice::new(self.weight.values(), cout, kk)?;
        let mut col = if k == 1 { Vec::new() } else { vec![T::zero(); kk * hw] };
        for (xs, ys) in x.chunks_exact(cin * hw).zip(y.chunks_exact_mut(cout * hw)) {
            let cols = if k == 1 {
                xs
            } else {
                self.im2col(xs, &mut col);
                &col
            };
            gemm(
                T::one(),
                wmat,
                MatSlice::new(cols, kk, hw)?,
                T::one(),
                MatSliceMut::new(ys, cout, hw)?,
                par,
            )?;
        }
        Ok(y)
    }

    /// Backward for `n` samples: adds `dy_n col_n^T` to dW and the per-channel sums of `dy` to
    /// db; returns `dx = col2im(W_mat^T dy_n)` per sample (the gradient w.r.t. `x`, NCHW) when
    /// `want_dx`. `x` is the forward input, `dy` the gradient w.r.t. the output.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `x` or `dy` does not hold `n` samples.
    pub fn backward_batch(
        &mut self,
        x: &[T],
        dy: &[T],
        n: usize,
        want_dx: bool,
        par: Parallelism,
    ) -> Result<Option<Vec<T>>> {
        let (h, w) = self.hw;
        let hw = h * w;
        let (cin, cout, k) = (self.in_channels(), self.out_channels(), self.kernel_size());
        check_len("Conv2d::backward_batch", "input", n * cin * hw, x.len())?;
        check_len("Conv2d::backward_batch", "output gradient", n * cout * hw, dy.len())?;
        let kk = self.col_rows();
        let mut col = if k == 1 { Vec::new() } else { vec![T::zero(); kk * hw] };
        let mut dcol = if k == 1 || !want_dx {
            Vec::new()
        } else {
            vec![T::zero(); kk * hw]
        };
        let mut dx = if want_dx {
            vec![T::zero(); n * cin * hw]
        } else {
            Vec::new()
        };
        for (s, (xs, dys)) in x.chunks_exact(cin * hw).zip(dy.chunks_exact(cout * hw)).enumerate() {
            let cols = if k == 1 {
                xs
            } else {
                self.im2col(xs, &mut col);
                &col
            };
            let dyv = MatSlice::new(dys, cout, hw)?;
            gemm(
                T::one(),
                dyv,
                MatSlice::new(cols, kk, hw)?.t(),
                T::one(),
                MatSliceMut::new(self.weight.grad.as_mut_slice(), cout, kk)?,
                par,
            )?;
            for (g, row) in self.bias.grad.as_mut_slice().iter_mut().zip(dys.chunks_exact(hw)) {
                *g += row.iter().fold(T::zero(), |a, &v| a + v);
            }
            if want_dx {
                let wt = MatSlice::new(self.weight.values(), cout, kk)?.t();
                let dxs = &mut dx[s * cin * hw..(s + 1) * cin * hw];
                if k == 1 {
                    gemm(T::one(), wt, dyv, T::zero(), MatSliceMut::new(dxs, cin, hw)?, par)?;
                } else {
                    gemm(T::one(), wt, dyv, T::zero(), MatSliceMut::new(&mut dcol, kk, hw)?, par)?;
                    self.col2im_add(&dcol, dxs);
                }
            }
        }
        Ok(want_dx.then_some(dx))
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
    pub fn cast<U: Real>(&self) -> Conv2d<U> {
        Conv2d {
            weight: self.weight.cast(),
            bias: self.bias.cast(),
            hw: self.hw,
        }
    }

    fn sample_in(&self) -> Vec<usize> {
        vec![self.in_channels(), self.hw.0, self.hw.1]
    }

    fn sample_out(&self) -> Vec<usize> {
        vec![self.out_channels(), self.hw.0, self.hw.1]
    }
}

impl<T: Real> Params<T> for Conv2d<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        self.visit(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        self.visit_mut(prefix, f);
    }
}

struct ConvCache<T> {
    x: Vec<T>,
    n: usize,
    par: Parallelism,
}

impl<T: Real> Conditioner<T> for Conv2d<T> {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    fn in_shape(&self) -> Vec<usize> {
        self.sample_in()
    }

    fn out_shape(&self) -> Vec<usize> {
        self.sample_out()
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        x.expect_sample_shape("Conv2d::forward", &self.sample_in())?;
        let n = x.batch();
        let y = self.forward_batch(x.as_slice(), n, cx.par)?;
        let mut shape = vec![n];
        shape.extend(self.sample_out());
        Tensor::new(&shape, y)
    }

    fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)> {
        x.expect_sample_shape("Conv2d::forward_train", &self.sample_in())?;
        let n = x.batch();
        let y = self.forward_batch(x.as_slice(), n, cx.par)?;
        let mut shape = vec![n];
        shape.extend(self.sample_out());
        let cache = ConvCache {
            x: x.as_slice().to_vec(),
            n,
            par: cx.par,
        };
        Ok((Tensor::new(&shape, y)?, Cache::new("Conv2d", cache)))
    }

    fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>> {
        let ConvCache { x, n, par } = cache.take::<ConvCache<T>>("Conv2d")?;
        let mut shape = vec![n];
        shape.extend(self.sample_out());
        dy.expect_shape("Conv2d::backward", &shape)?;
        let dx = self
            .backward_batch(&x, dy.as_slice(), n, true, par)?
            .unwrap_or_else(|| unreachable!("invariant: dx was requested"));
        shape[1] = self.in_channels();
        Ok(InputGrad::input(Tensor::new(&shape, dx)?))
    }

    crate::impl_net_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The direct sum of the formula, for reference.
    fn naive(conv: &Conv2d<f64>, x: &[f64], n: usize) -> Vec<f64> {
        let (h, w) = conv.hw();
        let (ci, co, k) = (conv.in_channels(), conv.out_channels(), conv.kernel_size());
        let p = (k / 2) as isize;
        let wt = conv.weight.values();
        let b = conv.bias.values();
        let mut y = vec![0.0; n * co * h * w];
        for s in 0..n {
            for o in 0..co {
                for i in 0..h {
                    for j in 0..w {
                        let mut acc = b[o];
                        for c in 0..ci {
                            for u in 0..k {
                                for v in 0..k {
                                    let (si, sj) = (i as isize + u as isize - p, j as isize + v as isize - p);
                                    if si < 0 || sj < 0 || si >= h as isize || sj >= w as isize {
                                        continue;
                                    }
                                    let xv = x[((s * ci + c) * h + si as usize) * w + sj as usize];
                                    acc += wt[((o * ci + c) * k + u) * k + v] * xv;
                                }
                            }
                        }
                        y[((s * co + o) * h + i) * w + j] = acc;
                    }
                }
            }
        }
        y
    }

    fn random(len: usize, rng: &mut StdRng) -> Vec<f64> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn matches_direct_convolution() {
        let mut rng = StdRng::seed_from_u64(7);
        for &k in &[1, 3] {
            for &(n, ci, co, h, w) in &[
                (1, 1, 1, 1, 1),
                (2, 1, 2, 1, 5),
                (1, 3, 2, 5, 1),
                (2, 2, 3, 2, 2),
                (3, 3, 4, 3, 5),
                (1, 4, 1, 7, 6),
                (2, 5, 3, 9, 4),
            ] {
                let conv = Conv2d::<f64>::new(ci, co, k, (h, w), false, &mut rng).unwrap();
                let x = random(n * ci * h * w, &mut rng);
                let y = conv.forward_batch(&x, n, Parallelism::Sequential).unwrap();
                let r = naive(&conv, &x, n);
                let err = y.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(err < 1e-13, "k {k}, shape {:?}: error {err}", (n, ci, co, h, w));
            }
        }
    }

    #[test]
    fn backward_is_the_adjoint_of_forward() {
        // <dy, conv(x) - b> = <W, dW> = <x, dx> for the linear map's gradients at dy.
        let mut rng = StdRng::seed_from_u64(8);
        for &k in &[1, 3] {
            for &(n, ci, co, h, w) in &[(1, 1, 1, 1, 1), (2, 2, 3, 3, 4), (1, 3, 2, 5, 2)] {
                let mut conv = Conv2d::<f64>::new(ci, co, k, (h, w), false, &mut rng).unwrap();
                let x = random(n * ci * h * w, &mut rng);
                let dy = random(n * co * h * w, &mut rng);
                let y = conv.forward_batch(&x, n, Parallelism::Sequential).unwrap();
                let dx = conv
                    .backward_batch(&x, &dy, n, true, Parallelism::Sequential)
                    .unwrap()
                    .unwrap();
                let hw = h * w;
                let lhs: f64 = y
                    .iter()
                    .zip(&dy)
                    .enumerate()
                    .map(|(q, (a, g))| (a - conv.bias.values()[(q / hw) % co]) * g)
                    .sum();
                let via_x: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
                let via_w: f64 = conv
                    .weight
                    .values()
                    .iter()
                    .zip(conv.weight.grad.as_slice())
                    .map(|(a, b)| a * b)
                    .sum();
                assert!((lhs - via_x).abs() < 1e-12 && (lhs - via_w).abs() < 1e-12);
                let db: f64 = conv.bias.grad.as_slice().iter().sum();
                assert!((db - dy.iter().sum::<f64>()).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn pytorch_layout_hand_computed() {
        // One input channel 2x2 [[1, 2], [3, 4]], two output channels. Output channel 0 has the
        // 3x3 kernel with a single 1 at (u, v) = (0, 1) (reads the pixel above), bias 0.5; output
        // channel 1 has the kernel 1..=9 in row-major order, bias 0.
        let mut rng = StdRng::seed_from_u64(0);
        let mut conv = Conv2d::<f64>::new(1, 2, 3, (2, 2), true, &mut rng).unwrap();
        let mut wt = vec![0.0; 18];
        wt[1] = 1.0;
        for (q, v) in wt[9..].iter_mut().enumerate() {
            *v = (q + 1) as f64;
        }
        conv.weight.value = Tensor::new(&[2, 1, 3, 3], wt).unwrap();
        conv.bias.value = Tensor::new(&[2], vec![0.5, 0.0]).unwrap();
        let y = conv
            .forward_batch(&[1.0, 2.0, 3.0, 4.0], 1, Parallelism::Sequential)
            .unwrap();
        // Channel 0: x[i - 1, j] + 0.5 -> [[0.5, 0.5], [1.5, 2.5]].
        // Channel 1, pixel (0, 0): kernel entries (1,1)=5, (1,2)=6, (2,1)=8, (2,2)=9 over
        // x(0,0)=1, x(0,1)=2, x(1,0)=3, x(1,1)=4 -> 5 + 12 + 24 + 36 = 77; pixel (0, 1): entries
        // (1,0)=4, (1,1)=5, (2,0)=7, (2,1)=8 over 1, 2, 3, 4 -> 4 + 10 + 21 + 32 = 67; pixel
        // (1, 0): (0,1)=2, (0,2)=3, (1,1)=5, (1,2)=6 -> 2 + 6 + 15 + 24 = 47; pixel (1, 1):
        // (0,0)=1, (0,1)=2, (1,0)=4, (1,1)=5 -> 1 + 4 + 12 + 20 = 37.
        assert_eq!(y, vec![0.5, 0.5, 1.5, 2.5, 77.0, 67.0, 47.0, 37.0]);
    }

    #[test]
    fn pytorch_layout_one_by_one() {
        // W = [[1, 2], [3, 4], [5, 6]] ([out 3, in 2, 1, 1]), b = [0, 1, 2], one pixel x = (1, -1).
        let mut rng = StdRng::seed_from_u64(0);
        let mut conv = Conv2d::<f64>::new(2, 3, 1, (1, 1), true, &mut rng).unwrap();
        conv.weight.value = Tensor::new(&[3, 2, 1, 1], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        conv.bias.value = Tensor::new(&[3], vec![0.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            conv.forward_batch(&[1.0, -1.0], 1, Parallelism::Sequential).unwrap(),
            vec![-1.0, 0.0, 1.0]
        );
    }

    #[test]
    fn zero_init_gives_zero_output() {
        let mut rng = StdRng::seed_from_u64(1);
        for &k in &[1, 3] {
            let conv = Conv2d::<f64>::new(3, 4, k, (3, 5), true, &mut rng).unwrap();
            let x = random(2 * 3 * 15, &mut rng);
            assert!(
                conv.forward_batch(&x, 2, Parallelism::Sequential)
                    .unwrap()
                    .iter()
                    .all(|&v| v == 0.0)
            );
        }
    }

    #[test]
    fn default_init_is_bounded_and_named() {
        let mut rng = StdRng::seed_from_u64(2);
        let conv = Conv2d::<f64>::new(2, 3, 3, (4, 4), false, &mut rng).unwrap();
        let bound = 1.0 / 18f64.sqrt();
        assert!(conv.weight.values().iter().all(|v| v.abs() <= bound));
        assert!(conv.bias.values().iter().all(|v| v.abs() <= bound));
        assert_eq!(conv.weight.value.shape(), &[3, 2, 3, 3]);
        let mut names = Vec::new();
        conv.visit_params("net", &mut |n, _| names.push(n.to_string()));
        assert_eq!(names, ["net.weight", "net.bias"]);
    }

    #[test]
    fn bad_configs_and_shapes_are_errors() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(Conv2d::<f64>::new(1, 1, 2, (3, 3), false, &mut rng).is_err());
        assert!(Conv2d::<f64>::new(1, 1, 5, (3, 3), false, &mut rng).is_err());
        assert!(Conv2d::<f64>::new(0, 1, 3, (3, 3), false, &mut rng).is_err());
        assert!(Conv2d::<f64>::new(1, 0, 3, (3, 3), false, &mut rng).is_err());
        assert!(Conv2d::<f64>::new(1, 1, 3, (0, 3), false, &mut rng).is_err());
        let mut conv = Conv2d::<f64>::new(2, 1, 3, (3, 3), false, &mut rng).unwrap();
        assert!(conv.forward_batch(&[0.0; 17], 1, Parallelism::Sequential).is_err());
        assert!(
            conv.backward_batch(&[0.0; 18], &[0.0; 8], 1, true, Parallelism::Sequential)
                .is_err()
        );
        assert!(conv.forward(&Tensor::zeros(&[1, 2, 3, 4]).unwrap(), Ctx::NONE).is_err());
        assert!(conv.forward(&Tensor::zeros(&[1, 18]).unwrap(), Ctx::NONE).is_err());
        let (_, cache) = conv
            .forward_train(&Tensor::zeros(&[2, 2, 3, 3]).unwrap(), Ctx::NONE)
            .unwrap();
        assert!(conv.backward(cache, &Tensor::zeros(&[1, 1, 3, 3]).unwrap()).is_err());
    }
}
