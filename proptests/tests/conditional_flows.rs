//! Conditional flows `p(x | c)`: the conditional MLP against central differences (dL/dx, dL/dc,
//! every parameter), and conditional RealNVP, MAF, IAF and NSF (coupling and autoregressive),
//! without and with a context embedding, as compositions on `Flow`
//! (`flow_harness::check_conditional_flow`: round trip, gradients with respect to the data, the
//! context and every parameter, the embedding's included, and the bad-context errors).
//!
//! Shapes: N in 1..=3, D in 2..=4, context width C in 1..=3, small conditioners (widths 3..=6,
//! tanh), parameters perturbed away from the identity initialization, contexts in [-2, 2].
//! Tolerances are `layer_harness`'s (`GRAD_F64` mixed error for every gradient, `ROUNDTRIP_F64`
//! for round trips): the context enters the first layer of the conditioner exactly as the data
//! do, so nothing in the composition is less well conditioned than the unconditional cases.

mod flow_harness;
mod layer_harness;

use exactflow_layers::Params;
use exactflow_layers::gradcheck::grad_check_net;
use exactflow_layers::nets::{Activation, Conditioner, Mlp, MlpConfig};
use exactflow_layers::{Ctx, MaskKind, SplineConfig, Tensor};
use exactflow_models::{
    ArPermutation, ContextEmbedding, GlowConfig, GlowCouplingKind, GlowPermutation, MafConfig, ModelConfig,
    MultiScaleRealNvpConfig, NsfConfig, RealNvpConfig, SplineLayer,
};
use flow_harness::{check_conditional_flow, flow_fail};
use layer_harness::{GRAD_F64, GRAD_STEP, batch, cases, fail, perturb, values};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One case: batch, dimension, context width, hidden width, values and seed.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    d: usize,
    cw: usize,
    hidden: usize,
    x: Vec<f64>,
    c: Vec<f64>,
    w: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

impl Case {
    fn x(&self) -> Tensor<f64> {
        batch(self.n, &[self.d], self.x.clone())
    }

    fn c(&self) -> Tensor<f64> {
        batch(self.n, &[self.cw], self.c.clone())
    }
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=3, 2usize..=4, 1usize..=3, 3usize..=6, any::<u64>()).prop_flat_map(|(n, d, cw, hidden, seed)| {
        (
            values(n * d, 1.5),
            values(n * cw, 2.0),
            values(n, 1.0),
            values(4096, 1.0),
        )
            .prop_map(move |(x, c, w, delta)| Case {
                n,
                d,
                cw,
                hidden,
                x,
                c,
                w,
                delta,
                seed,
            })
    })
}

/// Small conditional RealNVP, MAF, IAF and NSF models (both spline layers) of context width C.
fn conditional_configs(c: &Case) -> Vec<ModelConfig> {
    let hidden = vec![c.hidden];
    let maf = MafConfig {
        dim: c.d,
        layers: 2,
        hidden: hidden.clone(),
        residual_blocks: 0,
        activation: Activation::Tanh,
        permutation: ArPermutation::Alternate,
        logit_alpha: None,
        seed: c.seed,
        context_dim: c.cw,
        context_embedding: None,
    };
    let nsf = |transform| NsfConfig {
        dim: c.d,
        layers: 2,
        transform,
        hidden: hidden.clone(),
        activation: Activation::Tanh,
        spline: SplineConfig::new(4, 2.0).expect("spline"),
        mask: MaskKind::Halves,
        logit_alpha: None,
        seed: c.seed,
        context_dim: c.cw,
        context_embedding: None,
    };
    vec![
        ModelConfig::RealNvp(RealNvpConfig {
            dim: c.d,
            couplings: 2,
            hidden: hidden.clone(),
            activation: Activation::Tanh,
            mask: MaskKind::Halves,
            batch_norm: false,
            logit_alpha: None,
            seed: c.seed,
            context_dim: c.cw,
            context_embedding: None,
        }),
        ModelConfig::Maf(maf.clone()),
        ModelConfig::Iaf(maf),
        ModelConfig::Nsf(nsf(SplineLayer::Coupling)),
        ModelConfig::Nsf(nsf(SplineLayer::Autoregressive)),
    ]
}

