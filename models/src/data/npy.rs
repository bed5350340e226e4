//! NumPy `.npy` arrays: `[N, D]` or `[N, C, H, W]` of f32, f64, u8 (or another integer type).
//!
//! [`read`] parses the format itself (magic, version 1/2/3 header, the header's Python dict
//! literal, by numpy's rules: exactly the keys `descr`, `fortran_order` and `shape`, each once,
//! and nothing but padding after the dict), checks the dtype, the shape and the exact data length
//! before allocating anything for the values, and converts C- or
//! Fortran-ordered data of either endianness to a row-major `Tensor<f64>`. `u8` data are taken as
//! discrete with 256 levels (pixels); other integer types (`int64` is what `np.save` gives for an
//! integer array) as continuous values, exact up to 2^53. NaN and infinities are rejected.
//! [`write_f64`] writes a little-endian f64 C-order array (version 1.0 header) through `npyz`.

use std::path::Path;

use crate::error::Result;
use exactflow_layers::Tensor;

use super::io_util::{format_error, read_bytes, stem};
use super::{Dataset, SourceDtype};

const FORMAT: &str = ".npy array";
const MAGIC: &[u8] = b"\x93NUMPY";

/// An array read from a `.npy` file, converted to f64 in C order.
#[derive(Debug)]
pub struct Array {
    /// The array's shape (any rank).
    pub shape: Vec<usize>,
    /// The values, converted to f64, in C (row-major) order.
    pub values: Vec<f64>,
    /// The element type stored in the file.
    pub dtype: SourceDtype,
}

/// Element kinds we read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Float,
    Int,
    Uint,
}

/// A header value in the (restricted) Python literal syntax of `.npy` headers.
#[derive(Debug)]
enum Lit {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// A minimal parser for the header's dict literal: `{'descr': '<f8', 'fortran_order': False,
/// 'shape': (3, 4), }`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "header: expected '{}' at byte {}, found '{}'",
                c as char, self.pos, x as char
            )),
            None => Err(format!("header: expected '{}', found the end of the header", c as char)),
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("header: expected a quoted string at byte {}", self.pos)),
        };
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos] != q {
            if self.s[self.pos] == b'\\' {
                return Err("header: escapes in strings are not supported".to_string());
            }
            self.pos += 1;
        }
        if self.pos >= self.s.len() {
            return Err("header: unterminated string".to_string());
        }
        let out = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(out)
    }

    fn int(&mut self) -> std::result::Result<u64, String> {
        self.ws();
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        if digits.is_empty() {
            return Err(format!(
                "header: expected a non-negative integer in 'shape' at byte {start}"
            ));
        }
        // Python 2 long literals end in L.
        if self.s.get(self.pos) == Some(&b'L') {
            self.pos += 1;
        }
        digits
            .parse()
            .map_err(|_| format!("header: shape entry {digits} is too large"))
    }

    fn value(&mut self) -> std::result::Result<Lit, String> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Lit::Str(self.string()?)),
            Some(b'(') => {
                self.pos += 1;
                let mut v = Vec::new();
                let mut trailing_comma = false;
                loop {
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        break;
                    }
                    v.push(self.int()?);
                    trailing_comma = false;
                    match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            trailing_comma = true;
                        }
                        Some(b')') => {}
                        _ => return Err("header: malformed 'shape' tuple".to_string()),
                    }
                }
                // Python reads `(3)` as the integer 3: a one-element tuple is `(3,)`.
                if v.len() == 1 && !trailing_comma {
                    return Err(format!(
                        "header: ({}) is an integer, not a tuple (a one-element shape is written ({},))",
                        v[0], v[0]
                    ));
                }
                Ok(Lit::Tuple(v))
            }
            Some(b'[') => Err("header: structured (record) dtypes are not supported".to_string()),
            _ => {
                let rest = &self.s[self.pos..];
                if rest.starts_with(b"True") {
                    self.pos += 4;
                    Ok(Lit::Bool(true))
                } else if rest.starts_with(b"False") {
                    self.pos += 5;
                    Ok(Lit::Bool(false))
                } else {
                    Err(format!("header: unexpected value at byte {}", self.pos))
                }
            }
        }
    }

    fn dict(&mut self) -> std::result::Result<Vec<(String, Lit)>, String> {
        self.expect(b'{')?;
        let mut out = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = self.string()?;
            // Python would keep the last of two equal keys; numpy writes each key once, so a
            // repeated one means a broken or crafted header.
            if out.iter().any(|(k, _)| *k == key) {
                return Err(format!("header: the key '{key}' appears twice"));
            }
            self.expect(b':')?;
            let v = self.value()?;
            out.push((key, v));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err("header: expected ',' or '}' after a dict entry".to_string()),
            }
        }
        self.ws();
        if self.pos < self.s.len() {
            return Err(format!(
                "header: unexpected text after the dictionary at byte {} (only padding may follow)",
                self.pos
            ));
        }
        Ok(out)
    }
}

