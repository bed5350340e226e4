//! `exactflow train`: data, preset, training with a progress bar, evaluation, checkpoint,
//! metrics.json and pictures.

use std::path::{Path, PathBuf};

use exactflow::models::data::{DataSpec, Dataset, Splits};
use exactflow::models::eval::fitting_batch;
use exactflow::models::train::{Decay, Schedule, TrainConfig, TrainReport, TrainState, train};
use exactflow::models::{Evaluation, Flow, ModelConfig, evaluate};
use exactflow::pictures;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::args::TrainArgs;
use super::progress::Progress;
use super::{CliError, CliResult, write_json};

/// Model families the CLI can train.
const FAMILIES: [&str; 6] = ["nice", "realnvp", "glow", "maf", "iaf", "nsf"];

/// Default optimizer steps for toy data.
const TOY_STEPS: u64 = 2000;
/// Default epochs for everything else.
const DEFAULT_EPOCHS: usize = 40;
/// Samples per evaluation batch (fewer for images too large for that many in memory).
const EVAL_BATCH: usize = 1024;

pub fn run(a: TrainArgs) -> CliResult<()> {
    let family = check_args(&a)?;
    let spec: DataSpec = a.data.parse()?;
    let splits = spec.load(a.seed, a.toy_samples)?;
    let preset = a.preset.clone().unwrap_or_else(|| default_preset(&spec).to_string());
    let (out, ckpt) = output_paths(&a, family)?;
    let (model_cfg, mut flow, resume) = model_to_train(&a, family, &preset, &splits, &ckpt)?;
    let train_cfg = train_config(
        &a,
        &spec,
        &splits,
        resume.as_ref(),
        &ckpt,
        fitting_batch(&flow, EVAL_BATCH),
    );
    let report = run_training(
        &a, family, &preset, &splits, &model_cfg, &mut flow, &train_cfg, resume, &ckpt,
    )?;
    report_results(
        &a, family, &preset, &splits, &model_cfg, &flow, &train_cfg, &report, &out, &ckpt,
    )
}

/// The flags that are wrong on their own; returns the model family.
fn check_args(a: &TrainArgs) -> CliResult<&'static str> {
    let Some(family) = FAMILIES.iter().copied().find(|f| *f == a.model) else {
        return Err(format!("unknown model '{}': expected one of {}", a.model, FAMILIES.join(", ")).into());
    };
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return Err(format!("--lr must be a positive number, found {}", a.lr).into());
    }
    super::parallelism(a.threads)?;
    Ok(family)
}

/// The preset a data set trains with when `--preset` is not given.
fn default_preset(spec: &DataSpec) -> &'static str {
    match spec {
        DataSpec::Digits { .. } => "digits",
        DataSpec::Mnist(_) => "mnist",
        DataSpec::Cifar10(_) => "cifar10",
        _ => "toy",
    }
}

/// The run directory (`--out`, or `runs/{family}-{data}`), created, and the checkpoint in it.
fn output_paths(a: &TrainArgs, family: &str) -> CliResult<(PathBuf, PathBuf)> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{family}-{}", sanitize(&a.data))));
    std::fs::create_dir_all(&out).map_err(|e| CliError(format!("cannot create {}: {e}", out.display())))?;
    let ckpt = out.join("model.safetensors");
    Ok((out, ckpt))
}

/// A new model from the preset, or with `--resume` the one in the run directory's checkpoint
/// and its training state; either way checked against the data's sample shape.
fn model_to_train(
    a: &TrainArgs,
    family: &str,
    preset: &str,
    splits: &Splits,
    ckpt: &Path,
) -> CliResult<(ModelConfig, Flow<f64>, Option<TrainState>)> {
    let shape = splits.train.sample_shape();
    let (model_cfg, flow, resume) = if a.resume {
        let loaded = super::eval::load_checkpoint(ckpt)?;
        if loaded.config.family() != family {
            return Err(format!(
                "--resume: {} holds a {} model, not {family}",
                ckpt.display(),
                loaded.config.family()
            )
            .into());
        }
        let state = TrainState::of_checkpoint(ckpt, &loaded)?
            .ok_or_else(|| CliError(format!("--resume: {} has no training state", ckpt.display())))?;
        (loaded.config, loaded.flow, Some(state))
    } else {
        let cfg = ModelConfig::preset(family, preset, shape, a.seed)?;
        let flow = cfg.build::<f64>()?;
        (cfg, flow, None)
    };
    if flow.data_shape() != shape {
        return Err(format!(
            "{} has samples of shape {shape:?}, but the model in {} expects {:?}",
            a.data,
            ckpt.display(),
            flow.data_shape()
        )
        .into());
    }
    Ok((model_cfg, flow, resume))
}

