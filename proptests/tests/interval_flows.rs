//! Certified log-likelihoods of random flows of every family against a double-double evaluation.
//!
//! For NICE, vector RealNVP (with batch norm), multi-scale RealNVP, Glow (affine couplings with
//! LU 1x1 convolutions; additive couplings with a shuffle), MAF, IAF (its forward is the
//! D-pass solve, enclosed pass by pass), neural spline flows (coupling and autoregressive
//! splines, whose bin search and tails branch on intervals) and a flow with a dense 1x1
//! convolution: random parameters (each family's initialization, one training pass for ActNorm
//! and batch norm, then every trainable parameter perturbed so that zero-initialized layers do
//! something), random inputs in (0, 1). The same flow is built for the double-double scalar from
//! its config and given the f64 parameters exactly. Every certified enclosure must contain the
//! double-double `log p(x)` (accurate to about 1e-28, far inside any width) and the f64 one.
//! A deliberately wrong matrix product (no rounding-error term) is caught by the same
//! containment check on a conditioner's outputs.

mod common;

use std::collections::HashMap;

use common::dd::Dd;
use exactflow_kernels::interval::fault::{self, Fault};
use exactflow_kernels::{Interval, Real};
use exactflow_layers::nets::{Activation, MlpConfig};
use exactflow_layers::{
    AffineCoupling, Conv1x1, Mask, MaskKind, ParamKind, Params, SplineConfig, StandardNormal, Tensor, layer,
};
use exactflow_models::config::{
    ArPermutation, GlowConfig, GlowCouplingKind, GlowPermutation, MafConfig, MultiScaleRealNvpConfig, NiceConfig,
    NsfConfig, Prior, RealNvpConfig, SplineLayer,
};
use exactflow_models::{Certified, Flow, ModelConfig, TrainMode, certify_log_prob};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn configs(seed: u64) -> Vec<ModelConfig> {
    vec![
        ModelConfig::Nice(NiceConfig {
            dim: 4,
            couplings: 4,
            hidden: vec![8, 8],
            activation: Activation::Relu,
            mask: MaskKind::OddEven,
            prior: Prior::Logistic,
            logit_alpha: Some(0.05),
            seed,
        }),
        ModelConfig::RealNvp(RealNvpConfig {
            dim: 4,
            couplings: 4,
            hidden: vec![8, 8],
            activation: Activation::Relu,
            mask: MaskKind::Halves,
            batch_norm: true,
            logit_alpha: None,
            seed,
            context_dim: 0,
            context_embedding: None,
        }),
        ModelConfig::MultiScaleRealNvp(MultiScaleRealNvpConfig {
            shape: [1, 4, 4],
            scales: 2,
            blocks: 1,
            features: 4,
            batch_norm: true,
            logit_alpha: Some(0.05),
            seed,
            context_dim: 0,
        }),
        ModelConfig::Glow(GlowConfig {
            shape: [1, 4, 4],
            levels: 2,
            steps: 2,
            hidden: 8,
            coupling: GlowCouplingKind::Affine,
            permutation: GlowPermutation::LuConv,
            seed,
            context_dim: 0,
        }),
        ModelConfig::Glow(GlowConfig {
            shape: [1, 4, 4],
            levels: 2,
            steps: 2,
            hidden: 8,
            coupling: GlowCouplingKind::Additive,
            permutation: GlowPermutation::Shuffle,
            seed,
            context_dim: 0,
        }),
        ModelConfig::Maf(maf(seed)),
        ModelConfig::Iaf(maf(seed)),
        ModelConfig::Nsf(nsf(SplineLayer::Coupling, seed)),
        ModelConfig::Nsf(nsf(SplineLayer::Autoregressive, seed)),
    ]
}

/// A small MAF (or IAF): residual MADEs, alternating permutations, logit preprocessing.
fn maf(seed: u64) -> MafConfig {
    MafConfig {
        dim: 3,
        layers: 3,
        hidden: vec![8, 8],
        residual_blocks: 1,
        activation: Activation::Relu,
        permutation: ArPermutation::Alternate,
        logit_alpha: Some(0.05),
        context_dim: 0,
        context_embedding: None,
        seed,
    }
}

