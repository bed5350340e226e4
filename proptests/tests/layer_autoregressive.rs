//! MADE, the autoregressive layers (MAF and IAF directions, affine and spline), the spline
//! coupling and the LU linear layer on vectors, against every law of `layer_harness`; MADE's
//! masks against the exact Jacobian; MAF, IAF and neural spline flows as compositions on `Flow`
//! (`flow_harness`).
//!
//! Shapes: N in 1..=3, D in 1..=6 (2..=6 for couplings), small conditioners (widths 3..=10,
//! up to two residual blocks), splines with 1..=6 bins on `[-B, B]`, B in [1, 3], and inputs in
//! `[-1.5 B, 1.5 B]` so that every batch has elements in the tails. Parameters are perturbed
//! away from the identity initialization. Tolerances are `layer_harness`'s (see its module
//! documentation); besides:
//! - MADE's Jacobian: the entries that the ordering forbids are **exactly** zero on dual numbers
//!   (`d out_{p D + i} / d x_j = 0` for `j >= i`), and, with a smooth activation and every
//!   degree present, the allowed ones are non-zero: the masks are neither too loose nor empty.
//! - MADE's backward (with and without a context) against central differences: `GRAD_F64`.

mod flow_harness;
mod layer_harness;

use exactflow_kernels::F1;
use exactflow_layers::autoregressive::{AffineAutoregressive, Direction, SplineAutoregressive};
use exactflow_layers::gradcheck::grad_check_net;
use exactflow_layers::jacobian::jacobian_dual;
use exactflow_layers::nets::{Activation, Conditioner, Made, MadeConfig, MlpConfig};
use exactflow_layers::{Conv1x1Lu, Ctx, Mask, MaskKind, SplineConfig, SplineCoupling, Tensor};
use exactflow_models::{ArPermutation, MafConfig, ModelConfig, NsfConfig, SplineLayer};
use flow_harness::{check_flow_errors, check_flow_f32, check_flow_laws, copy_params_to_f32, flow_fail};
use layer_harness::{GRAD_F64, GRAD_STEP, batch, cases, check_errors, check_f32, check_laws, fail, perturb, values};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The perturbation of the spline layers' conditioners (which have a tanh hidden layer): their
/// outputs (the unnormalized widths, heights and derivatives) then stay within a few units, so the bins' slope ratios stay
/// within the `layer_harness` assumption of an amplification of rounding by at most ~1e2
/// (`F32_TOL`). Ill-conditioned bins, with parameters out to +-12 and bins at the minimum
/// width, are `layer_spline`'s cases, with tolerances that grow with the bins' conditioning.
const SPLINE_PERTURBATION: f64 = 0.25;

/// One case: batch, dimension, conditioner shape, spline shape, values and seed.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    d: usize,
    hidden: Vec<usize>,
    blocks: usize,
    bins: usize,
    bound: f64,
    x: Vec<f64>,
    wz: Vec<f64>,
    wld: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

impl Case {
    /// The input, in `[-1.5 B, 1.5 B]`.
    fn x(&self) -> Tensor<f64> {
        batch(self.n, &[self.d], self.x.iter().map(|v| 1.5 * self.bound * v).collect())
    }

    fn made(&self, activation: Activation) -> MadeConfig {
        MadeConfig {
            hidden: self.hidden.clone(),
            residual_blocks: if self.hidden.is_empty() { 0 } else { self.blocks },
            activation,
            zero_last: false,
        }
    }

    /// The conditioner widths of the spline layers: at least one (tanh) hidden layer, so that
    /// the spline parameters stay bounded whatever the input (a linear conditioner's grow with
    /// `|x|` up to 1.5 B).
    fn spline_hidden(&self) -> Vec<usize> {
        if self.hidden.is_empty() {
            vec![self.d.max(3)]
        } else {
            self.hidden.clone()
        }
    }

    fn spline_made(&self) -> MadeConfig {
        MadeConfig {
            hidden: self.spline_hidden(),
            ..self.made(Activation::Tanh)
        }
    }

    fn spline(&self) -> SplineConfig {
        SplineConfig::new(self.bins, self.bound).expect("valid")
    }

    fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed)
    }
}

