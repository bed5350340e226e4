//! The vector-data layers (NICE's additive, RealNVP's affine and Glow's affine couplings with MLP
//! conditioners, under every mask) and their composition in a `Sequential`, against every law of
//! `layer_harness`; and the base distributions against their own laws.
//!
//! Shapes: N in 1..=3, D in 2..=12, MLPs of one or two hidden layers of width 1..=8 with every
//! activation. Parameters are perturbed away from their initialization so that zero-initialized
//! last layers do not make the couplings the identity. Layer tolerances are `layer_harness`'s.
//! Distribution tolerances, and why:
//! - `log_prob` against its closed form evaluated independently: 1e-12 relative to `1 + |log p|`
//!   (a sum of D <= 12 terms, each a few operations in f64);
//! - normalization: the trapezoid rule over [-40, 40] with 40001 points integrates each
//!   one-dimensional density to 1 within 1e-7 (the densities are smooth; the rule's error is
//!   O(h^2 max|p''|) = 1e-6 * 0.4 / 12 and the tails beyond 40 standard units are below 1e-17);
//! - `backward` against the exact dual-number derivative: 1e-12 mixed error, and against central
//!   differences (h = 1e-5): `GRAD_F64`;
//! - sampling statistics over 20000 draws: the sample mean within 5 standard errors of the mean,
//!   the sample standard deviation within 5 % of `temperature * std` (its standard error is
//!   0.5 % for a normal and 0.6 % for a logistic: the bound is 8 standard errors).

mod flow_harness;
mod layer_harness;

use exactflow_kernels::F1;
use exactflow_layers::coupling::{AdditiveCoupling, AffineCoupling, GlowCoupling};
use exactflow_layers::gradcheck::mixed_error;
use exactflow_layers::nets::{Activation, MlpConfig};
use exactflow_layers::{
    Bijector, Ctx, DiagonalGaussian, Distribution, Mask, MaskKind, Params, Permutation, Stage, StandardLogistic,
    StandardNormal, Tensor, layer,
};
use flow_harness::{check_flow_errors, check_flow_f32, check_flow_laws, copy_params_to_f32, flow_of};
use layer_harness::{GRAD_F64, batch, cases, check_errors, check_f32, check_laws, fail, perturb, values};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
struct Case {
    n: usize,
    d: usize,
    x: Vec<f64>,
    wz: Vec<f64>,
    wld: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
    mlp: MlpConfig,
    mask: Mask,
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        Just(Activation::LeakyRelu(0.1)),
        Just(Activation::Tanh),
        Just(Activation::Identity)
    ]
}

fn mask() -> impl Strategy<Value = Mask> {
    (
        prop_oneof![
            Just(MaskKind::Halves),
            Just(MaskKind::OddEven),
            Just(MaskKind::Checkerboard),
            Just(MaskKind::Channel)
        ],
        any::<bool>(),
    )
        .prop_map(|(k, f)| Mask::new(k, f))
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=3, 2usize..=12).prop_flat_map(|(n, d)| {
        (
            values(n * d, 2.0),
            values(n * d, 1.0),
            values(n, 1.0),
            values(7, 0.3),
            any::<u64>(),
            (
                proptest::collection::vec(1usize..=8, 1..=2),
                activation(),
                any::<bool>(),
            ),
            mask(),
        )
            .prop_map(
                move |(x, wz, wld, delta, seed, (hidden, activation, zero_last), mask)| Case {
                    n,
                    d,
                    x,
                    wz,
                    wld,
                    delta,
                    seed,
                    mlp: MlpConfig {
                        hidden,
                        activation,
                        zero_last,
                    },
                    mask,
                },
            )
    })
}

impl Case {
    fn x(&self) -> Tensor<f64> {
        batch(self.n, &[self.d], self.x.clone())
    }
    fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed)
    }
}

