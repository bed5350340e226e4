//! # exactflow-models
//!
//! Flows assembled from exactflow's layers: NICE, RealNVP and Glow, trained by maximum
//! likelihood, sampled, encoded, interpolated, saved and loaded; plus the data sets they are
//! trained on.
//!
//! Direction convention: a flow's forward pass maps data x to latent z, and
//! `log p(x) = log pi(z) + sum_k log|det J_k|`.

#![warn(missing_docs)]

pub mod audit;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod flow;
pub mod glow;
pub mod multiscale;
pub mod nice;
pub mod realnvp;
pub mod train;

pub use config::{
    GlowConfig, GlowCouplingKind, GlowPermutation, ModelConfig, MultiScaleRealNvpConfig, NiceConfig, Prior,
    RealNvpConfig,
};
pub use eval::{Evaluation, evaluate};
pub use flow::{Flow, FlowCache, Latent, Stage};
pub use train::{TrainConfig, TrainReport, train};
