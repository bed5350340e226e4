//! File helpers shared by the readers: whole-file reads with path-naming errors, gzip.
//!
//! Only regular files are read: a FIFO would block forever and a device such as `/dev/zero`
//! never ends, so both are refused before they are opened. A regular file is read up to the
//! size it had when it was opened, so a file that grows meanwhile cannot make a reader allocate
//! without bound.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::memory;

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

/// What kind of file system entry `meta` describes, when it is not a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Option<&'static str> {
    if meta.is_file() {
        return None;
    }
    if meta.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() {
            return Some("a character device");
        }
        if t.is_block_device() {
            return Some("a block device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

/// The error for a path that is not a regular file.
fn refuse(path: &Path, kind: &str) -> Error {
    Error::Io {
        path: show(path),
        message: format!(
            "is {kind}; exactflow reads only regular files (their size is known before reading, \
             and reading them ends)"
        ),
    }
}

/// The whole of a regular file, read up to the size it has when opened (see the module docs).
///
/// # Errors
/// [`Error::Io`] for a missing or unreadable file, a path that is not a regular file (directory,
/// FIFO, device, socket) or a file that grew while it was read; [`Error::TooLarge`] for a file
/// larger than this machine's memory.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    // A stat first: opening a FIFO for reading would block until a writer appears.
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    if let Some(kind) = not_regular(&meta) {
        return Err(refuse(path, kind));
    }
    let mut f = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    // Again on the open file: the path may have been replaced in between.
    let meta = f.metadata().map_err(|e| io_error(path, &e))?;
    if let Some(kind) = not_regular(&meta) {
        return Err(refuse(path, kind));
    }
    let len = meta.len();
    memory::check(|| format!("reading {}", show(path)), Some(len))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX))
        .map_err(|_| io_error(path, &std::io::Error::from(std::io::ErrorKind::OutOfMemory)))?;
    (&mut f)
        .take(len.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| io_error(path, &e))?;
    if buf.len() as u64 > len {
        return Err(Error::Io {
            path: show(path),
            message: format!("grew beyond its {len} bytes while being read"),
        });
    }
    Ok(buf)
}

/// Whether `path` ends in `.gz` (any case).
pub(crate) fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// Decompresses a gzip stream (all members), naming `path` on corruption. Only for data whose
/// size is known (the embedded digits); readers of user files stream instead and stop at the
/// size their header declares.
pub(crate) fn gunzip(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format_error(path, "gzip stream", e.to_string()))?;
    Ok(out)
}

/// The file stem as a data-set name (`"data"` when there is none).
pub(crate) fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".to_string())
}
