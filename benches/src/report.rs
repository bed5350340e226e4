//! The `bench_report` tool's library: load criterion's results and print `BENCHMARKS.md` tables.
//!
//! Criterion writes one folder per benchmark id under `<target>/criterion/`, with
//! `new/benchmark.json` (the id: group, function, parameter) and `new/estimates.json` (the
//! statistics, in nanoseconds). [`Results::load`] walks that tree and keeps, for each id, the
//! **median** point estimate; [`render`] prints the Markdown: the machine, one section per bench
//! (medians, the ratios against the named baselines, throughputs, fitted log-log slopes) and a
//! summary of the speed targets. Ids that a run did not produce show as `–`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::params::{
    COUPLING_SHAPES, DENSE_FIT_FROM, GEMM_SHAPES, GEMM_THREADS, LOGDET_SIZES, LOGDET_UNBLOCKED_MAX,
    TRIANGULAR_FIT_FROM, shape2, shape3,
};

/// A benchmark id, as criterion stores it in `benchmark.json`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BenchId {
    /// The group, e.g. `logdet`.
    pub group: String,
    /// The function, e.g. `lu_ours_f64` (empty when the bench had none).
    pub function: String,
    /// The parameter, e.g. `1024` (empty when the bench had none).
    pub parameter: String,
}

impl BenchId {
    /// An id from its three parts.
    pub fn new(group: &str, function: &str, parameter: &str) -> Self {
        BenchId {
            group: group.to_owned(),
            function: function.to_owned(),
            parameter: parameter.to_owned(),
        }
    }

    /// `group/function/parameter`, as criterion prints it (empty parts left out).
    pub fn full(&self) -> String {
        [&self.group, &self.function, &self.parameter]
            .into_iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// One benchmark's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Median time of one iteration, in nanoseconds.
    pub median_ns: f64,
    /// Elements processed per iteration, when the bench declared `Throughput::Elements`.
    pub elements: Option<u64>,
}

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    throughput: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PointEstimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: PointEstimate,
}

/// Every measurement found under a criterion output folder, by id.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// The measurements, sorted by id.
    pub map: BTreeMap<BenchId, Measurement>,
}

impl Results {
    /// Walks `dir` (a criterion output folder such as `target/criterion`) and reads every
    /// `new/benchmark.json` with its sibling `new/estimates.json`. Baselines saved under other
    /// names, and folders that are not benchmarks (`report/`), are skipped.
    ///
    /// # Errors
    /// When `dir` cannot be read, or a `benchmark.json`/`estimates.json` pair is malformed (the
    /// error names the file).
    pub fn load(dir: &Path) -> io::Result<Results> {
        let mut results = Results::default();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in fs::read_dir(&folder)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().is_some_and(|f| f == "benchmark.json")
                    && path.parent().and_then(Path::file_name).is_some_and(|f| f == "new")
                {
                    let estimates = path.with_file_name("estimates.json");
                    if estimates.is_file() {
                        let (id, m) = read_pair(&path, &estimates)?;
                        results.map.insert(id, m);
                    }
                }
            }
        }
        Ok(results)
    }

    /// The median time (ns) of `group/function/parameter`, if it was measured.
    pub fn median(&self, group: &str, function: &str, parameter: &str) -> Option<f64> {
        self.map
            .get(&BenchId::new(group, function, parameter))
            .map(|m| m.median_ns)
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn bad_data(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
}

fn read_pair(benchmark: &Path, estimates: &Path) -> io::Result<(BenchId, Measurement)> {
    let b: BenchmarkJson = serde_json::from_str(&fs::read_to_string(benchmark)?).map_err(|e| bad_data(benchmark, e))?;
    let e: EstimatesJson = serde_json::from_str(&fs::read_to_string(estimates)?).map_err(|e| bad_data(estimates, e))?;
    let elements = b
        .throughput
        .as_ref()
        .and_then(|t| t.get("Elements"))
        .and_then(|v| v.as_u64());
    let id = BenchId {
        group: b.group_id,
        function: b.function_id.unwrap_or_default(),
        parameter: b.value_str.unwrap_or_default(),
    };
    Ok((
        id,
        Measurement {
            median_ns: e.median.point_estimate,
            elements,
        },
    ))
}

/// Where criterion wrote its results, found as criterion itself finds it: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion` (the `target` folder
/// next to this crate's parent, which is where `cargo bench` puts it by default).
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let workspace_target = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target");
    if workspace_target.is_dir() {
        return workspace_target.join("criterion");
    }
    PathBuf::from("target").join("criterion")
}

