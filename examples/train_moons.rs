//! Build, train, evaluate and sample a RealNVP flow on two moons with the library API.
//!
//! Run with `cargo run --release --example train_moons`.

use exactflow::models::data::DataSpec;
use exactflow::models::train::{Silent, TrainConfig, train};
use exactflow::models::{ModelConfig, evaluate};
use rand::SeedableRng;

fn main() -> exactflow::Result<()> {
    let data = "moons".parse::<DataSpec>()?.load(0, 4096)?; // seeded train / val / test
    let config = ModelConfig::preset("realnvp", "toy", &[2], 0)?; // 8 affine couplings
    let mut flow = config.build::<f64>()?;
    let opts = TrainConfig {
        steps: Some(300),
        batch_size: 256,
        ..TrainConfig::default()
    };
    let report = train(
        &mut flow,
        &config,
        &opts,
        &data.train,
        Some(&data.val),
        &mut Silent,
        None,
    )?;
    let test = evaluate(&flow, &data.test, 1024)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (x, log_p) = flow.sample_and_log_prob(4, 0.8, &mut rng, None)?; // samples at temperature 0.8
    println!(
        "{} steps, {:.0} samples/s, test NLL {:.3} nats",
        report.steps, report.samples_per_sec, test.nll
    );
    println!("samples {:?}\nlog p   {log_p:?}", x.as_slice());
    Ok(())
}
