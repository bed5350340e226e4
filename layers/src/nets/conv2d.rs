//! A 2-D convolution with "same" zero padding and stride 1 (PyTorch's
//! `nn.Conv2d(in, out, k, padding=k // 2)` for k = 1 or 3): W is `[out, in, k, k]`, b is `[out]`,
//! inputs and outputs are NCHW.
//!
//! # Formula
//! `y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x[n, c, i + u - p, j + v - p]` with
//! `p = k / 2` and `x` read as 0 outside the image (a cross-correlation, as in PyTorch).
//!
//! It is computed as matrix products: with `col = im2col(x_n)` the `[in*k*k, H*W]`
//! matrix whose row `(c, u, v)` holds the input shifted by `(u - p, v - p)`,
//! `y_n = W_mat col + b 1^T` where `W_mat` is W read as `[out, in*k*k]` (its row-major layout).
//! A 1x1 convolution needs no im2col: `col = x_n` viewed as `[in, H*W]`. The backward pass is
//! `dW_mat += dy_n col^T`, `db += dy_n 1`, `dx_n = col2im(W_mat^T dy_n)` (col2im adds every
//! shifted row back onto the pixels it was read from).
//!
//! im2col and col2im are a gather and a scatter through a table of the nine shifts, made once per
//! layer (`shift_table`). The forward pass is one product per sample, in the order of the sums
//! of every earlier version (checkpoints score bit for bit). The backward pass of a 3x3 layer
//! with no more output than input channels works on the output side (`Side::Output`): from the
//! gather of `dy_n` (`9 out` rows), with no im2col of `x_n` and no col2im. The backward pass
//! multiplies several samples at once, side by side in the columns of its products
//! (`[rows, m H W]`), so that products on images of a few pixels are wide enough
//! (`TARGET_COLUMNS`); one sample side by side is the sample itself and is multiplied in place.

use std::sync::OnceLock;

use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::{Error, Real, Result};
use rand::Rng;

use super::Conditioner;
use super::shift_table::{ShiftTable, TAPS};
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
    /// The gather table of a 3x3 kernel on this image size, made on first use.
    table: OnceLock<ShiftTable>,
}

/// Where the backward pass of a 3x3 convolution does its shifting, chosen by size (both give
/// the formula's gradients; they add the same terms in different orders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// The im2col of the input (`9 I` rows of `H W`): `dW += dy_n gather(x_n)^T`,
    /// `dx_n = scatter_add(W_mat^T dy_n)`.
    Input,
    /// The gather of the output's gradient, `g_n = gather(dy_n)` (`9 O` rows; with
    /// `s_{8 - r} = -s_r` it is the transposed convolution's im2col):
    /// `dW[o, c, r] += sum_p g_n[(o, 8 - r), p] x_n[c, p]`,
    /// `dx_n[c, p] = sum_{o, r} W[o, c, 8 - r] g_n[(o, r), p]`, with no im2col of `x_n` and no
    /// col2im. Per sample the input side moves `2 x 9 I` values, the output side `9 O`: it is
    /// chosen for `O <= I` (a coupling network's last convolution; the ResNet's `I = O` blocks,
    /// measured 11% faster multi-scale RealNVP training on digit images than the input side).
    Output,
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

/// Columns (samples times pixels) a backward matrix product should have: the backward pass
/// multiplies `ceil(64 / (H W))` samples at once, since on the digit flows' tiny images (4 and
/// 16 pixels) one product per sample is too narrow for the matrix kernels to run at speed.
/// Measured on Glow and multi-scale RealNVP on digit images (f32, one thread, with the forward
/// pass chunked the same way): 64 and 256 columns gave the same throughput, 1024 (or as many
/// samples as [`CHUNK_ELEMENTS`] allows) was slower on the 8x8 images, 16 slower on Glow's 2x2
/// and 4x4 ones.
pub(crate) const TARGET_COLUMNS: usize = 64;

/// The most elements of an operand of one product (1 MiB of f32), whatever [`TARGET_COLUMNS`]
/// asks.
pub(crate) const CHUNK_ELEMENTS: usize = 1 << 18;

