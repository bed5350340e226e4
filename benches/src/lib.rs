//! Support code for exactflow's criterion benchmarks (`benches/*.rs`) and the `bench_report` tool.
//!
//! - [`data`]: seeded, dependency-free random inputs, so that every run times the same matrices;
//! - [`params`]: the sizes and shapes each bench runs, shared with the report so the two cannot
//!   drift apart;
//! - [`report`]: reads criterion's `estimates.json` files and prints the Markdown tables of
//!   `BENCHMARKS.md` (medians, ratios against the named baselines, log-log slopes, the machine).
//!
//! Benchmark ids are `group/function/parameter`, e.g. `logdet/lu_ours_f64/1024`,
//! `coupling/forward_simd_f32/4096x392`, `gemm/ours_f64_t2/256x392x1024`.

#![warn(missing_docs)]

pub mod data;
pub mod params;
pub mod report;