fn case(d: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Case> {
    (
        1usize..=3,
        d,
        prop_oneof![Just(0usize), Just(1), Just(2)],
        3usize..=10,
        0usize..=2,
        1usize..=6,
        1.0f64..3.0,
        any::<u64>(),
    )
        .prop_flat_map(|(n, d, layers, width, blocks, bins, bound, seed)| {
            (values(n * d, 1.0), values(n * d, 1.0), values(n, 1.0), values(17, 0.5)).prop_map(
                move |(x, wz, wld, delta)| Case {
                    n,
                    d,
                    hidden: vec![width.max(d); layers],
                    blocks,
                    bins,
                    bound,
                    x,
                    wz,
                    wld,
                    delta,
                    seed,
                },
            )
        })
}

/// MADE's exact Jacobian: zero where the ordering forbids a dependence (exactly), non-zero
/// elsewhere. Every weight, masked ones included, is perturbed first: the masks must act at
/// every pass, not only at initialization.
fn check_made_triangular(c: &Case, parts: usize) -> Result<(), TestCaseError> {
    let mut made = Made::<f64>::new(&c.made(Activation::Tanh), c.d, parts, 0, &mut c.rng()).map_err(fail("made"))?;
    perturb(&mut made, &c.delta, 1.0);
    let dual: Made<F1> = made.cast();
    let jac = jacobian_dual(|t| dual.forward(t, Ctx::NONE), &c.x()).map_err(fail("dual Jacobian"))?;
    for (s, j) in jac.iter().enumerate() {
        for p in 0..parts {
            for i in 0..c.d {
                for jj in 0..c.d {
                    let v = j[(p * c.d + i, jj)];
                    if jj >= i {
                        prop_assert!(v == 0.0, "sample {s}: d out[{p}, {i}] / d x[{jj}] = {v}, must be 0");
                    } else {
                        prop_assert!(
                            v != 0.0,
                            "sample {s}: d out[{p}, {i}] / d x[{jj}] is 0: a mask is too strict"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    #[test]
    fn made_jacobian_is_strictly_lower_triangular(c in case(1..=7), parts in 1usize..=3) {
        check_made_triangular(&c, parts)?;
    }

    #[test]
    fn made_backward_matches_fd_with_and_without_context(c in case(1..=6), parts in 1usize..=3, cw in 1usize..=3) {
        for (context_dim, activation) in [(0, Activation::Relu), (cw, Activation::Tanh)] {
            let mut made = Made::<f64>::new(&c.made(activation), c.d, parts, context_dim, &mut c.rng())
                .map_err(fail("made"))?;
            perturb(&mut made, &c.delta, 0.5);
            let ctx = (context_dim > 0).then(|| {
                Tensor::from_fn(&[c.n, context_dim], |k| ((k as f64) * 0.7).sin()).expect("shape")
            });
            let w = Tensor::from_fn(&[c.n, parts * c.d], |k| c.wz[k % c.wz.len()] + 0.1).expect("shape");
            let rep = grad_check_net(&mut made, &c.x(), ctx.as_ref(), &w, GRAD_STEP, 64).map_err(fail("grad check"))?;
            let (name, err) = rep.worst();
            prop_assert!(err <= GRAD_F64, "MADE (context {context_dim}) gradient of {name}: {err:e}");
            if context_dim > 0 {
                prop_assert!(made.forward(&c.x(), Ctx::NONE).is_err(), "a conditional MADE ran without a context");
            }
        }
    }

    #[test]
    fn affine_autoregressive_laws_maf_and_iaf(c in case(1..=6)) {
        for direction in [Direction::Maf, Direction::Iaf] {
            let mut layer = AffineAutoregressive::<f64>::affine(c.d, &c.made(Activation::Relu), direction, &mut c.rng())
                .map_err(fail("layer"))?;
            perturb(&mut layer, &c.delta, 0.5);
            check_laws(&mut layer, &c.x(), &c.wz, &c.wld)?;
            let l32 = layer.cast::<f32>();
            check_f32(&l32, &c.x())?;
            check_errors(&mut layer, &c.x())?;
        }
    }

    #[test]
    fn spline_autoregressive_laws_maf_and_iaf(c in case(1..=5)) {
        for direction in [Direction::Maf, Direction::Iaf] {
            let mut layer = SplineAutoregressive::<f64>::spline(c.d, c.spline(), &c.spline_made(), direction, &mut c.rng())
                .map_err(fail("layer"))?;
            perturb(&mut layer, &c.delta, SPLINE_PERTURBATION);
            check_laws(&mut layer, &c.x(), &c.wz, &c.wld)?;
            check_f32(&layer.cast::<f32>(), &c.x())?;
            check_errors(&mut layer, &c.x())?;
        }
    }

    #[test]
    fn spline_coupling_laws(c in case(2..=6), odd_even in any::<bool>(), flip in any::<bool>()) {
        let kind = if odd_even { MaskKind::OddEven } else { MaskKind::Halves };
        let mlp = MlpConfig { hidden: c.spline_hidden(), activation: Activation::Tanh, zero_last: false };
        let mut layer = SplineCoupling::<f64>::with_mlp(c.d, Mask::new(kind, flip), c.spline(), &mlp, &mut c.rng())
            .map_err(fail("layer"))?;
        perturb(&mut layer, &c.delta, SPLINE_PERTURBATION);
        check_laws(&mut layer, &c.x(), &c.wz, &c.wld)?;
        let mut l32 = SplineCoupling::<f32>::with_mlp(c.d, Mask::new(kind, flip), c.spline(), &mlp, &mut c.rng())
            .map_err(fail("layer"))?;
        perturb(&mut l32, &c.delta, SPLINE_PERTURBATION);
        check_f32(&l32, &c.x())?;
        check_errors(&mut layer, &c.x())?;
    }

    #[test]
    fn lu_linear_on_vectors_laws(c in case(1..=6)) {
        let mut layer = Conv1x1Lu::<f64>::new(&[c.d], &mut c.rng()).map_err(fail("layer"))?;
        perturb(&mut layer, &c.delta, 0.3);
        check_laws(&mut layer, &c.x(), &c.wz, &c.wld)?;
        check_errors(&mut layer, &c.x())?;
    }
}

/// Small MAF, IAF and neural spline flows (with permutations and LU linear layers between the
/// autoregressive and spline layers) as compositions.
fn small_configs(c: &Case) -> Vec<ModelConfig> {
    let maf = MafConfig {
        dim: c.d,
        layers: 2,
        hidden: c.hidden.clone(),
        residual_blocks: if c.hidden.is_empty() { 0 } else { c.blocks },
        activation: Activation::Tanh,
        permutation: ArPermutation::Alternate,
        logit_alpha: None,
        seed: c.seed,
        context_dim: 0,
        context_embedding: None,
    };
    let nsf = |transform| NsfConfig {
        dim: c.d,
        layers: 2,
        transform,
        hidden: c.hidden.clone(),
        activation: Activation::Tanh,
        spline: c.spline(),
        mask: MaskKind::Halves,
        logit_alpha: None,
        seed: c.seed,
        context_dim: 0,
        context_embedding: None,
    };
    let mut v = vec![
        ModelConfig::Maf(maf.clone()),
        ModelConfig::Iaf(maf),
        ModelConfig::Nsf(nsf(SplineLayer::Autoregressive)),
    ];
    if c.d >= 2 {
        v.push(ModelConfig::Nsf(nsf(SplineLayer::Coupling)));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(12)))]

    #[test]
    fn maf_iaf_and_nsf_flows_compose(c in case(1..=4)) {
        for cfg in small_configs(&c) {
            let mut flow = cfg.build::<f64>().map_err(flow_fail("build"))?;
            perturb(&mut flow, &c.delta, 0.4);
            check_flow_laws(&mut flow, &c.x(), &c.wld)
                .map_err(|e| TestCaseError::fail(format!("{}: {e}", cfg.family())))?;
            let mut flow32 = cfg.build::<f32>().map_err(flow_fail("build f32"))?;
            copy_params_to_f32(&flow, &mut flow32);
            check_flow_f32(&flow32, &flow, &c.x())?;
            check_flow_errors(&mut flow, &c.x())?;
        }
    }
}
