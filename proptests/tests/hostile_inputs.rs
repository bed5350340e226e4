//! The hostile-input suite: every reader of outside data gets valid files that are then mutated
//! (truncated, bits flipped, bytes overwritten, inserted or repeated, numbers of a header replaced
//! by absurd ones) and must answer `Ok` or `Err`: a panic fails the test, and so does a peak heap
//! above the reader's stated bound.
//!
//! | reader | input | bound on the peak heap of one read |
//! |---|---|---|
//! | `npy::read`, `read_matrix` | a `.npy` of S bytes | 20 S + 1 MiB |
//! | `csv::read`, `read_matrix` | a CSV of S bytes | 40 S + 1 MiB |
//! | `mnist::read_dir` | IDX files of U bytes once decompressed | 24 U + 1 MiB |
//! | `cifar10::read_dir` | batches of S bytes in all | 16 S + 1 MiB |
//! | `checkpoint::load` (+ its training state) | a checkpoint of S bytes | 64 S + 8 MiB |
//! | `ModelConfig`, `TrainConfig`, `TrainState` from JSON (+ `validate`, `parameter_count`) | S bytes of text | 16 S + 1 MiB |
//!
//! The multiples cover the reader's own copy of the file, the values as f64 (8 bytes per input
//! byte for byte data), a Vec's doubling and, for checkpoints, the model built (parameters are
//! checked against the file's size first, so 16 bytes of value and gradient per 4 stored bytes)
//! and its layers' bookkeeping. Without the checks before allocating, a mutated header asks for
//! up to 2^64 bytes. The peak is counted by a global allocator on the reading thread only, so
//! that tests running in parallel do not see each other's allocations.
//!
//! `PROPTEST_CASES` sets the cases per reader (default 256).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;

use exactflow_models::checkpoint;
use exactflow_models::data::{DataSpec, cifar10, csv, mnist, npy, read_matrix};
use exactflow_models::train::{Decay, EpochReport, Observer, Schedule, TrainConfig, TrainState, train};
use exactflow_models::{ModelConfig, Result as ModelResult};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// Counting allocator: live bytes and their peak, per thread, while a measurement is on.

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    // try_with: the allocator also runs while thread-locals are torn down.
    let on = ON.try_with(Cell::get).unwrap_or(false);
    if on {
        let _ = LIVE.try_with(|l| {
            let v = l.get() + delta;
            l.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the peak of the heap bytes this thread allocated
/// during it (above what was live at its start).
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, u64) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ON.with(|o| o.set(true));
    let r = f();
    ON.with(|o| o.set(false));
    (r, PEAK.with(Cell::get).max(0) as u64)
}

const MIB: u64 = 1 << 20;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Numbers a mutated header may say.
const ABSURD_TEXT: [&str; 12] = [
    "0",
    "-1",
    "1",
    "3",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "99999999999999999999999999",
    "NaN",
];
/// Binary header words a mutated file may hold.
const ABSURD_WORDS: [u64; 9] = [0, 1, 2, 255, 0x7fff_ffff, 0xffff_ffff, 1 << 32, 1 << 40, u64::MAX];

#[derive(Clone, Debug)]
enum Mutation {
    /// Keep the first `(len * .0) / 1000` bytes.
    Truncate(usize),
    /// Flip bit `.1` of the bytes at positions `.0` (taken modulo the length).
    Flip(Vec<(usize, u8)>),
    /// Overwrite bytes from a position.
    Overwrite(usize, Vec<u8>),
    /// Insert bytes at a position.
    Insert(usize, Vec<u8>),
    /// Repeat a stretch (start, length) right after itself.
    Repeat(usize, usize),
    /// Replace the k-th run of ASCII digits with an absurd number.
    Number(usize, usize),
    /// Write an absurd word (4 bytes big-endian or 8 bytes little-endian) near the start.
    Word(usize, usize, bool),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..1000).prop_map(Mutation::Truncate),
        prop::collection::vec((any::<usize>(), 0u8..8), 1..8).prop_map(Mutation::Flip),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, b)| Mutation::Overwrite(a, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, b)| Mutation::Insert(a, b)),
        (any::<usize>(), 1usize..64).prop_map(|(a, b)| Mutation::Repeat(a, b)),
        (any::<usize>(), 0..ABSURD_TEXT.len()).prop_map(|(k, v)| Mutation::Number(k, v)),
        (0usize..64, 0..ABSURD_WORDS.len(), any::<bool>()).prop_map(|(a, v, w)| Mutation::Word(a, v, w)),
    ]
}

