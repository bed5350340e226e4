//! `exactflow eval DIR --data SPEC --certify`: per-sample intervals containing the exact log p(x).

use std::io::IsTerminal;
use std::time::Instant;

use exactflow::kernels::Interval;
use exactflow::models::certify::{Certified, CertifiedSample, certify_dataset, summarize};
use exactflow::models::data::Dataset;
use exactflow::models::{Evaluation, Flow};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::CliResult;
use super::args::EvalArgs;

/// A bar over the samples when stderr is a terminal.
fn sample_bar(total: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("certifying {bar:30} {pos}/{len} samples  [{elapsed} < {eta}]")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

fn interval_json(i: Interval) -> Value {
    json!({ "lo": i.lo(), "hi": i.hi() })
}

/// Runs the certified evaluation after the f64 one (`ev`, which took `f64_seconds`) and prints
/// both.
pub fn run(
    a: &EvalArgs,
    flow: &Flow<f64>,
    family: &str,
    ds: &Dataset,
    ev: &Evaluation,
    f64_seconds: f64,
) -> CliResult<()> {
    let bar = sample_bar(ds.len());
    let t0 = Instant::now();
    let samples = certify_dataset(flow, ds, 256, &mut |done| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = summarize(&samples);
    let ratio = seconds / f64_seconds.max(1e-12);
    if a.json {
        let per: Vec<Value> = samples
            .iter()
            .zip(&ev.log_likelihood)
            .enumerate()
            .map(|(k, (s, &f))| sample_json(k, s, f))
            .collect();
        let reasons: Vec<Value> = summary
            .uncertified
            .iter()
            .map(|(r, c)| json!({ "reason": r, "samples": c }))
            .collect();
        let v = json!({
            "model": family,
            "data": a.data,
            "split": a.split,
            "samples": ds.len(),
            "nll": ev.nll,
            "bits_per_dim": ev.bits_per_dim,
            "certified": {
                "samples": per,
                "certified": summary.certified,
                "max_relative_width": finite_or_null(summary.max_relative_width),
                "median_relative_width": finite_or_null(summary.median_relative_width),
                "uncertified": reasons,
                "seconds_f64": f64_seconds,
                "seconds_certified": seconds,
                "cost_ratio": ratio,
            },
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} samples of {} ({}), log p(x) certified in interval arithmetic",
        ds.len(),
        a.data,
        a.split
    );
    let discrete = ds.levels.is_some();
    println!(
        "{:>7}  {:<47}  {:>23}  {:>9}{}",
        "sample",
        "log p(x) enclosure [lo, hi] (nats)",
        "f64 value",
        "width",
        if discrete { "  bits/dim enclosure [lo, hi]" } else { "" }
    );
    for (k, (s, &f)) in samples.iter().zip(&ev.log_likelihood).enumerate() {
        match s.log_likelihood.enclosure() {
            Some(i) => {
                let bpd = s.bits_per_dim.map(|b| format!("  [{:.17e}, {:.17e}]", b.lo(), b.hi()));
                println!(
                    "{k:>7}  [{:>+.16e}, {:>+.16e}]  {f:>+23.16e}  {:>9.2e}{}",
                    i.lo(),
                    i.hi(),
                    i.width(),
                    bpd.unwrap_or_default()
                );
            }
            None => println!(
                "{k:>7}  not certified: {}  (f64 value {f:+.16e})",
                s.log_likelihood.reason().unwrap_or_default()
            ),
        }
    }
    println!("certified        {} of {} samples", summary.certified, summary.samples);
    if summary.certified > 0 {
        println!(
            "relative width   max {:.3e}, median {:.3e}  ((hi - lo) / min |log p|)",
            summary.max_relative_width, summary.median_relative_width
        );
    }
    for (reason, count) in &summary.uncertified {
        println!("not certified    {count} sample(s): {reason}");
    }
    match ev.bits_per_dim {
        Some(b) => println!("NLL (f64)        {:.6} nats ({b:.6} bits/dim)", ev.nll),
        None => println!("NLL (f64)        {:.6} nats", ev.nll),
    }
    println!("cost             f64 eval {f64_seconds:.3} s, certified {seconds:.3} s ({ratio:.1}x)");
    Ok(())
}

fn finite_or_null(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

fn sample_json(k: usize, s: &CertifiedSample, f64_value: f64) -> Value {
    match &s.log_likelihood {
        Certified::Enclosed(i) => json!({
            "index": k,
            "certified": true,
            "log_likelihood": interval_json(*i),
            "bits_per_dim": s.bits_per_dim.map(interval_json),
            "f64": f64_value,
            "width": i.width(),
            "relative_width": finite_or_null(i.relative_width()),
            "reason": Value::Null,
        }),
        other => json!({
            "index": k,
            "certified": false,
            "log_likelihood": Value::Null,
            "bits_per_dim": Value::Null,
            "f64": f64_value,
            "width": Value::Null,
            "relative_width": Value::Null,
            "reason": other.reason(),
        }),
    }
}
