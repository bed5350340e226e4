//! `glow_memory`: peak resident memory and throughput of Glow training on the digits as 8x8 images,
//! with and without the memory-efficient backward (the issue's "K = 32 at most 1.3x K = 8" target).
//!
//! ```text
//! cargo run -p exactflow-benches --release --bin glow_memory -- --steps-per-level 32 --memory-efficient
//! cargo run -p exactflow-benches --release --bin glow_memory -- -K 8 --train-steps 20 --batch-size 64
//! cargo run -p exactflow-benches --release --bin glow_memory -- -K 8 --epochs 20 --eval   # + test bits/dim
//! ```
//!
//! Builds Glow (`--levels` L = 2, `-K`/`--steps-per-level` K, `--hidden` 64) on `digits-image`
//! (`[1, 8, 8]`, 17 levels, the CLI's train/validation/test splits for `--seed`), trains it with
//! the CLI's optimizer settings (Adam lr 1e-3, warmup 2% then cosine to 1%, clip 100) for
//! `--train-steps` steps (default 20) or `--epochs` epochs, batch `--batch-size` (64), `--threads`
//! (1), and prints one JSON object: K, mode, steps, samples/s, the parameter count, the process's
//! peak resident memory (`VmHWM` of `/proc/self/status`, KiB) after building the model and loading
//! the data and after training, and (with `--eval`) the test NLL and bits/dim
//! ([`exactflow_models::evaluate`]). Run every configuration in its own process: `VmHWM` never goes
//! down.

use std::process::ExitCode;

use exactflow_layers::{ParamKind, Params};
use exactflow_models::data::DataSpec;
use exactflow_models::train::{Decay, Schedule, Silent, TrainConfig, train};
use exactflow_models::{GlowConfig, GlowCouplingKind, GlowPermutation, ModelConfig, evaluate};
use serde_json::json;

/// A line of `/proc/self/status` (e.g. `VmHWM`) in KiB, if readable.
fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

struct Args {
    k: usize,
    levels: usize,
    hidden: usize,
    batch: usize,
    steps: u64,
    epochs: Option<usize>,
    memory_efficient: bool,
    eval: bool,
    threads: usize,
    seed: u64,
}

const USAGE: &str = "usage: glow_memory [-K|--steps-per-level K (8)] [--levels L (2)] [--hidden H (64)] \
[--batch-size B (64)] [--train-steps S (20) | --epochs E] [--memory-efficient] [--eval] [--threads T (1)] [--seed S (0)]";

fn parse() -> Result<Args, String> {
    let mut a = Args {
        k: 8,
        levels: 2,
        hidden: 64,
        batch: 64,
        steps: 20,
        epochs: None,
        memory_efficient: false,
        eval: false,
        threads: 1,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse::<u64>()
                .map_err(|_| format!("{name}: expected a non-negative integer, found {v:?}"))
        };
        match arg.as_str() {
            "-K" | "--steps-per-level" | "--k" => a.k = value(&arg)? as usize,
            "--levels" => a.levels = value(&arg)? as usize,
            "--hidden" => a.hidden = value(&arg)? as usize,
            "--batch-size" => a.batch = value(&arg)? as usize,
            "--train-steps" => a.steps = value(&arg)?,
            "--epochs" => a.epochs = Some(value(&arg)? as usize),
            "--threads" => a.threads = value(&arg)? as usize,
            "--seed" => a.seed = value(&arg)?,
            "--memory-efficient" => a.memory_efficient = true,
            "--eval" => a.eval = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn run(a: &Args) -> Result<serde_json::Value, String> {
    let spec: DataSpec = "digits-image".parse().map_err(|e| format!("{e}"))?;
    let splits = spec.load(a.seed, 0).map_err(|e| format!("{e}"))?;
    let shape = splits.train.sample_shape();
    let shape: [usize; 3] = shape
        .try_into()
        .map_err(|_| format!("digits-image has samples of shape {shape:?}, expected [C, H, W]"))?;
    let model = ModelConfig::Glow(GlowConfig {
        shape,
        levels: a.levels,
        steps: a.k,
        hidden: a.hidden,
        coupling: GlowCouplingKind::Affine,
        permutation: GlowPermutation::LuConv,
        seed: a.seed,
    });
    let mut flow = model.build::<f64>().map_err(|e| format!("{e}"))?;
    let (mut trainable, mut buffers) = (0usize, 0usize);
    flow.visit_params("", &mut |_, p| match p.kind {
        ParamKind::Trainable => trainable += p.value.len(),
        ParamKind::Buffer => buffers += p.value.len(),
    });
    let n = splits.train.len();
    let bs = a.batch.min(n.max(1));
    let total = match a.epochs {
        Some(e) => (e * (n / bs).max(1)) as u64,
        None => a.steps,
    };
    let cfg = TrainConfig {
        steps: if a.epochs.is_some() { None } else { Some(a.steps) },
        epochs: a.epochs.unwrap_or(1),
        batch_size: a.batch,
        schedule: Schedule {
            lr: 1e-3,
            warmup: total / 50,
            decay: Decay::Cosine { min_ratio: 0.01 },
        },
        memory_efficient: a.memory_efficient,
        seed: a.seed,
        threads: a.threads,
        checkpoint: None,
        ..TrainConfig::default()
    };
    let hwm_before = status_kib("VmHWM");
    let rss_before = status_kib("VmRSS");
    // Validation only when evaluating (as the CLI, once per epoch; excluded from samples/s).
    let val = a.eval.then_some(&splits.val);
    let report = train(&mut flow, &model, &cfg, &splits.train, val, &mut Silent, None).map_err(|e| format!("{e}"))?;
    let hwm_after = status_kib("VmHWM");
    let test = if a.eval {
        let ev = evaluate(&flow, &splits.test, 1024).map_err(|e| format!("{e}"))?;
        json!({ "nll": ev.nll, "bits_per_dim": ev.bits_per_dim })
    } else {
        serde_json::Value::Null
    };
    // Parameters, their gradients and Adam's two moments: 4 f64 per trainable value.
    let param_state_kib = (4 * trainable * 8) as f64 / 1024.0;
    Ok(json!({
        "model": "glow",
        "data": "digits-image",
        "levels": a.levels,
        "K": a.k,
        "hidden": a.hidden,
        "mode": if a.memory_efficient { "memory_efficient" } else { "cached" },
        "batch_size": bs,
        "threads": a.threads,
        "steps": report.steps,
        "epochs": report.epochs,
        "samples_per_sec": report.samples_per_sec,
        "wall_seconds": report.wall_seconds,
        "train_nll_last_epoch": report.train_nll,
        "trainable_params": trainable,
        "buffer_values": buffers,
        "param_grad_adam_kib_estimate": param_state_kib,
        "vm_rss_before_train_kib": rss_before,
        "vm_hwm_before_train_kib": hwm_before,
        "vm_hwm_kib": hwm_after,
        "test": test,
    }))
}

fn main() -> ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("glow_memory: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("glow_memory: {e}");
            ExitCode::FAILURE
        }
    }
}
