//! Inverse autoregressive flow (Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling, 2016)
//! for vector data: the architecture of [`crate::maf`] with every autoregressive layer run the
//! other way.
//!
//! Sampling is one MADE pass per layer (`x_i = z_i exp(s_i(z_{<i})) + t_i(z_{<i})`); scoring
//! solves for z, D passes per layer, and its backward pass is the implicit-function adjoint of
//! [`exactflow_layers::autoregressive`] (D + 1 MADE backward passes per layer). An IAF trained
//! by maximum likelihood is therefore D times slower to train than the MAF of the same shape;
//! it pays off where sampling speed matters.

use exactflow_kernels::Real;
use exactflow_layers::autoregressive::Direction;

use crate::error::Result;
use crate::flow::Flow;
use crate::maf::{MafConfig, build_with};

/// The presets of the "iaf" family: those of [`crate::maf`].
pub const PRESETS: [&str; 2] = crate::maf::PRESETS;

/// Builds an IAF from its config (a [`MafConfig`]).
///
/// # Errors
/// [`crate::Error::Config`] for impossible settings (see [`crate::maf::validate`]).
pub fn build<T: Real>(c: &MafConfig) -> Result<Flow<T>> {
    build_with("iaf", c, Direction::Iaf)
}

/// An IAF preset: the MAF preset of the same name ([`crate::maf::preset`]).
///
/// # Errors
/// [`crate::Error::Config`] for an unknown preset.
pub fn preset(preset: &str, dim: usize, seed: u64) -> Result<MafConfig> {
    crate::maf::preset("iaf", preset, dim, seed)
}
