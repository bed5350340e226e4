//! Faults and hostile checkpoints: resume states that do not fit the run, learning rates that
//! blow a model up without reaching infinity, the best model kept on disk, checksums, configs
//! that describe more than their file holds, unknown config fields, absurd sizes. Each is an
//! error (or the documented behaviour), never a panic, an abort or a lost checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use exactflow_layers::nets::Activation;
use exactflow_layers::{MaskKind, Params};
use exactflow_models::checkpoint::{self, Checksums, sha256_hex};
use exactflow_models::data::{DataSpec, Splits};
use exactflow_models::train::{
    DIVERGENCE_MARGIN_PER_DIM, Decay, EpochReport, Observer, Schedule, Silent, TrainConfig, TrainState, train,
};
use exactflow_models::{
    ContextEmbedding, Error, Flow, GlowConfig, GlowCouplingKind, GlowPermutation, ModelConfig, MultiScaleRealNvpConfig,
    NiceConfig, Prior, RealNvpConfig, evaluate,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

fn moons(n: usize) -> Splits {
    "moons".parse::<DataSpec>().expect("spec").load(3, n).expect("toy data")
}

fn small_realnvp() -> ModelConfig {
    ModelConfig::RealNvp(RealNvpConfig {
        dim: 2,
        couplings: 4,
        hidden: vec![16, 16],
        activation: Activation::Relu,
        mask: MaskKind::Halves,
        batch_norm: true,
        logit_alpha: None,
        seed: 11,
        context_dim: 0,
        context_embedding: None,
    })
}

fn cfg(steps: u64, lr: f64, checkpoint: Option<PathBuf>) -> TrainConfig {
    TrainConfig {
        steps: Some(steps),
        batch_size: 64,
        schedule: Schedule {
            lr,
            warmup: 0,
            decay: Decay::Constant,
        },
        seed: 9,
        checkpoint,
        ..TrainConfig::default()
    }
}

fn params_bits(flow: &Flow<f64>) -> Vec<(String, Vec<u64>)> {
    let mut out = Vec::new();
    flow.visit_params("", &mut |n, p| {
        out.push((n.to_string(), p.value.as_slice().iter().map(|v| v.to_bits()).collect()));
    });
    out
}

/// Records every epoch's validation NLL and, at each epoch end (before that epoch's checkpoint
/// is written), the validation NLL of the model then on disk.
struct Watch<'a> {
    path: PathBuf,
    val: &'a exactflow_models::data::Dataset,
    val_nll: Vec<f64>,
    on_disk: Vec<Option<f64>>,
}

impl Observer for Watch<'_> {
    fn on_epoch(&mut self, r: &EpochReport) {
        let disk = checkpoint::load::<f64>(&self.path)
            .ok()
            .map(|l| evaluate(&l.flow, self.val, 1024).expect("the checkpoint scores").nll);
        self.on_disk.push(disk);
        self.val_nll.push(r.val_nll.expect("a validation set"));
    }
}

/// A learning rate at which the small RealNVP's validation NLL goes up and down from epoch to
/// epoch on 512 moons (batch 64, 8 steps per epoch), without diverging.
const WOBBLY_LR: f64 = 0.05;

#[test]
fn the_checkpoint_holds_the_best_model_and_a_worse_one_never_replaces_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("run.safetensors");
    let d = moons(512);
    let model = small_realnvp();
    let mut flow = model.build::<f64>().expect("builds");
    let mut watch = Watch {
        path: path.clone(),
        val: &d.val,
        val_nll: Vec::new(),
        on_disk: Vec::new(),
    };
    let report = train(
        &mut flow,
        &model,
        &cfg(96, WOBBLY_LR, Some(path.clone())),
        &d.train,
        Some(&d.val),
        &mut watch,
        None,
    )
    .expect("trains");
    let v = &watch.val_nll;
    // The test means something only if some epoch was worse than an earlier one.
    assert!(v.windows(2).any(|w| w[1] > w[0]), "validation NLL never went up: {v:?}");
    // When epoch k ends, the file holds the best of epochs 0..k (none before epoch 0).
    for (k, disk) in watch.on_disk.iter().enumerate() {
        let best_before = v[..k].iter().copied().reduce(f64::min);
        assert_eq!(
            disk.map(f64::to_bits),
            best_before.map(f64::to_bits),
            "epoch {k}: on disk {disk:?}, best so far {best_before:?} ({v:?})"
        );
    }
    // At the end: the file and the flow hold the best epoch's model.
    let best = v.iter().copied().reduce(f64::min).expect("epochs");
    let loaded = checkpoint::load::<f64>(&path).expect("loads");
    assert_eq!(evaluate(&loaded.flow, &d.val, 1024).expect("scores").nll, best);
    assert_eq!(evaluate(&flow, &d.val, 1024).expect("scores").nll, best);
    assert_eq!(report.best_val_nll, Some(best));
}

