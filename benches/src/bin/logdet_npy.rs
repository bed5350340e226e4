//! `logdet_npy`: the Rust side of the Python binding's overhead measurement
//! (`benches/peers/numpy_slogdet.py`): times `exactflow_kernels::log_det_with(&matrix, Auto)`, the
//! call `exactflow.slogdet` makes minus the binding, on matrices saved as `.npy` files.
//!
//! ```text
//! cargo run -p exactflow-benches --release --bin logdet_npy -- --calls 5 a.npy b.npy ...
//! ```
//!
//! For each file (float64, n x n), after one untimed call, times `--calls` calls (each one copy of
//! the matrix into the LU's buffer, the LU and the sum of logs: what the Rust user's call does)
//! and prints one JSON object per line: `{"path", "n", "seconds": [...], "sign", "log_abs"}`.
//! One thread, as the library is by default.

use std::process::ExitCode;
use std::time::Instant;

use exactflow_kernels::{LogDetMethod, Matrix, log_det_with};
use exactflow_models::data::read_matrix;
use serde_json::json;

fn run(args: &[String]) -> Result<(), String> {
    let mut calls = 5usize;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--calls" => {
                calls = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&c| c > 0)
                    .ok_or("--calls needs a positive integer")?;
            }
            path => files.push(path.to_string()),
        }
    }
    if files.is_empty() {
        return Err("usage: logdet_npy [--calls N] FILE.npy...".into());
    }
    for path in files {
        let (values, rows, cols, _) = read_matrix(&path).map_err(|e| e.to_string())?;
        let m = Matrix::new(rows, cols, values).map_err(|e| e.to_string())?;
        let (warm, _) = log_det_with(&m, LogDetMethod::Auto).map_err(|e| e.to_string())?;
        let mut seconds = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t0 = Instant::now();
            let r = log_det_with(&m, LogDetMethod::Auto);
            seconds.push(t0.elapsed().as_secs_f64());
            std::hint::black_box(r.map_err(|e| e.to_string())?);
        }
        let line = json!({
            "path": path, "n": rows, "seconds": seconds, "sign": warm.sign, "log_abs": warm.log_abs,
        });
        println!("{line}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
