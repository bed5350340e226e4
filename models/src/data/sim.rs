//! Seeded simulators for simulation-based inference: pairs `(theta, x)` drawn from a prior and a
//! simulator, on which a conditional flow learns the posterior `q(theta | x)`. In the data set a
//! simulator returns, `data` holds theta `[N, d]` (what the flow models) and `context` holds x
//! `[N, d_x]` (what it conditions on).
//!
//! | spec | prior | simulator | posterior |
//! |---|---|---|---|
//! | `sim:gaussian-linear` | `theta ~ N(0, I_2)` | `x = A theta + sigma eps`, `eps ~ N(0, I_2)`, `A = [[1, 0.5], [-0.3, 0.8]]`, `sigma = 0.3` | Gaussian, closed form (below) |
//! | `sim:gaussian-linear-10` | `theta ~ N(0, I_10)` | `x = A theta + sigma eps`, `A_ij = delta_ij + 0.3 cos(1 + i + 2j)` (0-based), `sigma = 0.5` | Gaussian, closed form |
//! | `sim:two-moons` | `theta ~ U(-1, 1)^2` | `a ~ U(-pi/2, pi/2)`, `r ~ N(0.1, 0.01^2)`, `x = (r cos a + 0.25 - abs(theta_1 + theta_2) / sqrt 2, r sin a + (theta_2 - theta_1) / sqrt 2)` | bimodal crescents (sbi's benchmark task) |
//!
//! **The linear-Gaussian posterior.** With `theta ~ N(0, I)` and `x | theta ~ N(A theta,
//! sigma^2 I)`, the posterior is `N(mu, S)` with precision `P = S^-1 = I + A^T A / sigma^2` and
//! mean `mu = S A^T x / sigma^2` ([`GaussianLinear::posterior`]); so `log p(theta | x) =
//! -d/2 ln(2 pi) + 1/2 ln det P - 1/2 (theta - mu)^T P (theta - mu)`.
//!
//! **Randomness.** One `ChaCha8Rng::seed_from_u64(seed)` per call; normals from
//! `rand_distr::StandardNormal`, uniforms the top 53 bits of a `u64`. Each pair draws its theta
//! and then its x (for two moons: theta_1, theta_2, a, r), so the output is reproducible bit for
//! bit for a seed on a platform (the trigonometric functions come from the platform's libm).

use std::f64::consts::PI;

use exactflow_layers::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::Dataset;
use super::random::uniform;
use crate::error::{Error, Result};

/// One of the built-in simulators (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimKind {
    /// `sim:gaussian-linear`: 2-D linear Gaussian with a closed-form posterior.
    GaussianLinear,
    /// `sim:gaussian-linear-10`: 10-D linear Gaussian with a closed-form posterior.
    GaussianLinear10,
    /// `sim:two-moons`: sbi's two-moons task.
    TwoMoons,
}

impl SimKind {
    /// Every simulator.
    pub const ALL: [SimKind; 3] = [SimKind::GaussianLinear, SimKind::GaussianLinear10, SimKind::TwoMoons];