fn apply(m: &Mutation, v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    let len = v.len().max(1);
    match m {
        Mutation::Truncate(k) => out.truncate(v.len() * k / 1000),
        Mutation::Flip(bits) => {
            for &(at, bit) in bits {
                if !out.is_empty() {
                    out[at % len] ^= 1 << bit;
                }
            }
        }
        Mutation::Overwrite(at, bytes) => {
            let at = at % len;
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = out.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        Mutation::Insert(at, bytes) => {
            let at = at % (v.len() + 1);
            out.splice(at..at, bytes.iter().copied());
        }
        Mutation::Repeat(at, n) => {
            let at = at % len;
            let end = (at + n).min(v.len());
            let piece = v[at.min(v.len())..end].to_vec();
            out.splice(end..end, piece);
        }
        Mutation::Number(k, which) => {
            let runs: Vec<(usize, usize)> = digit_runs(v);
            if !runs.is_empty() {
                let (s, e) = runs[k % runs.len()];
                out.splice(s..e, ABSURD_TEXT[*which].bytes());
            }
        }
        Mutation::Word(at, which, wide) => {
            let w = ABSURD_WORDS[*which];
            let bytes = if *wide {
                w.to_le_bytes().to_vec()
            } else {
                (w as u32).to_be_bytes().to_vec()
            };
            for (i, b) in bytes.iter().enumerate() {
                if let Some(slot) = out.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
    }
    out
}

/// `(start, end)` of every maximal run of ASCII digits.
fn digit_runs(v: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in v.iter().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, v.len()));
    }
    runs
}

fn config(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(n),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write a test file");
}

// ---------------------------------------------------------------------------------------------
// .npy and CSV.

