//! A multilayer perceptron conditioner.
//!
//! **Context.** A conditional MLP (`context_dim = C > 0`) reads `[x, c]`: its first layer's
//! input is the row `x` followed by the context row `c` (`in + C` columns), so `0.weight` is
//! `[H_0, in + C]` with the context's columns last. Its backward returns dL/dc, the last `C`
//! columns of the first layer's input gradient. An unconditional MLP ignores a context.

use exactflow_kernels::gemm::Parallelism;
use exactflow_kernels::{Error, Real, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Activation, Conditioner};
use crate::bijector::{Cache, InputGrad};
use crate::ctx::Ctx;
use crate::nets::linear::Linear;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// The shape of an [`Mlp`]: hidden widths, their activation, and whether the last layer starts
/// at zero (so that a coupling built on it starts as the identity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Widths of the hidden layers, in order (may be empty: a single linear map).
    pub hidden: Vec<usize>,
    /// Activation after every hidden layer (none after the last layer).
    pub activation: Activation,
    /// Initialize the last layer's weights and bias to zero.
    pub zero_last: bool,
}

/// `x -> Linear -> act -> ... -> Linear`, on `[N, in]` inputs. Parameters are named
/// `{i}.weight` (`[out, in]`) and `{i}.bias` for the i-th linear layer, as in a PyTorch
/// `nn.Sequential` of `Linear`s without the activations' indices.
#[derive(Clone, Debug)]
pub struct Mlp<T: Real> {
    layers: Vec<Linear<T>>,
    activation: Activation,
    /// The context width C read after the input (0: unconditional).
    context_dim: usize,
}

impl<T: Real> Mlp<T> {
    /// An MLP from `inp` to `out` features.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero width.
    pub fn new(config: &MlpConfig, inp: usize, out: usize, rng: &mut impl Rng) -> Result<Self> {
        Self::conditional(config, inp, 0, out, rng)
    }

    /// An MLP from `inp` features and a context of `context_dim` features (concatenated after
    /// the input, see the module documentation) to `out` features; `context_dim = 0` is
    /// [`Mlp::new`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero width.
    pub fn conditional(
        config: &MlpConfig,
        inp: usize,
        context_dim: usize,
        out: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let mut widths = vec![inp];
        widths.extend_from_slice(&config.hidden);
        widths.push(out);
        if widths.contains(&0) {
            return Err(Error::invalid(
                "Mlp::new",
                "widths",
                format!("must be positive, found {widths:?}"),
            ));
        }
        // The context's columns follow the input's in the first layer.
        widths[0] = inp.checked_add(context_dim).ok_or_else(|| {
            Error::invalid(
                "Mlp::new",
                "context_dim",
                format!("{inp} + {context_dim} inputs overflow"),
            )
        })?;
        let last = widths.len() - 2;
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear::new(w[0], w[1], config.zero_last && i == last, rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp {
            layers,
            activation: config.activation,
            context_dim,
        })
    }

    /// The context width C (0 for an unconditional MLP).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }

    /// The linear layers, in order.
    pub fn layers(&self) -> &[Linear<T>] {
        &self.layers
    }

    /// The same network in another scalar type.
    pub fn cast<U: Real>(&self) -> Mlp<U> {
        Mlp {
            layers: self.layers.iter().map(Linear::cast).collect(),
            activation: self.activation,
            context_dim: self.context_dim,
        }
    }

    /// The width of `x` (the first layer reads `x` and the context).
    fn x_dim(&self) -> usize {
        self.layers[0].in_dim() - self.context_dim
    }

    /// Checks the input and, for a conditional MLP, returns the first layer's input `[x, c]`.
    fn first_input(&self, op: &'static str, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Option<Vec<T>>> {
        x.expect_sample_shape(op, &[self.x_dim()])?;
        let (n, c) = (x.batch(), self.context_dim);
        let Some(ctx) = super::context_rows("MLP", op, n, c, cx)? else {
            return Ok(None);
        };
        let xd = self.x_dim();
        let mut joined = Vec::with_capacity(n * (xd + c));
        for (xs, cs) in x.as_slice().chunks_exact(xd).zip(ctx.chunks_exact(c)) {
            joined.extend_from_slice(xs);
            joined.extend_from_slice(cs);
        }
        Ok(Some(joined))
    }

