//! `exactflow bench logdet`: triangular (O(n)) against dense LU (O(n^3)) log-determinants.
//!
//! For every size the same seeded random matrices are timed: a lower-triangular one through
//! the O(n) diagonal kernel, and a dense one through LU with partial pivoting. Each method is run
//! repeatedly for at least `--min-time` seconds and the mean time per call is reported, with the
//! least-squares slope of log(time) against log(n) (about 1 and 3 for large n).

use std::path::PathBuf;
use std::time::Instant;

use exactflow::kernels::{LogDetMethod, Matrix, log_det_lower, log_det_with};
use exactflow::pictures::{self, Series};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::args::BenchLogdetArgs;
use super::{CliError, CliResult, write_json};

/// Sizes above this would take minutes per LU call.
pub(crate) const MAX_SIZE: usize = 8192;
/// The longest `--min-time`, in seconds.
pub(crate) const MAX_MIN_TIME: f64 = 60.0;

/// Mean seconds per call of `f`, repeating for at least `min_time` seconds (and at least 3 times).
fn time_it(min_time: f64, mut f: impl FnMut() -> exactflow::kernels::Result<()>) -> exactflow::kernels::Result<f64> {
    f()?; // warm caches and code
    let start = Instant::now();
    let mut calls = 0u64;
    while calls < 3 || start.elapsed().as_secs_f64() < min_time {
        f()?;
        calls += 1;
    }
    Ok(start.elapsed().as_secs_f64() / calls as f64)
}

/// Least-squares slope of log(y) on log(x).
pub(crate) fn loglog_slope(points: &[(f64, f64)]) -> Option<f64> {
    let p: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if p.len() < 2 {
        return None;
    }
    let n = p.len() as f64;
    let (mx, my) = (
        p.iter().map(|q| q.0).sum::<f64>() / n,
        p.iter().map(|q| q.1).sum::<f64>() / n,
    );
    let sxx: f64 = p.iter().map(|q| (q.0 - mx).powi(2)).sum();
    let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

pub fn run(a: BenchLogdetArgs) -> CliResult<()> {
    if a.sizes.is_empty() || a.sizes.iter().any(|&n| n == 0 || n > MAX_SIZE) {
        return Err(format!("--sizes must be between 1 and {MAX_SIZE}, found {:?}", a.sizes).into());
    }
    if !(a.min_time.is_finite() && (0.0..=MAX_MIN_TIME).contains(&a.min_time)) {
        return Err(format!(
            "--min-time must be between 0 and {MAX_MIN_TIME} seconds, found {}",
            a.min_time
        )
        .into());
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join("bench-logdet"));
    std::fs::create_dir_all(&out).map_err(|e| CliError(format!("cannot create {}: {e}", out.display())))?;
    let bar = ProgressBar::with_draw_target(Some(a.sizes.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} sizes  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for &n in &a.sizes {
        bar.set_message(format!("n = {n}"));
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        // Diagonal entries of magnitude in [0.5, 1.5] with random signs; a well-conditioned
        // dense matrix (random entries plus n on the diagonal) so LU never meets a tiny pivot.
        let tri = Matrix::from_fn(n, n, |i, j| {
            if j > i {
                0.0
            } else if i == j {
                let m: f64 = rng.random_range(0.5..1.5);
                if rng.random::<bool>() { m } else { -m }
            } else {
                rng.random_range(-1.0..1.0)
            }
        });
        let dense = Matrix::from_fn(n, n, |i, j| {
            rng.random_range(-1.0..1.0) + if i == j { n as f64 } else { 0.0 }
        });
        let t_tri = time_it(a.min_time, || log_det_lower(&tri).map(|_| ()))?;
        let t_lu = time_it(a.min_time, || log_det_with(&dense, LogDetMethod::Lu).map(|_| ()))?;
        rows.push((n, t_tri, t_lu));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let tri_pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.0 as f64, r.1)).collect();
    let lu_pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.0 as f64, r.2)).collect();
    let (s_tri, s_lu) = (loglog_slope(&tri_pts), loglog_slope(&lu_pts));

    println!("{:>8} {:>14} {:>14} {:>10}", "n", "triangular s", "LU s", "LU / tri");
    for (n, t, l) in &rows {
        println!("{n:>8} {t:>14.3e} {l:>14.3e} {:>10.1}", l / t);
    }
    let fmt = |s: Option<f64>| s.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
    println!("log-log slope: triangular {}, LU {}", fmt(s_tri), fmt(s_lu));

    let plot = pictures::loglog_plot(
        &[
            Series {
                label: "triangular".into(),
                color: [31, 119, 180],
                points: tri_pts,
            },
            Series {
                label: "LU".into(),
                color: [214, 39, 40],
                points: lu_pts,
            },
        ],
        "matrix size n",
        "seconds per log-det",
        640,
        480,
    );
    plot.save(&out.join("loglog.png"))?;
    let v = json!({
        "sizes": rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "triangular_seconds": rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "lu_seconds": rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "slope_triangular": s_tri,
        "slope_lu": s_lu,
        "plot": out.join("loglog.png").display().to_string(),
        "legend": {"triangular": "blue", "lu": "red"},
    });
    write_json(&out.join("bench.json"), &v)?;
    println!(
        "wrote {} and {}",
        out.join("bench.json").display(),
        out.join("loglog.png").display()
    );
    Ok(())
}
