//! The sizes and shapes the benches run, shared by the bench files and the report tool.

/// Orders n of the log-det benches (`logdet/*/n`).
pub const LOGDET_SIZES: [usize; 6] = [4, 16, 64, 256, 1024, 2048];

/// The generic unblocked LU (`logdet/lu_unblocked_f64/n`) is O(n^3) scalar code: it runs for
/// n up to this bound only.
pub const LOGDET_UNBLOCKED_MAX: usize = 256;

/// From this n on a log-det bench takes 10 samples (flat sampling) instead of criterion's 100,
/// so that the whole `logdet` bench stays within a few minutes.
pub const LOGDET_FEW_SAMPLES_FROM: usize = 1024;

/// The log-log slope of the triangular log-det is fitted over n at least this (below, the call
/// overhead dominates the O(n) work). Expected slope: about 1.
pub const TRIANGULAR_FIT_FROM: usize = 64;

/// The log-log slope of the dense (LU) log-dets is fitted over n at least this. Expected slope:
/// about 3.
pub const DENSE_FIT_FROM: usize = 256;

/// `[N, D]` shapes of the coupling benches (`coupling/*/NxD`).
pub const COUPLING_SHAPES: [(usize, usize); 3] = [(256, 64), (4096, 392), (65536, 32)];

/// `(m, k, n)` for `C[m x n] = A[m x k] * B[k x n]` in the gemm benches (`gemm/*/mxkxn`): three
/// squares and the two MLP layer shapes.
pub const GEMM_SHAPES: [(usize, usize, usize); 5] = [
    (64, 64, 64),
    (256, 256, 256),
    (1024, 1024, 1024),
    (256, 392, 1024),
    (256, 1024, 1024),
];

/// Thread counts of the gemm benches (`_t1`, `_t2` suffixes).
pub const GEMM_THREADS: [usize; 2] = [1, 2];

/// The parameter string of a coupling shape, e.g. `4096x392`.
pub fn shape2(n: usize, d: usize) -> String {
    format!("{n}x{d}")
}

/// The parameter string of a gemm shape, e.g. `256x392x1024` (m x k x n).
pub fn shape3(m: usize, k: usize, n: usize) -> String {
    format!("{m}x{k}x{n}")
}
