//! Autoregressive layers: masked autoregressive flows (MAF, Papamakarios, Pavlakou, Murray,
//! 2017), their inverse (IAF, Kingma et al., 2016), and the autoregressive rational-quadratic
//! spline of Neural Spline Flows.
//!
//! # Formula
//! A [`Made`] maps `u` (`[N, D]`) to per-element parameters `p_i(u_{<i})` (part-major, see
//! [`crate::nets::Made`]), and an elementwise transform `tau` (the couplings' [`Inner`]: the
//! affine `u exp(s) + t` with `s = scale tanh(h)`, or a spline) gives the one-pass map
//!
//! `Phi(u)_i = tau(u_i; p_i(u_{<i}))`,   `log|det dPhi/du| = sum_i ln tau'(u_i; p_i)`.
//!
//! Its Jacobian is lower triangular (the MADE masks make `p_i` independent of `u_{>=i}`), so the
//! log-det is that sum. The inverse `Phi^-1(v)` takes D passes: `u^(0) = 0`,
//! `u^(k) = tau^-1(v; p(u^(k-1)))`; pass k fixes element k - 1 for good, so `u^(D)` is exact
//! and its parameters `p(u^(D-1)) = p(u^(D))`.
//!
//! | [`Direction`] | forward (data x -> latent z) | inverse (sampling) |
//! |---|---|---|
//! | `Maf` | `z = Phi(x)`: one pass, log-det `sum ln tau'(x_i)` | `x = Phi^-1(z)`: D passes |
//! | `Iaf` | `z = Phi^-1(x)`: D passes, log-det `-sum ln tau'(z_i)` | `x = Phi(z)`: one pass |
//!
//! # Backward
//! `Maf`: the ordinary chain rule through `tau` and the MADE.
//!
//! `Iaf`: the forward pass solves `Phi(z) = x`, so by the implicit function theorem, with
//! `J = dPhi/dz` at the solution and `l(z) = sum ln tau'(z_i)` (the log-det is `-l`), for
//! `L = <gz, z> + gld (-l)`: let `v` solve `J^T v = gz - gld grad l`; then `dL/dx = v` and
//! `dL/dtheta = -(dPhi/dtheta)^T v - gld dl/dtheta` (the same for the context). `J = Delta + N`
//! with `Delta = diag tau'(z_i)` and `N` strictly lower triangular, so the iteration
//! `v <- v + Delta^-1 (gz - VJP(v, gld))`, `VJP(w, c) = J^T w + c grad l` (the one-pass
//! backward at z, input part only), is exact after D steps (its error is multiplied by the
//! nilpotent `-Delta^-1 N^T` each step). The parameter gradients then come from one one-pass
//! backward with `(-v, -gld)`. Cost: D + 1 backward passes of the MADE at one cached forward
//! pass, the price of scoring with an IAF.

use exactflow_kernels::{Real, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::coupling::{Affine, Inner};
use crate::ctx::Ctx;
use crate::nets::{Conditioner, Made, MadeCache, MadeConfig};
use crate::params::{Param, Params, join};
use crate::spline::{BinStats, SplineConfig};
use crate::spline_coupling::SplineTransform;
use crate::tensor::Tensor;

/// Which way an autoregressive layer runs (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Masked autoregressive flow: one pass to score, D passes to sample.
    Maf,
    /// Inverse autoregressive flow: one pass to sample, D passes to score.
    Iaf,
}

/// An autoregressive layer on `[N, D]`: a [`Made`] conditioner, an elementwise transform `I`,
/// and a [`Direction`]. Parameters: the MADE's under `net.` and the transform's (`scale` for the
/// affine one).
pub struct Autoregressive<T: Real, I: Inner<T>> {
    made: Made<T>,
    inner: I,
    direction: Direction,
}

/// MAF / IAF with RealNVP's bounded affine transform `u exp(s) + t`, `s = scale tanh(h)`.
pub type AffineAutoregressive<T> = Autoregressive<T, Affine<T>>;
/// The autoregressive rational-quadratic spline of Neural Spline Flows.
pub type SplineAutoregressive<T> = Autoregressive<T, SplineTransform<T>>;

/// What a training pass keeps: the cached one-pass map at its input `u` (x for MAF, the solved z
/// for IAF).
struct ArCache<T, A> {
    made: MadeCache<T>,
    parts: Vec<Vec<T>>,
    aux: A,
    /// `Phi(u)`.
    out: Vec<T>,
    n: usize,
}

