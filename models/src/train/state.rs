//! [`TrainState`]: where training stood when a checkpoint was written, enough to resume exactly.
//!
//! The checkpoint stores it as a [`TrainingRecord`]: this struct as JSON, plus Adam's moments and
//! the best parameters as f64 tensors (moments are tensors rather than JSON: a 4M-parameter
//! model's moments would not fit the 100 MB header limit of safetensors, and JSON would round
//! them).

use serde::{Deserialize, Serialize};

use super::adam::{Adam, AdamConfig};
use super::trainer::TrainConfig;
use crate::checkpoint::{Loaded, NamedValues, TrainingRecord};
use crate::error::{Error, Result};

/// Where training stood when a checkpoint was written; enough to resume exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: u64,
    /// Epochs completed.
    pub epoch: usize,
    /// Batches done within the current epoch.
    pub batch_in_epoch: usize,
    /// The training configuration (seed included).
    pub config: TrainConfig,
    /// Adam's hyper-parameters.
    pub adam: AdamConfig,
    /// Adam's step count.
    pub adam_t: u64,
    /// Best validation NLL so far (nats per sample).
    pub best_val_nll: Option<f64>,
    /// The epoch that reached it.
    pub best_epoch: Option<usize>,
    /// Epochs since the best one.
    pub epochs_since_best: usize,
    /// Whether training ran to completion (the parameters are the final, best ones).
    pub finished: bool,
    /// Mean training NLL of each completed epoch.
    pub train_history: Vec<f64>,
    /// Validation NLL of each completed epoch.
    pub val_history: Vec<Option<f64>>,
    /// Validation NLL of the model before its first step: the reference of the divergence test
    /// (see `crate::train::DIVERGENCE_MARGIN_PER_DIM`). Absent in checkpoints of format 2 and
    /// earlier, and without a validation set.
    #[serde(default)]
    pub initial_val_nll: Option<f64>,
    /// Adam's moments (written as tensors, not JSON).
    #[serde(skip)]
    pub moments: Option<(NamedValues, NamedValues)>,
    /// The best parameters so far, when they are kept apart from the flow: in a running trainer,
    /// and from a checkpoint of format 2 or earlier (its `best.*` tensors). A format 3 checkpoint
    /// saves the best model as its model instead.
    #[serde(skip)]
    pub best_params: Option<NamedValues>,
    /// The latest parameters, when the checkpoint's model (the best so far) is not the latest
    /// (`latest.*` tensors): resuming continues from these.
    #[serde(skip)]
    pub latest_params: Option<NamedValues>,
}

impl TrainState {
    /// The state at the start of a run with `config`.
    pub fn start(config: &TrainConfig) -> Self {
        TrainState {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            config: config.clone(),
            adam: config.adam,
            adam_t: 0,
            best_val_nll: None,
            best_epoch: None,
            epochs_since_best: 0,
            finished: false,
            train_history: Vec::new(),
            val_history: Vec::new(),
            initial_val_nll: None,
            moments: None,
            best_params: None,
            latest_params: None,
        }
    }

    /// Rebuilds Adam, in the model's precision `T`, from the saved moments.
    pub fn adam<T: exactflow_kernels::Real>(&self) -> Adam<T> {
        let (m, v) = self.moments.clone().unwrap_or_default();
        Adam::with_moments(self.adam, self.adam_t, m, v)
    }

    /// The record a checkpoint stores.
    ///
    /// # Errors
    /// Only if the state cannot be serialized (it always can).
    pub fn to_record(&self) -> Result<TrainingRecord> {
        let state_json =
            serde_json::to_string(self).map_err(|e| Error::Config(format!("training state as JSON: {e}")))?;
        Ok(TrainingRecord {
            state_json,
            moments: self.moments.clone(),
            best: self.best_params.clone(),
            latest: self.latest_params.clone(),
        })
    }

    /// The training state of a loaded checkpoint (`None` for a model-only checkpoint).
    ///
    /// # Errors
    /// As [`TrainState::from_record`].
    pub fn of_checkpoint<T: exactflow_kernels::Real>(
        path: &std::path::Path,
        loaded: &Loaded<T>,
    ) -> Result<Option<Self>> {
        loaded.record.as_ref().map(|r| Self::from_record(path, r)).transpose()
    }

    /// The state a checkpoint's record holds.
    ///
    /// # Errors
    /// [`Error::Format`] naming `path` when the JSON is not a training state.
    pub fn from_record(path: &std::path::Path, record: &TrainingRecord) -> Result<Self> {
        let mut st: TrainState = serde_json::from_str(&record.state_json).map_err(|e| {
            Error::format(
                path,
                "exactflow checkpoint (safetensors)",
                format!("bad training state: {e}"),
            )
        })?;
        st.moments = record.moments.clone();
        st.best_params = record.best.clone();
        st.latest_params = record.latest.clone();
        Ok(st)
    }
}
