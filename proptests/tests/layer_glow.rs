//! Glow's layers and the shared structural layers: ActNorm, the dense and LU-parameterized 1x1
//! convolutions, permutations (reverse and seeded shuffle), squeeze / unsqueeze against every law
//! of `layer_harness`; the multi-scale `Split` (not a bijector) against its own laws.
//!
//! Shapes: N in 1..=3, samples `[C]` or `[C, H, W]` with C in 1..=4, H, W in 1..=6 and
//! D = C*H*W <= 64 (even H, W for the squeeze, even C for the split), so dense Jacobians stay
//! cheap. Tolerances are `layer_harness`'s (see its module documentation), plus:
//! - ActNorm after its data-dependent initialization: per-channel mean of the initialization
//!   batch's output <= 1e-12 (rounding of a sum of at most 144 terms of size <= 10 scaled by
//!   exp(logs) <= 10), variance within 1e-5 of 1 (the initialization makes it
//!   `(std / (std + eps))^2 = 1 - 2 eps / std + O(eps^2)`, eps = 1e-6, and the strategy's batches
//!   have a per-channel std >= 0.2, so at most 1e-5).
//! - Split: round trip and temperature-0 sampling are exact (they only copy); `log_p` against
//!   the formula evaluated directly <= 1e-12 relative to `1 + |log_p|`; backward against central
//!   differences `GRAD_F64` (mixed error) at step `GRAD_STEP`; f32 vs f64 `F32_TOL`.

mod flow_harness;
mod layer_harness;

