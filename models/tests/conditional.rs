//! Conditional flows in the library: the trainer feeds a data set's context (batches, splits),
//! `evaluate` scores with it, the exact-posterior check of a linear-Gaussian simulator falls with
//! training, and every bad context (missing, unexpected, wrong width or rows, NaN) is an error
//! naming what is wrong. Trainings are short: they check the machinery, not the targets
//! (BENCHMARKS.md has the default-length runs).

use exactflow_layers::Tensor;
use exactflow_layers::nets::Activation;
use exactflow_layers::{MaskKind, SplineConfig};
use exactflow_models::data::sim::SimKind;
use exactflow_models::data::{DataSpec, Dataset};
use exactflow_models::posterior::check_posterior;
use exactflow_models::train::{Decay, Schedule, Silent, TrainConfig, train};
use exactflow_models::{Error, ModelConfig, NsfConfig, SplineLayer, evaluate};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn small_nsf(context_dim: usize) -> ModelConfig {
    ModelConfig::Nsf(NsfConfig {
        dim: 2,
        layers: 3,
        transform: SplineLayer::Coupling,
        hidden: vec![32, 32],
        activation: Activation::Relu,
        spline: SplineConfig::new(8, 4.0).expect("spline"),
        mask: MaskKind::Halves,
        logit_alpha: None,
        seed: 1,
        context_dim,
        context_embedding: None,
    })
}

fn cfg(steps: u64) -> TrainConfig {
    TrainConfig {
        steps: Some(steps),
        batch_size: 128,
        schedule: Schedule {
            lr: 3e-3,
            warmup: 0,
            decay: Decay::Constant,
        },
        seed: 4,
        ..TrainConfig::default()
    }
}

/// 300 steps on 2000 pairs of `sim:gaussian-linear`: the conditional NLL and the exact-posterior
/// KL both fall, the KL stays finite and non-negative within its standard error, and every
/// coverage is a fraction.
#[test]
fn training_on_a_simulator_brings_the_posterior_closer_to_the_exact_one() {
    let splits = "sim:gaussian-linear"
        .parse::<DataSpec>()
        .expect("spec")
        .load(0, 2000)
        .expect("load");
    assert_eq!(splits.train.context_dim(), 2);
    let model = small_nsf(2);
    let mut flow = model.build::<f64>().expect("build");
    let g = SimKind::GaussianLinear.gaussian().expect("gaussian");
    let xs = splits
        .test
        .context
        .as_ref()
        .expect("context")
        .slice_batch(0..20)
        .expect("rows");
    let before = check_posterior(&flow, &g, &xs, 400, 7).expect("check");
    let nll0 = evaluate(&flow, &splits.test, 256).expect("eval").nll;
    train(
        &mut flow,
        &model,
        &cfg(300),
        &splits.train,
        Some(&splits.val),
        &mut Silent,
        None,
    )
    .expect("train");
    let after = check_posterior(&flow, &g, &xs, 400, 7).expect("check");
    let nll1 = evaluate(&flow, &splits.test, 256).expect("eval").nll;
    assert!(nll1 < nll0, "conditional NLL {nll0} -> {nll1}");
    assert!(after.kl < before.kl, "KL {} -> {}", before.kl, after.kl);
    assert!(after.kl.is_finite() && after.kl > -3.0 * after.kl_stderr, "{after:?}");
    for c in after.coverage.iter().chain(&before.coverage) {
        assert!((0.0..=1.0).contains(&c.coverage), "{c:?}");
    }
    // The check refuses a flow that does not model theta given x.
    let other = small_nsf(0).build::<f64>().expect("build");
    assert!(matches!(check_posterior(&other, &g, &xs, 10, 0), Err(Error::Config(_))));
    assert!(check_posterior(&flow, &g, &xs, 1, 0).is_err());
}