    /// The name after `sim:` in a spec.
    pub fn name(self) -> &'static str {
        match self {
            SimKind::GaussianLinear => "gaussian-linear",
            SimKind::GaussianLinear10 => "gaussian-linear-10",
            SimKind::TwoMoons => "two-moons",
        }
    }

    /// The dimension of theta (the modelled variable).
    pub fn theta_dim(self) -> usize {
        match self {
            SimKind::GaussianLinear | SimKind::TwoMoons => 2,
            SimKind::GaussianLinear10 => 10,
        }
    }

    /// The exact posterior's model, for the linear-Gaussian tasks.
    pub fn gaussian(self) -> Option<GaussianLinear> {
        match self {
            SimKind::GaussianLinear => Some(GaussianLinear::new(2, vec![1.0, 0.5, -0.3, 0.8], 0.3)),
            SimKind::GaussianLinear10 => {
                let d = 10;
                let a = (0..d * d)
                    .map(|k| {
                        let (i, j) = (k / d, k % d);
                        f64::from(u8::from(i == j)) + 0.3 * (1.0 + i as f64 + 2.0 * j as f64).cos()
                    })
                    .collect();
                Some(GaussianLinear::new(d, a, 0.5))
            }
            SimKind::TwoMoons => None,
        }
    }

    /// `n` pairs from `seed`: theta `[n, d]` as the data, x `[n, d_x]` as the context. The data
    /// set is named `sim:{name}`.
    ///
    /// # Errors
    /// [`Error::Config`] for `n = 0` or `n` above [`super::toy::MAX_SAMPLES`].
    pub fn simulate(self, n: usize, seed: u64) -> Result<Dataset> {
        if n == 0 || n > super::toy::MAX_SAMPLES {
            return Err(Error::Config(format!(
                "simulator {}: expected 1..={} pairs, found {n}",
                self.name(),
                super::toy::MAX_SAMPLES
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = self.theta_dim();
        let mut theta = Vec::with_capacity(n * d);
        let mut x = Vec::with_capacity(n * d);
        for _ in 0..n {
            let t = self.prior(&mut rng);
            x.extend(self.observe(&t, &mut rng));
            theta.extend(t);
        }
        let data = Dataset::new(format!("sim:{}", self.name()), Tensor::new(&[n, d], theta)?, None, None)?;
        data.with_context(Tensor::new(&[n, d], x)?)
    }

    /// One draw of theta from the prior.
    pub fn prior(self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        match self {
            SimKind::GaussianLinear | SimKind::GaussianLinear10 => {
                (0..self.theta_dim()).map(|_| rng.sample(StandardNormal)).collect()
            }
            SimKind::TwoMoons => (0..2).map(|_| 2.0 * uniform(rng) - 1.0).collect(),
        }
    }

    /// One draw of x given theta.
    pub fn observe(self, theta: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
        match self.gaussian() {
            Some(g) => {
                let mut x = g.mean_x(theta);
                for v in &mut x {
                    *v += g.sigma * rng.sample::<f64, _>(StandardNormal);
                }
                x
            }
            None => {
                let a = PI * uniform(rng) - PI / 2.0;
                let r = 0.1 + 0.01 * rng.sample::<f64, _>(StandardNormal);
                let s = std::f64::consts::FRAC_1_SQRT_2;
                vec![
                    r * a.cos() + 0.25 - (theta[0] + theta[1]).abs() * s,
                    r * a.sin() + (theta[1] - theta[0]) * s,
                ]
            }
        }
    }
}

/// The linear-Gaussian simulator `x = A theta + sigma eps` with `theta ~ N(0, I_d)`.
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianLinear {
    /// The dimension d of theta and of x.
    pub dim: usize,
    /// `A`, `[d, d]` row-major.
    pub a: Vec<f64>,
    /// The noise standard deviation.
    pub sigma: f64,
}

/// A Gaussian `N(mean, cov)` with its Cholesky factors, for exact log-densities and draws.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    /// The mean.
    pub mean: Vec<f64>,
    /// The covariance `S`, `[d, d]` row-major.
    pub cov: Vec<f64>,
    /// The lower Cholesky factor `L` of the covariance (`S = L L^T`), row-major.
    pub chol: Vec<f64>,
    /// The precision `P = S^-1`, row-major.
    pub precision: Vec<f64>,
    /// `ln det P`.
    pub log_det_precision: f64,
}

/// The lower Cholesky factor of a symmetric positive-definite `[d, d]` matrix.
fn cholesky(m: &[f64], d: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            if i == j {
                let v = m[i * d + i] - s;
                if v.is_nan() || v <= 0.0 {
                    return Err(Error::Config(format!("matrix not positive definite at pivot {i}")));
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = (m[i * d + j] - s) / l[j * d + j];
            }
        }
    }
    Ok(l)
}

/// `M^-1` of a symmetric positive-definite matrix with Cholesky factor `l` (solves on the
/// identity's columns).
fn spd_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for c in 0..d {
        // L y = e_c, then L^T z = y.
        let mut y = vec![0.0; d];
        for i in 0..d {
            let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
            y[i] = (f64::from(u8::from(i == c)) - s) / l[i * d + i];
        }
        let mut z = vec![0.0; d];
        for i in (0..d).rev() {
            let s: f64 = (i + 1..d).map(|k| l[k * d + i] * z[k]).sum();
            z[i] = (y[i] - s) / l[i * d + i];
        }
        for i in 0..d {
            inv[i * d + c] = z[i];
        }
    }
    inv
}