/// A cached one-pass map and its log-det per sample.
type CachedPass<T, A> = (ArCache<T, A>, Vec<T>);

impl<T: Real, I: Inner<T>> Autoregressive<T, I> {
    /// A layer from its MADE and transform.
    ///
    /// # Errors
    /// [`exactflow_kernels::Error::InvalidArgument`] when the MADE does not return the
    /// transform's number of parts, or the transform's parameters do not fit D.
    pub fn new(made: Made<T>, inner: I, direction: Direction) -> Result<Self> {
        if made.parts() != inner.parts() {
            return Err(exactflow_kernels::Error::invalid(
                "Autoregressive::new",
                "made",
                format!(
                    "returns {} parts per element, the transform needs {}",
                    made.parts(),
                    inner.parts()
                ),
            ));
        }
        inner.check(made.dim())?;
        Ok(Autoregressive { made, inner, direction })
    }

    /// The data dimension D.
    pub fn dim(&self) -> usize {
        self.made.dim()
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The MADE conditioner.
    pub fn made(&self) -> &Made<T> {
        &self.made
    }

    /// The elementwise transform.
    pub fn transform(&self) -> &I {
        &self.inner
    }

    fn parts_of(&self, out: &Tensor<T>) -> Vec<Vec<T>> {
        let (d, p) = (self.dim(), self.inner.parts());
        let mut parts = vec![Vec::with_capacity(out.batch() * d); p];
        for row in out.as_slice().chunks_exact(p * d) {
            for (k, part) in parts.iter_mut().enumerate() {
                part.extend_from_slice(&row[k * d..(k + 1) * d]);
            }
        }
        parts
    }

    fn flatten_parts(&self, dparts: &[Vec<T>], n: usize) -> Vec<T> {
        let (d, p) = (self.dim(), self.inner.parts());
        let mut flat = vec![T::zero(); n * p * d];
        for (row, chunk) in flat.chunks_exact_mut(p * d).enumerate() {
            for (k, dp) in dparts.iter().enumerate() {
                chunk[k * d..(k + 1) * d].copy_from_slice(&dp[row * d..(row + 1) * d]);
            }
        }
        flat
    }

    /// `Phi(u)` and its log-det (one MADE pass).
    fn one_pass(&self, u: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        let parts = self.parts_of(&Conditioner::forward(&self.made, u, cx)?);
        let mut out = vec![T::zero(); u.len()];
        let mut ld = vec![T::zero(); u.batch()];
        self.inner
            .forward(self.dim(), u.as_slice(), &parts, &mut out, &mut ld)?;
        Ok((Tensor::new(u.shape(), out)?, ld))
    }

    /// `Phi^-1(v)` and `log|det dPhi^-1/dv|` (D MADE passes).
    fn solve(&self, v: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        let mut u = v.zeros_like();
        let mut ld = vec![T::zero(); v.batch()];
        for k in 0..self.dim() {
            let out = if k == 0 && self.dim() >= 2 && cx.context.is_none() && v.batch() > 1 {
                self.first_pass(v.batch(), cx)?
            } else {
                Conditioner::forward(&self.made, &u, cx)?
            };
            let parts = self.parts_of(&out);
            let mut next = vec![T::zero(); v.len()];
            ld.iter_mut().for_each(|l| *l = T::zero());
            self.inner
                .inverse(self.dim(), v.as_slice(), &parts, &mut next, &mut ld)?;
            u = Tensor::new(v.shape(), next)?;
        }
        Ok((u, ld))
    }

    /// The MADE's output for the first pass of [`Self::solve`] over `n` rows, at `u = 0` without
    /// a context: every row's input is the same, so one row is computed and repeated. This
    /// halves the products of solving a 2-D layer (an IAF's score, a MAF's sample on two
    /// moons). The pass fixes element 0 only, whose parts are the output biases exactly (for
    /// D >= 2 every hidden unit has degree >= 1, so element 0's masked output weights are all
    /// zero, and a sum of zeros is the same zero in any order; for D = 1 the hidden units have
    /// degree 0 and feed element 0, so the pass runs in full); the other elements it returns are
    /// provisional, replaced by later passes, and reach element i only through weights the
    /// masks zero. So the solution keeps the bits of D full passes (tested).
    fn first_pass(&self, n: usize, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        let row = Conditioner::forward(&self.made, &Tensor::zeros(&[1, self.dim()])?, cx)?;
        let mut shape = row.shape().to_vec();
        shape[0] = n;
        Tensor::new(&shape, row.as_slice().repeat(n))
    }

    /// The one-pass map at `u` with everything its backward needs.
    fn one_pass_cached(&self, u: &Tensor<T>, cx: Ctx<'_, T>) -> Result<CachedPass<T, I::Aux>> {
        let (out, made) = self.made.forward_cached(u, cx)?;
        let parts = self.parts_of(&out);
        let mut phi = vec![T::zero(); u.len()];
        let mut ld = vec![T::zero(); u.batch()];
        let aux = self
            .inner
            .forward(self.dim(), u.as_slice(), &parts, &mut phi, &mut ld)?;
        let cache = ArCache {
            made,
            parts,
            aux,
            out: phi,
            n: u.batch(),
        };
        Ok((cache, ld))
    }

    fn kind_name(&self) -> &'static str {
        match (I::KIND, self.direction) {
            ("SplineCoupling", Direction::Maf) => "SplineAutoregressive",
            ("SplineCoupling", Direction::Iaf) => "InverseSplineAutoregressive",
            (_, Direction::Maf) => "MaskedAffineAutoregressive",
            (_, Direction::Iaf) => "InverseAffineAutoregressive",
        }
    }
}

