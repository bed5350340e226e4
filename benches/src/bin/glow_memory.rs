//! `glow_memory`: peak resident memory and throughput of Glow training, with and without the
//! memory-efficient backward (the issue's "K = 32 at most 1.3x K = 8" target).
//!
//! ```text
//! cargo run -p exactflow-benches --release --bin glow_memory -- --steps-per-level 32 --memory-efficient
//! cargo run -p exactflow-benches --release --bin glow_memory -- -K 8 --train-steps 20 --batch-size 64
//! cargo run -p exactflow-benches --release --bin glow_memory -- -K 8 --epochs 20 --eval   # + test bits/dim
//! cargo run -p exactflow-benches --release --bin glow_memory -- -K 32 --resize 1,28,28 --memory-efficient
//! ```
//!
//! Builds Glow (`--levels` L = 2, `-K`/`--steps-per-level` K, `--hidden` 64) on `--data`
//! (default `digits-image`: `[1, 8, 8]`, 17 levels, the CLI's train/validation/test splits for
//! `--seed`), optionally resized with `--resize C,H,W` (bilinear, 256 levels; `1,28,28` is
//! MNIST-sized and `3,32,32` CIFAR-sized, from the embedded digits, so no download), trains it with
//! the CLI's optimizer settings (Adam lr 1e-3, warmup 2% then cosine to 1%, clip 100) for
//! `--train-steps` steps (default 20) or `--epochs` epochs, batch `--batch-size` (64), `--threads`
//! (1), and prints one JSON object: K, mode, steps, samples/s, the parameter count, the bytes of
//! the loaded data set, the process's peak resident memory (`VmHWM` of `/proc/self/status`, KiB)
//! after building the model and loading the data and after training, and (with `--eval`) the test
//! NLL and bits/dim ([`exactflow_models::evaluate`]). `--keep-freed-buffers` applies the CLI's
//! allocator settings ([`exactflow::allocator::keep_freed_buffers`]) first. Run every
//! configuration in its own process: `VmHWM` never goes down.

use std::process::ExitCode;

use exactflow_layers::Tensor;
use exactflow_layers::{ParamKind, Params};
use exactflow_models::data::{DataSpec, Dataset, Splits};
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
    data: String,
    resize: Option<[usize; 3]>,
    keep_freed_buffers: bool,
}

const USAGE: &str = "usage: glow_memory [-K|--steps-per-level K (8)] [--levels L (2)] [--hidden H (64)] \
[--batch-size B (64)] [--train-steps S (20) | --epochs E] [--memory-efficient] [--eval] [--threads T (1)] [--seed S (0)] \
[--data SPEC (digits-image)] [--resize C,H,W] [--keep-freed-buffers]";

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
        data: "digits-image".to_string(),
        resize: None,
        keep_freed_buffers: false,
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
            "--data" => a.data = it.next().ok_or("--data needs a value")?,
            "--resize" => {
                let v = it.next().ok_or("--resize needs a value C,H,W")?;
                let dims: Vec<usize> = v
                    .split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("--resize: expected C,H,W (positive integers), found {v:?}"))?;
                match dims[..] {
                    [c, h, w] if c > 0 && h > 0 && w > 0 => a.resize = Some([c, h, w]),
                    _ => return Err(format!("--resize: expected C,H,W (positive integers), found {v:?}")),
                }
            }
            "--memory-efficient" => a.memory_efficient = true,
            "--keep-freed-buffers" => a.keep_freed_buffers = true,
            "--eval" => a.eval = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// `ds`'s images resized bilinearly (pixel centres aligned, edges clamped) to `[c, h, w]` and
/// requantized to 256 levels. A source with fewer channels than `c` fills the extra channels from
/// other images of the set (channel `ch` of image `s` is channel `ch % sc` of image
/// `(s + (ch / sc) * (n / c)) % n`): copies of one image would put the data on a subspace whose
/// noise-only directions ActNorm's data-dependent initialization scales up by about 900.
/// The memory of training depends on the image size, not on the pixel values, so this gives
/// MNIST- and CIFAR-sized inputs with the digits' pixel statistics and no download.
fn resize(ds: &Dataset, [c, h, w]: [usize; 3]) -> Result<Dataset, String> {
    let &[_, sc, sh, sw] = ds.data.shape() else {
        return Err(format!("--resize needs image data, found shape {:?}", ds.data.shape()));
    };
    let max = f64::from(ds.levels.unwrap_or(256).max(2) - 1);
    let src = ds.data.as_slice();
    let n = ds.len();
    let coord = |i: usize, dst: usize, src_len: usize| -> (usize, usize, f64) {
        let x = ((i as f64 + 0.5) * src_len as f64 / dst as f64 - 0.5).clamp(0.0, (src_len - 1) as f64);
        let lo = x.floor() as usize;
        (lo, (lo + 1).min(src_len - 1), x - lo as f64)
    };
    let mut out = Vec::with_capacity(n * c * h * w);
    for s in 0..n {
        for ch in 0..c {
            let from = (s + (ch / sc) * (n / c)) % n;
            let plane = &src[(from * sc + ch % sc) * sh * sw..][..sh * sw];
            for y in 0..h {
                let (y0, y1, fy) = coord(y, h, sh);
                for x in 0..w {
                    let (x0, x1, fx) = coord(x, w, sw);
                    let top = plane[y0 * sw + x0] * (1.0 - fx) + plane[y0 * sw + x1] * fx;
                    let bottom = plane[y1 * sw + x0] * (1.0 - fx) + plane[y1 * sw + x1] * fx;
                    let v = (top * (1.0 - fy) + bottom * fy) / max;
                    out.push((v * 255.0).round().clamp(0.0, 255.0));
                }
            }
        }
    }
    let data = Tensor::new(&[n, c, h, w], out).map_err(|e| format!("{e}"))?;
    Dataset::new(format!("{}-{c}x{h}x{w}", ds.name), data, Some(256), ds.labels.clone()).map_err(|e| format!("{e}"))
}

fn run(a: &Args) -> Result<serde_json::Value, String> {
    let kept = a.keep_freed_buffers && exactflow::allocator::keep_freed_buffers();
    if a.keep_freed_buffers && !kept {
        return Err("--keep-freed-buffers: the allocator settings were not applied (not glibc, or GLIBC_TUNABLES sets malloc tunables)".into());
    }
    let spec: DataSpec = a.data.parse().map_err(|e| format!("{e}"))?;
    let mut splits = spec.load(a.seed, 0).map_err(|e| format!("{e}"))?;
    if let Some(dims) = a.resize {
        splits = Splits {
            train: resize(&splits.train, dims)?,
            val: resize(&splits.val, dims)?,
            test: resize(&splits.test, dims)?,
        };
    }
    let data_kib = ((splits.train.data.len() + splits.val.data.len() + splits.test.data.len()) * 8) as f64 / 1024.0;
    let shape = splits.train.sample_shape();
    let shape: [usize; 3] = shape
        .try_into()
        .map_err(|_| format!("{} has samples of shape {shape:?}, expected [C, H, W]", a.data))?;
    let model = ModelConfig::Glow(GlowConfig {
        shape,
        levels: a.levels,
        steps: a.k,
        hidden: a.hidden,
        coupling: GlowCouplingKind::Affine,
        permutation: GlowPermutation::LuConv,
        seed: a.seed,
        context_dim: 0,
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
        "data": splits.train.name,
        "shape": shape,
        "data_kib": data_kib,
        "levels": a.levels,
        "K": a.k,
        "hidden": a.hidden,
        "mode": if a.memory_efficient { "memory_efficient" } else { "cached" },
        "keep_freed_buffers": kept,
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