/// The trainer and `evaluate` refuse a context that does not fit the model, naming both widths.
#[test]
fn the_trainer_and_evaluate_name_a_context_that_does_not_fit() {
    let x = Tensor::from_fn(&[50, 2], |k| ((k as f64) * 0.3).sin()).expect("x");
    let plain = Dataset::new("plain", x.clone(), None, None).expect("ds");
    let with3 = plain
        .clone()
        .with_context(Tensor::from_fn(&[50, 3], |k| k as f64 / 150.0).expect("c"))
        .expect("ctx");
    let cond = small_nsf(2);
    let mut flow = cond.build::<f64>().expect("build");
    let msg = |e: Error| e.to_string();
    let e = msg(train(&mut flow, &cond, &cfg(1), &plain, None, &mut Silent, None).expect_err("no context"));
    assert!(e.contains("width 2") && e.contains("no context"), "{e}");
    let e = msg(evaluate(&flow, &with3, 64).expect_err("width 3"));
    assert!(e.contains("width 2") && e.contains("width 3"), "{e}");
    let uncond = small_nsf(0);
    let mut u = uncond.build::<f64>().expect("build");
    let e = msg(train(&mut u, &uncond, &cfg(1), &with3, None, &mut Silent, None).expect_err("unconditional"));
    assert!(e.contains("unconditional") && e.contains("width 3"), "{e}");
    // A conditional flow sampled without a context, an unconditional one given one.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let e = msg(flow.sample(3, 1.0, &mut rng, None).expect_err("no context"));
    assert!(e.contains("conditional") && e.contains("[N, 2]"), "{e}");
    let c = Tensor::<f64>::zeros(&[3, 2]).expect("c");
    let e = msg(u.sample(3, 1.0, &mut rng, Some(&c)).expect_err("unconditional"));
    assert!(e.contains("unconditional") && e.contains("[3, 2]"), "{e}");
    // Rows and NaN, at the flow.
    let e = msg(flow
        .log_prob(&x.slice_batch(0..4).expect("x"), Some(&c))
        .expect_err("rows"));
    assert!(e.contains('4') && e.contains('3'), "{e}");
    let mut nan = Tensor::<f64>::zeros(&[4, 2]).expect("c");
    nan.as_mut_slice()[5] = f64::NAN;
    match flow.log_prob(&x.slice_batch(0..4).expect("x"), Some(&nan)) {
        Err(Error::Numerical(exactflow_kernels::Error::NonFinite { index, .. })) => assert_eq!(index, (2, 1)),
        other => panic!("expected NonFinite naming row 2, got {other:?}"),
    }
    // A conditional model trains on a data set carrying its context.
    let with2 = plain
        .with_context(Tensor::from_fn(&[50, 2], |k| k as f64 / 100.0).expect("c"))
        .expect("ctx");
    let report = train(&mut flow, &cond, &cfg(2), &with2, Some(&with2), &mut Silent, None).expect("train");
    assert_eq!(report.steps, 2);
}

/// Existing (unconditional) configs without the `context_dim` key still load, and unknown keys
/// are still refused.
#[test]
fn configs_without_a_context_width_load_as_unconditional() {
    let json = r#"{"model":"nsf","dim":2,"layers":2,"transform":"coupling","hidden":[8],"activation":"relu",
        "spline":{"bins":4,"tail_bound":3.0,"min_bin_width":0.001,"min_bin_height":0.001,"min_derivative":0.001},
        "mask":"halves","logit_alpha":null,"seed":0}"#;
    let c: ModelConfig = serde_json::from_str(json).expect("old config");
    assert_eq!(c.context_dim(), 0);
    let with = json.replace("\"seed\":0", "\"seed\":0,\"context_dim\":3");
    let c: ModelConfig = serde_json::from_str(&with).expect("conditional config");
    assert_eq!(c.context_dim(), 3);
    let typo = json.replace("\"seed\":0", "\"seed\":0,\"context_dims\":3");
    assert!(serde_json::from_str::<ModelConfig>(&typo).is_err());
}

