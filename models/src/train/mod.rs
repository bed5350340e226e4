//! Maximum-likelihood training: seeded minibatches, Adam, schedules, clipping, validation,
//! early stopping, divergence detection and checkpoints.

mod adam;
mod observer;
mod schedule;
pub mod shards;
mod state;
mod trainer;

pub use adam::{Adam, AdamConfig};
pub use observer::{EpochReport, Observer, Silent, StepReport};
pub use schedule::{Decay, Schedule};
pub use shards::{MIN_SHARD_ROWS, SPLINE_ROW_WEIGHT, Strategy, needs_batch_init};
pub use state::TrainState;
pub use trainer::{DIVERGENCE_MARGIN_PER_DIM, MAX_THREADS, TrainConfig, TrainReport, train};
