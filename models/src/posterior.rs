//! The exact-posterior check of a conditional flow `q(theta | x)` trained on a linear-Gaussian
//! simulator, whose posterior `p(theta | x)` is known in closed form
//! ([`crate::data::sim::GaussianLinear::posterior`]).
//!
//! For each held-out observation `x_j` (j = 1..M), with K draws `theta_k ~ p(theta | x_j)`:
//!
//! - **KL.** `KL_j = 1/K sum_k [log p(theta_k | x_j) - log q(theta_k | x_j)]`, a Monte-Carlo
//!   estimate of `KL(p || q) >= 0` (the mean of `log q - log p` over the exact posterior's
//!   draws is `-KL_j`). Reported: the mean over observations and its standard error
//!   `sd(KL_j) / sqrt(M)`, the uncertainty of the expected KL over observations.
//! - **Coverage of highest-density regions.** The flow's level-`a` HPD region at `x_j` is
//!   `{theta : log q(theta | x_j) >= t_a}` with `t_a` the `(1 - a)`-quantile of `log q` over K
//!   draws from the flow itself (so the region holds mass `a` under q). Its coverage is the
//!   fraction of the exact posterior's K draws inside it; a calibrated flow covers `a`, an
//!   overconfident one less. Reported per level: the mean over observations and its standard
//!   error.
//!
//! Randomness: one `ChaCha8Rng::seed_from_u64(seed)` for the whole check; per observation, first
//! the K exact draws, then the K flow draws.

use exactflow_layers::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::sim::GaussianLinear;
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The HPD levels [`check_posterior`] reports.
pub const HPD_LEVELS: [f64; 2] = [0.5, 0.9];

/// The coverage of the flow's HPD region of one level.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Coverage {
    /// The region's mass under the flow (0.5, 0.9).
    pub level: f64,
    /// The mean over observations of the exact posterior's mass inside it.
    pub coverage: f64,
    /// The standard error of that mean.
    pub stderr: f64,
}

/// The result of [`check_posterior`] (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PosteriorCheck {
    /// Held-out observations M.
    pub observations: usize,
    /// Draws per observation K (from the exact posterior, and as many from the flow).
    pub samples_per_observation: usize,
    /// The mean over observations of the Monte-Carlo `KL(p || q)`, nats.
    pub kl: f64,
    /// Its standard error over observations, nats.
    pub kl_stderr: f64,
    /// The coverage of the flow's HPD regions, one entry per [`HPD_LEVELS`] level.
    pub coverage: Vec<Coverage>,
}

/// Mean and standard error of the mean (0 for a single value).
fn mean_stderr(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Checks the conditional flow `q(theta | x)` against the exact posterior of `sim` at each row
/// of `observations` (`[M, d]`), with `samples` draws per observation (see the module
/// documentation).
///
/// # Errors
/// [`Error::Config`] for no observations, fewer than 2 samples, or a flow that does not model
/// the simulator's `theta` given its `x` (data shape `[d]`, context width `d`); the flow's
/// errors (a non-finite log-density at an exact draw is an error naming the observation).
pub fn check_posterior(
    flow: &Flow<f64>,
    sim: &GaussianLinear,
    observations: &Tensor<f64>,
    samples: usize,
    seed: u64,
) -> Result<PosteriorCheck> {
    let d = sim.dim;
    if flow.data_shape() != [d] || flow.context_dim() != d {
        return Err(Error::Config(format!(
            "the exact-posterior check needs a flow of theta [{d}] given x [{d}], found data {:?} and context width {}",
            flow.data_shape(),
            flow.context_dim()
        )));
    }
    observations.expect_shape("check_posterior", &[observations.batch(), d])?;
    let m = observations.batch();
    if m == 0 || samples < 2 {
        return Err(Error::Config(format!(
            "the exact-posterior check needs at least one observation and 2 samples, found {m} and {samples}"
        )));
    }
    crate::memory::check(
        || format!("drawing {samples} posterior samples of dimension {d}"),
        crate::memory::bytes(&[samples, 2 * d + 4], 8),
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kls = Vec::with_capacity(m);
    let mut covered = vec![Vec::with_capacity(m); HPD_LEVELS.len()];
    for (j, x) in observations.as_slice().chunks_exact(d).enumerate() {
        let post = sim.posterior(x)?;
        let exact: Vec<f64> = (0..samples).flat_map(|_| post.sample(&mut rng)).collect();
        let exact = Tensor::new(&[samples, d], exact)?;
        let ctx = Tensor::new(&[samples, d], x.repeat(samples))?;
        let lq = flow.log_prob(&exact, Some(&ctx))?;
        if let Some(k) = lq.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "observation {j}: the flow's log-density at exact posterior draw {k} is {}",
                lq[k]
            )));
        }
        let kl = exact
            .as_slice()
            .chunks_exact(d)
            .zip(&lq)
            .map(|(t, q)| post.log_prob(t) - q)
            .sum::<f64>()
            / samples as f64;
        kls.push(kl);
        let (_, mut lq_flow) = flow.sample_and_log_prob(samples, 1.0, &mut rng, Some(&ctx))?;
        lq_flow.sort_by(f64::total_cmp);
        for (level, cov) in HPD_LEVELS.iter().zip(&mut covered) {
            // The (1 - level)-quantile of log q under q: the region above it holds `level`.
            let k = (((1.0 - level) * samples as f64).floor() as usize).min(samples - 1);
            let t = lq_flow[k];
            cov.push(lq.iter().filter(|&&v| v >= t).count() as f64 / samples as f64);
        }
    }
    let (kl, kl_stderr) = mean_stderr(&kls);
    let coverage = HPD_LEVELS
        .iter()
        .zip(&covered)
        .map(|(&level, c)| {
            let (coverage, stderr) = mean_stderr(c);
            Coverage {
                level,
                coverage,
                stderr,
            }
        })
        .collect();
    Ok(PosteriorCheck {
        observations: m,
        samples_per_observation: samples,
        kl,
        kl_stderr,
        coverage,
    })
}