#[test]
fn resuming_from_a_checkpoint_whose_best_model_is_not_the_latest_is_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = moons(512);
    let model = small_realnvp();
    let c = cfg(96, WOBBLY_LR, None);
    let mut full = model.build::<f64>().expect("builds");
    let mut watch = Watch {
        path: dir.path().join("none"),
        val: &d.val,
        val_nll: Vec::new(),
        on_disk: Vec::new(),
    };
    train(&mut full, &model, &c, &d.train, Some(&d.val), &mut watch, None).expect("trains");
    // Stop at the end of the first epoch that is not the best so far.
    let v = &watch.val_nll;
    let stop = (1..v.len())
        .find(|&k| v[k] > v[..k].iter().copied().fold(f64::INFINITY, f64::min) && k + 2 < v.len())
        .expect("an epoch worse than an earlier one");
    // Interrupting at epoch `stop + 1` leaves the checkpoint of epoch `stop` on disk.
    let path = dir.path().join("run.safetensors");
    let mut part = model.build::<f64>().expect("builds");
    let mut c2 = c.clone();
    c2.checkpoint = Some(path.clone());
    let mut stopper = StopAt(stop + 1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&mut part, &model, &c2, &d.train, Some(&d.val), &mut stopper, None)
    }));
    assert!(r.is_err(), "the observer interrupts the run");
    let loaded = checkpoint::load::<f64>(&path).expect("loads");
    assert_eq!(loaded.checksums, Checksums::Verified);
    let record = loaded.record.as_ref().expect("a training checkpoint");
    assert!(record.latest.is_some(), "the latest parameters are stored apart");
    let state = TrainState::of_checkpoint(&path, &loaded)
        .expect("parses")
        .expect("state");
    assert_eq!(state.epoch, stop + 1);
    let mut resumed = loaded.flow;
    train(
        &mut resumed,
        &model,
        &c2,
        &d.train,
        Some(&d.val),
        &mut Silent,
        Some(state),
    )
    .expect("resumes");
    assert_eq!(params_bits(&full), params_bits(&resumed));
}

/// Panics at the end of epoch `0`-based `.0`, before its checkpoint is written.
struct StopAt(usize);

impl Observer for StopAt {
    fn on_epoch(&mut self, r: &EpochReport) {
        if r.epoch >= self.0 {
            std::panic::panic_any("interrupted");
        }
    }
}

#[test]
fn a_learning_rate_that_explodes_without_infinity_is_divergence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("run.safetensors");
    let d = moons(512);
    let model = small_realnvp();
    let mut flow = model.build::<f64>().expect("builds");
    // Two good epochs at a sane rate, then the rate of the issue (30), with gradient clipping as
    // the command line has it: the parameters grow huge but the loss stays finite.
    train(
        &mut flow,
        &model,
        &cfg(16, 3e-3, Some(path.clone())),
        &d.train,
        Some(&d.val),
        &mut Silent,
        None,
    )
    .expect("trains");
    let start = evaluate(&flow, &d.val, 1024).expect("scores").nll;
    let err = train(
        &mut flow,
        &model,
        &cfg(400, 30.0, Some(path.clone())),
        &d.train,
        Some(&d.val),
        &mut Silent,
        None,
    )
    .expect_err("diverges");
    let Error::Diverged { reason, .. } = &err else {
        panic!("expected Diverged, got {err}");
    };
    assert!(
        reason.contains("validation NLL") && reason.contains("margin"),
        "{reason}"
    );
    // What the diverging run left on disk loads and is within the margin of where it started.
    let loaded = checkpoint::load::<f64>(&path).expect("loads");
    let on_disk = evaluate(&loaded.flow, &d.val, 1024).expect("scores").nll;
    assert!(
        on_disk <= start + DIVERGENCE_MARGIN_PER_DIM * 2.0,
        "{on_disk} vs {start} at the start"
    );
}