/// The parsed header: element kind, bytes per element, big-endian flag, Fortran flag, shape.
struct Header {
    kind: Kind,
    size: usize,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
    descr: String,
}

fn parse_descr(descr: &str) -> std::result::Result<(Kind, usize, bool), String> {
    let unsupported =
        || format!("dtype '{descr}' is not supported (expected float32, float64, uint8 or another integer type)");
    let b = descr.as_bytes();
    if b.len() < 3 {
        return Err(unsupported());
    }
    let big = match b[0] {
        b'<' | b'|' | b'=' => false,
        b'>' => true,
        _ => return Err(unsupported()),
    };
    let size: usize = descr.get(2..).and_then(|t| t.parse().ok()).ok_or_else(unsupported)?;
    let kind = match (b[1], size) {
        (b'f', 4 | 8) => Kind::Float,
        (b'i', 1 | 2 | 4 | 8) => Kind::Int,
        (b'u', 1 | 2 | 4 | 8) => Kind::Uint,
        _ => return Err(unsupported()),
    };
    Ok((kind, size, big))
}

/// Splits a `.npy` file into its parsed header and data bytes.
fn parse_header<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Header, &'a [u8])> {
    let bad = |reason: String| format_error(path, FORMAT, reason);
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(
            "wrong magic number (expected the file to start with \\x93NUMPY)".to_string()
        ));
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => return Err(bad("truncated before the version".to_string())),
    };
    let (len_bytes, start) = match major {
        1 => (2usize, 10usize),
        2 | 3 => (4, 12),
        _ => return Err(bad(format!("unsupported format version {major}.{minor}"))),
    };
    let hlen = match bytes.get(8..8 + len_bytes) {
        Some(b) if len_bytes == 2 => usize::from(u16::from_le_bytes([b[0], b[1]])),
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
        None => return Err(bad("truncated before the header length".to_string())),
    };
    let header_bytes = bytes.get(start..start.saturating_add(hlen)).ok_or_else(|| {
        bad(format!(
            "truncated header: {hlen} bytes announced, {} present",
            bytes.len() - start
        ))
    })?;
    let dict = Parser {
        s: header_bytes,
        pos: 0,
    }
    .dict()
    .map_err(bad)?;
    if let Some((k, _)) = dict
        .iter()
        .find(|(k, _)| !["descr", "fortran_order", "shape"].contains(&k.as_str()))
    {
        return Err(bad(format!(
            "header: unknown key '{k}' (a .npy header has exactly 'descr', 'fortran_order' and 'shape')"
        )));
    }
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| bad(format!("header: missing key '{key}'")))
    };
    let descr = match get("descr")? {
        Lit::Str(s) => s.clone(),
        _ => return Err(bad("header: 'descr' is not a string".to_string())),
    };
    let fortran = match get("fortran_order")? {
        Lit::Bool(b) => *b,
        _ => return Err(bad("header: 'fortran_order' is not True or False".to_string())),
    };
    let shape: Vec<usize> = match get("shape")? {
        Lit::Tuple(v) => v
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("header: shape entry {d} is too large"))))
            .collect::<Result<_>>()?,
        _ => return Err(bad("header: 'shape' is not a tuple".to_string())),
    };
    let (kind, size, big_endian) = parse_descr(&descr).map_err(bad)?;
    Ok((
        Header {
            kind,
            size,
            big_endian,
            fortran,
            shape,
            descr,
        },
        &bytes[start + hlen..],
    ))
}

