//! The `exactflow` binary end to end: every command on tiny settings (exit codes, JSON keys,
//! files written, PNGs that decode) and every user error (one line on stderr, non-zero exit, no
//! panic).

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

fn exactflow() -> Command {
    let mut c = Command::cargo_bin("exactflow").expect("the exactflow binary is built for the tests");
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    exactflow().args(args).output().expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed:\n{}\n{}", stdout(o), stderr(o));
}

/// A user error: non-zero exit, exactly one line on stderr starting with "error", no panic.
fn assert_user_error(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{args:?} panicked: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err:?}");
    assert!(lines[0].starts_with("error"), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle:?}");
}

fn png_size(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dec = png::Decoder::new(std::io::BufReader::new(file));
    let mut r = dec.read_info().expect("a valid PNG");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("decodes");
    (info.width, info.height)
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("exists")).expect("valid JSON")
}

/// Trains a tiny RealNVP on moons into `dir`.
fn train_moons(dir: &Path) {
    let out = dir.to_str().expect("utf-8 path");
    let o = run(&[
        "train",
        "--model",
        "realnvp",
        "--data",
        "moons",
        "--steps",
        "30",
        "--toy-samples",
        "512",
        "--batch-size",
        "64",
        "--seed",
        "4",
        "--out",
        out,
    ]);
    assert_ok(&o, "train");
    assert!(stdout(&o).contains("test NLL"), "{}", stdout(&o));
}

#[test]
fn train_eval_sample_on_moons() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    train_moons(&dir);
    assert!(dir.join("model.safetensors").is_file());
    let m = json_file(&dir.join("metrics.json"));
    for key in [
        "train",
        "validation",
        "test",
        "samples_per_sec",
        "wall_seconds",
        "config",
        "seed",
        "steps",
    ] {
        assert!(m.get(key).is_some(), "metrics.json lacks {key}: {m}");
    }
    assert!(m["test"]["nll"].as_f64().expect("number").is_finite());
    assert_eq!(m["seed"], 4);
    let (w, h) = png_size(&dir.join("density_samples.png"));
    assert!(w > h && h >= 100);

    // eval, as JSON, with per-sample log-likelihoods.
    let per = tmp.path().join("ll.npy");
    let o = run(&[
        "eval",
        dir.to_str().expect("utf-8"),
        "--data",
        "moons",
        "--toy-samples",
        "512",
        "--json",
        "--per-sample",
        per.to_str().expect("utf-8"),
    ]);
    assert_ok(&o, "eval");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    let nll = v["nll"].as_f64().expect("nll");
    assert!(
        (nll - m["test"]["nll"].as_f64().expect("number")).abs() < 1e-12,
        "eval agrees with training"
    );
    let ll = exactflow::models::data::npy::read_array(&per).expect("a .npy");
    assert_eq!(ll.shape, vec![128]);
    let mean = -ll.values.iter().sum::<f64>() / 128.0;
    assert!((mean - nll).abs() < 1e-9);

    // Certified evaluation: every sample certified, its interval around the f64 value, the
    // summary and the cost, as JSON and as a table.
    let o = run(&[
        "eval",
        dir.to_str().expect("utf-8"),
        "--data",
        "moons",
        "--toy-samples",
        "512",
        "--certify",
        "--json",
    ]);
    assert_ok(&o, "eval --certify");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    let c = &v["certified"];
    let samples = c["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 128);
    assert_eq!(c["certified"], 128, "{c}");
    for (k, s) in samples.iter().enumerate() {
        let (lo, hi) = (
            s["log_likelihood"]["lo"].as_f64().expect("lo"),
            s["log_likelihood"]["hi"].as_f64().expect("hi"),
        );
        let f = s["f64"].as_f64().expect("f64");
        assert!(lo <= f && f <= hi, "sample {k}: [{lo}, {hi}] vs {f}");
        // (serde_json's default parser may round the last bit of a float.)
        assert!(
            (f - ll.values[k]).abs() <= 1e-15 * f.abs().max(1.0),
            "the f64 value is eval's"
        );
        assert!(s["width"].as_f64().expect("width") >= 0.0);
    }
    assert!(c["median_relative_width"].as_f64().expect("median") < 1e-6);
    assert!(c["cost_ratio"].as_f64().expect("ratio") > 0.0);
    assert_eq!(c["uncertified"].as_array().expect("reasons").len(), 0);
    let o = run(&[
        "eval",
        dir.to_str().expect("utf-8"),
        "--data",
        "moons",
        "--toy-samples",
        "512",
        "--certify",
    ]);
    assert_ok(&o, "eval --certify table");
    let text = stdout(&o);
    for needle in [
        "log p(x) enclosure",
        "certified        128 of 128",
        "relative width   max",
        "cost",
    ] {
        assert!(text.contains(needle), "lacks {needle}:\n{text}");
    }

    // The trained model passes its own audit, as a table and as JSON.
    let o = run(&[
        "audit",
        dir.to_str().expect("utf-8"),
        "--data",
        "moons",
        "--toy-samples",
        "512",
    ]);
    assert_ok(&o, "audit");
    assert!(stdout(&o).contains("every layer passes"), "{}", stdout(&o));
    let o = run(&["audit", dir.to_str().expect("utf-8"), "--samples", "3", "--json"]);
    assert_ok(&o, "audit --json");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["pass"], true);
    assert_eq!(v["samples"], 3);
    assert_eq!(v["stages"].as_array().expect("stages").len(), 8);

    // sample to each format.
    for name in ["s.png", "s.npy", "s.csv"] {
        let p = tmp.path().join(name);
        let o = run(&[
            "sample",
            dir.to_str().expect("utf-8"),
            "-n",
            "50",
            "--temperature",
            "0.8",
            "--out",
            p.to_str().expect("utf-8"),
        ]);
        assert_ok(&o, "sample");
        assert!(p.is_file());
    }
    png_size(&tmp.path().join("s.png"));
    let s = exactflow::models::data::npy::read_array(tmp.path().join("s.npy")).expect("a .npy");
    assert_eq!(s.shape, vec![50, 2]);
    let csv = std::fs::read_to_string(tmp.path().join("s.csv")).expect("csv");
    assert_eq!(csv.lines().filter(|l| !l.is_empty()).count(), 50);
}