#[test]
fn a_resume_state_that_does_not_fit_the_run_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("run.safetensors");
    let d = moons(512);
    let model = small_realnvp();
    let mut flow = model.build::<f64>().expect("builds");
    let c = cfg(40, 3e-3, Some(path.clone()));
    let mut stopper = StopAt(2);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&mut flow, &model, &c, &d.train, Some(&d.val), &mut stopper, None)
    }));
    assert!(r.is_err());
    let loaded = checkpoint::load::<f64>(&path).expect("loads");
    let state = TrainState::of_checkpoint(&path, &loaded)
        .expect("parses")
        .expect("state");
    let resume = |st: TrainState| {
        let mut f = checkpoint::load::<f64>(&path).expect("loads").flow;
        train(&mut f, &model, &c, &d.train, Some(&d.val), &mut Silent, Some(st))
    };
    // An epoch of 8 batches has no batch 1000.
    let mut st = state.clone();
    st.batch_in_epoch = 1000;
    let e = resume(st).expect_err("out of range");
    assert!(
        matches!(e, Error::Config(_)) && e.to_string().contains("batch 1000"),
        "{e}"
    );
    // Moments of the wrong length, or for a parameter the model lacks.
    let mut st = state.clone();
    if let Some((m, _)) = st.moments.as_mut() {
        m.values_mut().next().expect("a moment").push(0.0);
    }
    let e = resume(st).expect_err("wrong length");
    assert!(e.to_string().contains("first-moment"), "{e}");
    let mut st = state.clone();
    st.latest_params = Some(BTreeMap::from([("flow.99.nothing".to_string(), vec![0.0])]));
    let e = resume(st).expect_err("unknown parameter");
    assert!(e.to_string().contains("flow.99.nothing"), "{e}");
    // Impossible settings stored in the state.
    let mut st = state.clone();
    st.config.threads = 1_000_000;
    let mut c3 = c.clone();
    c3.threads = 1_000_000;
    let mut f = checkpoint::load::<f64>(&path).expect("loads").flow;
    let e = train(&mut f, &model, &c3, &d.train, Some(&d.val), &mut Silent, Some(st)).expect_err("threads");
    assert!(e.to_string().contains("threads"), "{e}");
    // The untouched state resumes.
    assert!(resume(state).is_ok());
}

/// The checkpoint's tensors (name, dtype, shape, bytes) and metadata.
type Parts = (
    Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    HashMap<String, String>,
);

fn parts(path: &Path) -> Parts {
    let bytes = std::fs::read(path).expect("read");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("header");
    let meta = meta.metadata().clone().expect("metadata");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (tensors, meta)
}

/// Writes tensors and metadata as a safetensors file; with `resign`, recomputes the checksums
/// (as a crafted file would).
fn write_parts(path: &Path, (tensors, mut meta): Parts, resign: bool) {
    if resign {
        let mut sums: BTreeMap<String, String> = tensors.iter().map(|t| (t.0.clone(), sha256_hex(&t.3))).collect();
        for key in ["exactflow.config", "exactflow.train_state"] {
            if let Some(v) = meta.get(key) {
                sums.insert(key.to_string(), sha256_hex(v.as_bytes()));
            }
        }
        meta.insert("exactflow.sha256".into(), serde_json::to_string(&sums).expect("json"));
    }
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    let bytes = safetensors::serialize(views, Some(meta)).expect("serializes");
    std::fs::write(path, bytes).expect("write");
}

/// As an older exactflow wrote it: format 2, no checksums.
fn as_version_2((tensors, mut meta): Parts) -> Parts {
    meta.remove("exactflow.sha256");
    meta.insert("exactflow.format".into(), "2".into());
    (tensors, meta)
}

fn saved_model(dir: &Path) -> PathBuf {
    let model = small_realnvp();
    let flow = model.build::<f64>().expect("builds");
    let path = dir.join("m.safetensors");
    checkpoint::save(&path, &model, &flow, None).expect("saves");
    path
}

