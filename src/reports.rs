//! The JSON documents of `exactflow logdet --json` (with and without `--audit`), shared by the
//! command line and the Python package (`exactflow.audit_matrix` returns the audit document as a
//! dict with the same keys).
//!
//! JSON has no infinities: a non-finite number (the log|det| of a singular matrix, -inf) is
//! written as the string `"-inf"`, `"inf"` or `"NaN"`, as [`MatrixAudit`]'s fields are.

use exactflow_kernels::audit::MatrixAudit;
use exactflow_kernels::{LogDet, UsedMethod};
use serde_json::{Value, json};

/// A finite number as a JSON number, anything else as the string `"inf"`, `"-inf"` or `"NaN"`.
pub fn json_number(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { json!(v.to_string()) }
}

/// `exactflow logdet --json`: `{"n", "sign", "log_abs", "method", "seconds"}` of an `n x n`
/// log-determinant computed by `method` in `seconds`.
pub fn logdet(n: usize, log_det: LogDet<f64>, method: UsedMethod, seconds: f64) -> Value {
    json!({
        "n": n,
        "sign": log_det.sign,
        "log_abs": json_number(log_det.log_abs),
        "method": method.name(),
        "seconds": seconds,
    })
}

/// `exactflow logdet --audit --json`: the keys of [`logdet`] (taken from the audit's main
/// result) and the whole audit under `"audit"`, its fields as [`MatrixAudit`] names them.
///
/// # Errors
/// Only if the audit cannot be serialized (it always can: its non-finite numbers are strings).
pub fn logdet_audit(audit: &MatrixAudit, seconds: f64) -> serde_json::Result<Value> {
    Ok(json!({
        "n": audit.n,
        "sign": audit.sign,
        "log_abs": json_number(audit.log_abs),
        "method": audit.method,
        "seconds": seconds,
        "audit": serde_json::to_value(audit)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactflow_kernels::audit::audit_matrix;

    #[test]
    fn the_audit_document_repeats_the_main_result_and_writes_infinities_as_strings() {
        let singular = audit_matrix(&[1.0, 2.0, 2.0, 4.0], 2, false).expect("audit");
        let v = logdet_audit(&singular, 0.5).expect("JSON");
        let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6);
        for k in ["n", "sign", "log_abs", "method", "seconds", "audit"] {
            assert!(keys.contains(&k), "{k} missing from {v}");
        }
        assert_eq!(v["n"], 2);
        assert_eq!(v["sign"], 0.0);
        assert_eq!(v["log_abs"], "-inf");
        assert_eq!(v["audit"]["log_abs"], "-inf");
        assert_eq!(v["audit"]["exact"]["digits"], "0");
        let plain = logdet(2, LogDet::singular(), UsedMethod::Lu, 0.25);
        assert_eq!(plain["log_abs"], "-inf");
        assert_eq!(plain["method"], "lu");
        assert_eq!(json_number(1.5), json!(1.5));
        assert_eq!(json_number(f64::NAN), json!("NaN"));
    }
}