/// Least-squares slope of `ln y` against `ln x`: the exponent p of a fit `y = c x^p`. `None` with
/// fewer than two distinct x, or a non-positive value.
pub fn log_log_slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.iter().any(|&(x, y)| !(x > 0.0 && y > 0.0)) {
        return None;
    }
    let logs: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x.ln(), y.ln())).collect();
    let count = logs.len() as f64;
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = logs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = logs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (logs.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

/// A duration in nanoseconds with a unit that keeps 3 to 4 significant digits: `812 ns`,
/// `4.37 µs`, `12.9 ms`, `1.23 s`.
pub fn format_ns(ns: f64) -> String {
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

/// A ratio as `1.23x` (`–` when either side is missing).
pub fn format_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}x"),
        Some(r) if r >= 10.0 => format!("{r:.1}x"),
        Some(r) => format!("{r:.2}x"),
        None => "–".to_owned(),
    }
}

fn time(t: Option<f64>) -> String {
    t.map(format_ns).unwrap_or_else(|| "–".to_owned())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// The machine the numbers come from.
#[derive(Clone, Debug)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo` (`unknown` elsewhere).
    pub cpu: String,
    /// Logical CPUs the process may use.
    pub cores: usize,
    /// `(flag, present)` for avx2, fma and avx512f, as the running CPU reports them.
    pub simd_flags: Vec<(&'static str, bool)>,
    /// The backend `exactflow_kernels::simd::Backend::detect()` picks (after `EXACTFLOW_SIMD`).
    pub backend: &'static str,
}

impl Machine {
    /// Reads `/proc/cpuinfo` and asks the CPU and exactflow's dispatcher.
    pub fn detect() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let cpu = field("model name").unwrap_or_else(|| "unknown".to_owned());
        let flags = field("flags").unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let simd_flags = ["avx2", "fma", "avx512f"]
            .into_iter()
            .map(|f| (f, flags.split_whitespace().any(|x| x == f) || runtime_feature(f)))
            .collect();
        Machine {
            cpu,
            cores,
            simd_flags,
            backend: exactflow_kernels::simd::Backend::detect().name(),
        }
    }
}

fn runtime_feature(flag: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match flag {
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = flag;
        false
    }
}

/// One speed claim of the issue: a measured ratio against a bound.
#[derive(Clone, Debug)]
pub struct Target {
    /// What is compared, e.g. "our LU / faer LU, f64, n = 1024".
    pub claim: String,
    /// The bound, e.g. "<= 1.25".
    pub bound: Bound,
    /// The measured ratio, if both sides were measured.
    pub measured: Option<f64>,
}

/// The direction of a target's bound.
#[derive(Clone, Copy, Debug)]
pub enum Bound {
    /// The ratio must be at most this.
    AtMost(f64),
    /// The ratio must be at least this.
    AtLeast(f64),
}

impl Target {
    /// `Some(true)` when met, `Some(false)` when missed, `None` when not measured.
    pub fn met(&self) -> Option<bool> {
        self.measured.map(|m| match self.bound {
            Bound::AtMost(b) => m <= b,
            Bound::AtLeast(b) => m >= b,
        })
    }

    fn row(&self) -> String {
        let bound = match self.bound {
            Bound::AtMost(b) => format!("<= {b}"),
            Bound::AtLeast(b) => format!(">= {b}"),
        };
        let met = match self.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        format!(
            "| {} | {bound} | {} | {met} |\n",
            self.claim,
            format_ratio(self.measured)
        )
    }
}

/// The Markdown report: the machine, the logdet, coupling and gemm sections, the speed targets,
/// and (with `all`) every measurement found. `source` is the folder the results were read from,
/// printed for the record.
pub fn render(results: &Results, machine: &Machine, source: &Path, all: bool) -> String {
    let mut out = String::new();
    let mut targets = Vec::new();
    render_machine(&mut out, machine, source);
    render_logdet(&mut out, results, &mut targets);
    render_coupling(&mut out, results, &mut targets);
    render_gemm(&mut out, results);
    render_layers(&mut out, results, &mut targets);
    out.push_str("### Speed targets\n\n| claim | target | measured | met |\n|---|---|---|---|\n");
    for t in &targets {
        out.push_str(&t.row());
    }
    out.push('\n');
    if all {
        out.push_str("### Every measurement (median)\n\n| id | median | throughput |\n|---|---|---|\n");
        for (id, m) in &results.map {
            let thr = m
                .elements
                .map(|e| format!("{:.3} Gelem/s", e as f64 / m.median_ns))
                .unwrap_or_else(|| "–".to_owned());
            let _ = writeln!(out, "| `{}` | {} | {thr} |", id.full(), format_ns(m.median_ns));
        }
        out.push('\n');
    }
    out
}