/// Certified evaluation of a conditional flow uses each sample's context: after a few training
/// steps (so the context weights are not zero), every certified enclosure of a conditional
/// RealNVP and NSF contains the f64 log q(theta | x) computed with that sample's context, and
/// the enclosures differ from those of the same data under another context.
#[test]
fn certified_evaluation_of_a_conditional_flow_uses_the_context() {
    use exactflow_models::certify::{Certified, certify_dataset};
    let x = Tensor::from_fn(&[40, 2], |k| ((k as f64) * 0.37).sin()).expect("x");
    let c = Tensor::from_fn(&[40, 2], |k| ((k as f64) * 0.11).cos()).expect("c");
    let ds = Dataset::new("pairs", x.clone(), None, None)
        .expect("ds")
        .with_context(c.clone())
        .expect("ctx");
    let mut realnvp = ModelConfig::preset("realnvp", "toy", &[2], 3).expect("preset");
    realnvp.set_context_dim(2).expect("conditional");
    for model in [realnvp, small_nsf(2)] {
        let mut flow = model.build::<f64>().expect("build");
        train(&mut flow, &model, &cfg(5), &ds, None, &mut Silent, None).expect("train");
        let lp = flow.log_prob(&x, Some(&c)).expect("f64");
        let cert = certify_dataset(&flow, &ds, 16, &mut |_| {}).expect("certify");
        let mut certified = 0;
        for (k, s) in cert.iter().enumerate() {
            if let Certified::Enclosed(i) = s.log_likelihood {
                certified += 1;
                assert!(
                    i.contains(lp[k]),
                    "{}: sample {k}: {i:?} misses {}",
                    model.family(),
                    lp[k]
                );
            }
        }
        assert!(certified >= 36, "{}: only {certified} of 40 certified", model.family());
        let other = flow.log_prob(&x, Some(&c.map(|v| v + 0.5))).expect("another context");
        assert!(
            lp.iter().zip(&other).any(|(a, b)| a != b),
            "{}: the context is ignored",
            model.family()
        );
    }
}

/// A conditional NSF with a context embedding (`E: 2 -> 8 -> 3`, the stages reading 3 values):
/// trains in shards on two threads (the embedding's gradient summed like every other), the
/// checkpoint holds its parameters as `embedding.{j}.weight` / `embedding.{j}.bias`, and the
/// loaded model scores bit for bit as the trained one. The raw context's NaN is named by its
/// row before the embedding runs, and a non-finite embedding parameter is named.
#[test]
fn a_flow_with_a_context_embedding_trains_saves_and_loads() {
    use exactflow_layers::Params;
    use exactflow_models::ContextEmbedding;
    use exactflow_models::checkpoint;
    let splits = "sim:gaussian-linear"
        .parse::<DataSpec>()
        .expect("spec")
        .load(0, 1000)
        .expect("load");
    let mut model = small_nsf(2);
    model
        .set_context_embedding(Some(ContextEmbedding {
            hidden: vec![8],
            dim: 3,
        }))
        .expect("conditional");
    let mut flow = model.build::<f64>().expect("build");
    let before = checkpoint::snapshot_params(&flow);
    let cfg = TrainConfig { threads: 2, ..cfg(20) };
    train(
        &mut flow,
        &model,
        &cfg,
        &splits.train,
        Some(&splits.val),
        &mut Silent,
        None,
    )
    .expect("train");
    let after = checkpoint::snapshot_params(&flow);
    assert_ne!(
        before["embedding.0.weight"], after["embedding.0.weight"],
        "the embedding trained"
    );
    assert_eq!(after["embedding.0.weight"].len(), 8 * 2);
    assert_eq!(after["embedding.1.weight"].len(), 3 * 8);
    assert_eq!(after["embedding.1.bias"].len(), 3);

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.safetensors");
    checkpoint::save(&path, &model, &flow, None).expect("save");
    let loaded = checkpoint::load::<f64>(&path).expect("load");
    assert_eq!(loaded.config, model);
    let x = splits.test.data.slice_batch(0..50).expect("x");
    let c = splits
        .test
        .context
        .as_ref()
        .expect("context")
        .slice_batch(0..50)
        .expect("c");
    let lp = flow.log_prob(&x, Some(&c)).expect("log p");
    let lp2 = loaded.flow.log_prob(&x, Some(&c)).expect("log p");
    assert_eq!(lp, lp2, "the loaded model scores bit for bit");

    let mut nan = c.clone();
    nan.as_mut_slice()[2 * 7 + 1] = f64::NAN;
    match flow.log_prob(&x, Some(&nan)) {
        Err(Error::Numerical(exactflow_kernels::Error::NonFinite { index, .. })) => assert_eq!(index, (7, 1)),
        other => panic!("expected NonFinite naming row 7, got {other:?}"),
    }
    let mut broken = loaded.flow;
    broken.visit_params_mut("", &mut |name, p| {
        if name == "embedding.1.bias" {
            p.value.as_mut_slice()[0] = f64::INFINITY;
        }
    });
    let e = broken.log_prob(&x, Some(&c)).expect_err("refused").to_string();
    assert!(e.contains("embedding.1.bias"), "{e}");
}
