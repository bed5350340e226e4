//! Glow's coupling conditioner: three convolutions with ReLUs between.
//!
//! **Context.** A conditional GlowNet (`context_dim = C > 0`) adds a per-channel bias `V c` to
//! the first convolution's output, before its ReLU: `a[n, j, y, x] = conv_0(x)[n, j, y, x] +
//! sum_k V[j, k] c[n, k]`, with an unmasked weight `context.weight` V (`[hidden, C]`, no bias).
//! This equals C constant input channels (each filled with `c_k`) read by a 1x1 convolution: a
//! 1x1 kernel sees only its own pixel, so the term is the same at every pixel. It is not a 3x3
//! convolution over the constant channels: there the zero padding at the borders would drop the
//! taps outside the image, so the term would change near the edges (3x3 weights summing to 9
//! taps inside, 6 on an edge, 4 in a corner). The backward returns
//! `dL/dc_k = sum_j V[j, k] sum_pixels dL/da[j]`.

use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use exactflow_kernels::{Real, Result};
use rand::Rng;

use super::{Activation, Conditioner, Conv2d};
use crate::bijector::{Cache, InputGrad};
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// Glow's conditioner network `NN()` on `[N, in, H, W]` images (the network of Kingma & Dhariwal
/// 2018's affine coupling, without its ActNorms):
///
/// ```text
/// y = conv_2(ReLU(conv_1(ReLU(conv_0(x)))))
/// conv_0: 3x3, in -> hidden;  conv_1: 1x1, hidden -> hidden;  conv_2: 3x3, hidden -> out
/// ```
///
/// every convolution with "same" zero padding. `conv_2` starts at zero, so a coupling built on
/// the network starts as the identity (Glow's "zero initialization").
///
/// Parameters (PyTorch layouts, as an `nn.Sequential` indexed by convolution): `0.weight`
/// (`[hidden, in, 3, 3]`), `0.bias`, `1.weight` (`[hidden, hidden, 1, 1]`), `1.bias`, `2.weight`
/// (`[out, hidden, 3, 3]`), `2.bias`.
#[derive(Clone, Debug)]
pub struct GlowNet<T: Real> {
    convs: [Conv2d<T>; 3],
    /// The context weight V `[hidden, C]` of a conditional network (see the module
    /// documentation).
    context: Option<Param<T>>,
}

impl<T: Real> GlowNet<T> {
    /// A Glow conditioner from `in_ch` to `out_ch` channels with `hidden` channels inside, on
    /// images of size `hw = (H, W)`. The first two convolutions have PyTorch's default
    /// initialization, the last is zero.
    ///
    /// # Errors
    /// [`exactflow_kernels::Error::InvalidArgument`] for a zero channel count or image size.
    pub fn new(in_ch: usize, hidden: usize, out_ch: usize, hw: (usize, usize), rng: &mut impl Rng) -> Result<Self> {
        Self::conditional(in_ch, 0, hidden, out_ch, hw, rng)
    }

    /// A Glow conditioner that also reads a vector context of `context_dim` values through the
    /// per-channel bias `V c` of its first convolution (see the module documentation); V has
    /// PyTorch's default `nn.Linear(C, hidden)` initialization, drawn after the convolutions.
    /// `context_dim = 0` is [`GlowNet::new`].
    ///
    /// # Errors
    /// As [`GlowNet::new`].
    pub fn conditional(
        in_ch: usize,
        context_dim: usize,
        hidden: usize,
        out_ch: usize,
        hw: (usize, usize),
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let convs = [
            Conv2d::new(in_ch, hidden, 3, hw, false, rng)?,
            Conv2d::new(hidden, hidden, 1, hw, false, rng)?,
            Conv2d::new(hidden, out_ch, 3, hw, true, rng)?,
        ];
        let context = if context_dim > 0 {
            Some(super::Linear::<T>::new(context_dim, hidden, false, rng)?.weight)
        } else {
            None
        };
        Ok(GlowNet { convs, context })
    }

    /// The context width C (0 for an unconditional network).
    pub fn context_dim(&self) -> usize {
        self.context.as_ref().map_or(0, |w| w.value.shape()[1])
    }