use exactflow_kernels::Real;
use exactflow_layers::gradcheck::mixed_error;
use exactflow_layers::nets::{Conditioner, Conv2d};
use exactflow_layers::{
    ActNorm, Bijector, Conv1x1, Conv1x1Lu, Ctx, GlowCoupling, Params, Pass, Permutation, Split, Squeeze, Tensor,
    Unsqueeze, layer,
};
use exactflow_models::TrainMode;
use flow_harness::{check_flow_errors, check_flow_laws, flow_fail, flow_of};
use layer_harness::{
    F32_TOL, GRAD_F64, GRAD_STEP, batch, check_errors, check_f32, check_laws, fail, perturb, rel_err, values,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One case: batch size, sample shape, input, gradient weights, a parameter perturbation and an
/// initialization seed.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    shape: Vec<usize>,
    x: Vec<f64>,
    wz: Vec<f64>,
    wld: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

impl Case {
    fn x(&self) -> Tensor<f64> {
        batch(self.n, &self.shape, self.x.clone())
    }
}

/// Sample shapes `[C]` or `[C, H, W]` with C in `c`, H, W in 1..=6 and C*H*W <= 64.
fn channel_shape(c: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    (c, any::<bool>(), 1usize..=6).prop_flat_map(|(c, flat, h)| {
        let w_max = (64 / (c * h)).min(6);
        (1..=w_max).prop_map(move |w| if flat { vec![c] } else { vec![c, h, w] })
    })
}

/// Image shapes `[C, 2k, 2j]` with C in 1..=4 and 4 C k j <= 64 (for the squeeze).
fn squeeze_shape() -> impl Strategy<Value = Vec<usize>> {
    (1usize..=4)
        .prop_flat_map(|c| (Just(c), 1..=(16 / c).min(3)))
        .prop_flat_map(|(c, k)| (1..=(16 / (c * k)).min(3)).prop_map(move |j| vec![c, 2 * k, 2 * j]))
}

/// A case over the sample shapes drawn by `shape`, N in 1..=3.
fn case(shape: impl Strategy<Value = Vec<usize>>) -> impl Strategy<Value = Case> {
    (1usize..=3, shape)
        .prop_flat_map(|(n, shape)| {
            let d: usize = shape.iter().product();
            (
                Just(n),
                Just(shape),
                values(n * d, 2.0),
                values(n * d, 1.0),
                values(n, 1.0),
                values(23, 1.0),
                any::<u64>(),
            )
        })
        .prop_map(|(n, shape, x, wz, wld, delta, seed)| Case {
            n,
            shape,
            x,
            wz,
            wld,
            delta,
            seed,
        })
}

/// An ActNorm initialization batch of `n0` samples: per channel mean `m`, scale `s`, and samples
/// alternating around `m +- s` (values `m + s * (u +- 1)`, `u` in [-0.5, 0.5)), so every
/// channel's std is at least 0.2.
#[derive(Clone, Debug)]
struct InitBatch {
    n0: usize,
    u: Vec<f64>,
    m: f64,
    s: f64,
}

fn init_batch(d: usize) -> impl Strategy<Value = InitBatch> {
    (2usize..=4)
        .prop_flat_map(move |n0| (Just(n0), values(n0 * d, 0.5), -2.0..2.0, 0.5..3.0))
        .prop_map(|(n0, u, m, s)| InitBatch { n0, u, m, s })
}

impl InitBatch {
    fn tensor(&self, shape: &[usize]) -> Tensor<f64> {
        let d: usize = shape.iter().product();
        let data = self
            .u
            .iter()
            .enumerate()
            .map(|(k, &u)| {
                let side = if (k / d).is_multiple_of(2) { 1.0 } else { -1.0 };
                self.m + self.s * (u + side)
            })
            .collect();
        batch(self.n0, shape, data)
    }
}

/// A case and an ActNorm initialization batch of the same sample shape.
fn with_init(shape: impl Strategy<Value = Vec<usize>>) -> impl Strategy<Value = (Case, InitBatch)> {
    case(shape).prop_flat_map(|c| {
        let d: usize = c.shape.iter().product();
        (Just(c), init_batch(d))
    })
}

/// Per-channel (mean, population variance) of a batch of samples `[C]` or `[C, H, W]`.
fn channel_moments(z: &Tensor<f64>) -> Vec<(f64, f64)> {
    let c = z.shape()[1];
    let hw = z.sample_len() / c;
    (0..c)
        .map(|ch| {
            let vals: Vec<f64> = z.samples().flat_map(|s| s[ch * hw..(ch + 1) * hw].to_vec()).collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            (mean, var)
        })
        .collect()
}

/// The laws, f32 agreement (of the layer cast to f32) and error cases of a built f64 layer.
fn check_all<L: Bijector<f64> + Clone>(
    layer: &mut L,
    to_f32: impl Fn(&L) -> Box<dyn Bijector<f32>>,
    case: &Case,
) -> Result<(), TestCaseError> {
    let x = case.x();
    check_laws(layer, &x, &case.wz, &case.wld)?;
    check_f32(to_f32(layer).as_ref(), &x)?;
    check_errors(&mut layer.clone(), &x)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(64)))]

    /// ActNorm: initialization normalizes the batch; a restored flag prevents re-initialization;
    /// every law with perturbed parameters.
    #[test]
    fn actnorm((case, init) in with_init(channel_shape(1..=4))) {
        let d: usize = case.shape.iter().product();
        let x0 = init.tensor(&case.shape);
        let mut layer = ActNorm::<f64>::new(&case.shape).map_err(fail("build"))?;
        let (z0, ld0, _) = layer.forward_train(&x0, Ctx::NONE, Pass::Train).map_err(fail("init"))?;
        prop_assert!(layer.is_initialized());
        for (ch, (mean, var)) in channel_moments(&z0).into_iter().enumerate() {
            prop_assert!(mean.abs() <= 1e-12, "channel {ch}: mean {mean:e} after initialization");
            prop_assert!((var - 1.0).abs() <= 1e-5, "channel {ch}: variance {var} after initialization");
        }
        let hw = (d / case.shape[0]) as f64;
        let sum_logs: f64 = layer.logs.values().iter().sum();
        prop_assert!(ld0.iter().all(|&l| (l - hw * sum_logs).abs() <= 1e-12 * (1.0 + l.abs())));

        perturb(&mut layer, &case.delta, 0.3);
        // A checkpoint round trip: a fresh layer given every named tensor keeps them on its
        // first training batch.
        let mut saved = Vec::new();
        layer.visit_params("", &mut |name, p| saved.push((name.to_string(), p.value.clone())));
        let mut flags = Vec::new();
        layer.visit_int("", &mut |name, b| flags.push((name.to_string(), b.values().to_vec())));
        let mut loaded = ActNorm::<f64>::new(&case.shape).map_err(fail("build"))?;
        loaded.visit_params_mut("", &mut |name, p| {
            if let Some((_, v)) = saved.iter().find(|(s, _)| s == name) {
                p.value = v.clone();
            }
        });
        loaded.visit_int_mut("", &mut |name, b| {
            if let Some((_, v)) = flags.iter().find(|(s, _)| s == name) {
                b.set(v.clone()).expect("a valid flag");
            }
        });
        let x = case.x();
        let (z_loaded, _, _) = loaded.forward_train(&x, Ctx::NONE, Pass::Train).map_err(fail("loaded"))?;
        let (z_orig, _) = layer.forward(&x, Ctx::NONE).map_err(fail("forward"))?;
        prop_assert_eq!(z_loaded, z_orig, "a loaded ActNorm re-initialized");

        check_all(&mut layer, |l| Box::new(l.cast::<f32>()), &case)?;
    }

    /// The dense 1x1 convolution from a random rotation, perturbed (entries +- 0.1, so W stays
    /// well conditioned: singular values within 1 +- 0.4 for C <= 4).
    #[test]
    fn conv1x1_dense(case in case(channel_shape(1..=4))) {
        let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
        let mut layer = Conv1x1::<f64>::new(&case.shape, &mut rng).map_err(fail("build"))?;
        perturb(&mut layer, &case.delta, 0.1);
        check_all(&mut layer, |l| Box::new(l.cast::<f32>()), &case)?;
    }

    /// The LU-parameterized 1x1 convolution from the LU of a random rotation, perturbed (L, U
    /// entries and log_s by up to +- 0.3).
    #[test]
    fn conv1x1_lu(case in case(channel_shape(1..=4))) {
        let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
        let mut layer = Conv1x1Lu::<f64>::new(&case.shape, &mut rng).map_err(fail("build"))?;
        perturb(&mut layer, &case.delta, 0.3);
        // log|det| = H W sum(log_s) = H W log|det W| of the assembled W.
        let w = layer.weight().map_err(fail("weight"))?;
        let c = case.shape[0];
        let dense = exactflow_kernels::log_det(
            &exactflow_kernels::Matrix::new(c, c, w.as_slice().to_vec()).map_err(fail("matrix"))?,
        )
        .map_err(fail("log_det"))?;
        let hw = (case.shape.iter().product::<usize>() / c) as f64;
        let (_, ld) = layer.forward(&case.x(), Ctx::NONE).map_err(fail("forward"))?;
        prop_assert!((ld[0] - hw * dense.log_abs).abs() <= 1e-12 * (1.0 + ld[0].abs()));
        // The same map as the dense layer with that weight.
        let dense_layer = Conv1x1::with_weight(&case.shape, w).map_err(fail("dense"))?;
        let (z1, _) = layer.forward(&case.x(), Ctx::NONE).map_err(fail("forward"))?;
        let (z2, _) = dense_layer.forward(&case.x(), Ctx::NONE).map_err(fail("forward"))?;
        prop_assert!(rel_err(z1.as_slice(), z2.as_slice()) <= 1e-13);
        check_all(&mut layer, |l| Box::new(l.cast::<f32>()), &case)?;
    }

    /// Reversal and seeded shuffles of features or channels.
    #[test]
    fn permutation(case in case(channel_shape(1..=4)), shuffle in any::<bool>()) {
        let mut layer = if shuffle {
            Permutation::<f64>::shuffle(&case.shape, case.seed)
        } else {
            Permutation::<f64>::reverse(&case.shape)
        }
        .map_err(fail("build"))?;
        let perm = layer.indices();
        let (z, _) = layer.forward(&case.x(), Ctx::NONE).map_err(fail("forward"))?;
        let c = case.shape[0];
        let hw = case.shape.iter().product::<usize>() / c;
        for (s, (zs, xs)) in z.samples().zip(case.x().samples()).enumerate() {
            for (i, &p) in perm.iter().enumerate() {
                prop_assert_eq!(&zs[i * hw..(i + 1) * hw], &xs[p * hw..(p + 1) * hw], "sample {}", s);
            }
        }
        check_all(&mut layer, |l| Box::new(l.cast::<f32>()), &case)?;
    }

    /// Squeeze `[C, H, W] -> [4C, H/2, W/2]` and its inverse layer Unsqueeze.
    #[test]
    fn squeeze_and_unsqueeze(case in case(squeeze_shape())) {
        let mut layer = Squeeze::<f64>::new(&case.shape).map_err(fail("build"))?;
        let (c, h, w) = (case.shape[0], case.shape[1], case.shape[2]);
        let (z, _) = layer.forward(&case.x(), Ctx::NONE).map_err(fail("forward"))?;
        let x = case.x();
        for s in 0..case.n {
            for ch in 0..c {
                for y in 0..h {
                    for xx in 0..w {
                        let k = [s, 4 * ch + 2 * (y % 2) + xx % 2, y / 2, xx / 2];
                        prop_assert_eq!(z.get(&k).ok(), x.get(&[s, ch, y, xx]).ok());
                    }
                }
            }
        }
        check_all(&mut layer, |l| Box::new(l.cast::<f32>()), &case)?;
        let sq_shape = vec![4 * c, h / 2, w / 2];
        let mut un = Unsqueeze::<f64>::new(&sq_shape).map_err(fail("build"))?;
        let un_case = Case { shape: sq_shape, ..case.clone() };
        prop_assert_eq!(un.forward(&z, Ctx::NONE).map_err(fail("unsqueeze"))?.0, case.x());
        check_all(&mut un, |l| Box::new(l.cast::<f32>()), &un_case)?;
    }
}

