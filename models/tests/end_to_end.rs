//! End-to-end tests of the vector flows: training lowers the NLL, checkpoints reproduce models
//! bit for bit and resume exactly, sampling at temperature 0 is the decoded mode, divergence
//! stops with a named step and keeps the last good checkpoint, bad files are refused.

use exactflow_layers::MaskKind;
use exactflow_layers::nets::Activation;
use exactflow_layers::{Params, Tensor};
use exactflow_models::checkpoint::{self, snapshot_params};
use exactflow_models::data::{DataSpec, Dataset, Splits};
use exactflow_models::train::{Decay, Schedule, Silent, TrainConfig, TrainState, train};
use exactflow_models::{Error, Flow, Latent, ModelConfig, NiceConfig, Prior, RealNvpConfig, evaluate};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn moons(n: usize) -> Splits {
    let spec: DataSpec = "moons".parse().expect("known spec");
    spec.load(3, n).expect("toy data")
}

fn small_realnvp(batch_norm: bool) -> ModelConfig {
    ModelConfig::RealNvp(RealNvpConfig {
        dim: 2,
        couplings: 4,
        hidden: vec![16, 16],
        activation: Activation::Relu,
        mask: MaskKind::Halves,
        batch_norm,
        logit_alpha: None,
        seed: 11,
        context_dim: 0,
        context_embedding: None,
    })
}

fn small_nice() -> ModelConfig {
    ModelConfig::Nice(NiceConfig {
        dim: 2,
        couplings: 4,
        hidden: vec![16, 16],
        activation: Activation::Relu,
        mask: MaskKind::Halves,
        prior: Prior::Logistic,
        logit_alpha: None,
        seed: 5,
    })
}

fn cfg(steps: u64, checkpoint: Option<std::path::PathBuf>) -> TrainConfig {
    TrainConfig {
        steps: Some(steps),
        batch_size: 64,
        schedule: Schedule {
            lr: 3e-3,
            warmup: 5,
            decay: Decay::Cosine { min_ratio: 0.1 },
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

#[test]
fn training_lowers_the_nll_of_nice_and_realnvp() {
    let d = moons(1024);
    for model in [small_nice(), small_realnvp(false), small_realnvp(true)] {
        let mut flow = model.build::<f64>().expect("valid config");
        let before = evaluate(&flow, &d.val, 256).expect("evaluates").nll;
        let rep = train(
            &mut flow,
            &model,
            &cfg(200, None),
            &d.train,
            Some(&d.val),
            &mut Silent,
            None,
        )
        .expect("trains");
        let after = evaluate(&flow, &d.val, 256).expect("evaluates").nll;
        // 200 Adam steps on two moons take a freshly initialized flow (the identity on a
        // standard normal / logistic) well below its initial NLL; 0.3 nats is far above the
        // noise of a 256-point validation estimate (its standard error is about 0.06 nats).
        assert!(after < before - 0.3, "{}: NLL {before} -> {after}", model.family());
        assert_eq!(rep.steps, 200);
        assert!(rep.samples_per_sec > 0.0);
    }
}

#[test]
fn same_seed_one_thread_is_bit_for_bit_reproducible() {
    let d = moons(512);
    let model = small_realnvp(true);
    let run = || {
        let mut flow = model.build::<f64>().expect("valid config");
        train(&mut flow, &model, &cfg(30, None), &d.train, None, &mut Silent, None).expect("trains");
        params_bits(&flow)
    };
    assert_eq!(run(), run());
}

#[test]
fn two_threads_train_to_nearly_the_same_parameters() {
    let d = moons(512);
    let model = small_realnvp(false);
    let mut one = model.build::<f64>().expect("valid config");
    train(&mut one, &model, &cfg(20, None), &d.train, None, &mut Silent, None).expect("trains");
    let mut two = model.build::<f64>().expect("valid config");
    let mut c2 = cfg(20, None);
    c2.threads = 2;
    train(&mut two, &model, &c2, &d.train, None, &mut Silent, None).expect("trains with 2 threads");
    let (a, b) = (snapshot_params(&one), snapshot_params(&two));
    // Threads only reorder floating-point sums inside matrix products: differences stay at
    // rounding level after 20 steps (relative 1e-9 is a million times eps).
    for (name, va) in &a {
        for (x, y) in va.iter().zip(&b[name]) {
            assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{name}: {x} vs {y}");
        }
    }
}

#[test]
fn save_then_load_reproduces_log_prob_bit_for_bit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = moons(256);
    for model in [small_nice(), small_realnvp(true)] {
        let mut flow = model.build::<f64>().expect("valid config");
        train(&mut flow, &model, &cfg(20, None), &d.train, None, &mut Silent, None).expect("trains");
        let path = dir.path().join(format!("{}.safetensors", model.family()));
        checkpoint::save(&path, &model, &flow, None).expect("saves");
        let loaded = checkpoint::load::<f64>(&path).expect("loads");
        assert_eq!(loaded.config, model);
        let x = d.test.data.slice_batch(0..32).expect("rows");
        let (a, b) = (
            flow.log_prob(&x, None).expect("lp"),
            loaded.flow.log_prob(&x, None).expect("lp"),
        );
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "{}", model.family());
        // An f32 model saved in f32 loads back into f32 with identical parameters.
        let flow32 = model.build::<f32>().expect("valid config");
        let p32 = dir.path().join("f32.safetensors");
        checkpoint::save(&p32, &model, &flow32, None).expect("saves f32");
        let l32 = checkpoint::load::<f32>(&p32).expect("loads f32");
        let x32: Tensor<f32> = x.cast();
        assert_eq!(
            flow32.log_prob(&x32, None).expect("lp"),
            l32.flow.log_prob(&x32, None).expect("lp")
        );
    }
}

#[test]
fn temperature_zero_sample_is_the_decoded_mode_and_decode_inverts_encode() {
    let d = moons(256);
    for model in [small_nice(), small_realnvp(false)] {
        let mut flow = model.build::<f64>().expect("valid config");
        train(&mut flow, &model, &cfg(20, None), &d.train, None, &mut Silent, None).expect("trains");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = flow.sample(3, 0.0, &mut rng, None).expect("samples");
        let zero = Latent {
            z: Tensor::zeros(&[3, 2]).expect("shape"),
            factored: vec![],
        };
        assert_eq!(s, flow.decode(&zero, None).expect("decodes"));
        let x = d.test.data.slice_batch(0..16).expect("rows");
        let back = flow
            .decode(&flow.encode(&x, None).expect("encodes"), None)
            .expect("decodes");
        for (a, b) in back.as_slice().iter().zip(x.as_slice()) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // sample_and_log_prob agrees with log_prob of the samples.
        let (xs, lp) = flow.sample_and_log_prob(8, 1.0, &mut rng, None).expect("samples");
        let lp2 = flow.log_prob(&xs, None).expect("scores");
        for (a, b) in lp.iter().zip(&lp2) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Interpolation starts and ends at the inputs.
        let (xa, xb) = (x.slice_batch(0..1).expect("row"), x.slice_batch(1..2).expect("row"));
        let path = flow.interpolate(&xa, &xb, 5, None).expect("interpolates");
        assert_eq!(path.batch(), 5);
        for (a, b) in path.sample(0).expect("row").iter().zip(xa.as_slice()) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }
        for (a, b) in path.sample(4).expect("row").iter().zip(xb.as_slice()) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()));
        }
    }
}

