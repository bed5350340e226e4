//! RealNVP for vector data: affine couplings `z_B = x_B * exp(s(x_A)) + t(x_A)` with
//! `s = scale * tanh(h)`, alternating masks, optional batch normalization between couplings
//! (Dinh, Sohl-Dickstein, Bengio, 2016). Standard normal prior.

use exactflow_kernels::Real;
use exactflow_layers::batchnorm::BatchNorm;
use exactflow_layers::distributions::StandardNormal;
use exactflow_layers::logit::Logit;
use exactflow_layers::nets::Activation;
use exactflow_layers::{AffineCoupling, Mask, MaskKind, layer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::{check_vector, count, coupling_mlp};
use crate::embedding::{ContextEmbedding, count_optional, stage_context_dim};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The vector presets of the "realnvp" family (see [`crate::ModelConfig::preset`]).
pub const PRESETS: [&str; 3] = ["toy", "digits", "digits-bn"];

/// RealNVP (Dinh et al., 2016) for vector data: affine couplings with tanh-bounded scales and
/// alternating masks, optionally with batch normalization between couplings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealNvpConfig {
    /// Data dimension D.
    pub dim: usize,
    /// Number of affine coupling layers.
    pub couplings: usize,
    /// Hidden widths of each coupling's MLP returning `(h, t)`.
    pub hidden: Vec<usize>,
    /// Activation of the MLPs.
    pub activation: Activation,
    /// Partition pattern; successive couplings flip it.
    pub mask: MaskKind,
    /// Batch normalization after every coupling but the last.
    pub batch_norm: bool,
    /// Logit preprocessing for data in [0, 1), if set.
    pub logit_alpha: Option<f64>,
    /// Seed of the parameter initialization.
    pub seed: u64,
    /// Width C of the context `c` of a conditional flow `p(x | c)` (0: unconditional). Every
    /// conditioner reads the context (see FORMAT.md, "Conditional flows").
    #[serde(default)]
    pub context_dim: usize,
    /// An optional context embedding `e = E(c)` (an MLP `C -> hidden... -> dim`, see
    /// [`crate::embedding`]): the conditioners then read `e` (width `dim`) in place of `c`.
    /// Absent by default (and not written when absent, so configs without one read as before);
    /// only for a conditional model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_embedding: Option<ContextEmbedding>,
}

/// Checks a vector RealNVP configuration without building it.
///
/// # Errors
/// [`Error::Config`] naming the first impossible setting (the context embedding's included).
pub fn validate(c: &RealNvpConfig) -> Result<()> {
    check_vector("realnvp", c.dim, c.couplings, &c.hidden, c.logit_alpha)?;
    match &c.context_embedding {
        Some(e) => e.validate("realnvp", c.context_dim),
        None => Ok(()),
    }
}

/// Builds a vector RealNVP from its config.
///
/// # Errors
/// [`Error::Config`] for impossible settings (see [`validate`]).
pub fn build<T: Real>(c: &RealNvpConfig) -> Result<Flow<T>> {
    validate(c)?;
    let stage_context = stage_context_dim(c.context_dim, c.context_embedding.as_ref());
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages = Vec::new();
    if let Some(alpha) = c.logit_alpha {
        stages.push(layer(Logit::<T>::new(&[c.dim], alpha)?));
    }
    let mlp = coupling_mlp(&c.hidden, c.activation);
    for k in 0..c.couplings {
        let mask = Mask::new(c.mask, k % 2 == 1);
        stages.push(layer(AffineCoupling::<T>::with_conditional_mlp(
            c.dim,
            mask,
            stage_context,
            &mlp,
            &mut rng,
        )?));
        if c.batch_norm && k + 1 < c.couplings {
            stages.push(layer(BatchNorm::<T>::new(&[c.dim])?));
        }
    }
    crate::embedding::finish(
        Flow::new(stages, Box::new(StandardNormal), &[c.dim])?.with_context_dim(c.context_dim),
        "realnvp",
        c.context_embedding.as_ref(),
        c.activation,
        c.seed,
    )
}

/// The number of real-valued parameters and buffers the model of `c` has (every tensor a
/// checkpoint stores as F32 or F64), from the config alone; `None` when it overflows a `u64`.
pub fn parameter_count(c: &RealNvpConfig) -> Option<u64> {
    let d = c.dim as u64;
    let mut n = count_optional(c.context_dim, c.context_embedding.as_ref())?;
    let stage_context = stage_context_dim(c.context_dim, c.context_embedding.as_ref());
    for k in 0..c.couplings {
        let (a, b) = count::vector_parts(d, c.mask, k % 2 == 1);
        // The MLP reads [x_A, c] and returns (h, t); `scale` has one entry per transformed
        // coordinate.
        let inp = count::add(a, stage_context as u64)?;
        n = count::add(n, count::add(count::mlp(inp, &c.hidden, count::mul(2, b)?)?, b)?)?;
        if c.batch_norm && k + 1 < c.couplings {
            n = count::add(n, count::mul(4, d)?)?;
        }
    }
    Some(n)
}

/// A vector RealNVP preset for `[dim]` data (see [`crate::ModelConfig::preset`] for the table).
///
/// # Errors
/// [`Error::Config`] for an unknown preset.
pub fn preset(preset: &str, dim: usize, seed: u64) -> Result<RealNvpConfig> {
    let (couplings, hidden, mask, batch_norm, logit_alpha) = match preset {
        "toy" => (8, vec![128, 128], MaskKind::Halves, false, None),
        "digits" => (6, vec![256, 256], MaskKind::OddEven, false, Some(0.05)),
        "digits-bn" => (6, vec![256, 256], MaskKind::OddEven, true, Some(0.05)),
        _ => {
            return Err(Error::Config(format!(
                "unknown realnvp preset {preset:?}; known: {}, {}",
                PRESETS.join(", "),
                crate::multiscale::PRESETS.join(", ")
            )));
        }
    };
    Ok(RealNvpConfig {
        dim,
        couplings,
        hidden,
        activation: Activation::Relu,
        mask,
        batch_norm,
        logit_alpha,
        seed,
        context_dim: 0,
        context_embedding: None,
    })
}