/// Image shapes `[C, H, W]` with C in 2..=4, H, W in 1..=4 (a Glow step needs two channels).
fn step_shape() -> impl Strategy<Value = Vec<usize>> {
    (2usize..=4, 1usize..=4, 1usize..=4).prop_map(|(c, h, w)| vec![c, h, w])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(32)))]

    /// One step of Glow composed by a flow: ActNorm (initialized on a batch) -> LU 1x1
    /// convolution -> affine coupling, every parameter perturbed, against every law of the
    /// composition (the flow's cached and memory-efficient backward included).
    #[test]
    fn glow_step((case, init) in with_init(step_shape()), hidden in 1usize..=3) {
        let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
        let shape = &case.shape;
        let stages = vec![
            layer(ActNorm::new(shape).map_err(fail("actnorm"))?),
            layer(Conv1x1Lu::new(shape, &mut rng).map_err(fail("conv"))?),
            layer(GlowCoupling::with_glow_net(shape, hidden, &mut rng).map_err(fail("coupling"))?),
        ];
        let mut step = flow_of(stages, shape)?;
        step.forward_train(&init.tensor(shape), None, TrainMode::Cached).map_err(flow_fail("init"))?;
        let x = case.x();
        perturb(&mut step, &case.delta, 0.2);
        check_flow_laws(&mut step, &x, &case.wld)?;
        let names: Vec<String> = {
            let mut v = Vec::new();
            step.visit_params("", &mut |n, _| v.push(n.to_string()));
            step.visit_int("", &mut |n, _| v.push(n.to_string()));
            v
        };
        for expected in [
            "flow.0.bias", "flow.0.logs", "flow.0.initialized", "flow.1.lower", "flow.1.upper", "flow.1.log_s",
            "flow.1.sign", "flow.1.perm",
        ] {
            prop_assert!(names.iter().any(|n| n == expected), "no parameter {expected} in {names:?}");
        }
        check_flow_errors(&mut step, &x)?;
    }
}

