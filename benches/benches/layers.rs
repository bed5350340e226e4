//! Layers and training steps against the bare matrix products they perform.
//!
//! Ids are `layers/<function>/<shape>` and `train/<function>/<batch>`:
//!
//! | function | what one iteration does |
//! |---|---|
//! | `coupling_forward_f32` | an `AffineCoupling` on `[256, 784]` f32 (halves mask) with an MLP 392 -> 1024 -> 1024 -> 784 (ReLU): `forward` |
//! | `coupling_fwd_bwd_f32` | the same layer: `forward_train` + `backward` (all parameter gradients and dL/dx) |
//! | `gemms_forward_f32` | **baseline**: the three products of that forward alone (`[256, in] x [in, out]` per Linear), through faer called directly, in the same run |
//! | `gemms_fwd_bwd_f32` | **baseline**: those three plus the six of the backward (`dW = dY^T X`, `dX = dY W` per Linear) |
//! | `glow_step_forward_f32` | a Glow step (ActNorm, LU 1x1 convolution, affine coupling with a 512-channel conv3x3-ReLU-conv1x1-ReLU-conv3x3 conditioner) on `[16, 12, 16, 16]` f32: `forward` |
//! | `glow_step_fwd_bwd_f32` | the same step: `forward_train` + `backward` |
//! | `train/step_f64`, `train/step_f32` | one training step of the moons RealNVP (8 affine couplings, MLP 1 -> 128 -> 128 -> 2, batch 512, one thread) in that precision: `forward_train`, `backward`, Adam update |
//! | `train/gemms_faer_f64`, `train/gemms_faer_f32` | **the compute limit**: every matrix product of that step (forward and backward of the 24 Linears) through faer called directly, in the same run and precision |
//!
//! Run: `cargo bench -p exactflow-benches --bench layers`, then
//! `cargo run -p exactflow-benches --release --bin bench_report`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use exactflow_benches::data::{SEED, uniform_vec};
use exactflow_kernels::Real;
use exactflow_layers::nets::{Activation, MlpConfig};
use exactflow_layers::{
    ActNorm, AffineCoupling, Bijector, Cache, Conv1x1Lu, Ctx, GlowCoupling, Mask, MaskKind, Params, Pass, Tensor,
};
use exactflow_models::train::{Adam, AdamConfig};
use exactflow_models::{ModelConfig, TrainMode};
use faer::{Accum, MatMut, MatRef, Par};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `C = A B` for row-major `A [m, k]`, `B [k, n]`, by faer directly, one thread.
fn faer_gemm<T: Real + faer::traits::ComplexField>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize) {
    let a = MatRef::from_row_major_slice(a, m, k);
    let b = MatRef::from_row_major_slice(b, k, n);
    let dst = MatMut::from_column_major_slice_mut(c, n, m).transpose_mut();
    faer::linalg::matmul::matmul(dst, Accum::Replace, a, b, T::one(), Par::Seq);
}

/// Buffers for the products of an MLP with the given widths on a batch of `n`.
struct MlpProducts<T> {
    n: usize,
    widths: Vec<usize>,
    acts: Vec<Vec<T>>,
    weights_t: Vec<Vec<T>>,
    weights: Vec<Vec<T>>,
    grads: Vec<Vec<T>>,
    dw: Vec<Vec<T>>,
}

impl<T: Real + faer::traits::ComplexField> MlpProducts<T> {
    fn new(n: usize, widths: &[usize], seed: u64) -> Self {
        let l = widths.len() - 1;
        MlpProducts {
            n,
            widths: widths.to_vec(),
            acts: (0..=l)
                .map(|i| uniform_vec(n * widths[i], -1.0, 1.0, seed + i as u64))
                .collect(),
            weights_t: (0..l)
                .map(|i| uniform_vec(widths[i] * widths[i + 1], -0.1, 0.1, seed + 20 + i as u64))
                .collect(),
            weights: (0..l)
                .map(|i| uniform_vec(widths[i] * widths[i + 1], -0.1, 0.1, seed + 40 + i as u64))
                .collect(),
            grads: (0..=l)
                .map(|i| uniform_vec(n * widths[i], -1.0, 1.0, seed + 60 + i as u64))
                .collect(),
            dw: (0..l).map(|i| vec![T::zero(); widths[i] * widths[i + 1]]).collect(),
        }
    }

