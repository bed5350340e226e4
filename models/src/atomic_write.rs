//! Atomic file writes: a temporary file in the target's directory, fsync, rename over the
//! target, fsync of the directory. A crash leaves either the old file or the new one under the
//! target's name, never a mixture. Every file exactflow writes (checkpoints, metrics, samples)
//! goes through [`write_atomic`] or [`write_atomic_with`].
//!
//! A process killed during a write leaves its temporary file (`.NAME.tmp.PID.K`) behind. The
//! next write into the same directory removes every such file whose process is gone (on Linux,
//! `/proc/PID` does not exist; elsewhere, the file is more than a day old), and never one of a
//! live process, which may still be writing it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// The temporary name for `path`: hidden, in the same directory (a rename across file systems
/// would not be atomic), unique per process and per call (two writers in one process never
/// share a temporary file).
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp.{}.{k}", std::process::id()))
}

/// The process id in a temporary file name made by [`temp_path`] (`.NAME.tmp.PID.K`), or by
/// versions that ended it at the process id (`.NAME.tmp.PID`).
fn temp_owner(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp.")?;
    let (pid, k) = tail.split_once('.').unwrap_or((tail, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(k)).then(|| pid.parse().ok()).flatten()
}

/// Whether the process that owns a leftover temporary file is gone.
fn owner_is_gone(pid: u32, modified: Option<SystemTime>) -> bool {
    if pid == std::process::id() {
        return false;
    }
    if Path::new("/proc/self").exists() {
        return !Path::new("/proc").join(pid.to_string()).exists();
    }
    // Without /proc, only a temporary file untouched for a day is taken as abandoned.
    modified
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(24 * 3600))
}

/// Removes the temporary files of killed writes in `dir` (see the module documentation).
/// Best effort: a file that cannot be listed or removed is left alone.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        let Ok(meta) = e.metadata() else {
            continue;
        };
        if meta.is_file() && owner_is_gone(pid, meta.modified().ok()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically (see the module documentation).
///
/// # Errors
/// [`Error::Io`] when any step fails; the old file, if any, is then untouched and the temporary
/// file removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `path` atomically with `write`, which streams the contents into a buffered writer (for
/// files too large to build in memory first). See the module documentation.
///
/// # Errors
/// [`Error::Io`] when any step fails, `write`'s error included; the old file, if any, is then
/// untouched and the temporary file removed.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    remove_leftovers(dir);
    let tmp = temp_path(dir, &name);
    let result = (|| {
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = std::io::BufWriter::new(f);
        write(&mut w).map_err(|e| Error::io(&tmp, e))?;
        let f = w.into_inner().map_err(|e| Error::io(&tmp, e.error()))?;
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

    #[test]
    fn the_next_write_removes_leftovers_of_killed_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its id names no live process (Linux /proc) until reused.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let leftovers = [
            format!(".model.safetensors.tmp.{dead}.0"),
            format!(".metrics.json.tmp.{dead}"),
        ];
        for l in &leftovers {
            std::fs::write(dir.path().join(l), b"half a checkpoint").unwrap();
        }
        // A live writer's temporary file (this process), and files that only look alike.
        let live = format!(".model.safetensors.tmp.{}.99", std::process::id());
        let keep = [live.as_str(), "notes.tmp.1.2", ".x.tmp.abc", "model.safetensors"];
        for k in keep {
            std::fs::write(dir.path().join(k), b"keep").unwrap();
        }
        write_atomic(&dir.path().join("model.safetensors"), b"new").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names, want);
        assert_eq!(std::fs::read(dir.path().join("model.safetensors")).unwrap(), b"new");
    }
}
