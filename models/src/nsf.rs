//! Neural spline flows (Durkan, Bekasov, Murray, Papamakarios, 2019) for vector data:
//! rational-quadratic spline couplings or autoregressive splines, each after an LU-parameterized
//! linear layer.
//!
//! Layer k is an `LuLinear` (exactflow's [`Conv1x1Lu`] on `[D]`: `z = P L (U + diag(sign
//! exp(log_s))) x`, log-det `sum log_s`, started at the identity as nflows' `LULinear`), then
//!
//! - `coupling`: a [`SplineCoupling`] `z_B = RQS(x_B; MLP(x_A))` with the configured mask,
//!   swapped on odd k;
//! - `autoregressive`: a [`SplineAutoregressive`] `z_i = RQS(x_i; MADE(x_{<i}))`.
//!
//! Each spline has `bins` bins on `[-tail_bound, tail_bound]` and identity tails (see
//! [`exactflow_layers::spline`]); the conditioner's last layer starts at zero, so every spline
//! starts as the identity. Standard normal prior.
//!
//! Stage order: `[Logit]`, then for each layer k the `Conv1x1Lu` and the spline layer.

use exactflow_kernels::Real;
use exactflow_layers::autoregressive::{Direction, SplineAutoregressive};
use exactflow_layers::coupling::Inner;
use exactflow_layers::distributions::StandardNormal;
use exactflow_layers::logit::Logit;
use exactflow_layers::nets::{Activation, Made, MadeConfig};
use exactflow_layers::spline_coupling::SplineTransform;
use exactflow_layers::{Conv1x1Lu, Mask, MaskKind, SplineConfig, SplineCoupling, Stage, Tensor, layer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::{count, coupling_mlp};
use crate::embedding::{ContextEmbedding, count_optional, stage_context_dim};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The presets of the "nsf" family (see [`crate::ModelConfig::preset`]).
pub const PRESETS: [&str; 5] = ["coupling", "autoregressive", "digits", "digits-autoregressive", "sbi"];

const MODEL: &str = "nsf";

/// How the splines of a neural spline flow are conditioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplineLayer {
    /// Coupling: the spline of `x_B` is a function of `x_A`.
    Coupling,
    /// Autoregressive: the spline of `x_i` is a function of `x_{<i}` (a MADE).
    Autoregressive,
}

/// A neural spline flow for vector data (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NsfConfig {
    /// Data dimension D (at least 2 for couplings, 1 for autoregressive splines).
    pub dim: usize,
    /// Number of layers (each an LU linear layer and a spline layer).
    pub layers: usize,
    /// Coupling or autoregressive splines.
    pub transform: SplineLayer,
    /// Hidden widths of the conditioners (MLP or MADE).
    pub hidden: Vec<usize>,
    /// Activation of the conditioners.
    pub activation: Activation,
    /// The splines: bins, tail bound, minimum bin width, height and derivative.
    pub spline: SplineConfig,
    /// The coupling mask (ignored by autoregressive splines); swapped on odd layers.
    pub mask: MaskKind,
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

/// Checks a configuration without building it.
///
/// # Errors
/// [`Error::Config`] naming the first impossible setting: zero layers, a zero hidden width, a
/// coupling on fewer than 2 dimensions, a spline with zero bins, a tail bound that is not
/// positive, minimum widths that do not fit the bins, ...
pub fn validate(c: &NsfConfig) -> Result<()> {
    crate::checks::check_counts(MODEL, "layers", c.layers, "hidden layers", c.hidden.len())?;
    let min_dim = match c.transform {
        SplineLayer::Coupling => 2,
        SplineLayer::Autoregressive => 1,
    };
    if c.dim < min_dim {
        return Err(Error::Config(format!(
            "{MODEL}: {:?} splines need D >= {min_dim}, found D = {}",
            c.transform, c.dim
        )));
    }
    if c.layers == 0 {
        return Err(Error::Config(format!("{MODEL}: needs at least one layer")));
    }
    if c.hidden.contains(&0) {
        return Err(Error::Config(format!(
            "{MODEL}: hidden widths must be positive, found {:?}",
            c.hidden
        )));
    }
    c.spline
        .validate()
        .map_err(|e| Error::Config(format!("{MODEL}: spline: {e}")))?;
    if let Some(e) = &c.context_embedding {
        e.validate(MODEL, c.context_dim)?;
    }
    crate::checks::check_logit(MODEL, c.logit_alpha)
}

/// The number of real-valued parameters of a neural spline flow (see
/// [`crate::ModelConfig::parameter_count`]): per layer the LU linear layer's `lower`, `upper`
/// (`[D, D]` each) and `log_s` (`[D]`; `sign` and `perm` are integer state), and the spline
/// conditioner with `3K - 1` outputs per transformed coordinate.
pub fn parameter_count(c: &NsfConfig) -> Option<u64> {
    let d = c.dim as u64;
    let parts = count::mul(3, c.spline.bins as u64)?.checked_sub(1)?;
    let lu = count::add(count::mul(2, count::mul(d, d)?)?, d)?;
    let mut n = count_optional(c.context_dim, c.context_embedding.as_ref())?;
    let stage_context = stage_context_dim(c.context_dim, c.context_embedding.as_ref());
    for k in 0..c.layers {
        let net = match c.transform {
            SplineLayer::Coupling => {
                let (a, b) = count::vector_parts(d, c.mask, k % 2 == 1);
                let inp = count::add(a, stage_context as u64)?;
                count::mlp(inp, &c.hidden, count::mul(parts, b)?)?
            }
            SplineLayer::Autoregressive => count::add(
                count::made(d, &c.hidden, 0, parts)?,
                count::made_context(&c.hidden, count::mul(parts, d)?, stage_context)?,
            )?,
        };
        n = count::add(n, count::add(lu, net)?)?;
    }
    Some(n)
}

