//! Matrix multiply: exactflow's row-major gemm dispatch against faer's matmul called directly.
//!
//! Ids are `gemm/<ours|faer>_<f32|f64>_t<threads>/<m>x<k>x<n>` for `C[m x n] = A[m x k] B[k x n]`,
//! shapes in [`GEMM_SHAPES`] (three squares and the MLP layers [256 x 392]·[392 x 1024] and
//! [256 x 1024]·[1024 x 1024]), threads in [`GEMM_THREADS`]. Throughput is counted as "elements"
//! = flops = `2 m k n`, so criterion's `Gelem/s` reads as GFLOP/s.
//!
//! | function | what one iteration does |
//! |---|---|
//! | `ours` | `exactflow_kernels::gemm::gemm(1, A, B, 0, C, par)` on row-major `MatSlice`s, `par` = `Parallelism::Sequential` (t1) or `Parallelism::Rayon(2)` (t2): shape checks, then faer |
//! | `faer` | `faer::linalg::matmul::matmul` with `Accum::Replace` on `MatRef::from_row_major_slice` views of the same buffers and the destination `MatMut::from_column_major_slice_mut(c, n, m).transpose_mut()` (a row-major view), `Par::Seq` or `Par::rayon(2)` |
//!
//! Both write the same row-major C from the same row-major A and B; the ratio ours / faer is the
//! cost of the dispatch layer (expected: about 1).
//!
//! Run: `cargo bench -p exactflow-benches --bench gemm`, then
//! `cargo run -p exactflow-benches --release --bin bench_report`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use exactflow_benches::data::{SEED, uniform_vec};
use exactflow_benches::params::{GEMM_SHAPES, GEMM_THREADS, shape3};
use exactflow_kernels::Real;
use exactflow_kernels::gemm::{MatSlice, MatSliceMut, Parallelism, gemm};
use faer::{Accum, MatMut, MatRef, Par};

fn ours<T: Real>(a: &[T], b: &[T], c: &mut [T], (m, k, n): (usize, usize, usize), par: Parallelism) {
    gemm(
        T::one(),
        MatSlice::new(a, m, k).expect("A is m x k"),
        MatSlice::new(b, k, n).expect("B is k x n"),
        T::zero(),
        MatSliceMut::new(c, m, n).expect("C is m x n"),
        par,
    )
    .expect("shapes agree");
}

fn faer_direct<T: Real + faer::traits::ComplexField>(
    a: &[T],
    b: &[T],
    c: &mut [T],
    (m, k, n): (usize, usize, usize),
    par: Par,
) {
    let a = MatRef::from_row_major_slice(a, m, k);
    let b = MatRef::from_row_major_slice(b, k, n);
    // A row-major m x n matrix is the transpose of a column-major n x m one. (faer 0.24.4's
    // `from_row_major_slice_with_stride_mut` builds a column-major view, so it is avoided.)
    let dst = MatMut::from_column_major_slice_mut(c, n, m).transpose_mut();
    faer::linalg::matmul::matmul(dst, Accum::Replace, a, b, T::one(), par);
}

fn bench_type<T: Real + faer::traits::ComplexField>(c: &mut Criterion) {
    let ty = T::NAME;
    let mut group = c.benchmark_group("gemm");
    for (s, &(m, k, n)) in GEMM_SHAPES.iter().enumerate() {
        let seed = SEED + 10 * s as u64;
        let a: Vec<T> = uniform_vec(m * k, -1.0, 1.0, seed);
        let b: Vec<T> = uniform_vec(k * n, -1.0, 1.0, seed + 1);
        let mut c_ours = vec![T::zero(); m * n];
        let mut c_faer = vec![T::zero(); m * n];

        // Same result from both before timing (a wrong destination view would show here).
        ours(&a, &b, &mut c_ours, (m, k, n), Parallelism::Sequential);
        faer_direct(&a, &b, &mut c_faer, (m, k, n), Par::Seq);
        let tol = 1e-4 * (k as f64).sqrt();
        for (i, (p, q)) in c_ours.iter().zip(&c_faer).enumerate() {
            assert!(
                (p.as_f64() - q.as_f64()).abs() <= tol,
                "{ty} {m}x{k}x{n}: C[{i}] {p:?} vs {q:?}"
            );
        }

        let flops = 2 * (m * k * n) as u64;
        group.throughput(Throughput::Elements(flops));
        if flops >= 1 << 30 {
            group.sample_size(20).sampling_mode(SamplingMode::Flat);
        } else {
            group.sample_size(100).sampling_mode(SamplingMode::Auto);
        }
        let param = shape3(m, k, n);
        for &threads in &GEMM_THREADS {
            let (our_par, faer_par) = if threads == 1 {
                (Parallelism::Sequential, Par::Seq)
            } else {
                (Parallelism::Rayon(threads), Par::rayon(threads))
            };
            group.bench_function(BenchmarkId::new(format!("ours_{ty}_t{threads}"), &param), |bench| {
                bench.iter(|| ours(black_box(&a), black_box(&b), &mut c_ours, (m, k, n), our_par))
            });
            group.bench_function(BenchmarkId::new(format!("faer_{ty}_t{threads}"), &param), |bench| {
                bench.iter(|| faer_direct(black_box(&a), black_box(&b), &mut c_faer, (m, k, n), faer_par))
            });
        }
        black_box((&c_ours, &c_faer));
    }
    group.finish();
}

fn bench_gemm(c: &mut Criterion) {
    bench_type::<f32>(c);
    bench_type::<f64>(c);
}

criterion_group! {
    name = benches;
    // 40 ids: 1 s warm-up and 3 s of measurement each keep the bench near three minutes.
    // Command-line flags (--measurement-time ...) override these.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_gemm
}
criterion_main!(benches);