/// Decodes one element to f64 (`None` for an integer not exactly representable).
fn decode(kind: Kind, big: bool, c: &[u8]) -> Option<f64> {
    let mut b = [0u8; 8];
    let n = c.len();
    if big {
        b[..n].copy_from_slice(c);
        b[..n].reverse();
    } else {
        b[..n].copy_from_slice(c);
    }
    const EXACT: u64 = 1 << 53;
    Some(match (kind, n) {
        (Kind::Float, 4) => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        (Kind::Float, _) => f64::from_le_bytes(b),
        (Kind::Uint, _) => {
            let v = u64::from_le_bytes(b);
            if v > EXACT {
                return None;
            }
            v as f64
        }
        (Kind::Int, _) => {
            // Sign-extend from n bytes.
            let shift = 64 - 8 * n as u32;
            let v = (i64::from_le_bytes(b) << shift) >> shift;
            if v.unsigned_abs() > EXACT {
                return None;
            }
            v as f64
        }
    })
}

/// Reorders Fortran-ordered (first axis fastest) values into C order.
fn fortran_to_c(v: &[f64], shape: &[usize]) -> Vec<f64> {
    let r = shape.len();
    let mut fstride = vec![1usize; r];
    for j in 1..r {
        fstride[j] = fstride[j - 1] * shape[j - 1];
    }
    let mut idx = vec![0usize; r];
    let mut out = Vec::with_capacity(v.len());
    for _ in 0..v.len() {
        out.push(v[idx.iter().zip(&fstride).map(|(i, s)| i * s).sum::<usize>()]);
        for j in (0..r).rev() {
            idx[j] += 1;
            if idx[j] < shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    out
}

/// The multi-index of C-order flat index `k`.
fn unravel(mut k: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (j, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[j] = k % d;
            k /= d;
        }
    }
    idx
}

/// Reads any `.npy` array (of any rank) of a supported dtype as f64 in C order; rejects
/// non-finite values.
///
/// # Errors
/// [`crate::Error::Io`] when the file cannot be read;
/// [`crate::Error::Format`] for every malformation (magic, header, dtype, length).
pub fn read_array(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    parse_array(path, &bytes)
}

/// As [`read_array`], from bytes already in memory.
pub(crate) fn parse_array(path: &Path, bytes: &[u8]) -> Result<Array> {
    let (h, data) = parse_header(path, bytes)?;
    let bad = |reason: String| format_error(path, FORMAT, reason);
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {:?} has too many elements", h.shape)))?;
    let need = count
        .checked_mul(h.size)
        .ok_or_else(|| bad(format!("shape {:?} has too many bytes", h.shape)))?;
    if data.len() < need {
        return Err(bad(format!(
            "truncated data: shape {:?} of '{}' needs {need} bytes, the file has {}",
            h.shape,
            h.descr,
            data.len()
        )));
    }
    if data.len() > need {
        return Err(bad(format!(
            "{} unexpected bytes after the data of shape {:?} of '{}'",
            data.len() - need,
            h.shape,
            h.descr
        )));
    }
    // Twice the values for Fortran order's reordering.
    crate::memory::check(
        || format!("{} of shape {:?} as float64", path.display(), h.shape),
        crate::memory::bytes(&[count, if h.fortran { 2 } else { 1 }], 8),
    )?;
    let mut values = Vec::with_capacity(count);
    for (k, c) in data.chunks_exact(h.size).enumerate() {
        let v = decode(h.kind, h.big_endian, c).ok_or_else(|| {
            bad(format!(
                "integer at file position {k} is too large to be represented exactly as f64 (beyond 2^53)"
            ))
        })?;
        values.push(v);
    }
    if h.fortran && h.shape.len() > 1 {
        values = fortran_to_c(&values, &h.shape);
    }
    if let Some(k) = values.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!(
            "non-finite value {} at index {:?} (NaN and infinities are not allowed)",
            values[k],
            unravel(k, &h.shape)
        )));
    }
    let dtype = match (h.kind, h.size) {
        (Kind::Float, 4) => SourceDtype::F32,
        (Kind::Float, _) => SourceDtype::F64,
        (Kind::Uint, 1) => SourceDtype::U8,
        _ => SourceDtype::Int,
    };
    Ok(Array {
        shape: h.shape,
        values,
        dtype,
    })
}

