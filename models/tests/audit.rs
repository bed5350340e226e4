//! The flow audit against known-good and deliberately wrong layers: a log-det that drops a term,
//! a log-det summed over the batch, an inverse that is not the inverse, a backward that forgets
//! the log-det's gradient. Each must be caught by the stage it is in, and by the whole flow where
//! the fault is visible there; trained NICE and RealNVP models must pass.

use exactflow_kernels::{Real, Result};
use exactflow_layers::bijector::check_input;
use exactflow_layers::{Bijector, Cache, Ctx, InputGrad, Mapped, Pass, StandardNormal, Tensor, layer};
use exactflow_models::audit::audit_flow;
use exactflow_models::train::{Silent, TrainConfig, train};
use exactflow_models::{Flow, ModelConfig};

/// What is wrong with the test layer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    DropsLogDetTerm,
    SumsLogDetOverBatch,
    WrongInverse,
    WrongBackward,
}

/// `z_i = x_i + tanh(x_i) / 2`: smooth, strictly increasing (derivative in [1, 1.5]), with an
/// input-dependent log-det `sum_i ln(1 + sech^2(x_i) / 2)`; plus a chosen fault.
#[derive(Clone, Debug)]
struct Bent {
    d: usize,
    fault: Fault,
}

exactflow_layers::no_params_unit!(Bent);

fn deriv<T: Real>(x: T) -> T {
    let t = x.tanh();
    T::one() + T::lit(0.5) * (T::one() - t * t)
}

impl<T: Real> Bijector<T> for Bent {
    fn kind(&self) -> &'static str {
        "Bent"
    }
    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (vec![self.d], vec![self.d])
    }
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input::<T, Self>(self, "Bent", x, cx, &[self.d])?;
        let z = x.map(|v| v + T::lit(0.5) * v.tanh());
        let mut ld: Vec<T> = x
            .samples()
            .map(|s| {
                let skip = usize::from(self.fault == Fault::DropsLogDetTerm);
                s.iter().skip(skip).fold(T::zero(), |acc, &v| acc + deriv(v).ln())
            })
            .collect();
        if self.fault == Fault::SumsLogDetOverBatch {
            let total = ld.iter().fold(T::zero(), |a, &b| a + b);
            ld.iter_mut().for_each(|l| *l = total);
        }
        Ok((z, ld))
    }
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input::<T, Self>(self, "Bent", z, cx, &[self.d])?;
        let x = if self.fault == Fault::WrongInverse {
            z.clone()
        } else {
            // Newton on x + tanh(x)/2 = z: the derivative is in [1, 1.5], so it converges fast.
            z.map(|zv| {
                let mut x = zv;
                for _ in 0..60 {
                    x -= (x + T::lit(0.5) * x.tanh() - zv) / deriv(x);
                }
                x
            })
        };
        let ld = x
            .samples()
            .map(|s| s.iter().fold(T::zero(), |acc, &v| acc - deriv(v).ln()))
            .collect();
        Ok((x, ld))
    }
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        let (z, ld) = self.forward(x, cx)?;
        Ok((z, ld, Cache::new("Bent", x.clone())))
    }
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let x: Tensor<T> = cache.take("Bent")?;
        let d = self.d;
        let mut dx = x.clone();
        for (k, v) in dx.as_mut_slice().iter_mut().enumerate() {
            let xv = x.as_slice()[k];
            let t = xv.tanh();
            let sech2 = T::one() - t * t;
            // d/dx ln(1 + sech^2 / 2) = -sech^2 tanh / (1 + sech^2 / 2)
            let dld = -sech2 * t / deriv(xv);
            let through_logdet = if self.fault == Fault::WrongBackward {
                T::zero()
            } else {
                dlogdet[k / d] * dld
            };
            *v = dz.as_slice()[k] * deriv(xv) + through_logdet;
        }
        Ok(InputGrad::input(dx))
    }
    fn to_f64(&self) -> Box<dyn Bijector<f64>> {
        Box::new(self.clone())
    }
    fn to_dual(&self) -> Box<dyn Bijector<exactflow_kernels::F1>> {
        Box::new(self.clone())
    }
    fn to_interval(&self) -> Box<dyn Bijector<exactflow_kernels::Interval>> {
        Box::new(self.clone())
    }
}

fn trained(model: &str) -> (ModelConfig, Flow<f64>) {
    let data = "moons"
        .parse::<exactflow_models::data::DataSpec>()
        .expect("spec")
        .load(1, 512)
        .expect("data");
    let cfg = ModelConfig::preset(model, "toy", &[2], 3).expect("preset");
    let mut flow = cfg.build::<f64>().expect("builds");
    let opts = TrainConfig {
        steps: Some(30),
        batch_size: 128,
        ..TrainConfig::default()
    };
    train(&mut flow, &cfg, &opts, &data.train, None, &mut Silent, None).expect("trains");
    (cfg, flow)
}