#[test]
fn train_digits_writes_bits_per_dim_and_a_sample_grid() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("digits");
    let o = run(&[
        "train",
        "--model",
        "nice",
        "--data",
        "digits",
        "--steps",
        "3",
        "--batch-size",
        "32",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert_ok(&o, "train digits");
    assert!(stdout(&o).contains("bits/dim"), "{}", stdout(&o));
    let m = json_file(&dir.join("metrics.json"));
    assert!(m["test"]["bits_per_dim"].as_f64().expect("bits/dim for discrete data") > 0.0);
    png_size(&dir.join("samples.png"));
    let (w, h) = png_size(&dir.join("interpolation.png"));
    assert!(w > 4 * h, "a strip of 10 images: {w} x {h}");
    png_size(&dir.join("reconstructions.png"));
}

#[test]
fn train_glow_and_multiscale_realnvp_on_digit_images() {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (model, preset) in [("glow", "tiny"), ("realnvp", "digits-image")] {
        let dir = tmp.path().join(model);
        let o = run(&[
            "train",
            "--model",
            model,
            "--preset",
            preset,
            "--data",
            "digits-image",
            "--steps",
            "3",
            "--batch-size",
            "16",
            "--memory-efficient",
            "--out",
            dir.to_str().expect("utf-8"),
        ]);
        assert_ok(&o, model);
        let m = json_file(&dir.join("metrics.json"));
        assert!(
            m["test"]["bits_per_dim"].as_f64().expect("bits/dim").is_finite(),
            "{model}: {m}"
        );
        assert_eq!(m["train_config"]["memory_efficient"], true);
        for pic in ["samples.png", "interpolation.png", "reconstructions.png"] {
            png_size(&dir.join(pic));
        }
        let p = tmp.path().join(format!("{model}.png"));
        let o = run(&[
            "sample",
            dir.to_str().expect("utf-8"),
            "-n",
            "8",
            "--temperature",
            "0.7",
            "--out",
            p.to_str().expect("utf-8"),
        ]);
        assert_ok(&o, "sample images");
        png_size(&p);
        let o = run(&[
            "audit",
            dir.to_str().expect("utf-8"),
            "--samples",
            "2",
            "--data",
            "digits-image",
        ]);
        assert_ok(&o, "audit of an image flow");
    }
    // Glow needs image data.
    assert_user_error(
        &[
            "train",
            "--model",
            "glow",
            "--data",
            "moons",
            "--out",
            tmp.path().join("g").to_str().expect("utf-8"),
        ],
        "glow",
    );
}

#[test]
fn logdet_of_npy_and_csv_matrices() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // det [[2, 1], [4, -3]] = -10
    let csv = tmp.path().join("a.csv");
    std::fs::write(&csv, "2,1\n4,-3\n").expect("write");
    let o = run(&["logdet", csv.to_str().expect("utf-8"), "--json"]);
    assert_ok(&o, "logdet csv");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    for key in ["n", "sign", "log_abs", "method", "seconds"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["n"], 2);
    assert_eq!(v["sign"].as_f64(), Some(-1.0));
    assert!((v["log_abs"].as_f64().expect("number") - 10f64.ln()).abs() < 1e-14);
    assert_eq!(v["method"], "lu");
    // A lower-triangular .npy goes through the O(n) path under auto.
    let npy = tmp.path().join("l.npy");
    let l = exactflow::layers::Tensor::new(&[3, 3], vec![2.0, 0.0, 0.0, 1.0, -3.0, 0.0, 5.0, 7.0, 0.5]).expect("3x3");
    exactflow::models::data::npy::write_f64(&npy, &l).expect("write");
    let o = run(&["logdet", npy.to_str().expect("utf-8"), "--json"]);
    assert_ok(&o, "logdet npy");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["method"], "triangular-lower");
    assert_eq!(v["sign"].as_f64(), Some(-1.0));
    assert!((v["log_abs"].as_f64().expect("number") - 3f64.ln()).abs() < 1e-14);
    let o = run(&["logdet", npy.to_str().expect("utf-8"), "--method", "lu"]);
    assert_ok(&o, "logdet text");
    assert!(stdout(&o).contains("method   lu"));
    // A singular matrix is not an error: sign 0, log|det| = -inf.
    std::fs::write(&csv, "1,2\n2,4\n").expect("write");
    let o = run(&["logdet", csv.to_str().expect("utf-8"), "--json"]);
    assert_ok(&o, "singular");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["sign"].as_f64(), Some(0.0));
    assert_eq!(v["log_abs"], "-inf");
}

