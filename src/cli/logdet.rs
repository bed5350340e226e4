//! `exactflow logdet FILE`: sign and log|det| of a matrix file.

use std::time::Instant;

use exactflow::kernels::audit::audit_matrix_with;
use exactflow::kernels::gemm::MatSlice;
use exactflow::kernels::{CertifiedLogDet, LogDetMethod, Matrix, certify_log_det, log_det_with};
use exactflow::models::data::{MatrixSource, read_matrix};
use exactflow::reports;
use serde_json::json;

use super::CliResult;
use super::args::LogdetArgs;

pub fn run(a: LogdetArgs) -> CliResult<()> {
    let method: LogDetMethod = a
        .method
        .parse()
        .map_err(|_| format!("unknown --method '{}': expected auto, lu or triangular", a.method))?;
    let (values, rows, cols, source) = read_matrix(&a.file)?;
    if rows != cols {
        return Err(format!("{}: the matrix is {rows} x {cols}, not square", a.file.display()).into());
    }
    if a.audit {
        return run_audit(&a, &values, rows, &source, method);
    }
    if a.certify {
        return run_certify(&a, &values, rows);
    }
    let m = Matrix::new(rows, cols, values)?;
    let t0 = Instant::now();
    let (ld, used) = log_det_with(&m, method)?;
    let seconds = t0.elapsed().as_secs_f64();
    if a.json {
        println!("{}", reports::logdet(rows, ld, used, seconds));
    } else {
        println!("n        {rows}");
        println!("sign     {}", ld.sign);
        println!("log|det| {}", ld.log_abs);
        println!("method   {}", used.name());
        println!("seconds  {seconds:.3e}");
    }
    Ok(())
}

/// `--certify`: a certified enclosure of log|det A| and the sign, with the f64 LU for comparison.
fn run_certify(a: &LogdetArgs, values: &[f64], n: usize) -> CliResult<()> {
    let m = MatSlice::new(values, n, n)?;
    let t0 = Instant::now();
    let approx = log_det_with(&Matrix::new(n, n, values.to_vec())?, LogDetMethod::Lu)?.0;
    let lu_seconds = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let c = certify_log_det(&m)?;
    let seconds = t0.elapsed().as_secs_f64();
    let (sign, log_abs, residual, reason) = match &c {
        CertifiedLogDet::Certified {
            sign,
            log_abs,
            residual_bound,
            ..
        } => (Some(*sign), Some(*log_abs), Some(*residual_bound), None),
        CertifiedLogDet::SignUnknown { reason, .. } => (None, None, None, Some(reason.clone())),
    };
    if a.json {
        let v = json!({
            "n": n,
            "certified": sign.is_some(),
            "sign": sign,
            "log_abs_lo": log_abs.map(|i| reports::json_number(i.lo())),
            "log_abs_hi": log_abs.map(|i| reports::json_number(i.hi())),
            "width": log_abs.map(|i| i.width()),
            "relative_width": log_abs.map(|i| reports::json_number(i.relative_width())),
            "residual_bound": residual,
            "approx_sign": approx.sign,
            "approx_log_abs": reports::json_number(approx.log_abs),
            "reason": reason,
            "seconds": seconds,
            "seconds_lu": lu_seconds,
        });
        println!("{v}");
        return Ok(());
    }
    println!("n                {n}");
    match (sign, log_abs) {
        (Some(s), Some(i)) => {
            println!("sign             {s} (certified)");
            println!("log|det| in      [{:?}, {:?}]", i.lo(), i.hi());
            println!(
                "width            {:.3e} (relative {:.3e})",
                i.width(),
                i.relative_width()
            );
            if let Some(r) = residual {
                println!("residual bound   ||XL P A XU - I||_inf <= {r:.3e}");
            }
        }
        _ => {
            println!("sign             cannot be certified");
            println!("reason           {}", reason.unwrap_or_default());
        }
    }
    println!("f64 LU           sign {} log|det| {}", approx.sign, approx.log_abs);
    println!(
        "seconds          {seconds:.3e} (f64 LU {lu_seconds:.3e}, {:.1}x)",
        seconds / lu_seconds.max(1e-12)
    );
    Ok(())
}

/// `--audit`: the log-det with its backward error, condition estimate, error bound, f64
/// recomputation (float32 input) and exact determinant (integer input).
fn run_audit(a: &LogdetArgs, values: &[f64], n: usize, source: &MatrixSource, method: LogDetMethod) -> CliResult<()> {
    let t0 = Instant::now();
    let mut audit = audit_matrix_with(values, n, source.is_f32(), method)?;
    // The exact determinant is that of the float64 values; when the file's integers were
    // rounded on reading, it is not the file's matrix's, so it is withheld.
    if let Some(why) = &source.inexact {
        audit.exact = None;
        audit.exact_note = Some(format!("{why}: no exact determinant of the file's matrix"));
    }
    let seconds = t0.elapsed().as_secs_f64();
    if a.json {
        let v = reports::logdet_audit(&audit, seconds).map_err(|e| format!("JSON: {e}"))?;
        println!("{v}");
        return Ok(());
    }
    println!("n                  {n}");
    println!("precision          {}", audit.precision);
    println!("sign               {}", audit.sign);
    println!("log|det|           {}", audit.log_abs);
    println!("method             {}", audit.method);
    println!(
        "backward error     {:.3} (||PA - LU||_1 / (n ||A||_1 eps))",
        audit.backward_error
    );
    println!("cond_1 estimate    {:.3e}", audit.cond1_estimate);
    if audit.bound_valid {
        println!("log|det| error <=  {:.3e}", audit.log_abs_error_bound);
    } else {
        println!("log|det| error     no bound (the matrix is singular or too ill-conditioned for one)");
    }
    if let Some(r) = &audit.f64_recompute {
        println!(
            "f64 recomputation  sign {} log|det| {} (difference {:.3e})",
            r.sign, r.log_abs, r.difference
        );
    }
    match (&audit.exact, &audit.exact_note) {
        (Some(e), _) => println!(
            "exact determinant  {} (log|det| {}; {})",
            e.digits,
            e.log_abs,
            if e.agrees {
                "agrees within the bound"
            } else {
                "DISAGREES with the computed value"
            }
        ),
        (None, Some(note)) => println!("exact determinant  not computed: {note}"),
        (None, None) => {}
    }
    println!("seconds            {seconds:.3e}");
    Ok(())
}
