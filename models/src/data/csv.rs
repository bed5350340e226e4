//! Comma-separated numbers: one sample per line, an optional header line.
//!
//! The format read by [`read`]: UTF-8 text (a leading byte-order mark is skipped), one row per
//! line (`\n` or `\r\n`), fields separated by commas, surrounding spaces ignored, every row the
//! same number of fields. The first non-blank line is a header when one of its fields is not a
//! number (so a header of numbers cannot be told from data and is read as data); blank lines are
//! skipped. Every value must parse as an `f64` and be finite: NaN and infinities are rejected,
//! naming the line and column. Values are rounded to the nearest `f64`; the reader notes the first
//! field written as an integer that `f64` cannot hold exactly (beyond 2^53, such as
//! `9007199254740993`), so that no exact-integer claim is made about the rounded numbers
//! ([`super::MatrixSource::inexact`]). [`write()`] writes the same format, exactly
//! round-trippable.

use std::path::Path;

use crate::error::{Error, Result};
use exactflow_layers::Tensor;

use super::Dataset;
use super::io_util::{format_error, read_bytes, stem};
use crate::atomic_write::write_atomic;

const FORMAT: &str = "CSV file of numbers";

/// A parsed numeric table: row-major values, its shape, and the header if there was one.
#[derive(Debug)]
pub(crate) struct Table {
    pub values: Vec<f64>,
    pub rows: usize,
    pub cols: usize,
    pub header: Option<Vec<String>>,
    /// The first field whose value is an integer that its `f64` does not hold exactly, as
    /// "line L, column C: TEXT ...".
    pub inexact: Option<String>,
}

/// Whether the decimal text `text` (as `f64`'s parser accepts it: sign, digits, optional point
/// and exponent) denotes exactly the integer-valued `v`.
fn denotes_exactly(text: &str, v: f64) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    // Integers below 2^53 in plain digits are exact: every such integer is an f64, and rounding
    // is monotone, so a plain integer that rounds below 2^53 was one of them.
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) && v.abs() < 9_007_199_254_740_992.0 {
        return true;
    }
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i64>()),
        None => (unsigned, Ok(0)),
    };
    let Ok(exp) = exp else {
        return false;
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !(int_part.bytes().chain(frac_part.bytes())).all(|b| b.is_ascii_digit()) {
        return false;
    }
    // text = D * 10^scale with D the digits without leading and trailing zeros.
    let digits = format!("{int_part}{frac_part}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return v == 0.0;
    }
    let core = significant.trim_end_matches('0');
    let Some(scale) = exp
        .checked_sub(frac_part.len() as i64)
        .and_then(|e| e.checked_add((significant.len() - core.len()) as i64))
    else {
        return false;
    };
    // A fraction, or more digits than any finite f64 has (about 309).
    if scale < 0 || core.len() as i64 + scale > 400 {
        return false;
    }
    let exact = format!("{core}{}", "0".repeat(scale as usize));
    exact == format!("{:.0}", v.abs())
}

/// Parses CSV text (see the module docs); `path` only names the source in errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Table> {
    let mut values = Vec::new();
    let mut rows = 0usize;
    let mut cols: Option<(usize, usize)> = None; // (count, line where it was set)
    let mut header = None;
    let mut seen_first = false;
    let mut inexact = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (k, raw) in text.split('\n').enumerate() {
        let lineno = k + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !seen_first {
            seen_first = true;
            if fields.iter().any(|f| f.parse::<f64>().is_err()) {
                cols = Some((fields.len(), lineno));
                header = Some(fields.iter().map(|f| f.to_string()).collect());
                continue;
            }
        }
        match cols {
            None => cols = Some((fields.len(), lineno)),
            Some((n, at)) if n != fields.len() => {
                let what = if header.is_some() {
                    "the header"
                } else {
                    "the first row"
                };
                return Err(format_error(
                    path,
                    FORMAT,
                    format!(
                        "line {lineno} has {} fields, expected {n} as in {what} (line {at})",
                        fields.len()
                    ),
                ));
            }
            Some(_) => {}
        }
        for (c, f) in fields.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| {
                let shown = if f.is_empty() {
                    "an empty field".to_string()
                } else {
                    format!("'{f}'")
                };
                format_error(
                    path,
                    FORMAT,
                    format!("line {lineno}, column {}: expected a number, found {shown}", c + 1),
                )
            })?;
            if !v.is_finite() {
                return Err(format_error(
                    path,
                    FORMAT,
                    format!(
                        "line {lineno}, column {}: non-finite value '{f}' (NaN and infinities are not allowed)",
                        c + 1
                    ),
                ));
            }
            if inexact.is_none() && v.fract() == 0.0 && !denotes_exactly(f, v) {
                inexact = Some(format!(
                    "line {lineno}, column {}: {f} is an integer that float64 cannot hold exactly \
                     (it reads as {v:.0})",
                    c + 1
                ));
            }
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(format_error(path, FORMAT, "no data rows"));
    }
    let cols = cols.map(|(n, _)| n).unwrap_or(0);
    Ok(Table {
        values,
        rows,
        cols,
        header,
        inexact,
    })
}

