//! Coupling layers: NICE's additive coupling, RealNVP's affine coupling and Glow's.
//!
//! A [`Mask`] splits each sample into a conditioning part A and a transformed part B. The A part
//! passes through unchanged; a conditioner network reads A and returns the parameters of an
//! elementwise *inner transform* of B (the type parameter `I`, as in distrax's `MaskedCoupling`):
//!
//! | layer | inner transform (forward, data -> latent) | log|det dz/dx| per sample |
//! |---|---|---|
//! | [`AdditiveCoupling`] (NICE) | `z_B = x_B + t(x_A)` | 0 |
//! | [`AffineCoupling`] (RealNVP) | `z_B = x_B * exp(s) + t`, `s = scale * tanh(h)` | `sum_B s` |
//! | [`GlowCoupling`] (Glow) | `z_B = x_B * sigmoid(h + 2) + t` | `sum_B log sigmoid(h + 2)` |
//!
//! `(h, t)` are the conditioner's outputs for B; `scale` is a learned vector (one entry per B
//! element, initialized to 1) that bounds `|s| <= |scale|`, so an unbounded conditioner output
//! can never overflow `exp`. The Jacobian is triangular once A is ordered before B, with ones on
//! A's diagonal and `exp(s)` on B's: the log-det is `sum_B s`, O(|B|).
//!
//! Conditioner outputs are laid out as `[part 0 | part 1]` blocks (`h` first, then `t`): for
//! vector and channel masks, the first `|B|` outputs are `h`, the next `|B|` are `t`; for a spatial
//! checkerboard, output channels `0..C` are `h` and `C..2C` are `t`, read at the B pixels.

use exactflow_kernels::coupling::{additive_forward, additive_inverse, affine_forward, affine_inverse};
use exactflow_kernels::{Error, F1, Interval, Real, Result};
use rand::Rng;

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::mask::{Mask, Partition};
use crate::nets::{Conditioner, Mlp, MlpConfig};
use crate::params::{Param, Params, join};
use crate::spline::BinStats;
use crate::tensor::Tensor;

/// The elementwise transform a coupling applies to its B part, given the conditioner's outputs.
pub trait Inner<T: Real>: Params<T> + Clone + Send + Sync + Sized + 'static {
    /// The same transform in another scalar type.
    type With<U: Real>: Inner<U>;
    /// The layer name ("AdditiveCoupling", ...).
    const KIND: &'static str;
    /// What [`Inner::forward`] keeps for [`Inner::backward`] (intermediates of the transform).
    /// `Clone`, so that a layer may backpropagate through the same pass more than once (the
    /// inverse autoregressive direction does, see [`crate::autoregressive`]).
    type Aux: Clone + Send + Sync + 'static;
    /// Whether the log-det is independent of the input.
    const CONSTANT: bool;

    /// Conditioner outputs per transformed element (1 additive, 2 affine, `3K - 1` spline).
    fn parts(&self) -> usize;

    /// Converts the transform's parameters.
    fn cast<U: Real>(&self) -> Self::With<U>;

    /// Checks the transform against the number of B elements.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a parameter has the wrong length.
    fn check(&self, d: usize) -> Result<()>;

    /// `zb = f(xb; parts)`, adding log|det| to `log_det`, on rows of width `d`. Returns what the
    /// backward pass needs.
    ///
    /// # Errors
    /// Only on internal length mismatches.
    fn forward(&self, d: usize, xb: &[T], parts: &[Vec<T>], zb: &mut [T], log_det: &mut [T]) -> Result<Self::Aux>;

    /// `xb = f^-1(zb; parts)`, adding log|det dx/dz| to `log_det`.
    ///
    /// # Errors
    /// Only on internal length mismatches.
    fn inverse(&self, d: usize, zb: &[T], parts: &[Vec<T>], xb: &mut [T], log_det: &mut [T]) -> Result<()>;

    /// Per-bin statistics of a piecewise transform at the inputs `xb` (the audit); `None` for a
    /// transform without bins.
    fn bin_stats(&self, _d: usize, _xb: &[T], _parts: &[Vec<T>]) -> Option<Vec<BinStats>> {
        None
    }

    /// Returns (dL/dxb, dL/dparts) and accumulates the transform's own parameter gradients.
    fn backward(
        &mut self,
        d: usize,
        aux: Self::Aux,
        parts: &[Vec<T>],
        zb: &[T],
        dzb: &[T],
        dlog_det: &[T],
    ) -> (Vec<T>, Vec<Vec<T>>);
}