    /// The forward products `X_i W_i^T` (W^T stored as [in, out]).
    fn forward(&mut self) {
        let n = self.n;
        for i in 0..self.widths.len() - 1 {
            let (inp, out) = (self.widths[i], self.widths[i + 1]);
            let (lo, hi) = self.acts.split_at_mut(i + 1);
            faer_gemm(&lo[i], &self.weights_t[i], &mut hi[0], n, inp, out);
        }
    }

    /// The backward products: `dW_i = dY_i^T X_i` and `dX_i = dY_i W_i`.
    fn backward(&mut self) {
        let n = self.n;
        for i in (0..self.widths.len() - 1).rev() {
            let (inp, out) = (self.widths[i], self.widths[i + 1]);
            // dY^T [out, n] stored as the transpose of dY [n, out]: faer reads it through a view.
            let dy = MatRef::from_row_major_slice(&self.grads[i + 1], n, out).transpose();
            let x = MatRef::from_row_major_slice(&self.acts[i], n, inp);
            let dst = MatMut::from_column_major_slice_mut(&mut self.dw[i], inp, out).transpose_mut();
            faer::linalg::matmul::matmul(dst, Accum::Replace, dy, x, T::one(), Par::Seq);
            let (lo, hi) = self.grads.split_at_mut(i + 1);
            faer_gemm(&hi[0], &self.weights[i], &mut lo[i], n, out, inp);
        }
    }
}

fn coupling_benches(c: &mut Criterion) {
    let (n, d) = (256, 784);
    let mlp = MlpConfig {
        hidden: vec![1024, 1024],
        activation: Activation::Relu,
        zero_last: false,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut layer =
        AffineCoupling::<f32>::with_mlp(d, Mask::new(MaskKind::Halves, false), &mlp, &mut rng).expect("valid layer");
    let x = Tensor::new(&[n, d], uniform_vec::<f32>(n * d, -1.0, 1.0, SEED + 1)).expect("shape");
    let (z, _) = layer.forward(&x, Ctx::NONE).expect("forward");
    let dz = Tensor::new(z.shape(), uniform_vec::<f32>(n * d, -1.0, 1.0, SEED + 2)).expect("shape");
    let dld = vec![1.0f32; n];
    let mut products = MlpProducts::<f32>::new(n, &[392, 1024, 1024, 784], SEED + 3);
    let p = format!("{n}x{d}");
    let mut group = c.benchmark_group("layers");
    group.bench_function(BenchmarkId::new("coupling_forward_f32", &p), |b| {
        b.iter(|| layer.forward(black_box(&x), Ctx::NONE).expect("forward"))
    });
    group.bench_function(BenchmarkId::new("coupling_fwd_bwd_f32", &p), |b| {
        b.iter(|| {
            let (_, _, cache) = layer
                .forward_train(black_box(&x), Ctx::NONE, Pass::Train)
                .expect("forward");
            layer.backward(cache, &dz, &dld).expect("backward")
        })
    });
    group.bench_function(BenchmarkId::new("gemms_forward_f32", &p), |b| {
        b.iter(|| products.forward())
    });
    group.bench_function(BenchmarkId::new("gemms_fwd_bwd_f32", &p), |b| {
        b.iter(|| {
            products.forward();
            products.backward();
        })
    });
    group.finish();
}

/// A Glow step's three layers applied in turn: what a flow's walk does between two stages,
/// without the flow around it.
struct GlowStep(Vec<Box<dyn Bijector<f32>>>);

impl GlowStep {
    fn forward(&self, x: &Tensor<f32>) -> Tensor<f32> {
        self.0
            .iter()
            .fold(x.clone(), |h, l| l.forward(&h, Ctx::NONE).expect("forward").0)
    }

    fn forward_train(&mut self, x: &Tensor<f32>) -> (Tensor<f32>, Vec<Cache>) {
        let mut caches = Vec::new();
        let mut h = x.clone();
        for l in &mut self.0 {
            let (z, _, c) = l.forward_train(&h, Ctx::NONE, Pass::Train).expect("forward");
            caches.push(c);
            h = z;
        }
        (h, caches)
    }

    fn backward(&mut self, caches: Vec<Cache>, dz: &Tensor<f32>, dld: &[f32]) -> Tensor<f32> {
        let mut g = dz.clone();
        for (l, c) in self.0.iter_mut().zip(caches).rev() {
            g = l.backward(c, &g, dld).expect("backward").x;
        }
        g
    }
}

fn glow_step_benches(c: &mut Criterion) {
    let shape = [12, 16, 16];
    let n = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED + 5);
    let layers: Vec<Box<dyn Bijector<f32>>> = vec![
        Box::new(ActNorm::<f32>::new(&shape).expect("actnorm")),
        Box::new(Conv1x1Lu::<f32>::new(&shape, &mut rng).expect("1x1 conv")),
        Box::new(GlowCoupling::<f32>::with_glow_net(&shape, 512, &mut rng).expect("coupling")),
    ];
    let mut step = GlowStep(layers);
    let len = n * shape.iter().product::<usize>();
    let x = Tensor::new(&[n, 12, 16, 16], uniform_vec::<f32>(len, -1.0, 1.0, SEED + 6)).expect("shape");
    // The first training pass initializes ActNorm; every timed pass after it is the same map.
    let (z, _) = step.forward_train(&x);
    let dz = Tensor::new(z.shape(), uniform_vec::<f32>(len, -1.0, 1.0, SEED + 7)).expect("shape");
    let dld = vec![1.0f32; n];
    let p = "16x12x16x16";
    let mut group = c.benchmark_group("layers");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("glow_step_forward_f32", p), |b| {
        b.iter(|| step.forward(black_box(&x)))
    });
    group.bench_function(BenchmarkId::new("glow_step_fwd_bwd_f32", p), |b| {
        b.iter(|| {
            let (_, caches) = step.forward_train(black_box(&x));
            step.backward(caches, &dz, &dld)
        })
    });
    group.finish();
}