#[test]
fn resuming_gives_the_same_parameters_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = moons(512);
    let model = small_realnvp(true);
    // Uninterrupted: 40 steps (512 / 64 = 8 steps per epoch: checkpoints at steps 8, 16, ...).
    let mut full = model.build::<f64>().expect("valid config");
    train(
        &mut full,
        &model,
        &cfg(40, None),
        &d.train,
        Some(&d.val),
        &mut Silent,
        None,
    )
    .expect("trains");
    // Interrupted: stop after 24 steps of the same 40-step schedule.
    let path = dir.path().join("run.safetensors");
    let mut part = model.build::<f64>().expect("valid config");
    let mut c = cfg(40, Some(path.clone()));
    let mut stopper = StopAfter(24);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&mut part, &model, &c, &d.train, Some(&d.val), &mut stopper, None)
    }));
    assert!(r.is_err(), "the observer interrupts the run");
    // The observer hears of epoch 3 (step 24) before its checkpoint is written: the last one
    // on disk is that of step 16.
    let loaded = checkpoint::load::<f64>(&path).expect("checkpoint of step 16");
    let state = TrainState::of_checkpoint(&path, &loaded)
        .expect("state parses")
        .expect("training state");
    assert_eq!(state.step, 16);
    let mut resumed = loaded.flow;
    c.checkpoint = Some(path.clone());
    train(
        &mut resumed,
        &model,
        &c,
        &d.train,
        Some(&d.val),
        &mut Silent,
        Some(state),
    )
    .expect("resumes");
    assert_eq!(params_bits(&full), params_bits(&resumed));
}

/// Panics (as an interruption would kill the process) once `step` is reached, after the
/// checkpoint of the epoch ending there was written.
struct StopAfter(u64);

impl exactflow_models::train::Observer for StopAfter {
    fn on_epoch(&mut self, r: &exactflow_models::train::EpochReport) {
        if r.step >= self.0 {
            std::panic::panic_any("interrupted");
        }
    }
}

