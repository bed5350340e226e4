//! Data-parallel training: how a run uses its threads ([`Strategy`]), and the flow replicas that
//! run the shards of a minibatch.
//!
//! With [`Strategy::Shards`] a step splits its minibatch of B samples into one contiguous shard
//! per thread (shard k holds rows `k B / N .. (k + 1) B / N` of the data and, for a conditional
//! flow, the same rows of the context, so that every sample keeps its own context row), runs the training forward and
//! backward passes of every shard at once (shard 0 on the trained flow itself, the others on
//! replicas holding copies of its parameters, every pass single-threaded; two shards on the
//! calling thread and the helper of [`exactflow_kernels::team`], more in the run's rayon pool),
//! and adds the
//! replicas' gradients into the trained flow's in shard order: `g = ((g_0 + g_1) + g_2) + ...`.
//! Each sample's weight is `-1 / B`, so the sum is the gradient of the whole minibatch's loss.
//! The shards, the passes and the order of the sum depend only on N, so a run with N threads is
//! reproducible bit for bit; with one thread nothing here runs.

use exactflow_kernels::Real;
use exactflow_layers::{ParamKind, Params, Stage, Tensor};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::flow::{Flow, TrainMode};

/// The fewest rows a shard may have: its samples times the pixels of a sample (1 for vector
/// data), the rows of its matrix products. The parallel work of a step grows with the rows of a
/// shard, while what stays serial (copying the parameters into the replicas, summing their
/// gradients, the optimizer's update) grows with the parameters only. Measured on two cores
/// (BENCHMARKS.md, "f32 and two threads"): 32 rows per shard (the vector digits presets, batch
/// 64) trained no faster or slower than one thread, 256 rows (two moons, batch 512) 1.45-1.6x
/// faster, 2048 (Glow on 8 x 8 digits, batch 64) 1.6x; the threshold sits between.
pub const MIN_SHARD_ROWS: usize = 128;

/// How many rows of a plain coupling's conditioner one row of a spline layer weighs in
/// [`Strategy::choose`]: its elementwise work (the bins' softmax, the search, the rational
/// quadratic and their backward passes) outweighs its products. Measured on two cores
/// (BENCHMARKS.md, "Heavy rows"): the NSF digits presets at batch 64 (32 rows per shard) trained
/// 1.3-1.4x faster in shards than with split products, so 32 spline rows count as the 128 rows
/// of [`MIN_SHARD_ROWS`].
pub const SPLINE_ROW_WEIGHT: usize = 4;

/// How a training run uses `threads > 1` (see [`Strategy::choose`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One thread: everything sequential.
    Sequential,
    /// One pass over the whole minibatch, its matrix products (and a convolution's samples) split
    /// over two threads.
    ParallelGemm,
    /// One shard of the minibatch per thread (see the module documentation).
    Shards,
}

impl Strategy {
    /// The rule, by shape, for `threads > 1`:
    ///
    /// 1. **Shards** when no stage couples the samples of a batch (batch norm's batch statistics
    ///    do) and every shard gets at least [`MIN_SHARD_ROWS`] rows: vector and image data,
    ///    with or without a context (a shard takes its rows of both). A row of a heavier layer
    ///    counts as several: D for an inverse autoregressive layer of D dimensions (it scores
    ///    by D conditioner passes), [`SPLINE_ROW_WEIGHT`] for a spline layer, the heaviest stage
    ///    deciding. So the IAF and NSF digits presets shard at batch 64, where the other vector
    ///    digits presets split their products. A shard runs whole passes
    ///    with one synchronization per step, where a split product synchronizes on every
    ///    product, and the products of these flows are small (a batch of 512 by 128 units is 8
    ///    MFLOP per product). ActNorm couples samples only in its data-dependent initialization:
    ///    the trainer runs that one step as a single pass over the whole minibatch (see
    ///    [`needs_batch_init`]), as a one-thread run does.
    /// 2. **Parallel matrix products** otherwise: the flows that cannot shard (too few rows per
    ///    shard, as the vector digits presets at batch 64; or batch norm). Every product of at
    ///    least `64 x 64 x 32` multiply-adds is split in two halves, one for each of two cores,
    ///    through the spinning helper of [`exactflow_kernels::team`]; a convolution splits its
    ///    samples in the forward pass and puts dW and dx on the two cores in the backward pass
    ///    (splitting its products instead trained slower than one thread); Adam splits its large
    ///    tensors. Each split gives the one-thread bits, and uses two cores at most. Measured
    ///    (BENCHMARKS.md, "Fourth round"): the digits presets 1.2-1.4x, the multi-scale
    ///    RealNVP of digit images (batch norm) 1.5x of one thread.
    pub fn choose<T: Real>(flow: &Flow<T>, threads: usize, batch: usize) -> Self {
        if threads <= 1 {
            return Strategy::Sequential;
        }
        let per_sample = flow.stages().iter().all(|s| s.kind() != "BatchNorm");
        let pixels = match flow.data_shape() {
            [_, h, w] => h.saturating_mul(*w),
            _ => 1,
        };
        let weight = flow.stages().iter().map(|s| row_weight(s.as_ref())).max().unwrap_or(1);
        let rows = (batch / threads).saturating_mul(pixels).saturating_mul(weight);
        if per_sample && rows >= MIN_SHARD_ROWS {
            return Strategy::Shards;
        }
        Strategy::ParallelGemm
    }
}

