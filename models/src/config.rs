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

/// Any model exactflow builds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ModelConfig {
    /// NICE on vectors.
    Nice(NiceConfig),
    /// RealNVP on vectors.
    #[serde(rename = "realnvp")]
    RealNvp(RealNvpConfig),
}

impl ModelConfig {
    /// The model family name ("nice", "realnvp", ...).
    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Nice(_) => "nice",
            ModelConfig::RealNvp(_) => "realnvp",
        }
    }

    /// The seed of the parameter initialization.
    pub fn seed(&self) -> u64 {
        match self {
            ModelConfig::Nice(c) => c.seed,
            ModelConfig::RealNvp(c) => c.seed,
        }
    }

    /// The sample shape of the data the model expects.
    pub fn data_shape(&self) -> Vec<usize> {
        match self {
            ModelConfig::Nice(c) => vec![c.dim],
            ModelConfig::RealNvp(c) => vec![c.dim],
        }
    }

    /// Builds the flow (parameters initialized from the config's seed).
    ///
    /// # Errors
    /// [`Error::Config`] for impossible settings (zero couplings, D < 2, ...).
    pub fn build<T: Real>(&self) -> Result<Flow<T>> {
        match self {
            ModelConfig::Nice(c) => crate::nice::build(c),
            ModelConfig::RealNvp(c) => crate::realnvp::build(c),
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
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown family or preset (the message lists the known ones) or a
    /// shape the family cannot model.
    pub fn preset(family: &str, preset: &str, data_shape: &[usize], seed: u64) -> Result<ModelConfig> {
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

    /// The preset names of a family.
    pub fn presets(family: &str) -> Vec<&'static str> {
        match family {
            "nice" => vec!["paper", "toy", "digits"],
            "realnvp" => vec!["toy", "digits", "digits-bn"],
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

/// A typed unit test helper: a batch of zeros of the model's data shape.
#[doc(hidden)]
pub fn zeros_batch<T: Real>(config: &ModelConfig, n: usize) -> Result<Tensor<T>> {
    let mut shape = vec![n];
    shape.extend(config.data_shape());
    Tensor::zeros(&shape)
}