/// `dst[c, s H W + q] = src[s, c, q]` for the `m` samples of `src` (NCHW, `C` channels of `hw`
/// pixels): the samples side by side, `[C, m H W]`.
fn to_samples_side_by_side<T: Copy>(src: &[T], channels: usize, hw: usize, dst: &mut [T]) {
    let cols = src.len() / channels;
    for (s, sample) in src.chunks_exact(channels * hw).enumerate() {
        for (row, plane) in dst.chunks_exact_mut(cols).zip(sample.chunks_exact(hw)) {
            row[s * hw..(s + 1) * hw].copy_from_slice(plane);
        }
    }
}

/// `dst[s, c, q] += src[c, s H W + q]`: the inverse layout of [`to_samples_side_by_side`],
/// added.
fn add_from_side_by_side<T: Real>(src: &[T], channels: usize, hw: usize, dst: &mut [T]) {
    let cols = dst.len() / channels;
    for (s, sample) in dst.chunks_exact_mut(channels * hw).enumerate() {
        for (plane, row) in sample.chunks_exact_mut(hw).zip(src.chunks_exact(cols)) {
            for (d, &v) in plane.iter_mut().zip(&row[s * hw..(s + 1) * hw]) {
                *d += v;
            }
        }
    }
}

/// The table in `cell`, made for `hw` if it is not there yet (a function of the field alone, so
/// that the backward pass can hold it while it writes the gradients).
/// `buf` when a chunk's operand was built in it, else the data it would have copied.
fn built_or<'a, T>(built: bool, buf: &'a [T], direct: &'a [T]) -> &'a [T] {
    if built { buf } else { direct }
}

