//! Masked autoregressive flow (Papamakarios, Pavlakou, Murray, 2017) for vector data.
//!
//! `layers` times: a fixed permutation of the coordinates, then an affine autoregressive layer
//! `z_i = x_i exp(s_i) + t_i` with `(h_i, t_i) = MADE(x_{<i})` and `s_i = scale_i tanh(h_i)`
//! (see [`exactflow_layers::autoregressive`]); standard normal prior. Scoring is one MADE pass
//! per layer, sampling D passes. The same configuration builds the inverse autoregressive flow
//! ([`crate::iaf`]), whose layers run the other way.
//!
//! Stage order: `[Logit]`, then for each layer k a `Permutation` and the autoregressive layer.
//! With the `alternate` permutation (the default), layer k's permutation is a fixed random one
//! for even k and the reversal for odd k; the random ones are drawn from the model's seed and
//! stored in the checkpoint (`perm`).

use exactflow_kernels::Real;
use exactflow_layers::autoregressive::{AffineAutoregressive, Direction};
use exactflow_layers::coupling::Affine;
use exactflow_layers::distributions::StandardNormal;
use exactflow_layers::logit::Logit;
use exactflow_layers::nets::{Activation, Made, MadeConfig};
use exactflow_layers::{Permutation, Stage, layer};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::count;
use crate::embedding::{ContextEmbedding, count_optional, stage_context_dim};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The presets of the "maf" family (see [`crate::ModelConfig::preset`]).
pub const PRESETS: [&str; 2] = ["toy", "digits"];

/// The coordinate permutation before each autoregressive layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArPermutation {
    /// A fixed random permutation before even layers, the reversal before odd ones.
    Alternate,
    /// The reversal before every layer.
    Reverse,
    /// A fixed random permutation (a new one) before every layer.
    Random,
    /// No permutation: every layer uses the data's order.
    None,
}

/// A masked autoregressive flow (MAF) or, as family "iaf", an inverse autoregressive flow: the
/// same architecture, run in the other direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MafConfig {
    /// Data dimension D (at least 1).
    pub dim: usize,
    /// Number of autoregressive layers.
    pub layers: usize,
    /// Hidden widths of each layer's MADE.
    pub hidden: Vec<usize>,
    /// Residual blocks of each MADE after its hidden layers (0: a plain masked MLP).
    #[serde(default)]
    pub residual_blocks: usize,
    /// Activation of the MADEs.
    pub activation: Activation,
    /// The permutation before each layer.
    pub permutation: ArPermutation,
    /// Logit preprocessing for data in [0, 1), if set.
    pub logit_alpha: Option<f64>,
    /// Seed of the parameter initialization and of the random permutations.
    pub seed: u64,
    /// Width C of the context `c` of a conditional flow `p(x | c)` (0: unconditional). Each MADE
    /// reads it through `net.context.weight` (see FORMAT.md, "Conditional flows").
    #[serde(default)]
    pub context_dim: usize,
    /// An optional context embedding `e = E(c)` (an MLP `C -> hidden... -> dim`, see
    /// [`crate::embedding`]): the conditioners then read `e` (width `dim`) in place of `c`.
    /// Absent by default (and not written when absent, so configs without one read as before);
    /// only for a conditional model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_embedding: Option<ContextEmbedding>,
}

/// Checks an autoregressive configuration without building it.
///
/// # Errors
/// [`Error::Config`] naming the first impossible setting.
pub fn validate(model: &str, c: &MafConfig) -> Result<()> {
    crate::checks::check_counts(
        model,
        "autoregressive layers",
        c.layers,
        "hidden layers and residual blocks",
        c.hidden.len().saturating_add(c.residual_blocks),
    )?;
    if c.dim == 0 {
        return Err(Error::Config(format!("{model}: needs D >= 1, found D = 0")));
    }
    if c.layers == 0 {
        return Err(Error::Config(format!("{model}: needs at least one layer")));
    }
    if c.hidden.contains(&0) {
        return Err(Error::Config(format!(
            "{model}: hidden widths must be positive, found {:?}",
            c.hidden
        )));
    }
    if c.residual_blocks > 0 && c.hidden.is_empty() {
        return Err(Error::Config(format!(
            "{model}: residual blocks need at least one hidden layer"
        )));
    }
    if let Some(e) = &c.context_embedding {
        e.validate(model, c.context_dim)?;
    }
    crate::checks::check_logit(model, c.logit_alpha)
}