fn npy_file(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {dims}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn npy_bases() -> Vec<Vec<u8>> {
    let f64s: Vec<u8> = (0..12).flat_map(|k| (k as f64 * 0.5 - 2.0).to_le_bytes()).collect();
    let f32s: Vec<u8> = (0..6).flat_map(|k| (k as f32 * 1.5).to_be_bytes()).collect();
    let i64s: Vec<u8> = [3i64, -4, 5, 1 << 40].iter().flat_map(|v| v.to_le_bytes()).collect();
    vec![
        npy_file("<f8", false, &[4, 3], &f64s),
        npy_file("|u1", false, &[2, 1, 3, 3], &(0..18).collect::<Vec<u8>>()),
        npy_file(">f4", true, &[3, 2], &f32s),
        npy_file("<i8", false, &[2, 2], &i64s),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn npy_reader(base in 0usize..4, m in mutation()) {
        let bytes = apply(&m, &npy_bases()[base]);
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("x.npy");
        write(&p, &bytes);
        let bound = 20 * bytes.len() as u64 + MIB;
        let (_, peak) = peak_of(|| npy::read(&p).map(|_| ()));
        prop_assert!(peak <= bound, "npy::read peaked at {peak} B > {bound} B on {m:?}");
        let (_, peak) = peak_of(|| read_matrix(&p).map(|_| ()));
        prop_assert!(peak <= bound, "read_matrix peaked at {peak} B > {bound} B on {m:?}");
    }

    #[test]
    fn csv_reader(base in 0usize..4, m in mutation()) {
        let bases = [
            "x,y,z\n1,2,3\n4,5.5,-6e2\n7,8,9\n".to_string(),
            "\u{feff}1.5,-2e3\r\n4,5\r\n\r\n".to_string(),
            "9007199254740993,0\n0,1\n".to_string(),
            (0..40).map(|i| format!("{i},{}\n", i * i)).collect::<String>(),
        ];
        let bytes = apply(&m, bases[base].as_bytes());
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("x.csv");
        write(&p, &bytes);
        let bound = 40 * bytes.len() as u64 + MIB;
        let (_, peak) = peak_of(|| csv::read(&p).map(|_| ()));
        prop_assert!(peak <= bound, "csv::read peaked at {peak} B > {bound} B on {m:?}");
        let (_, peak) = peak_of(|| read_matrix(&p).map(|_| ()));
        prop_assert!(peak <= bound, "read_matrix peaked at {peak} B > {bound} B on {m:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// IDX (MNIST) and CIFAR-10.

fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("compress");
    e.finish().expect("compress")
}

/// The length `bytes` decompresses to (up to 256 MiB; a broken stream counts up to where it
/// breaks).
fn gunzipped_len(bytes: &[u8]) -> u64 {
    let mut sink = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(bytes)
        .take(256 * MIB)
        .read_to_end(&mut sink);
    sink.len() as u64
}

/// The four IDX files of a tiny MNIST: 3 training and 2 test images of 4x5 pixels.
fn mnist_files() -> [(&'static str, Vec<u8>); 4] {
    [
        (
            "train-images-idx3-ubyte",
            idx(0x803, &[3, 4, 5], &(0..60).collect::<Vec<u8>>()),
        ),
        ("train-labels-idx1-ubyte", idx(0x801, &[3], &[7, 0, 9])),
        ("t10k-images-idx3-ubyte", idx(0x803, &[2, 4, 5], &[255; 40])),
        ("t10k-labels-idx1-ubyte", idx(0x801, &[2], &[1, 2])),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn idx_reader(which in 0usize..4, mode in 0usize..3, m in mutation()) {
        // mode 0: plain files; 1: gzip, the IDX bytes mutated; 2: gzip, the compressed bytes.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut unpacked = 0u64;
        for (k, (name, bytes)) in mnist_files().into_iter().enumerate() {
            let bytes = if k == which && mode < 2 { apply(&m, &bytes) } else { bytes };
            if mode == 0 {
                unpacked += bytes.len() as u64;
                write(&dir.path().join(name), &bytes);
            } else {
                let packed = if k == which && mode == 2 { apply(&m, &gz(&bytes)) } else { gz(&bytes) };
                unpacked += gunzipped_len(&packed).max(bytes.len() as u64);
                write(&dir.path().join(format!("{name}.gz")), &packed);
            }
        }
        let bound = 24 * unpacked + MIB;
        let (_, peak) = peak_of(|| mnist::read_dir(dir.path()).map(|_| ()));
        prop_assert!(peak <= bound, "mnist::read_dir peaked at {peak} B > {bound} B on {m:?}");
    }

    #[test]
    fn cifar10_reader(which in 0usize..6, m in mutation()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut total = 0u64;
        let files: Vec<&str> = cifar10::TRAIN_FILES.iter().copied().chain([cifar10::TEST_FILE]).collect();
        for (k, f) in files.iter().enumerate() {
            let mut rec = Vec::new();
            for r in 0..2u8 {
                rec.push((k as u8 + r) % 10);
                rec.extend((0..cifar10::RECORD - 1).map(|i| (i % 251) as u8 ^ r));
            }
            let bytes = if k == which { apply(&m, &rec) } else { rec };
            total += bytes.len() as u64;
            write(&dir.path().join(f), &bytes);
        }
        let bound = 16 * total + MIB;
        let (_, peak) = peak_of(|| cifar10::read_dir(dir.path()).map(|_| ()));
        prop_assert!(peak <= bound, "cifar10::read_dir peaked at {peak} B > {bound} B on {m:?}");
    }
}

#[test]
fn a_gzip_bomb_is_read_up_to_its_declared_size_only() {
    // The training images declare 60 bytes and decompress to 64 MiB more.
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, bytes) in mnist_files() {
        write(&dir.path().join(format!("{name}.gz")), &gz(&bytes));
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&mnist_files()[0].1).expect("compress");
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..64 {
        e.write_all(&zeros).expect("compress");
    }
    write(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &e.finish().expect("compress"),
    );
    let (r, peak) = peak_of(|| mnist::read_dir(dir.path()).map(|_| ()));
    let e = r.expect_err("too long");
    assert!(e.to_string().contains("too long"), "{e}");
    assert!(peak <= MIB, "peaked at {peak} B reading a 64 MiB bomb");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and configs.

/// Interrupts training at the end of epoch 2 (before its checkpoint is written).
struct StopAt2;

impl Observer for StopAt2 {
    fn on_epoch(&mut self, r: &EpochReport) {
        if r.epoch >= 2 {
            std::panic::panic_any("interrupted");
        }
    }
}

/// Valid checkpoints: a model-only RealNVP, a training checkpoint (moments, latest parameters,
/// training state) and a tiny Glow (integer buffers); each also as an older exactflow wrote it
/// (format 2, no checksums), so that mutated configs reach the size checks.
fn checkpoint_bases() -> &'static Vec<Vec<u8>> {
    static BASES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BASES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut out = Vec::new();
        let realnvp = ModelConfig::preset("realnvp", "toy", &[2], 1).expect("preset");
        let mut small = realnvp.clone();
        if let ModelConfig::RealNvp(c) = &mut small {
            c.couplings = 2;
            c.hidden = vec![8];
            c.batch_norm = true;
        }
        let p = dir.path().join("a.safetensors");
        checkpoint::save(&p, &small, &small.build::<f64>().expect("builds"), None).expect("saves");
        out.push(std::fs::read(&p).expect("read"));
        let d = "moons".parse::<DataSpec>().expect("spec").load(1, 256).expect("data");
        let cfg = TrainConfig {
            steps: Some(64),
            batch_size: 64,
            schedule: Schedule {
                lr: 0.05,
                warmup: 0,
                decay: Decay::Constant,
            },
            checkpoint: Some(dir.path().join("b.safetensors")),
            ..TrainConfig::default()
        };
        let mut flow = small.build::<f64>().expect("builds");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            train(&mut flow, &small, &cfg, &d.train, Some(&d.val), &mut StopAt2, None)
        }));
        out.push(std::fs::read(dir.path().join("b.safetensors")).expect("training checkpoint"));
        let glow = ModelConfig::preset("glow", "tiny", &[1, 4, 4], 2).expect("preset");
        let p = dir.path().join("c.safetensors");
        checkpoint::save(&p, &glow, &glow.build::<f32>().expect("builds"), None).expect("saves");
        out.push(std::fs::read(&p).expect("read"));
        let v2: Vec<Vec<u8>> = out.iter().map(|b| as_version_2(b)).collect();
        out.extend(v2);
        out
    })
}

