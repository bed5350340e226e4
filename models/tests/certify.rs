//! Certified evaluation of trained flows: the documented width of the moons RealNVP, and
//! undecided branches reported per sample with their operation and stage.

use exactflow_layers::{Params, Tensor};
use exactflow_models::certify::{Certified, certify_dataset, certify_log_prob, summarize};
use exactflow_models::data::DataSpec;
use exactflow_models::realnvp::preset;
use exactflow_models::train::{Silent, TrainConfig, train};
use exactflow_models::{ModelConfig, RealNvpConfig, evaluate};

/// The documented widths of the moons RealNVP (README "Certified evaluation", BENCHMARKS.md):
/// the `toy` preset (8 affine couplings, MLPs 128-128, seed 0) after 200 Adam steps (batch 256),
/// certified on the first 1000 points of the moons test split (toy samples 4000, data seed 0):
/// every sample certified, median relative width at most 5e-9 (measured 1.1e-9), largest at most
/// 1e-5 (measured 1.5e-7; a log-likelihood near 0 has a large relative width).
const MOONS_MEDIAN_WIDTH: f64 = 5e-9;
const MOONS_MAX_WIDTH: f64 = 1e-5;

#[test]
fn moons_realnvp_is_certified_within_the_documented_width() {
    let splits = "moons".parse::<DataSpec>().expect("spec").load(0, 4000).expect("data");
    let model = ModelConfig::RealNvp(preset("toy", 2, 0).expect("preset"));
    let mut flow = model.build::<f64>().expect("flow");
    let cfg = TrainConfig {
        steps: Some(200),
        batch_size: 256,
        seed: 0,
        ..TrainConfig::default()
    };
    train(&mut flow, &model, &cfg, &splits.train, None, &mut Silent, None).expect("training");
    let test = splits.test.subset(&(0..1000).collect::<Vec<_>>()).expect("subset");
    let ev = evaluate(&flow, &test, 1024).expect("f64 eval");
    let samples = certify_dataset(&flow, &test, 256, &mut |_| {}).expect("certified eval");
    let s = summarize(&samples);
    println!(
        "moons RealNVP, 200 steps: median relative width {:e}, largest {:e}",
        s.median_relative_width, s.max_relative_width
    );
    assert_eq!(s.certified, 1000, "{:?}", s.uncertified);
    for (c, &f) in samples.iter().zip(&ev.log_likelihood) {
        let i = c.log_likelihood.enclosure().expect("certified");
        assert!(i.contains(f), "{i:?} misses the f64 value {f}");
    }
    assert!(
        s.median_relative_width <= MOONS_MEDIAN_WIDTH,
        "median relative width {:e} exceeds the documented {MOONS_MEDIAN_WIDTH:e}",
        s.median_relative_width
    );
    assert!(
        s.max_relative_width <= MOONS_MAX_WIDTH,
        "largest relative width {:e} exceeds the documented {MOONS_MAX_WIDTH:e}",
        s.max_relative_width
    );
}

/// A coupling whose one hidden ReLU sees exactly `x_A - 1/2`: at `x_A = 1/2` the enclosure of its
/// input straddles 0 (the product's error bound is not 0), so the ReLU's `>=` is undecided and
/// that sample is reported as such, naming the operation and the stage; other samples of the
/// same batch stay certified.
#[test]
fn a_relu_at_its_kink_leaves_the_sample_undecided_naming_the_stage() {
    let model = ModelConfig::RealNvp(RealNvpConfig {
        dim: 2,
        couplings: 1,
        hidden: vec![1],
        activation: exactflow_layers::nets::Activation::Relu,
        mask: exactflow_layers::MaskKind::Halves,
        batch_norm: false,
        logit_alpha: None,
        seed: 1,
        context_dim: 0,
        context_embedding: None,
    });
    let mut flow = model.build::<f64>().expect("flow");
    flow.visit_params_mut("", &mut |name, p| {
        let v: &[f64] = match name {
            "flow.0.net.0.weight" => &[1.0],
            "flow.0.net.0.bias" => &[-0.5],
            "flow.0.net.1.weight" => &[0.75, 0.25],
            "flow.0.net.1.bias" => &[0.0, 0.0],
            _ => return,
        };
        p.value.as_mut_slice().copy_from_slice(v);
    });
    let x = Tensor::new(&[3, 2], vec![0.9, 0.1, 0.5, 0.3, 0.25, -0.2]).expect("batch");
    let c = certify_log_prob(&flow.to_interval(), &x, None).expect("certify");
    assert!(matches!(c[0], Certified::Enclosed(_)), "{:?}", c[0]);
    assert!(matches!(c[2], Certified::Enclosed(_)), "{:?}", c[2]);
    match &c[1] {
        Certified::Undecided { decisions, .. } => {
            let u = &decisions.first[0];
            assert_eq!(u.op, ">=");
            assert_eq!(u.scope.as_deref(), Some("flow.0 (AffineCoupling)"));
            let reason = c[1].reason().expect("a reason");
            assert!(reason.contains(">=") && reason.contains("flow.0"), "{reason}");
        }
        other => panic!("expected an undecided sample, found {other:?}"),
    }
    let lp = flow.log_prob(&x, None).expect("f64");
    for k in [0, 2] {
        assert!(c[k].enclosure().expect("certified").contains(lp[k]));
    }
}
