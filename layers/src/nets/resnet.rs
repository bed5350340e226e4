//! RealNVP's convolutional residual conditioner.
//!
//! **Context.** A conditional ResNet (`context_dim = C > 0`) reads a vector context `c` `[N, C]`
//! concatenated to its input as C constant channels: the first convolution's input is
//! `[x, c_1 1, ..., c_C 1]` (`in + C` channels, the context's last, each filled with its value at
//! every pixel; PyTorch: `torch.cat([x, c[:, :, None, None].expand(-1, -1, H, W)], dim=1)`), so
//! `in.weight` is `[features, in + C, 3, 3]`. The 3x3 convolution zero-pads those channels like
//! the others, so near the border fewer taps see the context: its contribution is
//! position-dependent there, exactly as in the PyTorch expression. Its backward returns
//! `dL/dc_k = sum over pixels` of the gradient of context channel k. An unconditional ResNet
//! ignores a context.

use exactflow_kernels::gemm::Parallelism;
use exactflow_kernels::{Error, Real, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Activation, Conditioner, Conv2d};
use crate::bijector::{Cache, InputGrad};
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// The shape of a [`ResNet`]: the number of residual blocks and the channel width inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Residual blocks between the input and output convolutions (may be 0).
    pub blocks: usize,
    /// Channels of every hidden feature map.
    pub features: usize,
}

/// RealNVP's residual conditioner on `[N, in, H, W]` images, in pre-activation form (He et al.,
/// "Identity mappings in deep residual networks", as in RealNVP's code, without batch norm):
///
/// ```text
/// h_0     = conv_in(x)                                    3x3, in -> features
/// h_{b+1} = h_b + conv2_b(ReLU(conv1_b(ReLU(h_b))))       3x3, features -> features, b < blocks
/// y       = conv_out(ReLU(h_B))                           3x3, features -> out, zero-initialized
/// ```
///
/// so it reads conv3x3 -> ReLU -> residual blocks -> ReLU -> conv3x3, and with `blocks = 0` it is
/// `conv_out(ReLU(conv_in(x)))`. Every convolution has "same" zero padding, so H and W are kept.
/// The last convolution starts at zero, so a coupling built on the network starts as the
/// identity.
///
/// Parameters (PyTorch layouts, see [`Conv2d`]): `in.weight`, `in.bias`,
/// `blocks.{b}.conv1.weight`, `blocks.{b}.conv1.bias`, `blocks.{b}.conv2.weight`,
/// `blocks.{b}.conv2.bias`, `out.weight`, `out.bias`.
#[derive(Clone, Debug)]
pub struct ResNet<T: Real> {
    conv_in: Conv2d<T>,
    blocks: Vec<(Conv2d<T>, Conv2d<T>)>,
    conv_out: Conv2d<T>,
    /// The context width C read as constant input channels (0: unconditional).
    context_dim: usize,
}

impl<T: Real> ResNet<T> {
    /// A ResNet from `in_ch` to `out_ch` channels on images of size `hw = (H, W)`. Every
    /// convolution but the last has PyTorch's default initialization; the last is zero.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for zero features, channels or image size.
    pub fn new(
        cfg: &ResNetConfig,
        in_ch: usize,
        out_ch: usize,
        hw: (usize, usize),
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Self::conditional(cfg, in_ch, 0, out_ch, hw, rng)
    }