/// Image shapes `[C, 2k, 2j]` with C in 1..=2 and k, j in 1..=2 (squeezed: at most `[8, 2, 2]`).
fn level_shape() -> impl Strategy<Value = Vec<usize>> {
    (1usize..=2, 1usize..=2, 1usize..=2).prop_map(|(c, k, j)| vec![c, 2 * k, 2 * j])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(32)))]

    /// The layers of a level with shape changes, composed by a flow: squeeze -> ActNorm -> dense
    /// 1x1 convolution -> seeded shuffle -> affine coupling, against every law.
    #[test]
    fn glow_level((case, init) in with_init(level_shape()), hidden in 1usize..=3) {
        let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
        let (c, h, w) = (case.shape[0], case.shape[1], case.shape[2]);
        let sq = [4 * c, h / 2, w / 2];
        let stages = vec![
            layer(Squeeze::new(&case.shape).map_err(fail("squeeze"))?),
            layer(ActNorm::new(&sq).map_err(fail("actnorm"))?),
            layer(Conv1x1::new(&sq, &mut rng).map_err(fail("conv"))?),
            layer(Permutation::shuffle(&sq, case.seed).map_err(fail("shuffle"))?),
            layer(GlowCoupling::with_glow_net(&sq, hidden, &mut rng).map_err(fail("coupling"))?),
        ];
        let mut level = flow_of(stages, &case.shape)?;
        prop_assert_eq!(level.latent_shape(), sq.to_vec());
        level.forward_train(&init.tensor(&case.shape), None, TrainMode::Cached).map_err(flow_fail("init"))?;
        let x = case.x();
        perturb(&mut level, &case.delta, 0.1);
        check_flow_laws(&mut level, &x, &case.wld)?;
        check_flow_errors(&mut level, &x)?;
    }
}

