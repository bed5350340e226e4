//! MADE (Germain, Gregor, Murray, Larochelle, 2015): a masked MLP whose output block for input
//! `i` depends only on the inputs before `i`. It is the conditioner of every autoregressive
//! layer ([`crate::autoregressive`]).
//!
//! # Degrees and masks
//! Input `j` (0-based) has degree `j + 1`. Every hidden unit `k` of every hidden layer has degree
//! `m(k) = (k mod max(1, D - 1)) + min(1, D - 1)`, in `1..=D-1` (all 0 when `D = 1`). Output unit
//! `o = p D + i` (part `p`, element `i`; part-major blocks as in the couplings) has degree
//! `i + 1`. A masked layer keeps the weight from unit `a` of degree `d_a` to unit `b` of degree
//! `d_b` when `d_b >= d_a` (hidden layers) or `d_b > d_a` (the output layer), and zeroes the
//! rest. Every path from input `j` to output block `i` then has non-decreasing degrees ending in
//! a strict increase, so it exists only when `j + 1 < i + 1`: the Jacobian of each output block
//! with respect to the input is **strictly lower triangular**. A test checks this on the exact
//! dual-number Jacobian (zero entries exactly), not only on the masks.
//!
//! The degrees are a function of `D` and the widths alone, so the masks are not stored: the
//! weights are stored whole (PyTorch's `[out, in]` layout) and each pass multiplies them by the
//! mask, as nflows' `MaskedLinear` does; masked entries are ignored and get zero gradient.
//!
//! # Network
//! `h_0 = act(M_0(x) [+ V c])`, `h_l = act(M_l(h_{l-1}))` for the hidden widths, then
//! `residual_blocks` blocks `r <- r + R_2(act(R_1(r)))` (masked, width of the last hidden layer,
//! the same degrees, so the skip connection keeps the ordering), then the masked output layer
//! `y = M_out(r)`. Parameter names: `{l}.weight`, `{l}.bias` for the hidden layers,
//! `blocks.{b}.{0,1}.weight`/`.bias` for the residual blocks, `out.weight`/`out.bias`.
//!
//! **Context.** A conditional MADE (`context_dim > 0`) adds `V c` to the first layer's
//! pre-activation, with an unmasked weight `context.weight` (`[H_0, C]`, no bias): every output
//! may depend on the context. An unconditional MADE has no such tensor, so adding a context
//! never changes the parameter layout of an unconditional model.

use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::{Error, Real, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Activation, Conditioner, Linear};
use crate::bijector::{Cache, InputGrad};
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// The shape of a [`Made`]: hidden widths, optional residual blocks, activation, and whether
/// the output layer starts at zero (so that an autoregressive layer on it starts as the
/// identity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MadeConfig {
    /// Widths of the masked hidden layers, in order (may be empty: one masked linear map).
    pub hidden: Vec<usize>,
    /// Residual blocks after the hidden layers (each two masked layers of the last hidden
    /// width); needs at least one hidden layer.
    #[serde(default)]
    pub residual_blocks: usize,
    /// Activation after every hidden layer and inside the residual blocks.
    pub activation: Activation,
    /// Initialize the output layer (and each block's second layer) to zero.
    pub zero_last: bool,
}

/// `y = x (W * M)^T + b`: a linear layer whose weight is multiplied by a fixed 0/1 mask.
#[derive(Clone, Debug)]
struct MaskedLinear<T: Real> {
    lin: Linear<T>,
    /// `[out, in]`, entries 0 or 1.
    mask: Vec<T>,
}

