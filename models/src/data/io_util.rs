//! File helpers shared by the readers: whole-file reads with path-naming errors, gzip.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The path as text, for error messages.
pub(crate) fn show(path: &Path) -> String {
    path.display().to_string()
}

/// An [`Error::Io`] for `path`.
pub(crate) fn io_error(path: &Path, e: &std::io::Error) -> Error {
    Error::Io {
        path: show(path),
        message: e.to_string(),
    }
}

/// An [`Error::Format`] for `path`.
pub(crate) fn format_error(path: &Path, format: &'static str, reason: impl Into<String>) -> Error {
    Error::Format {
        path: show(path),
        format,
        reason: reason.into(),
    }
}

/// The whole file.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_error(path, &e))
}

/// Whether `path` ends in `.gz` (any case).
pub(crate) fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Decompresses a gzip stream (all members), naming `path` on corruption.
pub(crate) fn gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format_error(path, "gzip stream", e.to_string()))?;
    Ok(out)
}

/// The whole file, decompressed when its name ends in `.gz`.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_bytes(path)?;
    if is_gz(path) { gunzip(path, &bytes) } else { Ok(bytes) }
}

/// The file stem as a data-set name (`"data"` when there is none).
pub(crate) fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_string())
}