impl<T: Real, I: Inner<T>> Autoregressive<T, I> {
    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Autoregressive<U, I::With<U>> {
        Autoregressive {
            made: self.made.cast(),
            inner: self.inner.cast::<U>(),
            direction: self.direction,
        }
    }

    /// The one-pass backward at a cached point for incoming `(w, dld)`, without touching any
    /// parameter gradient: `J^T w + dld grad l` (and the parameters' part is dropped).
    fn input_vjp(&self, c: &ArCache<T, I::Aux>, w: &[T], dld: &[T]) -> Result<Vec<T>> {
        // A copy of the transform takes the (discarded) gradients of its own parameters.
        let mut inner = self.inner.clone();
        let (mut direct, dparts) = inner.backward(self.dim(), c.aux.clone(), &c.parts, &c.out, w, dld);
        let (through, _) = self.made.input_vjp(&c.made, &self.flatten_parts(&dparts, c.n))?;
        direct.iter_mut().zip(&through).for_each(|(a, &b)| *a += b);
        Ok(direct)
    }

    /// The one-pass backward at a cached point, accumulating parameter gradients.
    fn accumulate(&mut self, c: ArCache<T, I::Aux>, w: &[T], dld: &[T]) -> Result<(Vec<T>, Option<Vec<T>>)> {
        let (mut direct, dparts) = self.inner.backward(self.dim(), c.aux, &c.parts, &c.out, w, dld);
        let flat = self.flatten_parts(&dparts, c.n);
        let (through, dcontext) = self.made.backward_cached(&c.made, &flat)?;
        direct.iter_mut().zip(&through).for_each(|(a, &b)| *a += b);
        Ok((direct, dcontext))
    }

    /// The IAF backward (see the module documentation): D input-only passes for `v`, one
    /// accumulating pass with `(-v, -gld)`.
    fn iaf_backward(&mut self, c: ArCache<T, I::Aux>, gz: &[T], gld: &[T]) -> Result<(Vec<T>, Option<Vec<T>>)> {
        let d = self.dim();
        // Delta = diag tau'(z_i): the direct input gradient for w = 1, dld = 0.
        let mut inner = self.inner.clone();
        let ones = vec![T::one(); gz.len()];
        let zeros = vec![T::zero(); c.n];
        let (delta, _) = inner.backward(d, c.aux.clone(), &c.parts, &c.out, &ones, &zeros);
        let mut v = vec![T::zero(); gz.len()];
        for _ in 0..d {
            let jv = self.input_vjp(&c, &v, gld)?;
            for (((vi, &g), &j), &dl) in v.iter_mut().zip(gz).zip(&jv).zip(&delta) {
                *vi += (g - j) / dl;
            }
        }
        let neg_v: Vec<T> = v.iter().map(|&x| -x).collect();
        let neg_gld: Vec<T> = gld.iter().map(|&x| -x).collect();
        let (_, dcontext) = self.accumulate(c, &neg_v, &neg_gld)?;
        Ok((v, dcontext))
    }
}

