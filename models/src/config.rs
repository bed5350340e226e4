//! Model configurations (serde, stored in every checkpoint) and their named presets.
//!
//! A [`ModelConfig`] determines a flow's architecture completely; with its `seed` it also
//! determines the initial parameters, bit for bit. Checkpoints store it as JSON so that a model
//! is rebuilt from the file alone.

use exactflow_kernels::{Error, Real, Result};
use exactflow_layers::nets::{Activation, MlpConfig};
use exactflow_layers::{MaskKind, Tensor};
use serde::{Deserialize, Serialize};

use crate::flow::Flow;

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

/// RealNVP (Dinh et al., 2016) for vector data: affine couplings with tanh-bounded scales and
/// alternating masks, optionally with batch normalization between couplings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

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
}

/// Multi-scale RealNVP (Dinh, Sohl-Dickstein, Bengio, 2017, section 3.6) for images `[C, H, W]`:
/// logit preprocessing, then `scales` scales. Every scale but the last: 3 affine couplings with
/// alternating checkerboard masks, a squeeze (`[C, H, W] -> [4C, H/2, W/2]`), 3 affine couplings
/// with alternating channel masks, then half of the channels factored out (scored by the
/// standard normal base distribution). The last scale: 4 checkerboard couplings. Each coupling
/// is `z_B = x_B * exp(scale * tanh(h)) + t` with `(h, t)` from a ResNet of `blocks` residual
/// blocks of `features` channels; with `batch_norm`, a batch normalization layer follows every
/// coupling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

/// Any model exactflow builds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ModelConfig {
    /// NICE on vectors.
    Nice(NiceConfig),
    /// RealNVP on vectors.
    #[serde(rename = "realnvp")]
    RealNvp(RealNvpConfig),
    /// Multi-scale RealNVP on images (family "realnvp").
    #[serde(rename = "realnvp_multiscale")]
    MultiScaleRealNvp(MultiScaleRealNvpConfig),
    /// Glow on images.
    #[serde(rename = "glow")]
    Glow(GlowConfig),
}

