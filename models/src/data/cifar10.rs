//! CIFAR-10 from its binary version (`cifar-10-binary.tar.gz`, extracted).
//!
//! Each of `data_batch_1.bin` .. `data_batch_5.bin` (training) and `test_batch.bin` (test) is a
//! sequence of 3073-byte records: one label byte (0..=9) and 3072 pixel bytes, the 32x32 red plane,
//! then green, then blue, each row-major; this is exactly one `[3, 32, 32]` CHW sample.
//! The official files hold 10000 records each; [`read_dir`] accepts any positive number.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use exactflow_layers::Tensor;

use super::Dataset;
use super::io_util::{format_error, read_bytes, show};

const FORMAT: &str = "CIFAR-10 binary batch";
/// Image side.
pub const SIDE: usize = 32;
/// Channels (RGB).
pub const CHANNELS: usize = 3;
/// Bytes per record: a label and 3x32x32 pixels.
pub const RECORD: usize = 1 + CHANNELS * SIDE * SIDE;
/// Number of classes.
pub const CLASSES: u8 = 10;
/// The training batch files, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Appends the records of one batch file to `pixels` and `labels`.
fn read_batch(path: &Path, pixels: &mut Vec<f64>, labels: &mut Vec<u32>) -> Result<()> {
    let bytes = read_bytes(path)?;
    if bytes.is_empty() {
        return Err(format_error(path, FORMAT, "the file is empty"));
    }
    if bytes.len() % RECORD != 0 {
        return Err(format_error(
            path,
            FORMAT,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte records ({} full records and {} bytes over: \
                 truncated or not a CIFAR-10 binary batch)",
                bytes.len(),
                bytes.len() / RECORD,
                bytes.len() % RECORD
            ),
        ));
    }
    let records = bytes.len() / RECORD;
    crate::memory::check(
        || format!("{} records of CIFAR-10 as float64 pixels", labels.len() + records),
        crate::memory::bytes(&[pixels.len() + records * (RECORD - 1)], 8),
    )?;
    pixels.reserve(records * (RECORD - 1));
    for (k, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= CLASSES {
            return Err(format_error(
                path,
                FORMAT,
                format!("record {k} has label {}, expected 0..=9", rec[0]),
            ));
        }
        labels.push(u32::from(rec[0]));
        pixels.extend(rec[1..].iter().map(|&p| f64::from(p)));
    }
    Ok(())
}

/// Reads batch files from `dir` into a `[N, 3, 32, 32]` data set with 256 levels and labels.
fn read_files(dir: &Path, files: &[&str], name: &str) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        read_batch(&dir.join(f), &mut pixels, &mut labels)?;
    }
    let data = Tensor::new(&[labels.len(), CHANNELS, SIDE, SIDE], pixels)?;
    Dataset::new(name, data, Some(256), Some(labels))
}

/// The directory holding the batches: `dir` itself, or its `cifar-10-batches-bin` subdirectory
/// (where the official archive extracts to).
fn batches_dir(dir: &Path) -> PathBuf {
    let sub = dir.join("cifar-10-batches-bin");
    if !dir.join(TEST_FILE).is_file() && sub.join(TEST_FILE).is_file() {
        sub
    } else {
        dir.to_path_buf()
    }
}

/// Reads CIFAR-10 from a directory of binary batches (see the module docs; `dir` or
/// `dir/cifar-10-batches-bin`) as (train, test): `[50000, 3, 32, 32]` and `[10000, 3, 32, 32]` for
/// the official files, pixel values 0..=255 with `levels = Some(256)`, labels kept.
///
/// Memory: the training set takes 50000·3072·8 bytes ≈ 1.2 GB as f64.
///
/// # Errors
/// [`Error::Io`] for a missing or unreadable batch file (naming it); [`Error::Format`] for an
/// empty file, a length that is not a multiple of 3073 bytes (truncated), or a label above 9.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
    let dir = batches_dir(dir.as_ref());
    for f in TRAIN_FILES.iter().chain([&TEST_FILE]) {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(Error::Io {
                path: show(&p),
                message: "not found (expected the CIFAR-10 binary version: data_batch_1.bin .. data_batch_5.bin \
                          and test_batch.bin)"
                    .to_string(),
            });
        }
    }
    let train = read_files(&dir, &TRAIN_FILES, "cifar10")?;
    let test = read_files(&dir, &[TEST_FILE], "cifar10")?;
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` records whose label is `(first + k) % 10` and whose pixels are `(k + c) % 256` for
    /// channel c.
    fn records(n: usize, first: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for k in 0..n {
            v.push((first + k as u8) % 10);
            for c in 0..CHANNELS {
                v.extend(std::iter::repeat_n(((k + c) % 256) as u8, SIDE * SIDE));
            }
        }
        v
    }

    fn fake(dir: &Path) {
        for (i, f) in TRAIN_FILES.iter().enumerate() {
            std::fs::write(dir.join(f), records(2, i as u8)).unwrap();
        }
        std::fs::write(dir.join(TEST_FILE), records(3, 5)).unwrap();
    }

    fn reason(e: Error) -> String {
        match e {
            Error::Format { reason, .. } => reason,
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    #[test]
    fn reads_batches() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path());
        let (train, test) = read_dir(dir.path()).unwrap();
        assert_eq!(train.data.shape(), &[10, 3, 32, 32]);
        assert_eq!(test.data.shape(), &[3, 3, 32, 32]);
        assert_eq!(train.levels, Some(256));
        assert_eq!(train.labels, Some(vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5]));
        assert_eq!(test.labels, Some(vec![5, 6, 7]));
        // Record 1 of a file: red plane 1, green 2, blue 3.
        assert_eq!(train.data.get(&[1, 0, 31, 31]).unwrap(), 1.0);
        assert_eq!(train.data.get(&[1, 1, 0, 0]).unwrap(), 2.0);
        assert_eq!(train.data.get(&[1, 2, 5, 7]).unwrap(), 3.0);

        // The archive's own subdirectory is found.
        let outer = tempfile::tempdir().unwrap();
        let sub = outer.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&sub).unwrap();
        fake(&sub);
        assert_eq!(read_dir(outer.path()).unwrap().1.len(), 3);
    }

    #[test]
    fn rejects_truncated_and_bad_labels() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path());
        let p = dir.path().join("data_batch_3.bin");
        let good = std::fs::read(&p).unwrap();
        std::fs::write(&p, &good[..good.len() - 10]).unwrap();
        let r = reason(read_dir(dir.path()).unwrap_err());
        assert!(
            r.contains("not a whole number of 3073-byte records") && r.contains("1 full records"),
            "{r}"
        );

        std::fs::write(&p, []).unwrap();
        assert!(reason(read_dir(dir.path()).unwrap_err()).contains("empty"));

        let mut bad = good.clone();
        bad[RECORD] = 10;
        std::fs::write(&p, &bad).unwrap();
        let r = reason(read_dir(dir.path()).unwrap_err());
        assert!(r.contains("record 1 has label 10"), "{r}");

        std::fs::write(&p, &good).unwrap();
        std::fs::remove_file(dir.path().join(TEST_FILE)).unwrap();
        match read_dir(dir.path()) {
            Err(Error::Io { path, message }) => {
                assert!(
                    path.ends_with("test_batch.bin") && message.contains("not found"),
                    "{path}: {message}"
                );
            }
            other => panic!("expected Io, got {other:?}"),
        }
    }
}
