//! End-to-end tests of the image flows (multi-scale RealNVP and Glow) on tiny images: training
//! lowers the NLL, the memory-efficient backward gives the cached mode's gradients, encode then
//! decode reconstructs, checkpoints reproduce log_prob bit for bit and never re-run ActNorm's
//! initialization, temperature sampling, and clear errors for impossible configurations.

mod common;

use common::batch;
use exactflow_layers::{ParamKind, Params, Split};
use exactflow_models::checkpoint;
use exactflow_models::data::{DataSpec, Splits};
use exactflow_models::train::{Decay, Schedule, Silent, TrainConfig, train};
use exactflow_models::{
    Error, Flow, GlowConfig, GlowCouplingKind, GlowPermutation, ModelConfig, MultiScaleRealNvpConfig, TrainMode,
    evaluate, glow, multiscale,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn glow_cfg(shape: [usize; 3], coupling: GlowCouplingKind, permutation: GlowPermutation) -> ModelConfig {
    ModelConfig::Glow(GlowConfig {
        shape,
        levels: 2,
        steps: 2,
        hidden: 6,
        coupling,
        permutation,
        seed: 4,
        context_dim: 0,
    })
}

fn small_glow(shape: [usize; 3]) -> ModelConfig {
    glow_cfg(shape, GlowCouplingKind::Affine, GlowPermutation::LuConv)
}

fn small_realnvp(shape: [usize; 3], batch_norm: bool) -> ModelConfig {
    ModelConfig::MultiScaleRealNvp(MultiScaleRealNvpConfig {
        shape,
        scales: 2,
        blocks: 1,
        features: 6,
        batch_norm,
        logit_alpha: Some(0.05),
        seed: 8,
        context_dim: 0,
    })
}

/// Adds small deterministic values to every trainable parameter, so that couplings, priors and
/// 1x1 convolutions are no longer at their (identity / zero) initialization.
fn perturb(flow: &mut Flow<f64>, amplitude: f64) {
    let mut k = 0.0f64;
    flow.visit_params_mut("", &mut |_, p| {
        if p.kind != ParamKind::Trainable {
            return;
        }
        for v in p.value.as_mut_slice() {
            k += 1.0;
            *v += amplitude * (1.37 * k).sin();
        }
    });
}

fn grads(flow: &Flow<f64>) -> Vec<(String, Vec<f64>)> {
    let mut out = Vec::new();
    flow.visit_params("", &mut |n, p| {
        if p.kind == ParamKind::Trainable {
            out.push((n.to_string(), p.grad.as_slice().to_vec()));
        }
    });
    out
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

fn digits() -> Splits {
    let spec: DataSpec = "digits-image".parse().expect("known spec");
    spec.load(1, 0).expect("digits")
}

fn train_cfg(steps: u64, memory_efficient: bool) -> TrainConfig {
    TrainConfig {
        steps: Some(steps),
        batch_size: 64,
        schedule: Schedule {
            lr: 2e-3,
            warmup: 0,
            decay: Decay::Constant,
        },
        seed: 3,
        memory_efficient,
        ..TrainConfig::default()
    }
}

#[test]
fn training_lowers_the_nll_of_glow_and_multiscale_realnvp() {
    let d = digits();
    assert_eq!(d.train.sample_shape(), &[1, 8, 8]);
    let models = [
        (small_glow([1, 8, 8]), false),
        (small_glow([1, 8, 8]), true),
        (small_realnvp([1, 8, 8], true), false),
        (small_realnvp([1, 8, 8], false), true),
    ];
    for (model, memory_efficient) in models {
        let mut flow = model.build::<f64>().expect("valid config");
        let before = evaluate(&flow, &d.val, 512).expect("evaluates");
        let rep = train(
            &mut flow,
            &model,
            &train_cfg(40, memory_efficient),
            &d.train,
            Some(&d.val),
            &mut Silent,
            None,
        )
        .expect("trains");
        let after = evaluate(&flow, &d.val, 512).expect("evaluates");
        let (b, a) = (
            before.bits_per_dim.expect("discrete"),
            after.bits_per_dim.expect("discrete"),
        );
        assert!(
            a < b - 0.05,
            "{} (memory efficient: {memory_efficient}): validation bits/dim {b} -> {a}",
            model.family()
        );
        assert!(rep.train_nll.is_finite());
    }
}

/// The memory-efficient backward against the cached one, on fresh copies of the same model.
fn check_memory_efficient_gradients(model: &ModelConfig, amplitude: f64) {
    let shape: [usize; 3] = model.data_shape().try_into().expect("image shape");
    let x = batch(6, shape, 1);
    let w = vec![-1.0 / 6.0; 6];
    let mut a = model.build::<f64>().expect("builds");
    let mut b = model.build::<f64>().expect("builds");
    perturb(&mut a, amplitude);
    perturb(&mut b, amplitude);
    // Two steps each: the first initializes ActNorm (Pass::Train), the second runs on
    // initialized layers and new batch statistics.
    for step in 0..2 {
        let x = if step == 0 { x.clone() } else { batch(6, shape, 7) };
        a.zero_grad();
        b.zero_grad();
        let (lp_a, ca) = a.forward_train(&x, None, TrainMode::Cached).expect("cached forward");
        let (lp_b, cb) = b
            .forward_train(&x, None, TrainMode::MemoryEfficient)
            .expect("memory-efficient forward");
        assert!(!ca.is_memory_efficient() && cb.is_memory_efficient());
        assert_eq!(bits(&lp_a), bits(&lp_b), "{}: log p differs", model.family());
        a.backward(ca, &w).expect("cached backward");
        b.backward(cb, &w).expect("memory-efficient backward");
        let (ga, gb) = (grads(&a), grads(&b));
        assert_eq!(ga.len(), gb.len());
        let scale = ga.iter().map(|(_, g)| max_abs(g)).fold(0.0f64, f64::max);
        assert!(scale > 0.0);
        let mut nonzero = 0;
        for ((name, ga), (_, gb)) in ga.iter().zip(&gb) {
            let m = max_abs(ga);
            if m > 0.0 {
                nonzero += 1;
            }
            for (k, (p, q)) in ga.iter().zip(gb).enumerate() {
                // Relative to the tensor's largest gradient (with a floor far below the
                // overall scale, for tensors whose gradients vanish).
                assert!(
                    (p - q).abs() <= 1e-10 * m.max(1e-3 * scale),
                    "{} step {step}: {name}[{k}] cached {p:e} vs memory-efficient {q:e} (tensor max {m:e})",
                    model.family()
                );
            }
        }
        assert!(nonzero * 2 > ga.len(), "most gradients should be nonzero");
    }
}

#[test]
fn memory_efficient_gradients_match_the_cached_mode() {
    check_memory_efficient_gradients(&small_glow([3, 4, 4]), 0.05);
    check_memory_efficient_gradients(
        &glow_cfg([1, 4, 4], GlowCouplingKind::Additive, GlowPermutation::Shuffle),
        0.05,
    );
    check_memory_efficient_gradients(&small_realnvp([2, 4, 4], true), 0.05);
    check_memory_efficient_gradients(&small_realnvp([1, 4, 4], false), 0.05);
}

#[test]
fn memory_efficient_training_follows_the_cached_run() {
    let d = digits();
    let model = small_glow([1, 8, 8]);
    let mut runs = Vec::new();
    for memory_efficient in [false, true] {
        let mut flow = model.build::<f64>().expect("builds");
        train(
            &mut flow,
            &model,
            &train_cfg(5, memory_efficient),
            &d.train,
            None,
            &mut Silent,
            None,
        )
        .expect("trains");
        runs.push(exactflow_models::checkpoint::snapshot_params(&flow));
    }
    for (name, a) in &runs[0] {
        let b = &runs[1][name];
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= 1e-9 * (1.0 + p.abs()), "{name}: {p} vs {q}");
        }
    }
}

