//! The rational-quadratic spline as an elementwise transform of a coupling layer (Neural Spline
//! Flows' coupling, [`SplineCoupling`]) or of an autoregressive layer
//! ([`crate::autoregressive::SplineAutoregressive`]).
//!
//! # Formula
//! Each transformed element `x_j` goes through its own monotone rational-quadratic spline (see
//! [`crate::spline`] for the map, its inverse and its derivatives):
//! `z_j = RQS(x_j; theta_j)`, `log|det dz/dx| = sum_j ln RQS'(x_j; theta_j)`, with `theta_j`
//! the `3K - 1` unnormalized widths, heights and interior derivatives that the conditioner
//! returns for element j. Elements outside `(-B, B)` pass unchanged (linear tails) and add 0.
//!
//! **Conditioner layout.** As for every coupling, the conditioner's outputs come in part-major
//! blocks (see [`crate::coupling`]): output `p * |B| + j` is parameter `p` of the j-th transformed
//! element, with `p` in `0..K` the widths, `K..2K` the heights and `2K..3K-1` the derivatives at
//! the interior knots `1..K-1`. (nflows lays the same numbers out element-major: its
//! `params.view(N, |B|, 3K - 1)` is `ours.view(N, 3K - 1, |B|).transpose(1, 2)`.)

use exactflow_kernels::{Real, Result};
use rand::Rng;

use crate::coupling::{Coupling, Inner};
use crate::mask::Mask;
use crate::nets::{Mlp, MlpConfig};
use crate::params::{Param, Params};
use crate::spline::{BinStats, Knots, RqSpline, SplineConfig};

/// The elementwise rational-quadratic spline transform, `3K - 1` conditioner outputs per element.
/// It has no parameters of its own.
#[derive(Clone, Copy, Debug)]
pub struct SplineTransform<T> {
    spline: RqSpline<T>,
}

impl<T: Real> SplineTransform<T> {
    /// The transform of a spline configuration.
    ///
    /// # Errors
    /// [`exactflow_kernels::Error::InvalidArgument`] for an invalid configuration (zero bins, a
    /// tail bound that is not positive, ...; see [`SplineConfig::validate`]).
    pub fn new(cfg: SplineConfig) -> Result<Self> {
        Ok(SplineTransform {
            spline: RqSpline::new(cfg)?,
        })
    }

    /// The spline's configuration.
    pub fn config(&self) -> SplineConfig {
        self.spline.config()
    }

    /// Runs `f(element, knots)` for every element of `n * d` rows, with the knots set from that
    /// element's parameters in `parts`.
    fn each(&self, parts: &[Vec<T>], len: usize, mut f: impl FnMut(usize, &Knots<T>)) {
        let mut knots = self.spline.knots();
        let mut raw = vec![T::zero(); parts.len()];
        for m in 0..len {
            for (r, p) in raw.iter_mut().zip(parts) {
                *r = p[m];
            }
            knots.set(&raw);
            f(m, &knots);
        }
    }
}

impl<T: Real> Params<T> for SplineTransform<T> {
    fn visit_params(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Param<T>)) {}
    fn visit_params_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param<T>)) {}
}

impl<T: Real> Inner<T> for SplineTransform<T> {
    type With<U: Real> = SplineTransform<U>;
    /// The transform's inputs `x_B`.
    type Aux = Vec<T>;
    const KIND: &'static str = "SplineCoupling";
    const CONSTANT: bool = false;

    fn parts(&self) -> usize {
        self.spline.config().params_per_element()
    }

    fn cast<U: Real>(&self) -> SplineTransform<U> {
        SplineTransform {
            spline: self.spline.cast(),
        }
    }

    fn check(&self, _d: usize) -> Result<()> {
        Ok(())
    }

    fn forward(&self, d: usize, xb: &[T], parts: &[Vec<T>], zb: &mut [T], log_det: &mut [T]) -> Result<Vec<T>> {
        self.each(parts, xb.len(), |m, k| {
            let (z, l) = k.forward(xb[m]);
            zb[m] = z;
            log_det[m / d] += l;
        });
        Ok(xb.to_vec())
    }

    fn inverse(&self, d: usize, zb: &[T], parts: &[Vec<T>], xb: &mut [T], log_det: &mut [T]) -> Result<()> {
        self.each(parts, zb.len(), |m, k| {
            let (x, l) = k.inverse(zb[m]);
            xb[m] = x;
            log_det[m / d] += l;
        });
        Ok(())
    }

    fn bin_stats(&self, _d: usize, xb: &[T], parts: &[Vec<T>]) -> Option<Vec<BinStats>> {
        let mut stats = BinStats::for_bins(self.spline.config().bins);
        self.each(parts, xb.len(), |m, k| k.accumulate_stats(xb[m], &mut stats));
        Some(stats)
    }

    fn backward(
        &mut self,
        d: usize,
        aux: Vec<T>,
        parts: &[Vec<T>],
        _zb: &[T],
        dzb: &[T],
        dlog_det: &[T],
    ) -> (Vec<T>, Vec<Vec<T>>) {
        let len = aux.len();
        let mut dx = vec![T::zero(); len];
        let mut dparts = vec![vec![T::zero(); len]; parts.len()];
        let mut draw = vec![T::zero(); parts.len()];
        self.each(parts, len, |m, k| {
            dx[m] = k.backward(aux[m], dzb[m], dlog_det[m / d], &mut draw);
            for (dp, &g) in dparts.iter_mut().zip(&draw) {
                dp[m] = g;
            }
        });
        (dx, dparts)
    }
}

/// Neural Spline Flows' coupling: `z_B = RQS(x_B; NN(x_A))` elementwise, `z_A = x_A`.
pub type SplineCoupling<T> = Coupling<T, SplineTransform<T>>;

impl<T: Real> SplineCoupling<T> {
    /// A spline coupling on `[N, dim]` data with an MLP returning `(3K - 1) |B|` parameters
    /// (part-major, see the module documentation).
    ///
    /// # Errors
    /// As [`Coupling::new`]; an invalid spline configuration.
    pub fn with_mlp(dim: usize, mask: Mask, spline: SplineConfig, mlp: &MlpConfig, rng: &mut impl Rng) -> Result<Self> {
        Self::with_conditional_mlp(dim, mask, 0, spline, mlp, rng)
    }

    /// A conditional spline coupling: the MLP reads `[x_A, c]` with a context `c` of
    /// `context_dim` features (see [`Mlp::conditional`]); `context_dim = 0` is
    /// [`SplineCoupling::with_mlp`].
    ///
    /// # Errors
    /// As [`SplineCoupling::with_mlp`].
    pub fn with_conditional_mlp(
        dim: usize,
        mask: Mask,
        context_dim: usize,
        spline: SplineConfig,
        mlp: &MlpConfig,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let inner = SplineTransform::new(spline)?;
        let p = mask.partition(&[dim], inner.parts())?;
        let net = Mlp::conditional(mlp, p.a_idx.len(), context_dim, inner.parts() * p.b_idx.len(), rng)?;
        Coupling::new(&[dim], mask, Box::new(net), inner)
    }
}
