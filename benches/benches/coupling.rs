//! Affine coupling kernels: SIMD against scalar, and against a memory-bandwidth baseline.
//!
//! Ids are `coupling/<function>_<f32|f64>/<N>x<D>`, shapes `[N, D]` in [`COUPLING_SHAPES`],
//! throughput in elements (`N * D` per iteration):
//!
//! | function | what one iteration does |
//! |---|---|
//! | `forward_simd` | `affine_forward`: `y = x * exp(s) + t`, `log_det[i] += sum_j s[i, j]`, on the best backend `Backend::detect()` picks (AVX-512, AVX2 or scalar) |
//! | `forward_scalar` | the same on `Backend::Scalar`: a plain loop over std's `exp` |
//! | `inverse_simd` | `affine_inverse`: `x = (y - t) * exp(-s)`, `log_det[i] -= sum_j s[i, j]`, best backend |
//! | `inverse_scalar` | the same on `Backend::Scalar` |
//! | `copy` | **the memory-bandwidth baseline**: the three inputs the kernel reads (`x`, `s`, `t`, `N * D` elements each) are copied with `copy_from_slice` into three destination buffers of the same size. It reads exactly the bytes the kernel reads and writes three times what the kernel writes, with no arithmetic: a coupling kernel within a small factor of it is limited by memory, not by `exp` |
//!
//! `s` is uniform in `[-2, 2)` (a bounded log-scale, as RealNVP's tanh-bounded `s` is), `x` and
//! `t` uniform in `[-1, 1)`; the inputs are seeded and identical across functions.
//!
//! Run: `cargo bench -p exactflow-benches --bench coupling`, then
//! `cargo run -p exactflow-benches --release --bin bench_report`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use exactflow_benches::data::{SEED, uniform_vec};
use exactflow_benches::params::{COUPLING_SHAPES, shape2};
use exactflow_kernels::coupling::{affine_forward, affine_forward_on, affine_inverse, affine_inverse_on};
use exactflow_kernels::simd::{Backend, SimdFloat};

fn bench_type<T: SimdFloat>(c: &mut Criterion) {
    let ty = T::NAME;
    let mut group = c.benchmark_group("coupling");
    for (k, &(n, d)) in COUPLING_SHAPES.iter().enumerate() {
        let len = n * d;
        let seed = SEED + 10 * k as u64;
        let x: Vec<T> = uniform_vec(len, -1.0, 1.0, seed);
        let s: Vec<T> = uniform_vec(len, -2.0, 2.0, seed + 1);
        let t: Vec<T> = uniform_vec(len, -1.0, 1.0, seed + 2);
        let mut out = vec![T::zero(); len];
        let mut log_det = vec![T::zero(); n];
        let (mut cx, mut cs, mut ct) = (vec![T::zero(); len], vec![T::zero(); len], vec![T::zero(); len]);
        let param = shape2(n, d);
        group.throughput(Throughput::Elements(len as u64));

        group.bench_function(BenchmarkId::new(format!("forward_simd_{ty}"), &param), |b| {
            b.iter(|| affine_forward(d, black_box(&x), black_box(&s), black_box(&t), &mut out, &mut log_det))
        });
        group.bench_function(BenchmarkId::new(format!("forward_scalar_{ty}"), &param), |b| {
            b.iter(|| {
                affine_forward_on(
                    Backend::Scalar,
                    d,
                    black_box(&x),
                    black_box(&s),
                    black_box(&t),
                    &mut out,
                    &mut log_det,
                )
            })
        });
        group.bench_function(BenchmarkId::new(format!("inverse_simd_{ty}"), &param), |b| {
            b.iter(|| affine_inverse(d, black_box(&x), black_box(&s), black_box(&t), &mut out, &mut log_det))
        });
        group.bench_function(BenchmarkId::new(format!("inverse_scalar_{ty}"), &param), |b| {
            b.iter(|| {
                affine_inverse_on(
                    Backend::Scalar,
                    d,
                    black_box(&x),
                    black_box(&s),
                    black_box(&t),
                    &mut out,
                    &mut log_det,
                )
            })
        });
        group.bench_function(BenchmarkId::new(format!("copy_{ty}"), &param), |b| {
            b.iter(|| {
                cx.copy_from_slice(black_box(&x));
                cs.copy_from_slice(black_box(&s));
                ct.copy_from_slice(black_box(&t));
                black_box((&mut cx, &mut cs, &mut ct));
            })
        });
        black_box((&out, &log_det));
    }
    group.finish();
}

fn bench_coupling(c: &mut Criterion) {
    bench_type::<f32>(c);
    bench_type::<f64>(c);
}

criterion_group! {
    name = benches;
    // Each kernel runs for microseconds to a few milliseconds: 2 s per id is plenty and keeps the
    // 30 ids at about two minutes. Command-line flags (--measurement-time ...) override these.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = bench_coupling
}
criterion_main!(benches);