fn render_machine(out: &mut String, m: &Machine, source: &Path) {
    let flags = m
        .simd_flags
        .iter()
        .map(|(f, on)| format!("{f}: {}", if *on { "yes" } else { "no" }))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(
        out,
        "### Machine\n\n| | |\n|---|---|\n| CPU | {} |\n| logical cores | {} |\n| SIMD flags | {flags} |\n\
         | exactflow SIMD backend (`Backend::detect()`) | {} |\n| results read from | `{}` |\n\n",
        m.cpu,
        m.cores,
        m.backend,
        source.display()
    );
}

const LOGDET_SERIES: [(&str, &str); 8] = [
    ("triangular_f64", "triangular f64"),
    ("lu_ours_f64", "our LU f64"),
    ("lu_ours_f32", "our LU f32"),
    ("lu_unblocked_f64", "our unblocked LU f64"),
    ("lu_recursive_f64", "our recursive LU f64"),
    ("lu_faer_f64", "faer LU f64"),
    ("lu_faer_f32", "faer LU f32"),
    ("lu_nalgebra_f64", "nalgebra LU f64"),
];

fn render_logdet(out: &mut String, r: &Results, targets: &mut Vec<Target>) {
    let get = |f: &str, n: usize| r.median("logdet", f, &n.to_string());
    out.push_str("### logdet: median time per log-det (single thread)\n\n| n |");
    for (_, label) in LOGDET_SERIES {
        let _ = write!(out, " {label} |");
    }
    out.push_str("\n|---:|");
    out.push_str(&"---:|".repeat(LOGDET_SERIES.len()));
    out.push('\n');
    for n in LOGDET_SIZES {
        let _ = write!(out, "| {n} |");
        for (f, _) in LOGDET_SERIES {
            let _ = write!(out, " {} |", time(get(f, n)));
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "\nour LU = `log_det` (`LuAlgorithm::Auto`: faer's `lu_in_place` on a column-major copy above n = 32, \
         unblocked below); our recursive LU = `LuAlgorithm::Recursive` (Toledo's recursive LU on faer's gemm, \
         the generic path of the other scalars); faer = `lu_in_place`, `Par::Seq`; nalgebra = \
         `clone().lu().determinant()`; all include the copy of the input. The unblocked LU runs for \
         n <= {LOGDET_UNBLOCKED_MAX} only.\n"
    );

    out.push_str(
        "\n#### logdet ratios\n\n| n | our LU / faer LU (f64) | our LU / faer LU (f32) | nalgebra / our LU (f64) \
         | unblocked / our LU (f64) | recursive / faer LU (f64) | our LU / triangular (f64) |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for n in LOGDET_SIZES {
        let ours = get("lu_ours_f64", n);
        let _ = writeln!(
            out,
            "| {n} | {} | {} | {} | {} | {} | {} |",
            format_ratio(ratio(ours, get("lu_faer_f64", n))),
            format_ratio(ratio(get("lu_ours_f32", n), get("lu_faer_f32", n))),
            format_ratio(ratio(get("lu_nalgebra_f64", n), ours)),
            format_ratio(ratio(get("lu_unblocked_f64", n), ours)),
            format_ratio(ratio(get("lu_recursive_f64", n), get("lu_faer_f64", n))),
            format_ratio(ratio(ours, get("triangular_f64", n))),
        );
    }

    let _ = write!(
        out,
        "\n#### logdet scaling: least-squares slope of ln(time) against ln(n)\n\n\
         | series | fitted over n | slope | expected |\n|---|---|---:|---:|\n"
    );
    for (f, label) in LOGDET_SERIES {
        // The unblocked LU stops at n = LOGDET_UNBLOCKED_MAX, one point in the dense range: it is
        // fitted over 16..=LOGDET_UNBLOCKED_MAX instead.
        let (range, expected) = match f {
            "triangular_f64" => (TRIANGULAR_FIT_FROM..=usize::MAX, 1),
            "lu_unblocked_f64" => (16..=LOGDET_UNBLOCKED_MAX, 3),
            _ => (DENSE_FIT_FROM..=usize::MAX, 3),
        };
        let points: Vec<(f64, f64)> = LOGDET_SIZES
            .iter()
            .filter(|n| range.contains(n))
            .filter_map(|&n| get(f, n).map(|t| (n as f64, t)))
            .collect();
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {expected} |",
            ns_list(&points),
            slope(&points)
        );
    }
    let _ = write!(
        out,
        "\nTriangular fitted over n >= {TRIANGULAR_FIT_FROM} (below, the call overhead dominates the O(n) \
         work), dense over n >= {DENSE_FIT_FROM}; the unblocked LU, which stops at n = {LOGDET_UNBLOCKED_MAX}, \
         over 16 <= n <= {LOGDET_UNBLOCKED_MAX}.\n\n"
    );

    let at = |f: &str, n: usize| get(f, n);
    // Issue 15's bound (it was 1.25 for n = 1024 before).
    for n in [1024, 2048] {
        targets.push(Target {
            claim: format!("our LU / faer LU, f64, n = {n}"),
            bound: Bound::AtMost(1.1),
            measured: ratio(at("lu_ours_f64", n), at("lu_faer_f64", n)),
        });
    }
    targets.push(Target {
        claim: "nalgebra LU / our LU, f64, n = 1024".into(),
        bound: Bound::AtLeast(2.0),
        measured: ratio(at("lu_nalgebra_f64", 1024), at("lu_ours_f64", 1024)),
    });
    targets.push(Target {
        claim: "our LU / triangular log-det, f64, n = 2048".into(),
        bound: Bound::AtLeast(1000.0),
        measured: ratio(at("lu_ours_f64", 2048), at("triangular_f64", 2048)),
    });
}