/// A model after one training pass (ActNorm initialized, batch statistics set) and perturbed
/// parameters.
fn warmed(model: &ModelConfig) -> Flow<f64> {
    let shape: [usize; 3] = model.data_shape().try_into().expect("image shape");
    let mut flow = model.build::<f64>().expect("builds");
    perturb(&mut flow, 0.05);
    let (_, cache) = flow
        .forward_train(&batch(8, shape, 3), None, TrainMode::Cached)
        .expect("forward");
    flow.backward(cache, &[0.0; 8]).expect("backward");
    flow
}

#[test]
fn encode_then_decode_reconstructs() {
    for model in [
        small_glow([3, 4, 4]),
        small_realnvp([2, 4, 4], true),
        small_glow([1, 8, 8]),
    ] {
        let shape: [usize; 3] = model.data_shape().try_into().expect("image shape");
        let flow = warmed(&model);
        let x = batch(5, shape, 11);
        let latent = flow.encode(&x, None).expect("encodes");
        assert_eq!(latent.factored.len(), flow.num_splits());
        assert_eq!(latent.factored.len(), 1);
        let back = flow.decode(&latent, None).expect("decodes");
        assert_eq!(back.shape(), x.shape());
        let err = back
            .as_slice()
            .iter()
            .zip(x.as_slice())
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            err <= 1e-10 * max_abs(x.as_slice()),
            "{}: reconstruction error {err:e}",
            model.family()
        );
        let flat = latent.flatten().expect("flattens");
        assert_eq!(flat.shape(), &[5, shape.iter().product::<usize>()]);
        let steps = flow
            .interpolate(
                &x.gather_batch(&[0]).expect("row"),
                &x.gather_batch(&[1]).expect("row"),
                4,
                None,
            )
            .expect("interpolates");
        assert_eq!(steps.shape()[0], 4);
    }
}