/// The Split loss `L = sum(w_r * rest) + sum(w_z * z_out) + sum(w_l * log_p)`.
fn split_loss(split: &Split<f64>, x: &Tensor<f64>, wr: &[f64], wz: &[f64], wl: &[f64]) -> Result<f64, TestCaseError> {
    let (rest, z, lp) = split.forward(x, Ctx::NONE).map_err(fail("split forward"))?;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
    Ok(dot(rest.as_slice(), wr) + dot(z.as_slice(), wz) + dot(&lp, wl))
}

/// Image shapes `[C, H, W]` with C in {2, 4}, H, W in 1..=6 and C*H*W <= 64.
fn split_shape() -> impl Strategy<Value = Vec<usize>> {
    (1usize..=2, 1usize..=6).prop_flat_map(|(c2, h)| {
        let w_max = (32 / (c2 * h)).min(6);
        (1..=w_max).prop_map(move |w| vec![2 * c2, h, w])
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(64)))]

    /// Split with Glow's learned prior (a 3x3 convolution, perturbed away from zero) or without a
    /// prior: round trip, log_p against the formula, backward against central differences,
    /// temperature-0 sampling, f32 against f64, error cases.
    #[test]
    fn split(case in case(split_shape()), glow in any::<bool>(), wr in values(64 * 3, 1.0)) {
        let (c, h, w) = (case.shape[0], case.shape[1], case.shape[2]);
        let mut rng = ChaCha8Rng::seed_from_u64(case.seed);
        let mut net = Conv2d::<f64>::new(c / 2, c, 3, (h, w), true, &mut rng).map_err(fail("conv"))?;
        perturb(&mut net, &case.delta, 0.3);
        let mut split = if glow {
            Split::with_prior(&case.shape, Box::new(net.clone()))
        } else {
            Split::without_prior(&case.shape)
        }
        .map_err(fail("build"))?;
        let x = case.x();
        let half = c / 2 * h * w;

        // Round trip, exactly: the split only moves elements.
        let (rest, z_out, lp) = split.forward(&x, Ctx::NONE).map_err(fail("forward"))?;
        prop_assert_eq!(split.inverse(&rest, &z_out).map_err(fail("inverse"))?, x.clone());
        for s in 0..case.n {
            let xs = x.sample(s).map_err(fail("sample"))?;
            prop_assert_eq!(rest.sample(s).map_err(fail("sample"))?, &xs[..half]);
            prop_assert_eq!(z_out.sample(s).map_err(fail("sample"))?, &xs[half..]);
        }

        // log_p against the Gaussian formula with the prior evaluated directly.
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        let hout = if glow { Some(net.forward(&rest, Ctx::NONE).map_err(fail("prior"))?) } else { None };
        for (s, &lps) in lp.iter().enumerate() {
            let zs = z_out.sample(s).map_err(fail("sample"))?;
            let expected: f64 = match &hout {
                Some(hp) => {
                    let hs = hp.sample(s).map_err(fail("sample"))?;
                    (0..half)
                        .map(|k| {
                            let (m, l) = (hs[k], hs[half + k]);
                            -0.5 * ln2pi - l - 0.5 * ((zs[k] - m) / l.exp()).powi(2)
                        })
                        .sum()
                }
                None => 0.0,
            };
            prop_assert!((lps - expected).abs() <= 1e-12 * (1.0 + expected.abs()), "log_p {lps} vs {expected}");
        }

        // Temperature 0 returns the mean.
        if let Some(hp) = &hout {
            let z0 = split.sample_out(&rest, 0.0, &mut rng, Ctx::NONE).map_err(fail("sample_out"))?;
            for s in 0..case.n {
                prop_assert_eq!(z0.sample(s).map_err(fail("sample"))?, &hp.sample(s).map_err(fail("sample"))?[..half]);
            }
            let z1 = split.sample_out(&rest, 1.0, &mut rng, Ctx::NONE).map_err(fail("sample_out"))?;
            prop_assert!(z1.first_non_finite().is_none() && z1 != z0);
            // The draw scored in the same prior pass: the same draw as sample_out from the same
            // stream, and the forward pass's log_p of concat(rest, draw), bit for bit.
            let mut r1 = ChaCha8Rng::seed_from_u64(case.seed);
            let mut r2 = ChaCha8Rng::seed_from_u64(case.seed);
            let (zs, lps) = split.sample_out_with_log_prob(&rest, 0.7, &mut r1, Ctx::NONE).map_err(fail("sample_out_with_log_prob"))?;
            prop_assert_eq!(&zs, &split.sample_out(&rest, 0.7, &mut r2, Ctx::NONE).map_err(fail("sample_out"))?);
            let joined = split.inverse(&rest, &zs).map_err(fail("inverse"))?;
            let (_, _, lpf) = split.forward(&joined, Ctx::NONE).map_err(fail("forward"))?;
            prop_assert_eq!(
                lps.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                lpf.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }

        // backward against central differences of L = sum(w_r rest) + sum(w_z z_out) + sum(w_l log_p).
        let wr = &wr[..case.n * half];
        let wz = &case.wz[..case.n * half];
        let wl = &case.wld[..case.n];
        split.zero_grad();
        let (r, z, _, cache) = split.forward_train(&x, Ctx::NONE).map_err(fail("forward_train"))?;
        let dr = Tensor::new(r.shape(), wr.to_vec()).map_err(fail("dr"))?;
        let dz = Tensor::new(z.shape(), wz.to_vec()).map_err(fail("dz"))?;
        let dx = split.backward(cache, &dr, &dz, wl).map_err(fail("backward"))?.x;
        let mut xp = x.clone();
        for k in 0..x.len() {
            let v = x.as_slice()[k];
            xp.as_mut_slice()[k] = v + GRAD_STEP;
            let lp_ = split_loss(&split, &xp, wr, wz, wl)?;
            xp.as_mut_slice()[k] = v - GRAD_STEP;
            let lm = split_loss(&split, &xp, wr, wz, wl)?;
            xp.as_mut_slice()[k] = v;
            let e = mixed_error(dx.as_slice()[k], (lp_ - lm) / (2.0 * GRAD_STEP));
            prop_assert!(e <= GRAD_F64, "dL/dx[{k}]: mixed error {e:e}");
        }
        let mut grads = Vec::new();
        split.visit_params("", &mut |name, p| grads.push((name.to_string(), p.grad.as_slice().to_vec())));
        for (name, g) in grads {
            for (k, &gk) in g.iter().enumerate() {
                let set = |split: &mut Split<f64>, delta: f64| {
                    split.visit_params_mut("", &mut |n, p| {
                        if n == name {
                            p.value.as_mut_slice()[k] += delta;
                        }
                    });
                };
                set(&mut split, GRAD_STEP);
                let lp_ = split_loss(&split, &x, wr, wz, wl)?;
                set(&mut split, -2.0 * GRAD_STEP);
                let lm = split_loss(&split, &x, wr, wz, wl)?;
                set(&mut split, GRAD_STEP);
                let e = mixed_error(gk, (lp_ - lm) / (2.0 * GRAD_STEP));
                prop_assert!(e <= GRAD_F64, "dL/d{name}[{k}]: mixed error {e:e}");
            }
        }

        // f32 against the f64 copy of the same f32 split.
        let split32 = if glow {
            Split::<f32>::with_prior(&case.shape, Box::new(net.cast::<f32>()))
        } else {
            Split::<f32>::without_prior(&case.shape)
        }
        .map_err(fail("build f32"))?;
        let x32: Tensor<f32> = x.cast();
        let (r32, z32, lp32) = split32.forward(&x32, Ctx::NONE).map_err(fail("f32 forward"))?;
        let (r64, z64, lp64) = split32.to_f64().forward(&x32.cast(), Ctx::NONE).map_err(fail("f64 forward"))?;
        prop_assert_eq!(r32.cast::<f64>(), r64);
        prop_assert_eq!(z32.cast::<f64>(), z64);
        let lp32: Vec<f64> = lp32.iter().map(|&v| v as f64).collect();
        let scale = lp64.iter().map(|v| v.abs()).fold(1.0, f64::max);
        prop_assert!(layer_harness::max_abs(&lp32, &lp64) <= F32_TOL * scale, "f32 log_p {lp32:?} vs {lp64:?}");
        // The dual-number copy computes the same values.
        let (_, _, lpd) = split.to_dual().forward(&x.cast(), Ctx::NONE).map_err(fail("dual forward"))?;
        let lpd: Vec<f64> = lpd.iter().map(|v| v.as_f64()).collect();
        prop_assert!(layer_harness::max_abs(&lpd, &lp) <= 1e-12 * scale);

        // Errors, not panics: wrong shapes, NaN input, an infinite prior parameter.
        let mut bad = x.shape().to_vec();
        bad[1] += 1;
        prop_assert!(split.forward(&Tensor::zeros(&bad).map_err(fail("zeros"))?, Ctx::NONE).is_err());
        prop_assert!(split.inverse(&rest, &x).is_err());
        let mut nan_x = x.clone();
        nan_x.as_mut_slice()[0] = f64::NAN;
        prop_assert!(split.forward(&nan_x, Ctx::NONE).is_err());
        if glow {
            split.visit_params_mut("", &mut |_, p| p.value.as_mut_slice()[0] = f64::INFINITY);
            prop_assert!(split.forward(&x, Ctx::NONE).is_err());
            prop_assert!(split.sample_out(&rest, 1.0, &mut rng, Ctx::NONE).is_err());
        }
    }
}
