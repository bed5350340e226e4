//! MAF, IAF and neural spline flows as models: every preset builds, saves and reloads bit for
//! bit in f64 and f32; sampling and scoring agree; bad spline configurations and NaN
//! parameters in a checkpoint are clear errors; heavy-tailed data (bayesflow issue #721) train
//! with a finite loss.

use exactflow_layers::nets::Activation;
use exactflow_layers::{MaskKind, Params, SplineConfig, Tensor};
use exactflow_models::checkpoint;
use exactflow_models::data::Dataset;
use exactflow_models::train::{Silent, TrainConfig, train};
use exactflow_models::{Error, Flow, ModelConfig, NsfConfig, SplineLayer, TrainMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every preset of the three families, with the data shape it is meant for.
fn presets() -> Vec<(ModelConfig, usize)> {
    let mut v = Vec::new();
    for family in ["maf", "iaf", "nsf"] {
        for preset in ModelConfig::presets(family) {
            let dim = if preset.starts_with("digits") { 64 } else { 2 };
            let cfg = ModelConfig::preset(family, preset, &[dim], 3).expect("a listed preset builds a config");
            v.push((cfg, dim));
        }
    }
    v
}

/// A batch in the model's data range: `[0, 1)` for the digit presets (logit), else `[-2, 2]`.
fn batch(dim: usize, n: usize) -> Tensor<f64> {
    Tensor::from_fn(&[n, dim], |k| {
        let u = ((k * 7919 + 13) % 1000) as f64 / 1000.0;
        if dim == 64 { 0.02 + 0.96 * u } else { 4.0 * u - 2.0 }
    })
    .expect("shape")
}

/// Moves every trainable parameter away from the identity initialization, deterministically.
fn perturb(flow: &mut Flow<f64>, scale: f64) {
    let mut k = 0usize;
    flow.visit_params_mut("", &mut |_, p| {
        for v in p.value.as_mut_slice() {
            *v += scale * ((k as f64) * 0.618).sin();
            k += 1;
        }
    });
}

#[test]
fn every_preset_builds_saves_and_reloads_bit_for_bit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let presets = presets();
    assert_eq!(
        presets.len(),
        2 + 2 + 5,
        "maf: toy, digits; iaf: the same; nsf: five (with sbi)"
    );
    for (i, (cfg, dim)) in presets.into_iter().enumerate() {
        let mut flow = cfg.build::<f64>().expect("builds");
        assert_eq!(flow.data_shape(), &[dim]);
        perturb(&mut flow, 0.02);
        let x = batch(dim, 3);
        let lp = flow.log_prob(&x, None).expect("scores");
        assert!(lp.iter().all(|v| v.is_finite()), "{}: {lp:?}", cfg.family());
        let path = dir.path().join(format!("{i}.safetensors"));
        checkpoint::save(&path, &cfg, &flow, None).expect("saves");
        let loaded = checkpoint::load::<f64>(&path).expect("loads");
        assert_eq!(loaded.config, cfg);
        assert_eq!(
            loaded.flow.log_prob(&x, None).expect("scores"),
            lp,
            "{:?}",
            cfg.family()
        );
        let l32 = checkpoint::load::<f32>(&path).expect("loads in f32");
        let lp32 = l32.flow.log_prob(&x.cast(), None).expect("scores in f32");
        for (a, b) in lp32.iter().zip(&lp) {
            assert!(
                (*a as f64 - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "{}: f32 {a} vs f64 {b}",
                cfg.family()
            );
        }
        // An f32 file reloads bit for bit in f32.
        let p32 = dir.path().join(format!("{i}-f32.safetensors"));
        checkpoint::save(&p32, &cfg, &l32.flow, None).expect("saves f32");
        let again = checkpoint::load::<f32>(&p32).expect("loads f32");
        assert_eq!(again.flow.log_prob(&x.cast(), None).expect("scores"), lp32);
    }
}

/// Sampling (the inverse walk, D passes per MAF layer, one per IAF layer) and scoring (the
/// forward walk) agree: `log p` of a sample equals the log-density the sampler reports, and
/// encoding a sample and decoding it gives it back.
#[test]
fn sampling_and_scoring_agree() {
    for (cfg, dim) in presets().into_iter().filter(|(_, d)| *d == 2) {
        let mut flow = cfg.build::<f64>().expect("builds");
        perturb(&mut flow, 0.02);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (x, lp_sampler) = flow.sample_and_log_prob(64, 1.0, &mut rng, None).expect("samples");
        assert_eq!(x.shape(), &[64, dim]);
        let lp = flow.log_prob(&x, None).expect("scores");
        for (a, b) in lp.iter().zip(&lp_sampler) {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{}: {a} vs {b}", cfg.family());
        }
        let back = flow
            .decode(&flow.encode(&x, None).expect("encodes"), None)
            .expect("decodes");
        for (a, b) in back.as_slice().iter().zip(x.as_slice()) {
            assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()));
        }
    }
}

