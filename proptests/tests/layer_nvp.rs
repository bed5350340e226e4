//! NICE's and RealNVP's elementwise layers: diagonal `Scaling`, `BatchNorm` (inference and
//! training mode) and the `Logit` preprocessing, against every law of `layer_harness`, plus the
//! laws of batch normalization's training mode, which maps the batch as a whole.
//!
//! Shapes: N in 1..=3 (2..=3 where a training pass runs), samples `[D]`, `[A, B]` (Scaling) or
//! `[C, H, W]` with D = C*H*W <= 64. Tolerances are `layer_harness`'s (see its module
//! documentation), plus:
//! - `DUAL_GRAD` = 1e-9 (mixed error, as in `gradcheck`): BatchNorm's backward against the exact
//!   derivative of the whole-batch training loss computed on dual numbers. Both are exact up to
//!   rounding: each entry is a sum of at most 3 * 64 terms, each a product of a few factors
//!   bounded by the strategy (|w| <= 1, exp(log_gamma) <= 2, r = (var + eps)^-1/2 <= 5, |xhat|
//!   <= sqrt(M)), so the rounding is O(1e-13), four orders below.
//! - The whole-batch training map along a shift of one channel of the batch (derivative of z 0 in
//!   exact arithmetic) and along a scaling about its mean (derivative `g r (x - mean) eps /
//!   (var + eps)`): on dual numbers the error is rounding of at most M terms of size `g r |v|`:
//!   <= `ROUNDTRIP_F64` times `1 + max |g r v|`.
//! - Running statistics against the PyTorch formula evaluated directly in f64: relative 1e-12.
//!
//! The batch-norm cases draw well-spread batches (per channel, samples alternate around a mean
//! `m_c` at `+- s_c`, s_c >= 0.5, so each channel's batch variance is at least 0.22 * 0.25), as the
//! ActNorm cases of `layer_glow` do: a batch whose channel is (nearly) constant has
//! `r ~ eps^-1/2 = 316` and a map whose finite differences say nothing about the backward.
//! The logit cases keep x in [0.01, 0.99], so that every finite-difference stencil stays inside
//! the domain; the endpoints 0 and 1 (allowed for alpha > 0) are tested exactly by duals.

mod flow_harness;
mod layer_harness;

use exactflow_kernels::{F1, Real};
use exactflow_layers::batchnorm::{BATCHNORM_EPS, BATCHNORM_MOMENTUM};
use exactflow_layers::gradcheck::{grad_check, mixed_error};
use exactflow_layers::jacobian::{inverse_jacobian_exact, jacobian_dual, jacobian_fd, log_dets};
use exactflow_layers::{BatchNorm, Bijector, Ctx, Logit, Params, Pass, Scaling, Tensor, layer};
use exactflow_models::TrainMode;
use flow_harness::{check_flow_errors, check_flow_laws, flow_fail, flow_of};
use layer_harness::{
    F32_TOL, FD_STEP, GRAD_F64, GRAD_STEP, LOGDET_EXACT, LOGDET_FD, ROUNDTRIP_F64, batch, check_errors, check_f32,
    check_laws, fail, max_abs, perturb, rel_err, values,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// BatchNorm's backward against the dual-number derivative of the whole-batch loss (mixed error).
const DUAL_GRAD: f64 = 1e-9;

/// One case: batch size, sample shape, raw input values in [-1, 1], gradient weights and a
/// parameter perturbation.
#[derive(Clone, Debug)]
struct Case {
    n: usize,
    shape: Vec<usize>,
    x: Vec<f64>,
    wz: Vec<f64>,
    wld: Vec<f64>,
    delta: Vec<f64>,
}

impl Case {
    fn d(&self) -> usize {
        self.shape.iter().product()
    }

    /// The input with values `2 * raw` in [-2, 2].
    fn x(&self) -> Tensor<f64> {
        batch(self.n, &self.shape, self.x.iter().map(|v| 2.0 * v).collect())
    }

    /// The input mapped into [lo, hi] (for the logit).
    fn x_in(&self, lo: f64, hi: f64) -> Tensor<f64> {
        batch(
            self.n,
            &self.shape,
            self.x.iter().map(|v| lo + (hi - lo) * (v + 1.0) / 2.0).collect(),
        )
    }

    /// A well-spread batch: channel c of sample n is `m_c + s_c (u / 2 + (-1)^n)` with `u` the raw
    /// value, `m_c = 2 delta_c`, `s_c = 1.25 + 0.75 delta_{c+1}` (so s_c in [0.5, 2]).
    fn spread(&self) -> Tensor<f64> {
        let c = self.shape[0];
        let hw = self.d() / c;
        let data = self
            .x
            .iter()
            .enumerate()
            .map(|(k, &u)| {
                let (s, ch) = (k / self.d(), (k % self.d()) / hw);
                let m = 2.0 * self.delta[ch % self.delta.len()];
                let sc = 1.25 + 0.75 * self.delta[(ch + 1) % self.delta.len()];
                let side = if s % 2 == 0 { 1.0 } else { -1.0 };
                m + sc * (0.5 * u + side)
            })
            .collect();
        batch(self.n, &self.shape, data)
    }

    fn wz(&self) -> Tensor<f64> {
        let mut shape = vec![self.n];
        shape.extend_from_slice(&self.shape);
        Tensor::new(&shape, self.wz.clone()).expect("strategy draws n * d weights")
    }
}

/// Sample shapes `[C]` or `[C, H, W]` with C in `c`, H, W in 1..=6 and C*H*W <= 64.
fn channel_shape(c: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    (c, any::<bool>(), 1usize..=6).prop_flat_map(|(c, flat, h)| {
        let w_max = (64 / (c * h)).min(6);
        (1..=w_max).prop_map(move |w| if flat { vec![c] } else { vec![c, h, w] })
    })
}

/// Sample shapes of rank 1, 2 or 3 with at most 64 elements.
fn any_shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        (1usize..=16).prop_map(|d| vec![d]),
        (1usize..=6, 1usize..=6).prop_map(|(a, b)| vec![a, b]),
        channel_shape(1..=4),
    ]
}