/// A float32 `.npy` file, written by hand (format version 1.0).
#[test]
fn logdet_certify_encloses_the_log_det_or_says_why_not() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // f(x, y) = (2x + y, x + 3y) has det 5.
    let m = tmp.path().join("m.csv");
    std::fs::write(&m, "2,1\n1,3\n").expect("write");
    let o = run(&["logdet", m.to_str().expect("utf-8"), "--certify", "--json"]);
    assert_ok(&o, "logdet --certify");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["certified"], true);
    assert_eq!(v["sign"], 1.0);
    let (lo, hi) = (
        v["log_abs_lo"].as_f64().expect("lo"),
        v["log_abs_hi"].as_f64().expect("hi"),
    );
    assert!(lo <= 5f64.ln() && 5f64.ln() <= hi && hi - lo < 1e-14, "[{lo}, {hi}]");
    let o = run(&["logdet", m.to_str().expect("utf-8"), "--certify"]);
    assert_ok(&o, "logdet --certify table");
    assert!(stdout(&o).contains("(certified)"), "{}", stdout(&o));
    // A singular matrix: no sign, and why.
    let s = tmp.path().join("s.csv");
    std::fs::write(&s, "1,2\n2,4\n").expect("write");
    let o = run(&["logdet", s.to_str().expect("utf-8"), "--certify", "--json"]);
    assert_ok(&o, "logdet --certify singular");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["certified"], false);
    assert!(v["sign"].is_null());
    assert!(v["reason"].as_str().expect("reason").contains("singular"), "{v}");
    let o = run(&["logdet", s.to_str().expect("utf-8"), "--certify"]);
    assert!(stdout(&o).contains("cannot be certified"), "{}", stdout(&o));
    assert_user_error(
        &["logdet", s.to_str().expect("utf-8"), "--certify", "--audit"],
        "--audit",
    );
}