/// The models of [`conditional_configs`], each with a context embedding `C -> [hidden] -> E`
/// (E in 1..=3, from the seed: narrower, as wide as or wider than C).
fn embedded_configs(c: &Case) -> Vec<ModelConfig> {
    let embedding = ContextEmbedding {
        hidden: vec![c.hidden],
        dim: 1 + (c.seed % 3) as usize,
    };
    conditional_configs(c)
        .into_iter()
        .map(|mut cfg| {
            cfg.set_context_embedding(Some(embedding.clone()))
                .expect("conditional family");
            cfg
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    /// The conditional MLP's backward (input `[x, c]`) against central differences, and its
    /// refusal to run without a context.
    #[test]
    fn conditional_mlp_backward_matches_fd(c in case()) {
        let cfg = MlpConfig { hidden: vec![c.hidden], activation: Activation::Tanh, zero_last: false };
        let mut mlp = Mlp::<f64>::conditional(&cfg, c.d, c.cw, 3, &mut ChaCha8Rng::seed_from_u64(c.seed))
            .map_err(fail("mlp"))?;
        prop_assert_eq!(mlp.in_shape(), vec![c.d]);
        prop_assert_eq!(mlp.context_dim(), c.cw);
        let w = Tensor::from_fn(&[c.n, 3], |k| ((k as f64) * 0.37).cos()).expect("shape");
        let rep = grad_check_net(&mut mlp, &c.x(), Some(&c.c()), &w, GRAD_STEP, 64).map_err(fail("grad check"))?;
        let (name, err) = rep.worst();
        prop_assert!(err <= GRAD_F64, "conditional MLP gradient of {name}: {err:e}");
        prop_assert!(mlp.forward(&c.x(), Ctx::NONE).is_err(), "a conditional MLP ran without a context");
    }

    /// Conditional RealNVP, MAF, IAF and NSF: every law of `check_conditional_flow`.
    #[test]
    fn conditional_flows_compose(c in case()) {
        for cfg in conditional_configs(&c) {
            let mut flow = cfg.build::<f64>().map_err(flow_fail("build"))?;
            prop_assert_eq!(flow.context_dim(), c.cw);
            perturb(&mut flow, &c.delta, 0.3);
            check_conditional_flow(&mut flow, &c.x(), &c.c(), &c.w)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", cfg.family())))?;
        }
    }

    /// The same flows with a context embedding `e = E(c)`: every law of
    /// `check_conditional_flow`, so the gradients with respect to the raw context (through the
    /// embedding, summed over the stages) and to the embedding's parameters (`embedding.*`,
    /// visited with every other parameter) are checked against central differences.
    #[test]
    fn conditional_flows_with_an_embedding_compose(c in case()) {
        for cfg in embedded_configs(&c) {
            let mut flow = cfg.build::<f64>().map_err(flow_fail("build"))?;
            prop_assert_eq!(flow.context_dim(), c.cw);
            prop_assert!(flow.embedding().is_some());
            let mut names = Vec::new();
            flow.visit_params("", &mut |n, _| names.push(n.to_string()));
            prop_assert!(names.iter().any(|n| n == "embedding.0.weight"), "{names:?}");
            perturb(&mut flow, &c.delta, 0.3);
            check_conditional_flow(&mut flow, &c.x(), &c.c(), &c.w)
                .map_err(|e| TestCaseError::fail(format!("{} with an embedding: {e}", cfg.family())))?;
        }
    }
}

/// The context changes the density: a conditional flow whose context weights are not zero gives
/// different log-densities at the same `x` under two contexts (the context is read).
#[test]
fn the_context_is_read() {
    let c = Case {
        n: 2,
        d: 2,
        cw: 2,
        hidden: 4,
        x: vec![0.3, -0.2, 0.3, -0.2],
        c: vec![0.5, 1.0, -1.0, 0.25],
        w: vec![1.0, 1.0],
        delta: (0..4096).map(|k| ((k as f64) * 0.61).sin()).collect(),
        seed: 3,
    };
    for cfg in conditional_configs(&c).into_iter().chain(embedded_configs(&c)) {
        let mut flow = cfg.build::<f64>().expect("build");
        perturb(&mut flow, &c.delta, 0.3);
        let lp = flow.log_prob(&c.x(), Some(&c.c())).expect("log_prob");
        assert!(
            (lp[0] - lp[1]).abs() > 1e-6,
            "{}: the same x under two contexts scored {lp:?}",
            cfg.family()
        );
    }
}

/// One conditional image case: batch, context width, image, context, weights and seed.
#[derive(Clone, Debug)]
struct ImageCase {
    n: usize,
    cw: usize,
    x: Vec<f64>,
    c: Vec<f64>,
    w: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

/// Images `[1, 4, 4]` in (0, 1) (the multi-scale model's logit needs them there).
const IMAGE: [usize; 3] = [1, 4, 4];

fn image_case() -> impl Strategy<Value = ImageCase> {
    (1usize..=2, 1usize..=3, any::<u64>()).prop_flat_map(|(n, cw, seed)| {
        (
            proptest::collection::vec(0.05f64..0.95, n * 16),
            values(n * cw, 2.0),
            values(n, 1.0),
            values(4096, 1.0),
        )
            .prop_map(move |(x, c, w, delta)| ImageCase {
                n,
                cw,
                x,
                c,
                w,
                delta,
                seed,
            })
    })
}

/// Small conditional image models of context width C: multi-scale RealNVP (2 scales, ResNet
/// conditioners reading the context as constant channels) and Glow (2 levels, affine and
/// additive couplings, `V c` in the first convolution), without batch norm, whose batch
/// statistics would make the loss couple the samples.
fn conditional_image_configs(c: &ImageCase) -> Vec<ModelConfig> {
    let glow = |coupling| {
        ModelConfig::Glow(GlowConfig {
            shape: IMAGE,
            levels: 2,
            steps: 1,
            hidden: 3,
            coupling,
            permutation: GlowPermutation::LuConv,
            seed: c.seed,
            context_dim: c.cw,
        })
    };
    vec![
        ModelConfig::MultiScaleRealNvp(MultiScaleRealNvpConfig {
            shape: IMAGE,
            scales: 2,
            blocks: 1,
            features: 2,
            batch_norm: false,
            logit_alpha: Some(0.05),
            seed: c.seed,
            context_dim: c.cw,
        }),
        glow(GlowCouplingKind::Affine),
        glow(GlowCouplingKind::Additive),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(6)))]

    /// Conditional multi-scale RealNVP and Glow: every law of `check_conditional_flow` (round
    /// trip, dL/dx, dL/dc and every parameter against central differences, the bad contexts).
    /// Glow's ActNorm layers are marked initialized (the identity, then perturbed like every
    /// parameter), so that no checked pass runs the data-dependent initialization, whose scale
    /// `1 / std` a batch of one nearly constant image would make arbitrarily large.
    #[test]
    fn conditional_image_flows_compose(c in image_case()) {
        let x = batch(c.n, &IMAGE, c.x.clone());
        let ctx = batch(c.n, &[c.cw], c.c.clone());
        for cfg in conditional_image_configs(&c) {
            let mut flow = cfg.build::<f64>().map_err(flow_fail("build"))?;
            prop_assert_eq!(flow.context_dim(), c.cw);
            flow.visit_int_mut("", &mut |name, b| {
                if name.ends_with("initialized") {
                    b.set(vec![1]).expect("a flag");
                }
            });
            perturb(&mut flow, &c.delta, 0.1);
            check_conditional_flow(&mut flow, &x, &ctx, &c.w)
                .map_err(|e| TestCaseError::fail(format!("{cfg:?}: {e}")))?;
        }
    }
}