#[test]
fn save_then_load_reproduces_log_prob_bit_for_bit() {
    let d = digits();
    let dir = tempfile::tempdir().expect("temp dir");
    for model in [small_glow([1, 8, 8]), small_realnvp([1, 8, 8], true)] {
        let mut flow = model.build::<f64>().expect("builds");
        train(
            &mut flow,
            &model,
            &train_cfg(5, false),
            &d.train,
            None,
            &mut Silent,
            None,
        )
        .expect("trains");
        let path = dir.path().join(format!("{}.safetensors", model.family()));
        checkpoint::save(&path, &model, &flow, None).expect("saves");
        let loaded = checkpoint::load::<f64>(&path).expect("loads");
        assert_eq!(loaded.config, model);
        let x = batch(7, [1, 8, 8], 5);
        assert_eq!(
            bits(&flow.log_prob(&x, None).expect("log_prob")),
            bits(&loaded.flow.log_prob(&x, None).expect("log_prob"))
        );
        assert_eq!(checkpoint::read_config(&path).expect("config"), model);
    }
}

fn actnorm_values(flow: &Flow<f64>) -> Vec<(String, Vec<u64>)> {
    let mut out = Vec::new();
    flow.visit_params("", &mut |n, p| {
        if n.ends_with(".bias") && p.value.shape().len() == 1 || n.ends_with(".logs") {
            out.push((n.to_string(), bits(p.value.as_slice())));
        }
    });
    flow.visit_int("", &mut |n, b| {
        if n.ends_with(".initialized") {
            out.push((n.to_string(), b.values().iter().map(|&v| v as u64).collect()));
        }
    });
    out
}

#[test]
fn a_loaded_glow_does_not_reinitialize_actnorm() {
    let d = digits();
    let model = small_glow([1, 8, 8]);
    let mut flow = model.build::<f64>().expect("builds");
    train(
        &mut flow,
        &model,
        &train_cfg(3, false),
        &d.train,
        None,
        &mut Silent,
        None,
    )
    .expect("trains");
    let mut flags = Vec::new();
    flow.visit_int("", &mut |n, b| {
        if n.ends_with(".initialized") {
            flags.push(b.is_set());
        }
    });
    assert_eq!(flags, vec![true; 4], "every ActNorm initialized by training");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("glow.safetensors");
    checkpoint::save(&path, &model, &flow, None).expect("saves");
    // A batch unlike the training data: an initialization on it would change ActNorm.
    let other = batch(9, [1, 8, 8], 23).map(|v| 0.3 * v + 0.6);
    let before = flow.log_prob(&other, None).expect("log_prob");
    let mut loaded = checkpoint::load::<f64>(&path).expect("loads").flow;
    assert_eq!(bits(&loaded.log_prob(&other, None).expect("log_prob")), bits(&before));
    // Even a training pass (fine-tuning) after loading keeps the saved ActNorm parameters.
    let an = actnorm_values(&loaded);
    assert!(an.len() >= 12);
    let (_, cache) = loaded.forward_train(&other, None, TrainMode::Cached).expect("forward");
    loaded.backward(cache, &[0.0; 9]).expect("backward");
    assert_eq!(actnorm_values(&loaded), an);
    assert_eq!(bits(&loaded.log_prob(&other, None).expect("log_prob")), bits(&before));
    // A fresh model, by contrast, initializes on its first training batch.
    let mut fresh = model.build::<f64>().expect("builds");
    let an0 = actnorm_values(&fresh);
    let (_, cache) = fresh.forward_train(&other, None, TrainMode::Cached).expect("forward");
    fresh.backward(cache, &[0.0; 9]).expect("backward");
    assert_ne!(actnorm_values(&fresh), an0);
}