#[test]
fn checksums_catch_a_flipped_bit_and_name_the_tensor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = saved_model(dir.path());
    let loaded = checkpoint::load::<f64>(&path).expect("loads");
    assert_eq!(loaded.checksums, Checksums::Verified);
    assert_eq!(loaded.warning(), None);
    let (tensors, meta) = parts(&path);
    // One bit of one tensor's data.
    let mut flipped = tensors.clone();
    let victim = flipped[3].0.clone();
    flipped[3].3[0] ^= 1;
    let p = dir.path().join("flipped.safetensors");
    write_parts(&p, (flipped, meta.clone()), false);
    let e = checkpoint::load::<f64>(&p).err().expect("refused");
    assert!(
        matches!(e, Error::Format { .. }) && e.to_string().contains(&victim) && e.to_string().contains("SHA-256"),
        "{e}"
    );
    // One bit of the config: a seed of 11 becomes 10; the config's own checksum fails.
    let mut m = meta.clone();
    let cfg = m["exactflow.config"].replace("\"seed\":11", "\"seed\":10");
    m.insert("exactflow.config".into(), cfg);
    write_parts(&p, (tensors.clone(), m), false);
    let e = checkpoint::load::<f64>(&p).err().expect("refused");
    assert!(e.to_string().contains("exactflow.config fails its SHA-256"), "{e}");
    assert!(checkpoint::read_config(&p).is_err());
    // A version 3 file without checksums was tampered with.
    let mut m = meta.clone();
    m.remove("exactflow.sha256");
    write_parts(&p, (tensors.clone(), m), false);
    let e = checkpoint::load::<f64>(&p).err().expect("refused");
    assert!(e.to_string().contains("no exactflow.sha256"), "{e}");
    // A checksum for a tensor the file does not hold.
    let mut m = meta.clone();
    let mut sums: BTreeMap<String, String> = serde_json::from_str(&m["exactflow.sha256"]).expect("json");
    sums.insert("flow.42.ghost".into(), "00".into());
    m.insert("exactflow.sha256".into(), serde_json::to_string(&sums).expect("json"));
    write_parts(&p, (tensors, m), false);
    let e = checkpoint::load::<f64>(&p).err().expect("refused");
    assert!(e.to_string().contains("flow.42.ghost"), "{e}");
}

#[test]
fn older_checkpoints_without_checksums_load_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = saved_model(dir.path());
    let p = dir.path().join("v2.safetensors");
    write_parts(&p, as_version_2(parts(&path)), false);
    let loaded = checkpoint::load::<f64>(&p).expect("loads");
    assert_eq!(loaded.checksums, Checksums::Absent { version: "2".into() });
    let w = loaded.warning().expect("a warning");
    assert!(w.contains("no checksums") && !w.contains('\n'), "{w}");
    // The version 1 fixtures, training states included.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/realnvp_small.safetensors");
    let loaded = checkpoint::load::<f64>(&fixture).expect("loads");
    assert_eq!(loaded.checksums, Checksums::Absent { version: "1".into() });
    let st = TrainState::of_checkpoint(&fixture, &loaded)
        .expect("parses")
        .expect("state");
    assert_eq!(st.step, 120);
    // Saving it again adds the checksums.
    let q = dir.path().join("again.safetensors");
    checkpoint::save(&q, &loaded.config, &loaded.flow, None).expect("saves");
    assert_eq!(
        checkpoint::load::<f64>(&q).expect("loads").checksums,
        Checksums::Verified
    );
}

#[test]
fn unknown_config_fields_are_refused_even_through_the_model_tag() {
    let nsf = serde_json::to_string(&ModelConfig::preset("nsf", "coupling", &[2], 0).expect("preset")).expect("json");
    let flipped = nsf.replace("tail_bound", "tail_bounf");
    let e = serde_json::from_str::<ModelConfig>(&flipped).expect_err("a flipped spline key is refused");
    assert!(e.to_string().contains("tail_bounf"), "{e}");
    let json = serde_json::to_string(&small_realnvp()).expect("json");
    assert!(serde_json::from_str::<ModelConfig>(&json).is_ok());
    let flipped = json.replace("logit_alpha", "mogit_alpha");
    let e = serde_json::from_str::<ModelConfig>(&flipped).expect_err("refused");
    assert!(e.to_string().contains("mogit_alpha"), "{e}");
    for model in [
        ModelConfig::preset("nice", "toy", &[2], 0).expect("preset"),
        ModelConfig::preset("glow", "tiny", &[1, 8, 8], 0).expect("preset"),
        ModelConfig::preset("realnvp", "digits-image", &[1, 8, 8], 0).expect("preset"),
        ModelConfig::preset("maf", "toy", &[2], 0).expect("preset"),
        ModelConfig::preset("iaf", "toy", &[2], 0).expect("preset"),
        ModelConfig::preset("nsf", "coupling", &[2], 0).expect("preset"),
    ] {
        let json = serde_json::to_string(&model).expect("json");
        let extra = json.replacen('{', "{\"extra\":1,", 1);
        assert!(serde_json::from_str::<ModelConfig>(&extra).is_err(), "{extra}");
    }
    let train = serde_json::to_string(&TrainConfig::default()).expect("json");
    assert!(serde_json::from_str::<TrainConfig>(&train.replace("batch_size", "batch_sise")).is_err());
    // Through a checkpoint without checksums (whose config no checksum protects).
    let dir = tempfile::tempdir().expect("temp dir");
    let path = saved_model(dir.path());
    let (tensors, mut meta) = as_version_2(parts(&path));
    let cfg = meta["exactflow.config"].replace("logit_alpha", "mogit_alpha");
    meta.insert("exactflow.config".into(), cfg);
    let p = dir.path().join("mogit.safetensors");
    write_parts(&p, (tensors, meta), false);
    let e = checkpoint::load::<f64>(&p).err().expect("refused");
    assert!(
        matches!(e, Error::Format { .. }) && e.to_string().contains("mogit_alpha"),
        "{e}"
    );
}

