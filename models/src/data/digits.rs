//! The 8x8 handwritten digits (UCI "Optical Recognition of Handwritten Digits", the 1797 images
//! scikit-learn ships as `load_digits`), embedded in the crate.
//!
//! Source and licence: E. Alpaydin, C. Kaynak (1998), UCI Machine Learning Repository, CC BY 4.0;
//! cite the UCI entry when reusing the data. The embedded file and its provenance are described in
//! `models/data/README.md` (sha256 of the uncompressed CSV
//! `6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8`).
//!
//! Each image has 64 pixels with integer values in `0..=16` (so `levels = Some(17)`) and a label
//! `0..=9`. The split is fixed: 0-based row `i` is a test image when `i % 5 == 4` (359 images),
//! a training image otherwise (1438), the convention of the peer baselines.

use std::path::Path;

use crate::error::Result;
use exactflow_layers::Tensor;

use super::Dataset;
use super::io_util::{format_error, gunzip};

/// The embedded gzip-compressed CSV: 1797 rows of 64 pixel values and a label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Number of images.
pub const N_IMAGES: usize = 1797;
/// Number of discrete pixel levels (values 0..=16).
pub const LEVELS: u32 = 17;
/// Image side (8x8 pixels).
pub const SIDE: usize = 8;
/// Images in the training split (rows with `i % 5 != 4`).
pub const N_TRAIN: usize = 1438;
/// Images in the test split (rows with `i % 5 == 4`).
pub const N_TEST: usize = 359;

const SOURCE: &str = "<embedded digits.csv.gz>";
const FORMAT: &str = "digits CSV";

/// Whether 0-based row `i` belongs to the test split.
pub fn is_test_row(i: usize) -> bool {
    i % 5 == 4
}

/// All 1797 images (`[1797, 64]`, values 0..=16) and labels, in file order.
///
/// # Errors
/// [`crate::Error::Format`] if the embedded file is corrupt (it is checked by the
/// tests, so this signals a broken build).
pub fn load_all() -> Result<(Vec<f64>, Vec<u32>)> {
    let path = Path::new(SOURCE);
    let csv = gunzip(path, DIGITS_CSV_GZ)?;
    let text = std::str::from_utf8(&csv).map_err(|e| format_error(path, FORMAT, e.to_string()))?;
    let table = super::csv::parse(path, text)?;
    let width = SIDE * SIDE + 1;
    if table.rows != N_IMAGES || table.cols != width || table.header.is_some() {
        return Err(format_error(
            path,
            FORMAT,
            format!(
                "expected {N_IMAGES} rows of {width} columns, found {} of {}",
                table.rows, table.cols
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(N_IMAGES * SIDE * SIDE);
    let mut labels = Vec::with_capacity(N_IMAGES);
    for (i, row) in table.values.chunks_exact(width).enumerate() {
        let (px, label) = row.split_at(SIDE * SIDE);
        if let Some(v) = px
            .iter()
            .find(|&&v| !(v == v.trunc() && (0.0..f64::from(LEVELS)).contains(&v)))
        {
            return Err(format_error(
                path,
                FORMAT,
                format!("row {}: pixel value {v} is not in 0..=16", i + 1),
            ));
        }
        let l = label[0];
        if !(l == l.trunc() && (0.0..10.0).contains(&l)) {
            return Err(format_error(
                path,
                FORMAT,
                format!("row {}: label {l} is not in 0..=9", i + 1),
            ));
        }
        pixels.extend_from_slice(px);
        labels.push(l as u32);
    }
    Ok((pixels, labels))
}

/// The digits as (train, test) data sets with `levels = Some(17)` and labels: `[N, 64]` vectors
/// (named `digits`) or, with `image`, `[N, 1, 8, 8]` images (named `digits-image`). Row `i` of the
/// file is a test image when `i % 5 == 4`: 1438 training and 359 test images.
///
/// # Errors
/// As [`load_all`].
pub fn load(image: bool) -> Result<(Dataset, Dataset)> {
    let (pixels, labels) = load_all()?;
    let name = if image { "digits-image" } else { "digits" };
    let d = SIDE * SIDE;
    let make = |test: bool| -> Result<Dataset> {
        let rows: Vec<usize> = (0..N_IMAGES).filter(|&i| is_test_row(i) == test).collect();
        let data: Vec<f64> = rows
            .iter()
            .flat_map(|&i| pixels[i * d..(i + 1) * d].iter().copied())
            .collect();
        let shape: Vec<usize> = if image {
            vec![rows.len(), 1, SIDE, SIDE]
        } else {
            vec![rows.len(), d]
        };
        let data = Tensor::new(&shape, data)?;
        Dataset::new(
            name,
            data,
            Some(LEVELS),
            Some(rows.iter().map(|&i| labels[i]).collect()),
        )
    };
    Ok((make(false)?, make(true)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a (64-bit) of the uncompressed CSV; its sha256 is pinned in `models/data/README.md`
    /// (`6ebb3d2f...51b8`), but no sha2 crate is among the dependencies.
    const CSV_FNV1A: u64 = 0x0b6d_b7d4_442b_bc5d;
    const CSV_LEN: usize = 264_712;

    #[test]
    fn embedded_file_is_the_documented_one() {
        let csv = gunzip(Path::new(SOURCE), DIGITS_CSV_GZ).unwrap();
        assert_eq!(csv.len(), CSV_LEN);
        let h = csv.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        assert_eq!(h, CSV_FNV1A);
        assert_eq!(csv.iter().filter(|&&b| b == b'\n').count(), N_IMAGES);
    }

    #[test]
    fn counts_and_split() {
        let (_, labels) = load_all().unwrap();
        let mut counts = [0usize; 10];
        for &l in &labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);

        let (train, test) = load(false).unwrap();
        assert_eq!(train.data.shape(), &[N_TRAIN, 64]);
        assert_eq!(test.data.shape(), &[N_TEST, 64]);
        assert_eq!((train.levels, test.levels), (Some(17), Some(17)));
        assert_eq!(train.name, "digits");
        assert_eq!(train.labels.as_ref().unwrap().len(), N_TRAIN);
        assert_eq!(test.labels.as_ref().unwrap().len(), N_TEST);
        let max = train.data.as_slice().iter().copied().fold(0.0, f64::max);
        assert_eq!(max, 16.0);
        // Row 0 of the file (a zero) is the first training image; row 4 the first test image.
        assert_eq!(
            &train.data.sample(0).unwrap()[..8],
            &[0.0, 0.0, 5.0, 13.0, 9.0, 1.0, 0.0, 0.0]
        );
        assert_eq!(train.labels.as_ref().unwrap()[..4], [0, 1, 2, 3]);
        assert_eq!(test.labels.as_ref().unwrap()[0], 4);

        let (ti, si) = load(true).unwrap();
        assert_eq!(ti.data.shape(), &[N_TRAIN, 1, 8, 8]);
        assert_eq!(si.data.shape(), &[N_TEST, 1, 8, 8]);
        assert_eq!(ti.data.as_slice(), train.data.as_slice());
        assert_eq!(ti.name, "digits-image");
        assert_eq!(ti.labels, train.labels);
    }
}
