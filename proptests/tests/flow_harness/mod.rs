//! The laws of a composition of stages, checked on `exactflow_models::Flow`: the walks the
//! models train and score with (forward, inverse, cached and memory-efficient training passes),
//! not a separate composition type.
//!
//! Tolerances are `layer_harness`'s (see its module documentation): the composition adds O(K)
//! roundings for K stages, far inside them. Besides those:
//! - the flow's latent equals the members' forward passes chained by hand, bit for bit (the
//!   walk does exactly those operations), and its log-det their sum within 1e-12 relative to
//!   `1 + |sum|` (the same additions, possibly grouped differently);
//! - the memory-efficient backward's gradients equal the cached backward's within
//!   `ROUNDTRIP_F64` relative (they differ by the rounding of the inverses that recompute each
//!   stage's input).

#![allow(dead_code)]

use exactflow_layers::gradcheck::compare_with_fd;
use exactflow_layers::jacobian::{jacobian_dual, jacobian_fd, log_dets};
use exactflow_layers::{Ctx, InputGrad, ParamKind, Params, Stage, StandardNormal, Tensor};
use exactflow_models::{Flow, TrainMode};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::layer_harness::{FD_STEP, GRAD_F64, GRAD_STEP, LOGDET_EXACT, LOGDET_FD, ROUNDTRIP_F64, rel_err};

/// Turns a models error into a test failure that says which step failed.
pub fn flow_fail(what: &str) -> impl Fn(exactflow_models::Error) -> TestCaseError + '_ {
    move |e| TestCaseError::fail(format!("{what}: {e}"))
}

/// A flow of `stages` over samples of shape `shape` with a standard normal base.
pub fn flow_of(stages: Vec<Box<dyn Stage<f64>>>, shape: &[usize]) -> Result<Flow<f64>, TestCaseError> {
    Flow::new(stages, Box::new(StandardNormal), shape).map_err(flow_fail("flow"))
}

/// `sum_i w_i log p(x_i)` in training mode (the map the backward pass differentiates).
fn train_loss(flow: &mut Flow<f64>, x: &Tensor<f64>, w: &[f64]) -> exactflow_kernels::Result<f64> {
    let (log_p, _) = flow
        .forward_train(x, None, TrainMode::Cached)
        .map_err(|e| exactflow_kernels::Error::invalid("flow", "forward_train", e.to_string()))?;
    Ok(log_p.iter().zip(w).map(|(a, b)| a * b).sum())
}

/// Every trainable parameter's gradient, by name.
type NamedGrads = Vec<(String, Vec<f64>)>;

/// The flow's gradients after one training pass in `mode`: dL/dx and every trainable parameter's.
fn gradients(
    flow: &mut Flow<f64>,
    x: &Tensor<f64>,
    w: &[f64],
    mode: TrainMode,
) -> Result<(InputGrad<f64>, NamedGrads), TestCaseError> {
    flow.zero_grad();
    let (_, cache) = flow.forward_train(x, None, mode).map_err(flow_fail("forward_train"))?;
    let grad = flow.backward(cache, w).map_err(flow_fail("backward"))?;
    let mut params = Vec::new();
    flow.visit_params("", &mut |n, p| {
        if p.kind == ParamKind::Trainable {
            params.push((n.to_string(), p.grad.as_slice().to_vec()));
        }
    });
    Ok((grad, params))
}