fn ns_list(points: &[(f64, f64)]) -> String {
    if points.is_empty() {
        "–".to_owned()
    } else {
        points.iter().map(|p| format!("{}", p.0)).collect::<Vec<_>>().join(", ")
    }
}

fn slope(points: &[(f64, f64)]) -> String {
    log_log_slope(points).map_or_else(|| "–".to_owned(), |s| format!("{s:.2}"))
}

fn gelem(elements: usize, ns: Option<f64>) -> String {
    ns.map_or_else(|| "–".to_owned(), |t| format!("{:.2}", elements as f64 / t))
}

fn render_coupling(out: &mut String, r: &Results, targets: &mut Vec<Target>) {
    out.push_str(
        "### coupling: affine coupling kernels, median time (and Gelem/s of the SIMD forward)\n\n\
         | type | [N, D] | SIMD fwd | scalar fwd | SIMD inv | scalar inv | copy x,s,t | scalar / SIMD fwd \
         | scalar / SIMD inv | SIMD fwd / copy | SIMD inv / copy | SIMD fwd Gelem/s |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ty in ["f32", "f64"] {
        for (n, d) in COUPLING_SHAPES {
            let p = shape2(n, d);
            let get = |f: &str| r.median("coupling", &format!("{f}_{ty}"), &p);
            let (fs, fsc, is, isc, cp) = (
                get("forward_simd"),
                get("forward_scalar"),
                get("inverse_simd"),
                get("inverse_scalar"),
                get("copy"),
            );
            let _ = writeln!(
                out,
                "| {ty} | [{n}, {d}] | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                time(fs),
                time(fsc),
                time(is),
                time(isc),
                time(cp),
                format_ratio(ratio(fsc, fs)),
                format_ratio(ratio(isc, is)),
                format_ratio(ratio(fs, cp)),
                format_ratio(ratio(is, cp)),
                gelem(n * d, fs),
            );
        }
    }
    out.push_str(
        "\nSIMD = the backend `Backend::detect()` picks (see Machine); scalar = `Backend::Scalar`, a loop over \
         std's exp. copy x,s,t = the memory-bandwidth baseline: the three inputs the kernel reads, copied with \
         `copy_from_slice` into three buffers of the same size, in the same run.\n\n",
    );
    let p = shape2(4096, 392);
    let get = |f: &str| r.median("coupling", f, &p);
    for dir in ["forward", "inverse"] {
        targets.push(Target {
            claim: format!("coupling {dir}: scalar / SIMD, f32 [4096, 392]"),
            bound: Bound::AtLeast(4.0),
            measured: ratio(get(&format!("{dir}_scalar_f32")), get(&format!("{dir}_simd_f32"))),
        });
    }
    for dir in ["forward", "inverse"] {
        targets.push(Target {
            claim: format!("coupling {dir}: SIMD / copy, f32 [4096, 392]"),
            bound: Bound::AtMost(2.0),
            measured: ratio(get(&format!("{dir}_simd_f32")), get("copy_f32")),
        });
    }
}

