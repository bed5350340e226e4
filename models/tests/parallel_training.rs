//! The number of threads is a value of each training run, not process state: two trainings in
//! one process, at the same time on two threads with different thread counts, give results bit
//! for bit equal to each run alone.

use exactflow_layers::Params;
use exactflow_models::checkpoint::snapshot_params;
use exactflow_models::data::{DataSpec, Splits};
use exactflow_models::train::{
    MIN_SHARD_ROWS, SPLINE_ROW_WEIGHT, Silent, Strategy, TrainConfig, needs_batch_init, train,
};
use exactflow_models::{ModelConfig, RealNvpConfig};

fn data() -> Splits {
    "moons".parse::<DataSpec>().expect("spec").load(3, 2048).expect("moons")
}

fn model() -> ModelConfig {
    let mut c = ModelConfig::preset("realnvp", "toy", &[2], 5).expect("preset");
    if let ModelConfig::RealNvp(RealNvpConfig { couplings, hidden, .. }) = &mut c {
        *couplings = 4;
        *hidden = vec![64, 64];
    }
    c
}

/// Every parameter's bits, by name.
fn param_bits(flow: &exactflow_models::Flow<f64>) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> = snapshot_params(flow)
        .into_iter()
        .map(|(n, v)| (n, v.into_iter().map(f64::to_bits).collect()))
        .collect();
    out.sort();
    out
}

/// A one-thread and a two-thread run of the same training differ only by rounding: every
/// parameter within 1e-9 (the reason is in `two_shards_are_reproducible_and_match_one_thread_to_rounding`),
/// and not bit for bit (the two threads really ran shards, another summation order).
fn assert_within_rounding(one: &[(String, Vec<u64>)], two: &[(String, Vec<u64>)]) {
    let mut worst = 0.0f64;
    for ((n1, a), (n2, b)) in one.iter().zip(two) {
        assert_eq!(n1, n2);
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((f64::from_bits(*x) - f64::from_bits(*y)).abs());
        }
    }
    assert!(worst < 1e-9, "largest parameter difference {worst:e}");
    assert!(one != two, "two threads really ran shards (another summation order)");
}

/// Trains with `threads` and returns every parameter's bits.
fn run(d: &Splits, threads: usize) -> Vec<(String, Vec<u64>)> {
    let model = model();
    let mut flow = model.build::<f64>().expect("builds");
    let cfg = TrainConfig {
        steps: Some(40),
        batch_size: 256,
        threads,
        ..TrainConfig::default()
    };
    train(&mut flow, &model, &cfg, &d.train, Some(&d.val), &mut Silent, None).expect("trains");
    assert_eq!(
        flow.parallelism(),
        Default::default(),
        "the flow's own setting is restored"
    );
    let out = param_bits(&flow);
    assert!(flow.num_trainable() > 0);
    out
}

#[test]
fn concurrent_trainings_with_different_thread_counts_match_their_runs_alone() {
    let d = data();
    let alone_1 = run(&d, 1);
    let alone_2 = run(&d, 2);
    let (together_1, together_2) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&d, 1));
        let b = s.spawn(|| run(&d, 2));
        (a.join().expect("thread 1"), b.join().expect("thread 2"))
    });
    assert_eq!(
        together_1, alone_1,
        "the 1-thread run changed when another ran beside it"
    );
    assert_eq!(
        together_2, alone_2,
        "the 2-thread run changed when another ran beside it"
    );
    // A run's result does not depend on what an earlier run in the process set.
    assert_eq!(run(&d, 1), alone_1);
}