/// The training work of one row of `stage`, in rows of a plain coupling's conditioner (see
/// [`Strategy::choose`]): an inverse autoregressive layer scores a sample by solving for it, one
/// conditioner pass per dimension (D passes, and D + 1 in its backward pass), and a spline
/// layer's row weighs [`SPLINE_ROW_WEIGHT`].
fn row_weight<T: Real>(stage: &dyn Stage<T>) -> usize {
    let dims = || stage.sample_shapes().0.iter().product::<usize>().max(1);
    match stage.kind() {
        "InverseAffineAutoregressive" => dims(),
        "InverseSplineAutoregressive" => dims().saturating_mul(SPLINE_ROW_WEIGHT),
        "SplineCoupling" | "SplineAutoregressive" => SPLINE_ROW_WEIGHT,
        _ => 1,
    }
}

/// Whether a training pass of `flow` would initialize a layer from its minibatch's data (an
/// ActNorm whose `initialized` flag is 0): that pass must see the whole minibatch, so the
/// trainer runs it unsharded and then gives the replicas the initialized state
/// (`Replicas::sync_state`).
pub fn needs_batch_init<T: Real>(flow: &Flow<T>) -> bool {
    let mut uninitialized = false;
    flow.visit_int("", &mut |name, b| {
        uninitialized |= name.ends_with("initialized") && b.values().contains(&0);
    });
    uninitialized
}

/// The replicas of a flow that run shards 1..N of every minibatch, and reusable buffers.
pub(crate) struct Replicas<T: Real> {
    flows: Vec<Flow<T>>,
    /// The trained flow's parameter values, gathered for the replicas.
    values: Vec<T>,
    /// Each replica's trainable gradients after its pass, flat in visiting order.
    grads: Vec<Vec<T>>,
}

impl<T: Real> Replicas<T> {
    /// `shards - 1` replicas of `flow` (built from `model`, then given its parameters and integer
    /// state).
    pub(crate) fn new(model: &ModelConfig, flow: &Flow<T>, shards: usize) -> Result<Self> {
        let mut flows = Vec::with_capacity(shards.saturating_sub(1));
        for _ in 1..shards {
            let mut r: Flow<T> = model.build()?;
            r.set_params_checked(true);
            flows.push(r);
        }
        let mut replicas = Replicas {
            flows,
            values: Vec::new(),
            grads: Vec::new(),
        };
        replicas.sync_state(flow)?;
        Ok(replicas)
    }

    /// Copies the integer state of `flow` (ActNorm's `initialized` flags after an unsharded
    /// initialization step; permutations and signs never change) and every parameter value into
    /// each replica.
    ///
    /// # Errors
    /// [`Error::Config`] if a replica's integer state cannot take the flow's (it was built from
    /// the same config, so it always can).
    pub(crate) fn sync_state(&mut self, flow: &Flow<T>) -> Result<()> {
        let mut ints = Vec::new();
        flow.visit_int("", &mut |_, b| ints.push(b.values().to_vec()));
        for r in &mut self.flows {
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
        }
        self.sync_from(flow);
        Ok(())
    }

    /// Copies every parameter value of `flow` into each replica.
    fn sync_from(&mut self, flow: &Flow<T>) {
        gather_values(flow, &mut self.values);
        for r in &mut self.flows {
            copy_values(r, &self.values);
        }
    }

