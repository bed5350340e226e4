//! The `exactflow` binary under hostile input: a resumed copy of a run never touches the
//! original, crafted training states, absurd sizes, non-regular files, integers that float64
//! rounds, a byte-order mark, a learning rate that explodes, old checkpoints. Each is one
//! `error: ...` line (or the documented result), never a panic, an abort or a hang.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use exactflow::models::ModelConfig;
use exactflow::models::checkpoint;
use exactflow::models::data::DataSpec;
use exactflow::models::train::{EpochReport, Observer, TrainConfig, TrainState, train};

fn exactflow() -> Command {
    let mut c = Command::cargo_bin("exactflow").expect("the exactflow binary is built for the tests");
    c.env("NO_COLOR", "1");
    // A hang (a FIFO read forever) fails the test instead of blocking it.
    c.timeout(Duration::from_secs(300));
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

/// A user error: non-zero exit, exactly one line on stderr starting with "error", no panic.
fn assert_user_error(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{args:?} panicked or aborted: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {err:?}");
    assert!(lines[0].starts_with("error"), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle:?}");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every file of a directory by name, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

/// Interrupts training at the end of epoch 2, before its checkpoint is written (as a kill would).
struct StopAt2;

impl Observer for StopAt2 {
    fn on_epoch(&mut self, r: &EpochReport) {
        if r.epoch >= 2 {
            std::panic::panic_any("interrupted");
        }
    }
}

/// An interrupted run in `dir`, as `exactflow train --model realnvp --data moons --toy-samples
/// 512 --seed 4 --out DIR` leaves it: the checkpoint of epoch 1 (8 steps of 64 per epoch), whose
/// training state names `dir`'s checkpoint path.
fn interrupted_run(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let splits = "moons".parse::<DataSpec>().expect("spec").load(4, 512).expect("data");
    let model = ModelConfig::preset("realnvp", "toy", &[2], 4).expect("preset");
    let ckpt = dir.join("model.safetensors");
    let cfg = TrainConfig {
        steps: Some(80),
        batch_size: 64,
        seed: 4,
        checkpoint: Some(ckpt.clone()),
        ..TrainConfig::default()
    };
    let mut flow = model.build::<f64>().expect("builds");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(
            &mut flow,
            &model,
            &cfg,
            &splits.train,
            Some(&splits.val),
            &mut StopAt2,
            None,
        )
    }));
    assert!(r.is_err(), "interrupted");
    ckpt
}

const RESUME: [&str; 10] = [
    "train",
    "--model",
    "realnvp",
    "--data",
    "moons",
    "--toy-samples",
    "512",
    "--seed",
    "4",
    "--resume",
];

#[test]
fn resuming_a_copied_run_leaves_the_original_byte_identical() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let original = tmp.path().join("original");
    interrupted_run(&original);
    let before = files(&original);
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).expect("mkdir");
    for (name, bytes) in &before {
        std::fs::write(copy.join(name), bytes).expect("copy");
    }
    let mut args = RESUME.to_vec();
    args.extend(["--out", s(&copy)]);
    let o = run(&args);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(s(&copy.join("model.safetensors"))),
        "{}",
        stdout(&o)
    );
    // The original is untouched, and nothing was added to it.
    assert_eq!(files(&original), before, "the resumed copy wrote into the original run");
    // The copy holds the finished run.
    let ckpt = copy.join("model.safetensors");
    let loaded = checkpoint::load::<f64>(&ckpt).expect("loads");
    let st = TrainState::of_checkpoint(&ckpt, &loaded)
        .expect("parses")
        .expect("state");
    assert!(st.finished && st.step == 80, "{st:?}");
    assert_eq!(st.config.checkpoint.as_deref(), Some(ckpt.as_path()));
    assert!(copy.join("metrics.json").is_file());
}

#[test]
fn a_crafted_training_state_is_one_error_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    let ckpt = interrupted_run(&dir);
    let loaded = checkpoint::load::<f64>(&ckpt).expect("loads");
    let record = loaded.record.clone().expect("a training checkpoint");
    let mut state: serde_json::Value = serde_json::from_str(&record.state_json).expect("json");
    state["batch_in_epoch"] = serde_json::json!(1000);
    let crafted = checkpoint::TrainingRecord {
        state_json: state.to_string(),
        ..record
    };
    checkpoint::save(&ckpt, &loaded.config, &loaded.flow, Some(&crafted)).expect("saves");
    let mut args = RESUME.to_vec();
    args.extend(["--out", s(&dir)]);
    assert_user_error(&args, "batch 1000");
}

