//! # exactflow-models
//!
//! Flows assembled from exactflow's layers: NICE, RealNVP, Glow, MAF, IAF and neural spline
//! flows, trained by maximum
//! likelihood, sampled, encoded, interpolated, saved and loaded; plus the data sets they are
//! trained on.
//!
//! Direction convention: a flow's forward pass maps data x to latent z, and
//! `log p(x) = log pi(z) + sum_k log|det J_k|`.

#![warn(missing_docs)]

pub mod atomic_write;
pub mod audit;
pub mod certify;
pub mod checkpoint;
mod checks;
pub mod config;
pub mod data;
pub mod embedding;
pub mod error;
pub mod eval;
pub mod flow;
pub mod glow;
pub mod iaf;
pub mod maf;
pub mod memory;
pub mod multiscale;
pub mod nice;
pub mod nsf;
pub mod posterior;
pub mod precision;
pub mod realnvp;
pub mod train;

pub use certify::{Certified, CertifiedSample, CertifiedSummary, certify_dataset, certify_log_prob};
pub use checks::{MAX_DEPTH, MAX_LAYERS};
pub use config::ModelConfig;
pub use embedding::ContextEmbedding;
pub use error::{Error, Result};
pub use eval::{Evaluation, evaluate};
pub use flow::{Flow, FlowCache, Latent, TrainMode};
pub use glow::{GlowConfig, GlowCouplingKind, GlowPermutation};
pub use maf::{ArPermutation, MafConfig};
pub use multiscale::MultiScaleRealNvpConfig;
pub use nice::{NiceConfig, Prior};
pub use nsf::{NsfConfig, SplineLayer};
pub use precision::Precision;
pub use realnvp::RealNvpConfig;
pub use train::{TrainConfig, TrainReport, train};
