//! Glow (Kingma & Dhariwal, 2018) for images.
//!
//! Data `x` of shape `[C, H, W]` (dequantized pixels in [0, 1)) go through `L` levels. Level `l`:
//!
//! 1. a squeeze `[C, H, W] -> [4C, H/2, W/2]` (log-det 0);
//! 2. `K` steps of flow, each
//!    - ActNorm `y = (x + b) * exp(logs)` per channel, log-det `H W sum logs`, initialized on the
//!      first training batch to zero mean and unit variance (the initialization flag is saved
//!      with the model, so a loaded checkpoint never re-initializes);
//!    - a channel mixing: the LU-parameterized invertible 1x1 convolution
//!      `W = P L (U + diag(s))`, log-det `H W sum log|s|` (or, for ablations, a reversal or a
//!      fixed shuffle of the channels, log-det 0);
//!    - a coupling: affine `z_B = x_B * sigmoid(h + 2) + t`, log-det `sum log sigmoid(h + 2)`
//!      (or additive `z_B = x_B + NN(x_A)`, log-det 0), with `NN` a 3x3 / 1x1 / zero-initialized
//!      3x3 convolutional network of `hidden` channels on the first half of the channels;
//! 3. for every level but the last, a split: the second half of the channels leaves the flow as
//!    `z_l`, scored by a learned conditional Gaussian `p(z_l | rest) = N(mean(rest),
//!    exp(logs(rest))^2)` (a zero-initialized 3x3 convolution of `rest`).
//!
//! The final latent `z` is scored by a learned diagonal Gaussian (a mean and a log standard
//! deviation per element, starting at N(0, I)). So
//!
//! `log p(x) = log N(z; mu, sigma^2) + sum_l log p(z_l | rest_l) + sum_k log|det J_k|`.
//!
//! Sampling at temperature `T` multiplies the standard deviation of every prior (top and splits)
//! by `T` ([`Flow::sample`]).
//!
//! Stage names follow the construction order (`flow.0` is the first squeeze, `flow.1` the first
//! ActNorm, ...); [`stage_labels`] names each stage by level, step and role
//! (`level0.step3.actnorm`).

use exactflow_kernels::Real;
use exactflow_layers::distributions::DiagonalGaussian;
use exactflow_layers::{
    ActNorm, AdditiveCoupling, Bijector, Conv1x1Lu, GlowCoupling, Layer, Permutation, Split, Squeeze, Stage, layer,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use serde::{Deserialize, Serialize};

use crate::checks::{check_image, check_split, count, image_shape};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The presets of the "glow" family (see [`crate::ModelConfig::preset`]).
pub const PRESETS: [&str; 4] = ["tiny", "digits", "mnist", "cifar10"];

const MODEL: &str = "glow";

/// The coupling of a Glow step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlowCouplingKind {
    /// Affine: `z_B = x_B * sigmoid(h + 2) + t`, `(h, t) = NN(x_A)`, log-det
    /// `sum log sigmoid(h + 2)` (the paper's model).
    Affine,
    /// Additive: `z_B = x_B + NN(x_A)`, log-det 0 (the paper's ablation).
    Additive,
}

/// The channel mixing of a Glow step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlowPermutation {
    /// Invertible 1x1 convolution, LU-parameterized `W = P L (U + diag(s))`, log-det
    /// `H * W * sum log|s|` (the paper's model).
    LuConv,
    /// Reverse the channel order (RealNVP's choice; the paper's ablation), log-det 0.
    Reverse,
    /// A fixed random channel permutation (the paper's ablation), log-det 0.
    Shuffle,
}