/// The same checkpoint without checksums, as format version 2.
fn as_version_2(bytes: &[u8]) -> Vec<u8> {
    let st = safetensors::SafeTensors::deserialize(bytes).expect("valid");
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).expect("valid");
    let mut meta = meta.metadata().clone().expect("metadata");
    meta.remove("exactflow.sha256");
    meta.insert("exactflow.format".into(), "2".into());
    safetensors::serialize(st.tensors(), Some(meta)).expect("serializes")
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn checkpoint_reader(base in 0usize..6, m in mutation()) {
        let bytes = apply(&m, &checkpoint_bases()[base]);
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("m.safetensors");
        write(&p, &bytes);
        let bound = 64 * bytes.len() as u64 + 8 * MIB;
        let (_, peak) = peak_of(|| -> ModelResult<()> {
            let loaded = checkpoint::load::<f64>(&p)?;
            TrainState::of_checkpoint(&p, &loaded)?;
            Ok(())
        });
        prop_assert!(peak <= bound, "checkpoint::load peaked at {peak} B > {bound} B on {m:?}");
        let (_, peak) = peak_of(|| checkpoint::read_config(&p).map(|_| ()));
        prop_assert!(peak <= bound, "checkpoint::read_config peaked at {peak} B > {bound} B on {m:?}");
    }

    #[test]
    fn config_json_reader(base in 0usize..6, m in mutation()) {
        let texts = json_bases();
        let bytes = apply(&m, texts[base].as_bytes());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let bound = 16 * text.len() as u64 + MIB;
        let (_, peak) = peak_of(|| {
            if let Ok(c) = serde_json::from_str::<ModelConfig>(&text) {
                let _ = c.validate();
                let _ = c.parameter_count();
            }
            let _ = serde_json::from_str::<TrainConfig>(&text).map(|c| c.validate());
            let _ = serde_json::from_str::<TrainState>(&text);
        });
        prop_assert!(peak <= bound, "config parsing peaked at {peak} B > {bound} B on {m:?}");
    }
}

/// Valid JSON of every config family, a training config and a training state.
fn json_bases() -> &'static Vec<String> {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let mut v: Vec<String> = [
            ModelConfig::preset("nice", "digits", &[64], 0),
            ModelConfig::preset("realnvp", "toy", &[2], 0),
            ModelConfig::preset("realnvp", "mnist", &[1, 28, 28], 0),
            ModelConfig::preset("glow", "cifar10", &[3, 32, 32], 0),
        ]
        .into_iter()
        .map(|c| serde_json::to_string(&c.expect("preset")).expect("json"))
        .collect();
        v.push(serde_json::to_string(&TrainConfig::default()).expect("json"));
        let st = TrainState::start(&TrainConfig::default());
        v.push(serde_json::to_string(&st).expect("json"));
        v
    })
}

// ---------------------------------------------------------------------------------------------
// Output that is larger than memory: samples streamed to .npy in chunks.

#[test]
fn samples_streamed_in_chunks_keep_the_heap_bounded() {
    let mut model = ModelConfig::preset("realnvp", "toy", &[2], 3).expect("preset");
    if let ModelConfig::RealNvp(c) = &mut model {
        c.couplings = 4;
        c.hidden = vec![16, 16];
    }
    let flow = model.build::<f64>().expect("builds");
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("s.npy");
    let chunk = 4096usize;
    let stream = |chunks: usize| -> u64 {
        let n = chunks * chunk;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (r, peak) = peak_of(|| {
            let parts = (0..n).step_by(chunk).map(|_| flow.sample(chunk, 1.0, &mut rng, None));
            npy::write_f64_chunks(&p, n, &[2], parts)
        });
        r.expect("writes");
        assert_eq!(std::fs::metadata(&p).expect("written").len(), 128 + 16 * n as u64);
        peak
    };
    // 8 chunks and 128 chunks (8 MiB of float64): the peak is one chunk's, whatever the count.
    let (few, many) = (stream(8), stream(128));
    assert!(
        many <= few + few / 10,
        "the peak grew with the sample count: {few} B for 8 chunks, {many} B for 128"
    );
    assert!(many < 2 * MIB, "peaked at {many} B writing 8 MiB");
    let back = npy::read_array(&p).expect("reads back");
    assert_eq!(back.shape, vec![128 * chunk, 2]);
}