impl<T: Real> AffineAutoregressive<T> {
    /// A MAF (or IAF) layer on `[N, dim]` with RealNVP's bounded affine transform and a MADE of
    /// the given shape (`2 D` outputs: `h` then `t`).
    ///
    /// # Errors
    /// As [`Made::new`].
    pub fn affine(dim: usize, made: &MadeConfig, direction: Direction, rng: &mut impl Rng) -> Result<Self> {
        let net = Made::new(made, dim, 2, 0, rng)?;
        Autoregressive::new(net, Affine::new(dim)?, direction)
    }
}

impl<T: Real> SplineAutoregressive<T> {
    /// An autoregressive spline layer on `[N, dim]` with a MADE returning `(3K - 1) D`
    /// parameters (part-major).
    ///
    /// # Errors
    /// As [`Made::new`]; an invalid spline configuration.
    pub fn spline(
        dim: usize,
        spline: SplineConfig,
        made: &MadeConfig,
        direction: Direction,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let inner = SplineTransform::new(spline)?;
        let net = Made::new(made, dim, inner.parts(), 0, rng)?;
        Autoregressive::new(net, inner, direction)
    }
}

impl<T: Real, I: Inner<T>> Params<T> for Autoregressive<T, I> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        self.made.visit_params(&join(prefix, "net"), f);
        self.inner.visit_params(prefix, f);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        self.made.visit_params_mut(&join(prefix, "net"), f);
        self.inner.visit_params_mut(prefix, f);
    }
}