#[test]
fn divergence_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = moons(512);
    let model = small_realnvp(false);
    let path = dir.path().join("run.safetensors");
    let mut flow = model.build::<f64>().expect("valid config");
    train(
        &mut flow,
        &model,
        &cfg(16, Some(path.clone())),
        &d.train,
        None,
        &mut Silent,
        None,
    )
    .expect("trains");
    let good = std::fs::read(&path).expect("checkpoint written");
    // An absurd learning rate without clipping blows the parameters up within a few steps,
    // before the first epoch of the new run (8 steps) ends and writes a checkpoint.
    let mut c = cfg(200, Some(path.clone()));
    c.schedule = Schedule {
        lr: 1e12,
        warmup: 0,
        decay: Decay::Constant,
    };
    c.clip_grad_norm = None;
    let err = train(&mut flow, &model, &c, &d.train, None, &mut Silent, None).expect_err("diverges");
    let Error::Diverged { step, .. } = &err else {
        panic!("expected Diverged, got {err}");
    };
    assert!(*step < 8, "diverged at step {step}");
    assert!(err.to_string().contains(&format!("step {step}")), "{err}");
    // The last good checkpoint is untouched: byte for byte, it loads, its parameters are
    // finite and it scores data finitely.
    assert!(std::fs::read(&path).expect("still there") == good, "checkpoint changed");
    let loaded = checkpoint::load::<f64>(&path).expect("the last good checkpoint loads");
    let state = TrainState::of_checkpoint(&path, &loaded).expect("state parses");
    assert_eq!(state.expect("training state").step, 16);
    assert!(loaded.flow.check_params_finite("test").is_ok());
    let lp = loaded.flow.log_prob(&d.test.data, None).expect("finite model");
    assert!(lp.iter().all(|v| v.is_finite()));
}

#[test]
fn corrupt_truncated_and_mismatched_checkpoints_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = small_realnvp(false);
    let flow = model.build::<f64>().expect("valid config");
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &model, &flow, None).expect("saves");
    let bytes = std::fs::read(&path).expect("written");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"not a safetensors file at all".to_vec()),
        ("bad header length", {
            let mut b = bytes.clone();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
    ];
    for (what, b) in cases {
        let p = dir.path().join(format!("{what}.safetensors"));
        std::fs::write(&p, b).expect("write");
        let e = checkpoint::load::<f64>(&p)
            .err()
            .unwrap_or_else(|| panic!("{what} accepted"));
        assert!(matches!(e, Error::Format { .. }), "{what}: {e}");
    }
    // A checkpoint of one architecture whose config claims another.
    let other = small_nice();
    let p = dir.path().join("nice.safetensors");
    // RealNVP tensors under a NICE config: the names do not match the config's model.
    checkpoint::save(&p, &other, &flow, None).expect("saves mismatched");
    let e = checkpoint::load::<f64>(&p).err().expect("mismatch refused");
    assert!(e.to_string().contains("tensor"), "{e}");
    // A missing file is an I/O error naming the path.
    let e = checkpoint::load::<f64>(&dir.path().join("nope.safetensors"))
        .err()
        .expect("missing");
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("nope"), "{e}");
}

#[test]
fn impossible_configs_are_errors() {
    let mut bad = small_realnvp(false);
    if let ModelConfig::RealNvp(c) = &mut bad {
        c.couplings = 0;
    }
    assert!(matches!(bad.build::<f64>(), Err(Error::Config(_))));
    assert!(ModelConfig::preset("realnvp", "nope", &[2], 0).is_err());
    assert!(ModelConfig::preset("flowy", "toy", &[2], 0).is_err());
    let d = moons(64);
    let model = small_realnvp(false);
    let mut flow = model.build::<f64>().expect("valid config");
    let mut c = cfg(5, None);
    c.batch_size = 0;
    assert!(train(&mut flow, &model, &c, &d.train, None, &mut Silent, None).is_err());
    let mut c = cfg(5, None);
    c.schedule.lr = -1.0;
    assert!(train(&mut flow, &model, &c, &d.train, None, &mut Silent, None).is_err());
    // Data of the wrong dimension.
    let wrong = Dataset::new("wrong", Tensor::zeros(&[8, 3]).expect("shape"), None, None).expect("dataset");
    assert!(train(&mut flow, &model, &cfg(5, None), &wrong, None, &mut Silent, None).is_err());
}

#[test]
fn an_unconditional_flow_refuses_a_context() {
    let model = small_realnvp(false);
    let flow = model.build::<f64>().expect("valid config");
    let x = Tensor::zeros(&[3, 2]).expect("shape");
    let c = Tensor::zeros(&[3, 1]).expect("shape");
    let e = flow.log_prob(&x, Some(&c)).expect_err("unconditional");
    assert!(e.to_string().contains("unconditional"), "{e}");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert!(flow.sample(3, 1.0, &mut rng, Some(&c)).is_err());
    assert_eq!(flow.context_dim(), 0);
}
