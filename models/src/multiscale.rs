//! Multi-scale RealNVP for images (Dinh, Sohl-Dickstein, Bengio, 2017, sections 3.4-3.6).
//!
//! Data `x` in `[0, 1]^(C x H x W)` (dequantized pixels) first go through the logit
//! preprocessing `y = logit(alpha + (1 - 2 alpha) x)`, whose log-det
//! `sum_i [ln(1 - 2 alpha) - ln v_i - ln(1 - v_i)]` is part of `log p(x)`. Then, at each scale
//! but the last:
//!
//! 1. 3 affine couplings `z_B = x_B * exp(scale * tanh(h)) + t` with checkerboard masks
//!    (alternating which pixels are transformed), `(h, t)` from a ResNet of the other pixels;
//! 2. a squeeze `[C, H, W] -> [4C, H/2, W/2]`;
//! 3. 3 affine couplings with channel masks (alternating halves of the channels);
//! 4. a split: the last half of the channels leaves the flow as a latent `z_s`, scored by the
//!    standard normal base distribution, and the first half goes on to the next scale.
//!
//! The last scale has 4 checkerboard couplings. With `batch_norm`, a batch normalization layer
//! (per-channel statistics, its own log-det) follows every coupling. So
//!
//! `log p(x) = sum_s log N(z_s; 0, I) + log N(z; 0, I) + log|det logit'| + sum_k log|det J_k|`.
//!
//! Stage names follow the construction order (`flow.0` is the logit, `flow.1` the first
//! coupling, ...); [`stage_labels`] names each stage by scale and role.

use exactflow_kernels::Real;
use exactflow_layers::batchnorm::BatchNorm;
use exactflow_layers::distributions::StandardNormal;
use exactflow_layers::logit::Logit;
use exactflow_layers::nets::ResNetConfig;
use exactflow_layers::{AffineCoupling, Mask, MaskKind, Split, Squeeze, Stage, layer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::{check_image, check_split, count, image_shape};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// Checkerboard couplings at every scale but the last (the paper's 3).
pub const CHECKERBOARD_COUPLINGS: usize = 3;
/// Channel-wise couplings after each squeeze (the paper's 3).
pub const CHANNEL_COUPLINGS: usize = 3;
/// Checkerboard couplings of the last scale (the paper's 4).
pub const FINAL_COUPLINGS: usize = 4;

/// The image presets of the "realnvp" family (see [`crate::ModelConfig::preset`]).
pub const PRESETS: [&str; 3] = ["digits-image", "mnist", "cifar10"];

const MODEL: &str = "realnvp (multi-scale)";

/// Multi-scale RealNVP (Dinh, Sohl-Dickstein, Bengio, 2017, section 3.6) for images `[C, H, W]`:
/// logit preprocessing, then `scales` scales. Every scale but the last: 3 affine couplings with
/// alternating checkerboard masks, a squeeze (`[C, H, W] -> [4C, H/2, W/2]`), 3 affine couplings
/// with alternating channel masks, then half of the channels factored out (scored by the
/// standard normal base distribution). The last scale: 4 checkerboard couplings. Each coupling
/// is `z_B = x_B * exp(scale * tanh(h)) + t` with `(h, t)` from a ResNet of `blocks` residual
/// blocks of `features` channels; with `batch_norm`, a batch normalization layer follows every
/// coupling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiScaleRealNvpConfig {
    /// The data's sample shape `[C, H, W]`; `H` and `W` must be divisible by `2^(scales - 1)`
    /// and the last scale must have at least 2 pixels.
    pub shape: [usize; 3],
    /// Number of scales (`scales - 1` squeezes and splits).
    pub scales: usize,
    /// Residual blocks of each coupling's ResNet.
    pub blocks: usize,
    /// Feature channels of each coupling's ResNet.
    pub features: usize,
    /// Batch normalization after every coupling.
    pub batch_norm: bool,
    /// Logit preprocessing `logit(alpha + (1 - 2 alpha) x)` for data in [0, 1], if set (the
    /// paper: 0.05).
    pub logit_alpha: Option<f64>,
    /// Seed of the parameter initialization.
    pub seed: u64,
    /// Width C of the vector context `c` of a conditional flow `p(x | c)` (0: unconditional).
    /// Every coupling's ResNet reads it as C constant channels after its input (see FORMAT.md,
    /// "Conditional models").
    #[serde(default)]
    pub context_dim: usize,
}