/// Every law in f64, the f32 copy, and the error cases, for a layer built by `build`.
fn check_layer<B>(case: &Case, build: B) -> Result<(), TestCaseError>
where
    B: Fn(&Case) -> exactflow_kernels::Result<(Box<dyn Bijector<f64>>, Box<dyn Bijector<f32>>)>,
{
    let (mut l64, _) = build(case).map_err(fail("build"))?;
    perturb(l64.as_mut(), &case.delta, 1.0);
    let x = case.x();
    check_laws(l64.as_mut(), &x, &case.wz, &case.wld)?;
    // The f32 layer with the perturbed parameters: copy them over by name.
    let (_, mut l32) = build(case).map_err(fail("build"))?;
    let mut values64 = Vec::new();
    l64.visit_params("", &mut |name, p| values64.push((name.to_string(), p.value.clone())));
    let mut k = 0;
    l32.visit_params_mut("", &mut |name, p| {
        if let Some((n64, v)) = values64.get(k) {
            assert_eq!(n64, name, "f32 and f64 layers list parameters in the same order");
            p.value
                .as_mut_slice()
                .iter_mut()
                .zip(v.as_slice())
                .for_each(|(a, b)| *a = *b as f32);
        }
        k += 1;
    });
    check_f32(l32.as_ref(), &x)?;
    check_errors(l64.as_mut(), &x)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(24)))]

    #[test]
    fn additive_coupling_mlp(case in case()) {
        check_layer(&case, |c| {
            let l64 = AdditiveCoupling::<f64>::with_mlp(c.d, c.mask, &c.mlp, &mut c.rng())?;
            let l32 = AdditiveCoupling::<f32>::with_mlp(c.d, c.mask, &c.mlp, &mut c.rng())?;
            Ok((Box::new(l64), Box::new(l32)))
        })?;
    }

    #[test]
    fn affine_coupling_mlp(case in case()) {
        check_layer(&case, |c| {
            let l64 = AffineCoupling::<f64>::with_mlp(c.d, c.mask, &c.mlp, &mut c.rng())?;
            let l32 = AffineCoupling::<f32>::with_mlp(c.d, c.mask, &c.mlp, &mut c.rng())?;
            Ok((Box::new(l64), Box::new(l32)))
        })?;
    }

    #[test]
    fn glow_coupling_mlp(case in case()) {
        check_layer(&case, |c| {
            let l64 = GlowCoupling::<f64>::with_mlp(c.d, c.mask, &c.mlp, &mut c.rng())?;
            let l32 = GlowCoupling::<f32>::with_mlp(c.d, c.mask, &c.mlp, &mut c.rng())?;
            Ok((Box::new(l64), Box::new(l32)))
        })?;
    }

    /// A RealNVP-like stack: couplings with alternating masks and a shuffle between them,
    /// composed by a flow. Its latent is the members' composition and its log-det the sum of
    /// theirs at the intermediate points; every law of the composition, the f32 copy and the
    /// error cases.
    #[test]
    fn flow_of_couplings(case in case()) {
        fn stack<T: exactflow_kernels::Real>(c: &Case) -> exactflow_kernels::Result<Vec<Box<dyn Stage<T>>>> {
            let mut rng = c.rng();
            let d = c.d;
            Ok(vec![
                layer(AffineCoupling::<T>::with_mlp(d, Mask::new(MaskKind::Halves, false), &c.mlp, &mut rng)?),
                layer(Permutation::<T>::shuffle(&[d], c.seed)?),
                layer(AdditiveCoupling::<T>::with_mlp(d, Mask::new(MaskKind::OddEven, true), &c.mlp, &mut rng)?),
                layer(GlowCoupling::<T>::with_mlp(d, c.mask, &c.mlp, &mut rng)?),
            ])
        }
        let mut flow = flow_of(stack::<f64>(&case).map_err(fail("build"))?, &[case.d])?;
        perturb(&mut flow, &case.delta, 1.0);
        let x = case.x();
        check_flow_laws(&mut flow, &x, &case.wld)?;
        let mut flow32 = exactflow_models::Flow::new(
            stack::<f32>(&case).map_err(fail("build f32"))?,
            Box::new(StandardNormal),
            &[case.d],
        )
        .map_err(flow_harness::flow_fail("f32 flow"))?;
        copy_params_to_f32(&flow, &mut flow32);
        check_flow_f32(&flow32, &flow, &x)?;
        check_flow_errors(&mut flow, &x)?;
    }
}

// ----- distributions -------------------------------------------------------------------------

fn normal_logp(z: f64, mean: f64, log_std: f64) -> f64 {
    let u = (z - mean) / log_std.exp();
    -0.5 * u * u - log_std - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

fn logistic_logp(z: f64) -> f64 {
    // log sigmoid(z) + log sigmoid(-z), written with ln_1p for accuracy in the tails.
    -(1.0 + (-z.abs()).exp()).ln() * 2.0 - z.abs()
}

/// log p of coordinate j at value v, written independently of the library.
type Formula<'a> = Box<dyn Fn(usize, f64) -> f64 + 'a>;

/// A distribution with its expected per-coordinate mean and standard deviation.
type Moments<'a> = (&'a dyn Distribution<f64>, [f64; 2], [f64; 2]);

#[derive(Clone, Debug)]
struct DistCase {
    n: usize,
    d: usize,
    z: Vec<f64>,
    w: Vec<f64>,
    mean: Vec<f64>,
    log_std: Vec<f64>,
}