/// A small neural spline flow (LU linear layers and splines of 4 bins on [-2, 2]), its
/// splines conditioned by couplings or MADEs.
fn nsf(transform: SplineLayer, seed: u64) -> NsfConfig {
    NsfConfig {
        dim: 3,
        layers: 3,
        transform,
        hidden: vec![8],
        activation: Activation::Tanh,
        spline: SplineConfig::new(4, 2.0).expect("spline"),
        mask: MaskKind::Halves,
        logit_alpha: Some(0.05),
        context_dim: 0,
        context_embedding: None,
        seed,
    }
}

/// A vector flow mixing with a dense 1x1 convolution (whose log-det the interval flow certifies
/// by `certify_log_det`) between affine couplings.
fn dense_conv_flow<T: Real>(seed: u64) -> Flow<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mlp = MlpConfig {
        hidden: vec![8],
        activation: Activation::Tanh,
        zero_last: false,
    };
    let stages = vec![
        layer(Conv1x1::<T>::new(&[3], &mut rng).expect("conv")),
        layer(AffineCoupling::<T>::with_mlp(3, Mask::new(MaskKind::Halves, false), &mlp, &mut rng).expect("coupling")),
        layer(Conv1x1::<T>::new(&[3], &mut rng).expect("conv")),
        layer(AffineCoupling::<T>::with_mlp(3, Mask::new(MaskKind::Halves, true), &mlp, &mut rng).expect("coupling")),
    ];
    Flow::new(stages, Box::new(StandardNormal), &[3]).expect("flow")
}

/// Copies every parameter and integer buffer of `from` into `to` by name, exactly.
fn copy_into<T: Real>(from: &Flow<f64>, to: &mut Flow<T>) {
    let mut values = HashMap::new();
    from.visit_params("", &mut |name, p| {
        values.insert(name.to_string(), p.value.as_slice().to_vec());
    });
    let mut ints = HashMap::new();
    from.visit_int("", &mut |name, b| {
        ints.insert(name.to_string(), b.clone());
    });
    to.visit_params_mut("", &mut |name, p| {
        let v = values.get(name).unwrap_or_else(|| panic!("no parameter {name}"));
        p.value
            .as_mut_slice()
            .iter_mut()
            .zip(v)
            .for_each(|(a, &b)| *a = T::lit(b));
    });
    to.visit_int_mut("", &mut |name, b| {
        *b = ints.get(name).unwrap_or_else(|| panic!("no buffer {name}")).clone();
    });
}

/// Inputs in (0.05, 0.95) of the flow's sample shape.
fn inputs(shape: &[usize], n: usize, rng: &mut ChaCha8Rng) -> Tensor<f64> {
    let mut s = vec![n];
    s.extend_from_slice(shape);
    Tensor::from_fn(&s, |_| rng.random_range(0.05..0.95)).expect("inputs")
}

/// One training pass (ActNorm's initialization, batch norm's running statistics), then every
/// trainable parameter moved by up to `spread`.
fn randomize(flow: &mut Flow<f64>, shape: &[usize], rng: &mut ChaCha8Rng, spread: f64) {
    let x = inputs(shape, 16, rng);
    flow.forward_train(&x, None, TrainMode::Cached).expect("training pass");
    flow.visit_params_mut("", &mut |_, p| {
        if p.kind == ParamKind::Trainable {
            p.value
                .as_mut_slice()
                .iter_mut()
                .for_each(|v| *v += rng.random_range(-spread..spread));
        }
    });
}

