//! NICE for vector data: additive couplings with alternating partitions, then the diagonal
//! scaling layer (Dinh, Krueger, Bengio, 2014).
//!
//! `z = exp(s) * g_K(...g_1(x))` with `g_k` additive couplings (log-det 0 each) and the scaling's
//! log-det `sum(s)`; so `log p(x) = sum_d log pi(z_d) + sum(s)`. Without the scaling, NICE would
//! be volume preserving.

use exactflow_kernels::Real;
use exactflow_layers::distributions::{Distribution, StandardLogistic, StandardNormal};
use exactflow_layers::logit::Logit;
use exactflow_layers::nets::Activation;
use exactflow_layers::scaling::Scaling;
use exactflow_layers::{AdditiveCoupling, Mask, MaskKind, layer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::{check_vector, count, coupling_mlp};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The presets of the "nice" family (see [`crate::ModelConfig::preset`]).
pub const PRESETS: [&str; 3] = ["paper", "toy", "digits"];

/// The prior (base distribution) of a vector flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prior {
    /// Standard normal.
    Normal,
    /// Standard logistic (NICE's choice).
    Logistic,
}

/// NICE (Dinh et al., 2014) for vector data: additive couplings with alternating partitions,
/// then the diagonal scaling layer `z = exp(s) * h`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NiceConfig {
    /// Data dimension D.
    pub dim: usize,
    /// Number of additive coupling layers (the paper: 4).
    pub couplings: usize,
    /// Hidden widths of each coupling's MLP `m(x_A)` (the paper: 5 layers of 1000).
    pub hidden: Vec<usize>,
    /// Activation of the MLPs (the paper: ReLU).
    pub activation: Activation,
    /// Partition pattern; successive couplings flip it (the paper: odd/even).
    pub mask: MaskKind,
    /// Base distribution (the paper: logistic).
    pub prior: Prior,
    /// Logit preprocessing `logit(alpha + (1 - 2 alpha) x)` for data in [0, 1), if set.
    pub logit_alpha: Option<f64>,
    /// Seed of the parameter initialization.
    pub seed: u64,
}

/// Builds NICE from its config.
///
/// # Errors
/// [`Error::Config`] for impossible settings.
pub fn build<T: Real>(c: &NiceConfig) -> Result<Flow<T>> {
    check_vector("nice", c.dim, c.couplings, &c.hidden, c.logit_alpha)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages = Vec::new();
    if let Some(alpha) = c.logit_alpha {
        stages.push(layer(Logit::<T>::new(&[c.dim], alpha)?));
    }
    let mlp = coupling_mlp(&c.hidden, c.activation);
    for k in 0..c.couplings {
        let mask = Mask::new(c.mask, k % 2 == 1);
        stages.push(layer(AdditiveCoupling::<T>::with_mlp(c.dim, mask, &mlp, &mut rng)?));
    }
    stages.push(layer(Scaling::<T>::new(&[c.dim])?));
    let base: Box<dyn Distribution<T>> = match c.prior {
        Prior::Normal => Box::new(StandardNormal),
        Prior::Logistic => Box::new(StandardLogistic),
    };
    Flow::new(stages, base, &[c.dim])
}

/// The number of real-valued parameters the model of `c` has (every tensor a checkpoint stores
/// as F32 or F64), from the config alone; `None` when it overflows a `u64`.
pub fn parameter_count(c: &NiceConfig) -> Option<u64> {
    let d = c.dim as u64;
    let mut n = d; // the scaling's s
    for k in 0..c.couplings {
        let (a, b) = count::vector_parts(d, c.mask, k % 2 == 1);
        n = count::add(n, count::mlp(a, &c.hidden, b)?)?;
    }
    Some(n)
}

/// A NICE preset for `[dim]` data (see [`crate::ModelConfig::preset`] for the table).
///
/// # Errors
/// [`Error::Config`] for an unknown preset.
pub fn preset(preset: &str, dim: usize, seed: u64) -> Result<NiceConfig> {
    let (couplings, hidden, mask, prior, logit_alpha) = match preset {
        "paper" => (4, vec![1000; 5], MaskKind::OddEven, Prior::Logistic, None),
        "toy" => (4, vec![128; 3], MaskKind::Halves, Prior::Normal, None),
        "digits" => (4, vec![256; 3], MaskKind::OddEven, Prior::Logistic, Some(0.05)),
        _ => {
            return Err(Error::Config(format!(
                "unknown nice preset {preset:?}; known: {}",
                PRESETS.join(", ")
            )));
        }
    };
    Ok(NiceConfig {
        dim,
        couplings,
        hidden,
        activation: Activation::Relu,
        mask,
        prior,
        logit_alpha,
        seed,
    })
}
