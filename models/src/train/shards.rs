//! Data-parallel training: how a run uses its threads ([`Strategy`]), and the flow replicas that
//! run the shards of a minibatch.
//!
//! With [`Strategy::Shards`] a step splits its minibatch of B samples into one contiguous shard
//! per thread (shard k holds rows `k B / N .. (k + 1) B / N`), runs the training forward and
//! backward passes of every shard at once (shard 0 on the trained flow itself, the others on
//! replicas holding copies of its parameters, every pass single-threaded), and adds the
//! replicas' gradients into the trained flow's in shard order: `g = ((g_0 + g_1) + g_2) + ...`.
//! Each sample's weight is `-1 / B`, so the sum is the gradient of the whole minibatch's loss.
//! The shards, the passes and the order of the sum depend only on N, so a run with N threads is
//! reproducible bit for bit; with one thread nothing here runs.

use exactflow_kernels::Real;
use exactflow_layers::{ParamKind, Params, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::flow::{Flow, TrainMode};

/// The fewest samples a shard may have: below this the per-pass overheads (layer prologues,
/// allocations, the gradient sum) outweigh the split, and the matrix products go parallel
/// instead.
pub const MIN_SHARD_SAMPLES: usize = 64;

/// How a training run uses `threads > 1` (see [`Strategy::choose`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One thread: everything sequential.
    Sequential,
    /// One pass over the whole minibatch, its matrix products split over the threads.
    ParallelGemm,
    /// One shard of the minibatch per thread (see the module documentation).
    Shards,
}

impl Strategy {
    /// The rule, by shape: shards for unconditional vector data (`[D]` samples, no context) when
    /// every shard gets at least [`MIN_SHARD_SAMPLES`] samples and no stage couples the samples of a batch (batch norm's
    /// batch statistics, ActNorm's data-dependent initialization would differ per shard); parallel
    /// matrix products otherwise. The products of vector flows are small (a batch of 512 by 128
    /// units is 8 MFLOP per product, too little to amortize splitting each product), while a
    /// shard runs whole passes with one synchronization per step; the products of image flows
    /// (convolutions over `B H W` rows) are large enough to split well, and those flows hold
    /// ActNorm or batch norm.
    pub fn choose<T: Real>(flow: &Flow<T>, threads: usize, batch: usize) -> Self {
        if threads <= 1 {
            return Strategy::Sequential;
        }
        let per_sample = flow
            .stages()
            .iter()
            .all(|s| !matches!(s.kind(), "BatchNorm" | "ActNorm"));
        // Conditional flows split their products instead: the shards do not slice a context yet.
        let unconditional = flow.context_dim() == 0;
        if flow.data_shape().len() == 1 && per_sample && unconditional && batch / threads >= MIN_SHARD_SAMPLES {
            Strategy::Shards
        } else {
            Strategy::ParallelGemm
        }
    }
}

/// The replicas of a flow that run shards 1..N of every minibatch, and reusable buffers.
pub(crate) struct Replicas<T: Real> {
    flows: Vec<Flow<T>>,
    values: Vec<T>,
}

impl<T: Real> Replicas<T> {
    /// `shards - 1` replicas of `flow` (built from `model`, then given its parameters and integer
    /// state).
    pub(crate) fn new(model: &ModelConfig, flow: &Flow<T>, shards: usize) -> Result<Self> {
        let mut ints = Vec::new();
        flow.visit_int("", &mut |_, b| ints.push(b.values().to_vec()));
        let mut flows = Vec::with_capacity(shards.saturating_sub(1));
        for _ in 1..shards {
            let mut r: Flow<T> = model.build()?;
            let (mut k, mut failure) = (0, None);
            r.visit_int_mut("", &mut |name, b| {
                if let Some(v) = ints.get(k)
                    && let Err(e) = b.set(v.clone())
                {
                    failure.get_or_insert(Error::Config(format!("replica of {name}: {e}")));
                }
                k += 1;
            });
            if let Some(e) = failure {
                return Err(e);
            }
            r.set_params_checked(true);
            flows.push(r);
        }
        let mut replicas = Replicas {
            flows,
            values: Vec::new(),
        };
        replicas.sync_from(flow);
        Ok(replicas)
    }

    /// Copies every parameter value of `flow` into each replica.
    fn sync_from(&mut self, flow: &Flow<T>) {
        let values = &mut self.values;
        values.clear();
        flow.visit_params("", &mut |_, p| values.extend_from_slice(p.value.as_slice()));
        for r in &mut self.flows {
            let mut at = 0;
            r.visit_params_mut("", &mut |_, p| {
                let n = p.value.len();
                p.value.as_mut_slice().copy_from_slice(&values[at..at + n]);
                at += n;
            });
        }
    }

    /// The training passes of the minibatch `x` in shards (see the module documentation): leaves
    /// in `flow` the gradient of `-mean log p(x)` and returns `log p` of every sample, in order.
    ///
    /// # Errors
    /// The first failing shard's error (in shard order).
    pub(crate) fn forward_backward(&mut self, flow: &mut Flow<T>, x: &Tensor<T>, mode: TrainMode) -> Result<Vec<T>> {
        self.sync_from(flow);
        let (b, n) = (x.batch(), self.flows.len() + 1);
        let xs = (0..n)
            .map(|k| x.slice_batch(k * b / n..(k + 1) * b / n))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let w = T::lit(-1.0 / b as f64);
        let mut outs: Vec<Option<Result<Vec<T>>>> = (0..n).map(|_| None).collect();
        let flows = std::iter::once(&mut *flow).chain(self.flows.iter_mut());
        rayon::scope(|s| {
            for ((f, x), out) in flows.zip(&xs).zip(outs.iter_mut()) {
                s.spawn(move |_| *out = Some(shard_pass(f, x, mode, w)));
            }
        });
        let mut log_p = Vec::with_capacity(b);
        for out in outs {
            // invariant: the scope ran every shard's task.
            log_p.extend(out.expect("every shard ran")?);
        }
        // The gradients, summed in shard order into the trained flow's.
        let values = &mut self.values;
        for r in &self.flows {
            values.clear();
            r.visit_params("", &mut |_, p| {
                if p.kind == ParamKind::Trainable {
                    values.extend_from_slice(p.grad.as_slice());
                }
            });
            let mut at = 0;
            flow.visit_params_mut("", &mut |_, p| {
                if p.kind == ParamKind::Trainable {
                    let n = p.grad.len();
                    for (g, &h) in p.grad.as_mut_slice().iter_mut().zip(&values[at..at + n]) {
                        *g += h;
                    }
                    at += n;
                }
            });
        }
        Ok(log_p)
    }
}

/// One shard's passes on one flow: the gradient of `w * sum log p` over the shard, and `log p`.
fn shard_pass<T: Real>(flow: &mut Flow<T>, x: &Tensor<T>, mode: TrainMode, w: T) -> Result<Vec<T>> {
    flow.zero_grad();
    let (log_p, cache) = flow.forward_train(x, None, mode)?;
    flow.backward(cache, &vec![w; x.batch()])?;
    Ok(log_p)
}