impl GaussianLinear {
    fn new(dim: usize, a: Vec<f64>, sigma: f64) -> Self {
        GaussianLinear { dim, a, sigma }
    }

    /// `A theta`.
    pub fn mean_x(&self, theta: &[f64]) -> Vec<f64> {
        let d = self.dim;
        (0..d)
            .map(|i| (0..d).map(|j| self.a[i * d + j] * theta[j]).sum())
            .collect()
    }

    /// The exact posterior `p(theta | x) = N(mu, S)`: `P = I + A^T A / sigma^2`, `S = P^-1`,
    /// `mu = S A^T x / sigma^2`.
    ///
    /// # Errors
    /// [`Error::Config`] for an `x` of the wrong length or with NaN/infinity.
    pub fn posterior(&self, x: &[f64]) -> Result<Gaussian> {
        let d = self.dim;
        if x.len() != d || x.iter().any(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "an observation of this simulator has {d} finite values, found {x:?}"
            )));
        }
        let s2 = self.sigma * self.sigma;
        let mut p = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                let ata: f64 = (0..d).map(|k| self.a[k * d + i] * self.a[k * d + j]).sum();
                p[i * d + j] = f64::from(u8::from(i == j)) + ata / s2;
            }
        }
        let lp = cholesky(&p, d)?;
        let cov = spd_inverse(&lp, d);
        let atx: Vec<f64> = (0..d)
            .map(|i| (0..d).map(|k| self.a[k * d + i] * x[k]).sum::<f64>() / s2)
            .collect();
        let mean = (0..d).map(|i| (0..d).map(|j| cov[i * d + j] * atx[j]).sum()).collect();
        let chol = cholesky(&cov, d)?;
        let log_det_precision = 2.0 * (0..d).map(|i| lp[i * d + i].ln()).sum::<f64>();
        Ok(Gaussian {
            mean,
            cov,
            chol,
            precision: p,
            log_det_precision,
        })
    }
}

impl Gaussian {
    /// The dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `(theta - mu)^T P (theta - mu)`, the squared Mahalanobis distance.
    pub fn mahalanobis2(&self, theta: &[f64]) -> f64 {
        let d = self.dim();
        let r: Vec<f64> = theta.iter().zip(&self.mean).map(|(t, m)| t - m).collect();
        (0..d)
            .map(|i| r[i] * (0..d).map(|j| self.precision[i * d + j] * r[j]).sum::<f64>())
            .sum()
    }

    /// `log N(theta; mu, S) = -d/2 ln(2 pi) + 1/2 ln det P - 1/2 (theta - mu)^T P (theta - mu)`.
    pub fn log_prob(&self, theta: &[f64]) -> f64 {
        let d = self.dim() as f64;
        -0.5 * d * (2.0 * PI).ln() + 0.5 * self.log_det_precision - 0.5 * self.mahalanobis2(theta)
    }