/// A case over the sample shapes drawn by `shape`, N in `n`.
fn case(n: std::ops::RangeInclusive<usize>, shape: impl Strategy<Value = Vec<usize>>) -> impl Strategy<Value = Case> {
    (n, shape)
        .prop_flat_map(|(n, shape)| {
            let d: usize = shape.iter().product();
            (
                Just(n),
                Just(shape),
                values(n * d, 1.0),
                values(n * d, 1.0),
                values(n, 1.0),
                values(23, 1.0),
            )
        })
        .prop_map(|(n, shape, x, wz, wld, delta)| Case {
            n,
            shape,
            x,
            wz,
            wld,
            delta,
        })
}

/// `sum(wz * z) + sum(wld * ld)`.
fn weighted<T: Real>(z: &Tensor<T>, ld: &[T], wz: &[f64], wld: &[f64]) -> T {
    let a = z
        .as_slice()
        .iter()
        .zip(wz)
        .fold(T::zero(), |acc, (&v, &w)| acc + v * T::lit(w));
    ld.iter().zip(wld).fold(a, |acc, (&v, &w)| acc + v * T::lit(w))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(64)))]

    /// NICE's scaling on samples of rank 1 to 3, `s` perturbed: log-det `sum(s)` exactly, every law.
    #[test]
    fn scaling(case in case(1..=3, any_shape())) {
        let mut layer = Scaling::<f64>::new(&case.shape).map_err(fail("build"))?;
        perturb(&mut layer, &case.delta, 0.8);
        let x = case.x();
        let (z, ld) = layer.forward(&x, Ctx::NONE).map_err(fail("forward"))?;
        let sum: f64 = layer.s.values().iter().sum();
        prop_assert!(ld.iter().all(|&l| l == sum), "log-det {ld:?} vs sum(s) = {sum}");
        for (k, (&zv, &xv)) in z.as_slice().iter().zip(x.as_slice()).enumerate() {
            prop_assert_eq!(zv, layer.s.values()[k % case.d()].exp() * xv);
        }
        check_laws(&mut layer, &x, &case.wz, &case.wld)?;
        check_f32(&layer.cast::<f32>(), &x)?;
        check_errors(&mut layer.clone(), &x)?;
    }

    /// Logit with alpha = 0 or alpha in [0, 0.2), x in [0.01, 0.99]: every law; the other
    /// direction z -> x -> z for z inside the image of [0, 1]; the inverse's log-det against its
    /// exact Jacobian; out-of-range inputs are errors naming the element.
    #[test]
    fn logit(
        case in case(1..=3, any_shape()),
        alpha in prop_oneof![Just(0.0), 0.0..0.2f64],
        zraw in values(3 * 64, 1.0),
        bad_at in any::<prop::sample::Index>(),
    ) {
        let mut layer = Logit::<f64>::new(&case.shape, alpha).map_err(fail("build"))?;
        let x = case.x_in(0.01, 0.99);
        check_laws(&mut layer, &x, &case.wz, &case.wld)?;
        check_f32(&layer.cast::<f32>(), &x)?;
        check_errors(&mut layer.clone(), &x)?;

        // z -> x -> z with z within 0.99 of the largest latent of [0, 1] (and |z| <= 6).
        let zmax = 0.99 * if alpha > 0.0 { ((1.0 - alpha) / alpha).ln().min(6.0) } else { 6.0 };
        let z = batch(case.n, &case.shape, zraw[..case.n * case.d()].iter().map(|v| zmax * v).collect());
        let (xr, ldi) = layer.inverse(&z, Ctx::NONE).map_err(fail("inverse"))?;
        let (zr, ld) = layer.forward(&xr, Ctx::NONE).map_err(fail("forward"))?;
        let e = rel_err(zr.as_slice(), z.as_slice());
        prop_assert!(e <= ROUNDTRIP_F64, "forward(inverse(z)) relative error {e:e}");
        let exact = log_dets(&inverse_jacobian_exact(&layer, &z, None).map_err(fail("dual"))?).map_err(fail("slogdet"))?;
        for (s, ((li, lf), j)) in ldi.iter().zip(&ld).zip(&exact).enumerate() {
            prop_assert!((li - j.log_abs).abs() <= LOGDET_EXACT, "sample {s}: inverse log-det {li} vs exact {}", j.log_abs);
            prop_assert!((li + lf).abs() <= ROUNDTRIP_F64 * (1.0 + lf.abs()), "inverse {li} vs forward {lf}");
        }

        // Out of the domain: below 0, above 1, and (for alpha = 0) exactly 0 or 1.
        let k = bad_at.index(x.len());
        let m = case.d();
        let outside: Vec<f64> = if alpha > 0.0 { vec![-1e-9, 1.0 + 1e-9, -3.0] } else { vec![0.0, 1.0, -0.5, 2.0] };
        for bad in outside {
            let mut xb = x.clone();
            xb.as_mut_slice()[k] = bad;
            let err = layer.forward(&xb, Ctx::NONE).err().map(|e| e.to_string());
            let expect = format!("sample {}, offset {}", k / m, k % m);
            prop_assert!(
                err.as_ref().is_some_and(|msg| msg.contains(&expect)),
                "x = {bad} at {expect}: {err:?}"
            );
        }
    }

    /// Logit with alpha > 0 at the endpoints: x = 0 and x = 1 map to -+logit(alpha), round-trip,
    /// and their log-dets equal the exact Jacobian's.
    #[test]
    fn logit_endpoints(case in case(1..=3, any_shape()), alpha in 0.001..0.2f64, ends in values(3 * 64, 1.0)) {
        let layer = Logit::<f64>::new(&case.shape, alpha).map_err(fail("build"))?;
        let mut x = case.x_in(0.0, 1.0);
        for (v, &e) in x.as_mut_slice().iter_mut().zip(&ends) {
            if e > 0.3 {
                *v = 1.0;
            } else if e < -0.3 {
                *v = 0.0;
            }
        }
        let (z, ld) = layer.forward(&x, Ctx::NONE).map_err(fail("forward"))?;
        let l_alpha = (alpha / (1.0 - alpha)).ln();
        for (&zv, &xv) in z.as_slice().iter().zip(x.as_slice()) {
            // ln(alpha) - ln(alpha + (1 - 2 alpha)) and its negative, so within rounding of logit(alpha).
            if xv == 0.0 || xv == 1.0 {
                let expect = if xv == 0.0 { l_alpha } else { -l_alpha };
                prop_assert!((zv - expect).abs() <= ROUNDTRIP_F64 * expect.abs(), "x = {xv}: z = {zv} vs {expect}");
            }
        }
        // Relative to the domain's width 1: at x = 0 the inverse computes sigmoid(z) - alpha, an
        // absolute error of O(eps alpha), and a batch of zeros has no scale of its own.
        let (xr, _) = layer.inverse(&z, Ctx::NONE).map_err(fail("inverse"))?;
        let e = max_abs(xr.as_slice(), x.as_slice());
        prop_assert!(e <= ROUNDTRIP_F64, "inverse(forward(x)) error {e:e} (x in [0, 1])");
        let exact = log_dets(&exactflow_layers::jacobian::forward_jacobian_exact(&layer, &x, None).map_err(fail("dual"))?)
            .map_err(fail("slogdet"))?;
        for (s, (l, j)) in ld.iter().zip(&exact).enumerate() {
            prop_assert!((l - j.log_abs).abs() <= LOGDET_EXACT, "sample {s}: log-det {l} vs exact {}", j.log_abs);
        }
    }
}