impl<T: Real> MaskedLinear<T> {
    /// A masked layer from input degrees to output degrees; `strict` for the output layer.
    fn new(in_deg: &[usize], out_deg: &[usize], strict: bool, zero: bool, rng: &mut impl Rng) -> Result<Self> {
        let mut lin = Linear::new(in_deg.len(), out_deg.len(), zero, rng)?;
        let mut mask = Vec::with_capacity(in_deg.len() * out_deg.len());
        for &o in out_deg {
            for &i in in_deg {
                let keep = if strict { o > i } else { o >= i };
                mask.push(if keep { T::one() } else { T::zero() });
            }
        }
        // Masked weights start at zero, so a checkpoint of a fresh model is the masked model.
        for (w, &m) in lin.weight.value.as_mut_slice().iter_mut().zip(&mask) {
            *w *= m;
        }
        Ok(MaskedLinear { lin, mask })
    }

    fn effective(&self) -> Vec<T> {
        self.lin
            .weight
            .values()
            .iter()
            .zip(&self.mask)
            .map(|(&w, &m)| w * m)
            .collect()
    }

    /// `n` rows of `x (W * M)^T + b`.
    fn forward_rows(&self, x: &[T], n: usize, par: Parallelism) -> Result<Vec<T>> {
        let (inp, out) = (self.lin.in_dim(), self.lin.out_dim());
        let mut y = Vec::with_capacity(n * out);
        for _ in 0..n {
            y.extend_from_slice(self.lin.bias.values());
        }
        let w = self.effective();
        gemm(
            T::one(),
            MatSlice::new(x, n, inp)?,
            MatSlice::new(&w, out, inp)?.t(),
            T::one(),
            MatSliceMut::new(&mut y, n, out)?,
            par,
        )?;
        Ok(y)
    }

    /// `dy (W * M)`, the gradient for the input.
    fn input_grad(&self, dy: &[T], n: usize, par: Parallelism) -> Result<Vec<T>> {
        let (inp, out) = (self.lin.in_dim(), self.lin.out_dim());
        let w = self.effective();
        let mut dx = vec![T::zero(); n * inp];
        gemm(
            T::one(),
            MatSlice::new(dy, n, out)?,
            MatSlice::new(&w, out, inp)?,
            T::zero(),
            MatSliceMut::new(&mut dx, n, inp)?,
            par,
        )?;
        Ok(dx)
    }

    /// Adds `(dy^T x) * M` to dW and the column sums of `dy` to db.
    ///
    /// The product is accumulated into dW directly and dW is masked afterwards: a masked entry
    /// of dW is 0 before (every writer of this gradient masks it), so masking the sum gives
    /// `dW + (dy^T x) * M` without a temporary the size of the weight.
    fn accumulate(&mut self, x: &[T], dy: &[T], n: usize, par: Parallelism) -> Result<()> {
        let (inp, out) = (self.lin.in_dim(), self.lin.out_dim());
        let dw = self.lin.weight.grad.as_mut_slice();
        gemm(
            T::one(),
            MatSlice::new(dy, n, out)?.t(),
            MatSlice::new(x, n, inp)?,
            T::one(),
            MatSliceMut::new(dw, out, inp)?,
            par,
        )?;
        for (gw, &m) in dw.iter_mut().zip(&self.mask) {
            *gw *= m;
        }
        let db = self.lin.bias.grad.as_mut_slice();
        for row in dy.chunks_exact(out.max(1)) {
            for (g, &v) in db.iter_mut().zip(row) {
                *g += v;
            }
        }
        Ok(())
    }

    fn cast<U: Real>(&self) -> MaskedLinear<U> {
        MaskedLinear {
            lin: self.lin.cast(),
            mask: self.mask.iter().map(|m| U::lit(m.as_f64())).collect(),
        }
    }
}

/// The masked autoregressive network (see the module documentation): `[N, D]` (and a context
/// `[N, C]` when conditional) to `[N, P * D]`, part-major.
#[derive(Clone, Debug)]
pub struct Made<T: Real> {
    dim: usize,
    parts: usize,
    hidden: Vec<MaskedLinear<T>>,
    blocks: Vec<[MaskedLinear<T>; 2]>,
    out: MaskedLinear<T>,
    /// `[H_0, C]` (or `[P D, C]` without hidden layers), unmasked, no bias.
    context: Option<Param<T>>,
    activation: Activation,
}