/// Checks a configuration without building it.
///
/// # Errors
/// [`Error::Config`] naming the first impossible setting.
pub fn validate(c: &MultiScaleRealNvpConfig) -> Result<()> {
    if c.scales == 0 {
        return Err(Error::Config(format!("{MODEL}: needs at least one scale, found 0")));
    }
    crate::checks::check_counts(MODEL, "scales", c.scales, "residual blocks", c.blocks)?;
    if c.features == 0 {
        return Err(Error::Config(format!(
            "{MODEL}: the ResNet conditioners need at least one feature channel, found 0"
        )));
    }
    if let Some(a) = c.logit_alpha
        && !(0.0..0.5).contains(&a)
    {
        return Err(Error::Config(format!(
            "{MODEL}: logit alpha must be in [0, 0.5), found {a}"
        )));
    }
    check_image(
        MODEL,
        c.shape,
        c.scales - 1,
        &format!("the squeezes between {} scales", c.scales),
    )?;
    let [ch, h, w] = c.shape;
    let f = 1usize << (c.scales - 1);
    let (hl, wl) = (h / f, w / f);
    if hl * wl < 2 {
        return Err(Error::Config(format!(
            "{MODEL}: the last scale sees {hl}x{wl} pixels, too few for a checkerboard coupling \
             (needs at least 2); use fewer scales or larger images than [C, H, W] = {:?}",
            c.shape
        )));
    }
    let mut cc = ch;
    for s in 1..c.scales {
        check_split(MODEL, &[4 * cc, h >> s, w >> s])?;
        cc *= 2;
    }
    Ok(())
}

/// Builds multi-scale RealNVP from its config (parameters from `c.seed`).
///
/// # Errors
/// [`Error::Config`] for impossible settings (see [`validate`]).
pub fn build<T: Real>(c: &MultiScaleRealNvpConfig) -> Result<Flow<T>> {
    validate(c)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let res = ResNetConfig {
        blocks: c.blocks,
        features: c.features,
    };
    let mut stages: Vec<Box<dyn Stage<T>>> = Vec::new();
    let mut shape = c.shape.to_vec();
    if let Some(alpha) = c.logit_alpha {
        stages.push(layer(Logit::<T>::new(&shape, alpha)?));
    }
    let mut couplings =
        |stages: &mut Vec<Box<dyn Stage<T>>>, shape: &[usize], kind: MaskKind, n: usize| -> Result<()> {
            for k in 0..n {
                let mask = Mask::new(kind, k % 2 == 1);
                stages.push(layer(AffineCoupling::<T>::with_conditional_resnet(
                    shape,
                    mask,
                    c.context_dim,
                    &res,
                    &mut rng,
                )?));
                if c.batch_norm {
                    stages.push(layer(BatchNorm::<T>::new(shape)?));
                }
            }
            Ok(())
        };
    for s in 0..c.scales {
        if s + 1 == c.scales {
            couplings(&mut stages, &shape, MaskKind::Checkerboard, FINAL_COUPLINGS)?;
            break;
        }
        couplings(&mut stages, &shape, MaskKind::Checkerboard, CHECKERBOARD_COUPLINGS)?;
        let squeeze = Squeeze::<T>::new(&shape)?;
        shape = vec![4 * shape[0], shape[1] / 2, shape[2] / 2];
        stages.push(layer(squeeze));
        couplings(&mut stages, &shape, MaskKind::Channel, CHANNEL_COUPLINGS)?;
        let split = Split::<T>::without_prior(&shape)?;
        shape = split.out_shape().to_vec();
        stages.push(Box::new(split));
    }
    Ok(Flow::new(stages, Box::new(StandardNormal), &c.shape)?.with_context_dim(c.context_dim))
}