/// The `[D, D]` identity, the initial weight of every LU linear layer.
fn identity<T: Real>(d: usize) -> Result<Tensor<T>> {
    Ok(Tensor::from_fn(&[d, d], |k| {
        if k / d == k % d { T::one() } else { T::zero() }
    })?)
}

/// Builds a neural spline flow from its config.
///
/// # Errors
/// [`Error::Config`] for impossible settings (see [`validate`]).
pub fn build<T: Real>(c: &NsfConfig) -> Result<Flow<T>> {
    validate(c)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages: Vec<Box<dyn Stage<T>>> = Vec::new();
    if let Some(alpha) = c.logit_alpha {
        stages.push(layer(Logit::<T>::new(&[c.dim], alpha)?));
    }
    let eye = identity::<T>(c.dim)?;
    let stage_context = stage_context_dim(c.context_dim, c.context_embedding.as_ref());
    for k in 0..c.layers {
        stages.push(layer(Conv1x1Lu::<T>::from_weight(&[c.dim], &eye)?));
        match c.transform {
            SplineLayer::Coupling => {
                let mask = Mask::new(c.mask, k % 2 == 1);
                let mlp = coupling_mlp(&c.hidden, c.activation);
                stages.push(layer(SplineCoupling::<T>::with_conditional_mlp(
                    c.dim,
                    mask,
                    stage_context,
                    c.spline,
                    &mlp,
                    &mut rng,
                )?));
            }
            SplineLayer::Autoregressive => {
                let made = MadeConfig {
                    hidden: c.hidden.clone(),
                    residual_blocks: 0,
                    activation: c.activation,
                    zero_last: true,
                };
                let inner = SplineTransform::new(c.spline)?;
                let net = Made::new(&made, c.dim, inner.parts(), stage_context, &mut rng)?;
                stages.push(layer(SplineAutoregressive::<T>::new(net, inner, Direction::Maf)?));
            }
        }
    }
    crate::embedding::finish(
        Flow::new(stages, Box::new(StandardNormal), &[c.dim])?.with_context_dim(c.context_dim),
        MODEL,
        c.context_embedding.as_ref(),
        c.activation,
        c.seed,
    )
}

/// A neural spline flow preset for `[dim]` data:
///
/// | preset | architecture |
/// |---|---|
/// | `coupling` | 8 layers of LU linear + spline coupling, MLP 2 x 128 ReLU, 8 bins, tail bound 3, halves mask (the flowrs / nflows two-moons comparison) |
/// | `autoregressive` | 8 layers of LU linear + autoregressive spline, MADE 2 x 128 ReLU, 8 bins, tail bound 3 |
/// | `digits` | 6 layers of LU linear + spline coupling, MLP 2 x 256, 8 bins, tail bound 3, odd/even mask, logit 0.05 |
/// | `digits-autoregressive` | 4 layers of LU linear + autoregressive spline, MADE 2 x 256, 8 bins, tail bound 3, logit 0.05 |
/// | `sbi` | 5 layers of LU linear + spline coupling, MLP 2 x 50 ReLU, 10 bins, tail bound 3, halves mask (the size of sbi's default posterior estimator, whose conditioner is a residual net) |
///
/// Every spline has nflows' minimum bin width, height and derivative (1e-3).
///
/// # Errors
/// [`Error::Config`] for an unknown preset.
pub fn preset(preset: &str, dim: usize, seed: u64) -> Result<NsfConfig> {
    let bins = if preset == "sbi" { 10 } else { 8 };
    let (layers, transform, hidden, mask, logit_alpha) = match preset {
        "sbi" => (5, SplineLayer::Coupling, vec![50, 50], MaskKind::Halves, None),
        "coupling" => (8, SplineLayer::Coupling, vec![128, 128], MaskKind::Halves, None),
        "autoregressive" => (8, SplineLayer::Autoregressive, vec![128, 128], MaskKind::Halves, None),
        "digits" => (6, SplineLayer::Coupling, vec![256, 256], MaskKind::OddEven, Some(0.05)),
        "digits-autoregressive" => (
            4,
            SplineLayer::Autoregressive,
            vec![256, 256],
            MaskKind::OddEven,
            Some(0.05),
        ),
        _ => {
            return Err(Error::Config(format!(
                "unknown {MODEL} preset {preset:?}; known: {}",
                PRESETS.join(", ")
            )));
        }
    };
    Ok(NsfConfig {
        dim,
        layers,
        transform,
        hidden,
        activation: Activation::Relu,
        spline: SplineConfig::new(bins, 3.0)?,
        mask,
        logit_alpha,
        seed,
        context_dim: 0,
        context_embedding: None,
    })
}
