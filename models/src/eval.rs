//! Evaluation: mean negative log-likelihood and bits per dimension of a data set.
//!
//! For continuous data the NLL is `-log p(x)` (nats per sample). For discrete data with K levels
//! the model sees dequantized `u = (x + noise) / K` in [0, 1)^D and the reported NLL is that of
//! the integer data's continuous relaxation on [0, K)^D: `-(log p(u) - D ln K)` (an upper bound
//! on the discrete NLL), with `bits/dim = NLL / (D ln 2)`. The dequantization noise of an
//! evaluation is drawn from a fixed seed, so repeated evaluations agree bit for bit.

use exactflow_kernels::Real;

use crate::error::Result;
use exactflow_layers::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::{Dataset, dequantize};
use crate::flow::Flow;

/// Results of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Mean NLL, nats per sample (see the module doc for discrete data).
    pub nll: f64,
    /// Bits per dimension, for discrete data.
    pub bits_per_dim: Option<f64>,
    /// Per-sample log-likelihood in nats (`-nll_i`), in data order.
    #[serde(skip)]
    pub log_likelihood: Vec<f64>,
}

/// The seed of the dequantization noise used by evaluations.
pub const EVAL_NOISE_SEED: u64 = 0x5eed_e7a1;

/// A batch of data rows `idx` as the model's input: dequantized to [0, 1) for discrete data.
pub(crate) fn model_input<T: Real>(ds: &Dataset, idx: &[usize], rng: &mut ChaCha8Rng) -> Result<Tensor<T>> {
    let x = ds.data.gather_batch(idx)?;
    let x = match ds.levels {
        Some(k) => dequantize(&x, k, rng)?,
        None => x,
    };
    Ok(x.cast())
}

/// The context rows `idx` of a conditional data set, in the model's scalar type (`None` without
/// a context).
pub(crate) fn model_context<T: Real>(ds: &Dataset, idx: &[usize]) -> Result<Option<Tensor<T>>> {
    Ok(ds
        .context
        .as_ref()
        .map(|c| c.gather_batch(idx))
        .transpose()?
        .map(|c| c.cast()))
}

/// Checks that a data set's context fits a flow: a context of the flow's width for a
/// conditional flow, none for an unconditional one.
///
/// # Errors
/// [`crate::Error::Config`] naming both widths.
pub fn check_context<T: Real>(flow: &Flow<T>, ds: &Dataset) -> Result<()> {
    match (flow.context_dim(), ds.context_dim()) {
        (a, b) if a == b => Ok(()),
        (0, b) => Err(crate::Error::Config(format!(
            "the model is unconditional, but the data {} carry a context of width {b}",
            ds.name
        ))),
        (a, 0) => Err(crate::Error::Config(format!(
            "the model is conditional on a context of width {a}, but the data {} have no context",
            ds.name
        ))),
        (a, b) => Err(crate::Error::Config(format!(
            "the model's context has width {a}, the data {}'s has width {b}",
            ds.name
        ))),
    }
}

/// `log p` of the model input turned into the data's log-likelihood (subtracting `D ln K` for
/// discrete data).
pub(crate) fn data_log_likelihood(log_p: f64, dim: usize, levels: Option<u32>) -> f64 {
    match levels {
        Some(k) => log_p - dim as f64 * (k as f64).ln(),
        None => log_p,
    }
}

/// A lower bound on the bytes a pass of `rows` samples through `flow` keeps alive: the input,
/// one activation per stage and the output, each `rows x (elements per sample)` values of `T`
/// (conditioner networks add their own). `None` when it overflows a `u64`.
pub(crate) fn activation_bytes<T: Real>(flow: &Flow<T>, rows: usize) -> Option<u64> {
    let sample: usize = flow.data_shape().iter().product();
    crate::memory::bytes(&[rows, sample, flow.stages().len() + 2], std::mem::size_of::<T>())
}

/// The largest batch of at most `want` samples (and at least 1) whose activations
/// ([`evaluate`]'s estimate) take at most a quarter of this machine's memory: the evaluation
/// batch to use for large images.
pub fn fitting_batch<T: Real>(flow: &Flow<T>, want: usize) -> usize {
    let budget = crate::memory::machine_bytes() / 4;
    let per_sample = activation_bytes(flow, 1).unwrap_or(u64::MAX).max(1);
    want.min(usize::try_from(budget / per_sample).unwrap_or(usize::MAX))
        .max(1)
}

/// Mean NLL (and bits/dim for discrete data) of `ds` under `flow`, in batches of `batch`; for a
/// conditional flow, the conditional NLL `-log p(x_i | c_i)` with the data set's context.
///
/// # Errors
/// Data of the wrong shape; a context that does not fit the flow ([`check_context`]); non-finite outputs; [`crate::Error::TooLarge`] when a batch's
/// activations (at least input, output and one tensor per stage) need more memory than this
/// machine has (see [`fitting_batch`]).
pub fn evaluate<T: Real>(flow: &Flow<T>, ds: &Dataset, batch: usize) -> Result<Evaluation> {
    let n = ds.data.batch();
    let dim = ds.data.sample_len();
    let rows = batch.max(1).min(n.max(1));
    check_context(flow, ds)?;
    crate::memory::check(
        || format!("evaluating batches of {rows} samples of shape {:?}", ds.sample_shape()),
        activation_bytes(flow, rows),
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(EVAL_NOISE_SEED);
    let mut ll = Vec::with_capacity(n);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = model_input::<T>(ds, chunk, &mut rng)?;
        let c = model_context::<T>(ds, chunk)?;
        for lp in flow.log_prob(&x, c.as_ref())? {
            ll.push(data_log_likelihood(lp.as_f64(), dim, ds.levels));
        }
    }
    let nll = -ll.iter().sum::<f64>() / n.max(1) as f64;
    Ok(Evaluation {
        nll,
        bits_per_dim: ds.levels.map(|_| nll / (dim as f64 * std::f64::consts::LN_2)),
        log_likelihood: ll,
    })
}