    /// The context rows a pass reads: `None` for an unconditional network (a given context is
    /// ignored), the checked `[N, C]` context otherwise.
    fn context_rows<'a>(&self, op: &'static str, n: usize, cx: Ctx<'a, T>) -> Result<Option<&'a [T]>> {
        super::context_rows("GlowNet", op, n, self.context_dim(), cx)
    }

    /// The three convolutions, in order.
    pub fn convs(&self) -> &[Conv2d<T>; 3] {
        &self.convs
    }

    /// The hidden width.
    pub fn hidden(&self) -> usize {
        self.convs[0].out_channels()
    }

    /// The same network in another scalar type.
    pub fn cast<U: Real>(&self) -> GlowNet<U> {
        GlowNet {
            convs: [self.convs[0].cast(), self.convs[1].cast(), self.convs[2].cast()],
            context: self.context.as_ref().map(Param::cast),
        }
    }

    fn shape_of(&self, n: usize, channels: usize) -> Vec<usize> {
        let (h, w) = self.convs[0].hw();
        vec![n, channels, h, w]
    }

    /// Runs the network (with the context rows `c` of a conditional one); returns the output
    /// and the inputs of `conv_1` and `conv_2`.
    fn run(&self, x: &[T], c: Option<&[T]>, n: usize, par: Parallelism) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let mut a = self.convs[0].forward_batch(x, n, par)?;
        if let (Some(w), Some(c)) = (&self.context, c) {
            // The bias of every sample and channel, c V^T ([n, hidden]), added at every pixel.
            let (hidden, cw) = (w.value.shape()[0], w.value.shape()[1]);
            let mut bias = vec![T::zero(); n * hidden];
            gemm(
                T::one(),
                MatSlice::new(c, n, cw)?,
                MatSlice::new(w.values(), hidden, cw)?.t(),
                T::zero(),
                MatSliceMut::new(&mut bias, n, hidden)?,
                par,
            )?;
            let (h, wd) = self.convs[0].hw();
            for (plane, &b) in a.chunks_exact_mut(h * wd).zip(&bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
        Activation::Relu.apply(&mut a);
        let mut b = self.convs[1].forward_batch(&a, n, par)?;
        Activation::Relu.apply(&mut b);
        let y = self.convs[2].forward_batch(&b, n, par)?;
        Ok((y, a, b))
    }
}

impl<T: Real> Params<T> for GlowNet<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        for (i, c) in self.convs.iter().enumerate() {
            c.visit(&join(prefix, &i.to_string()), f);
        }
        if let Some(w) = &self.context {
            f(&join(prefix, "context.weight"), w);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        for (i, c) in self.convs.iter_mut().enumerate() {
            c.visit_mut(&join(prefix, &i.to_string()), f);
        }
        if let Some(w) = &mut self.context {
            f(&join(prefix, "context.weight"), w);
        }
    }
}

struct GlowNetCache<T> {
    /// The inputs of the three convolutions.
    inputs: [Vec<T>; 3],
    /// The context rows of a conditional network.
    context: Option<Vec<T>>,
    n: usize,
    par: Parallelism,
}