/// Reads a CSV file of numbers (format in the module docs) as an `[N, D]` continuous data set named
/// after the file stem (`levels` and `labels` are `None`).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Format`] (naming the line and column) for
/// text that is not UTF-8, a non-numeric or empty field, NaN or an infinity, a row whose length
/// differs from the first row's (or the header's), or a file without data rows.
pub fn read(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let table = read_table(path)?;
    let data = Tensor::new(&[table.rows, table.cols], table.values)?;
    Dataset::new(stem(path), data, None, None)
}

/// Reads and parses a CSV file into a [`Table`].
pub(crate) fn read_table(path: &Path) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| format_error(path, FORMAT, format!("not UTF-8 text ({e})")))?;
    parse(path, text)
}

/// Formats one value so that it parses back to the same `f64`: integers below 2^53 in plain form
/// (`3`, `-12`), everything else in Rust's shortest round-trip form (`0.1`, `1e-300`).
fn fmt_value(v: f64, out: &mut String) {
    use std::fmt::Write;
    // invariant: writing to a String cannot fail.
    let _ = if v == v.trunc() && v.abs() < 9.007_199_254_740_992e15 {
        write!(out, "{v}")
    } else {
        write!(out, "{v:?}")
    };
}

/// Writes `x` as CSV without a header: one line per sample (images flattened row-major), values
/// written so that [`read`] gives back exactly the same numbers. The file is written atomically
/// (temporary file and rename).
///
/// # Errors
/// [`exactflow_kernels::Error::NonFinite`] when `x` holds NaN or an infinity (the reader would reject it);
/// [`exactflow_kernels::Error::InvalidArgument`] for a rank-1 tensor; [`Error::Io`] when the file cannot be written.
pub fn write(path: impl AsRef<Path>, x: &Tensor<f64>) -> Result<()> {
    let path = path.as_ref();
    if x.rank() < 2 {
        return Err(Error::invalid(
            "csv::write",
            "tensor",
            format!("expected [N, D] or [N, C, H, W], found shape {:?}", x.shape()),
        ));
    }
    x.check_finite("csv::write", "tensor")?;
    let mut out = String::with_capacity(x.len() * 8);
    for sample in x.samples() {
        for (j, &v) in sample.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            fmt_value(v, &mut out);
        }
        out.push('\n');
    }
    write_atomic(path, out.as_bytes())
}