/// The training configuration: from the flags, or the resumed run's own. Either way the run
/// writes its checkpoint to `ckpt`, inside `--out`: never to a path a checkpoint file names.
fn train_config(
    a: &TrainArgs,
    spec: &DataSpec,
    splits: &Splits,
    resume: Option<&TrainState>,
    ckpt: &Path,
    eval_batch: usize,
) -> TrainConfig {
    if let Some(st) = resume {
        return TrainConfig {
            checkpoint: Some(ckpt.to_path_buf()),
            ..st.config.clone()
        };
    }
    let is_toy = matches!(spec, DataSpec::Toy(_));
    let steps = match (a.steps, a.epochs) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) if is_toy => Some(TOY_STEPS),
        (None, None) => None,
    };
    let epochs = a.epochs.unwrap_or(DEFAULT_EPOCHS);
    let n = splits.train.len();
    let bs = a.batch_size.min(n.max(1));
    let total = steps.unwrap_or_else(|| (epochs as u64).saturating_mul((n / bs).max(1) as u64));
    TrainConfig {
        steps,
        epochs,
        batch_size: a.batch_size,
        schedule: Schedule {
            lr: a.lr,
            warmup: total / 50,
            decay: Decay::Cosine { min_ratio: 0.01 },
        },
        patience: a.patience,
        memory_efficient: a.memory_efficient,
        seed: a.seed,
        threads: a.threads,
        checkpoint: Some(ckpt.to_path_buf()),
        eval_batch,
        ..TrainConfig::default()
    }
}

/// Trains with a progress bar; a failure names the last good checkpoint.
#[allow(clippy::too_many_arguments)]
fn run_training(
    a: &TrainArgs,
    family: &str,
    preset: &str,
    splits: &Splits,
    model_cfg: &ModelConfig,
    flow: &mut Flow<f64>,
    train_cfg: &TrainConfig,
    resume: Option<TrainState>,
    ckpt: &Path,
) -> CliResult<TrainReport> {
    let n = splits.train.len();
    if let Some(st) = &resume {
        st.check_resumable(train_cfg, n, flow)?;
    }
    let bs = train_cfg.batch_size.min(n.max(1));
    let total = train_cfg
        .steps
        .unwrap_or_else(|| (train_cfg.epochs as u64).saturating_mul((n / bs).max(1) as u64));
    eprintln!(
        "training {family} ({preset}) on {} ({} train / {} validation / {} test samples of shape {:?}), {total} steps",
        a.data,
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        splits.train.sample_shape()
    );
    let mut progress = Progress::new(total);
    let result = train(
        flow,
        model_cfg,
        train_cfg,
        &splits.train,
        Some(&splits.val),
        &mut progress,
        resume,
    );
    progress.finish();
    result.map_err(|e| CliError(format!("{e}; the last good checkpoint (if any) is {}", ckpt.display())))
}

