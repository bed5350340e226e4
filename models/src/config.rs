//! The registry of model configurations: [`ModelConfig`] names every model family, and each
//! family's module (`nice`, `realnvp`, `multiscale`, `glow`, `maf`, `iaf`, `nsf`) owns its config
//! type, its builder and its presets. This module only imports them.
//!
//! A [`ModelConfig`] determines a flow's architecture completely; with its `seed` it also
//! determines the initial parameters, bit for bit. Checkpoints store it as JSON so that a model
//! is rebuilt from the file alone.

use exactflow_kernels::Real;
use exactflow_layers::Tensor;
use serde::{Deserialize, Serialize};

use crate::embedding::ContextEmbedding;
use crate::error::{Error, Result};
use crate::flow::Flow;
pub use crate::glow::{GlowConfig, GlowCouplingKind, GlowPermutation};
pub use crate::maf::{ArPermutation, MafConfig};
pub use crate::multiscale::MultiScaleRealNvpConfig;
pub use crate::nice::{NiceConfig, Prior};
pub use crate::nsf::{NsfConfig, SplineLayer};
pub use crate::realnvp::RealNvpConfig;

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
    /// Masked autoregressive flow on vectors.
    #[serde(rename = "maf")]
    Maf(MafConfig),
    /// Inverse autoregressive flow on vectors (a MAF's architecture run the other way).
    #[serde(rename = "iaf")]
    Iaf(MafConfig),
    /// Neural spline flow on vectors (coupling or autoregressive splines).
    #[serde(rename = "nsf")]
    Nsf(NsfConfig),
}