impl<T: Real> Conditioner<T> for GlowNet<T> {
    fn kind(&self) -> &'static str {
        "GlowNet"
    }

    fn in_shape(&self) -> Vec<usize> {
        self.shape_of(1, self.convs[0].in_channels())[1..].to_vec()
    }

    fn out_shape(&self) -> Vec<usize> {
        self.shape_of(1, self.convs[2].out_channels())[1..].to_vec()
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        x.expect_sample_shape("GlowNet::forward", &self.in_shape())?;
        let n = x.batch();
        let c = self.context_rows("GlowNet::forward", n, cx)?;
        let (y, _, _) = self.run(x.as_slice(), c, n, cx.par)?;
        Tensor::new(&self.shape_of(n, self.convs[2].out_channels()), y)
    }

    fn forward_train(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<(Tensor<T>, Cache)> {
        x.expect_sample_shape("GlowNet::forward_train", &self.in_shape())?;
        let n = x.batch();
        let c = self.context_rows("GlowNet::forward_train", n, cx)?;
        let (y, a, b) = self.run(x.as_slice(), c, n, cx.par)?;
        let cache = GlowNetCache {
            inputs: [x.as_slice().to_vec(), a, b],
            context: c.map(<[T]>::to_vec),
            n,
            par: cx.par,
        };
        Ok((
            Tensor::new(&self.shape_of(n, self.convs[2].out_channels()), y)?,
            Cache::new("GlowNet", cache),
        ))
    }

    fn backward(&mut self, cache: Cache, dy: &Tensor<T>) -> Result<InputGrad<T>> {
        let GlowNetCache {
            inputs,
            context,
            n,
            par,
        } = cache.take::<GlowNetCache<T>>("GlowNet")?;
        dy.expect_shape("GlowNet::backward", &self.shape_of(n, self.convs[2].out_channels()))?;
        let mut g = dy.as_slice().to_vec();
        let mut dcontext = None;
        for (i, (c, x)) in self.convs.iter_mut().zip(&inputs).enumerate().rev() {
            if i == 0
                && let (Some(w), Some(ctx)) = (self.context.as_mut(), context.as_deref())
            {
                // g is dL/da before the first ReLU; the bias's gradient per sample and channel
                // is its sum over the pixels, s [n, hidden]: dV += s^T c, dL/dc = s V.
                let (hidden, cw) = (w.value.shape()[0], w.value.shape()[1]);
                let (h, wd) = c.hw();
                let s: Vec<T> = g
                    .chunks_exact(h * wd)
                    .map(|plane| plane.iter().fold(T::zero(), |acc, &v| acc + v))
                    .collect();
                gemm(
                    T::one(),
                    MatSlice::new(&s, n, hidden)?.t(),
                    MatSlice::new(ctx, n, cw)?,
                    T::one(),
                    MatSliceMut::new(w.grad.as_mut_slice(), hidden, cw)?,
                    par,
                )?;
                let mut dc = vec![T::zero(); n * cw];
                gemm(
                    T::one(),
                    MatSlice::new(&s, n, hidden)?,
                    MatSlice::new(w.values(), hidden, cw)?,
                    T::zero(),
                    MatSliceMut::new(&mut dc, n, cw)?,
                    par,
                )?;
                dcontext = Some(Tensor::new(&[n, cw], dc)?);
            }
            let mut gx = c
                .backward_batch(x, &g, n, true, par)?
                .unwrap_or_else(|| unreachable!("invariant: dx was requested"));
            if i > 0 {
                // x is the ReLU output that fed this convolution.
                Activation::Relu.backward_in_place(x, &mut gx);
            }
            g = gx;
        }
        Ok(InputGrad {
            x: Tensor::new(&self.shape_of(n, self.convs[0].in_channels()), g)?,
            context: dcontext,
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
        let net = GlowNet::<f64>::new(2, 5, 4, (3, 2), &mut rng).unwrap();
        assert_eq!(net.hidden(), 5);
        assert_eq!(net.in_shape(), [2, 3, 2]);
        assert_eq!(net.out_shape(), [4, 3, 2]);
        let mut names = Vec::new();
        net.visit_params("net", &mut |n, p| names.push((n.to_string(), p.value.shape().to_vec())));
        let expect: Vec<(String, Vec<usize>)> = [
            ("net.0.weight", vec![5, 2, 3, 3]),
            ("net.0.bias", vec![5]),
            ("net.1.weight", vec![5, 5, 1, 1]),
            ("net.1.bias", vec![5]),
            ("net.2.weight", vec![4, 5, 3, 3]),
            ("net.2.bias", vec![4]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(names, expect);
        let x = Tensor::from_fn(&[2, 2, 3, 2], |k| (k as f64 * 0.37).sin()).unwrap();
        assert!(net.forward(&x, Ctx::NONE).unwrap().as_slice().iter().all(|&v| v == 0.0));
        assert!(net.forward(&Tensor::zeros(&[2, 3, 3, 2]).unwrap(), Ctx::NONE).is_err());
        assert!(GlowNet::<f64>::new(2, 0, 4, (3, 2), &mut rng).is_err());
    }
}