impl<T: Real, I: Inner<T>> Bijector<T> for Autoregressive<T, I> {
    fn kind(&self) -> &'static str {
        self.kind_name()
    }

    fn constant_log_det(&self) -> bool {
        I::CONSTANT
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (vec![self.dim()], vec![self.dim()])
    }

    /// MAF: `z = Phi(x)` (one pass); IAF: `z = Phi^-1(x)` (D passes).
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, self.kind_name(), x, cx, &[self.dim()])?;
        match self.direction {
            Direction::Maf => self.one_pass(x, cx),
            Direction::Iaf => self.solve(x, cx),
        }
    }

    /// MAF: `x = Phi^-1(z)` (D passes); IAF: `x = Phi(z)` (one pass).
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, self.kind_name(), z, cx, &[self.dim()])?;
        match self.direction {
            Direction::Maf => self.solve(z, cx),
            Direction::Iaf => self.one_pass(z, cx),
        }
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, self.kind_name(), x, cx, &[self.dim()])?;
        let (z, ld, cache) = match self.direction {
            Direction::Maf => {
                let (c, ld) = self.one_pass_cached(x, cx)?;
                (Tensor::new(x.shape(), c.out.clone())?, ld, c)
            }
            Direction::Iaf => {
                let (z, _) = self.solve(x, cx)?;
                let (c, ld) = self.one_pass_cached(&z, cx)?;
                (z, ld.iter().map(|&l| -l).collect(), c)
            }
        };
        Ok((z, ld, Cache::new(self.kind_name(), cache)))
    }

    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let c: ArCache<T, I::Aux> = cache.take(self.kind_name())?;
        check_grads(self.kind_name(), dz, dlogdet, &[c.n, self.dim()])?;
        let (dx, dcontext) = match self.direction {
            Direction::Maf => self.accumulate(c, dz.as_slice(), dlogdet)?,
            Direction::Iaf => self.iaf_backward(c, dz.as_slice(), dlogdet)?,
        };
        let context = match dcontext {
            Some(v) => Some(Tensor::new(&[dz.batch(), v.len() / dz.batch().max(1)], v)?),
            None => None,
        };
        Ok(InputGrad {
            x: Tensor::new(dz.shape(), dx)?,
            context,
        })
    }

    fn bin_stats(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Option<Vec<BinStats>>> {
        check_input(self, self.kind_name(), x, cx, &[self.dim()])?;
        // The transform runs at x (MAF) or at the solved latent (IAF), with the MADE's
        // parameters there.
        let u = match self.direction {
            Direction::Maf => x.clone(),
            Direction::Iaf => self.solve(x, cx)?.0,
        };
        let parts = self.parts_of(&Conditioner::forward(&self.made, &u, cx)?);
        Ok(self.inner.bin_stats(self.dim(), u.as_slice(), &parts))
    }

    crate::impl_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::Activation;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `Phi^-1(v)` by D full MADE passes from `u = 0`, as `solve` ran before its first pass
    /// was computed on one row.
    fn solve_in_full<T: Real, I: Inner<T>>(layer: &Autoregressive<T, I>, v: &Tensor<T>) -> Mapped<T> {
        let mut u = v.zeros_like();
        let mut ld = vec![T::zero(); v.batch()];
        for _ in 0..layer.dim() {
            let out = Conditioner::forward(&layer.made, &u, Ctx::NONE).expect("pass");
            let parts = layer.parts_of(&out);
            let mut next = vec![T::zero(); v.len()];
            ld.iter_mut().for_each(|l| *l = T::zero());
            layer
                .inner
                .inverse(layer.dim(), v.as_slice(), &parts, &mut next, &mut ld)
                .expect("inverse");
            u = Tensor::new(v.shape(), next).expect("u");
        }
        (u, ld)
    }

    /// Every parameter drawn from `U(-scale, scale)`, the output layer included (a fresh MAF's
    /// is zero, which would leave the later passes nothing to get wrong).
    fn randomize<T: Real>(layer: &mut dyn Params<T>, rng: &mut ChaCha8Rng, scale: f64) {
        layer.visit_params_mut("", &mut |_, p| {
            p.value
                .as_mut_slice()
                .iter_mut()
                .for_each(|w| *w = T::lit(rng.random_range(-scale..scale)));
        });
    }

    fn bits<T: Real>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.as_f64().to_bits()).collect()
    }

    /// The solve whose first pass runs on one row gives the bits of D full passes: for affine
    /// and spline layers, D = 1 .. 5 (D = 1 keeps the full pass, whose hidden units of degree 0
    /// feed element 0; a one-row pass there changed its bits), ReLU and tanh MADEs (tanh's hidden units may be negative,
    /// so the masked products are signed zeros), zero and random output layers, f32 and f64,
    /// including a fresh layer (zero output weights and biases: element 0's parts are zeros).
    /// With a context the first pass depends on the rows and runs in full (checked by the
    /// conditional flows' own tests).
    #[test]
    fn the_one_row_first_pass_keeps_the_bits_of_full_passes() {
        fn check<T: Real>(rng: &mut ChaCha8Rng) {
            let spline = SplineConfig::new(5, 3.0).expect("spline");
            for dim in 1..=5 {
                for activation in [Activation::Relu, Activation::Tanh] {
                    let made = MadeConfig {
                        hidden: vec![7, 6],
                        residual_blocks: usize::from(dim % 2 == 0),
                        activation,
                        zero_last: true,
                    };
                    let mut affine: AffineAutoregressive<T> =
                        AffineAutoregressive::affine(dim, &made, Direction::Iaf, rng).expect("affine");
                    let mut spl: SplineAutoregressive<T> =
                        SplineAutoregressive::spline(dim, spline, &made, Direction::Iaf, rng).expect("spline");
                    let n = 9;
                    let v: Vec<T> = (0..n * dim).map(|_| T::lit(rng.random_range(-2.5..2.5))).collect();
                    let v = Tensor::new(&[n, dim], v).expect("v");
                    for randomized in [false, true] {
                        if randomized {
                            randomize(&mut affine, rng, 0.8);
                            randomize(&mut spl, rng, 0.8);
                        }
                        let (u, ld) = affine.solve(&v, Ctx::NONE).expect("solve");
                        let (u_full, ld_full) = solve_in_full(&affine, &v);
                        assert_eq!(bits(u.as_slice()), bits(u_full.as_slice()), "affine D = {dim}");
                        assert_eq!(bits(&ld), bits(&ld_full), "affine log-det, D = {dim}");
                        let (u, ld) = spl.solve(&v, Ctx::NONE).expect("solve");
                        let (u_full, ld_full) = solve_in_full(&spl, &v);
                        assert_eq!(bits(u.as_slice()), bits(u_full.as_slice()), "spline D = {dim}");
                        assert_eq!(bits(&ld), bits(&ld_full), "spline log-det, D = {dim}");
                    }
                }
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        check::<f64>(&mut rng);
        check::<f32>(&mut rng);
    }
}