fn write_npy_f32(path: &Path, rows: usize, cols: usize, values: &[f32]) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn logdet_audit_reports_backward_error_condition_bound_and_exact_value() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // An integer matrix: the exact determinant (-30) is the reference.
    let csv = tmp.path().join("int.csv");
    std::fs::write(&csv, "2,1,0\n4,-3,1\n0,5,2\n").expect("write");
    let o = run(&["logdet", csv.to_str().expect("utf-8"), "--audit", "--json"]);
    assert_ok(&o, "logdet --audit");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    let audit = &v["audit"];
    for key in [
        "backward_error",
        "cond1_estimate",
        "log_abs_error_bound",
        "bound_valid",
        "exact",
    ] {
        assert!(audit.get(key).is_some(), "audit lacks {key}: {audit}");
    }
    assert_eq!(audit["exact"]["digits"], "-30");
    assert_eq!(audit["exact"]["agrees"], true);
    assert!(audit["backward_error"].as_f64().expect("number") < 10.0);
    let text = stdout(&run(&["logdet", csv.to_str().expect("utf-8"), "--audit"]));
    assert!(text.contains("exact determinant  -30"), "{text}");
    // Nearly singular (the 10 x 10 Hilbert matrix, cond_1 about 3.5e13): a huge condition
    // estimate and a wide bound.
    let near = tmp.path().join("near.csv");
    let hilbert: String = (0..10)
        .map(|i| {
            (0..10)
                .map(|j| format!("{:e}", 1.0 / (i + j + 1) as f64))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    std::fs::write(&near, hilbert).expect("write");
    let o = run(&["logdet", near.to_str().expect("utf-8"), "--audit", "--json"]);
    assert_ok(&o, "near-singular");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert!(v["audit"]["cond1_estimate"].as_f64().expect("number") > 1e12, "{v}");
    let bound = &v["audit"]["log_abs_error_bound"];
    assert!(bound.as_f64().is_none_or(|b| b > 1e-6), "a wide bound: {bound}");
    // float32 input is recomputed in f64.
    let npy = tmp.path().join("a32.npy");
    write_npy_f32(&npy, 2, 2, &[0.1, 0.7, 0.3, 0.2]);
    let o = run(&["logdet", npy.to_str().expect("utf-8"), "--audit", "--json"]);
    assert_ok(&o, "f32");
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    assert_eq!(v["audit"]["precision"], "f32");
    let r = &v["audit"]["f64_recompute"];
    let diff = r["difference"].as_f64().expect("difference");
    assert!(
        diff.abs() <= v["audit"]["log_abs_error_bound"].as_f64().expect("bound"),
        "{v}"
    );
}

#[test]
fn bench_logdet_writes_a_table_json_and_plot() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("bench");
    let o = run(&[
        "bench",
        "logdet",
        "--sizes",
        "4,8,16",
        "--min-time",
        "0",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_ok(&o, "bench");
    assert!(stdout(&o).contains("log-log slope"));
    let v = json_file(&out.join("bench.json"));
    assert_eq!(v["sizes"].as_array().expect("array").len(), 3);
    assert_eq!(v["lu_seconds"].as_array().expect("array").len(), 3);
    assert!(v.get("slope_lu").is_some() && v.get("slope_triangular").is_some());
    assert_eq!(png_size(&out.join("loglog.png")), (640, 480));
}

#[test]
fn every_user_error_is_one_line_and_a_failure() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("x");
    let o = out.to_str().expect("utf-8");
    assert_user_error(
        &["train", "--model", "flowy", "--data", "moons", "--out", o],
        "unknown model",
    );
    assert_user_error(
        &[
            "train", "--model", "realnvp", "--data", "moons", "--preset", "huge", "--out", o,
        ],
        "preset",
    );
    assert_user_error(
        &["train", "--model", "realnvp", "--data", "mars", "--out", o],
        "unknown data set",
    );
    assert_user_error(
        &[
            "train",
            "--model",
            "realnvp",
            "--data",
            "moons",
            "--batch-size",
            "0",
            "--out",
            o,
        ],
        "batch-size",
    );
    assert_user_error(
        &["train", "--model", "realnvp", "--data", "moons", "--lr=-1", "--out", o],
        "--lr",
    );
    assert_user_error(
        &[
            "train",
            "--model",
            "realnvp",
            "--data",
            "csv:/nonexistent/x.csv",
            "--out",
            o,
        ],
        "x.csv",
    );
    assert_user_error(
        &["train", "--model", "realnvp", "--data", "moons", "--steps", "abc"],
        "abc",
    );
    let bad_csv = tmp.path().join("bad.csv");
    std::fs::write(&bad_csv, "1,2\n3\n").expect("write");
    assert_user_error(&["logdet", bad_csv.to_str().expect("utf-8")], "bad.csv");
    let rect = tmp.path().join("rect.csv");
    std::fs::write(&rect, "1,2,3\n4,5,6\n").expect("write");
    assert_user_error(&["logdet", rect.to_str().expect("utf-8")], "not square");
    assert_user_error(&["logdet", "/nonexistent/m.npy"], "m.npy");
    assert_user_error(
        &["logdet", rect.to_str().expect("utf-8"), "--method", "magic"],
        "--method",
    );
    let garbage = tmp.path().join("junk.safetensors");
    std::fs::write(&garbage, b"junk").expect("write");
    assert_user_error(
        &["eval", garbage.to_str().expect("utf-8"), "--data", "moons"],
        "junk.safetensors",
    );
    assert_user_error(
        &["sample", garbage.to_str().expect("utf-8"), "--out", "s.png"],
        "junk.safetensors",
    );
    // Errors that need a trained model.
    let dir = tmp.path().join("run");
    train_moons(&dir);
    let d = dir.to_str().expect("utf-8");
    assert_user_error(&["sample", d, "--temperature=-1", "--out", "s.png"], "temperature");
    assert_user_error(&["sample", d, "-n", "0", "--out", "s.png"], "-n");
    assert_user_error(&["sample", d, "--out", "s.gif"], ".png");
    assert_user_error(&["eval", d, "--data", "digits"], "shape");
    assert_user_error(&["eval", d, "--data", "moons", "--split", "dev"], "--split");
    assert_user_error(
        &[
            "train", "--model", "realnvp", "--data", "digits", "--resume", "--out", d,
        ],
        "shape",
    );
    assert_user_error(&["bench", "logdet", "--sizes", "0"], "--sizes");
    assert_user_error(&["audit", d, "--samples", "0"], "--samples");
    assert_user_error(&["audit", d, "--data", "digits"], "shape");
}

#[test]
fn help_explains_every_flag() {
    let cases: [(&[&str], &[&str]); 7] = [
        (&["--help"], &["train", "eval", "sample", "logdet", "bench", "audit"]),
        (
            &["train", "--help"],
            &[
                "--model",
                "--data",
                "--preset",
                "--epochs",
                "--steps",
                "--batch-size",
                "--lr",
                "--seed",
                "--threads",
                "--out",
                "--toy-samples",
                "--patience",
                "--resume",
                "--context-embedding",
            ],
        ),
        (
            &["eval", "--help"],
            &[
                "--data",
                "--split",
                "--per-sample",
                "--json",
                "--toy-samples",
                "--certify",
            ],
        ),
        (&["sample", "--help"], &["--num", "--temperature", "--seed", "--out"]),
        (&["logdet", "--help"], &["--method", "--json", "--audit", "--certify"]),
        (
            &["audit", "--help"],
            &["--data", "--samples", "--json", "--toy-samples"],
        ),
        (&["bench", "logdet", "--help"], &["--sizes", "--out", "--min-time"]),
    ];
    for (args, flags) in cases {
        let o = run(args);
        assert_ok(&o, "help");
        let text = stdout(&o);
        for f in flags {
            assert!(text.contains(f), "{args:?} help lacks {f}:\n{text}");
        }
    }
}

/// `train`, `eval`, `sample` and `audit` on every MAF, IAF and neural spline flow preset: the
/// two-moons ones and the digits ones (few steps each; the digits IAF, whose exact-Jacobian audit
/// costs D^2 MADE passes per layer, is audited on moons only).
#[test]
fn train_eval_sample_audit_autoregressive_and_spline_flows() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let runs: [(&str, Option<&str>, &str, bool); 10] = [
        ("maf", None, "moons", true),
        ("iaf", None, "moons", true),
        ("nsf", None, "moons", true),
        ("nsf", Some("coupling"), "moons", true),
        ("nsf", Some("autoregressive"), "moons", true),
        ("maf", Some("digits"), "digits", true),
        ("iaf", Some("digits"), "digits", false),
        ("nsf", Some("digits"), "digits", true),
        ("nsf", Some("digits-autoregressive"), "digits", true),
        ("maf", Some("toy"), "circles", true),
    ];
    for (i, (model, preset, data, audit)) in runs.into_iter().enumerate() {
        let dir = tmp.path().join(format!("run{i}"));
        let d = dir.to_str().expect("utf-8");
        let mut args = vec![
            "train",
            "--model",
            model,
            "--data",
            data,
            "--steps",
            "6",
            "--batch-size",
            "32",
            "--toy-samples",
            "256",
            "--out",
            d,
        ];
        if let Some(p) = preset {
            args.extend(["--preset", p]);
        }
        let o = run(&args);
        assert_ok(&o, &format!("train {model} {preset:?}"));
        let m = json_file(&dir.join("metrics.json"));
        assert_eq!(m["model"], model);
        assert_eq!(m["config"]["model"], model);
        let test_nll = m["test"]["nll"].as_f64().expect("number");
        assert!(test_nll.is_finite(), "{model}: {m}");
        let o = run(&["eval", d, "--data", data, "--toy-samples", "256", "--json"]);
        assert_ok(&o, "eval");
        let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
        assert!(
            (v["nll"].as_f64().expect("nll") - test_nll).abs() < 1e-9,
            "{model}: eval agrees with training"
        );
        let s = tmp.path().join(format!("s{i}.npy"));
        let o = run(&["sample", d, "-n", "20", "--out", s.to_str().expect("utf-8")]);
        assert_ok(&o, "sample");
        let arr = exactflow::models::data::npy::read_array(&s).expect("a .npy");
        assert_eq!(arr.shape[0], 20);
        assert!(arr.values.iter().all(|v| v.is_finite()));
        if !audit {
            continue;
        }
        let o = run(&[
            "audit",
            d,
            "--data",
            data,
            "--toy-samples",
            "256",
            "--samples",
            "2",
            "--json",
        ]);
        assert_ok(&o, &format!("audit {model} {preset:?}"));
        let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
        assert_eq!(v["pass"], true, "{model} {preset:?}: {v}");
        let stages = v["stages"].as_array().expect("stages");
        let spline_stages: Vec<&Value> = stages.iter().filter(|s| !s["bins"].is_null()).collect();
        if model == "nsf" {
            assert!(!spline_stages.is_empty(), "the audit covers the spline layers' bins");
            for s in spline_stages {
                let bins = s["bins"].as_array().expect("per-bin statistics");
                assert_eq!(bins.len(), 8, "8 bins");
                let counted: u64 = bins.iter().map(|b| b["inputs"].as_u64().expect("count")).sum();
                assert!(counted <= 2 * 64, "at most one input per element in a bin");
                assert!(bins.iter().all(|b| b["cond"].as_f64().expect("cond") >= 1.0));
            }
            let o = run(&["audit", d, "--data", data, "--toy-samples", "256", "--samples", "2"]);
            assert_ok(&o, "audit table");
            assert!(stdout(&o).contains("spline bins"), "{}", stdout(&o));
        } else {
            assert!(spline_stages.is_empty());
            assert!(
                stages
                    .iter()
                    .any(|s| s["kind"].as_str().expect("kind").contains("Autoregressive"))
            );
        }
    }
}