/// The number of real-valued parameters and buffers the model of `c` has (every tensor a
/// checkpoint stores as F32 or F64), from the config alone; `None` when it overflows a `u64` or
/// the shape cannot be squeezed as many times as the config says.
pub fn parameter_count(c: &MultiScaleRealNvpConfig) -> Option<u64> {
    let f = c.features as u64;
    let resnet = |cin: u64, cout: u64| -> Option<u64> {
        let block = count::mul(2, count::conv(f, f, 3)?)?;
        count::add(
            // The first convolution reads the input and the context's C constant channels.
            count::add(
                count::conv(count::add(cin, c.context_dim as u64)?, f, 3)?,
                count::mul(c.blocks as u64, block)?,
            )?,
            count::conv(f, cout, 3)?,
        )
    };
    let bn = |ch: u64| if c.batch_norm { count::mul(4, ch) } else { Some(0) };
    let [ch, h, w] = c.shape.map(|v| v as u64);
    let (mut ch, mut h, mut w) = (ch, h, w);
    let mut n = 0u64;
    let checkerboards = |n: u64, k: usize, ch: u64, h: u64, w: u64| -> Option<u64> {
        let even = count::even_pixels(h, w)?;
        let mut n = n;
        for j in 0..k {
            // Unflipped, the pixels with h + w odd are transformed.
            let b_pixels = if j % 2 == 1 { even } else { count::mul(h, w)? - even };
            let scale = count::mul(ch, b_pixels)?;
            n = count::add(
                n,
                count::add(count::add(resnet(ch, count::mul(2, ch)?)?, scale)?, bn(ch)?)?,
            )?;
        }
        Some(n)
    };
    for s in 0..c.scales {
        if s + 1 == c.scales {
            n = checkerboards(n, FINAL_COUPLINGS, ch, h, w)?;
            break;
        }
        n = checkerboards(n, CHECKERBOARD_COUPLINGS, ch, h, w)?;
        if h % 2 != 0 || w % 2 != 0 {
            return None;
        }
        (ch, h, w) = (count::mul(4, ch)?, h / 2, w / 2);
        for j in 0..CHANNEL_COUPLINGS {
            let (a, b) = count::vector_parts(ch, MaskKind::Channel, j % 2 == 1);
            let scale = count::mul(count::mul(b, h)?, w)?;
            n = count::add(
                n,
                count::add(count::add(resnet(a, count::mul(2, b)?)?, scale)?, bn(ch)?)?,
            )?;
        }
        ch /= 2;
    }
    Some(n)
}

/// A readable label for every stage of the flow [`build`] makes, in stage order (stage `i` is
/// named `flow.{i}` in parameter names): `logit`, `scale0.checkerboard0`, `scale0.batchnorm0`,
/// `scale0.squeeze`, `scale0.channel0`, `scale0.split`, `scale1.checkerboard0`, ...
pub fn stage_labels(c: &MultiScaleRealNvpConfig) -> Vec<String> {
    let mut v = Vec::new();
    if c.logit_alpha.is_some() {
        v.push("logit".to_string());
    }
    let push = |v: &mut Vec<String>, s: usize, role: &str, n: usize| {
        for k in 0..n {
            v.push(format!("scale{s}.{role}{k}"));
            if c.batch_norm {
                v.push(format!("scale{s}.{role}{k}.batchnorm"));
            }
        }
    };
    for s in 0..c.scales {
        if s + 1 == c.scales {
            push(&mut v, s, "checkerboard", FINAL_COUPLINGS);
            break;
        }
        push(&mut v, s, "checkerboard", CHECKERBOARD_COUPLINGS);
        v.push(format!("scale{s}.squeeze"));
        push(&mut v, s, "channel", CHANNEL_COUPLINGS);
        v.push(format!("scale{s}.split"));
    }
    v
}

/// The "realnvp" family's image presets (see [`crate::ModelConfig::preset`]); `digits` on image data
/// is `digits-image`.
///
/// # Errors
/// [`Error::Config`] for an unknown preset or a shape that is not
/// `[C, H, W]`.
pub fn preset(preset: &str, data_shape: &[usize], seed: u64) -> Result<MultiScaleRealNvpConfig> {
    let (scales, blocks, features) = match preset {
        "digits-image" | "digits" => (2, 2, 32),
        "mnist" => (3, 4, 32),
        "cifar10" => (3, 8, 64),
        _ => {
            return Err(Error::Config(format!(
                "unknown realnvp preset {preset:?} for image data of shape {data_shape:?}; known image presets: {}",
                PRESETS.join(", ")
            )));
        }
    };
    let shape = image_shape("realnvp", preset, data_shape)?;
    Ok(MultiScaleRealNvpConfig {
        shape,
        scales,
        blocks,
        features,
        batch_norm: true,
        logit_alpha: Some(0.05),
        seed,
        context_dim: 0,
    })
}