impl ModelConfig {
    /// The model family name ("nice", "realnvp", "glow"): the name [`ModelConfig::preset`]
    /// takes. Vector and multi-scale RealNVP are both "realnvp".
    pub fn family(&self) -> &'static str {
        match self {
            ModelConfig::Nice(_) => "nice",
            ModelConfig::RealNvp(_) | ModelConfig::MultiScaleRealNvp(_) => "realnvp",
            ModelConfig::Glow(_) => "glow",
            ModelConfig::Maf(_) => "maf",
            ModelConfig::Iaf(_) => "iaf",
            ModelConfig::Nsf(_) => "nsf",
        }
    }

    /// The seed of the parameter initialization.
    pub fn seed(&self) -> u64 {
        match self {
            ModelConfig::Nice(c) => c.seed,
            ModelConfig::RealNvp(c) => c.seed,
            ModelConfig::MultiScaleRealNvp(c) => c.seed,
            ModelConfig::Glow(c) => c.seed,
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => c.seed,
            ModelConfig::Nsf(c) => c.seed,
        }
    }

    /// The width C of the context of a conditional model `p(x | c)` (0: unconditional; NICE
    /// is always unconditional).
    pub fn context_dim(&self) -> usize {
        match self {
            ModelConfig::RealNvp(c) => c.context_dim,
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => c.context_dim,
            ModelConfig::Nsf(c) => c.context_dim,
            ModelConfig::MultiScaleRealNvp(c) => c.context_dim,
            ModelConfig::Glow(c) => c.context_dim,
            ModelConfig::Nice(_) => 0,
        }
    }

    /// Sets the context width of a conditional model.
    ///
    /// # Errors
    /// [`Error::Config`] for a nonzero width on a family without conditional models (NICE).
    pub fn set_context_dim(&mut self, context_dim: usize) -> Result<()> {
        match self {
            ModelConfig::RealNvp(c) => c.context_dim = context_dim,
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => c.context_dim = context_dim,
            ModelConfig::Nsf(c) => c.context_dim = context_dim,
            ModelConfig::MultiScaleRealNvp(c) => c.context_dim = context_dim,
            ModelConfig::Glow(c) => c.context_dim = context_dim,
            _ if context_dim == 0 => {}
            other => {
                return Err(Error::Config(format!(
                    "{}: this family has no conditional models (a context of width {context_dim} was asked for); use realnvp, glow, maf, iaf or nsf",
                    other.family()
                )));
            }
        }
        Ok(())
    }

    /// The context embedding of a conditional model, if it has one (see [`crate::embedding`]).
    pub fn context_embedding(&self) -> Option<&ContextEmbedding> {
        match self {
            ModelConfig::RealNvp(c) => c.context_embedding.as_ref(),
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => c.context_embedding.as_ref(),
            ModelConfig::Nsf(c) => c.context_embedding.as_ref(),
            ModelConfig::Nice(_) | ModelConfig::MultiScaleRealNvp(_) | ModelConfig::Glow(_) => None,
        }
    }

    /// Sets (or, with `None`, removes) the context embedding of a conditional model. The
    /// embedding is checked when the model is built (it needs `context_dim > 0`).
    ///
    /// # Errors
    /// [`Error::Config`] for an embedding on a family without conditional models.
    pub fn set_context_embedding(&mut self, embedding: Option<ContextEmbedding>) -> Result<()> {
        match self {
            ModelConfig::RealNvp(c) => c.context_embedding = embedding,
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => c.context_embedding = embedding,
            ModelConfig::Nsf(c) => c.context_embedding = embedding,
            _ if embedding.is_none() => {}
            other => {
                return Err(Error::Config(format!(
                    "{}: a context embedding is for conditional vector models; use realnvp (vector data), maf, iaf or nsf",
                    other.family()
                )));
            }
        }
        Ok(())
    }

    /// The sample shape of the data the model expects: `[D]` or `[C, H, W]`.
    pub fn data_shape(&self) -> Vec<usize> {
        match self {
            ModelConfig::Nice(c) => vec![c.dim],
            ModelConfig::RealNvp(c) => vec![c.dim],
            ModelConfig::MultiScaleRealNvp(c) => c.shape.to_vec(),
            ModelConfig::Glow(c) => c.shape.to_vec(),
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => vec![c.dim],
            ModelConfig::Nsf(c) => vec![c.dim],
        }
    }

    /// Checks the settings without building anything: the same checks [`ModelConfig::build`]
    /// makes first.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first impossible setting.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelConfig::Nice(c) => crate::checks::check_vector("nice", c.dim, c.couplings, &c.hidden, c.logit_alpha),
            ModelConfig::RealNvp(c) => crate::realnvp::validate(c),
            ModelConfig::MultiScaleRealNvp(c) => crate::multiscale::validate(c),
            ModelConfig::Glow(c) => crate::glow::validate(c),
            ModelConfig::Maf(c) => crate::maf::validate("maf", c),
            ModelConfig::Iaf(c) => crate::maf::validate("iaf", c),
            ModelConfig::Nsf(c) => crate::nsf::validate(c),
        }
    }

    /// The number of real-valued parameters and buffers of the model (the elements of every
    /// tensor a checkpoint stores as F32 or F64), computed from the config alone, without
    /// allocating; `None` for an invalid config (see [`ModelConfig::validate`]) or a count that
    /// does not fit a `u64`. A checkpoint's config is checked
    /// against the file's size with it before the model is built.
    pub fn parameter_count(&self) -> Option<u64> {
        // The per-layer counts loop over the layers: an invalid config (10^18 couplings) would
        // loop for ever, so only a valid one (at most MAX_LAYERS layers) is counted.
        self.validate().ok()?;
        match self {
            ModelConfig::Nice(c) => crate::nice::parameter_count(c),
            ModelConfig::RealNvp(c) => crate::realnvp::parameter_count(c),
            ModelConfig::MultiScaleRealNvp(c) => crate::multiscale::parameter_count(c),
            ModelConfig::Glow(c) => crate::glow::parameter_count(c),
            ModelConfig::Maf(c) | ModelConfig::Iaf(c) => crate::maf::parameter_count(c),
            ModelConfig::Nsf(c) => crate::nsf::parameter_count(c),
        }
    }

    /// Builds the flow (parameters initialized from the config's seed).
    ///
    /// The settings are validated and the parameters' memory (values and gradients, see
    /// [`ModelConfig::parameter_count`]) is checked against the machine's before anything is
    /// allocated.
    ///
    /// # Errors
    /// [`Error::Config`] for impossible settings (zero couplings, D < 2, an image size the
    /// squeezes cannot halve, ...); [`Error::TooLarge`] for a model larger than this machine's
    /// memory.
    pub fn build<T: Real>(&self) -> Result<Flow<T>> {
        self.validate()?;
        let count = self.parameter_count();
        crate::memory::check(
            || {
                let n = count.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
                format!("a {} model of {n} parameters (values and gradients)", self.family())
            },
            count.and_then(|n| n.checked_mul(2 * std::mem::size_of::<T>() as u64)),
        )?;
        match self {
            ModelConfig::Nice(c) => crate::nice::build(c),
            ModelConfig::RealNvp(c) => crate::realnvp::build(c),
            ModelConfig::MultiScaleRealNvp(c) => crate::multiscale::build(c),
            ModelConfig::Glow(c) => crate::glow::build(c),
            ModelConfig::Maf(c) => crate::maf::build(c),
            ModelConfig::Iaf(c) => crate::iaf::build(c),
            ModelConfig::Nsf(c) => crate::nsf::build(c),
        }
    }

    /// A readable label for every stage of an image model, in stage order (stage `i` carries the
    /// parameter prefix `flow.{i}`): e.g. `level0.step3.coupling` for Glow,
    /// `scale1.checkerboard2` for multi-scale RealNVP. `None` for the vector models.
    pub fn stage_labels(&self) -> Option<Vec<String>> {
        match self {
            ModelConfig::Nice(_)
            | ModelConfig::RealNvp(_)
            | ModelConfig::Maf(_)
            | ModelConfig::Iaf(_)
            | ModelConfig::Nsf(_) => None,
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
    /// | maf, iaf | `toy` | 10 layers, MADE 2 x 256 ReLU, alternating random and reverse permutations |
    /// | maf, iaf | `digits` | 5 layers, MADE 2 x 256 ReLU, alternating permutations, logit 0.05 |
    /// | nsf | `coupling` (or `toy`) | 8 x (LU linear, spline coupling), MLP 2 x 128, 8 bins, tail bound 3 |
    /// | nsf | `autoregressive` | 8 x (LU linear, autoregressive spline), MADE 2 x 128, 8 bins, tail bound 3 |
    /// | nsf | `digits` | 6 x (LU linear, spline coupling), MLP 2 x 256, 8 bins, tail bound 3, odd/even, logit 0.05 |
    /// | nsf | `sbi` | 5 x (LU linear, spline coupling), MLP 2 x 50, 10 bins, tail bound 3 (sbi's default size) |
    /// | nsf | `digits-autoregressive` | 4 x (LU linear, autoregressive spline), MADE 2 x 256, 8 bins, tail bound 3, logit 0.05 |
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
            "glow" => return Ok(ModelConfig::Glow(crate::glow::preset(preset, data_shape, seed)?)),
            "realnvp" if data_shape.len() == 3 || crate::multiscale::PRESETS.contains(&preset) => {
                return Ok(ModelConfig::MultiScaleRealNvp(crate::multiscale::preset(
                    preset, data_shape, seed,
                )?));
            }
            "nice" | "realnvp" | "maf" | "iaf" | "nsf" => {}
            _ => {
                return Err(Error::Config(format!(
                    "unknown model {family:?}; known: nice, realnvp, glow, maf, iaf, nsf"
                )));
            }
        }
        let dim = match data_shape {
            [d] => *d,
            _ => {
                return Err(Error::Config(format!(
                    "{family} preset {preset}: vector models need data of shape [D], found {data_shape:?}"
                )));
            }
        };
        Ok(match family {
            "nice" => ModelConfig::Nice(crate::nice::preset(preset, dim, seed)?),
            "maf" => ModelConfig::Maf(crate::maf::preset("maf", preset, dim, seed)?),
            "iaf" => ModelConfig::Iaf(crate::iaf::preset(preset, dim, seed)?),
            // `toy` is the default preset of toy data sets: the coupling spline flow.
            "nsf" if preset == "toy" => ModelConfig::Nsf(crate::nsf::preset("coupling", dim, seed)?),
            "nsf" => ModelConfig::Nsf(crate::nsf::preset(preset, dim, seed)?),
            _ => ModelConfig::RealNvp(crate::realnvp::preset(preset, dim, seed)?),
        })
    }

    /// The preset names of a family (empty for an unknown family).
    pub fn presets(family: &str) -> Vec<&'static str> {
        match family {
            "nice" => crate::nice::PRESETS.to_vec(),
            "realnvp" => {
                let mut v = crate::realnvp::PRESETS.to_vec();
                v.extend(crate::multiscale::PRESETS);
                v
            }
            "glow" => crate::glow::PRESETS.to_vec(),
            "maf" => crate::maf::PRESETS.to_vec(),
            "iaf" => crate::iaf::PRESETS.to_vec(),
            "nsf" => crate::nsf::PRESETS.to_vec(),
            _ => vec![],
        }
    }
}

/// A typed unit test helper: a batch of zeros of the model's data shape.
#[doc(hidden)]
pub fn zeros_batch<T: Real>(config: &ModelConfig, n: usize) -> Result<Tensor<T>> {
    let mut shape = vec![n];
    shape.extend(config.data_shape());
    Ok(Tensor::zeros(&shape)?)
}