fn nsf(spline: SplineConfig) -> ModelConfig {
    ModelConfig::Nsf(NsfConfig {
        dim: 2,
        layers: 2,
        transform: SplineLayer::Coupling,
        hidden: vec![8],
        activation: Activation::Relu,
        spline,
        mask: MaskKind::Halves,
        logit_alpha: None,
        seed: 0,
        context_dim: 0,
        context_embedding: None,
    })
}

#[test]
fn bad_spline_configs_are_clear_errors() {
    let good = SplineConfig::new(8, 3.0).expect("valid");
    let cases: Vec<(SplineConfig, &str)> = vec![
        (SplineConfig { bins: 0, ..good }, "bins"),
        (
            SplineConfig {
                tail_bound: 0.0,
                ..good
            },
            "tail_bound",
        ),
        (
            SplineConfig {
                tail_bound: -1.0,
                ..good
            },
            "tail_bound",
        ),
        (
            SplineConfig {
                tail_bound: f64::NAN,
                ..good
            },
            "tail_bound",
        ),
        (
            SplineConfig {
                tail_bound: f64::INFINITY,
                ..good
            },
            "tail_bound",
        ),
        (
            SplineConfig {
                min_bin_width: 0.2,
                ..good
            },
            "min_bin_width",
        ),
        (
            SplineConfig {
                min_bin_height: 0.0,
                ..good
            },
            "min_bin_height",
        ),
        (
            SplineConfig {
                min_derivative: 1.5,
                ..good
            },
            "min_derivative",
        ),
        (SplineConfig { bins: 1 << 20, ..good }, "bins"),
    ];
    for (spline, field) in &cases {
        let e = nsf(*spline).build::<f64>().err().expect("refused");
        assert!(matches!(e, Error::Config(_)), "{field}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains("nsf"), "{field}: {msg}");
    }
    // The constructors refuse them too.
    assert!(SplineConfig::new(0, 3.0).is_err());
    assert!(SplineConfig::new(8, 0.0).is_err());
    // A checkpoint whose config has zero bins (and checksums that match it) is refused at load,
    // naming the field.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.safetensors");
    let cfg = nsf(good);
    checkpoint::save(&path, &cfg, &cfg.build::<f64>().expect("builds"), None).expect("saves");
    let bytes = std::fs::read(&path).expect("written");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let mut meta = meta.metadata().clone().expect("metadata");
    let c = meta
        .get("exactflow.config")
        .expect("config")
        .replace("\"bins\":8", "\"bins\":0");
    // Re-signed, as a crafted file would be, so that the config's own check is what refuses it.
    let mut sums: std::collections::BTreeMap<String, String> =
        serde_json::from_str(meta.get("exactflow.sha256").expect("checksums")).expect("json");
    sums.insert("exactflow.config".into(), checkpoint::sha256_hex(c.as_bytes()));
    meta.insert("exactflow.sha256".into(), serde_json::to_string(&sums).expect("json"));
    meta.insert("exactflow.config".into(), c);
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("readable");
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    let rewritten = safetensors::serialize(tensors, Some(meta)).expect("serializes");
    std::fs::write(&path, rewritten).expect("writes");
    let e = checkpoint::load::<f64>(&path).err().expect("zero bins refused");
    assert!(e.to_string().contains("bins"), "{e}");
}

/// A checkpoint holding a NaN parameter is a clear error naming the tensor by its checkpoint
/// name: at load, or at the first use (scoring or sampling), never a NaN result.
#[test]
fn nan_parameters_in_a_checkpoint_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, (cfg, dim)) in presets().into_iter().filter(|(_, d)| *d == 2).enumerate() {
        let mut flow = cfg.build::<f64>().expect("builds");
        let mut target = String::new();
        flow.visit_params_mut("", &mut |name, p| {
            if target.is_empty() && name.contains(".net.") && name.ends_with("weight") {
                p.value.as_mut_slice()[0] = f64::NAN;
                target = name.to_string();
            }
        });
        assert!(!target.is_empty());
        let path = dir.path().join(format!("{i}.safetensors"));
        checkpoint::save(&path, &cfg, &flow, None).expect("saves");
        // The message names the tensor as the checkpoint does (e.g. `flow.1.net.0.weight`).
        let names_it = |msg: &str| msg.contains(&target);
        match checkpoint::load::<f64>(&path) {
            Err(e) => assert!(names_it(&e.to_string()), "{}: {e}", cfg.family()),
            Ok(loaded) => {
                let e = loaded.flow.log_prob(&batch(dim, 2), None).expect_err("NaN refused");
                assert!(names_it(&e.to_string()), "{}: {e}", cfg.family());
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                let e = loaded.flow.sample(2, 1.0, &mut rng, None).expect_err("NaN refused");
                assert!(names_it(&e.to_string()), "{}: {e}", cfg.family());
            }
        }
    }
}