/// The thread rule by shape: this vector flow at 256 samples per batch trains in shards on two
/// threads (128 samples each); below two shards of [`MIN_SHARD_ROWS`] rows (a batch of 64, as
/// the digits presets: too little work per shard) it splits its matrix products instead; one
/// thread is sequential. Glow (ActNorm, no batch norm) on 8 x 8 images trains in shards at batch 64 (32
/// samples of 64 pixels per shard); the multi-scale RealNVP of digit images holds batch norm, so
/// it splits its products (and its convolutions' samples) instead. A spline row weighs
/// [`SPLINE_ROW_WEIGHT`] rows and an IAF row one per dimension.
#[test]
fn the_strategy_follows_the_shape() {
    let flow = model().build::<f64>().expect("builds");
    assert_eq!(Strategy::choose(&flow, 1, 256), Strategy::Sequential);
    assert_eq!(Strategy::choose(&flow, 2, 256), Strategy::Shards);
    assert_eq!(Strategy::choose(&flow, 2, 64), Strategy::ParallelGemm);
    assert_eq!(
        Strategy::choose(&flow, 2, 2 * MIN_SHARD_ROWS - 1),
        Strategy::ParallelGemm
    );
    let glow = ModelConfig::preset("glow", "tiny", &[1, 8, 8], 0).expect("preset");
    let glow = glow.build::<f64>().expect("builds");
    assert_eq!(Strategy::choose(&glow, 2, 64), Strategy::Shards);
    let bn = ModelConfig::preset("realnvp", "digits-image", &[1, 8, 8], 0).expect("preset");
    let bn = bn.build::<f64>().expect("builds");
    assert!(bn.stages().iter().any(|s| s.kind() == "BatchNorm"));
    assert_eq!(Strategy::choose(&bn, 2, 64), Strategy::ParallelGemm);
    assert_eq!(Strategy::choose(&bn, 2, 4096), Strategy::ParallelGemm);
    assert_eq!(Strategy::choose(&bn, 1, 64), Strategy::Sequential);
    // A conditional vector flow trains in shards too: each shard takes its context rows.
    let mut conditional = model();
    conditional.set_context_dim(3).expect("conditional");
    let conditional = conditional.build::<f64>().expect("builds");
    assert_eq!(Strategy::choose(&conditional, 2, 256), Strategy::Shards);
    // Heavier rows: at batch 64 (32 rows per shard) the spline and IAF digits presets shard,
    // the MAF of the same shape (one conditioner pass per row) splits its products; a batch
    // too small for even a spline's weight splits too.
    let digits = |family: &str, preset: &str| {
        let m = ModelConfig::preset(family, preset, &[64], 0).expect("preset");
        m.build::<f64>().expect("builds")
    };
    let (nsf, nsf_ar) = (digits("nsf", "digits"), digits("nsf", "digits-autoregressive"));
    let (iaf, maf) = (digits("iaf", "digits"), digits("maf", "digits"));
    assert_eq!(Strategy::choose(&nsf, 2, 64), Strategy::Shards);
    assert_eq!(Strategy::choose(&nsf_ar, 2, 64), Strategy::Shards);
    assert_eq!(Strategy::choose(&iaf, 2, 64), Strategy::Shards);
    assert_eq!(Strategy::choose(&maf, 2, 64), Strategy::ParallelGemm);
    let spline_min = 2 * MIN_SHARD_ROWS / SPLINE_ROW_WEIGHT;
    assert_eq!(Strategy::choose(&nsf, 2, spline_min), Strategy::Shards);
    assert_eq!(Strategy::choose(&nsf, 2, spline_min - 2), Strategy::ParallelGemm);
    // An IAF of 64 dimensions weighs 64 rows per row: 2 rows per shard reach 128.
    assert_eq!(Strategy::choose(&iaf, 2, 4), Strategy::Shards);
    assert_eq!(Strategy::choose(&iaf, 2, 2), Strategy::ParallelGemm);
}

/// Trains a conditional RealNVP on `sim:gaussian-linear` pairs with `threads` and returns every
/// parameter's bits.
fn run_conditional(d: &Splits, threads: usize) -> Vec<(String, Vec<u64>)> {
    let mut model = model();
    model.set_context_dim(d.train.context_dim()).expect("conditional");
    let mut flow = model.build::<f64>().expect("builds");
    let cfg = TrainConfig {
        steps: Some(20),
        batch_size: 256,
        threads,
        ..TrainConfig::default()
    };
    train(&mut flow, &model, &cfg, &d.train, Some(&d.val), &mut Silent, None).expect("trains");
    param_bits(&flow)
}

/// A conditional flow trained in two shards (each with its rows of the context) is reproducible
/// bit for bit and stays within rounding of the one-thread run, with the tolerance and reason of
/// `two_shards_are_reproducible_and_match_one_thread_to_rounding` (20 steps here). The
/// gradient of one step is compared with the sequential one, term by term, in the unit test
/// `train::shards::tests::conditional_shards_slice_the_context_and_match_one_pass`.
#[test]
fn conditional_shards_are_reproducible_and_match_one_thread_to_rounding() {
    let d = "sim:gaussian-linear"
        .parse::<DataSpec>()
        .expect("spec")
        .load(2, 2048)
        .expect("sim");
    assert!(d.train.context_dim() > 0);
    let two = run_conditional(&d, 2);
    assert_eq!(
        run_conditional(&d, 2),
        two,
        "a two-thread run is reproducible bit for bit"
    );
    let one = run_conditional(&d, 1);
    assert_within_rounding(&one, &two);
}

/// Two shards compute the gradient of the same loss as one pass over the minibatch (the samples
/// of this flow do not interact), summed in another order: a two-thread run is reproducible bit
/// for bit and stays within rounding of the one-thread run. Tolerance 1e-9 on every parameter
/// after 40 f64 steps: the two gradients differ by a few ulps (1e-16 relative), which Adam's
/// normalized steps of size lr = 1e-3 carry into the parameters at most about lr per step where
/// a gradient entry is near zero (so that its sign can differ).
#[test]
fn two_shards_are_reproducible_and_match_one_thread_to_rounding() {
    let d = data();
    let two = run(&d, 2);
    assert_eq!(run(&d, 2), two, "a two-thread run is reproducible bit for bit");
    let one = run(&d, 1);
    assert_within_rounding(&one, &two);
}