    /// Runs the layers on `x` (or on `[x, c]` when `joined` holds it); with `keep`, returns
    /// every layer's input (the backward's cache).
    fn run(
        &self,
        x: &Tensor<T>,
        joined: Option<Vec<T>>,
        par: Parallelism,
        keep: bool,
    ) -> Result<(Tensor<T>, Vec<Vec<T>>)> {
        let n = x.batch();
        let mut inputs = Vec::new();
        let mut h: Vec<T> = Vec::new();
        let last = self.layers.len() - 1;
        let first: &[T] = joined.as_deref().unwrap_or(x.as_slice());
        for (i, l) in self.layers.iter().enumerate() {
            // The first layer reads the caller's tensor directly; a copy is kept only for backward.
            let mut y = l.forward_rows(if i == 0 { first } else { &h }, n, par)?;
            if i == 0 && keep {
                h = first.to_vec();
            }
            if i < last {
                self.activation.apply(&mut y);
            }
            if keep {
                inputs.push(std::mem::replace(&mut h, y));
            } else {
                h = y;
            }
        }
        Ok((Tensor::new(&[n, self.layers[last].out_dim()], h)?, inputs))
    }
}

impl<T: Real> Params<T> for Mlp<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        for (i, l) in self.layers.iter().enumerate() {
            l.visit(&join(prefix, &i.to_string()), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_mut(&join(prefix, &i.to_string()), f);
        }
    }
}

struct MlpCache<T> {
    inputs: Vec<Vec<T>>,
    n: usize,
    par: Parallelism,
}

impl<T: Real> Conditioner<T> for Mlp<T> {
    fn kind(&self) -> &'static str {
        "Mlp"
    }

    fn in_shape(&self) -> Vec<usize> {
        vec![self.x_dim()]
    }

    fn out_shape(&self) -> Vec<usize> {
        vec![self.layers[self.layers.len() - 1].out_dim()]
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        let joined = self.first_input("Mlp::forward", x, cx)?;
        Ok(self.run(x, joined, cx.par, false)?.0)
    }

    fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)> {
        let joined = self.first_input("Mlp::forward_train", x, cx)?;
        let (y, inputs) = self.run(x, joined, cx.par, true)?;
        let cache = MlpCache {
            inputs,
            n: x.batch(),
            par: cx.par,
        };
        Ok((y, Cache::new("Mlp", cache)))
    }

    fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>> {
        let MlpCache { inputs, n, par } = cache.take::<MlpCache<T>>("Mlp")?;
        let out = self.layers[self.layers.len() - 1].out_dim();
        dy.expect_shape("Mlp::backward", &[n, out])?;
        let mut g = dy.as_slice().to_vec();
        for (i, (l, x)) in self.layers.iter_mut().zip(&inputs).enumerate().rev() {
            let mut gx = l
                .backward_rows(x, &g, n, true, par)?
                .unwrap_or_else(|| unreachable!("invariant: dx was requested"));
            if i > 0 {
                // x is the activation output of the previous layer.
                self.activation.backward_in_place(x, &mut gx);
            }
            g = gx;
        }
        let c = self.context_dim;
        if c == 0 {
            return Ok(InputGrad::input(Tensor::new(&[n, self.x_dim()], g)?));
        }
        // The first layer's input was [x, c]: split its gradient into dL/dx and dL/dc.
        let xd = self.x_dim();
        let (mut dx, mut dc) = (Vec::with_capacity(n * xd), Vec::with_capacity(n * c));
        for row in g.chunks_exact(xd + c) {
            dx.extend_from_slice(&row[..xd]);
            dc.extend_from_slice(&row[xd..]);
        }
        Ok(InputGrad {
            x: Tensor::new(&[n, xd], dx)?,
            context: Some(Tensor::new(&[n, c], dc)?),
        })
    }

    crate::impl_net_cast!();
}
