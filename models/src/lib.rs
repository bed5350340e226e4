//! # exactflow-models
//!
//! Flows assembled from exactflow's layers: NICE, RealNVP and Glow, trained by maximum
//! likelihood, sampled, encoded, saved and loaded; plus the data sets they are trained on.

#![warn(missing_docs)]

pub mod data;
