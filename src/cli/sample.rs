//! `exactflow sample DIR -n N --out FILE`: samples as PNG, .npy or CSV. A conditional model
//! takes `--context c_1,...,c_C` and draws from `p(x | c)` (a posterior, for a model of a
//! simulator); a PNG of a linear-Gaussian simulator's posterior shows its exact 1, 2 and 3 sigma
//! contours over the samples.
//!
//! `.npy` and CSV output is streamed: samples are drawn and written in chunks of about
//! [`CHUNK_BYTES`], so `-n` is bounded by the disk, not by memory. A picture holds at most
//! [`MAX_PNG_SAMPLES`].

use std::io::IsTerminal;

use exactflow::layers::Tensor;
use exactflow::models::data::sim::SimKind;
use exactflow::models::data::{DataSpec, csv, npy};
use exactflow::pictures;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::CliResult;
use super::args::SampleArgs;
use super::eval::{checkpoint_path, load_checkpoint};

/// The most samples a PNG picture shows.
pub(crate) const MAX_PNG_SAMPLES: usize = 10_000;
/// The size of one chunk of samples (float64) drawn and written at a time.
const CHUNK_BYTES: usize = 64 << 20;

pub fn run(a: SampleArgs) -> CliResult<()> {
    if a.n == 0 {
        return Err("-n must be at least 1".into());
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(format!("--temperature must be a number >= 0, found {}", a.temperature).into());
    }
    let ext = a.out.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    if !matches!(ext.as_deref(), Some("png" | "npy" | "csv")) {
        return Err(format!("--out {}: expected a .png, .npy or .csv file", a.out.display()).into());
    }
    if ext.as_deref() == Some("png") && a.n > MAX_PNG_SAMPLES {
        return Err(format!(
            "a .png picture shows at most {MAX_PNG_SAMPLES} samples, found -n {}: write .npy or .csv for more",
            a.n
        )
        .into());
    }
    let loaded = load_checkpoint(&checkpoint_path(&a.dir))?;
    let flow = loaded.flow;
    let context = context_row(&a, flow.context_dim())?;
    let repeat = |k: usize| -> CliResult<Option<Tensor<f64>>> {
        Ok(match &context {
            Some(c) => Some(Tensor::new(&[k, c.len()], c.repeat(k))?),
            None => None,
        })
    };
    if ext.as_deref() == Some("png")
        && let Some(img) = pictures::image_shape_of(flow.data_shape())
    {
        let cols = (a.n as f64).sqrt().ceil() as usize;
        if pictures::grid_pixels(a.n, img[1], img[2], cols, 4).is_none_or(|p| p > pictures::MAX_GRID_PIXELS) {
            return Err(format!(
                "a .png grid of {} images of {}x{} pixels would have more than {} pixels: use a smaller -n or write .npy",
                a.n,
                img[1],
                img[2],
                pictures::MAX_GRID_PIXELS
            )
            .into());
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let shape = flow.data_shape().to_vec();
    match ext.as_deref() {
        Some(kind @ ("npy" | "csv")) => {
            let sample_len: usize = shape.iter().product();
            let chunk = (CHUNK_BYTES / (8 * sample_len.max(1))).clamp(1, a.n);
            let bar = progress(a.n, chunk);
            let chunks = (0..a.n).step_by(chunk).map(|start| {
                let k = chunk.min(a.n - start);
                let x = repeat(k)
                    .map_err(|e| exactflow::Error::Config(e.0))
                    .and_then(|c| flow.sample(k, a.temperature, &mut rng, c.as_ref()));
                if let Some(b) = &bar {
                    b.inc(k as u64);
                }
                x
            });
            let written = if kind == "npy" {
                npy::write_f64_chunks(&a.out, a.n, &shape, chunks)
            } else {
                csv::write_chunks(&a.out, a.n, &shape, chunks)
            };
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            written?;
        }
        _ => {
            let x = flow.sample(a.n, a.temperature, &mut rng, repeat(a.n)?.as_ref())?;
            write_picture(&a, &flow, &x, context.as_deref())?;
        }
    }
    println!(
        "wrote {} samples (temperature {}) to {}",
        a.n,
        a.temperature,
        a.out.display()
    );
    Ok(())
}

/// A progress bar on a terminal when the samples take more than one chunk.
fn progress(n: usize, chunk: usize) -> Option<ProgressBar> {
    if n <= chunk || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} samples  [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// The `--context` row: required (of the model's width) for a conditional model, refused for an
/// unconditional one, finite.
fn context_row(a: &SampleArgs, width: usize) -> CliResult<Option<Vec<f64>>> {
    match (&a.context, width) {
        (None, 0) => Ok(None),
        (Some(c), 0) => Err(format!(
            "the model is unconditional, but --context gave {} values: omit --context",
            c.len()
        )
        .into()),
        (None, w) => {
            Err(format!("the model is conditional: give its context with --context c_1,...,c_{w} ({w} values)").into())
        }
        (Some(c), w) if c.len() != w => Err(format!(
            "--context has {} values, but the model's context has width {w}",
            c.len()
        )
        .into()),
        (Some(c), _) => match c.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(format!("--context value {} is {}, not a finite number", i + 1, c[i]).into()),
            None => Ok(Some(c.clone())),
        },
    }
}

/// The simulator a run was trained on: `--data`, or the "data" of DIR/metrics.json.
fn simulator(a: &SampleArgs) -> Option<SimKind> {
    let spec = match &a.data {
        Some(d) => d.clone(),
        None => {
            let text = std::fs::read_to_string(a.dir.join(exactflow::training::METRICS_FILE)).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v.get("data")?.as_str()?.to_string()
        }
    };
    match spec.parse::<DataSpec>() {
        Ok(DataSpec::Sim(k)) => Some(k),
        _ => None,
    }
}

/// A scatter for 2-D samples (with the exact posterior's contours for a linear-Gaussian
/// simulator), a grid for images.
fn write_picture(
    a: &SampleArgs,
    flow: &exactflow::models::Flow<f64>,
    x: &Tensor<f64>,
    context: Option<&[f64]>,
) -> CliResult<()> {
    if flow.data_shape() == [2] {
        let exact = match (context, simulator(a).and_then(SimKind::gaussian)) {
            (Some(c), Some(g)) if g.dim == 2 && c.len() == 2 => Some(g.posterior(c)?),
            _ => None,
        };
        let contours: Vec<Vec<[f64; 2]>> = exact
            .iter()
            .flat_map(|p| [1.0, 2.0, 3.0].map(|k| p.contour(k, 200)))
            .collect();
        let mut all = x.as_slice().to_vec();
        all.extend(contours.iter().flatten().flatten());
        let bounds = pictures::Bounds::of_points(&Tensor::new(&[all.len() / 2, 2], all)?, 0.1);
        let mut canvas = pictures::scatter(x, bounds, 480, [31, 119, 180]);
        for c in &contours {
            pictures::polyline(&mut canvas, c, bounds, [214, 39, 40]);
        }
        canvas.save(&a.out)?;
    } else if let Some(img) = pictures::image_shape_of(flow.data_shape()) {
        let mut shape = vec![a.n];
        shape.extend_from_slice(&img);
        let cols = (a.n as f64).sqrt().ceil() as usize;
        pictures::image_grid(&x.clone().reshape(&shape)?, cols, 4)?.save(&a.out)?;
    } else {
        return Err(format!(
            "samples of shape {:?} have no picture: write .npy or .csv instead",
            flow.data_shape()
        )
        .into());
    }
    Ok(())
}