/// A masked layer of a [`Made`], for the deferred weight gradients of its backward walk.
#[derive(Clone, Copy, Debug)]
enum LayerId {
    Hidden(usize),
    Block(usize, usize),
    Out,
    Context,
}

/// The degree of hidden unit `k` for `D` inputs: `(k mod max(1, D - 1)) + min(1, D - 1)`.
pub fn hidden_degree(k: usize, dim: usize) -> usize {
    k % dim.saturating_sub(1).max(1) + dim.saturating_sub(1).min(1)
}

/// Activations a MADE pass keeps for its backward: the input of every masked layer and the
/// post-activation outputs that the activation's backward reads.
pub struct MadeCache<T> {
    n: usize,
    x: Vec<T>,
    context: Option<Vec<T>>,
    /// Post-activation output of each hidden layer.
    hidden: Vec<Vec<T>>,
    /// Per block: its input `r` and the post-activation middle `act(R_1 r)`.
    blocks: Vec<(Vec<T>, Vec<T>)>,
    /// The residual stream after the last block (the output layer's input), when there are blocks.
    stream: Option<Vec<T>>,
    par: Parallelism,
}

impl<T: Real> Made<T> {
    /// A MADE for `dim` inputs returning `parts` values per input (output width `parts * dim`),
    /// with an unmasked context weight when `context_dim > 0`. Weights are initialized as
    /// PyTorch's `nn.Linear` (uniform `+-1/sqrt(fan_in)`), then masked; the output layer (and
    /// each block's second layer) is zero when `config.zero_last`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `dim`, `parts` or a width of 0, or residual blocks
    /// without a hidden layer.
    pub fn new(config: &MadeConfig, dim: usize, parts: usize, context_dim: usize, rng: &mut impl Rng) -> Result<Self> {
        if dim == 0 || parts == 0 || config.hidden.contains(&0) {
            return Err(Error::invalid(
                "Made::new",
                "widths",
                format!(
                    "need positive dimension, parts and hidden widths, found D = {dim}, parts = {parts}, hidden = {:?}",
                    config.hidden
                ),
            ));
        }
        if config.residual_blocks > 0 && config.hidden.is_empty() {
            return Err(Error::invalid(
                "Made::new",
                "residual_blocks",
                "residual blocks need at least one hidden layer",
            ));
        }
        let in_deg: Vec<usize> = (1..=dim).collect();
        let mut prev = in_deg;
        let mut hidden = Vec::with_capacity(config.hidden.len());
        for &w in &config.hidden {
            let deg: Vec<usize> = (0..w).map(|k| hidden_degree(k, dim)).collect();
            hidden.push(MaskedLinear::new(&prev, &deg, false, false, rng)?);
            prev = deg;
        }
        let blocks = (0..config.residual_blocks)
            .map(|_| {
                Ok([
                    MaskedLinear::new(&prev, &prev, false, false, rng)?,
                    MaskedLinear::new(&prev, &prev, false, config.zero_last, rng)?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let out_deg: Vec<usize> = (0..parts * dim).map(|o| o % dim + 1).collect();
        let out = MaskedLinear::new(&prev, &out_deg, true, config.zero_last, rng)?;
        let context = if context_dim > 0 {
            let first = config.hidden.first().copied().unwrap_or(parts * dim);
            let w = Linear::<T>::new(context_dim, first, false, rng)?;
            Some(w.weight)
        } else {
            None
        };
        Ok(Made {
            dim,
            parts,
            hidden,
            blocks,
            out,
            context,
            activation: config.activation,
        })
    }

    /// The input dimension D.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Values per input element in the output.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The context width C (0 for an unconditional MADE).
    pub fn context_dim(&self) -> usize {
        self.context.as_ref().map_or(0, |w| w.value.shape()[1])
    }

    /// The same network in another scalar type.
    pub fn cast<U: Real>(&self) -> Made<U> {
        Made {
            dim: self.dim,
            parts: self.parts,
            hidden: self.hidden.iter().map(MaskedLinear::cast).collect(),
            blocks: self.blocks.iter().map(|[a, b]| [a.cast(), b.cast()]).collect(),
            out: self.out.cast(),
            context: self.context.as_ref().map(Param::cast),
            activation: self.activation,
        }
    }

    /// The context rows a pass reads: `None` for an unconditional MADE (a given context is
    /// ignored), the checked `[N, C]` context otherwise.
    fn context_rows<'a>(&self, op: &'static str, n: usize, cx: Ctx<'a, T>) -> Result<Option<&'a [T]>> {
        super::context_rows("MADE", op, n, self.context_dim(), cx)
    }

    /// Adds `c V^T` to the first layer's pre-activation `y` (`n` rows).
    fn add_context(&self, y: &mut [T], c: &[T], n: usize, par: Parallelism) -> Result<()> {
        let Some(w) = &self.context else { return Ok(()) };
        let (first, cw) = (w.value.shape()[0], w.value.shape()[1]);
        gemm(
            T::one(),
            MatSlice::new(c, n, cw)?,
            MatSlice::new(w.values(), first, cw)?.t(),
            T::one(),
            MatSliceMut::new(y, n, first)?,
            par,
        )
    }

    /// The network on `n` rows, keeping the activations when `keep`.
    fn run(
        &self,
        op: &'static str,
        x: &Tensor<T>,
        cx: Ctx<'_, T>,
        keep: bool,
    ) -> Result<(Tensor<T>, Option<MadeCache<T>>)> {
        x.expect_sample_shape(op, &[self.dim])?;
        let n = x.batch();
        let par = cx.par;
        let c = self.context_rows(op, n, cx)?;
        let mut hidden_out: Vec<Vec<T>> = Vec::new();
        let mut h_tmp: Vec<T> = Vec::new();
        for (l, layer) in self.hidden.iter().enumerate() {
            let input: &[T] = match (l, keep) {
                (0, _) => x.as_slice(),
                (_, true) => &hidden_out[l - 1],
                (_, false) => &h_tmp,
            };
            let mut y = layer.forward_rows(input, n, par)?;
            if l == 0
                && let Some(c) = c
            {
                self.add_context(&mut y, c, n, par)?;
            }
            self.activation.apply(&mut y);
            if keep {
                hidden_out.push(y);
            } else {
                h_tmp = y;
            }
        }
        let mut block_io = Vec::new();
        let mut stream = None;
        if !self.blocks.is_empty() {
            let mut r = if keep {
                hidden_out.last().cloned().unwrap_or_default()
            } else {
                std::mem::take(&mut h_tmp)
            };
            for [r1, r2] in &self.blocks {
                let mut mid = r1.forward_rows(&r, n, par)?;
                self.activation.apply(&mut mid);
                let t = r2.forward_rows(&mid, n, par)?;
                let next: Vec<T> = r.iter().zip(&t).map(|(&a, &b)| a + b).collect();
                if keep {
                    block_io.push((std::mem::replace(&mut r, next), mid));
                } else {
                    r = next;
                }
            }
            stream = Some(r);
        }
        let out_in: &[T] = match (&stream, keep) {
            (Some(r), _) => r,
            (None, _) if self.hidden.is_empty() => x.as_slice(),
            (None, true) => &hidden_out[self.hidden.len() - 1],
            (None, false) => &h_tmp,
        };
        let mut y = self.out.forward_rows(out_in, n, par)?;
        if self.hidden.is_empty()
            && let Some(c) = c
        {
            self.add_context(&mut y, c, n, par)?;
        }
        let cache = keep.then(|| MadeCache {
            n,
            x: x.as_slice().to_vec(),
            context: c.map(<[T]>::to_vec),
            hidden: hidden_out,
            blocks: block_io,
            stream,
            par,
        });
        Ok((Tensor::new(&[n, self.parts * self.dim], y)?, cache))
    }

    /// Backpropagates `dy` through a cached pass, adding dL/dtheta into the parameters'
    /// gradients; returns dL/dx and dL/dcontext (for a conditional MADE).
    ///
    /// # Errors
    /// A `dy` of the wrong length.
    pub fn backward_cached(&mut self, c: &MadeCache<T>, dy: &[T]) -> Result<(Vec<T>, Option<Vec<T>>)> {
        let (dx, dc, pending) = self.backprop(c, dy, true)?;
        for (id, input, g) in pending {
            let layer = match id {
                LayerId::Hidden(l) => &mut self.hidden[l],
                LayerId::Block(b, j) => &mut self.blocks[b][j],
                LayerId::Out => &mut self.out,
                LayerId::Context => {
                    if let Some(w) = &mut self.context {
                        let (first, cw) = (w.value.shape()[0], w.value.shape()[1]);
                        let mut gw = vec![T::zero(); first * cw];
                        gemm(
                            T::one(),
                            MatSlice::new(&g, c.n, first)?.t(),
                            MatSlice::new(input, c.n, cw)?,
                            T::zero(),
                            MatSliceMut::new(&mut gw, first, cw)?,
                            c.par,
                        )?;
                        w.accumulate(&gw);
                    }
                    continue;
                }
            };
            layer.accumulate(input, &g, c.n, c.par)?;
        }
        Ok((dx, dc))
    }

    /// The input-only vector-Jacobian product of a cached pass: dL/dx and dL/dcontext for
    /// `dL/dy = dy`, leaving every parameter gradient untouched.
    ///
    /// # Errors
    /// A `dy` of the wrong length.
    pub fn input_vjp(&self, c: &MadeCache<T>, dy: &[T]) -> Result<(Vec<T>, Option<Vec<T>>)> {
        let (dx, dc, _) = self.backprop(c, dy, false)?;
        Ok((dx, dc))
    }

    /// The backward walk: dL/dx, dL/dcontext and, when `params`, each layer's (input, dL/dout)
    /// for the weight gradients.
    #[allow(clippy::type_complexity)]
    fn backprop<'c>(
        &self,
        c: &'c MadeCache<T>,
        dy: &[T],
        params: bool,
    ) -> Result<(Vec<T>, Option<Vec<T>>, Vec<(LayerId, &'c [T], Vec<T>)>)> {
        let n = c.n;
        if dy.len() != n * self.parts * self.dim {
            return Err(Error::LengthMismatch {
                op: "Made::backward",
                what: "dy",
                expected: n * self.parts * self.dim,
                found: dy.len(),
            });
        }
        let par = c.par;
        let mut pending = Vec::new();
        let out_in: &[T] = match (&c.stream, c.hidden.last()) {
            (Some(r), _) => r,
            (None, Some(h)) => h,
            (None, None) => &c.x,
        };
        let mut g = self.out.input_grad(dy, n, par)?;
        if params {
            pending.push((LayerId::Out, out_in, dy.to_vec()));
        }
        // dL/d(first layer's pre-activation), which the context weight receives.
        let mut first_pre: Option<Vec<T>> = if self.hidden.is_empty() {
            Some(dy.to_vec())
        } else {
            None
        };
        for (b, (r, mid)) in c.blocks.iter().enumerate().rev() {
            let [r1, r2] = &self.blocks[b];
            // r_next = r + R_2(act(R_1 r)): g reaches r directly and through the branch.
            let mut gm = r2.input_grad(&g, n, par)?;
            if params {
                pending.push((LayerId::Block(b, 1), mid.as_slice(), g.clone()));
            }
            self.activation.backward_in_place(mid, &mut gm);
            let gr = r1.input_grad(&gm, n, par)?;
            if params {
                pending.push((LayerId::Block(b, 0), r.as_slice(), gm));
            }
            g.iter_mut().zip(&gr).for_each(|(a, &b)| *a += b);
        }
        for l in (0..self.hidden.len()).rev() {
            // g is dL/d(post-activation of hidden layer l).
            self.activation.backward_in_place(&c.hidden[l], &mut g);
            let input: &[T] = if l == 0 { &c.x } else { &c.hidden[l - 1] };
            let gi = self.hidden[l].input_grad(&g, n, par)?;
            let pre = std::mem::replace(&mut g, gi);
            if l == 0 && self.context.is_some() {
                first_pre = Some(pre.clone());
            }
            if params {
                pending.push((LayerId::Hidden(l), input, pre));
            }
        }
        let dcontext = match (&self.context, &c.context, first_pre) {
            (Some(w), Some(ctx), Some(gp)) => {
                let (first, cw) = (w.value.shape()[0], w.value.shape()[1]);
                let mut dc = vec![T::zero(); n * cw];
                gemm(
                    T::one(),
                    MatSlice::new(&gp, n, first)?,
                    MatSlice::new(w.values(), first, cw)?,
                    T::zero(),
                    MatSliceMut::new(&mut dc, n, cw)?,
                    par,
                )?;
                if params {
                    pending.push((LayerId::Context, ctx.as_slice(), gp));
                }
                Some(dc)
            }
            _ => None,
        };
        Ok((g, dcontext, pending))
    }

    /// The forward pass with its cache (for layers that backpropagate through one pass several
    /// times, see [`Made::backward_cached`]).
    ///
    /// # Errors
    /// A wrong input shape; a missing or misshapen context for a conditional MADE.
    pub fn forward_cached(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, MadeCache<T>)> {
        let (y, c) = self.run("Made::forward_train", x, cx, true)?;
        let c = c.unwrap_or_else(|| unreachable!("invariant: keep = true returns a cache"));
        Ok((y, c))
    }
}

impl<T: Real> Params<T> for Made<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        for (l, layer) in self.hidden.iter().enumerate() {
            layer.lin.visit(&join(prefix, &l.to_string()), f);
        }
        for (b, [r1, r2]) in self.blocks.iter().enumerate() {
            let p = join(prefix, &format!("blocks.{b}"));
            r1.lin.visit(&join(&p, "0"), f);
            r2.lin.visit(&join(&p, "1"), f);
        }
        self.out.lin.visit(&join(prefix, "out"), f);
        if let Some(w) = &self.context {
            f(&join(prefix, "context.weight"), w);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        for (l, layer) in self.hidden.iter_mut().enumerate() {
            layer.lin.visit_mut(&join(prefix, &l.to_string()), f);
        }
        for (b, [r1, r2]) in self.blocks.iter_mut().enumerate() {
            let p = join(prefix, &format!("blocks.{b}"));
            r1.lin.visit_mut(&join(&p, "0"), f);
            r2.lin.visit_mut(&join(&p, "1"), f);
        }
        self.out.lin.visit_mut(&join(prefix, "out"), f);
        if let Some(w) = &mut self.context {
            f(&join(prefix, "context.weight"), w);
        }
    }
}

impl<T: Real> Conditioner<T> for Made<T> {
    fn kind(&self) -> &'static str {
        "Made"
    }

    fn in_shape(&self) -> Vec<usize> {
        vec![self.dim]
    }

    fn out_shape(&self) -> Vec<usize> {
        vec![self.parts * self.dim]
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        Ok(self.run("Made::forward", x, cx, false)?.0)
    }

    fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)> {
        let (y, c) = self.forward_cached(x, cx)?;
        Ok((y, Cache::new("Made", c)))
    }

    fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>> {
        let c: MadeCache<T> = cache.take("Made")?;
        dy.expect_shape("Made::backward", &[c.n, self.parts * self.dim])?;
        let (dx, dc) = self.backward_cached(&c, dy.as_slice())?;
        let context = match dc {
            Some(v) => Some(Tensor::new(&[c.n, v.len() / c.n.max(1)], v)?),
            None => None,
        };
        Ok(InputGrad {
            x: Tensor::new(&[c.n, self.dim], dx)?,
            context,
        })
    }

    crate::impl_net_cast!();
}
