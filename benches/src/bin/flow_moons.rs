//! `flow_moons`: the two-moons comparison of MAF and neural spline flows against nflows
//! (`benches/peers/nflows_moons.py` prints the same JSON): training samples/s, `log_prob` and
//! sampling milliseconds per 512-batch, and the validation NLL, one process.
//!
//! ```text
//! cargo run -p exactflow-benches --release --bin flow_moons -- --model maf --precision f32
//! cargo run -p exactflow-benches --release --bin flow_moons -- --model nsf-coupling --precision f64
//! ```
//!
//! Models (the presets of `exactflow train`): `maf` (10 layers of MADE 2 x 256, alternating
//! random and reverse permutations), `iaf` (the same, inverted), `nsf-coupling` and
//! `nsf-autoregressive` (8 layers of LU linear + spline, conditioners 2 x 128, 8 bins, tail
//! bound 3). Data: two moons (noise 0.05), 20,000 training and 5,000 validation points drawn
//! with `--seed`. Training: `--steps` (2000) Adam steps of `--batch-size` (512), learning rate
//! `--lr` (5e-4) after a linear warmup over 2% of the steps, cosine decay to 1% of it, gradient
//! clipping at 100, on `--threads` (1) threads (the trainer's strategy, see
//! `exactflow_models::train::Strategy`), in `--precision` f32 or f64. Samples/s counts the
//! optimizer steps only (as exactflow's trainer reports it). Then `log_prob` of a 512-batch of
//! validation points and `sample(512)` are timed `--repeats` (50) times each, on one thread; the
//! medians are printed. Like `exactflow train`, it first applies the allocator settings of
//! `exactflow::allocator::keep_freed_buffers`.

use std::process::ExitCode;
use std::time::Instant;

use exactflow_kernels::Real;
use exactflow_models::data::{DataSpec, Splits};
use exactflow_models::train::{Decay, Schedule, Silent, TrainConfig, train};
use exactflow_models::{Flow, ModelConfig, evaluate};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

struct Args {
    model: String,
    precision: String,
    steps: u64,
    batch: usize,
    lr: f64,
    seed: u64,
    repeats: usize,
    threads: usize,
}

const USAGE: &str = "usage: flow_moons [--model maf|iaf|nsf-coupling|nsf-autoregressive (maf)] \
[--precision f32|f64 (f32)] [--steps S (2000)] [--batch-size B (512)] [--lr LR (5e-4)] [--seed S (0)] [--repeats R (50)] [--threads N (1)]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        model: "maf".into(),
        precision: "f32".into(),
        steps: 2000,
        batch: 512,
        lr: 5e-4,
        seed: 0,
        repeats: 50,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--model" => a.model = v,
            "--precision" => a.precision = v,
            "--steps" => a.steps = num(&v)? as u64,
            "--batch-size" => a.batch = num(&v)? as usize,
            "--lr" => a.lr = num(&v)?,
            "--seed" => a.seed = num(&v)? as u64,
            "--repeats" => a.repeats = (num(&v)? as usize).max(1),
            "--threads" => a.threads = (num(&v)? as usize).clamp(1, 1024),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn config(model: &str, seed: u64) -> Result<ModelConfig, String> {
    let (family, preset) = match model {
        "maf" => ("maf", "toy"),
        "iaf" => ("iaf", "toy"),
        "nsf-coupling" => ("nsf", "coupling"),
        "nsf-autoregressive" => ("nsf", "autoregressive"),
        _ => return Err(format!("unknown model {model}\n{USAGE}")),
    };
    ModelConfig::preset(family, preset, &[2], seed).map_err(|e| e.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run<T: Real>(a: &Args, cfg: &ModelConfig, data: &Splits) -> Result<serde_json::Value, String> {
    let mut flow: Flow<T> = cfg.build().map_err(|e| e.to_string())?;
    let opts = TrainConfig {
        steps: Some(a.steps),
        batch_size: a.batch,
        schedule: Schedule {
            lr: a.lr,
            warmup: a.steps / 50,
            decay: Decay::Cosine { min_ratio: 0.01 },
        },
        seed: a.seed,
        threads: a.threads,
        ..TrainConfig::default()
    };
    let report = train(&mut flow, cfg, &opts, &data.train, None, &mut Silent, None).map_err(|e| e.to_string())?;
    let val = evaluate(&flow, &data.val, 1024).map_err(|e| e.to_string())?;
    let batch = data
        .val
        .data
        .slice_batch(0..512.min(data.val.len()))
        .map_err(|e| e.to_string())?;
    let batch: exactflow_layers::Tensor<T> = batch.cast();
    let mut lp_ms = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let t0 = Instant::now();
        let lp = flow.log_prob(&batch, None).map_err(|e| e.to_string())?;
        lp_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(lp);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x5a3f);
    let mut sample_ms = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let t0 = Instant::now();
        let x = flow.sample(512, 1.0, &mut rng, None).map_err(|e| e.to_string())?;
        sample_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(x);
    }
    Ok(json!({
        "framework": "exactflow",
        "model": a.model,
        "precision": T::NAME,
        "threads": a.threads,
        "steps": a.steps,
        "batch_size": a.batch,
        "lr": a.lr,
        "seed": a.seed,
        "samples_per_sec": report.samples_per_sec,
        "validation_nll": val.nll,
        "log_prob_ms_per_512": median(lp_ms),
        "sample_ms_per_512": median(sample_ms),
        "repeats": a.repeats,
    }))
}

fn main() -> ExitCode {
    // The allocator settings of `exactflow train`, so that both time the same training loop
    // (without them every step page-faults its freed buffers back in).
    exactflow::allocator::keep_freed_buffers();
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let result = config(&a.model, a.seed).and_then(|cfg| {
        let spec: DataSpec = "moons".parse().map_err(|e: exactflow_models::Error| e.to_string())?;
        let data = spec.load(a.seed, 20_000).map_err(|e| e.to_string())?;
        match a.precision.as_str() {
            "f32" => run::<f32>(&a, &cfg, &data),
            "f64" => run::<f64>(&a, &cfg, &data),
            p => Err(format!("unknown precision {p}\n{USAGE}")),
        }
    });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
