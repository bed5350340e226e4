//! # exactflow-layers
//!
//! Invertible layers with exact log-determinants and hand-written backward passes, generic over
//! [`exactflow_kernels::Real`] (f32, f64 and forward-mode dual numbers).
//!
//! **Direction** (everywhere in exactflow): [`Bijector::forward`] maps data x to latent z and
//! returns `log|det dz/dx|` per sample; [`Bijector::inverse`] maps z back to x.
//!
//! **Composition.** A flow is a list of [`Stage`]s: layers ([`Layer`] around a [`Bijector`]) and
//! factor-outs ([`Split`]). Every pass takes a [`Ctx`] carrying the context of a conditional
//! flow and the parallelism of the matrix products.

#![warn(missing_docs)]

pub mod actnorm;
pub mod autoregressive;
pub mod batchnorm;
pub mod bijector;
pub mod conv1x1;
pub mod coupling;
pub mod ctx;
pub mod distributions;
pub mod gradcheck;
pub mod image_coupling;
pub mod jacobian;
pub mod logit;
pub mod mask;
pub mod nets;
pub mod params;
pub mod permutation;
pub mod scaling;
pub mod spline;
pub mod spline_coupling;
pub mod split;
pub mod squeeze;
pub mod stage;
pub mod tensor;

pub use actnorm::ActNorm;
pub use autoregressive::{AffineAutoregressive, Autoregressive, Direction, SplineAutoregressive};
pub use batchnorm::BatchNorm;
pub use bijector::{Bijector, Cache, InputGrad, Mapped, Pass};
pub use conv1x1::{Conv1x1, Conv1x1Lu};
pub use coupling::{AdditiveCoupling, AffineCoupling, Coupling, GlowCoupling};
pub use ctx::Ctx;
pub use distributions::{DiagonalGaussian, Distribution, StandardLogistic, StandardNormal};
pub use logit::Logit;
pub use mask::{Mask, MaskKind, Partition};
pub use params::{IntBuffer, IntKind, Param, ParamKind, Params};
pub use permutation::Permutation;
pub use scaling::Scaling;
pub use spline::{BinStats, SplineConfig};
pub use spline_coupling::{SplineCoupling, SplineTransform};
pub use split::Split;
pub use squeeze::{Squeeze, Unsqueeze};
pub use stage::{Factored, Layer, Stage, Step, layer};
pub use tensor::Tensor;