/// Reads a `.npy` file as a data set named after the file stem: a 2-D `[N, D]` or 4-D
/// `[N, C, H, W]` array of float32, float64 (continuous, `levels = None`), uint8 (discrete,
/// `levels = Some(256)`) or another integer type (continuous); `labels` is `None`.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the file cannot be read; [`Error::Format`](crate::Error::Format) for a wrong magic number, an
/// unsupported version or dtype, a malformed or truncated header, a rank other than 2 or 4, an
/// empty array, data shorter or longer than the shape needs, or NaN/infinity (naming its index).
pub fn read(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let a = read_array(path)?;
    if a.shape.len() != 2 && a.shape.len() != 4 {
        return Err(format_error(
            path,
            FORMAT,
            format!(
                "expected a 2-D [N, D] or 4-D [N, C, H, W] array, found shape {:?}",
                a.shape
            ),
        ));
    }
    if a.values.is_empty() {
        return Err(format_error(
            path,
            FORMAT,
            format!("the array of shape {:?} is empty", a.shape),
        ));
    }
    let levels = (a.dtype == SourceDtype::U8).then_some(256);
    let data = Tensor::new(&a.shape, a.values)?;
    Dataset::new(stem(path), data, levels, None)
}

/// Writes `x` (any shape) as a little-endian float64 C-order `.npy` file that numpy loads with
/// `np.load`; the file is written atomically (temporary file and rename).
///
/// # Errors
/// [`Error::NonFinite`](exactflow_kernels::Error::NonFinite) when `x` holds NaN or an infinity ([`read`] would reject the file);
/// [`Error::Io`](crate::Error::Io) when the file cannot be written.
pub fn write_f64(path: impl AsRef<Path>, x: &Tensor<f64>) -> Result<()> {
    let path = path.as_ref();
    x.check_finite("npy::write_f64", "tensor")?;
    match x.shape().split_first() {
        Some((&n, sample)) => write_f64_chunks(path, n, sample, std::iter::once(Ok(x.clone()))),
        // A scalar: one value under a header of shape ().
        None => {
            let one = x.clone().reshape(&[1])?;
            stream_chunks(
                path,
                FORMAT,
                1,
                &[],
                std::iter::once(Ok(one)),
                &f64_header(&[]),
                |x, out| out.extend(x.as_slice().iter().flat_map(|v| v.to_le_bytes())),
            )
        }
    }
}