/// Evaluates every split, writes the pictures and `metrics.json`, and prints the summary.
#[allow(clippy::too_many_arguments)]
fn report_results(
    a: &TrainArgs,
    family: &str,
    preset: &str,
    splits: &Splits,
    model_cfg: &ModelConfig,
    flow: &Flow<f64>,
    train_cfg: &TrainConfig,
    report: &TrainReport,
    out: &Path,
    ckpt: &Path,
) -> CliResult<()> {
    let eval = |ds: &Dataset| evaluate(flow, ds, fitting_batch(flow, EVAL_BATCH));
    let (tr, va, te) = (eval(&splits.train)?, eval(&splits.val)?, eval(&splits.test)?);
    let pictures = write_pictures(out, flow, &splits.train, a.seed)?;
    let metrics = json!({
        "model": family,
        "preset": preset,
        "data": a.data,
        "seed": a.seed,
        "threads": a.threads,
        "train": split_json(&tr),
        "validation": split_json(&va),
        "test": split_json(&te),
        "steps": report.steps,
        "epochs": report.epochs,
        "best_epoch": report.best_epoch,
        "stopped_early": report.stopped_early,
        "samples_per_sec": report.samples_per_sec,
        "wall_seconds": report.wall_seconds,
        "config": model_cfg,
        "train_config": train_cfg,
        "pictures": pictures.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    write_json(&out.join("metrics.json"), &metrics)?;

    let bpd = |e: &Evaluation| {
        e.bits_per_dim
            .map(|b| format!(" ({b:.4} bits/dim)"))
            .unwrap_or_default()
    };
    println!("test NLL: {:.4} nats{}", te.nll, bpd(&te));
    println!("validation NLL: {:.4} nats{}", va.nll, bpd(&va));
    println!(
        "trained {} steps in {:.1} s ({:.0} samples/s)",
        report.steps, report.wall_seconds, report.samples_per_sec
    );
    println!("model: {}", ckpt.display());
    println!("metrics: {}", out.join("metrics.json").display());
    for p in &pictures {
        println!("picture: {}", p.display());
    }
    Ok(())
}

/// A data spec as a directory name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect()
}

fn split_json(e: &Evaluation) -> serde_json::Value {
    json!({ "nll": e.nll, "bits_per_dim": e.bits_per_dim })
}

/// 2-D data: the density beside samples; 64-dimensional digits or image data: a grid of
/// samples at temperatures 1.0, 0.7 and 0.5, and a strip interpolating in latent space between
/// two training images.
pub(crate) fn write_pictures(out: &Path, flow: &Flow<f64>, train: &Dataset, seed: u64) -> CliResult<Vec<PathBuf>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a4d_91e5);
    let mut written = Vec::new();
    if flow.data_shape() == [2] {
        let samples = flow.sample(2000, 1.0, &mut rng, None)?;
        let shown = train.subset(&(0..train.len().min(2000)).collect::<Vec<_>>())?;
        let path = out.join("density_samples.png");
        pictures::save_density_and_samples(&path, flow, &shown.data, &samples)?;
        written.push(path);
    } else if let Some(image_shape) = image_shape_of(flow.data_shape())
        && pictures::grid_pixels(30, image_shape[1], image_shape[2], 10, 4)
            .is_some_and(|p| p <= pictures::MAX_GRID_PIXELS)
    {
        // Images too large for a grid of 30 get no pictures (the samples can be written with
        // `exactflow sample --out FILE.npy`).
        let mut rows = Vec::new();
        for t in [1.0, 0.7, 0.5] {
            rows.push(flow.sample(10, t, &mut rng, None)?);
        }
        let all = exactflow::layers::Tensor::concat_batch(&rows)?;
        let mut shape = vec![all.batch()];
        shape.extend_from_slice(&image_shape);
        let grid = pictures::image_grid(&all.reshape(&shape)?, 10, 4)?;
        let path = out.join("samples.png");
        grid.save(&path)?;
        written.push(path);
        // The Glow paper's figure: a straight line in latent space between two real images,
        // decoded. Discrete data are shown at the centre of their dequantization bins.
        if train.len() >= 2 {
            let to_input = |i: usize| -> CliResult<exactflow::layers::Tensor<f64>> {
                let x = train.data.slice_batch(i..i + 1)?;
                Ok(match train.levels {
                    Some(k) => x.map(|v| (v + 0.5) / k as f64),
                    None => x,
                })
            };
            // Reconstructions beside their inputs: the first row real images, the second
            // decode(encode(x)), which must look identical.
            let k = train.len().min(10);
            let inputs =
                exactflow::layers::Tensor::concat_batch(&(0..k).map(to_input).collect::<CliResult<Vec<_>>>()?)?;
            let recon = flow.decode(&flow.encode(&inputs, None)?, None)?;
            let both = exactflow::layers::Tensor::concat_batch(&[inputs, recon])?;
            let mut shape = vec![both.batch()];
            shape.extend_from_slice(&image_shape);
            let path = out.join("reconstructions.png");
            pictures::image_grid(&both.reshape(&shape)?, k, 4)?.save(&path)?;
            written.push(path);
            let (a, b) = (to_input(0)?, to_input(train.len() / 2)?);
            let strip = flow.interpolate(&a, &b, 10, None)?;
            let mut shape = vec![strip.batch()];
            shape.extend_from_slice(&image_shape);
            let path = out.join("interpolation.png");
            pictures::image_grid(&strip.reshape(&shape)?, 10, 4)?.save(&path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The image shape to draw samples of this shape as: `[C, H, W]` itself, or `[1, s, s]` for a
/// vector of a square length (the digits as 64-vectors).
pub(crate) fn image_shape_of(shape: &[usize]) -> Option<Vec<usize>> {
    match *shape {
        [c, h, w] if c == 1 || c == 3 => Some(vec![c, h, w]),
        [d] => {
            let s = (d as f64).sqrt().round() as usize;
            (s * s == d && s >= 4).then(|| vec![1, s, s])
        }
        _ => None,
    }
}
