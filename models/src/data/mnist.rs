//! MNIST (and same-format sets such as Fashion-MNIST) from the original IDX files.
//!
//! IDX format (big-endian): a magic number `0x0000 0x08 ndim` (0x08 = unsigned bytes), then `ndim`
//! u32 dimensions, then the bytes. Images are `0x00000803` with dimensions `[N, H, W]`, labels
//! `0x00000801` with `[N]`. [`read_dir`] reads
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte` (also the `train-images.idx3-ubyte` spelling, and `.gz` versions),
//! checking magic numbers, dimensions, image/label counts and exact file lengths.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use exactflow_layers::Tensor;

use super::Dataset;
use super::io_util::{format_error, read_maybe_gz, show};

const FORMAT: &str = "MNIST IDX file";
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first existing file among the usual spellings of `prefix-kind-idxN-ubyte` in `dir`.
fn find(dir: &Path, prefix: &str, kind: &str, ndim: u8) -> Result<PathBuf> {
    let names = [
        format!("{prefix}-{kind}-idx{ndim}-ubyte"),
        format!("{prefix}-{kind}.idx{ndim}-ubyte"),
    ];
    for name in &names {
        for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::Io {
        path: show(&dir.join(&names[0])),
        message: format!("not found (also looked for {0}.gz, {1} and {1}.gz)", names[0], names[1]),
    })
}

/// Parses an IDX file of unsigned bytes with `ndim` dimensions; returns (dims, data).
pub(crate) fn parse_idx(path: &Path, bytes: &[u8], magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |reason: String| format_error(path, FORMAT, reason);
    let ndim = (magic & 0xff) as usize;
    let head = bytes
        .get(..4)
        .ok_or_else(|| bad(format!("{} bytes: too short for a magic number", bytes.len())))?;
    let found = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if found != magic {
        return Err(bad(format!("wrong magic number 0x{found:08x}, expected 0x{magic:08x}")));
    }
    let header_len = 4 + 4 * ndim;
    let dims_bytes = bytes.get(4..header_len).ok_or_else(|| {
        bad(format!(
            "truncated header: {ndim} dimensions need {header_len} bytes, found {}",
            bytes.len()
        ))
    })?;
    let dims: Vec<usize> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if dims[1..].contains(&0) {
        return Err(bad(format!("dimensions {dims:?} contain a zero")));
    }
    let need = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} are too large")))?;
    let data = &bytes[header_len..];
    if data.len() != need {
        let what = if data.len() < need { "truncated" } else { "too long" };
        return Err(bad(format!(
            "{what}: dimensions {dims:?} need {need} data bytes, found {}",
            data.len()
        )));
    }
    Ok((dims, data.to_vec()))
}

/// Reads one images/labels pair as an `[N, 1, H, W]` data set with 256 levels and labels.
fn read_pair(dir: &Path, prefix: &str) -> Result<Dataset> {
    let images = find(dir, prefix, "images", 3)?;
    let labels = find(dir, prefix, "labels", 1)?;
    let (idims, pixels) = parse_idx(&images, &read_maybe_gz(&images)?, IMAGES_MAGIC)?;
    let (ldims, labs) = parse_idx(&labels, &read_maybe_gz(&labels)?, LABELS_MAGIC)?;
    if idims[0] != ldims[0] {
        return Err(format_error(
            &labels,
            FORMAT,
            format!("{} labels for {} images in {}", ldims[0], idims[0], show(&images)),
        ));
    }
    if idims[0] == 0 {
        return Err(format_error(&images, FORMAT, "no images"));
    }
    let data = Tensor::new(
        &[idims[0], 1, idims[1], idims[2]],
        pixels.iter().map(|&p| f64::from(p)).collect(),
    )?;
    Dataset::new(
        "mnist",
        data,
        Some(256),
        Some(labs.iter().map(|&l| u32::from(l)).collect()),
    )
}

/// Reads MNIST from a directory of IDX files (see the module docs) as (train, test):
/// `[60000, 1, 28, 28]` and `[10000, 1, 28, 28]` for MNIST itself, pixel values 0..=255 with
/// `levels = Some(256)`, labels kept. Any image size is accepted, as long as train and test agree.
///
/// # Errors
/// [`Error::Io`] for a missing or unreadable file (naming the expected file name);
/// [`Error::Format`] for a wrong magic number, a truncated or over-long file, a zero dimension,
/// mismatched image and label counts, train and test images of different sizes, or a corrupt gzip
/// stream.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    let train = read_pair(dir, "train")?;
    let test = read_pair(dir, "t10k")?;
    if train.sample_shape() != test.sample_shape() {
        return Err(format_error(
            dir,
            FORMAT,
            format!(
                "training images are {:?} but test images are {:?}",
                train.sample_shape(),
                test.sample_shape()
            ),
        ));
    }
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// A tiny MNIST-like directory: 3 training and 2 test images of 4x5 pixels.
    fn fake(dir: &Path, gzip: bool) {
        let files = [
            (
                "train-images-idx3-ubyte",
                idx(IMAGES_MAGIC, &[3, 4, 5], &(0..60).collect::<Vec<u8>>()),
            ),
            ("train-labels-idx1-ubyte", idx(LABELS_MAGIC, &[3], &[7, 0, 9])),
            ("t10k-images-idx3-ubyte", idx(IMAGES_MAGIC, &[2, 4, 5], &[255; 40])),
            ("t10k-labels-idx1-ubyte", idx(LABELS_MAGIC, &[2], &[1, 2])),
        ];
        for (name, bytes) in files {
            if gzip {
                std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    fn reason(e: Error) -> String {
        match e {
            Error::Format { reason, .. } => reason,
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    #[test]
    fn reads_plain_and_gz() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            fake(dir.path(), gzip);
            let (train, test) = read_dir(dir.path()).unwrap();
            assert_eq!(train.data.shape(), &[3, 1, 4, 5]);
            assert_eq!(test.data.shape(), &[2, 1, 4, 5]);
            assert_eq!(train.data.get(&[1, 0, 0, 0]).unwrap(), 20.0);
            assert_eq!(train.data.get(&[2, 0, 3, 4]).unwrap(), 59.0);
            assert_eq!(train.labels, Some(vec![7, 0, 9]));
            assert_eq!(test.labels, Some(vec![1, 2]));
            assert_eq!(train.levels, Some(256));
            assert!(test.data.as_slice().iter().all(|&v| v == 255.0));
        }
    }

    #[test]
    fn rejects_malformed_files() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "train-images-idx3-ubyte",
                idx(LABELS_MAGIC, &[3, 4, 5], &[0; 60]),
                "magic",
            ),
            (
                "train-images-idx3-ubyte",
                idx(0x0000_0d03, &[3, 4, 5], &[0; 60]),
                "magic",
            ),
            (
                "train-images-idx3-ubyte",
                idx(IMAGES_MAGIC, &[3, 4, 5], &[0; 59]),
                "truncated",
            ),
            (
                "train-images-idx3-ubyte",
                idx(IMAGES_MAGIC, &[3, 4, 5], &[0; 61]),
                "too long",
            ),
            (
                "train-images-idx3-ubyte",
                idx(IMAGES_MAGIC, &[3, 4], &[]),
                "truncated header",
            ),
            ("train-images-idx3-ubyte", idx(IMAGES_MAGIC, &[3, 0, 5], &[]), "zero"),
            ("train-images-idx3-ubyte", vec![0, 0], "too short"),
            (
                "train-labels-idx1-ubyte",
                idx(LABELS_MAGIC, &[4], &[0; 4]),
                "4 labels for 3 images",
            ),
            (
                "t10k-images-idx3-ubyte",
                idx(IMAGES_MAGIC, &[2, 5, 4], &[0; 40]),
                "are [1, 4, 5] but test images are [1, 5, 4]",
            ),
        ];
        for (name, bytes, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            fake(dir.path(), false);
            std::fs::write(dir.path().join(name), bytes).unwrap();
            let r = reason(read_dir(dir.path()).unwrap_err());
            assert!(r.contains(want), "{name}: {r}");
        }
        // A corrupt gzip stream.
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), true);
        let p = dir.path().join("t10k-labels-idx1-ubyte.gz");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            read_dir(dir.path()),
            Err(Error::Format {
                format: "gzip stream",
                ..
            })
        ));
    }

    #[test]
    fn missing_file_names_it() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), false);
        std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        match read_dir(dir.path()) {
            Err(Error::Io { path, message }) => {
                assert!(path.ends_with("t10k-labels-idx1-ubyte"), "{path}");
                assert!(message.contains("not found"), "{message}");
            }
            other => panic!("expected Io, got {other:?}"),
        }
        // The dotted spelling is accepted.
        std::fs::write(
            dir.path().join("t10k-labels.idx1-ubyte"),
            idx(LABELS_MAGIC, &[2], &[1, 2]),
        )
        .unwrap();
        assert!(read_dir(dir.path()).is_ok());
    }
}