impl ModelConfig {
    /// The model family name ("nice", "realnvp", "glow"): the name [`ModelConfig::preset`]
    /// takes. Vector and multi-scale RealNVP are both "realnvp".
    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Nice(_) => "nice",
            ModelConfig::RealNvp(_) | ModelConfig::MultiScaleRealNvp(_) => "realnvp",
            ModelConfig::Glow(_) => "glow",
        }
    }

    /// The seed of the parameter initialization.
    pub fn seed(&self) -> u64 {
        match self {
            ModelConfig::Nice(c) => c.seed,
            ModelConfig::RealNvp(c) => c.seed,
            ModelConfig::MultiScaleRealNvp(c) => c.seed,
            ModelConfig::Glow(c) => c.seed,
        }
    }

    /// The sample shape of the data the model expects: `[D]` or `[C, H, W]`.
    pub fn data_shape(&self) -> Vec<usize> {
        match self {
            ModelConfig::Nice(c) => vec![c.dim],
            ModelConfig::RealNvp(c) => vec![c.dim],
            ModelConfig::MultiScaleRealNvp(c) => c.shape.to_vec(),
            ModelConfig::Glow(c) => c.shape.to_vec(),
        }
    }

    /// Builds the flow (parameters initialized from the config's seed).
    ///
    /// # Errors
    /// [`Error::Config`] for impossible settings (zero couplings, D < 2, an image size the
    /// squeezes cannot halve, ...).
    pub fn build<T: Real>(&self) -> Result<Flow<T>> {
        match self {
            ModelConfig::Nice(c) => crate::nice::build(c),
            ModelConfig::RealNvp(c) => crate::realnvp::build(c),
            ModelConfig::MultiScaleRealNvp(c) => crate::multiscale::build(c),
            ModelConfig::Glow(c) => crate::glow::build(c),
        }
    }

    /// A readable label for every stage of an image model, in stage order (stage `i` carries the
    /// parameter prefix `flow.{i}`): e.g. `level0.step3.coupling` for Glow,
    /// `scale1.checkerboard2` for multi-scale RealNVP. `None` for the vector models.
    pub fn stage_labels(&self) -> Option<Vec<String>> {
        match self {
            ModelConfig::Nice(_) | ModelConfig::RealNvp(_) => None,
            ModelConfig::MultiScaleRealNvp(c) => Some(crate::multiscale::stage_labels(c)),
            ModelConfig::Glow(c) => Some(crate::glow::stage_labels(c)),
        }
    }

    /// A named preset of a model family for data of sample shape `data_shape`.
    ///
    /// | family | preset | architecture |
    /// |---|---|---|
    /// | nice | `paper` | 4 couplings, MLP 5 x 1000 ReLU, odd/even, logistic prior (MNIST setup) |
    /// | nice | `toy` | 4 couplings, MLP 3 x 128 ReLU, halves, normal prior (2-D data) |
    /// | nice | `digits` | 4 couplings, MLP 3 x 256 ReLU, odd/even, logistic prior, logit 0.05 |
    /// | realnvp | `toy` | 8 couplings, MLP 2 x 128 ReLU, halves (the benchmark model) |
    /// | realnvp | `digits` | 6 couplings, MLP 2 x 256 ReLU, odd/even, logit 0.05 |
    /// | realnvp | `digits-bn` | as `digits` with batch norm between couplings |
    /// | realnvp | `digits-image` (or `digits` on `[C, H, W]` data) | multi-scale, 2 scales, ResNet 2 x 32, batch norm, logit 0.05 |
    /// | realnvp | `mnist` | multi-scale, 3 scales, ResNet 4 x 32, batch norm, logit 0.05 |
    /// | realnvp | `cifar10` | multi-scale, 3 scales, ResNet 8 x 64, batch norm, logit 0.05 |
    /// | glow | `tiny` | L = 2, K = 2, 8 hidden channels (tests) |
    /// | glow | `digits` (or `digits-image`) | L = 2, K = 8, 64 hidden channels |
    /// | glow | `mnist` | L = 2, K = 16, 128 hidden channels |
    /// | glow | `cifar10` | L = 3, K = 32, 512 hidden channels (the paper's CIFAR-10 model) |
    ///
    /// Every Glow preset uses affine couplings and LU 1x1 convolutions. The realnvp image
    /// presets select [`MultiScaleRealNvpConfig`] and need data of shape `[C, H, W]`; the other
    /// realnvp presets select the vector model and need `[D]`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown family or preset (the message lists the known ones) or a
    /// shape the family cannot model.
    pub fn preset(family: &str, preset: &str, data_shape: &[usize], seed: u64) -> Result<ModelConfig> {
        match family {
            "glow" => return crate::glow::preset(preset, data_shape, seed),
            "realnvp" if data_shape.len() == 3 || crate::multiscale::PRESETS.contains(&preset) => {
                return crate::multiscale::preset(preset, data_shape, seed);
            }
            _ => {}
        }
        let dim = match data_shape {
            [d] => *d,
            _ => {
                return Err(Error::Config(format!(
                    "{family} preset {preset}: vector models need data of shape [D], found {data_shape:?}"
                )));
            }
        };
        let relu = Activation::Relu;
        Ok(match (family, preset) {
            ("nice", "paper") => ModelConfig::Nice(NiceConfig {
                dim,
                couplings: 4,
                hidden: vec![1000; 5],
                activation: relu,
                mask: MaskKind::OddEven,
                prior: Prior::Logistic,
                logit_alpha: None,
                seed,
            }),
            ("nice", "toy") => ModelConfig::Nice(NiceConfig {
                dim,
                couplings: 4,
                hidden: vec![128; 3],
                activation: relu,
                mask: MaskKind::Halves,
                prior: Prior::Normal,
                logit_alpha: None,
                seed,
            }),
            ("nice", "digits") => ModelConfig::Nice(NiceConfig {
                dim,
                couplings: 4,
                hidden: vec![256; 3],
                activation: relu,
                mask: MaskKind::OddEven,
                prior: Prior::Logistic,
                logit_alpha: Some(0.05),
                seed,
            }),
            ("realnvp", "toy") => ModelConfig::RealNvp(RealNvpConfig {
                dim,
                couplings: 8,
                hidden: vec![128, 128],
                activation: relu,
                mask: MaskKind::Halves,
                batch_norm: false,
                logit_alpha: None,
                seed,
            }),
            ("realnvp", "digits") | ("realnvp", "digits-bn") => ModelConfig::RealNvp(RealNvpConfig {
                dim,
                couplings: 6,
                hidden: vec![256, 256],
                activation: relu,
                mask: MaskKind::OddEven,
                batch_norm: preset == "digits-bn",
                logit_alpha: Some(0.05),
                seed,
            }),
            ("nice" | "realnvp", _) => {
                return Err(Error::Config(format!(
                    "unknown {family} preset {preset:?}; known: {}",
                    Self::presets(family).join(", ")
                )));
            }
            _ => {
                return Err(Error::Config(format!(
                    "unknown model {family:?}; known: nice, realnvp, glow"
                )));
            }
        })
    }

    /// The preset names of a family (empty for an unknown family).
    pub fn presets(family: &str) -> Vec<&'static str> {
        match family {
            "nice" => vec!["paper", "toy", "digits"],
            "realnvp" => {
                let mut v = vec!["toy", "digits", "digits-bn"];
                v.extend(crate::multiscale::PRESETS);
                v
            }
            "glow" => crate::glow::PRESETS.to_vec(),
            _ => vec![],
        }
    }
}