/// Every law of the flow's composition at `x` (f64), with per-sample weights `w` for the
/// gradient check. The flow must already have run one training pass (ActNorm initialized).
pub fn check_flow_laws(flow: &mut Flow<f64>, x: &Tensor<f64>, w: &[f64]) -> Result<(), TestCaseError> {
    let n = x.batch();
    let w = &w[..n];
    // The walk is the composition of its members.
    let (latent, ld) = flow.encode_with_log_det(x, None).map_err(flow_fail("encode"))?;
    let mut h = x.clone();
    let mut sum = vec![0.0; n];
    let mut factored = Vec::new();
    for s in flow.stages() {
        let step = s
            .forward(&h, Ctx::NONE)
            .map_err(|e| TestCaseError::fail(format!("member forward: {e}")))?;
        sum.iter_mut().zip(&step.log_det).for_each(|(a, b)| *a += b);
        factored.extend(step.factored.map(|f| f.z));
        h = step.out;
    }
    prop_assert_eq!(
        h.as_slice(),
        latent.z.as_slice(),
        "the flow is the composition of its stages"
    );
    prop_assert_eq!(factored, latent.factored.clone());
    for (a, b) in ld.iter().zip(&sum) {
        prop_assert!(
            (a - b).abs() <= 1e-12 * (1.0 + b.abs()),
            "log-det {a} vs sum of the stages' {b}"
        );
    }
    // decode(encode(x)) = x
    let back = flow.decode(&latent, None).map_err(flow_fail("decode"))?;
    let e = rel_err(back.as_slice(), x.as_slice());
    prop_assert!(e <= ROUNDTRIP_F64, "decode(encode(x)) relative error {e:e}");
    // The log-det of x -> (z, factored latents) against the exact and the FD Jacobians.
    let dual = flow.to_dual();
    let as_kernel = |e: exactflow_models::Error| exactflow_kernels::Error::invalid("flow", "encode", e.to_string());
    let exact = jacobian_dual(
        |t| {
            dual.encode_with_log_det(t, None)
                .and_then(|l| l.0.flatten())
                .map_err(as_kernel)
        },
        x,
    )
    .and_then(|j| log_dets(&j))
    .map_err(|e| TestCaseError::fail(format!("dual Jacobian: {e}")))?;
    let fd = jacobian_fd(
        |t| {
            flow.encode_with_log_det(t, None)
                .and_then(|l| l.0.flatten())
                .map_err(as_kernel)
        },
        x,
        FD_STEP,
    )
    .and_then(|j| log_dets(&j))
    .map_err(|e| TestCaseError::fail(format!("FD Jacobian: {e}")))?;
    for (s, ((l, j), f)) in ld.iter().zip(&exact).zip(&fd).enumerate() {
        prop_assert!(j.sign != 0.0, "Jacobian of sample {s} is singular");
        prop_assert!(
            (l - j.log_abs).abs() <= LOGDET_EXACT,
            "sample {s}: log-det {l} vs exact {}",
            j.log_abs
        );
        prop_assert!(
            (l - f.log_abs).abs() <= LOGDET_FD,
            "sample {s}: log-det {l} vs FD {}",
            f.log_abs
        );
    }
    // The cached backward against central differences of the training loss, for the input and
    // every parameter.
    let (grad, cached) = gradients(flow, x, w, TrainMode::Cached)?;
    let rep = compare_with_fd(flow, x, None, &grad, GRAD_STEP, 64, |f, x, _| train_loss(f, x, w))
        .map_err(|e| TestCaseError::fail(format!("grad check: {e}")))?;
    let (name, err) = rep.worst();
    prop_assert!(err <= GRAD_F64, "gradient of {name}: mixed error {err:e}");
    // The memory-efficient backward recomputes the same gradients.
    let (grad_me, recomputed) = gradients(flow, x, w, TrainMode::MemoryEfficient)?;
    let e = rel_err(grad_me.x.as_slice(), grad.x.as_slice());
    prop_assert!(e <= ROUNDTRIP_F64, "memory-efficient dL/dx relative error {e:e}");
    for ((name, a), (_, b)) in recomputed.iter().zip(&cached) {
        let e = rel_err(a, b);
        prop_assert!(
            e <= ROUNDTRIP_F64,
            "memory-efficient gradient of {name}: relative error {e:e}"
        );
    }
    Ok(())
}