fn dist_case() -> impl Strategy<Value = DistCase> {
    (1usize..=4, 1usize..=12).prop_flat_map(|(n, d)| {
        (values(n * d, 6.0), values(n, 1.0), values(d, 2.0), values(d, 1.5)).prop_map(move |(z, w, mean, log_std)| {
            DistCase {
                n,
                d,
                z,
                w,
                mean,
                log_std,
            }
        })
    })
}

fn gaussian(c: &DistCase) -> Result<DiagonalGaussian<f64>, TestCaseError> {
    let mut g = DiagonalGaussian::<f64>::new(&[c.d]).map_err(fail("new"))?;
    g.visit_params_mut("", &mut |name, p| {
        let src = if name.ends_with("mean") { &c.mean } else { &c.log_std };
        p.value.as_mut_slice().copy_from_slice(src);
    });
    Ok(g)
}

/// `backward` against the exact dual-number derivative (for z and every parameter) and
/// against central differences, for `L = sum_i w_i log p(z_i)`.
fn check_dist_grads(dist: &mut dyn Distribution<f64>, z: &Tensor<f64>, w: &[f64]) -> Result<(), TestCaseError> {
    dist.visit_params_mut("", &mut |_, p| p.zero_grad());
    let dz = dist.backward(z, w, Ctx::NONE).map_err(fail("backward"))?.x;
    let loss = |d: &dyn Distribution<f64>, z: &Tensor<f64>| -> Result<f64, TestCaseError> {
        let lp = d.log_prob(z, Ctx::NONE).map_err(fail("log_prob"))?;
        Ok(lp.iter().zip(w).map(|(a, b)| a * b).sum())
    };
    // d/dz, exactly and by central differences.
    let dual = dist.to_dual();
    for k in 0..z.len() {
        let mut zd: Tensor<F1> = z.map(F1::cst);
        zd.as_mut_slice()[k].dx = 1.0;
        let lp = dual.log_prob(&zd, Ctx::NONE).map_err(fail("dual log_prob"))?;
        let exact: f64 = lp.iter().zip(w).map(|(a, b)| a.dx * b).sum();
        prop_assert!(
            mixed_error(dz.as_slice()[k], exact) <= 1e-12,
            "dL/dz[{k}] {} vs dual {exact}",
            dz.as_slice()[k]
        );
        let h = 1e-5;
        let mut zp = z.clone();
        zp.as_mut_slice()[k] += h;
        let mut zm = z.clone();
        zm.as_mut_slice()[k] -= h;
        let fd = (loss(&*dist, &zp)? - loss(&*dist, &zm)?) / (2.0 * h);
        prop_assert!(
            mixed_error(dz.as_slice()[k], fd) <= GRAD_F64,
            "dL/dz[{k}] {} vs FD {fd}",
            dz.as_slice()[k]
        );
    }
    // d/dtheta by central differences.
    let mut grads = Vec::new();
    dist.visit_params("", &mut |name, p| {
        grads.push((name.to_string(), p.grad.as_slice().to_vec()))
    });
    for (name, g) in grads {
        for (k, gk) in g.iter().enumerate() {
            let h = 1e-5;
            let shift = |d: &mut dyn Distribution<f64>, by: f64| {
                d.visit_params_mut("", &mut |n, p| {
                    if n == name {
                        p.value.as_mut_slice()[k] += by;
                    }
                })
            };
            shift(dist, h);
            let lp = loss(&*dist, z)?;
            shift(dist, -2.0 * h);
            let lm = loss(&*dist, z)?;
            shift(dist, h);
            let fd = (lp - lm) / (2.0 * h);
            prop_assert!(mixed_error(*gk, fd) <= GRAD_F64, "d/d{name}[{k}] {gk} vs FD {fd}");
        }
    }
    Ok(())
}

/// The trapezoid integral of exp(log_prob) over [-40, 40] for a one-dimensional distribution.
fn total_mass(dist: &dyn Distribution<f64>) -> f64 {
    let m = 40001;
    let h = 80.0 / (m - 1) as f64;
    let z = Tensor::from_fn(&[m, 1], |i| -40.0 + h * i as f64).expect("m * 1 values");
    let lp = dist.log_prob(&z, Ctx::NONE).expect("finite grid");
    let inner: f64 = lp.iter().map(|l| l.exp()).sum();
    h * (inner - 0.5 * (lp[0].exp() + lp[m - 1].exp()))
}

