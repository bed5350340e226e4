//! `certify_report`: cost and width of certified evaluation against f64, as JSON lines.
//!
//! ```text
//! cargo run -p exactflow-benches --release --bin certify_report -- logdet 64,128,256,512
//! cargo run -p exactflow-benches --release --bin certify_report -- depth 2,4,8,16
//! cargo run -p exactflow-benches --release --bin certify_report -- checkpoint runs/realnvp-moons moons
//! ```
//!
//! - `logdet N,...`: for each n, a random matrix with independent U(-1, 1) entries (seed 1, well
//!   conditioned in practice): the median time of `log_det_with(.., Lu)` (f64 LU) and of
//!   `certify_log_det`, their ratio, and the enclosure's width and relative width.
//! - `depth K,...`: a vector RealNVP on two moons (dim 2, MLPs 128-128, K affine couplings, seed 0,
//!   every parameter perturbed by U(-0.2, 0.2) so that no layer is the identity) on 1000 moons
//!   points: median time of f64 `evaluate` and of `certify_dataset`, the ratio, the certified
//!   count, and the median and largest relative width.
//! - `checkpoint DIR DATA`: the same for a trained model on its test split.
//!
//! Every time is the median of `--repeats` runs (default 5): the machine may be shared, and the
//! median resists other processes' bursts.

use std::process::ExitCode;
use std::time::Instant;

use exactflow_kernels::gemm::MatSlice;
use exactflow_kernels::{LogDetMethod, Matrix, certify_log_det, log_det_with};
use exactflow_layers::nets::Activation;
use exactflow_layers::{MaskKind, ParamKind, Params};
use exactflow_models::certify::{certify_dataset, summarize};
use exactflow_models::data::{DataSpec, Dataset};
use exactflow_models::{Flow, ModelConfig, RealNvpConfig, checkpoint, evaluate};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<R>(repeats: usize, mut f: impl FnMut() -> R) -> (f64, R) {
    let mut times = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    // invariant: at least one repeat ran.
    (median(times), last.unwrap_or_else(|| unreachable!()))
}

/// splitmix64 in [-1, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn logdet(sizes: &[usize], repeats: usize) -> Result<(), String> {
    for &n in sizes {
        let mut s = 1u64;
        let a: Vec<f64> = (0..n * n).map(|_| uniform(&mut s)).collect();
        let m = Matrix::new(n, n, a.clone()).map_err(|e| e.to_string())?;
        let (t_lu, lu) = time(repeats, || log_det_with(&m, LogDetMethod::Lu));
        let lu = lu.map_err(|e| e.to_string())?.0;
        let view = MatSlice::new(&a, n, n).map_err(|e| e.to_string())?;
        let (t_c, c) = time(repeats, || certify_log_det(&view));
        let c = c.map_err(|e| e.to_string())?;
        let i = c.log_abs();
        println!(
            "{}",
            json!({
                "bench": "logdet", "n": n, "seconds_lu": t_lu, "seconds_certified": t_c,
                "ratio": t_c / t_lu, "log_abs": lu.log_abs, "certified": c.sign().is_some(),
                "width": i.map(|i| i.width()), "relative_width": i.map(|i| i.relative_width()),
            })
        );
    }
    Ok(())
}

fn flow_row(what: serde_json::Value, flow: &Flow<f64>, ds: &Dataset, repeats: usize) -> Result<(), String> {
    let (t_f, ev) = time(repeats, || evaluate(flow, ds, 1024));
    ev.map_err(|e| e.to_string())?;
    let (t_c, c) = time(repeats, || certify_dataset(flow, ds, 256, &mut |_| {}));
    let s = summarize(&c.map_err(|e| e.to_string())?);
    println!(
        "{}",
        json!({
            "bench": "flow", "what": what, "samples": ds.len(), "seconds_f64": t_f,
            "seconds_certified": t_c, "ratio": t_c / t_f, "certified": s.certified,
            "median_relative_width": s.median_relative_width, "max_relative_width": s.max_relative_width,
            "uncertified": s.uncertified,
        })
    );
    Ok(())
}

fn depth(ks: &[usize], repeats: usize) -> Result<(), String> {
    let splits = "moons"
        .parse::<DataSpec>()
        .map_err(|e| e.to_string())?
        .load(0, 4000)
        .map_err(|e| e.to_string())?;
    let ds = splits
        .test
        .subset(&(0..1000).collect::<Vec<_>>())
        .map_err(|e| e.to_string())?;
    for &k in ks {
        let model = ModelConfig::RealNvp(RealNvpConfig {
            dim: 2,
            couplings: k,
            hidden: vec![128, 128],
            activation: Activation::Relu,
            mask: MaskKind::Halves,
            batch_norm: false,
            logit_alpha: None,
            seed: 0,
            context_dim: 0,
            context_embedding: None,
        });
        let mut flow = model.build::<f64>().map_err(|e| e.to_string())?;
        let mut s = 7u64;
        flow.visit_params_mut("", &mut |_, p| {
            if p.kind == ParamKind::Trainable {
                p.value
                    .as_mut_slice()
                    .iter_mut()
                    .for_each(|v| *v += 0.2 * uniform(&mut s));
            }
        });
        flow_row(json!({ "couplings": k, "hidden": [128, 128] }), &flow, &ds, repeats)?;
    }
    Ok(())
}

fn trained(dir: &str, data: &str, repeats: usize) -> Result<(), String> {
    let path = std::path::Path::new(dir);
    let file = if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    };
    let loaded = checkpoint::load::<f64>(&file).map_err(|e| e.to_string())?;
    let spec: DataSpec = data.parse().map_err(|e: exactflow_models::Error| e.to_string())?;
    let seed = exactflow_models::train::TrainState::of_checkpoint(&file, &loaded)
        .map_err(|e| e.to_string())?
        .map(|s| s.config.seed)
        .unwrap_or_else(|| loaded.config.seed());
    let splits = spec.load(seed, 20000).map_err(|e| e.to_string())?;
    flow_row(
        json!({ "checkpoint": dir, "data": data }),
        &loaded.flow,
        &splits.test,
        repeats,
    )
}

const USAGE: &str = "usage: certify_report (logdet N,... | depth K,... | checkpoint DIR DATA) [--repeats R (5)]";

fn list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|v| v.trim().parse().map_err(|_| format!("not a size: {v}\n{USAGE}")))
        .collect()
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeats = 5;
    if let Some(p) = args.iter().position(|a| a == "--repeats") {
        repeats = args
            .get(p + 1)
            .and_then(|v| v.parse().ok())
            .filter(|&r| r > 0)
            .ok_or_else(|| USAGE.to_string())?;
        args.drain(p..p + 2);
    }
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["logdet", sizes] => logdet(&list(sizes)?, repeats),
        ["depth", ks] => depth(&list(ks)?, repeats),
        ["checkpoint", dir, data] => trained(dir, data, repeats),
        _ => Err(USAGE.to_string()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
