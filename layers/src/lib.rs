//! # exactflow-layers
//!
//! Invertible layers with exact log-determinants and hand-written backward passes, generic over
//! [`exactflow_kernels::Real`] (f32, f64 and forward-mode dual numbers).
//!
//! **Direction** (everywhere in exactflow): [`Bijector::forward`] maps data x to latent z and
//! returns `log|det dz/dx|` per sample; [`Bijector::inverse`] maps z back to x.

#![warn(missing_docs)]

pub mod bijector;
pub mod coupling;
pub mod distributions;
pub mod gradcheck;
pub mod jacobian;
pub mod mask;
pub mod nets;
pub mod params;
pub mod sequential;
pub mod tensor;

pub use bijector::{Bijector, Cache, Mapped, Pass};
pub use coupling::{AdditiveCoupling, AffineCoupling, Coupling, GlowCoupling};
pub use distributions::{DiagonalGaussian, Distribution, StandardLogistic, StandardNormal};
pub use mask::{Mask, MaskKind, Partition};
pub use params::{Param, ParamKind, Params};
pub use sequential::Sequential;
pub use tensor::Tensor;