/// NICE's additive transform `z = x + t`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Additive;

crate::no_params_unit!(Additive);

impl<T: Real> Inner<T> for Additive {
    type With<U: Real> = Additive;
    type Aux = ();
    const KIND: &'static str = "AdditiveCoupling";
    const CONSTANT: bool = true;

    fn parts(&self) -> usize {
        1
    }

    fn cast<U: Real>(&self) -> Additive {
        Additive
    }

    fn check(&self, _d: usize) -> Result<()> {
        Ok(())
    }

    fn forward(&self, _d: usize, xb: &[T], parts: &[Vec<T>], zb: &mut [T], _ld: &mut [T]) -> Result<()> {
        additive_forward(xb, &parts[0], zb)
    }

    fn inverse(&self, _d: usize, zb: &[T], parts: &[Vec<T>], xb: &mut [T], _ld: &mut [T]) -> Result<()> {
        additive_inverse(zb, &parts[0], xb)
    }

    fn backward(
        &mut self,
        _d: usize,
        _aux: (),
        _parts: &[Vec<T>],
        _zb: &[T],
        dzb: &[T],
        _dld: &[T],
    ) -> (Vec<T>, Vec<Vec<T>>) {
        (dzb.to_vec(), vec![dzb.to_vec()])
    }
}

/// RealNVP's affine transform `z = x * exp(s) + t` with `s = scale * tanh(h)`.
#[derive(Clone, Debug)]
pub struct Affine<T: Real> {
    /// The learned bound on |s|, one entry per transformed element; named `scale`.
    pub scale: Param<T>,
}

impl<T: Real> Affine<T> {
    /// `scale` initialized to 1 for `d` transformed elements.
    pub fn new(d: usize) -> Result<Self> {
        Ok(Affine {
            scale: Param::trainable(Tensor::full(&[d], T::one())?),
        })
    }

    fn log_scale(&self, d: usize, h: &[T]) -> AffineAux<T> {
        let sc = self.scale.values();
        let mut tanh_h = h.to_vec();
        T::tanh_kernel(&mut tanh_h);
        let s = tanh_h.iter().enumerate().map(|(k, &t)| sc[k % d] * t).collect();
        AffineAux { tanh_h, s }
    }
}

/// What the affine transform's forward keeps for its backward.
#[derive(Clone, Debug)]
pub struct AffineAux<T> {
    /// `tanh(h)` per transformed element.
    pub tanh_h: Vec<T>,
    /// The log-scale `s = scale * tanh(h)`.
    pub s: Vec<T>,
}

/// What Glow's transform keeps for its backward: the log-scale `log sigmoid(h + 2)`.
#[derive(Clone, Debug)]
pub struct GlowAux<T> {
    /// The log-scale per transformed element.
    pub s: Vec<T>,
}

impl<T: Real> Params<T> for Affine<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "scale"), &self.scale);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "scale"), &mut self.scale);
    }
}

/// `dL/ds` of `z = x * exp(s) + t` with log-det `sum s`: `dz * (z - t) + dlogdet` (the row's
/// log-det gradient reaches every element of the row).
fn grad_log_scale<T: Real>(d: usize, zb: &[T], t: &[T], dzb: &[T], dld: &[T]) -> Vec<T> {
    zb.iter()
        .zip(t)
        .zip(dzb)
        .enumerate()
        .map(|(k, ((&z, &tv), &g))| g * (z - tv) + dld[k / d])
        .collect()
}

/// `dL/dx = dz * exp(s)`.
fn grad_input<T: Real>(s: &[T], dzb: &[T]) -> Vec<T> {
    let mut e = s.to_vec();
    T::exp_kernel(&mut e);
    e.iter_mut().zip(dzb).for_each(|(v, &g)| *v *= g);
    e
}

impl<T: Real> Inner<T> for Affine<T> {
    type With<U: Real> = Affine<U>;
    type Aux = AffineAux<T>;
    const KIND: &'static str = "AffineCoupling";
    const CONSTANT: bool = false;

