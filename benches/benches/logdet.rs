//! Log-determinants: the O(n) triangular path against dense O(n^3) LU, ours against faer's and
//! nalgebra's. Single-threaded throughout.
//!
//! Ids are `logdet/<function>/<n>`, n in [`LOGDET_SIZES`]:
//!
//! | function | what one iteration does |
//! |---|---|
//! | `triangular_f64` | `log_det_lower` of a lower triangular matrix: the sum of `ln|l_ii|`, O(n) |
//! | `lu_ours_f64`, `lu_ours_f32` | `log_det` (= `Lu::factor_with(.., LuAlgorithm::Auto)`: faer's `lu_in_place` on the row-major buffer above n = 32, unblocked below): copy the row-major input, factor, sum `ln|u_ii|` |
//! | `lu_recursive_f64` | the same with `LuAlgorithm::Recursive`: Toledo's recursive LU with faer's gemm, the generic path the other scalars take (and `Auto` took for f64 before issue 15) |
//! | `lu_unblocked_f64` | the same with `LuAlgorithm::Unblocked`, the generic scalar path (n <= [`LOGDET_UNBLOCKED_MAX`] only) |
//! | `lu_faer_f64`, `lu_faer_f32` | faer's `lu_in_place` (partial pivoting, `Par::Seq`, default params) on a copy of the column-major input, plus the sum of `ln|u_ii|`; the copy and the permutation/scratch allocations are timed, as ours times its copy and its permutation |
//! | `lu_nalgebra_f64` | nalgebra: `a.clone().lu().determinant()` (copy, unblocked LU, product of the diagonal) |
//!
//! Inputs are seeded uniform `[-1, 1)` matrices ([`dense_matrix`]); before timing, each n checks
//! that our log-det agrees with faer's (and with nalgebra's for small n), so the three compute the
//! same thing. From n = [`LOGDET_FEW_SAMPLES_FROM`] on, criterion takes 10 flat samples.
//!
//! Run: `cargo bench -p exactflow-benches --bench logdet`, then
//! `cargo run -p exactflow-benches --release --bin bench_report`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use exactflow_benches::data::{SEED, dense_matrix, lower_triangular};
use exactflow_benches::params::{LOGDET_FEW_SAMPLES_FROM, LOGDET_SIZES, LOGDET_UNBLOCKED_MAX};
use exactflow_kernels::{LogDet, Lu, LuAlgorithm, Matrix, Real, log_det, log_det_lower};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::lu::partial_pivoting::factor::{lu_in_place, lu_in_place_scratch};
use faer::{Mat, MatRef, Par};

