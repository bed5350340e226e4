//! `exactflow eval DIR --data SPEC`: mean NLL (and bits/dim) of a split under a trained flow;
//! with `--certify`, per-sample certified enclosures too (`certify.rs`).

use std::path::Path;
use std::time::Instant;

use exactflow::layers::Tensor;
use exactflow::models::checkpoint;
use exactflow::models::data::{DataSpec, npy};
use exactflow::models::eval::fitting_batch;
use exactflow::models::evaluate;
use exactflow::models::train::TrainState;
use serde_json::json;

use super::args::EvalArgs;
use super::{CliError, CliResult};

pub(crate) use exactflow::training::checkpoint_path;

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
    let splits = spec.load(data_seed(&path, &loaded)?, a.toy_samples)?;
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
    }
    Ok(())
}