/// Trains Glow (tiny) on digit images with `threads` from a fresh model, whose ActNorm layers
/// initialize from the first minibatch, and returns every parameter's bits.
fn run_glow(d: &Splits, threads: usize) -> Vec<(String, Vec<u64>)> {
    let model = ModelConfig::preset("glow", "tiny", &[1, 8, 8], 4).expect("preset");
    let mut flow = model.build::<f64>().expect("builds");
    assert!(needs_batch_init(&flow), "a fresh Glow initializes ActNorm from data");
    let cfg = TrainConfig {
        steps: Some(6),
        batch_size: 64,
        threads,
        ..TrainConfig::default()
    };
    train(&mut flow, &model, &cfg, &d.train, Some(&d.val), &mut Silent, None).expect("trains");
    assert!(!needs_batch_init(&flow));
    param_bits(&flow)
}

/// Glow trains in shards on two threads: the step that initializes ActNorm runs as one pass over
/// the whole minibatch (as on one thread), and the replicas receive the initialized state, so a
/// replica never initializes from its own half of the data. The run is reproducible bit for bit
/// and within rounding of the one-thread run, with the tolerance and reason of
/// `two_shards_are_reproducible_and_match_one_thread_to_rounding` (6 steps here). A replica
/// that initialized its ActNorm from its own 32 images would give its shard other activations
/// and gradients of order 1 apart, far outside it.
#[test]
fn glow_trains_in_shards_after_an_unsharded_actnorm_initialization() {
    let d = "digits-image"
        .parse::<DataSpec>()
        .expect("spec")
        .load(0, 0)
        .expect("digits");
    let two = run_glow(&d, 2);
    assert_eq!(run_glow(&d, 2), two, "a two-thread run is reproducible bit for bit");
    let one = run_glow(&d, 1);
    assert_within_rounding(&one, &two);
}

/// Below the shard size a vector flow splits its products over two threads (one half on the
/// team's helper), and a split product has the bits of the whole one, so the two-thread run
/// reproduces the one-thread run bit for bit. The hidden width of 128 makes the products large
/// enough to be split (64 x 128 x 128 multiply-adds).
#[test]
fn split_products_reproduce_one_thread_bit_for_bit() {
    let d = data();
    let model = {
        let mut c = model();
        if let ModelConfig::RealNvp(RealNvpConfig { hidden, .. }) = &mut c {
            *hidden = vec![128, 128];
        }
        c
    };
    let run = |threads: usize| {
        let mut flow = model.build::<f64>().expect("builds");
        let cfg = TrainConfig {
            steps: Some(30),
            batch_size: 64,
            threads,
            ..TrainConfig::default()
        };
        assert_eq!(
            Strategy::choose(&flow, threads, 64),
            if threads == 1 {
                Strategy::Sequential
            } else {
                Strategy::ParallelGemm
            }
        );
        train(&mut flow, &model, &cfg, &d.train, Some(&d.val), &mut Silent, None).expect("trains");
        param_bits(&flow)
    };
    let one = run(1);
    assert_eq!(run(2), one, "two threads with split products");
    assert_eq!(run(2), one, "again");
}

/// The multi-scale RealNVP of digit images (batch norm, convolutions) on two threads: its
/// convolutions split their samples (forward) and dW from dx (backward), its other products
/// split in halves, and every split gives the one-thread bits.
#[test]
fn batch_norm_images_on_two_threads_reproduce_one_thread_bit_for_bit() {
    let d = "digits-image"
        .parse::<DataSpec>()
        .expect("spec")
        .load(1, 256)
        .expect("digits");
    let model = ModelConfig::preset("realnvp", "digits-image", &[1, 8, 8], 0).expect("preset");
    let run = |threads: usize| {
        let mut flow = model.build::<f32>().expect("builds");
        assert_eq!(
            Strategy::choose(&flow, threads, 16),
            if threads == 1 {
                Strategy::Sequential
            } else {
                Strategy::ParallelGemm
            }
        );
        let cfg = TrainConfig {
            steps: Some(3),
            batch_size: 16,
            threads,
            ..TrainConfig::default()
        };
        train(&mut flow, &model, &cfg, &d.train, Some(&d.val), &mut Silent, None).expect("trains");
        let mut bits: Vec<(String, Vec<u32>)> = snapshot_params(&flow)
            .into_iter()
            .map(|(n, v)| (n, v.into_iter().map(|x| (x as f32).to_bits()).collect()))
            .collect();
        bits.sort();
        bits
    };
    let one = run(1);
    assert_eq!(run(2), one);
}