#[test]
fn a_config_that_describes_more_than_its_file_holds_is_refused_before_building() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = saved_model(dir.path());
    for (from, to) in [
        ("\"dim\":2", "\"dim\":9223372036854775808"),
        ("\"dim\":2", "\"dim\":1000000000"),
        ("\"hidden\":[16,16]", "\"hidden\":[16,1000000000]"),
        ("\"couplings\":4", "\"couplings\":1000"),
    ] {
        for resign in [false, true] {
            let (tensors, mut meta) = parts(&path);
            let cfg = meta["exactflow.config"].replace(from, to);
            assert_ne!(cfg, meta["exactflow.config"]);
            meta.insert("exactflow.config".into(), cfg);
            let p = dir.path().join("big.safetensors");
            let parts = if resign {
                (tensors, meta)
            } else {
                as_version_2((tensors, meta))
            };
            write_parts(&p, parts, resign);
            let e = checkpoint::load::<f64>(&p).err().expect("refused");
            assert!(
                matches!(e, Error::Format { .. }) && e.to_string().contains("file holds only"),
                "{to}: {e}"
            );
        }
    }
}

#[test]
fn absurd_sizes_are_errors_before_allocating() {
    let mut huge = small_realnvp();
    if let ModelConfig::RealNvp(c) = &mut huge {
        c.dim = 1 << 40;
    }
    let e = huge.build::<f64>().err().expect("refused");
    assert!(
        matches!(e, Error::TooLarge { .. }) && e.to_string().contains("GiB"),
        "{e}"
    );
    let mut deep = small_realnvp();
    if let ModelConfig::RealNvp(c) = &mut deep {
        c.couplings = 1_000_000;
    }
    assert!(matches!(deep.build::<f64>(), Err(Error::Config(_))));
    let flow = small_realnvp().build::<f64>().expect("builds");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let e = flow.sample(1 << 50, 1.0, &mut rng, None).expect_err("refused");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    // A training batch of 2048x2048 images under a small Glow.
    let big = ModelConfig::Glow(GlowConfig {
        shape: [3, 2048, 2048],
        levels: 2,
        steps: 2,
        hidden: 8,
        coupling: GlowCouplingKind::Affine,
        permutation: GlowPermutation::LuConv,
        seed: 0,
        context_dim: 0,
    });
    let flow = big.build::<f32>().expect("a small model of large images builds");
    assert!(flow.num_trainable() > 0);
}

