//! [`read_matrix`]: one 2-D matrix from a `.npy` or `.csv` file (for log-determinant commands).

use std::path::Path;

use crate::error::Result;

use super::io_util::format_error;

/// The element type a matrix was stored with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceDtype {
    /// `.npy` float32: each value is exact in f64, but the matrix carries only ~7 significant digits.
    F32,
    /// `.npy` float64.
    F64,
    /// `.npy` uint8.
    U8,
    /// `.npy` integer type other than uint8 (int8..int64, uint16..uint64).
    Int,
    /// Decimal text (CSV), parsed to the nearest f64.
    Csv,
}

/// Where a matrix read by [`read_matrix`] came from: its stored element type, and whether every
/// value is an integer (so that, e.g., a determinant is an integer too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixSource {
    /// The element type in the file.
    pub dtype: SourceDtype,
    /// Whether every value is an integer (`v == v.trunc()`).
    pub all_integers: bool,
    /// Why the values are not exactly the integers of the file, when they are not: a CSV entry
    /// written as an integer that float64 rounds (beyond 2^53), naming its line and column. An
    /// exact determinant of the values would then not be that of the file's matrix.
    pub inexact: Option<String>,
}

impl MatrixSource {
    /// Whether the file stored float32 values.
    pub fn is_f32(&self) -> bool {
        self.dtype == SourceDtype::F32
    }
}

const FORMAT: &str = "2-D matrix (.npy or .csv)";

/// Reads one 2-D matrix from a `.npy` file (float32, float64 or an integer type, C or Fortran
/// order) or a `.csv` file (numbers, optional header; see [`super::csv`]), chosen by the extension.
/// Returns the row-major values, rows, columns and where they came from.
///
/// # Errors
/// [`crate::Error::Io`] when the file cannot be read;
/// [`crate::Error::Format`] for another extension, a `.npy` that is not 2-D or is
/// empty, NaN or infinities, and every malformation the `.npy` and CSV readers detect.
pub fn read_matrix(path: impl AsRef<Path>) -> Result<(Vec<f64>, usize, usize, MatrixSource)> {
    let path = path.as_ref();
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    let mut inexact = None;
    let (values, rows, cols, dtype) = match ext.as_deref() {
        Some("npy") => {
            let a = super::npy::read_array(path)?;
            if a.shape.len() != 2 {
                return Err(format_error(
                    path,
                    FORMAT,
                    format!("expected a 2-D array, found shape {:?}", a.shape),
                ));
            }
            if a.values.is_empty() {
                return Err(format_error(
                    path,
                    FORMAT,
                    format!("the matrix of shape {:?} is empty", a.shape),
                ));
            }
            (a.values, a.shape[0], a.shape[1], a.dtype)
        }
        Some("csv") => {
            let t = super::csv::read_table(path)?;
            inexact = t.inexact;
            (t.values, t.rows, t.cols, SourceDtype::Csv)
        }
        _ => {
            return Err(format_error(
                path,
                FORMAT,
                "unknown extension: expected a file ending in .npy or .csv",
            ));
        }
    };
    let all_integers = values.iter().all(|v| *v == v.trunc());
    Ok((
        values,
        rows,
        cols,
        MatrixSource {
            dtype,
            all_integers,
            inexact,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy::tests::npy_bytes;
    use crate::error::Error;

    #[test]
    fn reads_npy_and_csv_matrices() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(&p, "a,b,c\n2,1,0\n1,3,4\n").unwrap();
        let (v, r, c, s) = read_matrix(&p).unwrap();
        assert_eq!((r, c), (2, 3));
        assert_eq!(v, vec![2.0, 1.0, 0.0, 1.0, 3.0, 4.0]);
        assert_eq!(
            s,
            MatrixSource {
                dtype: SourceDtype::Csv,
                all_integers: true,
                inexact: None
            }
        );

        let p = dir.path().join("m.NPY");
        let f32s: Vec<u8> = [1.5f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&p, npy_bytes("<f4", false, &[1, 2], &f32s)).unwrap();
        let (v, r, c, s) = read_matrix(&p).unwrap();
        assert_eq!((v, r, c), (vec![1.5, 2.0], 1, 2));
        assert!(s.is_f32() && !s.all_integers);

        let p = dir.path().join("i.npy");
        let i64s: Vec<u8> = [2i64, 1, 1, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&p, npy_bytes("<i8", false, &[2, 2], &i64s)).unwrap();
        let (_, _, _, s) = read_matrix(&p).unwrap();
        assert_eq!(
            s,
            MatrixSource {
                dtype: SourceDtype::Int,
                all_integers: true,
                inexact: None
            }
        );
    }

    #[test]
    fn rejects_other_shapes_and_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        std::fs::write(&p, npy_bytes("<f8", false, &[2], &[0; 16])).unwrap();
        assert!(matches!(read_matrix(&p), Err(Error::Format { reason, .. }) if reason.contains("2-D")));
        let p = dir.path().join("e.npy");
        std::fs::write(&p, npy_bytes("<f8", false, &[0, 2], &[])).unwrap();
        assert!(matches!(read_matrix(&p), Err(Error::Format { reason, .. }) if reason.contains("empty")));
        let p = dir.path().join("m.txt");
        std::fs::write(&p, "1,2\n").unwrap();
        assert!(matches!(read_matrix(&p), Err(Error::Format { reason, .. }) if reason.contains(".npy or .csv")));
        let p = dir.path().join("nan.csv");
        std::fs::write(&p, "1,2\nnan,4\n").unwrap();
        assert!(matches!(read_matrix(&p), Err(Error::Format { reason, .. }) if reason.contains("line 2, column 1")));
    }
}
