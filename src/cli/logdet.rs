//! `exactflow logdet FILE`: sign and log|det| of a matrix file.

use std::time::Instant;

use exactflow::kernels::audit::audit_matrix_with;
use exactflow::kernels::{LogDetMethod, Matrix, log_det_with};
use exactflow::models::data::read_matrix;
use exactflow::reports;

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
        return run_audit(&a, &values, rows, source.is_f32(), method);
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

/// `--audit`: the log-det with its backward error, condition estimate, error bound, f64
/// recomputation (float32 input) and exact determinant (integer input).
fn run_audit(a: &LogdetArgs, values: &[f64], n: usize, f32_input: bool, method: LogDetMethod) -> CliResult<()> {
    let t0 = Instant::now();
    let audit = audit_matrix_with(values, n, f32_input, method)?;
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