    fn parts(&self) -> usize {
        2
    }

    fn cast<U: Real>(&self) -> Affine<U> {
        Affine {
            scale: self.scale.cast(),
        }
    }

    fn check(&self, d: usize) -> Result<()> {
        if self.scale.value.len() != d {
            return Err(Error::invalid(
                "AffineCoupling",
                "scale",
                format!("has {} entries for {d} transformed elements", self.scale.value.len()),
            ));
        }
        Ok(())
    }

    fn forward(&self, d: usize, xb: &[T], parts: &[Vec<T>], zb: &mut [T], ld: &mut [T]) -> Result<AffineAux<T>> {
        let aux = self.log_scale(d, &parts[0]);
        affine_forward(d, xb, &aux.s, &parts[1], zb, ld)?;
        Ok(aux)
    }

    fn inverse(&self, d: usize, zb: &[T], parts: &[Vec<T>], xb: &mut [T], ld: &mut [T]) -> Result<()> {
        let AffineAux { s, .. } = self.log_scale(d, &parts[0]);
        affine_inverse(d, zb, &s, &parts[1], xb, ld)
    }

    fn backward(
        &mut self,
        d: usize,
        aux: AffineAux<T>,
        parts: &[Vec<T>],
        zb: &[T],
        dzb: &[T],
        dld: &[T],
    ) -> (Vec<T>, Vec<Vec<T>>) {
        let AffineAux { tanh_h: th, s } = aux;
        let ds = grad_log_scale(d, zb, &parts[1], dzb, dld);
        let dx = grad_input(&s, dzb);
        let sc = self.scale.values().to_vec();
        let mut dscale = vec![T::zero(); d];
        let dh: Vec<T> = ds
            .iter()
            .zip(&th)
            .enumerate()
            .map(|(k, (&g, &t))| {
                dscale[k % d] += g * t;
                g * sc[k % d] * (T::one() - t * t)
            })
            .collect();
        self.scale.accumulate(&dscale);
        (dx, vec![dh, dzb.to_vec()])
    }
}

/// Glow's affine transform `z = x * sigmoid(h + 2) + t`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlowAffine;

crate::no_params_unit!(GlowAffine);

/// `log sigmoid(u) = -softplus(-u)`, computed without overflow for any finite u.
fn log_sigmoid<T: Real>(u: T) -> T {
    let m = (-u).max(T::zero());
    -(m + (-u.abs()).exp().ln_1p())
}

impl GlowAffine {
    fn log_scale<T: Real>(h: &[T]) -> Vec<T> {
        let two = T::lit(2.0);
        h.iter().map(|&v| log_sigmoid(v + two)).collect()
    }
}

impl<T: Real> Inner<T> for GlowAffine {
    type With<U: Real> = GlowAffine;
    type Aux = GlowAux<T>;
    const KIND: &'static str = "GlowCoupling";
    const CONSTANT: bool = false;

    fn parts(&self) -> usize {
        2
    }

    fn cast<U: Real>(&self) -> GlowAffine {
        GlowAffine
    }

    fn check(&self, _d: usize) -> Result<()> {
        Ok(())
    }

    fn forward(&self, d: usize, xb: &[T], parts: &[Vec<T>], zb: &mut [T], ld: &mut [T]) -> Result<GlowAux<T>> {
        let s = Self::log_scale(&parts[0]);
        affine_forward(d, xb, &s, &parts[1], zb, ld)?;
        Ok(GlowAux { s })
    }

    fn inverse(&self, d: usize, zb: &[T], parts: &[Vec<T>], xb: &mut [T], ld: &mut [T]) -> Result<()> {
        let s = Self::log_scale(&parts[0]);
        affine_inverse(d, zb, &s, &parts[1], xb, ld)
    }

    fn backward(
        &mut self,
        d: usize,
        aux: GlowAux<T>,
        parts: &[Vec<T>],
        zb: &[T],
        dzb: &[T],
        dld: &[T],
    ) -> (Vec<T>, Vec<Vec<T>>) {
        let GlowAux { s } = aux;
        let ds = grad_log_scale(d, zb, &parts[1], dzb, dld);
        let dx = grad_input(&s, dzb);
        // d/dh log sigmoid(h + 2) = 1 - sigmoid(h + 2) = 1 - exp(s).
        let dh = ds.iter().zip(&s).map(|(&g, &sv)| g * (T::one() - sv.exp())).collect();
        (dx, vec![dh, dzb.to_vec()])
    }
}