/// Glow (Kingma & Dhariwal, 2018) for images `[C, H, W]`: `levels` levels, each a squeeze
/// (`[C, H, W] -> [4C, H/2, W/2]`), `steps` steps of (ActNorm, channel mixing, coupling), and,
/// after every level but the last, a split that factors out half of the channels under a learned
/// conditional Gaussian prior `p(z_out | rest)`; the final latent has a learned diagonal
/// Gaussian prior (mean and log standard deviation per element, starting at N(0, I)).
///
/// `log p(x) = log N(z_L; mu, sigma^2) + sum_splits log p(z_l | rest_l) + sum_k log|det J_k|`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlowConfig {
    /// The data's sample shape `[C, H, W]`; `H` and `W` must be divisible by `2^levels`.
    pub shape: [usize; 3],
    /// Number of levels L (one squeeze each).
    pub levels: usize,
    /// Steps of flow per level K.
    pub steps: usize,
    /// Channels inside each coupling's conditioner `NN` (3x3, 1x1, zero-initialized 3x3 conv).
    pub hidden: usize,
    /// Affine (the paper) or additive couplings.
    pub coupling: GlowCouplingKind,
    /// LU 1x1 convolution (the paper), reverse or shuffle.
    pub permutation: GlowPermutation,
    /// Seed of the parameter initialization (and of the shuffles).
    pub seed: u64,
    /// Width C of the vector context `c` of a conditional flow `p(x | c)` (0: unconditional).
    /// Every coupling's `NN` adds `V c` to its first convolution's output (see FORMAT.md,
    /// "Conditional models"); the priors do not read it.
    #[serde(default)]
    pub context_dim: usize,
}

/// Checks a configuration without building it.
///
/// # Errors
/// [`Error::Config`] naming the first impossible setting: no levels, no steps, no hidden
/// channels, an image whose height or width is not divisible by `2^levels`.
pub fn validate(c: &GlowConfig) -> Result<()> {
    if c.levels == 0 {
        return Err(Error::Config(format!("{MODEL}: needs at least one level, found L = 0")));
    }
    if c.steps == 0 {
        return Err(Error::Config(format!(
            "{MODEL}: needs at least one step per level, found K = 0"
        )));
    }
    crate::checks::check_counts(MODEL, "steps per level", c.steps, "levels", c.levels)?;
    if c.hidden == 0 {
        return Err(Error::Config(format!(
            "{MODEL}: the coupling networks need at least one hidden channel, found 0"
        )));
    }
    check_image(
        MODEL,
        c.shape,
        c.levels,
        &format!("the squeezes of L = {} levels", c.levels),
    )?;
    let [ch, h, w] = c.shape;
    let mut cc = ch;
    for l in 1..c.levels {
        check_split(MODEL, &[4 * cc, h >> l, w >> l])?;
        cc *= 2;
    }
    Ok(())
}

/// Builds Glow from its config (parameters from `c.seed`).
///
/// # Errors
/// [`Error::Config`] for impossible settings (see [`validate`]).
pub fn build<T: Real>(c: &GlowConfig) -> Result<Flow<T>> {
    validate(c)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages: Vec<Box<dyn Stage<T>>> = Vec::new();
    let mut shape = c.shape.to_vec();
    for level in 0..c.levels {
        let squeeze = Squeeze::<T>::new(&shape)?;
        shape = vec![4 * shape[0], shape[1] / 2, shape[2] / 2];
        stages.push(layer(squeeze));
        for _ in 0..c.steps {
            stages.push(layer(ActNorm::<T>::new(&shape)?));
            let mix: Box<dyn Bijector<T>> = match c.permutation {
                GlowPermutation::LuConv => Box::new(Conv1x1Lu::<T>::new(&shape, &mut rng)?),
                GlowPermutation::Reverse => Box::new(Permutation::<T>::reverse(&shape)?),
                GlowPermutation::Shuffle => Box::new(Permutation::<T>::shuffle(&shape, rng.next_u64())?),
            };
            stages.push(Box::new(Layer(mix)));
            let coupling: Box<dyn Bijector<T>> = match c.coupling {
                GlowCouplingKind::Affine => Box::new(GlowCoupling::<T>::with_conditional_glow_net(
                    &shape,
                    c.context_dim,
                    c.hidden,
                    &mut rng,
                )?),
                GlowCouplingKind::Additive => Box::new(AdditiveCoupling::<T>::with_conditional_glow_net(
                    &shape,
                    c.context_dim,
                    c.hidden,
                    &mut rng,
                )?),
            };
            stages.push(Box::new(Layer(coupling)));
        }
        if level + 1 < c.levels {
            let split = Split::<T>::glow(&shape, &mut rng)?;
            shape = split.out_shape().to_vec();
            stages.push(Box::new(split));
        }
    }
    let top = DiagonalGaussian::<T>::new(&shape)?;
    Ok(Flow::new(stages, Box::new(top), &c.shape)?.with_context_dim(c.context_dim))
}