/// faer's LU log-det as a caller would write it: copy, factor in place, read the diagonal.
fn faer_log_det<T: Real + faer::traits::ComplexField>(a: MatRef<'_, T>) -> LogDet<T> {
    let n = a.nrows();
    let mut lu: Mat<T> = a.to_owned();
    let mut perm = vec![0usize; n];
    let mut perm_inv = vec![0usize; n];
    let par = Par::Seq;
    let mut mem = MemBuffer::new(lu_in_place_scratch::<usize, T>(n, n, par, Default::default()));
    let (info, _) = lu_in_place(
        lu.as_mut(),
        &mut perm,
        &mut perm_inv,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    let mut negative = info.transposition_count % 2 == 1;
    let mut log_abs = T::zero();
    for i in 0..n {
        let d = lu[(i, i)];
        if d == T::zero() {
            return LogDet::singular();
        }
        negative ^= d < T::zero();
        log_abs += d.abs().ln();
    }
    LogDet {
        sign: if negative { -T::one() } else { T::one() },
        log_abs,
    }
}

fn assert_close<T: Real>(what: &str, n: usize, ours: LogDet<T>, theirs: LogDet<T>, rel: f64) {
    let (a, b) = (ours.to_f64(), theirs.to_f64());
    let tol = rel * (1.0 + a.log_abs.abs());
    assert!(
        a.sign == b.sign && (a.log_abs - b.log_abs).abs() <= tol,
        "{what} at n = {n}: ours {a:?}, baseline {b:?}"
    );
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, n: usize) {
    if n >= LOGDET_FEW_SAMPLES_FROM {
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
    } else {
        group.sample_size(100).sampling_mode(SamplingMode::Auto);
    }
}

fn bench_logdet(c: &mut Criterion) {
    let mut group = c.benchmark_group("logdet");
    for (k, &n) in LOGDET_SIZES.iter().enumerate() {
        configure(&mut group, n);
        let seed = SEED + 2 * k as u64;
        let a = dense_matrix(n, seed);
        let a32: Matrix<f32> = a.map(|v| v as f32);
        let a_faer = a.to_faer();
        let a32_faer = a32.to_faer();
        let a_na = a.to_nalgebra();
        let l = lower_triangular(n, seed + 1);

        // The baselines must compute the same log-det as ours before their times mean anything.
        let ours = log_det(&a).expect("log_det of a finite square matrix");
        assert_close("faer f64", n, ours, faer_log_det(a_faer.as_ref()), 1e-9);
        let ours32 = log_det(&a32).expect("log_det of a finite square matrix");
        assert_close("faer f32", n, ours32, faer_log_det(a32_faer.as_ref()), 1e-3);
        assert_close("f32 vs f64", n, ours32.to_f64(), ours.to_f64(), 1e-3);
        if n <= LOGDET_UNBLOCKED_MAX {
            let det = a_na.clone().lu().determinant();
            assert_close("nalgebra", n, ours, LogDet::from_value(det), 1e-9);
            let unblocked = Lu::factor_with(&a, LuAlgorithm::Unblocked).expect("LU").log_det();
            assert_close("unblocked", n, ours, unblocked, 1e-9);
        }
        let recursive = Lu::factor_with(&a, LuAlgorithm::Recursive).expect("LU").log_det();
        assert_close("recursive", n, ours, recursive, 1e-9);

        group.bench_with_input(BenchmarkId::new("triangular_f64", n), &l, |b, l| {
            b.iter(|| log_det_lower(black_box(l)).expect("square"))
        });
        group.bench_with_input(BenchmarkId::new("lu_ours_f64", n), &a, |b, a| {
            b.iter(|| log_det(black_box(a)).expect("square"))
        });
        group.bench_with_input(BenchmarkId::new("lu_recursive_f64", n), &a, |b, a| {
            b.iter(|| {
                Lu::factor_with(black_box(a), LuAlgorithm::Recursive)
                    .expect("square")
                    .log_det()
            })
        });
        group.bench_with_input(BenchmarkId::new("lu_ours_f32", n), &a32, |b, a| {
            b.iter(|| log_det(black_box(a)).expect("square"))
        });
        if n <= LOGDET_UNBLOCKED_MAX {
            group.bench_with_input(BenchmarkId::new("lu_unblocked_f64", n), &a, |b, a| {
                b.iter(|| {
                    Lu::factor_with(black_box(a), LuAlgorithm::Unblocked)
                        .expect("square")
                        .log_det()
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("lu_faer_f64", n), &a_faer, |b, a| {
            b.iter(|| faer_log_det(black_box(a).as_ref()))
        });
        group.bench_with_input(BenchmarkId::new("lu_faer_f32", n), &a32_faer, |b, a| {
            b.iter(|| faer_log_det(black_box(a).as_ref()))
        });
        group.bench_with_input(BenchmarkId::new("lu_nalgebra_f64", n), &a_na, |b, a| {
            b.iter(|| black_box(a).clone().lu().determinant())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // 46 ids: 1 s of warm-up and 3 s of measurement each (10 flat samples from n = 1024 on, where
    // nalgebra's 2048 alone needs about 2 s per iteration) keep the bench near four minutes.
    // Command-line flags (--warm-up-time, --measurement-time) override these times.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_logdet
}
criterion_main!(benches);