/// Bad input to the new families: an unknown preset, and a checkpoint holding a NaN parameter
/// (one error line naming the tensor as the checkpoint does).
#[test]
fn autoregressive_and_spline_user_errors() {
    assert_user_error(
        &["train", "--model", "nsf", "--data", "moons", "--preset", "bins0"],
        "unknown nsf preset",
    );
    assert_user_error(
        &["train", "--model", "maf", "--data", "moons", "--preset", "paper"],
        "unknown maf preset",
    );
    assert_user_error(&["train", "--model", "spline", "--data", "moons"], "maf, iaf, nsf");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cfg = exactflow::models::ModelConfig::preset("nsf", "coupling", &[2], 0).expect("preset");
    let mut flow = cfg.build::<f64>().expect("builds");
    use exactflow::layers::Params;
    flow.visit_params_mut("", &mut |name, p| {
        if name == "flow.1.net.0.weight" {
            p.value.as_mut_slice()[3] = f64::NAN;
        }
    });
    let path = tmp.path().join("model.safetensors");
    exactflow::models::checkpoint::save(&path, &cfg, &flow, None).expect("saves");
    let d = tmp.path().to_str().expect("utf-8");
    assert_user_error(
        &["eval", d, "--data", "moons", "--toy-samples", "256"],
        "flow.1.net.0.weight",
    );
    let s = tmp.path().join("s.npy");
    assert_user_error(
        &["sample", d, "-n", "5", "--out", s.to_str().expect("utf-8")],
        "flow.1.net.0.weight",
    );
}