/// `ModelConfig::parameter_count` is the number of values the built model has, conditional
/// models (RealNVP, MAF/IAF, NSF with a context width) included.
#[test]
fn parameter_counts_match_the_built_models() {
    let mut configs = vec![small_realnvp()];
    for (dim, mask, bn) in [
        (2, MaskKind::Halves, false),
        (5, MaskKind::OddEven, true),
        (7, MaskKind::Checkerboard, false),
        (3, MaskKind::Channel, true),
    ] {
        configs.push(ModelConfig::RealNvp(RealNvpConfig {
            dim,
            couplings: 3,
            hidden: vec![4, 3],
            activation: Activation::Tanh,
            mask,
            batch_norm: bn,
            logit_alpha: Some(0.1),
            seed: 1,
            context_dim: dim - 1,
            context_embedding: None,
        }));
        configs.push(ModelConfig::Nice(NiceConfig {
            dim,
            couplings: 3,
            hidden: if bn { vec![] } else { vec![5] },
            activation: Activation::Relu,
            mask,
            prior: Prior::Logistic,
            logit_alpha: None,
            seed: 1,
        }));
    }
    for (shape, scales, blocks, bn) in [
        ([1, 8, 8], 2, 1, true),
        ([3, 4, 6], 2, 0, false),
        ([2, 3, 5], 1, 2, true),
        ([1, 8, 8], 3, 1, false),
    ] {
        configs.push(ModelConfig::MultiScaleRealNvp(MultiScaleRealNvpConfig {
            shape,
            scales,
            blocks,
            features: 3,
            batch_norm: bn,
            logit_alpha: None,
            seed: 2,
            context_dim: 0,
        }));
    }
    for (shape, levels, coupling, permutation) in [
        ([1, 8, 8], 2, GlowCouplingKind::Affine, GlowPermutation::LuConv),
        ([3, 4, 4], 2, GlowCouplingKind::Additive, GlowPermutation::Shuffle),
        ([2, 8, 4], 1, GlowCouplingKind::Affine, GlowPermutation::Reverse),
        ([1, 8, 8], 3, GlowCouplingKind::Additive, GlowPermutation::LuConv),
    ] {
        configs.push(ModelConfig::Glow(GlowConfig {
            shape,
            levels,
            steps: 2,
            hidden: 3,
            coupling,
            permutation,
            seed: 3,
            context_dim: 0,
        }));
    }
    for (dim, hidden, blocks) in [(1, vec![], 0), (3, vec![5], 0), (4, vec![6, 6], 2), (5, vec![4, 7], 1)] {
        let c = exactflow_models::maf::MafConfig {
            dim,
            layers: 3,
            hidden,
            residual_blocks: blocks,
            activation: Activation::Relu,
            permutation: exactflow_models::maf::ArPermutation::Alternate,
            logit_alpha: None,
            seed: 4,
            context_dim: dim % 3,
            context_embedding: None,
        };
        configs.push(ModelConfig::Iaf(c.clone()));
        configs.push(ModelConfig::Maf(c));
    }
    for (dim, transform, mask, bins) in [
        (2, exactflow_models::nsf::SplineLayer::Coupling, MaskKind::Halves, 1),
        (5, exactflow_models::nsf::SplineLayer::Coupling, MaskKind::OddEven, 4),
        (
            1,
            exactflow_models::nsf::SplineLayer::Autoregressive,
            MaskKind::Halves,
            3,
        ),
        (
            4,
            exactflow_models::nsf::SplineLayer::Autoregressive,
            MaskKind::Halves,
            8,
        ),
    ] {
        configs.push(ModelConfig::Nsf(exactflow_models::nsf::NsfConfig {
            dim,
            layers: 3,
            transform,
            hidden: vec![5, 3],
            activation: Activation::Relu,
            spline: exactflow_layers::SplineConfig::new(bins, 2.5).expect("spline"),
            mask,
            logit_alpha: Some(0.05),
            seed: 5,
            context_dim: bins % 3,
            context_embedding: None,
        }));
    }
    for (family, preset, shape) in [
        ("maf", "toy", &[2usize][..]),
        ("iaf", "digits", &[64][..]),
        ("nsf", "coupling", &[2][..]),
        ("nsf", "digits-autoregressive", &[64][..]),
    ] {
        configs.push(ModelConfig::preset(family, preset, shape, 0).expect("preset"));
    }
    configs.push(ModelConfig::preset("glow", "digits", &[1, 8, 8], 0).expect("preset"));
    configs.push(ModelConfig::preset("realnvp", "mnist", &[1, 28, 28], 0).expect("preset"));
    // Conditional configs with a context embedding (the stages then read its width E).
    let conditional: Vec<ModelConfig> = configs.iter().filter(|c| c.context_dim() > 0).cloned().collect();
    for (k, mut c) in conditional.into_iter().enumerate() {
        let embedding = ContextEmbedding {
            hidden: vec![3; k % 3],
            dim: 1 + k % 4,
        };
        c.set_context_embedding(Some(embedding)).expect("a conditional family");
        configs.push(c);
    }
    assert!(configs.iter().filter(|c| c.context_embedding().is_some()).count() >= 8);
    // Conditional image models (ResNet and Glow conditioners reading a vector context).
    let images: Vec<ModelConfig> = configs
        .iter()
        .filter(|c| matches!(c, ModelConfig::MultiScaleRealNvp(_) | ModelConfig::Glow(_)))
        .cloned()
        .collect();
    for (k, mut c) in images.into_iter().enumerate() {
        c.set_context_dim(1 + k % 3).expect("a conditional family");
        configs.push(c);
    }
    for c in &configs {
        let flow = c.build::<f64>().unwrap_or_else(|e| panic!("{c:?}: {e}"));
        let mut n = 0u64;
        flow.visit_params("", &mut |_, p| n += p.value.len() as u64);
        assert_eq!(c.parameter_count(), Some(n), "{c:?}");
        // A conditional config builds a conditional flow of its context width.
        assert_eq!(flow.context_dim(), c.context_dim(), "{c:?}");
        assert_eq!(flow.embedding().is_some(), c.context_embedding().is_some(), "{c:?}");
    }
}