/// A BatchNorm trained for two passes on spread batches (so the running statistics have moved
/// away from (0, 1)), with `log_gamma` and `beta` perturbed.
fn trained_batchnorm(case: &Case) -> Result<BatchNorm<f64>, TestCaseError> {
    let mut bn = BatchNorm::<f64>::new(&case.shape).map_err(fail("build"))?;
    let x = case.spread();
    bn.forward_train(&x.map(|v| 1.5 * v - 0.7), Ctx::NONE, Pass::Train)
        .map_err(fail("train 1"))?;
    bn.forward_train(&x, Ctx::NONE, Pass::Train).map_err(fail("train 2"))?;
    perturb(&mut bn, &case.delta, 0.7);
    Ok(bn)
}

/// Per-channel (mean, biased variance) of a batch, two passes in f64.
fn channel_moments(x: &Tensor<f64>) -> Vec<(f64, f64)> {
    let c = x.shape()[1];
    let hw = x.sample_len() / c;
    (0..c)
        .map(|ch| {
            let vals: Vec<f64> = x.samples().flat_map(|s| s[ch * hw..(ch + 1) * hw].to_vec()).collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            (mean, var)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(64)))]

    /// BatchNorm's inference mode (running statistics), after two training passes and with
    /// perturbed parameters: every law of the harness (whose gradient check runs training passes,
    /// i.e. the batch-statistics backward against central differences of the whole-batch loss);
    /// inference on a single sample; f32; error cases.
    #[test]
    fn batchnorm_inference(case in case(2..=3, channel_shape(1..=4))) {
        let mut bn = trained_batchnorm(&case)?;
        let x = case.spread();
        check_laws(&mut bn, &x, &case.wz, &case.wld)?;
        check_f32(&bn.cast::<f32>(), &x)?;
        check_errors(&mut bn.clone(), &x)?;

        // The inference map is the affine map of the running statistics, for any batch size.
        let one = x.slice_batch(0..1).map_err(fail("slice"))?;
        let (z1, ld1) = bn.forward(&one, Ctx::NONE).map_err(fail("forward one"))?;
        let (zall, ldall) = bn.forward(&x, Ctx::NONE).map_err(fail("forward"))?;
        prop_assert_eq!(z1.as_slice(), zall.sample(0).map_err(fail("sample"))?);
        prop_assert_eq!(ld1[0], ldall[0]);
        let c = case.shape[0];
        let hw = case.d() / c;
        for (k, (&zv, &xv)) in z1.as_slice().iter().zip(one.as_slice()).enumerate() {
            let ch = k / hw;
            let (rm, rv) = (bn.running_mean.values()[ch], bn.running_var.values()[ch]);
            let expect = bn.log_gamma.values()[ch].exp() * (xv - rm) / (rv + BATCHNORM_EPS).sqrt() + bn.beta.values()[ch];
            prop_assert!((zv - expect).abs() <= 1e-12 * (1.0 + expect.abs()), "z {zv} vs {expect}");
        }
        let expect_ld: f64 = (0..c)
            .map(|ch| hw as f64 * (bn.log_gamma.values()[ch] - 0.5 * (bn.running_var.values()[ch] + BATCHNORM_EPS).ln()))
            .sum();
        prop_assert!((ld1[0] - expect_ld).abs() <= 1e-12 * (1.0 + expect_ld.abs()));
        let (xr, _) = bn.inverse(&z1, Ctx::NONE).map_err(fail("inverse one"))?;
        prop_assert!(rel_err(xr.as_slice(), one.as_slice()) <= ROUNDTRIP_F64);
        // A training pass on one sample is an error, not a panic, and leaves the state alone.
        let before = bn.running_var.clone();
        let err = bn.forward_train(&one, Ctx::NONE, Pass::Train).err().map(|e| e.to_string());
        prop_assert!(err.as_ref().is_some_and(|m| m.contains("at least 2 samples")), "{err:?}");
        prop_assert_eq!(&bn.running_var, &before);
    }

    /// BatchNorm's training mode, on the batch map:
    /// - the running statistics follow PyTorch's update (momentum 0.1, unbiased variance);
    /// - each sample's log-det is log|det| of the map with the batch statistics held fixed
    ///   (replayed on dual numbers: exact; and by central differences);
    /// - the whole-batch map is blind to shifting a channel of the batch, and sees scaling it only
    ///   through eps (so the N*D x N*D Jacobian of the batch map is singular, and the per-sample
    ///   log-det above is the only one there is);
    /// - backward against the exact derivative of the whole-batch loss
    ///   `L(x) = sum(w_z z(x)) + sum(w_ld logdet(x))`, statistics recomputed from x, on dual
    ///   numbers (every input entry, every log_gamma and beta entry), and against central
    ///   differences (`grad_check`);
    /// - replay: `inverse_replay` inverts the training map, `Pass::Replay` reproduces it and its
    ///   backward, without state change; errors for a replay before training or of another batch
    ///   size;
    /// - f32 against f64 of the same training pass.
    #[test]
    fn batchnorm_training(case in case(2..=3, channel_shape(1..=4))) {
        let mut bn = trained_batchnorm(&case)?;
        let x = case.spread();
        let (n, d, c) = (case.n, case.d(), case.shape[0]);
        let hw = d / c;
        let wz = case.wz();
        let wld = &case.wld[..n];

        // Running statistics.
        let (rm0, rv0) = (bn.running_mean.clone(), bn.running_var.clone());
        bn.zero_grad();
        let (z, ld, cache) = bn.forward_train(&x, Ctx::NONE, Pass::Train).map_err(fail("train"))?;
        let count = (n * hw) as f64;
        for (ch, (mean, var)) in channel_moments(&x).into_iter().enumerate() {
            let m = BATCHNORM_MOMENTUM;
            let em = (1.0 - m) * rm0.values()[ch] + m * mean;
            let ev = (1.0 - m) * rv0.values()[ch] + m * var * count / (count - 1.0);
            prop_assert!((bn.running_mean.values()[ch] - em).abs() <= 1e-12 * (1.0 + em.abs()));
            prop_assert!((bn.running_var.values()[ch] - ev).abs() <= 1e-12 * ev);
            let (bm, bv) = bn.batch_statistics().ok_or_else(|| TestCaseError::fail("no batch statistics"))?;
            prop_assert!((bm[ch] - mean).abs() <= 1e-12 * (1.0 + mean.abs()) && (bv[ch] - var).abs() <= 1e-12 * var);
        }
        let dx = bn.backward(cache, &wz, wld).map_err(fail("backward"))?.x;
        let (glg, gbeta) = (bn.log_gamma.grad.as_slice().to_vec(), bn.beta.grad.as_slice().to_vec());

        // Per-sample log-det vs the Jacobian of the frozen-statistics map (Replay).
        let dual: BatchNorm<F1> = bn.cast();
        let exact = log_dets(
            &jacobian_dual(|t| Ok(dual.clone().forward_train(t, Ctx::NONE, Pass::Replay)?.0), &x).map_err(fail("dual"))?,
        )
        .map_err(fail("slogdet"))?;
        let frozen = bn.clone();
        let fd = log_dets(
            &jacobian_fd(|t| Ok(frozen.clone().forward_train(t, Ctx::NONE, Pass::Replay)?.0), &x, FD_STEP).map_err(fail("fd"))?,
        )
        .map_err(fail("slogdet"))?;
        for s in 0..n {
            prop_assert!(exact[s].sign != 0.0, "sample {s}: singular frozen-statistics Jacobian");
            prop_assert!((ld[s] - exact[s].log_abs).abs() <= LOGDET_EXACT, "sample {s}: {} vs exact {}", ld[s], exact[s].log_abs);
            prop_assert!((ld[s] - fd[s].log_abs).abs() <= LOGDET_FD, "sample {s}: {} vs FD {}", ld[s], fd[s].log_abs);
        }
        let total: f64 = ld.iter().sum();
        let total_exact: f64 = exact.iter().map(|j| j.log_abs).sum();
        prop_assert!((total - total_exact).abs() <= LOGDET_EXACT * n as f64, "batch total {total} vs {total_exact}");

        // The whole-batch training map along two directions of one channel of the batch: a shift
        // (v = 1) is invisible, dz = 0; a scaling about the mean (v = x - mean) is seen only
        // through eps, dz = g r (x - mean) eps / (var + eps) (exactly, in exact arithmetic).
        for (ch, (mean, var)) in channel_moments(&x).into_iter().enumerate() {
            let g_r = bn.log_gamma.values()[ch].exp() / (var + BATCHNORM_EPS).sqrt();
            for scale_dir in [false, true] {
                let mut xd: Tensor<F1> = x.map(F1::cst);
                let mut vmax = 0.0f64;
                for s in 0..n {
                    for p in 0..hw {
                        let k = s * d + ch * hw + p;
                        let v = if scale_dir { x.as_slice()[k] - mean } else { 1.0 };
                        xd.as_mut_slice()[k].dx = v;
                        vmax = vmax.max(v.abs());
                    }
                }
                let mut l = dual.clone();
                let (zd, _, _) = l.forward_train(&xd, Ctx::NONE, Pass::Train).map_err(fail("dual train"))?;
                let mut worst = 0.0f64;
                for s in 0..n {
                    for (j, zv) in zd.sample(s).map_err(fail("sample"))?.iter().enumerate() {
                        let k = s * d + j;
                        let expect = if scale_dir && j / hw == ch {
                            g_r * (x.as_slice()[k] - mean) * BATCHNORM_EPS / (var + BATCHNORM_EPS)
                        } else {
                            0.0
                        };
                        worst = worst.max((zv.dx - expect).abs());
                    }
                }
                prop_assert!(
                    worst <= ROUNDTRIP_F64 * (1.0 + g_r * vmax),
                    "channel {ch}, {} direction: dz off by {worst:e}", if scale_dir { "scale" } else { "shift" }
                );
            }
        }

        // backward vs the exact whole-batch derivative on dual numbers.
        let loss_dual = |layer: BatchNorm<F1>, xd: &Tensor<F1>| -> Result<f64, TestCaseError> {
            let mut layer = layer;
            let (zd, ldd, _) = layer.forward_train(xd, Ctx::NONE, Pass::Train).map_err(fail("dual train"))?;
            Ok(weighted(&zd, &ldd, wz.as_slice(), wld).dx)
        };
        for k in 0..x.len() {
            let mut xd: Tensor<F1> = x.map(F1::cst);
            xd.as_mut_slice()[k].dx = 1.0;
            let exact_g = loss_dual(dual.clone(), &xd)?;
            let e = mixed_error(dx.as_slice()[k], exact_g);
            prop_assert!(e <= DUAL_GRAD, "dL/dx[{k}]: backward {} vs dual {exact_g}: {e:e}", dx.as_slice()[k]);
        }
        let xd: Tensor<F1> = x.map(F1::cst);
        for ch in 0..c {
            let mut l = dual.clone();
            l.log_gamma.value.as_mut_slice()[ch].dx = 1.0;
            let e = mixed_error(glg[ch], loss_dual(l, &xd)?);
            prop_assert!(e <= DUAL_GRAD, "dL/dlog_gamma[{ch}]: {e:e}");
            let mut l = dual.clone();
            l.beta.value.as_mut_slice()[ch].dx = 1.0;
            let e = mixed_error(gbeta[ch], loss_dual(l, &xd)?);
            prop_assert!(e <= DUAL_GRAD, "dL/dbeta[{ch}]: {e:e}");
        }
        // ... and vs central differences of the same loss.
        let rep = grad_check(&mut bn.clone(), &x, None, &wz, wld, GRAD_STEP, 64).map_err(fail("grad check"))?;
        let (name, err) = rep.worst();
        prop_assert!(err <= GRAD_F64, "gradient of {name}: mixed error {err:e}");

        // Replay: same map, same backward, no state change.
        let state = (bn.running_mean.clone(), bn.running_var.clone());
        let xr = bn.inverse_replay(&z, Ctx::NONE).map_err(fail("inverse_replay"))?;
        let e = rel_err(xr.as_slice(), x.as_slice());
        prop_assert!(e <= ROUNDTRIP_F64, "inverse_replay(train(x)) relative error {e:e}");
        let mut replayed = bn.clone();
        replayed.zero_grad();
        let (z2, ld2, cache2) = replayed.forward_train(&xr, Ctx::NONE, Pass::Replay).map_err(fail("replay"))?;
        prop_assert!(rel_err(z2.as_slice(), z.as_slice()) <= ROUNDTRIP_F64);
        prop_assert!(max_abs(&ld2, &ld) <= ROUNDTRIP_F64 * (1.0 + ld[0].abs()));
        let dx2 = replayed.backward(cache2, &wz, wld).map_err(fail("replay backward"))?.x;
        let e = rel_err(dx2.as_slice(), dx.as_slice());
        prop_assert!(e <= ROUNDTRIP_F64, "replayed backward dx relative error {e:e}");
        prop_assert!(rel_err(replayed.log_gamma.grad.as_slice(), &glg) <= ROUNDTRIP_F64);
        prop_assert!(rel_err(replayed.beta.grad.as_slice(), &gbeta) <= ROUNDTRIP_F64);
        prop_assert_eq!((&replayed.running_mean, &replayed.running_var), (&state.0, &state.1));
        prop_assert_eq!((&bn.running_mean, &bn.running_var), (&state.0, &state.1));
        let short = x.slice_batch(0..1).map_err(fail("slice"))?;
        prop_assert!(bn.forward_train(&short, Ctx::NONE, Pass::Replay).is_err(), "replay of another batch size");
        let fresh = BatchNorm::<f64>::new(&case.shape).map_err(fail("build"))?;
        prop_assert!(fresh.inverse_replay(&z, Ctx::NONE).is_err(), "inverse_replay before any training pass");
        prop_assert!(fresh.clone().forward_train(&x, Ctx::NONE, Pass::Replay).is_err(), "replay before any training pass");

        // f32 training pass against the f64 pass of the same f32 layer.
        let mut b32 = bn.cast::<f32>();
        let x32: Tensor<f32> = x.cast();
        let mut b64 = b32.to_f64();
        let (z32, ld32, _) = b32.forward_train(&x32, Ctx::NONE, Pass::Train).map_err(fail("f32 train"))?;
        let (z64, ld64, _) = b64.forward_train(&x32.cast(), Ctx::NONE, Pass::Train).map_err(fail("f64 train"))?;
        let z32f: Vec<f64> = z32.as_slice().iter().map(|&v| v as f64).collect();
        let e = rel_err(&z32f, z64.as_slice());
        prop_assert!(e <= F32_TOL, "f32 vs f64 training output relative error {e:e}");
        let ld32f: Vec<f64> = ld32.iter().map(|&v| v as f64).collect();
        let scale = ld64.iter().map(|v| v.abs()).fold(1.0, f64::max);
        prop_assert!(max_abs(&ld32f, &ld64) <= F32_TOL * scale, "f32 vs f64 log-det {ld32f:?} vs {ld64:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(32)))]

    /// RealNVP's tabular preprocessing and NICE's last layer composed by a flow: Logit ->
    /// BatchNorm -> Scaling on x in [0.05, 0.95]. Every law of the composition (the gradient
    /// check in training mode), and the memory-efficient pattern: the flow's memory-efficient
    /// backward recovers each stage's input of the training pass by its inverse and gives the
    /// cached backward's gradients (checked by `check_flow_laws`); here also stage by stage,
    /// against the inputs the cached pass kept.
    #[test]
    fn logit_batchnorm_scaling(case in case(2..=3, channel_shape(1..=4)), alpha in 0.0..0.1f64) {
        let shape = &case.shape;
        let stages = vec![
            layer(Logit::new(shape, alpha).map_err(fail("logit"))?),
            layer(BatchNorm::new(shape).map_err(fail("batchnorm"))?),
            layer(Scaling::new(shape).map_err(fail("scaling"))?),
        ];
        let mut flow = flow_of(stages, shape)?;
        // Spread values mapped into [0.05, 0.95].
        let sp = case.spread();
        let (lo, hi) = sp.as_slice().iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let x = sp.map(|v| 0.05 + 0.9 * (v - lo) / (hi - lo).max(1e-300));
        flow.forward_train(&x, None, TrainMode::Cached).map_err(flow_fail("train"))?;
        perturb(&mut flow, &case.delta, 0.3);
        check_flow_laws(&mut flow, &x, &case.wld)?;

        let mut names = Vec::new();
        flow.visit_params("", &mut |n, _| names.push(n.to_string()));
        prop_assert_eq!(
            names,
            vec!["flow.1.log_gamma", "flow.1.beta", "flow.1.running_mean", "flow.1.running_var", "flow.2.s"]
        );
        check_flow_errors(&mut flow, &x)?;
    }
}