/// The version 1.0 `.npy` header of a little-endian float64 C-order array of `shape`, padded
/// with spaces and a newline to a multiple of 64 bytes as numpy writes it.
fn f64_header(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {dims}, }}");
    while !(MAGIC.len() + 4 + dict.len() + 1).is_multiple_of(64) {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    // invariant: a dict of at most 32 dimensions is far below 65535 bytes.
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes a float64 C-order `.npy` array of shape `[n, sample...]` whose rows arrive in chunks
/// (`[k, sample...]` tensors, in order, `n` rows in all), so that an array larger than memory can
/// be written: the header (whose shape is known in advance) first, then each chunk as it comes.
/// The file is written atomically; on any error nothing replaces an existing file.
///
/// # Errors
/// The first error of `chunks`; [`crate::Error::Format`] naming `path` when a chunk has another
/// sample shape or the chunks do not add up to `n` rows;
/// [`exactflow_kernels::Error::NonFinite`] for NaN or an infinity; [`crate::Error::Io`].
pub fn write_f64_chunks(
    path: impl AsRef<Path>,
    n: usize,
    sample: &[usize],
    chunks: impl Iterator<Item = Result<Tensor<f64>>>,
) -> Result<()> {
    let path = path.as_ref();
    let mut shape = vec![n];
    shape.extend_from_slice(sample);
    let header = f64_header(&shape);
    stream_chunks(path, FORMAT, n, sample, chunks, &header, |x, out| {
        for v in x.as_slice() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    })
}

/// Streams `chunks` into `path` atomically: `prefix`, then each checked chunk as `encode` writes
/// it (shared by the `.npy` and CSV chunk writers).
pub(crate) fn stream_chunks(
    path: &Path,
    format: &'static str,
    n: usize,
    sample: &[usize],
    mut chunks: impl Iterator<Item = Result<Tensor<f64>>>,
    prefix: &[u8],
    encode: impl Fn(&Tensor<f64>, &mut Vec<u8>),
) -> Result<()> {
    let mut failure = None;
    let mut rows = 0usize;
    let written = crate::atomic_write::write_atomic_with(path, |w| {
        w.write_all(prefix)?;
        let mut buf = Vec::new();
        let mut fail = |e: crate::Error| {
            let msg = e.to_string();
            failure = Some(e);
            std::io::Error::other(msg)
        };
        for chunk in chunks.by_ref() {
            let x = chunk.map_err(&mut fail)?;
            if x.sample_shape() != sample || rows + x.batch() > n {
                return Err(fail(format_error(
                    path,
                    format,
                    format!(
                        "a chunk of shape {:?} does not continue {rows} of {n} rows of samples {sample:?}",
                        x.shape()
                    ),
                )));
            }
            x.check_finite("write chunks", "tensor").map_err(|e| fail(e.into()))?;
            rows += x.batch();
            buf.clear();
            encode(&x, &mut buf);
            w.write_all(&buf)?;
        }
        if rows != n {
            return Err(fail(format_error(
                path,
                format,
                format!("the chunks held {rows} rows, {n} were announced"),
            )));
        }
        Ok(())
    });
    match (written, failure) {
        (Err(_), Some(e)) => Err(e),
        (r, _) => r,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::Error;

    /// A version-1.0 `.npy` file with the given header fields and raw data bytes.
    pub(crate) fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let shape_txt = match shape.len() {
            1 => format!("({},)", shape[0]),
            _ => format!(
                "({})",
                shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        let order = if fortran { "True" } else { "False" };
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_txt}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f64_bytes(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn reason(e: Error) -> String {
        match e {
            Error::Format { reason, .. } => reason,
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    #[test]
    fn chunks_write_the_same_file_as_a_whole_array() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::from_fn(&[7, 1, 2, 3], |k| k as f64 * 0.25 - 1.0).unwrap();
        let (a, b) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
        write_f64(&a, &x).unwrap();
        let chunks = [0..3, 3..6, 6..7].map(|r| x.slice_batch(r).map_err(Into::into));
        write_f64_chunks(&b, 7, &[1, 2, 3], chunks.into_iter()).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        // Too few rows, a bad chunk, or a failing source: an error, and the old file stays.
        let e = write_f64_chunks(&b, 8, &[1, 2, 3], [Ok(x.clone())].into_iter()).unwrap_err();
        assert!(e.to_string().contains("7 rows, 8 were announced"), "{e}");
        let e = write_f64_chunks(
            &b,
            7,
            &[1, 2, 3],
            [Err(crate::Error::Config("no more".into()))].into_iter(),
        )
        .unwrap_err();
        assert!(matches!(e, crate::Error::Config(_)), "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }

    #[test]
    fn round_trip_f64_2d_and_4d() {
        let dir = tempfile::tempdir().unwrap();
        let x = Tensor::from_fn(&[3, 2], |k| k as f64 * 0.1 - 0.2).unwrap();
        let p = dir.path().join("x.npy");
        write_f64(&p, &x).unwrap();
        let d = read(&p).unwrap();
        assert_eq!(d.name, "x");
        assert_eq!(d.data, x);
        assert_eq!(d.levels, None);
        let img = Tensor::from_fn(&[2, 3, 2, 2], |k| k as f64).unwrap();
        write_f64(&p, &img).unwrap();
        assert_eq!(read(&p).unwrap().data, img);
        // npyz reads what we write, and we read what npyz writes: the header is numpy's.
        let bytes = std::fs::read(&p).unwrap();
        let f = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(f.shape(), &[2, 3, 2, 2]);
        assert_eq!(f.into_vec::<f64>().unwrap(), img.as_slice());
        let mut bad = x;
        bad.as_mut_slice()[0] = f64::NAN;
        assert!(matches!(
            write_f64(&p, &bad),
            Err(Error::Numerical(exactflow_kernels::Error::NonFinite { .. }))
        ));
    }

    #[test]
    fn reads_f32_u8_int_big_endian_and_fortran() {
        let dir = tempfile::tempdir().unwrap();
        let f32s: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let d = read(file(&dir, "a.npy", &npy_bytes("<f4", false, &[2, 2], &f32s))).unwrap();
        assert_eq!(d.data.as_slice(), &[1.5, -2.0, 0.25, 4.0]);
        assert_eq!(d.levels, None);

        let d = read(file(
            &dir,
            "b.npy",
            &npy_bytes("|u1", false, &[2, 1, 1, 3], &[0, 1, 2, 253, 254, 255]),
        ))
        .unwrap();
        assert_eq!(d.data.shape(), &[2, 1, 1, 3]);
        assert_eq!(d.data.as_slice(), &[0.0, 1.0, 2.0, 253.0, 254.0, 255.0]);
        assert_eq!(d.levels, Some(256));

        let i64s: Vec<u8> = [-3i64, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let d = read(file(&dir, "c.npy", &npy_bytes("<i8", false, &[1, 2], &i64s))).unwrap();
        assert_eq!(d.data.as_slice(), &[-3.0, 7.0]);
        assert_eq!(d.levels, None);

        let be: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
        let d = read(file(&dir, "d.npy", &npy_bytes(">f8", false, &[2, 1], &be))).unwrap();
        assert_eq!(d.data.as_slice(), &[1.0, 2.0]);

        let i16be: Vec<u8> = [-2i16, 300].iter().flat_map(|x| x.to_be_bytes()).collect();
        let d = read(file(&dir, "e.npy", &npy_bytes(">i2", false, &[1, 2], &i16be))).unwrap();
        assert_eq!(d.data.as_slice(), &[-2.0, 300.0]);

        // Fortran order: column-major [[1, 2, 3], [4, 5, 6]] is stored 1 4 2 5 3 6.
        let d = read(file(
            &dir,
            "f.npy",
            &npy_bytes("<f8", true, &[2, 3], &f64_bytes(&[1., 4., 2., 5., 3., 6.])),
        ))
        .unwrap();
        assert_eq!(d.data.as_slice(), &[1., 2., 3., 4., 5., 6.]);
        let v: Vec<f64> = (0..24).map(f64::from).collect();
        // A [2, 3, 2, 2] array in Fortran order: element (a, b, c, d) sits at a + 2b + 6c + 12d.
        let mut fort = vec![0.0; 24];
        for (k, &x) in v.iter().enumerate() {
            let (a, b, c, dd) = (k / 12, (k / 4) % 3, (k / 2) % 2, k % 2);
            fort[a + 2 * b + 6 * c + 12 * dd] = x;
        }
        let d = read(file(
            &dir,
            "g.npy",
            &npy_bytes("<f8", true, &[2, 3, 2, 2], &f64_bytes(&fort)),
        ))
        .unwrap();
        assert_eq!(d.data.as_slice(), &v[..]);
    }

    #[test]
    fn rejects_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let ok = npy_bytes("<f8", false, &[2, 2], &f64_bytes(&[1., 2., 3., 4.]));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PK\x03\x04 not npy".to_vec(), "magic"),
            (b"\x93NUM".to_vec(), "magic"),
            (ok[..9].to_vec(), "truncated before the header length"),
            (ok[..40].to_vec(), "truncated header"),
            (ok[..ok.len() - 3].to_vec(), "truncated data"),
            ([ok.clone(), vec![0; 8]].concat(), "unexpected bytes"),
            (npy_bytes("<f8", false, &[4], &f64_bytes(&[1., 2., 3., 4.])), "2-D"),
            (
                npy_bytes("<f8", false, &[1, 2, 2], &f64_bytes(&[1., 2., 3., 4.])),
                "2-D",
            ),
            (npy_bytes("<c16", false, &[1, 1], &[0; 16]), "not supported"),
            (npy_bytes("<f2", false, &[1, 1], &[0; 2]), "not supported"),
            (npy_bytes("<é8", false, &[1, 1], &[0; 8]), "not supported"),
            (npy_bytes("<f8", false, &[0, 3], &[]), "empty"),
            (
                npy_bytes("<f8", false, &[2, 2], &f64_bytes(&[1., 2., f64::NAN, 4.])),
                "index [1, 0]",
            ),
            (
                npy_bytes("<f4", false, &[1, 1], &f32::INFINITY.to_le_bytes()),
                "non-finite",
            ),
            (npy_bytes("<u8", false, &[1, 1], &u64::MAX.to_le_bytes()), "2^53"),
            (npy_bytes("<f8", false, &[usize::MAX, 4], &[]), "too many"),
        ];
        for (k, (bytes, want)) in cases.into_iter().enumerate() {
            let p = file(&dir, &format!("bad{k}.npy"), &bytes);
            let r = reason(read(&p).unwrap_err());
            assert!(r.contains(want), "case {k}: {r}");
        }
        // Hand-broken headers.
        let mut v = ok.clone();
        let text = b"{'descr': '<f8', 'shape': (2, 2), }";
        v.truncate(10);
        v[8..10].copy_from_slice(&(text.len() as u16).to_le_bytes());
        v.extend_from_slice(text);
        assert!(reason(read(file(&dir, "h.npy", &v)).unwrap_err()).contains("fortran_order"));
        let mut v = ok[..10].to_vec();
        let text = b"{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }";
        v[8..10].copy_from_slice(&(text.len() as u16).to_le_bytes());
        v.extend_from_slice(text);
        assert!(reason(read(file(&dir, "i.npy", &v)).unwrap_err()).contains("structured"));
        let mut v = ok.clone();
        v[6] = 9;
        assert!(reason(read(file(&dir, "j.npy", &v)).unwrap_err()).contains("version"));
        // numpy's rules for the header dict: each key once, no unknown key, no junk after it, and
        // a shape that is a tuple.
        for (text, want) in [
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), 'shape': (2, 2), }",
                "appears twice",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), 'extra': 'x', }",
                "unknown key 'extra'",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), } junk",
                "after the dictionary",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (4), }",
                "not a tuple",
            ),
        ] {
            let mut v = ok[..10].to_vec();
            v[8..10].copy_from_slice(&(text.len() as u16).to_le_bytes());
            v.extend_from_slice(text.as_bytes());
            v.extend_from_slice(&f64_bytes(&[1., 2., 3., 4.]));
            let r = reason(read(file(&dir, "k.npy", &v)).unwrap_err());
            assert!(r.contains(want), "{text}: {r}");
        }
        // Padding after the dict (spaces and the final newline numpy writes) is fine, and so
        // is a one-element tuple written the Python way.
        let text = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }   \n";
        let mut v = ok[..10].to_vec();
        v[8..10].copy_from_slice(&(text.len() as u16).to_le_bytes());
        v.extend_from_slice(text.as_bytes());
        v.extend_from_slice(&f64_bytes(&[1., 2., 3., 4.]));
        assert!(read(file(&dir, "l.npy", &v)).is_ok());
        let a = read_array(file(
            &dir,
            "m.npy",
            &npy_bytes("<f8", false, &[2], &f64_bytes(&[1., 2.])),
        ))
        .unwrap();
        assert_eq!(a.shape, vec![2]);
    }
}