/// A coupling layer: mask, conditioner network and inner transform. Parameters are named
/// `net.*` (the conditioner's) and, for the affine coupling, `scale`.
pub struct Coupling<T: Real, I: Inner<T>> {
    partition: Partition,
    mask: Mask,
    net: Box<dyn Conditioner<T>>,
    inner: I,
}

/// NICE's additive coupling.
pub type AdditiveCoupling<T> = Coupling<T, Additive>;
/// RealNVP's affine coupling with a tanh-bounded log-scale.
pub type AffineCoupling<T> = Coupling<T, Affine<T>>;
/// Glow's affine coupling with a sigmoid scale.
pub type GlowCoupling<T> = Coupling<T, GlowAffine>;

impl<T: Real, I: Inner<T>> Coupling<T, I> {
    /// A coupling of samples of shape `sample_shape` (`[D]` or `[C, H, W]`), split by `mask`,
    /// with conditioner `net` and inner transform `inner`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the mask leaves a part empty, or the network's input or
    /// output shape does not match the partition (see [`Mask::partition`]).
    pub fn new(sample_shape: &[usize], mask: Mask, net: Box<dyn Conditioner<T>>, inner: I) -> Result<Self> {
        let partition = mask.partition(sample_shape, inner.parts())?;
        if net.in_shape() != partition.cond_in_shape || net.out_shape() != partition.cond_out_shape {
            return Err(Error::invalid(
                I::KIND,
                "conditioner",
                format!(
                    "maps {:?} -> {:?}, but mask {:?} on {:?} needs {:?} -> {:?}",
                    net.in_shape(),
                    net.out_shape(),
                    mask,
                    sample_shape,
                    partition.cond_in_shape,
                    partition.cond_out_shape
                ),
            ));
        }
        inner.check(partition.b_idx.len())?;
        Ok(Coupling {
            partition,
            mask,
            net,
            inner,
        })
    }

    /// The mask.
    pub fn mask(&self) -> Mask {
        self.mask
    }

    /// The partition of the sample.
    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    /// The conditioner network.
    pub fn net(&self) -> &dyn Conditioner<T> {
        self.net.as_ref()
    }

    fn cond_input(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let p = &self.partition;
        let n = x.batch();
        let s_len = x.sample_len();
        let in_len: usize = p.cond_in_shape.iter().product();
        let mut cin = vec![T::zero(); n * in_len];
        for (row, xs) in cin.chunks_exact_mut(in_len).zip(x.as_slice().chunks_exact(s_len)) {
            for &(ci, xi) in &p.a_src {
                row[ci] = xs[xi];
            }
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&p.cond_in_shape);
        Tensor::new(&shape, cin)
    }

    fn gather_b(&self, x: &Tensor<T>) -> Vec<T> {
        let b = &self.partition.b_idx;
        let s_len = x.sample_len();
        let mut out = Vec::with_capacity(x.batch() * b.len());
        for xs in x.as_slice().chunks_exact(s_len) {
            out.extend(b.iter().map(|&j| xs[j]));
        }
        out
    }

    fn split_parts(&self, out: &Tensor<T>) -> Vec<Vec<T>> {
        let p = &self.partition;
        let d = p.b_idx.len();
        let o_len = out.sample_len();
        (0..self.inner.parts())
            .map(|part| {
                let idx = &p.out_idx[part * d..(part + 1) * d];
                let mut v = Vec::with_capacity(out.batch() * d);
                for os in out.as_slice().chunks_exact(o_len) {
                    v.extend(idx.iter().map(|&k| os[k]));
                }
                v
            })
            .collect()
    }

    fn scatter_b(&self, base: &Tensor<T>, b: &[T]) -> Tensor<T> {
        let mut z = base.clone();
        let idx = &self.partition.b_idx;
        let s_len = base.sample_len();
        for (zs, bs) in z.as_mut_slice().chunks_exact_mut(s_len).zip(b.chunks_exact(idx.len())) {
            for (&j, &v) in idx.iter().zip(bs) {
                zs[j] = v;
            }
        }
        z
    }