fn render_gemm(out: &mut String, r: &Results) {
    out.push_str(
        "### gemm: our dispatch vs faer's matmul called directly, median time\n\n\
         | type | m x k x n | threads | ours | faer | ours / faer | ours GFLOP/s | faer GFLOP/s |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for ty in ["f32", "f64"] {
        for (m, k, n) in GEMM_SHAPES {
            let p = shape3(m, k, n);
            for t in GEMM_THREADS {
                let ours = r.median("gemm", &format!("ours_{ty}_t{t}"), &p);
                let faer = r.median("gemm", &format!("faer_{ty}_t{t}"), &p);
                let flops = 2 * m * k * n;
                let _ = writeln!(
                    out,
                    "| {ty} | {m} x {k} x {n} | {t} | {} | {} | {} | {} | {} |",
                    time(ours),
                    time(faer),
                    format_ratio(ratio(ours, faer)),
                    gelem(flops, ours),
                    gelem(flops, faer),
                );
            }
        }
    }
    out.push_str(
        "\nours = `gemm::gemm` on row-major `MatSlice`s; faer = `faer::linalg::matmul::matmul` on the same \
         buffers; threads 2 = `Parallelism::Rayon(2)` / `Par::rayon(2)`; GFLOP/s = 2 m k n / median time.\n\n",
    );
}