    /// The training passes of the minibatch `x` (with its context `c` `[B, C]` for a
    /// conditional flow) in shards (see the module documentation): leaves in `flow` the
    /// gradient of `-mean log p(x | c)` and returns `log p` of every sample, in order.
    ///
    /// # Errors
    /// A context whose row count differs from the minibatch's; the first failing shard's error
    /// (in shard order).
    pub(crate) fn forward_backward(
        &mut self,
        flow: &mut Flow<T>,
        x: &Tensor<T>,
        c: Option<&Tensor<T>>,
        mode: TrainMode,
    ) -> Result<Vec<T>> {
        let (b, n) = (x.batch(), self.flows.len() + 1);
        if let Some(c) = c
            && c.batch() != b
        {
            return Err(Error::invalid(
                "train (shards)",
                "context",
                format!("{} context rows for a minibatch of {b} samples", c.batch()),
            ));
        }
        // The trained flow's parameters, gathered once; each replica copies them in its own
        // task, at the same time as the first shard's pass starts. Two shards run on the
        // spinning helper of `team`, which is awake from the previous step where a rayon worker
        // would have gone to sleep (measured on two moons: 1.6-1.7x of one thread through rayon,
        // 1.7-1.9x through the team); more shards run in the run's rayon pool.
        gather_values(flow, &mut self.values);
        let values = &self.values;
        let rows = |k: usize| k * b / n..(k + 1) * b / n;
        let xs = (0..n)
            .map(|k| x.slice_batch(rows(k)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let cs = (0..n)
            .map(|k| c.map(|c| c.slice_batch(rows(k))).transpose())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let w = T::lit(-1.0 / b as f64);
        let mut outs: Vec<Option<Result<Vec<T>>>> = (0..n).map(|_| None).collect();
        self.grads.resize_with(n - 1, Vec::new);
        let trained = &mut *flow;
        if n == 2 {
            let (first, others) = outs.split_at_mut(1);
            // invariant: n == 2 is one replica and one gradient buffer (resized above).
            let (r, grads) = (&mut self.flows[0], &mut self.grads[0]);
            let (x0, c0, x1, c1) = (&xs[0], &cs[0], &xs[1], &cs[1]);
            exactflow_kernels::team::join(
                || first[0] = Some(shard_pass(trained, x0, c0.as_ref(), mode, w)),
                || others[0] = Some(replica_pass(r, values, grads, x1, c1.as_ref(), mode, w)),
            );
        } else {
            rayon::scope(|s| {
                let (first, others) = outs.split_at_mut(1);
                let (x0, c0) = (&xs[0], &cs[0]);
                s.spawn(move |_| first[0] = Some(shard_pass(trained, x0, c0.as_ref(), mode, w)));
                let replicas = self.flows.iter_mut().zip(self.grads.iter_mut());
                for ((((r, grads), x), c), out) in replicas.zip(&xs[1..]).zip(&cs[1..]).zip(others.iter_mut()) {
                    s.spawn(move |_| *out = Some(replica_pass(r, values, grads, x, c.as_ref(), mode, w)));
                }
            });
        }
        let mut log_p = Vec::with_capacity(b);
        for out in outs {
            // invariant: the scope ran every shard's task.
            log_p.extend(out.expect("every shard ran")?);
        }
        // The gradients, summed in shard order into the trained flow's.
        for grads in &self.grads {
            let mut at = 0;
            flow.visit_params_mut("", &mut |_, p| {
                if p.kind == ParamKind::Trainable {
                    let n = p.grad.len();
                    for (g, &h) in p.grad.as_mut_slice().iter_mut().zip(&grads[at..at + n]) {
                        *g += h;
                    }
                    at += n;
                }
            });
        }
        Ok(log_p)
    }
}

/// Every parameter value of `flow`, flat in visiting order, into `values` (cleared first).
fn gather_values<T: Real>(flow: &Flow<T>, values: &mut Vec<T>) {
    values.clear();
    flow.visit_params("", &mut |_, p| values.extend_from_slice(p.value.as_slice()));
}

/// Copies the flat parameter `values` (in visiting order) into the replica `r`, which has the
/// same layout (it was built from the same config).
fn copy_values<T: Real>(r: &mut Flow<T>, values: &[T]) {
    let mut at = 0;
    r.visit_params_mut("", &mut |_, p| {
        let n = p.value.len();
        p.value.as_mut_slice().copy_from_slice(&values[at..at + n]);
        at += n;
    });
}

/// A replica's shard: copies the parameter `values` in, runs the passes and gathers the
/// replica's gradients into `grads` (flat, trainable ones in visiting order).
fn replica_pass<T: Real>(
    r: &mut Flow<T>,
    values: &[T],
    grads: &mut Vec<T>,
    x: &Tensor<T>,
    c: Option<&Tensor<T>>,
    mode: TrainMode,
    w: T,
) -> Result<Vec<T>> {
    copy_values(r, values);
    let pass = shard_pass(r, x, c, mode, w);
    gather_grads(r, grads);
    pass
}

/// Every trainable gradient of `flow`, flat in visiting order, into `grads` (cleared first).
fn gather_grads<T: Real>(flow: &Flow<T>, grads: &mut Vec<T>) {
    grads.clear();
    flow.visit_params("", &mut |_, p| {
        if p.kind == ParamKind::Trainable {
            grads.extend_from_slice(p.grad.as_slice());
        }
    });
}

/// One shard's passes on one flow: the gradient of `w * sum log p(x | c)` over the shard, and
/// `log p`.
fn shard_pass<T: Real>(
    flow: &mut Flow<T>,
    x: &Tensor<T>,
    c: Option<&Tensor<T>>,
    mode: TrainMode,
    w: T,
) -> Result<Vec<T>> {
    flow.zero_grad();
    let (log_p, cache) = flow.forward_train(x, c, mode)?;
    flow.backward(cache, &vec![w; x.batch()])?;
    Ok(log_p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A conditional NSF (coupling and autoregressive layers read the context) and a minibatch of
    /// `b` samples with their contexts.
    fn conditional(transform: &str, b: usize) -> (ModelConfig, Flow<f64>, Tensor<f64>, Tensor<f64>) {
        let mut model = ModelConfig::preset("nsf", transform, &[3], 7).expect("preset");
        model.set_context_dim(2).expect("conditional");
        let flow: Flow<f64> = model.build().expect("builds");
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut draw = |n: usize| (0..n).map(|_| rng.random_range(-2.0..2.0)).collect::<Vec<f64>>();
        let x = Tensor::new(&[b, 3], draw(3 * b)).expect("x");
        let c = Tensor::new(&[b, 2], draw(2 * b)).expect("c");
        (model, flow, x, c)
    }

    fn grads(flow: &Flow<f64>) -> Vec<f64> {
        let mut g = Vec::new();
        gather_grads(flow, &mut g);
        g
    }

    /// `sum_k |t_k|` for every gradient entry, where `t_k` is sample k's term (weight `-1/B`).
    fn abs_terms(flow: &mut Flow<f64>, x: &Tensor<f64>, c: &Tensor<f64>) -> Vec<f64> {
        let b = x.batch();
        let mut acc: Vec<f64> = Vec::new();
        for k in 0..b {
            let (xk, ck) = (x.slice_batch(k..k + 1).expect("x"), c.slice_batch(k..k + 1).expect("c"));
            flow.zero_grad();
            let (_, cache) = flow.forward_train(&xk, Some(&ck), TrainMode::Cached).expect("forward");
            flow.backward(cache, &[-1.0 / b as f64]).expect("backward");
            let g = grads(flow);
            acc.resize(g.len(), 0.0);
            acc.iter_mut().zip(&g).for_each(|(a, t)| *a += t.abs());
        }
        acc
    }

    /// Shards of a conditional flow take their rows of the context: the sharded gradient of
    /// `-mean log p(x | c)` over 3 shards equals the one-pass gradient to rounding, and so does
    /// `log p`. Both gradients are the same sums of per-sample terms `t_k` (k < B = 150), added
    /// in another order (per shard, then across shards, against one pass whose products sum
    /// over all rows), and each term is computed by the same formulas on the same sample and
    /// context row. Two orders of a sum of B terms differ by at most `2 (B - 1) u sum_k |t_k|`
    /// (u = 2^-53, the recursive-summation bound for each), and the terms themselves may differ
    /// by a few ulps where a product's blocking depends on the row count; the test allows
    /// `4 B u sum_k |t_k|` per entry, with `sum_k |t_k|` measured by one pass per sample. A
    /// context row handed to the wrong sample changes the gradient far beyond that (checked
    /// with the context rows reversed). Run twice, the shards give the same bits.
    #[test]
    fn conditional_shards_slice_the_context_and_match_one_pass() {
        let b = 150;
        for transform in ["coupling", "autoregressive"] {
            let (model, mut flow, x, c) = conditional(transform, b);
            let abs = abs_terms(&mut flow, &x, &c);
            flow.zero_grad();
            let (lp_seq, cache) = flow.forward_train(&x, Some(&c), TrainMode::Cached).expect("forward");
            flow.backward(cache, &vec![-1.0 / b as f64; b]).expect("backward");
            let seq = grads(&flow);

            let mut replicas = Replicas::new(&model, &flow, 3).expect("replicas");
            let lp_sh = replicas
                .forward_backward(&mut flow, &x, Some(&c), TrainMode::Cached)
                .expect("shards");
            let sharded = grads(&flow);
            for (a, s) in lp_seq.iter().zip(&lp_sh) {
                assert!(
                    (a - s).abs() <= 1e-13 * (1.0 + a.abs()),
                    "{transform}: log p {a} vs {s}"
                );
            }
            let u = f64::EPSILON / 2.0;
            let mut worst = 0.0f64;
            for ((a, s), t) in seq.iter().zip(&sharded).zip(&abs) {
                let bound = 4.0 * b as f64 * u * t;
                assert!(
                    (a - s).abs() <= bound,
                    "{transform}: gradient {a} vs {s} (bound {bound:e})"
                );
                worst = worst.max((a - s).abs());
            }
            assert!(abs.iter().any(|&t| t > 1e-3), "{transform}: a gradient worth comparing");

            let again = replicas
                .forward_backward(&mut flow, &x, Some(&c), TrainMode::MemoryEfficient)
                .map(|_| grads(&flow))
                .expect("shards again");
            let once_more = replicas
                .forward_backward(&mut flow, &x, Some(&c), TrainMode::MemoryEfficient)
                .map(|_| grads(&flow))
                .expect("shards once more");
            let bits = |v: &[f64]| v.iter().map(|g| g.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&again), bits(&once_more), "{transform}: reproducible bit for bit");

            let reversed = c.gather_batch(&(0..150).rev().collect::<Vec<_>>()).expect("gather");
            replicas
                .forward_backward(&mut flow, &x, Some(&reversed), TrainMode::Cached)
                .expect("shards");
            let moved = grads(&flow);
            let diff = seq.iter().zip(&moved).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                diff > 1e6 * worst.max(1e-16),
                "{transform}: the context rows matter ({diff:e})"
            );
        }
    }

    /// Two shards run on the calling thread and the team's helper, and give the bits of the two
    /// shard passes run one after the other on one thread (the first on the flow, the second on
    /// a copy of it) with the second's gradients added to the first's: where a shard runs does
    /// not change its bits.
    #[test]
    fn two_shards_on_the_team_give_the_bits_of_their_passes_in_turn() {
        let b = 150;
        let (model, mut flow, x, c) = conditional("coupling", b);
        let w = -1.0 / b as f64;
        let mut copy: Flow<f64> = model.build().expect("copy");
        let mut values = Vec::new();
        gather_values(&flow, &mut values);
        copy_values(&mut copy, &values);
        let (x0, x1) = (x.slice_batch(0..75).expect("x0"), x.slice_batch(75..150).expect("x1"));
        let (c0, c1) = (c.slice_batch(0..75).expect("c0"), c.slice_batch(75..150).expect("c1"));
        let mut lp = shard_pass(&mut flow, &x0, Some(&c0), TrainMode::Cached, w).expect("shard 0");
        lp.extend(shard_pass(&mut copy, &x1, Some(&c1), TrainMode::Cached, w).expect("shard 1"));
        let expected: Vec<f64> = grads(&flow).iter().zip(grads(&copy)).map(|(a, b)| a + b).collect();

        let mut replicas = Replicas::new(&model, &flow, 2).expect("replicas");
        let before = exactflow_kernels::team::posted();
        let lp_sh = replicas
            .forward_backward(&mut flow, &x, Some(&c), TrainMode::Cached)
            .expect("shards");
        assert!(
            exactflow_kernels::team::posted() > before,
            "the second shard went to the team"
        );
        let bits = |v: &[f64]| v.iter().map(|g| g.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&lp_sh), bits(&lp), "log p");
        assert_eq!(bits(&grads(&flow)), bits(&expected), "gradients");
    }

    /// A context with another row count than the minibatch is refused, naming both.
    #[test]
    fn a_context_of_other_rows_is_refused() {
        let (model, mut flow, x, c) = conditional("coupling", 150);
        let mut replicas = Replicas::new(&model, &flow, 2).expect("replicas");
        let short = c.slice_batch(0..149).expect("slice");
        let e = replicas
            .forward_backward(&mut flow, &x, Some(&short), TrainMode::Cached)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("149") && e.contains("150"), "{e}");
    }
}
