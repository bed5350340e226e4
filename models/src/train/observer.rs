//! Progress reports from the trainer, for progress bars and logs.

use serde::Serialize;

/// One optimizer step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepReport {
    /// Steps done (1-based after this step).
    pub step: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Mean negative log-likelihood of the batch, nats per sample.
    pub loss: f64,
    /// The same in bits per dimension, for discrete data.
    pub bits_per_dim: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training throughput so far.
    pub samples_per_sec: f64,
    /// Steps per second so far.
    pub steps_per_sec: f64,
}

/// The end of an epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochReport {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Steps done so far.
    pub step: u64,
    /// Mean training loss over the epoch (nats per sample).
    pub train_nll: f64,
    /// Validation NLL (nats per sample), when there is a validation set.
    pub val_nll: Option<f64>,
    /// Validation bits per dimension, for discrete data.
    pub val_bits_per_dim: Option<f64>,
    /// Whether this epoch improved the best validation NLL.
    pub improved: bool,
}

/// Receives progress. Both methods default to doing nothing. `Send`, because multi-threaded
/// training runs the loop inside a rayon pool.
pub trait Observer: Send {
    /// Called after every optimizer step.
    fn on_step(&mut self, _report: &StepReport) {}
    /// Called after every epoch (after validation).
    fn on_epoch(&mut self, _report: &EpochReport) {}
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {}