fn render_layers(out: &mut String, r: &Results, targets: &mut Vec<Target>) {
    let p = "256x784";
    let fwd = r.median("layers", "coupling_forward_f32", p);
    let fb = r.median("layers", "coupling_fwd_bwd_f32", p);
    let g_fwd = r.median("layers", "gemms_forward_f32", p);
    let g_fb = r.median("layers", "gemms_fwd_bwd_f32", p);
    let gs = "16x12x16x16";
    let glow_f = r.median("layers", "glow_step_forward_f32", gs);
    let glow_fb = r.median("layers", "glow_step_fwd_bwd_f32", gs);
    let steps = ["f64", "f32"].map(|ty| {
        (
            ty,
            r.median("train", &format!("step_{ty}"), "512"),
            r.median("train", &format!("gemms_faer_{ty}"), "512"),
        )
    });
    out.push_str(
        "### layers and training steps against their bare matrix products, median time\n\n\
         | what | layer / step | its bare products (faer) | ratio |\n|---|---:|---:|---:|\n",
    );
    let _ = writeln!(
        out,
        "| affine coupling [256, 784] f32, MLP 392-1024-1024-784: forward | {} | {} | {} |",
        time(fwd),
        time(g_fwd),
        format_ratio(ratio(fwd, g_fwd))
    );
    let _ = writeln!(
        out,
        "| affine coupling [256, 784] f32: forward + backward | {} | {} | {} |",
        time(fb),
        time(g_fb),
        format_ratio(ratio(fb, g_fb))
    );
    let _ = writeln!(
        out,
        "| Glow step [16, 12, 16, 16] f32, 512 channels: forward | {} | – | – |",
        time(glow_f)
    );
    let _ = writeln!(
        out,
        "| Glow step [16, 12, 16, 16] f32: forward + backward | {} | – | – |",
        time(glow_fb)
    );
    for (ty, step, limit) in steps {
        let _ = writeln!(
            out,
            "| moons RealNVP training step (8 couplings, MLP 1-128-128-2, batch 512, {ty}) | {} | {} | {} |",
            time(step),
            time(limit),
            format_ratio(ratio(step, limit))
        );
    }
    let [(_, step64, limit64), (_, step32, limit32)] = steps;
    let _ = writeln!(
        out,
        "\nbare products = the matrix products the layer or step performs (forward: `X W^T` per Linear; \
         backward: `dY^T X` and `dY W`), through `faer::linalg::matmul::matmul` directly, one thread, in \
         the same run. The training step's compute-limit fraction is bare products / step = {} in f64 \
         and {} in f32.\n",
        format_ratio(ratio(limit64, step64)),
        format_ratio(ratio(limit32, step32))
    );
    targets.push(Target {
        claim: "affine coupling forward / its bare gemms, f32 [256, 784]".into(),
        bound: Bound::AtMost(1.3),
        measured: ratio(fwd, g_fwd),
    });
    targets.push(Target {
        claim: "affine coupling forward + backward / its bare gemms, f32 [256, 784]".into(),
        bound: Bound::AtMost(1.3),
        measured: ratio(fb, g_fb),
    });
    targets.push(Target {
        claim: "moons training step: compute-limit fraction (bare gemms / step), f64".into(),
        bound: Bound::AtLeast(0.6),
        measured: ratio(limit64, step64),
    });
    targets.push(Target {
        claim: "moons training step: compute-limit fraction (bare gemms / step), f32".into(),
        bound: Bound::AtLeast(0.7),
        measured: ratio(limit32, step32),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_recovers_the_exponent() {
        let cubic: Vec<(f64, f64)> = [256.0, 1024.0, 2048.0]
            .iter()
            .map(|&n: &f64| (n, 5.0 * n.powi(3)))
            .collect();
        assert!((log_log_slope(&cubic).unwrap() - 3.0).abs() < 1e-12);
        assert_eq!(log_log_slope(&[(4.0, 1.0)]), None);
        assert_eq!(log_log_slope(&[(4.0, 1.0), (4.0, 2.0)]), None);
        assert_eq!(log_log_slope(&[(4.0, 0.0), (8.0, 2.0)]), None);
    }

    #[test]
    fn durations_and_ratios_format_with_units() {
        assert_eq!(format_ns(812.4), "812 ns");
        assert_eq!(format_ns(4_372.0), "4.37 µs");
        assert_eq!(format_ns(12_940_000.0), "12.9 ms");
        assert_eq!(format_ns(1_234_000_000.0), "1.23 s");
        assert_eq!(format_ratio(Some(1.234)), "1.23x");
        assert_eq!(format_ratio(Some(1234.0)), "1234x");
        assert_eq!(format_ratio(None), "–");
    }

    #[test]
    fn loads_a_criterion_tree_and_renders_it() {
        let dir = std::env::temp_dir().join(format!("exactflow-bench-report-{}", std::process::id()));
        let write = |group: &str, f: &str, p: &str, ns: f64, thr: &str| {
            let new = dir.join(group).join(f).join(p).join("new");
            fs::create_dir_all(&new).unwrap();
            fs::write(
                new.join("benchmark.json"),
                format!(
                    r#"{{"group_id":"{group}","function_id":"{f}","value_str":"{p}","throughput":{thr},
                    "full_id":"{group}/{f}/{p}","directory_name":"x","title":"x"}}"#
                ),
            )
            .unwrap();
            fs::write(
                new.join("estimates.json"),
                format!(r#"{{"mean":{{"point_estimate":1.0}},"median":{{"point_estimate":{ns}}}}}"#),
            )
            .unwrap();
        };
        write("logdet", "lu_ours_f64", "1024", 2.0e7, "null");
        write("logdet", "lu_faer_f64", "1024", 1.9e7, "null");
        write(
            "coupling",
            "forward_simd_f32",
            "4096x392",
            1.0e5,
            r#"{"Elements":1605632}"#,
        );
        // A saved baseline must not be read.
        let base = dir.join("logdet").join("lu_ours_f64").join("1024").join("base");
        fs::create_dir_all(&base).unwrap();
        fs::write(base.join("benchmark.json"), "not json").unwrap();

        let r = Results::load(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.map.len(), 3);
        assert_eq!(r.median("logdet", "lu_ours_f64", "1024"), Some(2.0e7));
        let c = &r.map[&BenchId::new("coupling", "forward_simd_f32", "4096x392")];
        assert_eq!(c.elements, Some(1_605_632));

        let machine = Machine {
            cpu: "test".into(),
            cores: 2,
            simd_flags: vec![("avx2", true)],
            backend: "avx2",
        };
        let md = render(&r, &machine, Path::new("x"), true);
        assert!(
            md.contains("| our LU / faer LU, f64, n = 1024 | <= 1.1 | 1.05x | yes |"),
            "{md}"
        );
        assert!(md.contains("| 1024 | – | 20.0 ms |"), "{md}");
        assert!(md.contains("`logdet/lu_ours_f64/1024`"), "{md}");
    }
}
