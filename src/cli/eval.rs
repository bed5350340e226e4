//! `exactflow eval DIR --data SPEC`: mean NLL (and bits/dim) of a split under a trained flow.

use std::path::Path;

use exactflow::layers::Tensor;
use exactflow::models::checkpoint;
use exactflow::models::data::{DataSpec, npy};
use exactflow::models::evaluate;
use exactflow::models::train::TrainState;
use serde_json::json;

use super::args::EvalArgs;
use super::{CliError, CliResult};

pub(crate) use exactflow::training::checkpoint_path;

/// The seed a checkpoint's data splits were drawn with: the training run's, or for a model-only
/// checkpoint the model's.
pub(crate) fn data_seed(path: &Path, loaded: &checkpoint::Loaded<f64>) -> CliResult<u64> {
    Ok(TrainState::of_checkpoint(path, loaded)?
        .map(|s| s.config.seed)
        .unwrap_or_else(|| loaded.config.seed()))
}

pub fn run(a: EvalArgs) -> CliResult<()> {
    let path = checkpoint_path(&a.dir);
    let loaded = checkpoint::load::<f64>(&path)?;
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
    let ev = evaluate(&loaded.flow, ds, exactflow::training::EVAL_BATCH)?;
    if let Some(out) = &a.per_sample {
        let t = Tensor::new(&[ev.log_likelihood.len()], ev.log_likelihood.clone())?;
        npy::write_f64(out, &t)?;
    }
    if a.json {
        let v = json!({
            "model": loaded.config.family(),
            "data": a.data,
            "split": a.split,
            "samples": ds.len(),
            "nll": ev.nll,
            "bits_per_dim": ev.bits_per_dim,
        });
        println!("{v}");
    } else {
        println!("{} samples of {} ({})", ds.len(), a.data, a.split);
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