fn train_step_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("train");
    train_step_pair::<f64>(&mut group);
    train_step_pair::<f32>(&mut group);
    group.finish();
}

/// `train/step_{T}` and its compute limit `train/gemms_faer_{T}` on the same shapes.
fn train_step_pair<T: Real + faer::traits::ComplexField>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    let n = 512;
    let cfg = ModelConfig::preset("realnvp", "toy", &[2], 0).expect("preset");
    let mut flow = cfg.build::<T>().expect("builds");
    // Start from trained-looking parameters rather than the zero-initialized identity.
    let mut k = 0usize;
    flow.visit_params_mut("", &mut |_, p| {
        for v in p.value.as_mut_slice() {
            *v += T::lit(0.05 * (((k * 7919) % 200) as f64 / 100.0 - 1.0));
            k += 1;
        }
    });
    let x = Tensor::new(&[n, 2], uniform_vec::<T>(2 * n, -1.0, 2.0, SEED + 8)).expect("shape");
    let mut adam = Adam::<T>::new(AdamConfig::default());
    let w = vec![T::lit(-1.0 / n as f64); n];
    // Every product of the step: 8 MLPs 1 -> 128 -> 128 -> 2 forward and backward.
    let mut products: Vec<MlpProducts<T>> = (0..8)
        .map(|i| MlpProducts::new(n, &[1, 128, 128, 2], SEED + 100 + 10 * i))
        .collect();
    group.bench_function(BenchmarkId::new(format!("step_{}", T::NAME), n), |b| {
        b.iter(|| {
            flow.zero_grad();
            let (_, cache) = flow
                .forward_train(black_box(&x), None, TrainMode::Cached)
                .expect("forward");
            flow.backward(cache, &w).expect("backward");
            // As the trainer: the norm for clipping (at exactflow's default of 100), then Adam.
            adam.clip_and_step(&mut flow, 1e-6, Some(100.0)).expect("finite step");
        })
    });
    group.bench_function(BenchmarkId::new(format!("gemms_faer_{}", T::NAME), n), |b| {
        b.iter(|| {
            for p in products.iter_mut() {
                p.forward();
                p.backward();
            }
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = coupling_benches, glow_step_benches, train_step_benches
}
criterion_main!(benches);
