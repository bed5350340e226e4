//! `exactflow logdet FILE`: sign and log|det| of a matrix file.

use std::time::Instant;

use exactflow::kernels::{LogDetMethod, Matrix, log_det_with};
use exactflow::models::data::read_matrix;
use serde_json::json;

use super::CliResult;
use super::args::LogdetArgs;

pub fn run(a: LogdetArgs) -> CliResult<()> {
    let method = match a.method.as_str() {
        "auto" => LogDetMethod::Auto,
        "lu" => LogDetMethod::Lu,
        "triangular" => LogDetMethod::Triangular,
        other => return Err(format!("unknown --method '{other}': expected auto, lu or triangular").into()),
    };
    let (values, rows, cols, _source) = read_matrix(&a.file)?;
    if rows != cols {
        return Err(format!("{}: the matrix is {rows} x {cols}, not square", a.file.display()).into());
    }
    let m = Matrix::new(rows, cols, values)?;
    let t0 = Instant::now();
    let (ld, used) = log_det_with(&m, method)?;
    let seconds = t0.elapsed().as_secs_f64();
    if a.json {
        let v = json!({
            "n": rows,
            "sign": ld.sign,
            "log_abs": json_number(ld.log_abs),
            "method": used.name(),
            "seconds": seconds,
        });
        println!("{v}");
    } else {
        println!("n        {rows}");
        println!("sign     {}", ld.sign);
        println!("log|det| {}", ld.log_abs);
        println!("method   {}", used.name());
        println!("seconds  {seconds:.3e}");
    }
    Ok(())
}

/// JSON has no infinities: a singular matrix's log|det| = -inf is written as the string "-inf".
pub(crate) fn json_number(v: f64) -> serde_json::Value {
    if v.is_finite() { json!(v) } else { json!(v.to_string()) }
}