#[test]
fn temperature_sampling() {
    for model in [small_glow([3, 4, 4]), small_realnvp([2, 4, 4], true)] {
        let shape: [usize; 3] = model.data_shape().try_into().expect("image shape");
        let flow = warmed(&model);
        let mut r1 = ChaCha8Rng::seed_from_u64(1);
        let mut r2 = ChaCha8Rng::seed_from_u64(2);
        let s1 = flow.sample(3, 0.0, &mut r1, None).expect("samples");
        let s2 = flow.sample(3, 0.0, &mut r2, None).expect("samples");
        assert_eq!(s1, s2, "{}: T = 0 is deterministic", model.family());
        let mut dims = vec![3];
        dims.extend(shape);
        assert_eq!(s1.shape(), &dims[..]);
        assert_eq!(s1.sample(0).expect("row"), s1.sample(2).expect("row"));
        // T = 0 is the decoded mode: zero latents for RealNVP, the priors' means for Glow.
        let (hot, lp) = flow.sample_and_log_prob(3, 0.8, &mut r1, None).expect("samples");
        assert!(hot.first_non_finite().is_none() && lp.iter().all(|v| v.is_finite()));
        assert_ne!(hot.sample(0).expect("row"), hot.sample(1).expect("row"));
        assert!(flow.sample(2, -0.5, &mut r1, None).is_err());
        assert!(flow.sample(2, f64::NAN, &mut r1, None).is_err());
        if let ModelConfig::Glow(_) = model {
            // Glow's samples are scored consistently by the forward pass.
            let again = flow.log_prob(&hot, None).expect("log_prob");
            for (p, q) in lp.iter().zip(&again) {
                assert!((p - q).abs() <= 1e-9 * p.abs().max(1.0), "{p} vs {q}");
            }
        }
    }
    // Glow's spread grows with the temperature.
    let flow = warmed(&small_glow([3, 4, 4]));
    let spread = |t: f64| {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let s = flow.sample(64, t, &mut rng, None).expect("samples");
        let m = s.as_slice().iter().sum::<f64>() / s.len() as f64;
        s.as_slice().iter().map(|v| (v - m) * (v - m)).sum::<f64>() / s.len() as f64
    };
    assert!(spread(0.3) < spread(1.0));
}

/// The message of a configuration error: a model's [`Error::Config`], or a layer constructor's
/// invalid-argument error (the layers' level of the same mistake).
fn config_error<E: Into<Error>>(r: std::result::Result<impl Sized, E>) -> String {
    match r.map_err(Into::into) {
        Err(Error::Config(m)) => m,
        Err(Error::Numerical(exactflow_kernels::Error::InvalidArgument { reason, .. })) => reason,
        Err(e) => panic!("expected a configuration error, found {e:?}"),
        Ok(_) => panic!("expected a configuration error, found Ok"),
    }
}