/// Impossible context embeddings are config errors naming the problem, from the config alone
/// (no parameter count, no build), and a JSON embedding with an unknown field is refused.
#[test]
fn bad_context_embeddings_are_refused() {
    let conditional = |embedding: ContextEmbedding, context_dim: usize| {
        let mut c = ModelConfig::preset("nsf", "sbi", &[2], 0).expect("preset");
        c.set_context_dim(context_dim).expect("conditional");
        c.set_context_embedding(Some(embedding)).expect("conditional family");
        c
    };
    let cases = [
        (
            ContextEmbedding {
                hidden: vec![4],
                dim: 2,
            },
            0,
            "context_dim = 0",
        ),
        (
            ContextEmbedding {
                hidden: vec![4],
                dim: 0,
            },
            3,
            "positive",
        ),
        (
            ContextEmbedding {
                hidden: vec![4, 0],
                dim: 2,
            },
            3,
            "positive",
        ),
        (
            ContextEmbedding {
                hidden: vec![2; 101],
                dim: 2,
            },
            3,
            "limit of 100",
        ),
    ];
    for (embedding, context_dim, says) in cases {
        let c = conditional(embedding, context_dim);
        assert_eq!(c.parameter_count(), None, "{c:?}");
        let e = c.build::<f64>().err().expect("refused").to_string();
        assert!(e.contains(says), "{e}");
    }
    // Absurd widths are refused by size before anything is allocated.
    let huge = conditional(
        ContextEmbedding {
            hidden: vec![1 << 30, 1 << 30],
            dim: 2,
        },
        3,
    );
    let e = huge.build::<f64>().err().expect("refused");
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    // No embedding for unconditional families.
    let mut glow = ModelConfig::preset("glow", "tiny", &[1, 8, 8], 0).expect("preset");
    let e = glow
        .set_context_embedding(Some(ContextEmbedding { hidden: vec![], dim: 2 }))
        .expect_err("refused");
    assert!(e.to_string().contains("glow"), "{e}");
    // Through JSON: unknown fields of the embedding are refused; an absent one means none.
    let json = serde_json::to_string(&conditional(
        ContextEmbedding {
            hidden: vec![4],
            dim: 2,
        },
        3,
    ))
    .expect("json");
    assert!(
        json.contains("\"context_embedding\":{\"hidden\":[4],\"dim\":2}"),
        "{json}"
    );
    let back: ModelConfig = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back.context_embedding().map(|e| e.dim), Some(2));
    let flipped = json.replace("\"dim\":2}", "\"dim\":2,\"depth\":1}");
    let e = serde_json::from_str::<ModelConfig>(&flipped).expect_err("refused");
    assert!(e.to_string().contains("depth"), "{e}");
    let without = serde_json::to_string(&ModelConfig::preset("nsf", "sbi", &[2], 0).expect("preset")).expect("json");
    assert!(
        !without.contains("context_embedding"),
        "not written when absent: {without}"
    );
    let back: ModelConfig = serde_json::from_str(&without).expect("an absent embedding is none");
    assert!(back.context_embedding().is_none());
    let null = without.replacen('{', "{\"context_embedding\":null,", 1);
    let back: ModelConfig = serde_json::from_str(&null).expect("null is none");
    assert!(back.context_embedding().is_none());
}