#[test]
fn absurd_sizes_and_files_that_never_end_are_one_error_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    interrupted_run(&dir);
    let d = s(&dir);
    let png = tmp.path().join("s.png");
    assert_user_error(&["sample", d, "-n", "1000000000", "--out", s(&png)], "at most 10000");
    assert_user_error(&["audit", d, "--samples", "10000000"], "--samples");
    assert_user_error(&["bench", "logdet", "--min-time", "1e9"], "--min-time");
    let out = tmp.path().join("x");
    let o = s(&out);
    assert_user_error(
        &[
            "train",
            "--model",
            "realnvp",
            "--data",
            "moons",
            "--threads",
            "100000",
            "--out",
            o,
        ],
        "--threads",
    );
    assert_user_error(
        &["train", "--model", "realnvp", "--data", "npy:/dev/zero", "--out", o],
        "character device",
    );
    assert_user_error(
        &["train", "--model", "realnvp", "--data", "csv:/dev/urandom", "--out", o],
        "character device",
    );
    let zero = tmp.path().join("zero.npy");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    assert_user_error(&["logdet", s(&zero)], "character device");
    let fifo = tmp.path().join("pipe.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    assert_user_error(
        &[
            "train",
            "--model",
            "realnvp",
            "--data",
            &format!("csv:{}", s(&fifo)),
            "--out",
            o,
        ],
        "FIFO",
    );
    assert_user_error(&["logdet", s(&fifo)], "FIFO");
    let nested = tmp.path().join("d.safetensors");
    std::fs::create_dir_all(nested.join("model.safetensors")).expect("mkdir");
    assert_user_error(&["eval", s(&nested), "--data", "moons"], "directory");
}

#[test]
fn logdet_withholds_the_exact_determinant_of_integers_float64_rounds() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let m = tmp.path().join("m.csv");
    std::fs::write(&m, "9007199254740993,0\n0,1\n").expect("write");
    let o = run(&["logdet", s(&m), "--audit"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("exact determinant  not computed") && text.contains("9007199254740993"),
        "{text}"
    );
    assert!(!text.contains("agrees"), "{text}");
    let o = run(&["logdet", s(&m), "--audit", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert!(v["audit"]["exact"].is_null(), "{v}");
    assert!(
        v["audit"]["exact_note"]
            .as_str()
            .expect("note")
            .contains("line 1, column 1"),
        "{v}"
    );
    // Integers float64 holds exactly still get their exact determinant: 2^60 * 1 - 0.
    std::fs::write(&m, "1152921504606846976,0\n0,1\n").expect("write");
    let text = stdout(&run(&["logdet", s(&m), "--audit"]));
    assert!(text.contains("exact determinant  1152921504606846976"), "{text}");
}

#[test]
fn a_byte_order_mark_does_not_eat_the_first_row() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let m = tmp.path().join("bom.csv");
    std::fs::write(&m, "\u{feff}2,1\n1,3\n").expect("write");
    let o = run(&["logdet", s(&m), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["n"], 2);
    let log_abs = v["log_abs"].as_f64().expect("number");
    assert!((log_abs - 5f64.ln()).abs() < 1e-14, "{v}");
}

#[test]
fn a_learning_rate_that_explodes_stops_as_diverged_and_keeps_a_good_checkpoint() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("run");
    let o = run(&[
        "train",
        "--model",
        "realnvp",
        "--data",
        "moons",
        "--lr",
        "30",
        "--steps",
        "400",
        "--toy-samples",
        "2048",
        "--batch-size",
        "256",
        "--out",
        s(&out),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "trained to the end: {}", stdout(&o));
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().expect("a message");
    assert!(
        last.starts_with("error: training diverged") && last.contains("last good checkpoint"),
        "{err}"
    );
    // Whatever was saved scores the test split finitely.
    let ckpt = out.join("model.safetensors");
    if ckpt.exists() {
        let o = run(&["eval", s(&out), "--data", "moons", "--toy-samples", "2048", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
        assert!(v["nll"].as_f64().expect("finite").is_finite(), "{v}");
    }
}

#[test]
fn an_old_checkpoint_loads_with_a_one_line_warning() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tests/fixtures/realnvp_small.safetensors");
    let o = run(&["eval", s(&fixture), "--data", "moons", "--toy-samples", "256"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let warnings: Vec<String> = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", stderr(&o));
    assert!(warnings[0].contains("no checksums"), "{warnings:?}");
}
