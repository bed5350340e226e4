//! Atomic file writes: a temporary file in the target's directory, fsync, rename over the
//! target, fsync of the directory. A crash leaves either the old file or the new one under the
//! target's name, never a mixture. Every file exactflow writes (checkpoints, metrics, samples)
//! goes through [`write_atomic`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// The temporary name for `path`: hidden, in the same directory (a rename across file systems
/// would not be atomic), unique per process and per call (two writers in one process never
/// share a temporary file).
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp.{}.{k}", std::process::id()))
}

/// Writes `bytes` to `path` atomically (see the module documentation).
///
/// # Errors
/// [`Error::Io`] when any step fails; the old file, if any, is then untouched and the temporary
/// file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let tmp = temp_path(dir, &name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Persist the rename; some file systems refuse fsync on a directory, which is harmless.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.bin")]);
        assert!(write_atomic(&dir.path().join("missing/x"), b"").is_err());
    }
}