fn batch(n: usize, d: usize) -> Tensor<f64> {
    Tensor::from_fn(&[n, d], |k| ((k * 37 % 23) as f64 / 11.0) - 1.0).expect("shape")
}

fn flow_with(fault: Fault) -> Flow<f64> {
    let d = 3;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let coupling = exactflow_layers::AffineCoupling::<f64>::with_mlp(
        d,
        exactflow_layers::Mask::new(exactflow_layers::MaskKind::Halves, false),
        &exactflow_layers::nets::MlpConfig {
            hidden: vec![8],
            activation: exactflow_layers::nets::Activation::Tanh,
            zero_last: false,
        },
        &mut rng,
    )
    .expect("coupling");
    Flow::new(
        vec![layer(coupling), layer(Bent { d, fault })],
        Box::new(StandardNormal),
        &[d],
    )
    .expect("flow")
}

#[test]
fn trained_nice_and_realnvp_pass_their_audit() {
    for model in ["nice", "realnvp"] {
        let (_, flow) = trained(model);
        let a = audit_flow(&flow, &batch(4, 2), None).expect("audits");
        assert!(
            a.pass,
            "{model}: {:#?}",
            a.stages.iter().flat_map(|s| s.failures.clone()).collect::<Vec<_>>()
        );
        assert_eq!(a.stages.len(), flow.stages().len());
        assert!(a.flow.logdet_exact_error.expect("whole-flow log-det") < 1e-10);
        // f32 copies of the same models pass the f32 tolerances.
        let f32flow = {
            let cfg = ModelConfig::preset(model, "toy", &[2], 3).expect("preset");
            let mut f = cfg.build::<f32>().expect("builds");
            let snap = exactflow_models::checkpoint::snapshot_params(&flow);
            exactflow_models::checkpoint::restore_params(&mut f, &snap);
            f
        };
        let a32 = audit_flow(&f32flow, &batch(4, 2).cast(), None).expect("audits f32");
        assert_eq!(a32.precision, "f32");
        assert!(
            a32.pass,
            "{model} f32: {:#?}",
            a32.stages.iter().flat_map(|s| s.failures.clone()).collect::<Vec<_>>()
        );
        let json = serde_json::to_value(&a).expect("serializes");
        for key in ["precision", "samples", "tolerances", "stages", "flow", "pass"] {
            assert!(json.get(key).is_some(), "JSON lacks {key}");
        }
    }
}

#[test]
fn a_correct_custom_layer_passes() {
    let a = audit_flow(&flow_with(Fault::None), &batch(4, 3), None).expect("audits");
    assert!(a.pass, "{:#?}", a);
}

fn failing_checks(fault: Fault) -> (Vec<String>, Vec<String>) {
    let a = audit_flow(&flow_with(fault), &batch(4, 3), None).expect("audits");
    assert!(!a.pass, "{fault:?} not caught");
    assert!(
        a.stages[0].pass,
        "the healthy coupling is not blamed: {:?}",
        a.stages[0].failures
    );
    (a.stages[1].failures.clone(), a.flow.failures.clone())
}

#[test]
fn a_log_det_that_drops_a_term_is_caught() {
    let (stage, whole) = failing_checks(Fault::DropsLogDetTerm);
    assert!(stage.iter().any(|f| f.contains("exact Jacobian")), "{stage:?}");
    assert!(stage.iter().any(|f| f.contains("finite differences")), "{stage:?}");
    assert!(whole.iter().any(|f| f.contains("exact Jacobian")), "{whole:?}");
}

#[test]
fn a_log_det_summed_over_the_batch_is_caught() {
    let (stage, whole) = failing_checks(Fault::SumsLogDetOverBatch);
    assert!(stage.iter().any(|f| f.contains("exact Jacobian")), "{stage:?}");
    assert!(!whole.is_empty());
}

#[test]
fn a_layer_that_is_not_inverted_by_its_inverse_is_caught() {
    let (stage, whole) = failing_checks(Fault::WrongInverse);
    assert!(stage.iter().any(|f| f.contains("round trip")), "{stage:?}");
    assert!(whole.iter().any(|f| f.contains("round trip")), "{whole:?}");
}

#[test]
fn a_backward_that_forgets_the_log_det_gradient_is_caught() {
    let (stage, _) = failing_checks(Fault::WrongBackward);
    assert!(stage.iter().any(|f| f.contains("backward")), "{stage:?}");
}

#[test]
fn bad_inputs_are_errors() {
    let flow = flow_with(Fault::None);
    assert!(audit_flow(&flow, &batch(2, 4), None).is_err());
    let mut x = batch(2, 3);
    x.as_mut_slice()[1] = f64::NAN;
    assert!(audit_flow(&flow, &x, None).is_err());
}