/// The f64 flow and its double-double twin, for every family.
fn flows(seed: u64) -> Vec<(String, Flow<f64>, Flow<Dd>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut out = Vec::new();
    for c in configs(seed) {
        let mut f = c.build::<f64>().expect("f64 flow");
        randomize(&mut f, &c.data_shape(), &mut rng, 0.3);
        let mut d = c.build::<Dd>().expect("dd flow");
        copy_into(&f, &mut d);
        out.push((format!("{c:?}").chars().take(40).collect(), f, d));
    }
    let mut f = dense_conv_flow::<f64>(seed);
    randomize(&mut f, &[3], &mut rng, 0.3);
    let mut d = dense_conv_flow::<Dd>(seed);
    copy_into(&f, &mut d);
    out.push(("dense 1x1 convolution".to_string(), f, d));
    out
}

/// Samples whose certified enclosure misses the double-double (or, with `f64`, the f64)
/// log p, and the number certified.
fn misses(f: &Flow<f64>, d: &Flow<Dd>, x: &Tensor<f64>, check_f64: bool) -> (Vec<String>, usize) {
    let cert = certify_log_prob(&f.to_interval(), x, None).expect("certify");
    let reference = d.log_prob(&x.cast::<Dd>(), None).expect("dd log p");
    let plain = f.log_prob(x, None).expect("f64 log p");
    let mut bad = Vec::new();
    let mut certified = 0;
    for (k, c) in cert.iter().enumerate() {
        if let Certified::Enclosed(i) = c {
            certified += 1;
            if !reference[k].within(i.lo(), i.hi()) {
                bad.push(format!(
                    "sample {k}: {i:?} misses the double-double {}",
                    reference[k].to_f64()
                ));
            }
            if check_f64 && !i.contains(plain[k]) {
                bad.push(format!("sample {k}: {i:?} misses the f64 {}", plain[k]));
            }
        }
    }
    (bad, certified)
}

proptest! {
    #![proptest_config(common::config(16))]

    #[test]
    fn certified_log_likelihoods_contain_the_double_double_and_f64_values(seed in 0u64..1_000_000) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for (name, f, d) in flows(seed) {
            let x = inputs(f.data_shape(), 6, &mut rng);
            let (bad, certified) = misses(&f, &d, &x, true);
            prop_assert!(bad.is_empty(), "{name}: {bad:?}");
            prop_assert!(certified >= 5, "{name}: only {certified} of 6 samples certified");
        }
    }
}

/// The conditioners' matrix products checked the same way, entry by entry: a linear layer of
/// inner dimension 256 on point inputs encloses every double-double output, and the same layer
/// with its products stripped of their rounding-error term (a point midpoint product, rounded to
/// nearest) misses many of them. The flows above run these very products, so the check of their
/// log-likelihoods stands on the same containment.
#[test]
fn conditioner_products_without_their_error_term_are_caught() {
    use exactflow_kernels::gemm::Parallelism;
    use exactflow_layers::nets::Linear;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (k, out, n) = (256, 16, 8);
    let lin = Linear::<f64>::new(k, out, false, &mut rng).expect("linear");
    let x: Vec<f64> = (0..n * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let reference = lin
        .cast::<Dd>()
        .forward_rows(
            &x.iter().map(|&v| Dd::new(v)).collect::<Vec<_>>(),
            n,
            Parallelism::Sequential,
        )
        .expect("dd");
    let xi: Vec<Interval> = x.iter().map(|&v| Interval::point(v)).collect();
    let li = lin.cast::<Interval>();
    let count_misses = || {
        let y = li.forward_rows(&xi, n, Parallelism::Sequential).expect("interval");
        y.iter()
            .zip(&reference)
            .filter(|(i, r)| !r.within(i.lo(), i.hi()))
            .count()
    };
    assert_eq!(count_misses(), 0, "the correct products must enclose every output");
    let caught = fault::with(Fault::NoProductError, count_misses);
    assert!(
        caught > n * out / 10,
        "only {caught} of {} faulty outputs were caught",
        n * out
    );
}

#[test]
fn an_interval_flow_keeps_points_as_points() {
    let f = dense_conv_flow::<f64>(1);
    let fi: Flow<Interval> = f.to_interval();
    let mut n = 0;
    fi.visit_params("", &mut |_, p| {
        assert!(p.value.as_slice().iter().all(|v| v.is_point()));
        n += 1;
    });
    assert!(n > 0);
}
