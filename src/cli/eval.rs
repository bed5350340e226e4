//! `exactflow eval DIR --data SPEC`: mean NLL (and bits/dim) of a split under a trained flow
//! (the conditional NLL `-log q(theta | x)` for a conditional flow); with `--certify`, per-sample
//! certified enclosures too (`certify.rs`); for a model of a linear-Gaussian simulator, the
//! exact-posterior check (`exactflow::models::posterior`).

use std::path::Path;
use std::time::Instant;

use exactflow::layers::Tensor;
use exactflow::models::checkpoint;
use exactflow::models::data::{DataSpec, npy};
use exactflow::models::eval::check_context;
use exactflow::models::eval::fitting_batch;
use exactflow::models::evaluate;
use exactflow::models::posterior::check_posterior;
use exactflow::models::train::TrainState;
use exactflow::training::TrainData;
use serde_json::json;

use super::args::EvalArgs;
use super::{CliError, CliResult};

pub(crate) use exactflow::training::checkpoint_path;

/// The seed of the exact-posterior check's draws (fixed, so repeated evaluations agree).
const POSTERIOR_SEED: u64 = 0x9057_e41a;

/// Loads a checkpoint, printing its one-line warning (an older file without checksums) to stderr.
pub(crate) fn load_checkpoint(path: &Path) -> CliResult<checkpoint::Loaded<f64>> {
    let loaded = checkpoint::load::<f64>(path)?;
    if let Some(w) = loaded.warning() {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(loaded)
}

/// The seed a checkpoint's data splits were drawn with: the training run's, or for a model-only
/// checkpoint the model's.
pub(crate) fn data_seed(path: &Path, loaded: &checkpoint::Loaded<f64>) -> CliResult<u64> {
    Ok(TrainState::of_checkpoint(path, loaded)?
        .map(|s| s.config.seed)
        .unwrap_or_else(|| loaded.config.seed()))
}

pub fn run(a: EvalArgs) -> CliResult<()> {
    let path = checkpoint_path(&a.dir);
    let loaded = load_checkpoint(&path)?;
    let spec: DataSpec = a.data.parse()?;
    let mut data = TrainData::parse(&a.data)?;
    if let Some(c) = &a.context {
        data = data.with_context_file(c)?;
    }
    if let Some(k) = a.context_cols {
        data = data.with_context_columns(k)?;
    }
    let splits = data.splits(data_seed(&path, &loaded)?, a.toy_samples)?;
    let ds = match a.split.as_str() {
        "train" => &splits.train,
        "val" | "validation" => &splits.val,
        "test" => &splits.test,
        other => return Err(format!("unknown --split '{other}': expected train, val or test").into()),
    };
    if ds.sample_shape() != loaded.flow.data_shape() {
        return Err(CliError(format!(
            "{} has samples of shape {:?}, but the model in {} expects {:?}",
            a.data,
            ds.sample_shape(),
            path.display(),
            loaded.flow.data_shape()
        )));
    }
    check_context(&loaded.flow, ds)?;
    let posterior = match (&spec, a.certify) {
        (DataSpec::Sim(kind), false) => match kind.gaussian() {
            Some(g) => {
                if !(1..=10_000).contains(&a.observations) || !(2..=1_000_000).contains(&a.posterior_samples) {
                    return Err(format!(
                        "--observations must be 1 to 10000 and --posterior-samples 2 to 1000000, found {} and {}",
                        a.observations, a.posterior_samples
                    )
                    .into());
                }
                let ctx = ds.context.as_ref().ok_or("the simulator's split has no context")?;
                let m = a.observations.min(ds.len());
                let xs = ctx.slice_batch(0..m)?;
                Some(check_posterior(
                    &loaded.flow,
                    &g,
                    &xs,
                    a.posterior_samples,
                    POSTERIOR_SEED,
                )?)
            }
            None => None,
        },
        _ => None,
    };
    let t0 = Instant::now();
    let ev = evaluate(
        &loaded.flow,
        ds,
        fitting_batch(&loaded.flow, exactflow::training::EVAL_BATCH),
    )?;
    let f64_seconds = t0.elapsed().as_secs_f64();
    if let Some(out) = &a.per_sample {
        let t = Tensor::new(&[ev.log_likelihood.len()], ev.log_likelihood.clone())?;
        npy::write_f64(out, &t)?;
    }
    if a.certify {
        return super::certify::run(&a, &loaded.flow, loaded.config.family(), ds, &ev, f64_seconds);
    }
    if a.json {
        let v = json!({
            "model": loaded.config.family(),
            "data": a.data,
            "split": a.split,
            "samples": ds.len(),
            "stored_precision": loaded.precision.name(),
            "nll": ev.nll,
            "bits_per_dim": ev.bits_per_dim,
            "context_dim": loaded.flow.context_dim(),
            "posterior_check": posterior,
        });
        println!("{v}");
    } else {
        println!(
            "{} samples of {} ({}), model stored in {}, evaluated in f64",
            ds.len(),
            a.data,
            a.split,
            loaded.precision
        );
        match ev.bits_per_dim {
            Some(b) => println!("NLL {:.6} nats ({b:.6} bits/dim)", ev.nll),
            None => println!("NLL {:.6} nats", ev.nll),
        }
        if let Some(out) = &a.per_sample {
            println!("per-sample log p(x): {}", out.display());
        }
        if let Some(p) = &posterior {
            println!(
                "exact posterior ({} held-out observations x {} draws): KL(p || q) = {:.4} +- {:.4} nats",
                p.observations, p.samples_per_observation, p.kl, p.kl_stderr
            );
            for c in &p.coverage {
                println!(
                    "  the flow's {:.0}% HPD region covers {:.4} +- {:.4} of the exact posterior",
                    100.0 * c.level,
                    c.coverage,
                    c.stderr
                );
            }
        }
    }
    Ok(())
}