    /// One draw `mu + L z`, `z ~ N(0, I)`.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Vec<f64> {
        let d = self.dim();
        let z: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        (0..d)
            .map(|i| self.mean[i] + (0..=i).map(|k| self.chol[i * d + k] * z[k]).sum::<f64>())
            .collect()
    }

    /// Points of the 2-D contour at Mahalanobis radius `k` (`mu + k L (cos t, sin t)`), `m`
    /// points; empty for another dimension.
    pub fn contour(&self, k: f64, m: usize) -> Vec<[f64; 2]> {
        if self.dim() != 2 {
            return Vec::new();
        }
        let l = &self.chol;
        (0..=m)
            .map(|i| {
                let t = 2.0 * PI * i as f64 / m.max(1) as f64;
                let (c, s) = (k * t.cos(), k * t.sin());
                [self.mean[0] + l[0] * c, self.mean[1] + l[2] * c + l[3] * s]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulations_are_seeded_pairs() {
        for kind in SimKind::ALL {
            let a = kind.simulate(50, 7).unwrap();
            assert_eq!(a, kind.simulate(50, 7).unwrap());
            assert_ne!(a, kind.simulate(50, 8).unwrap());
            assert_eq!(a.data.shape(), &[50, kind.theta_dim()]);
            assert_eq!(a.context_dim(), kind.theta_dim());
            assert_eq!(a.name, format!("sim:{}", kind.name()));
        }
        assert!(SimKind::TwoMoons.simulate(0, 0).is_err());
    }

    /// The closed-form posterior against Bayes' rule evaluated directly: `log p(theta | x) -
    /// [log p(theta) + log p(x | theta)]` is the same constant (`-log p(x)`) at every theta, to
    /// 1e-12 (a few roundings of O(10) terms).
    #[test]
    fn the_posterior_is_bayes_rule() {
        for kind in [SimKind::GaussianLinear, SimKind::GaussianLinear10] {
            let g = kind.gaussian().unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let theta0 = kind.prior(&mut rng);
            let x = kind.observe(&theta0, &mut rng);
            let post = g.posterior(&x).unwrap();
            let d = g.dim as f64;
            let joint = |t: &[f64]| {
                let prior = -0.5 * d * (2.0 * PI).ln() - 0.5 * t.iter().map(|v| v * v).sum::<f64>();
                let m = g.mean_x(t);
                let r2: f64 = x.iter().zip(&m).map(|(a, b)| (a - b) * (a - b)).sum();
                let lik = -0.5 * d * (2.0 * PI * g.sigma * g.sigma).ln() - 0.5 * r2 / (g.sigma * g.sigma);
                prior + lik
            };
            let c0 = post.log_prob(&theta0) - joint(&theta0);
            for _ in 0..20 {
                let t = kind.prior(&mut rng);
                let c = post.log_prob(&t) - joint(&t);
                assert!((c - c0).abs() <= 1e-12 * (1.0 + c0.abs()), "{c} vs {c0}");
            }
            // S P = I.
            let n = g.dim;
            for i in 0..n {
                for j in 0..n {
                    let v: f64 = (0..n).map(|k| post.cov[i * n + k] * post.precision[k * n + j]).sum();
                    assert!((v - f64::from(u8::from(i == j))).abs() < 1e-12);
                }
            }
        }
    }

    /// Draws from the posterior have its mean and covariance (20000 draws: each moment's
    /// standard error is below 0.01 of the scale, the bound is 5 of them).
    #[test]
    fn posterior_draws_have_its_moments() {
        let g = SimKind::GaussianLinear.gaussian().unwrap();
        let post = g.posterior(&[0.3, -1.2]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let n = 20_000;
        let draws: Vec<Vec<f64>> = (0..n).map(|_| post.sample(&mut rng)).collect();
        for i in 0..2 {
            let m = draws.iter().map(|t| t[i]).sum::<f64>() / n as f64;
            let sd = post.cov[i * 2 + i].sqrt();
            assert!(
                (m - post.mean[i]).abs() < 5.0 * sd / (n as f64).sqrt(),
                "{m} vs {}",
                post.mean[i]
            );
        }
        // The squared Mahalanobis distance of a 2-D Gaussian is chi^2_2: P(r^2 <= 1) = 1 - e^-1/2.
        let inside = draws.iter().filter(|t| post.mahalanobis2(t) <= 1.0).count() as f64 / n as f64;
        let want = 1.0 - (-0.5f64).exp();
        assert!((inside - want).abs() < 5.0 * (want * (1.0 - want) / n as f64).sqrt());
    }
}