fn table_of(cell: &OnceLock<ShiftTable>, (h, w): (usize, usize)) -> Result<&ShiftTable> {
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    let t = ShiftTable::new(h, w)?;
    Ok(cell.get_or_init(|| t))
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
            table: OnceLock::new(),
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

    /// Which side of its backward products a 3x3 convolution shifts (see [`Side`]): the
    /// output's when it has no more output than input channels, else the input's.
    fn side(&self) -> Side {
        if self.out_channels() <= self.in_channels() {
            Side::Output
        } else {
            Side::Input
        }
    }

    /// The gather table of this image size, built on the first pass that needs it (it is as
    /// large as nine images of one channel, so a layer that is only built allocates nothing).
    fn table(&self) -> Result<&ShiftTable> {
        table_of(&self.table, self.hw)
    }

    /// `y = conv(x, W) + b` for `n` samples of `x` (NCHW, `n * in * H * W` long); returns the
    /// `n * out * H * W` outputs, NCHW.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `x` does not hold `n` samples.
    pub fn forward_batch(&self, x: &[T], n: usize, par: Parallelism) -> Result<Vec<T>> {
        self.forward_per_sample(x, n, par)
    }

    /// Samples per matrix product: enough for [`TARGET_COLUMNS`] columns, as many as keep its
    /// largest operand within [`CHUNK_ELEMENTS`] (at least one).
    fn chunk(&self, side: Side) -> usize {
        let (cin, cout) = (self.in_channels(), self.out_channels());
        let rows = match (self.kernel_size(), side) {
            (1, _) => cin.max(cout),
            (_, Side::Input) => (TAPS * cin).max(cout),
            (_, Side::Output) => cin.max(TAPS * cout),
        };
        let hw = self.hw.0 * self.hw.1;
        TARGET_COLUMNS
            .div_ceil(hw)
            .min(CHUNK_ELEMENTS / (rows * hw).max(1))
            .max(1)
    }

    /// One product per sample, `y_n = W_mat col_n + b 1^T` with the bias as the product's
    /// initial value: the order of the sums of every earlier exactflow, which checkpoints are
    /// scored in bit for bit (`models/tests/checkpoint_compat.rs`). The output side and several
    /// samples per product (as in the backward pass) made Glow's training 20% faster on digit
    /// images, but change the last bits of `log p`.
    fn forward_per_sample(&self, x: &[T], n: usize, par: Parallelism) -> Result<Vec<T>> {
        let (h, w) = self.hw;
        let hw = h * w;
        let (cin, cout, k) = (self.in_channels(), self.out_channels(), self.kernel_size());
        check_len("Conv2d::forward_batch", "input", n * cin * hw, x.len())?;
        let mut y = Vec::with_capacity(n * cout * hw);
        for &b in self.bias.values().iter().cycle().take(n * cout) {
            y.extend(std::iter::repeat_n(b, hw));
        }
        let kk = cin * k * k;
        let wmat = MatSlice::new(self.weight.values(), cout, kk)?;
        let table = if k == 1 { None } else { Some(self.table()?) };
        let samples = |x: &[T], y: &mut [T], par: Parallelism| -> Result<()> {
            // Every entry is written by each gather.
            let mut col = if k == 1 { Vec::new() } else { vec![T::zero(); kk * hw] };
            for (xs, ys) in x.chunks_exact(cin * hw).zip(y.chunks_exact_mut(cout * hw)) {
                let cols = match table {
                    Some(t) => {
                        t.gather(xs, &mut col, hw, 0);
                        &col
                    }
                    None => xs,
                };
                let cv = MatSlice::new(cols, kk, hw)?;
                gemm(T::one(), wmat, cv, T::one(), MatSliceMut::new(ys, cout, hw)?, par)?;
            }
            Ok(())
        };
        let muls = n.saturating_mul(cout).saturating_mul(kk).saturating_mul(hw);
        if par.threads() >= 2 && n >= 2 && muls >= 2 * exactflow_kernels::team::MIN_SPLIT_MULS {
            // Two threads (the most a split uses: `exactflow_kernels::team` has one helper) take
            // half of the samples each, every sample's product whole: the
            // sequential bits, and each core gathers only its own samples' columns (splitting
            // each product instead made multi-scale RealNVP train slower than on one thread).
            let half = n / 2;
            let (x0, x1) = x.split_at(half * cin * hw);
            let (y0, y1) = y.split_at_mut(half * cout * hw);
            let (mut r0, mut r1) = (Ok(()), Ok(()));
            exactflow_kernels::team::join(
                || r0 = samples(x0, y0, Parallelism::Sequential),
                || r1 = samples(x1, y1, Parallelism::Sequential),
            );
            r0.and(r1)?;
        } else {
            samples(x, &mut y, par)?;
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
        let side = self.side();
        self.backward_on(side, self.chunk(side), x, dy, n, want_dx, par)
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_on(
        &mut self,
        side: Side,
        chunk: usize,
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
        for dys in dy.chunks_exact(cout * hw) {
            for (g, row) in self.bias.grad.as_mut_slice().iter_mut().zip(dys.chunks_exact(hw)) {
                *g += row.iter().fold(T::zero(), |a, &v| a + v);
            }
        }
        let mut dx = if want_dx {
            vec![T::zero(); n * cin * hw]
        } else {
            Vec::new()
        };
        let table = if k == 1 {
            None
        } else {
            Some(table_of(&self.table, self.hw)?)
        };
        let side = if k == 1 { None } else { Some(side) };
        let chunk = chunk.clamp(1, n.max(1));
        // Per chunk, with the samples side by side: `d` = dy (1x1, input side) or its gather
        // (output side), `a` = x (1x1, output side) or its im2col (input side); then
        // `G += d a^T` and, for dx, `e = M d` with `M` = W^T (1x1, input side) or the flipped
        // W (output side); `e` goes back to dx as it is (1x1, output side) or by col2im.
        let (d_rows, a_rows, g_rows, g_cols) = match side {
            None => (cout, cin, cout, cin),
            Some(Side::Input) => (cout, TAPS * cin, cout, TAPS * cin),
            Some(Side::Output) => (TAPS * cout, cin, TAPS * cout, cin),
        };
        let e_rows = a_rows;
        let flip = |o: usize, r: usize, c: usize| (o * cin + c) * TAPS + (TAPS - 1 - r);
        // The output side accumulates dW in the flipped layout `[(o, r), c]` (see below).
        let mut flipped_grad = Vec::new();
        let mut wflip = Vec::new();
        if side == Some(Side::Output) {
            // With g = gather(dy_n) ([(o, r), q] = dy_n[o, q + s_r]) and s_{8-r} = -s_r:
            // dW[o, c, r] += sum_p g[(o, 8 - r), p] x_n[c, p] and
            // dx_n[c, p] = sum_{o, r} W[o, c, 8 - r] g[(o, r), p], so neither the input's
            // im2col nor a col2im is needed, only the gather of dy (9 O rows, fewer than 9 I).
            let (gw, wv) = (self.weight.grad.as_slice(), self.weight.values());
            flipped_grad = vec![T::zero(); g_rows * g_cols];
            wflip = vec![T::zero(); cin * TAPS * cout];
            for o in 0..cout {
                for r in 0..TAPS {
                    for c in 0..cin {
                        flipped_grad[(o * TAPS + r) * cin + c] = gw[flip(o, r, c)];
                        wflip[c * TAPS * cout + o * TAPS + r] = wv[flip(o, r, c)];
                    }
                }
            }
        }
        let mop = match side {
            Some(Side::Output) => MatSlice::new(&wflip, cin, TAPS * cout),
            _ => MatSlice::new(self.weight.value.as_slice(), cout, e_rows).map(MatSlice::t),
        }?;
        let dy_of = |start: usize, m: usize| &dy[start * cout * hw..(start + m) * cout * hw];
        let x_of = |start: usize, m: usize| &x[start * cin * hw..(start + m) * cin * hw];
        // The chunk's `d` (dy, or its gather on the output side) is built in `buf`, unless one
        // sample side by side is the sample itself: then it is false and `d` is dy's slice.
        let chunk_d = |start: usize, m: usize, buf: &'_ mut Vec<T>| -> bool {
            let dyc = dy_of(start, m);
            let cols = m * hw;
            buf.resize(d_rows * chunk * hw, T::zero());
            match (side, table) {
                (Some(Side::Output), Some(t)) => {
                    for (s, dys) in dyc.chunks_exact(cout * hw).enumerate() {
                        t.gather(dys, &mut buf[..d_rows * cols], cols, s);
                    }
                }
                _ if m == 1 => return false,
                _ => to_samples_side_by_side(dyc, cout, hw, &mut buf[..d_rows * cols]),
            }
            true
        };
        // The chunk's `a` (x, or its im2col on the input side), the same way.
        let chunk_a = |start: usize, m: usize, buf: &'_ mut Vec<T>| -> bool {
            let xc = x_of(start, m);
            let cols = m * hw;
            buf.resize(a_rows * chunk * hw, T::zero());
            match (side, table) {
                (Some(Side::Input), Some(t)) => {
                    for (s, xs) in xc.chunks_exact(cin * hw).enumerate() {
                        t.gather(xs, &mut buf[..a_rows * cols], cols, s);
                    }
                }
                _ if m == 1 => return false,
                _ => to_samples_side_by_side(xc, cin, hw, &mut buf[..a_rows * cols]),
            }
            true
        };
        // Every product below is whole and sequential, on one thread or two: splitting a
        // convolution's products made multi-scale RealNVP train slower than one thread.
        let whole = Parallelism::Sequential;
        // `G += d a^T` for one chunk.
        let grad_step = |d: &[T], a: &[T], cols: usize, g: &mut [T]| -> Result<()> {
            let dv = MatSlice::new(&d[..d_rows * cols], d_rows, cols)?;
            let at = MatSlice::new(&a[..a_rows * cols], a_rows, cols)?.t();
            gemm(T::one(), dv, at, T::one(), MatSliceMut::new(g, g_rows, g_cols)?, whole)
        };
        // `dx += col2im(M d)` (or its 1x1 and output-side forms) for one chunk of m samples.
        let dx_step = |d: &[T], m: usize, e: &mut [T], dxc: &mut [T]| -> Result<()> {
            let cols = m * hw;
            let dv = MatSlice::new(&d[..d_rows * cols], d_rows, cols)?;
            let e = &mut e[..e_rows * cols];
            match (side, table) {
                (Some(Side::Input), Some(t)) => {
                    gemm(T::one(), mop, dv, T::zero(), MatSliceMut::new(e, e_rows, cols)?, whole)?;
                    for (s, dxs) in dxc.chunks_exact_mut(cin * hw).enumerate() {
                        t.scatter_add(e, cols, s, dxs);
                    }
                }
                _ if m == 1 => gemm(T::one(), mop, dv, T::zero(), MatSliceMut::new(dxc, cin, cols)?, whole)?,
                _ => {
                    gemm(T::one(), mop, dv, T::zero(), MatSliceMut::new(e, e_rows, cols)?, whole)?;
                    add_from_side_by_side(e, cin, hw, dxc);
                }
            }
            Ok(())
        };
        let g: &mut [T] = if side == Some(Side::Output) {
            &mut flipped_grad
        } else {
            self.weight.grad.as_mut_slice()
        };
        let starts = (0..n).step_by(chunk);
        let e_len = if want_dx { e_rows * chunk * hw } else { 0 };
        let muls = n.saturating_mul(d_rows).saturating_mul(a_rows).saturating_mul(hw);
        if par.threads() >= 2 && want_dx && muls >= exactflow_kernels::team::MIN_SPLIT_MULS {
            // Two threads: dW on one, dx on the other, each over all chunks in order, so both
            // get the sequential bits. Each builds its own `d`.
            let (mut rg, mut rx) = (Ok(()), Ok(()));
            exactflow_kernels::team::join(
                || {
                    rg = (|| {
                        let (mut d, mut a) = (Vec::new(), Vec::new());
                        for start in starts.clone() {
                            let m = chunk.min(n - start);
                            let built_d = chunk_d(start, m, &mut d);
                            let built_a = chunk_a(start, m, &mut a);
                            let dv = built_or(built_d, &d, dy_of(start, m));
                            grad_step(dv, built_or(built_a, &a, x_of(start, m)), m * hw, g)?;
                        }
                        Ok(())
                    })()
                },
                || {
                    rx = (|| {
                        let (mut d, mut e) = (Vec::new(), vec![T::zero(); e_len]);
                        for start in starts.clone() {
                            let m = chunk.min(n - start);
                            let built_d = chunk_d(start, m, &mut d);
                            let dxc = &mut dx[start * cin * hw..(start + m) * cin * hw];
                            dx_step(built_or(built_d, &d, dy_of(start, m)), m, &mut e, dxc)?;
                        }
                        Ok(())
                    })()
                },
            );
            rg.and(rx)?;
        } else {
            // One thread, or no dx: each chunk's `d` is built once and serves both products.
            let (mut d, mut a, mut e) = (Vec::new(), Vec::new(), vec![T::zero(); e_len]);
            for start in starts {
                let m = chunk.min(n - start);
                let built_d = chunk_d(start, m, &mut d);
                let built_a = chunk_a(start, m, &mut a);
                let dv = built_or(built_d, &d, dy_of(start, m));
                grad_step(dv, built_or(built_a, &a, x_of(start, m)), m * hw, g)?;
                if want_dx {
                    let dxc = &mut dx[start * cin * hw..(start + m) * cin * hw];
                    dx_step(dv, m, &mut e, dxc)?;
                }
            }
        }
        if side == Some(Side::Output) {
            let gw = self.weight.grad.as_mut_slice();
            for o in 0..cout {
                for r in 0..TAPS {
                    for c in 0..cin {
                        gw[flip(o, r, c)] = flipped_grad[(o * TAPS + r) * cin + c];
                    }
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
            table: self.table.clone(),
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

    const SHAPES: [(usize, usize, usize, usize, usize); 9] = [
        (1, 1, 1, 1, 1),
        (2, 1, 2, 1, 5),
        (1, 3, 2, 5, 1),
        (2, 2, 3, 2, 2),
        (3, 3, 4, 3, 5),
        (1, 4, 1, 7, 6),
        (2, 5, 3, 9, 4),
        (2, 6, 2, 4, 4),
        (2, 3, 8, 8, 8),
    ];

    #[test]
    fn matches_direct_convolution() {
        // Single pixels, rows, columns, odd sizes, and the shapes of the backward tests below
        // (4x4 and 8x8 images, more channels), both kernels: sums of <= 9 * 6 + 1 products of
        // magnitude <= 1, so 1e-13 is ~100 ulps.
        let mut rng = StdRng::seed_from_u64(9);
        for k in [1, 3] {
            for (n, ci, co, h, w) in SHAPES {
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
    fn both_sides_give_the_same_gradients() {
        // The output side's backward (gather of dy, flipped kernel) against the input side's
        // (im2col, col2im), from the same non-zero starting gradients (they accumulate), with
        // several samples per product against one: the
        // same sums in other orders, of <= 9 * 8 * 64 * 3 terms of magnitude <= 1 for dW, so
        // 1e-12 (the adjoint test above pins the input side to the forward map).
        // Chunks of 1, 2 and all samples per product on each side, and for the 1x1 kernel.
        let mut rng = StdRng::seed_from_u64(10);
        for ((n, ci, co, h, w), k, chunk) in SHAPES
            .into_iter()
            .flat_map(|shape| [(1, 1), (1, 2), (3, 1), (3, 2), (3, usize::MAX)].map(|(k, c)| (shape, k, c)))
        {
            for want_dx in [true, false] {
                let mut a = Conv2d::<f64>::new(ci, co, k, (h, w), false, &mut rng).unwrap();
                a.weight.grad = Tensor::new(&[co, ci, k, k], random(co * ci * k * k, &mut rng)).unwrap();
                a.bias.grad = Tensor::new(&[co], random(co, &mut rng)).unwrap();
                let mut b = a.clone();
                let x = random(n * ci * h * w, &mut rng);
                let dy = random(n * co * h * w, &mut rng);
                let par = Parallelism::Sequential;
                // The reference: the input side (the 1x1 kernel: its only path), one sample per
                // product.
                let da = a.backward_on(Side::Input, 1, &x, &dy, n, want_dx, par).unwrap();
                let db = b.backward_on(Side::Output, chunk, &x, &dy, n, want_dx, par).unwrap();
                let close = |p: &[f64], q: &[f64]| p.iter().zip(q).all(|(u, v)| (u - v).abs() < 1e-12);
                assert_eq!(da.is_some(), want_dx);
                assert_eq!(db.is_some(), want_dx);
                if let (Some(da), Some(db)) = (da, db) {
                    assert!(close(&da, &db), "dx, shape {:?}", (n, ci, co, h, w));
                }
                assert!(
                    close(a.weight.grad.as_slice(), b.weight.grad.as_slice()),
                    "dW {:?}",
                    (n, ci, co, h, w)
                );
                assert_eq!(a.bias.grad.as_slice(), b.bias.grad.as_slice());
            }
        }
    }

    /// Two threads split the forward pass by samples and the backward pass into dW and dx, each
    /// with whole products in the one-thread order: the same bits, on both sides, every chunk
    /// size, with and without dx, in f32 and f64.
    #[test]
    fn two_threads_give_the_one_thread_bits() {
        let mut rng = StdRng::seed_from_u64(12);
        // SHAPES stay below the split threshold (they run on one thread); two shapes above it,
        // one with an odd number of samples, split (forward and backward, 3x3 kernels).
        let large = [(8, 16, 16, 8, 8), (5, 8, 24, 6, 6)];
        for (n, ci, co, h, w) in large {
            let hw = h * w;
            let min = exactflow_kernels::team::MIN_SPLIT_MULS;
            // The forward split needs twice the minimum (half for each thread), the backward one.
            assert!(n * co * 9 * ci * hw >= 2 * min);
        }
        for ((n, ci, co, h, w), k, chunk) in SHAPES
            .into_iter()
            .chain(large)
            .flat_map(|shape| [(1, 1), (1, 2), (3, 1), (3, 2), (3, usize::MAX)].map(|(k, c)| (shape, k, c)))
        {
            let conv = Conv2d::<f64>::new(ci, co, k, (h, w), false, &mut rng).unwrap();
            let x = random(n * ci * h * w, &mut rng);
            let dy = random(n * co * h * w, &mut rng);
            let shape = (n, ci, co, h, w, k, chunk);
            same_bits_on_two_threads(&conv, &x, &dy, n, chunk, shape);
            let narrow = |v: &[f64]| v.iter().map(|&u| u as f32).collect::<Vec<f32>>();
            same_bits_on_two_threads(&conv.cast::<f32>(), &narrow(&x), &narrow(&dy), n, chunk, shape);
        }
        // The large shapes really were split: forward and backward each post to the helper
        // (unless another test owns it at that moment, so retry for a while).
        let (n, ci, co, h, w) = large[0];
        let mut conv = Conv2d::<f64>::new(ci, co, 3, (h, w), false, &mut rng).unwrap();
        let x = random(n * ci * h * w, &mut rng);
        let dy = random(n * co * h * w, &mut rng);
        let two = Parallelism::Rayon(2);
        for (what, pass) in [("forward", 0), ("backward", 1)] {
            let (before, start) = (exactflow_kernels::team::posted(), std::time::Instant::now());
            while exactflow_kernels::team::posted() == before && start.elapsed().as_secs() < 30 {
                if pass == 0 {
                    conv.forward_batch(&x, n, two).unwrap();
                } else {
                    conv.backward_batch(&x, &dy, n, true, two).unwrap();
                }
            }
            assert!(
                exactflow_kernels::team::posted() > before,
                "the {what} pass was not split"
            );
        }
    }

    /// The forward pass and every backward variant of `conv` on two threads against one.
    fn same_bits_on_two_threads<T: Real>(
        conv: &Conv2d<T>,
        x: &[T],
        dy: &[T],
        n: usize,
        chunk: usize,
        shape: impl std::fmt::Debug,
    ) {
        let (one, two) = (Parallelism::Sequential, Parallelism::Rayon(2));
        // Widening to f64 is exact, so equal bits there are equal bits in T.
        let bits = |v: &[T]| v.iter().map(|u| u.as_f64().to_bits()).collect::<Vec<_>>();
        let y1 = conv.forward_batch(x, n, one).unwrap();
        let y2 = conv.forward_batch(x, n, two).unwrap();
        assert_eq!(bits(&y2), bits(&y1), "forward {} {shape:?}", T::NAME);
        for side in [Side::Input, Side::Output] {
            for want_dx in [true, false] {
                let (mut a, mut b) = (conv.clone(), conv.clone());
                let da = a.backward_on(side, chunk, x, dy, n, want_dx, one).unwrap();
                let db = b.backward_on(side, chunk, x, dy, n, want_dx, two).unwrap();
                let what = format!("{} {side:?} {shape:?}", T::NAME);
                assert_eq!(da.as_deref().map(bits), db.as_deref().map(bits), "dx {what}");
                assert_eq!(
                    bits(a.weight.grad.as_slice()),
                    bits(b.weight.grad.as_slice()),
                    "dW {what}"
                );
                assert_eq!(bits(a.bias.grad.as_slice()), bits(b.bias.grad.as_slice()), "db {what}");
            }
        }
    }

    #[test]
    fn the_side_follows_the_channel_counts() {
        let mut rng = StdRng::seed_from_u64(11);
        let side = |ci, co| {
            Conv2d::<f64>::new(ci, co, 3, (4, 4), false, &mut StdRng::seed_from_u64(0))
                .unwrap()
                .side()
        };
        assert_eq!(side(64, 4), Side::Output);
        assert_eq!(side(4, 64), Side::Input);
        assert_eq!(side(32, 32), Side::Output);
        // A layer and its cast share the table once it is made, and give the same outputs.
        let conv = Conv2d::<f64>::new(3, 2, 3, (3, 3), false, &mut rng).unwrap();
        let x = random(2 * 27, &mut rng);
        let y = conv.forward_batch(&x, 2, Parallelism::Sequential).unwrap();
        let cast = conv.cast::<f64>();
        assert_eq!(cast.forward_batch(&x, 2, Parallelism::Sequential).unwrap(), y);
        assert!(cast.table.get().is_some());
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