#[test]
fn impossible_configs_are_clear_config_errors() {
    let mut g = GlowConfig {
        shape: [1, 6, 6],
        levels: 2,
        steps: 2,
        hidden: 4,
        coupling: GlowCouplingKind::Affine,
        permutation: GlowPermutation::LuConv,
        seed: 0,
        context_dim: 0,
    };
    let m = config_error(ModelConfig::Glow(g.clone()).build::<f64>());
    assert!(m.contains("divisible by 2^2 = 4") && m.contains("[1, 6, 6]"), "{m}");
    g.shape = [1, 8, 6];
    g.levels = 2;
    assert!(config_error(ModelConfig::Glow(g.clone()).build::<f64>()).contains("divisible"));
    g.shape = [1, 8, 8];
    for (levels, steps, hidden, needle) in [(0, 2, 4, "level"), (2, 0, 4, "step"), (2, 2, 0, "hidden")] {
        let c = GlowConfig {
            levels,
            steps,
            hidden,
            ..g.clone()
        };
        let m = config_error(ModelConfig::Glow(c).build::<f64>());
        assert!(m.contains(needle), "{m}");
    }
    g.shape = [0, 8, 8];
    assert!(config_error(ModelConfig::Glow(g.clone()).build::<f64>()).contains("positive"));
    g.shape = [1, 8, 8];
    g.levels = 40;
    assert!(config_error(ModelConfig::Glow(g).build::<f64>()).contains("at most"));

    let r = MultiScaleRealNvpConfig {
        shape: [1, 6, 6],
        scales: 3,
        blocks: 1,
        features: 4,
        batch_norm: false,
        logit_alpha: Some(0.05),
        seed: 0,
        context_dim: 0,
    };
    let m = config_error(ModelConfig::MultiScaleRealNvp(r.clone()).build::<f64>());
    assert!(m.contains("divisible by 2^2 = 4"), "{m}");
    let c = MultiScaleRealNvpConfig {
        shape: [1, 4, 4],
        ..r.clone()
    };
    let m = config_error(ModelConfig::MultiScaleRealNvp(c).build::<f64>());
    assert!(m.contains("1x1 pixels"), "{m}");
    for c in [
        MultiScaleRealNvpConfig { scales: 0, ..r.clone() },
        MultiScaleRealNvpConfig {
            features: 0,
            ..r.clone()
        },
        MultiScaleRealNvpConfig {
            logit_alpha: Some(0.5),
            ..r.clone()
        },
    ] {
        config_error(ModelConfig::MultiScaleRealNvp(c).build::<f64>());
    }
    // Every built-in split follows a squeeze (4C channels), so an odd channel count can only
    // reach a split in a hand-assembled flow; the split itself refuses it with a Config error.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let m = config_error(Split::<f64>::glow(&[3, 4, 4], &mut rng));
    assert!(m.contains("even C"), "{m}");
    config_error(Split::<f64>::without_prior(&[5, 2, 2]));
    // Presets: image families need image data, and unknown names list the known ones.
    assert!(config_error(ModelConfig::preset("glow", "digits", &[64], 0)).contains("[C, H, W]"));
    assert!(config_error(ModelConfig::preset("realnvp", "mnist", &[784], 0)).contains("[C, H, W]"));
    assert!(config_error(ModelConfig::preset("glow", "huge", &[1, 8, 8], 0)).contains("tiny, digits, mnist, cifar10"));
    assert!(config_error(ModelConfig::preset("realnvp", "toy", &[1, 8, 8], 0)).contains("digits-image"));
    assert!(
        config_error(ModelConfig::preset("glow", "cifar10", &[3, 30, 30], 0).and_then(|c| c.build::<f32>()))
            .contains("divisible")
    );
}

#[test]
fn presets_select_the_image_models() {
    let c = ModelConfig::preset("glow", "digits", &[1, 8, 8], 3).expect("preset");
    let ModelConfig::Glow(g) = &c else {
        panic!("glow preset is not Glow: {c:?}")
    };
    assert_eq!((g.levels, g.steps, g.hidden), (2, 8, 64));
    assert_eq!((c.family(), c.seed(), c.data_shape()), ("glow", 3, vec![1, 8, 8]));
    let flow = c.build::<f32>().expect("builds");
    assert_eq!(flow.num_splits(), 1);
    assert_eq!(flow.latent_shape(), vec![8, 2, 2]);
    assert_eq!(glow::stage_labels(g).len(), flow.stages().len());
    assert_eq!(c.stage_labels(), Some(glow::stage_labels(g)));
    assert_eq!(glow::stage_labels(g)[1], "level0.step0.actnorm");
    for (i, s) in flow.stages().iter().enumerate() {
        let label = &glow::stage_labels(g)[i];
        let kind = s.kind();
        let ok = match label.rsplit('.').next().unwrap_or_default() {
            "squeeze" => kind == "Squeeze",
            "actnorm" => kind == "ActNorm",
            "split" => s.factored_shape().is_some() && kind == "Split",
            _ => true,
        };
        assert!(ok, "stage {i}: {label} is a {kind}");
    }
    let mut names = Vec::new();
    flow.visit_params("", &mut |n, _| names.push(n.to_string()));
    flow.visit_int("", &mut |n, _| names.push(n.to_string()));
    assert!(names.contains(&"flow.1.initialized".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".prior.weight")));
    assert!(names.contains(&"base.log_std".to_string()));

    for preset in ["digits-image", "digits"] {
        let c = ModelConfig::preset("realnvp", preset, &[1, 8, 8], 0).expect("preset");
        let ModelConfig::MultiScaleRealNvp(r) = &c else {
            panic!("realnvp {preset} on images is not multi-scale: {c:?}")
        };
        assert_eq!(c.family(), "realnvp");
        let flow = c.build::<f64>().expect("builds");
        let labels = multiscale::stage_labels(r);
        assert_eq!(labels.len(), flow.stages().len());
        for (label, s) in labels.iter().zip(flow.stages()) {
            let expected = match label.rsplit('.').next().unwrap_or_default() {
                "logit" => "Logit",
                "squeeze" => "Squeeze",
                "split" => "Split",
                "batchnorm" => "BatchNorm",
                _ => "AffineCoupling",
            };
            assert_eq!(s.kind(), expected, "{label}");
        }
        assert_eq!(flow.num_splits(), r.scales - 1);
    }
    assert!(matches!(
        ModelConfig::preset("realnvp", "digits", &[64], 0).expect("preset"),
        ModelConfig::RealNvp(_)
    ));
    for (family, preset, shape) in [
        ("glow", "tiny", vec![3, 4, 4]),
        ("glow", "mnist", vec![1, 28, 28]),
        ("glow", "cifar10", vec![3, 32, 32]),
        ("realnvp", "mnist", vec![1, 28, 28]),
        ("realnvp", "cifar10", vec![3, 32, 32]),
    ] {
        let c = ModelConfig::preset(family, preset, &shape, 0).expect("preset");
        assert!(ModelConfig::presets(family).contains(&preset));
        match &c {
            ModelConfig::Glow(g) => glow::validate(g).expect("valid"),
            ModelConfig::MultiScaleRealNvp(r) => multiscale::validate(r).expect("valid"),
            other => panic!("{family} {preset}: {other:?}"),
        }
    }
}

