//! `exactflow train`: the flags as [`TrainOptions`], then the shared [`TrainingRun`] (data,
//! preset, training, evaluation, checkpoint, metrics.json and pictures) with a progress bar, and
//! the summary on stdout.

use exactflow::models::Evaluation;
use exactflow::progress::Progress;
use exactflow::training::{TrainData, TrainOptions, TrainingRun, default_out_dir};

use super::args::TrainArgs;
use super::{CliError, CliResult};

pub fn run(a: TrainArgs) -> CliResult<()> {
    let mut options = options(&a)?;
    let family = options
        .check()
        .map_err(|e| CliError(format!("{}: {}", e.flag(), e.reason)))?;
    let mut data = TrainData::parse(&a.data)?;
    if let Some(c) = &a.context {
        data = data.with_context_file(c)?;
    }
    if let Some(k) = a.context_cols {
        data = data.with_context_columns(k)?;
    }
    let out = options
        .out
        .get_or_insert_with(|| default_out_dir(family, &data.label))
        .clone();
    let mut run = TrainingRun::prepare(&options, &data)?;
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("{}", run.summary());
    let mut progress = Progress::new(run.total_steps());
    let result = run.train(&mut progress);
    progress.finish();
    let report = result.map_err(|e| {
        let ckpt = run.checkpoint().map(|p| p.display().to_string()).unwrap_or_default();
        CliError(format!("{e}; the last good checkpoint (if any) is {ckpt}"))
    })?;
    let results = run.finish(&report)?;
    let bpd = |e: &Evaluation| {
        e.bits_per_dim
            .map(|b| format!(" ({b:.4} bits/dim)"))
            .unwrap_or_default()
    };
    println!("test NLL: {:.4} nats{}", results.test.nll, bpd(&results.test));
    println!(
        "validation NLL: {:.4} nats{}",
        results.validation.nll,
        bpd(&results.validation)
    );
    println!(
        "trained {} steps in {:.1} s ({:.0} samples/s)",
        report.steps, report.wall_seconds, report.samples_per_sec
    );
    if let Some(ckpt) = run.checkpoint() {
        println!("model: {}", ckpt.display());
    }
    println!("metrics: {}", out.join(exactflow::training::METRICS_FILE).display());
    for p in &results.pictures {
        println!("picture: {}", p.display());
    }
    Ok(())
}

/// The flags as the shared options.
fn options(a: &TrainArgs) -> CliResult<TrainOptions> {
    Ok(TrainOptions {
        model: a.model.clone(),
        preset: a.preset.clone(),
        epochs: a.epochs,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        threads: a.threads,
        precision: a.precision.parse()?,
        out: a.out.clone(),
        toy_samples: a.toy_samples,
        patience: a.patience,
        resume: a.resume,
        memory_efficient: a.memory_efficient,
        context_embedding: a.context_embedding.as_deref().map(str::parse).transpose()?,
    })
}