/// The number of real-valued parameters of a MAF or IAF (see
/// [`crate::ModelConfig::parameter_count`]): per layer a MADE with two outputs per coordinate
/// and the `[D]` `scale`. Permutations are integer state and not counted.
pub fn parameter_count(c: &MafConfig) -> Option<u64> {
    let d = c.dim as u64;
    let made = count::made(d, &c.hidden, c.residual_blocks, 2)?;
    let stage_context = stage_context_dim(c.context_dim, c.context_embedding.as_ref());
    let context = count::made_context(&c.hidden, count::mul(2, d)?, stage_context)?;
    let per_layer = count::add(count::add(made, context)?, d)?;
    let embedding = count_optional(c.context_dim, c.context_embedding.as_ref())?;
    count::add(count::mul(c.layers as u64, per_layer)?, embedding)
}

/// The MADE of every layer: the configured widths, the last layer zero so each layer starts as
/// the identity.
fn made_config(c: &MafConfig) -> MadeConfig {
    MadeConfig {
        hidden: c.hidden.clone(),
        residual_blocks: c.residual_blocks,
        activation: c.activation,
        zero_last: true,
    }
}

/// The permutation stage before layer `k`, if any.
pub(crate) fn permutation_stage<T: Real>(
    kind: ArPermutation,
    k: usize,
    dim: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Option<Box<dyn Stage<T>>>> {
    let random = |rng: &mut ChaCha8Rng| Permutation::<T>::shuffle(&[dim], rng.next_u64());
    Ok(match kind {
        ArPermutation::None => None,
        ArPermutation::Reverse => Some(layer(Permutation::<T>::reverse(&[dim])?)),
        ArPermutation::Random => Some(layer(random(rng)?)),
        ArPermutation::Alternate if k.is_multiple_of(2) => Some(layer(random(rng)?)),
        ArPermutation::Alternate => Some(layer(Permutation::<T>::reverse(&[dim])?)),
    })
}

/// Builds the flow in `direction` (MAF or IAF).
pub(crate) fn build_with<T: Real>(model: &str, c: &MafConfig, direction: Direction) -> Result<Flow<T>> {
    validate(model, c)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages: Vec<Box<dyn Stage<T>>> = Vec::new();
    if let Some(alpha) = c.logit_alpha {
        stages.push(layer(Logit::<T>::new(&[c.dim], alpha)?));
    }
    let made = made_config(c);
    let stage_context = stage_context_dim(c.context_dim, c.context_embedding.as_ref());
    for k in 0..c.layers {
        if let Some(p) = permutation_stage(c.permutation, k, c.dim, &mut rng)? {
            stages.push(p);
        }
        let net = Made::new(&made, c.dim, 2, stage_context, &mut rng)?;
        stages.push(layer(AffineAutoregressive::<T>::new(
            net,
            Affine::new(c.dim)?,
            direction,
        )?));
    }
    crate::embedding::finish(
        Flow::new(stages, Box::new(StandardNormal), &[c.dim])?.with_context_dim(c.context_dim),
        model,
        c.context_embedding.as_ref(),
        c.activation,
        c.seed,
    )
}

/// Builds a MAF from its config.
///
/// # Errors
/// [`Error::Config`] for impossible settings (see [`validate`]).
pub fn build<T: Real>(c: &MafConfig) -> Result<Flow<T>> {
    build_with("maf", c, Direction::Maf)
}

/// A MAF (or IAF) preset for `[dim]` data:
///
/// | preset | architecture |
/// |---|---|
/// | `toy` | 10 layers, MADE 2 x 256 ReLU, alternating random and reverse permutations (the flowrs / nflows two-moons comparison) |
/// | `digits` | 5 layers, MADE 2 x 256 ReLU, alternating permutations, logit 0.05 |
///
/// # Errors
/// [`Error::Config`] for an unknown preset.
pub fn preset(family: &str, preset: &str, dim: usize, seed: u64) -> Result<MafConfig> {
    let (layers, hidden, logit_alpha) = match preset {
        "toy" => (10, vec![256, 256], None),
        "digits" => (5, vec![256, 256], Some(0.05)),
        _ => {
            return Err(Error::Config(format!(
                "unknown {family} preset {preset:?}; known: {}",
                PRESETS.join(", ")
            )));
        }
    };
    Ok(MafConfig {
        dim,
        layers,
        hidden,
        residual_blocks: 0,
        activation: Activation::Relu,
        permutation: ArPermutation::Alternate,
        logit_alpha,
        seed,
        context_dim: 0,
        context_embedding: None,
    })
}