/// The MLP of a coupling: `hidden` widths, `activation`, last layer zero (identity at init).
pub(crate) fn coupling_mlp(hidden: &[usize], activation: Activation) -> MlpConfig {
    MlpConfig {
        hidden: hidden.to_vec(),
        activation,
        zero_last: true,
    }
}

/// Validates common vector-flow settings.
pub(crate) fn check_vector(model: &str, dim: usize, couplings: usize, logit: Option<f64>) -> Result<()> {
    if dim < 2 {
        return Err(Error::Config(format!(
            "{model}: a coupling flow needs D >= 2, found D = {dim}"
        )));
    }
    if couplings == 0 {
        return Err(Error::Config(format!("{model}: needs at least one coupling layer")));
    }
    if let Some(a) = logit
        && !(0.0..0.5).contains(&a)
    {
        return Err(Error::Config(format!(
            "{model}: logit alpha must be in [0, 0.5), found {a}"
        )));
    }
    Ok(())
}

/// `(C, H, W)` of an image model's sample shape, checked: positive extents, and `H`, `W`
/// divisible by `2^squeezes`.
pub(crate) fn check_image(model: &str, shape: [usize; 3], squeezes: usize, what: &str) -> Result<()> {
    let [c, h, w] = shape;
    if c == 0 || h == 0 || w == 0 {
        return Err(Error::Config(format!(
            "{model}: the image shape [C, H, W] needs positive extents, found {shape:?}"
        )));
    }
    if squeezes >= 32 {
        return Err(Error::Config(format!(
            "{model}: {what} would halve the image {squeezes} times; at most 31 are possible"
        )));
    }
    let f = 1usize << squeezes;
    if h % f != 0 || w % f != 0 {
        return Err(Error::Config(format!(
            "{model}: {what} halve the height and width {squeezes} times, so H and W must be \
             divisible by 2^{squeezes} = {f}; found [C, H, W] = {shape:?}"
        )));
    }
    Ok(())
}

/// Checks that a split of samples `[C, H, W]` has an even channel count to halve.
pub(crate) fn check_split(model: &str, shape: &[usize]) -> Result<()> {
    match shape {
        [c, _, _] if *c >= 2 && c % 2 == 0 => Ok(()),
        _ => Err(Error::Config(format!(
            "{model}: a split factors out half of the channels and needs an even channel count, \
             found a sample shape {shape:?} at the split"
        ))),
    }
}

/// The image shape a preset needs, or a clear error.
pub(crate) fn image_shape(family: &str, preset: &str, data_shape: &[usize]) -> Result<[usize; 3]> {
    match *data_shape {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(Error::Config(format!(
            "{family} preset {preset}: image models need data of shape [C, H, W], found {data_shape:?}"
        ))),
    }
}

/// A typed unit test helper: a batch of zeros of the model's data shape.
#[doc(hidden)]
pub fn zeros_batch<T: Real>(config: &ModelConfig, n: usize) -> Result<Tensor<T>> {
    let mut shape = vec![n];
    shape.extend(config.data_shape());
    Tensor::zeros(&shape)
}