#[test]
fn configs_round_trip_through_json() {
    for c in [
        small_glow([3, 4, 4]),
        glow_cfg([1, 4, 4], GlowCouplingKind::Additive, GlowPermutation::Reverse),
        small_realnvp([1, 8, 8], true),
    ] {
        let s = serde_json::to_string(&c).expect("serializes");
        let back: ModelConfig = serde_json::from_str(&s).expect("parses");
        assert_eq!(back, c);
    }
    let s = serde_json::to_string(&small_glow([3, 4, 4])).expect("serializes");
    assert!(
        s.contains(r#""model":"glow""#) && s.contains(r#""permutation":"lu_conv""#),
        "{s}"
    );
    let s = serde_json::to_string(&small_realnvp([1, 8, 8], true)).expect("serializes");
    assert!(s.contains(r#""model":"realnvp_multiscale""#), "{s}");
    // Training configs written before the memory-efficient option still load.
    let mut v = serde_json::to_value(TrainConfig::default()).expect("serializes");
    v.as_object_mut().expect("object").remove("memory_efficient");
    let t: TrainConfig = serde_json::from_value(v).expect("parses");
    assert!(!t.memory_efficient);
}

#[test]
fn an_overflow_inside_a_training_pass_is_reported_as_divergence() {
    // (a) ActNorm's log-scale at 800 (finite) overflows its output on the first step, in both
    // modes. (b) A coupling whose scale sigmoid(h + 2) underflows to 0 (h bias -1000) is fine
    // forward (z_B = t, log-det -998 computed stably) but its inverse, which the memory-efficient
    // backward uses to recompute the input, divides by 0. Either way the trainer reports a
    // divergence at step 0 naming the layer, not a bad-input error.
    let cases: [(&str, f64, bool); 3] = [
        (".logs", 800.0, false),
        (".logs", 800.0, true),
        ("net.2.bias", -1000.0, true),
    ];
    for (suffix, value, memory_efficient) in cases {
        let model = small_glow([1, 8, 8]);
        let mut flow = warmed(&model);
        let mut set = false;
        flow.visit_params_mut("", &mut |name, p| {
            if !set && name.ends_with(suffix) {
                p.value.as_mut_slice()[0] = value;
                set = true;
            }
        });
        assert!(set, "no parameter named *{suffix}");
        let data = digits();
        let err = train(
            &mut flow,
            &model,
            &train_cfg(4, memory_efficient),
            &data.train,
            None,
            &mut Silent,
            None,
        )
        .expect_err("overflows");
        let Error::Diverged { step, reason } = &err else {
            panic!("{suffix} = {value}, memory efficient {memory_efficient}: expected Diverged, got {err}");
        };
        assert_eq!(*step, 0, "{err}");
        assert!(reason.contains("flow."), "the stage is named: {err}");
        assert!(err.to_string().starts_with("training diverged at step 0:"), "{err}");
    }
}