/// The number of real-valued parameters the model of `c` has (every tensor a checkpoint stores
/// as F32 or F64), from the config alone; `None` when it overflows a `u64` or the shape cannot be
/// squeezed as many times as the config says.
pub fn parameter_count(c: &GlowConfig) -> Option<u64> {
    let hidden = c.hidden as u64;
    let [ch, h, w] = c.shape.map(|v| v as u64);
    let (mut ch, mut h, mut w) = (ch, h, w);
    let mut n = 0u64;
    for level in 0..c.levels {
        if h % 2 != 0 || w % 2 != 0 {
            return None;
        }
        (ch, h, w) = (count::mul(4, ch)?, h / 2, w / 2);
        let actnorm = count::mul(2, ch)?;
        let mix = match c.permutation {
            GlowPermutation::LuConv => count::add(count::mul(2, count::mul(ch, ch)?)?, ch)?,
            GlowPermutation::Reverse | GlowPermutation::Shuffle => 0,
        };
        let (a, b) = (ch / 2, ch - ch / 2);
        let out = match c.coupling {
            GlowCouplingKind::Affine => count::mul(2, b)?,
            GlowCouplingKind::Additive => b,
        };
        let net = count::add(
            count::add(count::conv(a, hidden, 3)?, count::conv(hidden, hidden, 1)?)?,
            count::conv(hidden, out, 3)?,
        )?;
        // The context weight V [hidden, C] of a conditional NN.
        let net = count::add(net, count::mul(hidden, c.context_dim as u64)?)?;
        let step = count::add(count::add(actnorm, mix)?, net)?;
        n = count::add(n, count::mul(c.steps as u64, step)?)?;
        if level + 1 < c.levels {
            n = count::add(n, count::conv(ch / 2, ch, 3)?)?;
            ch /= 2;
        }
    }
    // The top prior's mean and log standard deviation.
    count::add(n, count::mul(2, count::mul(count::mul(ch, h)?, w)?)?)
}

/// A readable label for every stage of the flow [`build`] makes, in stage order (stage `i` is
/// named `flow.{i}` in parameter names): `level0.squeeze`, `level0.step0.actnorm`,
/// `level0.step0.permutation`, `level0.step0.coupling`, ..., `level0.split`, `level1.squeeze`, ...
pub fn stage_labels(c: &GlowConfig) -> Vec<String> {
    let mut v = Vec::new();
    for level in 0..c.levels {
        v.push(format!("level{level}.squeeze"));
        for k in 0..c.steps {
            for role in ["actnorm", "permutation", "coupling"] {
                v.push(format!("level{level}.step{k}.{role}"));
            }
        }
        if level + 1 < c.levels {
            v.push(format!("level{level}.split"));
        }
    }
    v
}

/// The "glow" family's presets (see [`crate::ModelConfig::preset`]); `digits-image` is `digits`.
///
/// # Errors
/// [`Error::Config`] for an unknown preset or a shape that is not `[C, H, W]`.
pub fn preset(preset: &str, data_shape: &[usize], seed: u64) -> Result<GlowConfig> {
    let (levels, steps, hidden) = match preset {
        "tiny" => (2, 2, 8),
        "digits" | "digits-image" => (2, 8, 64),
        "mnist" => (2, 16, 128),
        "cifar10" => (3, 32, 512),
        _ => {
            return Err(Error::Config(format!(
                "unknown glow preset {preset:?}; known: {}",
                PRESETS.join(", ")
            )));
        }
    };
    let shape = image_shape("glow", preset, data_shape)?;
    Ok(GlowConfig {
        shape,
        levels,
        steps,
        hidden,
        coupling: GlowCouplingKind::Affine,
        permutation: GlowPermutation::LuConv,
        seed,
        context_dim: 0,
    })
}