/// A wrong input shape, a NaN input and an infinite parameter are errors, not panics.
pub fn check_flow_errors(flow: &mut Flow<f64>, x: &Tensor<f64>) -> Result<(), TestCaseError> {
    let mut bad_shape = x.shape().to_vec();
    *bad_shape.last_mut().expect("rank >= 2") += 1;
    let wrong = Tensor::zeros(&bad_shape).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        flow.log_prob(&wrong, None).is_err(),
        "log_prob accepted shape {bad_shape:?}"
    );
    let mut nan_x = x.clone();
    nan_x.as_mut_slice()[0] = f64::NAN;
    prop_assert!(flow.log_prob(&nan_x, None).is_err(), "log_prob accepted a NaN input");
    prop_assert!(
        flow.forward_train(&nan_x, None, TrainMode::Cached).is_err(),
        "training accepted a NaN input"
    );
    let mut poisoned = false;
    flow.visit_params_mut("", &mut |_, p| {
        if !poisoned && !p.value.is_empty() && p.kind == ParamKind::Trainable {
            p.value.as_mut_slice()[0] = f64::INFINITY;
            poisoned = true;
        }
    });
    if poisoned {
        prop_assert!(
            flow.log_prob(x, None).is_err(),
            "log_prob accepted an infinite parameter"
        );
    }
    Ok(())
}

/// Copies every parameter of `from` into `to` by name (rounded to f32), so that an f32 flow
/// built from the same config computes with the f64 flow's (perturbed) parameters.
pub fn copy_params_to_f32(from: &Flow<f64>, to: &mut Flow<f32>) {
    let mut values = std::collections::HashMap::new();
    from.visit_params("", &mut |name, p| {
        values.insert(name.to_string(), p.value.as_slice().to_vec());
    });
    to.visit_params_mut("", &mut |name, p| {
        if let Some(v) = values.get(name) {
            p.value
                .as_mut_slice()
                .iter_mut()
                .zip(v)
                .for_each(|(a, b)| *a = *b as f32);
        }
    });
}

/// The f32 flow agrees with the f64 one (same parameters) on log p(x), relative `F32_TOL` of
/// `max(1, |log p|)`, and round-trips in f32 within `F32_TOL`.
pub fn check_flow_f32(flow32: &Flow<f32>, flow64: &Flow<f64>, x: &Tensor<f64>) -> Result<(), TestCaseError> {
    use crate::layer_harness::F32_TOL;
    let x32: Tensor<f32> = x.cast();
    let lp32 = flow32.log_prob(&x32, None).map_err(flow_fail("f32 log_prob"))?;
    let lp64 = flow64.log_prob(&x32.cast(), None).map_err(flow_fail("f64 log_prob"))?;
    let scale = lp64.iter().map(|v| v.abs()).fold(1.0, f64::max);
    for (a, b) in lp32.iter().zip(&lp64) {
        prop_assert!((*a as f64 - b).abs() <= F32_TOL * scale, "f32 log p {a} vs f64 {b}");
    }
    let latent = flow32.encode(&x32, None).map_err(flow_fail("f32 encode"))?;
    let back = flow32.decode(&latent, None).map_err(flow_fail("f32 decode"))?;
    let back: Vec<f64> = back.as_slice().iter().map(|&v| v as f64).collect();
    let x32f: Vec<f64> = x32.as_slice().iter().map(|&v| v as f64).collect();
    let e = rel_err(&back, &x32f);
    prop_assert!(e <= F32_TOL, "f32 round trip relative error {e:e}");
    Ok(())
}

/// `sum_i w_i log p(x_i | c_i)` in training mode.
fn conditional_loss(
    flow: &mut Flow<f64>,
    x: &Tensor<f64>,
    c: &Tensor<f64>,
    w: &[f64],
) -> exactflow_kernels::Result<f64> {
    let (log_p, _) = flow
        .forward_train(x, Some(c), TrainMode::Cached)
        .map_err(|e| exactflow_kernels::Error::invalid("flow", "forward_train", e.to_string()))?;
    Ok(log_p.iter().zip(w).map(|(a, b)| a * b).sum())
}