/// Writes samples that arrive in chunks (`[k, ...]` tensors of samples of shape `sample`, `n`
/// rows in all) as CSV in the format of [`write()`], one chunk at a time, so that more samples than
/// fit in memory can be written. The file is written atomically.
///
/// # Errors
/// As [`super::npy::write_f64_chunks`].
pub fn write_chunks(
    path: impl AsRef<Path>,
    n: usize,
    sample: &[usize],
    chunks: impl Iterator<Item = Result<Tensor<f64>>>,
) -> Result<()> {
    super::npy::stream_chunks(path.as_ref(), FORMAT, n, sample, chunks, b"", |x, out| {
        let mut text = String::new();
        for s in x.samples() {
            for (j, &v) in s.iter().enumerate() {
                if j > 0 {
                    text.push(',');
                }
                fmt_value(v, &mut text);
            }
            text.push('\n');
        }
        out.extend_from_slice(text.as_bytes());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn reason(e: Error) -> String {
        match e {
            Error::Format { reason, .. } => reason,
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    #[test]
    fn reads_with_and_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(&dir, "plain.csv", "1,2.5,-3\n4, 5e-1 ,6\r\n\n");
        let d = read(&p).unwrap();
        assert_eq!(d.name, "plain");
        assert_eq!(d.data.shape(), &[2, 3]);
        assert_eq!(d.data.as_slice(), &[1.0, 2.5, -3.0, 4.0, 0.5, 6.0]);
        assert_eq!(d.levels, None);
        assert_eq!(d.labels, None);

        let p = write_file(&dir, "h.csv", "x,y\n1,2\n3,4\n");
        let d = read(&p).unwrap();
        assert_eq!(d.data.shape(), &[2, 2]);
        assert_eq!(d.data.as_slice(), &[1.0, 2.0, 3.0, 4.0]);
        let t = read_table(&p).unwrap();
        assert_eq!(t.header, Some(vec!["x".to_string(), "y".to_string()]));
    }

    #[test]
    fn rejects_bad_header_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let r = reason(read(write_file(&dir, "a.csv", "x,y,z\n1,2\n")).unwrap_err());
        assert!(
            r.contains("line 2 has 2 fields, expected 3") && r.contains("header"),
            "{r}"
        );

        let r = reason(read(write_file(&dir, "b.csv", "1,2\n3,4\n5,6,7\n")).unwrap_err());
        assert!(
            r.contains("line 3 has 3 fields, expected 2") && r.contains("first row"),
            "{r}"
        );

        let r = reason(read(write_file(&dir, "c.csv", "1,2\n3,abc\n")).unwrap_err());
        assert!(r.contains("line 2, column 2") && r.contains("'abc'"), "{r}");

        let r = reason(read(write_file(&dir, "d.csv", "1,2\n3,\n")).unwrap_err());
        assert!(r.contains("line 2, column 2") && r.contains("empty"), "{r}");

        let r = reason(read(write_file(&dir, "e.csv", "x,y\n")).unwrap_err());
        assert!(r.contains("no data rows"), "{r}");

        let r = reason(read(write_file(&dir, "f.csv", "")).unwrap_err());
        assert!(r.contains("no data rows"), "{r}");

        let p = dir.path().join("g.csv");
        std::fs::write(&p, b"1,2\n\xff,3\n").unwrap();
        assert!(reason(read(&p).unwrap_err()).contains("UTF-8"));
    }

    #[test]
    fn rejects_non_finite() {
        let dir = tempfile::tempdir().unwrap();
        for (text, col) in [
            ("1,2\n3,NaN\n", "column 2"),
            ("a,b\n1,2\ninf,4\n", "column 1"),
            ("1,-infinity\n", "column 2"),
        ] {
            let r = reason(read(write_file(&dir, "n.csv", text)).unwrap_err());
            assert!(r.contains("non-finite") && r.contains(col), "{text:?}: {r}");
        }
        let r = reason(read(write_file(&dir, "n.csv", "1,2\n3,NaN\n")).unwrap_err());
        assert!(r.contains("line 2"), "{r}");
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = read(write_file(&dir, "bom.csv", "\u{feff}1,2\n3,4\n")).unwrap();
        assert_eq!(d.data.as_slice(), &[1.0, 2.0, 3.0, 4.0]);
        let t = read_table(&write_file(&dir, "bomh.csv", "\u{feff}x,y\n3,4\n")).unwrap();
        assert_eq!(t.header, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(t.rows, 1);
    }

    #[test]
    fn integers_float64_cannot_hold_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let t = read_table(&write_file(&dir, "big.csv", "9007199254740993,0\n0,1\n")).unwrap();
        let note = t.inexact.expect("noted");
        assert!(
            note.contains("line 1, column 1") && note.contains("9007199254740993"),
            "{note}"
        );
        // Exact ones: 2^53, 2^60 and 1e22 in digits, 2.5e1, 1e300's own digits are not 10^300.
        for (text, exact) in [
            ("9007199254740992", true),
            ("1152921504606846976", true),
            ("-1152921504606846976", true),
            ("1e22", true),
            ("2.5e1", true),
            ("1.0", true),
            ("0e999999", true),
            ("1e23", false),
            ("1e300", false),
            ("9007199254740993.5", false),
            ("1e-400", false),
            ("12345678901234567890", false),
        ] {
            let v: f64 = text.parse().unwrap();
            if v.fract() == 0.0 {
                assert_eq!(denotes_exactly(text, v), exact, "{text}");
            }
        }
        let t = read_table(&write_file(&dir, "small.csv", "1,2\n3,-4\n")).unwrap();
        assert!(t.inexact.is_none());
    }

    #[test]
    fn missing_file_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent.csv");
        match read(&p) {
            Err(Error::Io { path, .. }) => assert!(path.ends_with("absent.csv")),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn write_read_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let vals = vec![
            0.1,
            -3.0,
            1e-300,
            123456789.125,
            f64::MAX,
            -0.0,
            2.0f64.powi(60),
            1.0 / 3.0,
        ];
        let x = Tensor::new(&[4, 2], vals.clone()).unwrap();
        let p = dir.path().join("rt.csv");
        write(&p, &x).unwrap();
        let d = read(&p).unwrap();
        assert_eq!(d.data.shape(), &[4, 2]);
        for (a, b) in vals.iter().zip(d.data.as_slice()) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
        }
        let img = Tensor::from_fn(&[2, 1, 2, 2], |k| k as f64).unwrap();
        write(&p, &img).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "0,1,2,3\n4,5,6,7\n");
        let q = dir.path().join("chunks.csv");
        let parts = [0..1, 1..2].map(|r| img.slice_batch(r).map_err(Into::into));
        write_chunks(&q, 2, &[1, 2, 2], parts.into_iter()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());

        let mut bad = x;
        bad.as_mut_slice()[3] = f64::INFINITY;
        assert!(matches!(
            write(&p, &bad),
            Err(Error::Numerical(exactflow_kernels::Error::NonFinite { .. }))
        ));
    }
}