    /// The same layer in another scalar type (through the boxed network's own conversion).
    fn with_net<U: Real>(&self, net: Box<dyn Conditioner<U>>) -> Coupling<U, I::With<U>> {
        Coupling {
            partition: self.partition.clone(),
            mask: self.mask,
            net,
            inner: self.inner.cast::<U>(),
        }
    }
}

impl<T: Real> AdditiveCoupling<T> {
    /// NICE's additive coupling on `[N, dim]` data with an MLP `t(x_A)`.
    ///
    /// # Errors
    /// As [`Coupling::new`].
    pub fn with_mlp(dim: usize, mask: Mask, mlp: &MlpConfig, rng: &mut impl Rng) -> Result<Self> {
        let p = mask.partition(&[dim], 1)?;
        let net = Mlp::new(mlp, p.a_idx.len(), p.b_idx.len(), rng)?;
        Coupling::new(&[dim], mask, Box::new(net), Additive)
    }
}

impl<T: Real> AffineCoupling<T> {
    /// RealNVP's affine coupling on `[N, dim]` data with an MLP returning `(h, t)`.
    ///
    /// # Errors
    /// As [`Coupling::new`].
    pub fn with_mlp(dim: usize, mask: Mask, mlp: &MlpConfig, rng: &mut impl Rng) -> Result<Self> {
        Self::with_conditional_mlp(dim, mask, 0, mlp, rng)
    }

    /// A conditional affine coupling: the MLP reads `[x_A, c]` with a context `c` of
    /// `context_dim` features (see [`Mlp::conditional`]); `context_dim = 0` is
    /// [`AffineCoupling::with_mlp`].
    ///
    /// # Errors
    /// As [`Coupling::new`].
    pub fn with_conditional_mlp(
        dim: usize,
        mask: Mask,
        context_dim: usize,
        mlp: &MlpConfig,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let p = mask.partition(&[dim], 2)?;
        let d = p.b_idx.len();
        let net = Mlp::conditional(mlp, p.a_idx.len(), context_dim, 2 * d, rng)?;
        Coupling::new(&[dim], mask, Box::new(net), Affine::new(d)?)
    }
}

impl<T: Real> GlowCoupling<T> {
    /// Glow's affine coupling on `[N, dim]` data with an MLP returning `(h, t)`.
    ///
    /// # Errors
    /// As [`Coupling::new`].
    pub fn with_mlp(dim: usize, mask: Mask, mlp: &MlpConfig, rng: &mut impl Rng) -> Result<Self> {
        let p = mask.partition(&[dim], 2)?;
        let net = Mlp::new(mlp, p.a_idx.len(), 2 * p.b_idx.len(), rng)?;
        Coupling::new(&[dim], mask, Box::new(net), GlowAffine)
    }
}

impl<T: Real, I: Inner<T>> Params<T> for Coupling<T, I> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        self.net.visit_params(&join(prefix, "net"), f);
        self.inner.visit_params(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        self.net.visit_params_mut(&join(prefix, "net"), f);
        self.inner.visit_params_mut(prefix, f);
    }
}

struct CouplingCache<T, A> {
    net: Cache,
    parts: Vec<Vec<T>>,
    aux: A,
    zb: Vec<T>,
    shape: Vec<usize>,
}

/// A coupling pass: output, per-sample log-det and, in training, the cache.
type CouplingRun<T, A> = (Tensor<T>, Vec<T>, Option<CouplingCache<T, A>>);

impl<T: Real, I: Inner<T>> Coupling<T, I> {
    fn run(&self, x: &Tensor<T>, cx: Ctx<'_, T>, train: bool) -> Result<CouplingRun<T, I::Aux>> {
        check_input(self, I::KIND, x, cx, &self.partition.sample_shape)?;
        let cin = self.cond_input(x)?;
        let (out, net_cache) = if train {
            let (o, c) = self.net.forward_train(&cin, cx)?;
            (o, Some(c))
        } else {
            (self.net.forward(&cin, cx)?, None)
        };
        let parts = self.split_parts(&out);
        let xb = self.gather_b(x);
        let mut zb = vec![T::zero(); xb.len()];
        let mut ld = vec![T::zero(); x.batch()];
        let aux = self
            .inner
            .forward(self.partition.b_idx.len(), &xb, &parts, &mut zb, &mut ld)?;
        let z = self.scatter_b(x, &zb);
        let cache = net_cache.map(|net| CouplingCache {
            net,
            parts,
            aux,
            zb,
            shape: x.shape().to_vec(),
        });
        Ok((z, ld, cache))
    }
}

