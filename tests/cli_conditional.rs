//! Conditional flows from the command line: `train` on a simulator and on paired user data
//! (`--context npy:PATH`, `--context-cols K`), `eval` with the exact-posterior check (JSON and
//! text), `sample --context` (posterior pictures with the exact contours), and every bad
//! context (one `error:` line naming what is wrong, no panic). Trainings here are a few dozen
//! steps: they check the machinery, and that the exact-posterior KL falls with training.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    let mut c = Command::cargo_bin("exactflow").expect("the exactflow binary is built for the tests");
    c.env("NO_COLOR", "1");
    c.args(args).output().expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed:\n{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
}

/// A user error: non-zero exit, exactly one line on stderr starting with "error", containing
/// every needle, no panic.
fn assert_user_error(args: &[&str], needles: &[&str]) {
    let o = run(args);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err:?}");
    assert!(lines[0].starts_with("error"), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} does not mention {n:?}");
    }
}

/// A float64 `.npy` file (format 1.0) of a 2-D array.
fn write_npy(path: &Path, rows: usize, cols: usize, values: &[f64]) {
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
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
    std::fs::write(path, bytes).expect("write npy");
}

fn eval_json(dir: &Path) -> Value {
    let o = run(&[
        "eval",
        dir.to_str().expect("utf-8"),
        "--data",
        "sim:gaussian-linear",
        "--toy-samples",
        "400",
        "--observations",
        "20",
        "--posterior-samples",
        "300",
        "--json",
    ]);
    assert_ok(&o, "eval");
    serde_json::from_str(&text(&o.stdout)).expect("JSON")
}

fn train_sim(dir: &Path, steps: &str) {
    let o = run(&[
        "train",
        "--model",
        "nsf",
        "--data",
        "sim:gaussian-linear",
        "--steps",
        steps,
        "--toy-samples",
        "400",
        "--batch-size",
        "128",
        "--out",
        dir.to_str().expect("utf-8"),
    ]);
    assert_ok(&o, "train");
}