    /// A ResNet from `in_ch` channels and a vector context of `context_dim` values (read as
    /// constant channels after the input's, see the module documentation) to `out_ch` channels;
    /// `context_dim = 0` is [`ResNet::new`].
    ///
    /// # Errors
    /// As [`ResNet::new`].
    pub fn conditional(
        cfg: &ResNetConfig,
        in_ch: usize,
        context_dim: usize,
        out_ch: usize,
        hw: (usize, usize),
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if in_ch == 0 {
            return Err(Error::invalid(
                "ResNet::new",
                "in_ch",
                "needs at least one input channel, found 0",
            ));
        }
        if cfg.features == 0 {
            return Err(Error::invalid(
                "ResNet::new",
                "features",
                "needs at least one feature channel, found 0",
            ));
        }
        let f = cfg.features;
        let joined = in_ch.checked_add(context_dim).ok_or_else(|| {
            Error::invalid(
                "ResNet::new",
                "context_dim",
                format!("{in_ch} + {context_dim} channels overflow"),
            )
        })?;
        let conv_in = Conv2d::new(joined, f, 3, hw, false, rng)?;
        let blocks = (0..cfg.blocks)
            .map(|_| {
                Ok((
                    Conv2d::new(f, f, 3, hw, false, rng)?,
                    Conv2d::new(f, f, 3, hw, false, rng)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let conv_out = Conv2d::new(f, out_ch, 3, hw, true, rng)?;
        Ok(ResNet {
            conv_in,
            blocks,
            conv_out,
            context_dim,
        })
    }

    /// The context width C (0 for an unconditional ResNet).
    pub fn context_dim(&self) -> usize {
        self.context_dim
    }

    /// The input channels of `x` (the first convolution reads them and the context's).
    fn x_channels(&self) -> usize {
        self.conv_in.in_channels() - self.context_dim
    }

    /// Checks the input and, for a conditional ResNet, returns the first convolution's input
    /// `[x, c broadcast over the pixels]`.
    fn first_input(&self, op: &'static str, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Option<Vec<T>>> {
        x.expect_sample_shape(op, &self.in_shape())?;
        let (n, c) = (x.batch(), self.context_dim);
        let Some(ctx) = super::context_rows("ResNet", op, n, c, cx)? else {
            return Ok(None);
        };
        let (h, w) = self.conv_in.hw();
        let m = x.sample_len();
        let mut joined = Vec::with_capacity(n * (m + c * h * w));
        for (xs, cs) in x.as_slice().chunks_exact(m).zip(ctx.chunks_exact(c)) {
            joined.extend_from_slice(xs);
            for &v in cs {
                joined.extend(std::iter::repeat_n(v, h * w));
            }
        }
        Ok(Some(joined))
    }

    /// The configuration the network was built with.
    pub fn config(&self) -> ResNetConfig {
        ResNetConfig {
            blocks: self.blocks.len(),
            features: self.conv_in.out_channels(),
        }
    }

    /// The same network in another scalar type.
    pub fn cast<U: Real>(&self) -> ResNet<U> {
        ResNet {
            conv_in: self.conv_in.cast(),
            blocks: self.blocks.iter().map(|(a, b)| (a.cast(), b.cast())).collect(),
            conv_out: self.conv_out.cast(),
            context_dim: self.context_dim,
        }
    }

    fn shape_of(&self, n: usize, channels: usize) -> Vec<usize> {
        let (h, w) = self.conv_in.hw();
        vec![n, channels, h, w]
    }

    /// Runs the network on `n` samples; with `keep`, returns the activations backward needs.
    fn run(&self, x: &[T], n: usize, par: Parallelism, keep: bool) -> Result<(Vec<T>, Option<ResNetCache<T>>)> {
        let relu = Activation::Relu;
        let mut h = self.conv_in.forward_batch(x, n, par)?;
        let mut kept = Vec::with_capacity(if keep { self.blocks.len() } else { 0 });
        for (c1, c2) in &self.blocks {
            let mut a = h.clone();
            relu.apply(&mut a);
            let mut u = c1.forward_batch(&a, n, par)?;
            relu.apply(&mut u);
            let r = c2.forward_batch(&u, n, par)?;
            h.iter_mut().zip(&r).for_each(|(hv, &rv)| *hv += rv);
            if keep {
                kept.push((a, u));
            }
        }
        relu.apply(&mut h);
        let y = self.conv_out.forward_batch(&h, n, par)?;
        let cache = keep.then(|| ResNetCache {
            x: x.to_vec(),
            blocks: kept,
            last: h,
            n,
            par,
        });
        Ok((y, cache))
    }
}

impl<T: Real> Params<T> for ResNet<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        self.conv_in.visit(&join(prefix, "in"), f);
        for (b, (c1, c2)) in self.blocks.iter().enumerate() {
            let p = join(prefix, &format!("blocks.{b}"));
            c1.visit(&join(&p, "conv1"), f);
            c2.visit(&join(&p, "conv2"), f);
        }
        self.conv_out.visit(&join(prefix, "out"), f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        self.conv_in.visit_mut(&join(prefix, "in"), f);
        for (b, (c1, c2)) in self.blocks.iter_mut().enumerate() {
            let p = join(prefix, &format!("blocks.{b}"));
            c1.visit_mut(&join(&p, "conv1"), f);
            c2.visit_mut(&join(&p, "conv2"), f);
        }
        self.conv_out.visit_mut(&join(prefix, "out"), f);
    }
}

struct ResNetCache<T> {
    /// The first convolution's input (`x`, or `[x, c]` for a conditional ResNet).
    x: Vec<T>,
    /// Per block: `ReLU(h_b)` (conv1's input) and `ReLU(conv1(..))` (conv2's input).
    blocks: Vec<(Vec<T>, Vec<T>)>,
    /// `ReLU(h_B)` (conv_out's input).
    last: Vec<T>,
    n: usize,
    par: Parallelism,
}

impl<T: Real> Conditioner<T> for ResNet<T> {
    fn kind(&self) -> &'static str {
        "ResNet"
    }

    fn in_shape(&self) -> Vec<usize> {
        self.shape_of(1, self.x_channels())[1..].to_vec()
    }

    fn out_shape(&self) -> Vec<usize> {
        self.shape_of(1, self.conv_out.out_channels())[1..].to_vec()
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        let joined = self.first_input("ResNet::forward", x, cx)?;
        let n = x.batch();
        let (y, _) = self.run(joined.as_deref().unwrap_or(x.as_slice()), n, cx.par, false)?;
        Tensor::new(&self.shape_of(n, self.conv_out.out_channels()), y)
    }

    fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)> {
        let joined = self.first_input("ResNet::forward_train", x, cx)?;
        let n = x.batch();
        let (y, cache) = self.run(joined.as_deref().unwrap_or(x.as_slice()), n, cx.par, true)?;
        let cache = cache.unwrap_or_else(|| unreachable!("invariant: keep = true returns a cache"));
        Ok((
            Tensor::new(&self.shape_of(n, self.conv_out.out_channels()), y)?,
            Cache::new("ResNet", cache),
        ))
    }

    fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>> {
        let ResNetCache {
            x,
            blocks,
            last,
            n,
            par,
        } = cache.take::<ResNetCache<T>>("ResNet")?;
        dy.expect_shape("ResNet::backward", &self.shape_of(n, self.conv_out.out_channels()))?;
        let relu = Activation::Relu;
        let want = |v: Option<Vec<T>>| v.unwrap_or_else(|| unreachable!("invariant: dx was requested"));
        // dL/dh_B.
        let mut dh = want(self.conv_out.backward_batch(&last, dy.as_slice(), n, true, par)?);
        relu.backward_in_place(&last, &mut dh);
        for ((c1, c2), (a, u)) in self.blocks.iter_mut().zip(&blocks).rev() {
            let mut du = want(c2.backward_batch(u, &dh, n, true, par)?);
            relu.backward_in_place(u, &mut du);
            let mut da = want(c1.backward_batch(a, &du, n, true, par)?);
            relu.backward_in_place(a, &mut da);
            // h_{b+1} = h_b + r(h_b): the skip passes dh through unchanged.
            dh.iter_mut().zip(&da).for_each(|(g, &v)| *g += v);
        }
        let dx = want(self.conv_in.backward_batch(&x, &dh, n, true, par)?);
        let c = self.context_dim;
        let x_shape = self.shape_of(n, self.x_channels());
        if c == 0 {
            return Ok(InputGrad::input(Tensor::new(&x_shape, dx)?));
        }
        // The first input was [x, c broadcast]: dL/dx is the x channels' gradient, dL/dc_k
        // the sum of context channel k's over its pixels.
        let (h, w) = self.conv_in.hw();
        let m = self.x_channels() * h * w;
        let (mut gx, mut gc) = (Vec::with_capacity(n * m), Vec::with_capacity(n * c));
        for row in dx.chunks_exact(m + c * h * w) {
            gx.extend_from_slice(&row[..m]);
            gc.extend(
                row[m..]
                    .chunks_exact(h * w)
                    .map(|ch| ch.iter().fold(T::zero(), |s, &v| s + v)),
            );
        }
        Ok(InputGrad {
            x: Tensor::new(&x_shape, gx)?,
            context: Some(Tensor::new(&[n, c], gc)?),
        })
    }

    crate::impl_net_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn names_shapes_and_zero_start() {
        let mut rng = StdRng::seed_from_u64(1);
        let cfg = ResNetConfig { blocks: 2, features: 4 };
        let net = ResNet::<f64>::new(&cfg, 3, 6, (4, 5), &mut rng).unwrap();
        assert_eq!(net.config(), cfg);
        assert_eq!(net.in_shape(), [3, 4, 5]);
        assert_eq!(net.out_shape(), [6, 4, 5]);
        let mut names = Vec::new();
        net.visit_params("net", &mut |n, p| names.push((n.to_string(), p.value.shape().to_vec())));
        let expect: Vec<(String, Vec<usize>)> = [
            ("net.in.weight", vec![4, 3, 3, 3]),
            ("net.in.bias", vec![4]),
            ("net.blocks.0.conv1.weight", vec![4, 4, 3, 3]),
            ("net.blocks.0.conv1.bias", vec![4]),
            ("net.blocks.0.conv2.weight", vec![4, 4, 3, 3]),
            ("net.blocks.0.conv2.bias", vec![4]),
            ("net.blocks.1.conv1.weight", vec![4, 4, 3, 3]),
            ("net.blocks.1.conv1.bias", vec![4]),
            ("net.blocks.1.conv2.weight", vec![4, 4, 3, 3]),
            ("net.blocks.1.conv2.bias", vec![4]),
            ("net.out.weight", vec![6, 4, 3, 3]),
            ("net.out.bias", vec![6]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(names, expect);
        let x = Tensor::from_fn(&[2, 3, 4, 5], |k| (k as f64 * 0.37).sin()).unwrap();
        assert!(net.forward(&x, Ctx::NONE).unwrap().as_slice().iter().all(|&v| v == 0.0));
    }

    #[test]
    fn matches_the_formula_through_single_convolutions() {
        let mut rng = StdRng::seed_from_u64(2);
        let cfg = ResNetConfig { blocks: 1, features: 3 };
        let mut net = ResNet::<f64>::new(&cfg, 2, 2, (3, 3), &mut rng).unwrap();
        net.visit_params_mut("", &mut |_, p| {
            p.value
                .as_mut_slice()
                .iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v += 0.1 * (k as f64).cos())
        });
        let x = Tensor::from_fn(&[2, 2, 3, 3], |k| (k as f64 * 0.71).sin()).unwrap();
        let y = net.forward(&x, Ctx::NONE).unwrap();
        let relu = |mut v: Vec<f64>| {
            Activation::Relu.apply(&mut v);
            v
        };
        let h0 = net
            .conv_in
            .forward_batch(x.as_slice(), 2, Parallelism::Sequential)
            .unwrap();
        let (c1, c2) = &net.blocks[0];
        let r = c2
            .forward_batch(
                &relu(c1.forward_batch(&relu(h0.clone()), 2, Parallelism::Sequential).unwrap()),
                2,
                Parallelism::Sequential,
            )
            .unwrap();
        let h1: Vec<f64> = h0.iter().zip(&r).map(|(a, b)| a + b).collect();
        let expect = net
            .conv_out
            .forward_batch(&relu(h1), 2, Parallelism::Sequential)
            .unwrap();
        assert_eq!(y.as_slice(), expect.as_slice());
    }

    #[test]
    fn bad_config_and_shape_are_errors() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(ResNet::<f64>::new(&ResNetConfig { blocks: 1, features: 0 }, 1, 2, (2, 2), &mut rng).is_err());
        assert!(ResNet::<f64>::new(&ResNetConfig { blocks: 1, features: 2 }, 0, 2, (2, 2), &mut rng).is_err());
        let net = ResNet::<f64>::new(&ResNetConfig { blocks: 1, features: 2 }, 1, 2, (2, 2), &mut rng).unwrap();
        assert!(net.forward(&Tensor::zeros(&[1, 2, 2, 2]).unwrap(), Ctx::NONE).is_err());
    }
}
