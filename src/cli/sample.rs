//! `exactflow sample DIR -n N --out FILE`: samples as PNG, .npy or CSV.

use exactflow::models::checkpoint;
use exactflow::models::data::{csv, npy};
use exactflow::pictures;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::CliResult;
use super::args::SampleArgs;
use super::eval::checkpoint_path;

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
    let loaded = checkpoint::load::<f64>(&checkpoint_path(&a.dir))?;
    let flow = loaded.flow;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let x = flow.sample(a.n, a.temperature, &mut rng, None)?;
    match ext.as_deref() {
        Some("npy") => npy::write_f64(&a.out, &x)?,
        Some("csv") => {
            let flat = x.clone().reshape(&[a.n, x.sample_len()])?;
            csv::write(&a.out, &flat)?
        }
        _ => {
            if flow.data_shape() == [2] {
                let bounds = pictures::Bounds::of_points(&x, 0.1);
                pictures::scatter(&x, bounds, 480, [31, 119, 180]).save(&a.out)?;
            } else if let Some(img) = pictures::image_shape_of(flow.data_shape()) {
                let mut shape = vec![a.n];
                shape.extend_from_slice(&img);
                let cols = (a.n as f64).sqrt().ceil() as usize;
                pictures::image_grid(&x.reshape(&shape)?, cols, 4)?.save(&a.out)?;
            } else {
                return Err(format!(
                    "samples of shape {:?} have no picture: write .npy or .csv instead",
                    flow.data_shape()
                )
                .into());
            }
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
