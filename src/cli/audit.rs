//! `exactflow audit DIR`: the numerical audit of a trained flow, as a table or JSON.

use exactflow::layers::BinStats;
use exactflow::layers::Tensor;
use exactflow::models::audit::{StageAudit, audit_flow};
use exactflow::models::data::{DataSpec, dequantize};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::args::AuditArgs;
use super::eval::{checkpoint_path, data_seed, load_checkpoint};
use super::{CliError, CliResult};

/// The most samples an audit takes (each costs D forward passes per layer and a D x D Jacobian).
pub(crate) const MAX_SAMPLES: usize = 1000;

/// Seed of the audit's samples and dequantization noise.
const AUDIT_SEED: u64 = 0xa0d1_7000;

pub fn run(a: AuditArgs) -> CliResult<()> {
    if a.samples == 0 || a.samples > MAX_SAMPLES {
        return Err(format!("--samples must be between 1 and {MAX_SAMPLES}, found {}", a.samples).into());
    }
    let path = checkpoint_path(&a.dir);
    let loaded = load_checkpoint(&path)?;
    let seed = data_seed(&path, &loaded)?;
    let flow = loaded.flow;
    let mut rng = ChaCha8Rng::seed_from_u64(AUDIT_SEED);
    let x: Tensor<f64> = match &a.data {
        Some(spec) => {
            let spec: DataSpec = spec.parse()?;
            let splits = spec.load(seed, a.toy_samples.unwrap_or_else(|| spec.default_samples()))?;
            let test = &splits.test;
            if test.sample_shape() != flow.data_shape() {
                return Err(CliError(format!(
                    "{} has samples of shape {:?}, but the model expects {:?}",
                    spec,
                    test.sample_shape(),
                    flow.data_shape()
                )));
            }
            let x = test.data.slice_batch(0..a.samples.min(test.len()))?;
            match test.levels {
                Some(k) => dequantize(&x, k, &mut rng)?,
                None => x,
            }
        }
        None => flow.sample(a.samples, 1.0, &mut rng, None)?,
    };
    let report = audit_flow(&flow, &x, None)?;
    if a.json {
        let v = serde_json::to_value(&report).map_err(|e| CliError(format!("JSON: {e}")))?;
        println!("{v}");
    } else {
        println!(
            "{:<10} {:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  verdict",
            "stage", "kind", "inv rel", "inv f64", "ld exact", "ld fd", "cond max", "grad"
        );
        for s in report.stages.iter().chain(std::iter::once(&report.flow)) {
            print_row(s);
        }
        print_bins(&report.stages);
        println!(
            "{} samples, {} precision: {}",
            report.samples,
            report.precision,
            if report.pass { "every layer passes" } else { "FAILED" }
        );
        for s in report.stages.iter().chain(std::iter::once(&report.flow)) {
            for f in &s.failures {
                println!("  {}: {f}", s.name);
            }
        }
    }
    if report.pass {
        Ok(())
    } else {
        let failed: Vec<&str> = report
            .stages
            .iter()
            .chain(std::iter::once(&report.flow))
            .filter(|s| !s.pass)
            .map(|s| s.name.as_str())
            .collect();
        Err(format!("audit failed for {}", failed.join(", ")).into())
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2e}")).unwrap_or_else(|| "-".into())
}

fn print_row(s: &StageAudit) {
    println!(
        "{:<10} {:<28} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  {}",
        s.name,
        s.kind,
        format!("{:.2e}", s.inverse.max_rel),
        format!("{:.2e}", s.inverse_f64.max_rel),
        cell(s.logdet_exact_error),
        cell(s.logdet_fd_error),
        cell(s.cond_max),
        cell(s.grad_error),
        if s.pass { "ok" } else { "FAIL" }
    );
}

/// One line per spline layer: its worst-conditioned bin, its narrowest and flattest bins, the
/// inputs per bin and the worst in-bin round trip (`--json` has every bin).
fn print_bins(stages: &[StageAudit]) {
    let spline_layers: Vec<(&StageAudit, &Vec<BinStats>)> =
        stages.iter().filter_map(|s| s.bins.as_ref().map(|b| (s, b))).collect();
    if spline_layers.is_empty() {
        return;
    }
    println!("spline bins (over every spline at the audited inputs; --json lists each bin):");
    for (s, bins) in spline_layers {
        let worst = |f: fn(&BinStats) -> f64| {
            bins.iter()
                .max_by(|a, b| f(a).total_cmp(&f(b)))
                .map(|b| (b.bin, f(b)))
                .unwrap_or((0, f64::NAN))
        };
        let (cb, cond) = worst(|b| b.cond);
        let (wb, width) = worst(|b| -b.min_width);
        let (hb, height) = worst(|b| -b.min_height);
        let (_, rt) = worst(|b| b.round_trip);
        let inputs: Vec<String> = bins.iter().map(|b| b.inputs.to_string()).collect();
        println!(
            "  {:<10} cond max {cond:.2e} (bin {cb}), min width {:.2e} (bin {wb}), min height {:.2e} (bin {hb}), round trip {rt:.2e}, inputs per bin [{}]",
            s.name,
            -width,
            -height,
            inputs.join(" ")
        );
    }
}