#[test]
fn a_posterior_trains_evaluates_against_the_exact_one_and_samples() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (short, long) = (tmp.path().join("short"), tmp.path().join("long"));
    train_sim(&short, "1");
    train_sim(&long, "150");
    let (a, b) = (eval_json(&short), eval_json(&long));
    for v in [&a, &b] {
        assert_eq!(v["context_dim"], 2);
        assert!(v["nll"].as_f64().expect("nll").is_finite());
        let p = &v["posterior_check"];
        assert_eq!(
            (p["observations"].as_u64(), p["samples_per_observation"].as_u64()),
            (Some(20), Some(300))
        );
        assert!(p["kl"].as_f64().expect("kl").is_finite() && p["kl_stderr"].as_f64().expect("se") >= 0.0);
        let cov = p["coverage"].as_array().expect("coverage");
        assert_eq!(cov.len(), 2);
        for c in cov {
            let x = c["coverage"].as_f64().expect("coverage");
            assert!((0.0..=1.0).contains(&x), "{c}");
        }
    }
    let (ka, kb) = (
        a["posterior_check"]["kl"].as_f64().unwrap(),
        b["posterior_check"]["kl"].as_f64().unwrap(),
    );
    assert!(
        kb < ka,
        "the KL did not fall with training: {ka} after 1 step, {kb} after 150"
    );
    // Text output names the check.
    let o = run(&[
        "eval",
        long.to_str().unwrap(),
        "--data",
        "sim:gaussian-linear",
        "--toy-samples",
        "400",
        "--observations",
        "3",
        "--posterior-samples",
        "50",
    ]);
    assert_ok(&o, "eval (text)");
    assert!(
        text(&o.stdout).contains("KL(p || q)") && text(&o.stdout).contains("90% HPD"),
        "{}",
        text(&o.stdout)
    );
    // A posterior picture with the exact contours, and a .npy of posterior draws.
    let png = tmp.path().join("post.png");
    let o = run(&[
        "sample",
        long.to_str().unwrap(),
        "--context",
        "0.3,-1.2",
        "-n",
        "500",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_ok(&o, "sample png");
    assert!(std::fs::metadata(&png).expect("png").len() > 1000);
    let npy = tmp.path().join("post.npy");
    let o = run(&[
        "sample",
        long.to_str().unwrap(),
        "--context=-1.0,0.5",
        "-n",
        "50",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert_ok(&o, "sample npy");
    // Bad contexts for sample.
    let l = long.to_str().unwrap();
    let out = png.to_str().unwrap();
    assert_user_error(&["sample", l, "-n", "5", "--out", out], &["conditional", "--context"]);
    assert_user_error(
        &["sample", l, "--context", "1,2,3", "-n", "5", "--out", out],
        &["3 values", "width 2"],
    );
    assert_user_error(
        &["sample", l, "--context", "NaN,1", "-n", "5", "--out", out],
        &["value 1", "NaN"],
    );
    // An unconditional model given a context.
    let moons = tmp.path().join("moons");
    let o = run(&[
        "train",
        "--model",
        "nsf",
        "--data",
        "moons",
        "--steps",
        "1",
        "--toy-samples",
        "50",
        "--out",
        moons.to_str().unwrap(),
    ]);
    assert_ok(&o, "train moons");
    assert_user_error(
        &[
            "sample",
            moons.to_str().unwrap(),
            "--context",
            "1,2",
            "-n",
            "5",
            "--out",
            out,
        ],
        &["unconditional"],
    );
    // A conditional model evaluated on data without a context, and the reverse.
    assert_user_error(
        &["eval", l, "--data", "moons", "--toy-samples", "50"],
        &["conditional", "width 2", "no context"],
    );
    assert_user_error(
        &[
            "eval",
            moons.to_str().unwrap(),
            "--data",
            "sim:two-moons",
            "--toy-samples",
            "50",
        ],
        &["unconditional", "width 2"],
    );
}

#[test]
fn paired_files_train_conditional_models_and_bad_contexts_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let n = 60;
    let data: Vec<f64> = (0..n * 2).map(|k| ((k as f64) * 0.37).sin()).collect();
    let ctx: Vec<f64> = (0..n * 3).map(|k| ((k as f64) * 0.11).cos()).collect();
    let (x, c) = (tmp.path().join("x.npy"), tmp.path().join("c.npy"));
    write_npy(&x, n, 2, &data);
    write_npy(&c, n, 3, &ctx);
    let xs = format!("npy:{}", x.display());
    let cs = format!("npy:{}", c.display());
    let out = tmp.path().join("paired");
    let o = run(&[
        "train",
        "--model",
        "maf",
        "--data",
        &xs,
        "--context",
        &cs,
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&o, "train paired");
    let o = run(&["eval", out.to_str().unwrap(), "--data", &xs, "--context", &cs, "--json"]);
    assert_ok(&o, "eval paired");
    let v: Value = serde_json::from_str(&text(&o.stdout)).expect("JSON");
    assert_eq!(v["context_dim"], 3);
    assert!(v["nll"].as_f64().expect("nll").is_finite());
    // The last columns of one file.
    let joined: Vec<f64> = (0..n)
        .flat_map(|i| [data[2 * i], data[2 * i + 1], ctx[3 * i]])
        .collect();
    let j = tmp.path().join("joined.npy");
    write_npy(&j, n, 3, &joined);
    let js = format!("npy:{}", j.display());
    let o = run(&[
        "train",
        "--model",
        "realnvp",
        "--data",
        &js,
        "--context-cols",
        "1",
        "--steps",
        "2",
        "--out",
        tmp.path().join("cols").to_str().unwrap(),
    ]);
    assert_ok(&o, "train --context-cols");
    // Wrong row count: both counts named.
    let short = tmp.path().join("short.npy");
    write_npy(&short, n - 1, 3, &ctx[..(n - 1) * 3]);
    let ss = format!("npy:{}", short.display());
    let o2 = tmp.path().join("o2");
    let o2 = o2.to_str().unwrap();
    assert_user_error(
        &[
            "train",
            "--model",
            "maf",
            "--data",
            &xs,
            "--context",
            &ss,
            "--steps",
            "1",
            "--out",
            o2,
        ],
        &["59 rows", "60 samples"],
    );
    // NaN in the context: its row named.
    let mut bad = ctx.clone();
    bad[3 * 17 + 2] = f64::NAN;
    let b = tmp.path().join("bad.npy");
    write_npy(&b, n, 3, &bad);
    let bs = format!("npy:{}", b.display());
    assert_user_error(
        &[
            "train",
            "--model",
            "maf",
            "--data",
            &xs,
            "--context",
            &bs,
            "--steps",
            "1",
            "--out",
            o2,
        ],
        &["bad.npy", "17, 2"],
    );
    // A family without conditional models; too many context columns; a context for a toy set.
    assert_user_error(
        &[
            "train",
            "--model",
            "nice",
            "--data",
            &xs,
            "--context",
            &cs,
            "--steps",
            "1",
            "--out",
            o2,
        ],
        &["nice", "no conditional models"],
    );
    assert_user_error(
        &[
            "train",
            "--model",
            "maf",
            "--data",
            &js,
            "--context-cols",
            "3",
            "--steps",
            "1",
            "--out",
            o2,
        ],
        &["--context-cols 3"],
    );
    assert_user_error(
        &[
            "train",
            "--model",
            "maf",
            "--data",
            "moons",
            "--context",
            &cs,
            "--steps",
            "1",
            "--out",
            o2,
        ],
        &["moons"],
    );
    // A model of width 3 evaluated with a context of another width.
    assert_user_error(
        &["eval", out.to_str().unwrap(), "--data", &js, "--context-cols", "1"],
        &["width 3", "width 1"],
    );
}

/// `train --context-embedding 16:3` builds a conditional NSF whose context goes through an MLP
/// `2 -> 16 -> 3`: the checkpoint's config records it, `eval` and `sample --context` load it,
/// `--help` explains the flag, and a bad spec, an unconditional data set or a resumed run with
/// the flag are one `error:` line each.
#[test]
fn a_context_embedding_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("embedded");
    let d = dir.to_str().expect("utf-8");
    let base = [
        "train",
        "--model",
        "nsf",
        "--data",
        "sim:gaussian-linear",
        "--steps",
        "5",
        "--toy-samples",
        "400",
        "--batch-size",
        "128",
    ];
    let mut args = base.to_vec();
    args.extend(["--context-embedding", "16:3", "--out", d]);
    assert_ok(&run(&args), "train with an embedding");
    let config = exactflow::models::checkpoint::read_config(&dir.join("model.safetensors")).expect("config");
    let e = config.context_embedding().expect("recorded");
    assert_eq!((e.hidden.clone(), e.dim), (vec![16], 3));
    let json = eval_json(&dir);
    assert!(
        json["posterior_check"]["kl"].as_f64().is_some_and(f64::is_finite),
        "{json}"
    );
    let png = tmp.path().join("post.png");
    let o = run(&[
        "sample",
        d,
        "--context",
        "0.3,-1.2",
        "-n",
        "200",
        "--out",
        png.to_str().expect("utf-8"),
    ]);
    assert_ok(&o, "sample with an embedding");

    let help = text(&run(&["train", "--help"]).stdout);
    assert!(
        help.contains("--context-embedding") && help.contains("64,64:16"),
        "{help}"
    );

    let mut bad = base.to_vec();
    bad.extend(["--context-embedding", "16:x", "--out", d]);
    assert_user_error(&bad, &["context embedding", "16:x"]);
    let mut zero = base.to_vec();
    zero.extend(["--context-embedding", "0", "--out", d]);
    assert_user_error(&zero, &["positive"]);
    let plain = tmp.path().join("plain");
    assert_user_error(
        &[
            "train",
            "--model",
            "nsf",
            "--data",
            "moons",
            "--steps",
            "1",
            "--context-embedding",
            "8",
            "--out",
            plain.to_str().expect("utf-8"),
        ],
        &["--context-embedding", "no context"],
    );
    let mut resume = base.to_vec();
    resume.extend(["--context-embedding", "16:3", "--resume", "--out", d]);
    assert_user_error(&resume, &["context-embedding", "resume"]);
}
