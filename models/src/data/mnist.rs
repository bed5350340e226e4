//! MNIST (and same-format sets such as Fashion-MNIST) from the original IDX files.
//!
//! IDX format (big-endian): a magic number `0x0000 0x08 ndim` (0x08 = unsigned bytes), then `ndim`
//! u32 dimensions, then the bytes. Images are `0x00000803` with dimensions `[N, H, W]`, labels
//! `0x00000801` with `[N]`. [`read_dir`] reads
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte` (also the `train-images.idx3-ubyte` spelling, and `.gz` versions),
//! checking magic numbers, dimensions, image/label counts and exact file lengths. A `.gz` file is
//! decompressed only up to the size its header declares (one byte more tells it is too long), so
//! a small file that decompresses to gigabytes is refused without reading them.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use exactflow_layers::Tensor;

use super::Dataset;
use super::io_util::{format_error, is_gz, read_bytes, show};

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

/// Reads `buf.len()` bytes, or fewer at the end of the stream; returns how many.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Parses an IDX stream of unsigned bytes with the dimensions of `magic`; returns (dims, data).
///
/// The header is read first, and then exactly the data bytes its dimensions declare (plus one, to
/// tell a file that is too long): a gzip stream that decompresses to more than its header
/// declares (a "gzip bomb") is refused after reading one byte past the declared size.
/// `gz` says whether `r` decompresses, so that a broken stream is reported as such.
pub(crate) fn parse_idx(path: &Path, r: &mut dyn Read, magic: u32, gz: bool) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |reason: String| format_error(path, FORMAT, reason);
    let io = |e: std::io::Error| {
        if gz {
            format_error(path, "gzip stream", e.to_string())
        } else {
            super::io_util::io_error(path, &e)
        }
    };
    let ndim = (magic & 0xff) as usize;
    let mut head = [0u8; 4];
    let got = read_full(r, &mut head).map_err(io)?;
    if got < 4 {
        return Err(bad(format!("{got} bytes: too short for a magic number")));
    }
    let found = u32::from_be_bytes(head);
    if found != magic {
        return Err(bad(format!("wrong magic number 0x{found:08x}, expected 0x{magic:08x}")));
    }
    let header_len = 4 + 4 * ndim;
    let mut dims_bytes = vec![0u8; 4 * ndim];
    let got = read_full(r, &mut dims_bytes).map_err(io)?;
    if got < dims_bytes.len() {
        return Err(bad(format!(
            "truncated header: {ndim} dimensions need {header_len} bytes, found {}",
            4 + got
        )));
    }
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
    // The bytes themselves, then the same as f64 pixels.
    crate::memory::check(
        || format!("{} with dimensions {dims:?}", show(path)),
        crate::memory::bytes(&[need], 9),
    )?;
    let mut data = Vec::new();
    r.take(need as u64 + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() != need {
        return Err(bad(if data.len() < need {
            format!(
                "truncated: dimensions {dims:?} need {need} data bytes, found {}",
                data.len()
            )
        } else {
            format!("too long: dimensions {dims:?} need {need} data bytes, and more follow")
        }));
    }
    Ok((dims, data))
}

/// Reads one IDX file, decompressing it when its name ends in `.gz`.
fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_bytes(path)?;
    if is_gz(path) {
        let mut dec = flate2::read::MultiGzDecoder::new(&bytes[..]);
        parse_idx(path, &mut dec, magic, true)
    } else {
        parse_idx(path, &mut &bytes[..], magic, false)
    }
}

/// Reads one images/labels pair as an `[N, 1, H, W]` data set with 256 levels and labels.
fn read_pair(dir: &Path, prefix: &str) -> Result<Dataset> {
    let images = find(dir, prefix, "images", 3)?;
    let labels = find(dir, prefix, "labels", 1)?;
    let (idims, pixels) = read_idx(&images, IMAGES_MAGIC)?;
    let (ldims, labs) = read_idx(&labels, LABELS_MAGIC)?;
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
    fn a_gzip_bomb_is_read_only_up_to_its_declared_size() {
        // A header declaring 3 images of 4x5 pixels, then 64 MiB of zeros: compressed, about
        // 64 KiB. Reading stops one byte past the 60 declared bytes.
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), true);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&idx(IMAGES_MAGIC, &[3, 4, 5], &[0; 60])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), bomb).unwrap();
        let r = reason(read_dir(dir.path()).unwrap_err());
        assert!(r.contains("too long") && r.contains("60 data bytes"), "{r}");
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