/// The laws of a conditional flow `p(x | c)` at `(x, c)` (f64), with per-sample weights `w`:
///
/// - `decode(encode(x, c), c) = x` within `ROUNDTRIP_F64`;
/// - the cached backward's dL/dx, dL/dc and every parameter's gradient against central
///   differences of the training loss (`GRAD_F64`, mixed error);
/// - the memory-efficient backward's dL/dx and dL/dc equal the cached ones within
///   `ROUNDTRIP_F64` (relative);
/// - a missing context, a context with another number of rows or another width, and a context
///   holding NaN are errors, the NaN one naming its row.
pub fn check_conditional_flow(
    flow: &mut Flow<f64>,
    x: &Tensor<f64>,
    c: &Tensor<f64>,
    w: &[f64],
) -> Result<(), TestCaseError> {
    let n = x.batch();
    let w = &w[..n];
    let latent = flow.encode(x, Some(c)).map_err(flow_fail("encode"))?;
    let back = flow.decode(&latent, Some(c)).map_err(flow_fail("decode"))?;
    let e = rel_err(back.as_slice(), x.as_slice());
    prop_assert!(e <= ROUNDTRIP_F64, "decode(encode(x, c), c) relative error {e:e}");

    let mut grads = Vec::new();
    for mode in [TrainMode::Cached, TrainMode::MemoryEfficient] {
        flow.zero_grad();
        let (_, cache) = flow
            .forward_train(x, Some(c), mode)
            .map_err(flow_fail("forward_train"))?;
        grads.push(flow.backward(cache, w).map_err(flow_fail("backward"))?);
    }
    let me = grads.pop().expect("two modes");
    let cached = grads.pop().expect("two modes");
    let dc = cached.context.clone();
    prop_assert!(dc.is_some(), "a conditional flow returned no context gradient");
    // The memory-efficient pass left the same parameter gradients; recompute the cached ones
    // so that the comparison below reads the cached pass's.
    flow.zero_grad();
    let (_, cache) = flow
        .forward_train(x, Some(c), TrainMode::Cached)
        .map_err(flow_fail("forward_train"))?;
    let cached = flow.backward(cache, w).map_err(flow_fail("backward"))?;
    let rep = compare_with_fd(flow, x, Some(c), &cached, GRAD_STEP, 64, |f, x, cp| {
        conditional_loss(f, x, cp.unwrap_or(c), w)
    })
    .map_err(|e| TestCaseError::fail(format!("grad check: {e}")))?;
    let (name, err) = rep.worst();
    prop_assert!(err <= GRAD_F64, "gradient of {name}: mixed error {err:e}");
    prop_assert!(
        rep.context_error <= GRAD_F64,
        "context gradient: mixed error {:e}",
        rep.context_error
    );
    let e = rel_err(me.x.as_slice(), cached.x.as_slice());
    prop_assert!(e <= ROUNDTRIP_F64, "memory-efficient dL/dx relative error {e:e}");
    let (a, b) = (me.context.as_ref(), cached.context.as_ref());
    let e = rel_err(a.map_or(&[][..], |t| t.as_slice()), b.map_or(&[][..], |t| t.as_slice()));
    prop_assert!(e <= ROUNDTRIP_F64, "memory-efficient dL/dc relative error {e:e}");

    // Bad contexts.
    let cw = c.sample_len();
    prop_assert!(
        flow.log_prob(x, None).is_err(),
        "a conditional flow scored without a context"
    );
    let rows = Tensor::<f64>::zeros(&[n + 1, cw]).expect("shape");
    let msg = flow
        .log_prob(x, Some(&rows))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    prop_assert!(
        msg.contains(&n.to_string()) && msg.contains(&(n + 1).to_string()),
        "a context of {} rows for {n} samples: {msg:?}",
        n + 1
    );
    let wide = Tensor::<f64>::zeros(&[n, cw + 1]).expect("shape");
    let msg = flow
        .log_prob(x, Some(&wide))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    prop_assert!(
        msg.contains(&cw.to_string()) && msg.contains(&(cw + 1).to_string()),
        "a context of width {} for width {cw}: {msg:?}",
        cw + 1
    );
    let mut nan = c.clone();
    let row = n - 1;
    nan.as_mut_slice()[row * cw] = f64::NAN;
    let err = flow.log_prob(x, Some(&nan)).err();
    prop_assert!(
        matches!(
            err,
            Some(exactflow_models::Error::Numerical(exactflow_kernels::Error::NonFinite { index: (r, 0), .. })) if r == row
        ),
        "NaN in context row {row}: {err:?}"
    );
    prop_assert!(
        flow.sample(
            2,
            1.0,
            &mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0),
            None
        )
        .is_err()
    );
    Ok(())
}