/// Sample mean and standard deviation per coordinate of `n` draws at `temperature`.
fn sample_moments(dist: &dyn Distribution<f64>, d: usize, temperature: f64) -> Vec<(f64, f64)> {
    let n = 20000;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let s = dist
        .sample(n, &[d], temperature, &mut rng, Ctx::NONE)
        .expect("valid temperature");
    (0..d)
        .map(|j| {
            let col: Vec<f64> = (0..n).map(|i| s.as_slice()[i * d + j]).collect();
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (mean, var.sqrt())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    #[test]
    fn distributions_log_prob_matches_closed_form(c in dist_case()) {
        let z = batch(c.n, &[c.d], c.z.clone());
        let g = gaussian(&c)?;
        let dists: [(&dyn Distribution<f64>, Formula); 3] = [
            (&StandardNormal, Box::new(|_, v| normal_logp(v, 0.0, 0.0))),
            (&StandardLogistic, Box::new(|_, v| logistic_logp(v))),
            (&g, Box::new(|j, v| normal_logp(v, c.mean[j], c.log_std[j]))),
        ];
        for (dist, formula) in dists {
            let lp = dist.log_prob(&z, Ctx::NONE).map_err(fail("log_prob"))?;
            prop_assert_eq!(lp.len(), c.n);
            for (i, l) in lp.iter().enumerate() {
                let want: f64 = (0..c.d).map(|j| formula(j, c.z[i * c.d + j])).sum();
                prop_assert!((l - want).abs() <= 1e-12 * (1.0 + want.abs()), "{}: {l} vs {want}", dist.kind());
            }
        }
    }

    #[test]
    fn distributions_backward_matches_dual_and_fd(c in dist_case()) {
        let z = batch(c.n, &[c.d], c.z.clone());
        check_dist_grads(&mut StandardNormal, &z, &c.w)?;
        check_dist_grads(&mut StandardLogistic, &z, &c.w)?;
        check_dist_grads(&mut gaussian(&c)?, &z, &c.w)?;
    }
}

#[test]
fn densities_integrate_to_one() {
    let c = DistCase {
        n: 1,
        d: 1,
        z: vec![0.0],
        w: vec![1.0],
        mean: vec![0.7],
        log_std: vec![-0.4],
    };
    let g = gaussian(&c).expect("valid parameters");
    for dist in [&StandardNormal as &dyn Distribution<f64>, &StandardLogistic, &g] {
        let mass = total_mass(dist);
        assert!((mass - 1.0).abs() <= 1e-7, "{}: total mass {mass}", dist.kind());
    }
}

#[test]
fn sampling_has_the_right_moments_and_temperature() {
    let c = DistCase {
        n: 1,
        d: 2,
        z: vec![0.0; 2],
        w: vec![1.0],
        mean: vec![1.5, -2.0],
        log_std: vec![-0.5, 0.3],
    };
    let g = gaussian(&c).expect("valid parameters");
    let logistic_std = std::f64::consts::PI / 3f64.sqrt();
    let expect: [Moments; 3] = [
        (&StandardNormal, [0.0, 0.0], [1.0, 1.0]),
        (&StandardLogistic, [0.0, 0.0], [logistic_std, logistic_std]),
        (&g, [1.5, -2.0], [(-0.5f64).exp(), 0.3f64.exp()]),
    ];
    for (dist, mean, std) in expect {
        for temperature in [1.0, 0.5] {
            let m = sample_moments(dist, 2, temperature);
            for j in 0..2 {
                let s = temperature * std[j];
                let se = s / (20000f64).sqrt();
                assert!(
                    (m[j].0 - mean[j]).abs() <= 5.0 * se,
                    "{} T={temperature}: mean {:?}",
                    dist.kind(),
                    m[j]
                );
                assert!(
                    (m[j].1 / s - 1.0).abs() <= 0.05,
                    "{} T={temperature}: std {:?} vs {s}",
                    dist.kind(),
                    m[j]
                );
            }
        }
        // Temperature 0 returns the mode, exactly.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = dist
            .sample(3, &[2], 0.0, &mut rng, Ctx::NONE)
            .expect("temperature 0 is valid");
        for i in 0..3 {
            assert_eq!(
                &s.as_slice()[i * 2..i * 2 + 2],
                &mean,
                "{} at temperature 0",
                dist.kind()
            );
        }
        // Bad temperatures are errors.
        for t in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(
                dist.sample(1, &[2], t, &mut rng, Ctx::NONE).is_err(),
                "{} accepted temperature {t}",
                dist.kind()
            );
        }
    }
    // NaN in z and a shape the learned Gaussian does not cover are errors.
    let z = Tensor::new(&[1, 2], vec![f64::NAN, 0.0]).expect("two values");
    assert!(StandardNormal.log_prob(&z, Ctx::NONE).is_err());
    let z3 = Tensor::zeros(&[1, 3]).expect("shape");
    assert!(g.log_prob(&z3, Ctx::NONE).is_err());
}