impl<T: Real, I: Inner<T>> Bijector<T> for Coupling<T, I> {
    fn kind(&self) -> &'static str {
        I::KIND
    }

    fn constant_log_det(&self) -> bool {
        I::CONSTANT
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.partition.sample_shape.clone(), self.partition.sample_shape.clone())
    }

    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        let (z, ld, _) = self.run(x, cx, false)?;
        Ok((z, ld))
    }

    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, I::KIND, z, cx, &self.partition.sample_shape)?;
        // A is unchanged by the forward map, so the conditioner sees the same input.
        let out = self.net.forward(&self.cond_input(z)?, cx)?;
        let parts = self.split_parts(&out);
        let zb = self.gather_b(z);
        let mut xb = vec![T::zero(); zb.len()];
        let mut ld = vec![T::zero(); z.batch()];
        self.inner
            .inverse(self.partition.b_idx.len(), &zb, &parts, &mut xb, &mut ld)?;
        Ok((self.scatter_b(z, &xb), ld))
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        let (z, ld, cache) = self.run(x, cx, true)?;
        let cache = cache.unwrap_or_else(|| unreachable!("invariant: train mode keeps a cache"));
        Ok((z, ld, Cache::new(I::KIND, cache)))
    }

    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let c: CouplingCache<T, I::Aux> = cache.take(I::KIND)?;
        check_grads(I::KIND, dz, dlogdet, &c.shape)?;
        let d = self.partition.b_idx.len();
        let dzb = self.gather_b(dz);
        let (dxb, dparts) = self.inner.backward(d, c.aux, &c.parts, &c.zb, &dzb, dlogdet);
        let p = &self.partition;
        let n = dz.batch();
        let o_len: usize = p.cond_out_shape.iter().product();
        let mut dout = vec![T::zero(); n * o_len];
        for (part, dp) in dparts.iter().enumerate() {
            let idx = &p.out_idx[part * d..(part + 1) * d];
            for (row, g) in dout.chunks_exact_mut(o_len).zip(dp.chunks_exact(d)) {
                for (&k, &v) in idx.iter().zip(g) {
                    row[k] += v;
                }
            }
        }
        let mut oshape = vec![n];
        oshape.extend_from_slice(&p.cond_out_shape);
        let dnet = self.net.backward(c.net, &Tensor::new(&oshape, dout)?)?;
        let mut dx = self.scatter_b(dz, &dxb);
        let s_len = dz.sample_len();
        let in_len = dnet.x.sample_len();
        for (xs, cs) in dx
            .as_mut_slice()
            .chunks_exact_mut(s_len)
            .zip(dnet.x.as_slice().chunks_exact(in_len))
        {
            for &(ci, xi) in &p.a_src {
                xs[xi] += cs[ci];
            }
        }
        Ok(InputGrad {
            x: dx,
            context: dnet.context,
        })
    }

    fn bin_stats(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Option<Vec<BinStats>>> {
        check_input(self, I::KIND, x, cx, &self.partition.sample_shape)?;
        let out = self.net.forward(&self.cond_input(x)?, cx)?;
        let parts = self.split_parts(&out);
        let xb = self.gather_b(x);
        Ok(self.inner.bin_stats(self.partition.b_idx.len(), &xb, &parts))
    }

    fn to_f64(&self) -> Box<dyn Bijector<f64>> {
        Box::new(self.with_net(self.net.to_f64()))
    }

    fn to_dual(&self) -> Box<dyn Bijector<F1>> {
        Box::new(self.with_net(self.net.to_dual()))
    }

    fn to_interval(&self) -> Box<dyn Bijector<Interval>> {
        Box::new(self.with_net(self.net.to_interval()))
    }
}