/// bayesflow issue #721: a spline flow with the default domain `[-3, 3]` went to a NaN loss on
/// heavy-tailed data, from the spline branch evaluated at inputs far outside it. Here: standard
/// Cauchy data (a fifth of the points beyond `+-3`, the largest near 1e4) train the NSF presets
/// (tail bound 3) with a finite loss at every epoch, finite gradients, and a finite `log p` even
/// at `+-1e8`.
#[test]
fn bayesflow_issue_721_heavy_tailed_data_train_with_finite_loss() {
    let mut rng = ChaCha8Rng::seed_from_u64(721);
    let n = 1024;
    let cauchy: Vec<f64> = (0..2 * n)
        .map(|_| (std::f64::consts::PI * (rng.random::<f64>() - 0.5)).tan())
        .collect();
    let far = cauchy.iter().filter(|v| v.abs() > 3.0).count();
    assert!(far > n / 4, "heavy tails: {far} of {} coordinates beyond 3", 2 * n);
    let data = Dataset::new("cauchy", Tensor::new(&[n, 2], cauchy).expect("shape"), None, None).expect("dataset");
    for preset in ["coupling", "autoregressive"] {
        let cfg = ModelConfig::preset("nsf", preset, &[2], 1).expect("preset");
        let mut flow = cfg.build::<f64>().expect("builds");
        let opts = TrainConfig {
            steps: Some(40),
            batch_size: 128,
            ..TrainConfig::default()
        };
        let report = train(&mut flow, &cfg, &opts, &data, Some(&data), &mut Silent, None).expect("trains");
        assert!(
            report.history.iter().all(|e| e.train_nll.is_finite()),
            "{preset}: {:?}",
            report.history
        );
        assert!(flow.check_params_finite("trained").is_ok());
        let (lp, cache) = flow.forward_train(&data.data, None, TrainMode::Cached).expect("scores");
        assert!(lp.iter().all(|v| v.is_finite()));
        flow.zero_grad();
        let w = vec![-1.0 / n as f64; n];
        let g = flow.backward(cache, &w).expect("backward");
        assert!(g.x.as_slice().iter().all(|v| v.is_finite()));
        let mut finite = true;
        flow.visit_params("", &mut |_, p| {
            finite &= p.grad.as_slice().iter().all(|v| v.is_finite())
        });
        assert!(finite, "{preset}: a non-finite gradient");
        let extreme = Tensor::new(&[3, 2], vec![1e8, -1e8, -3.0, 3.0, 1e4, 0.5]).expect("shape");
        let lp = flow.log_prob(&extreme, None).expect("scores");
        assert!(lp.iter().all(|v| v.is_finite()), "{preset}: {lp:?}");
    }
}
