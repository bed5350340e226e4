//! Memory checks before allocations whose size comes from outside: a sample count, an image
//! shape, a size a file declares, a checkpoint's model config.
//!
//! Such a size is turned into bytes with checked arithmetic ([`bytes`]) and compared with the
//! memory this machine has ([`machine_bytes`]: RAM plus swap) by [`check`] before anything is
//! allocated. An impossible allocation is refused with [`Error::TooLarge`] ("... needs 48.0 GiB,
//! more than the 23.4 GiB of memory (RAM and swap) this machine has") instead of aborting the
//! process. Allocations that fit in principle are made as usual; what else runs on the machine is
//! not taken into account.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The limit used where the machine's memory cannot be read: 2^47 bytes (128 TiB), the user
/// address space of x86-64 and AArch64, so that no allocation a machine can make is refused.
pub const UNKNOWN_MACHINE_BYTES: u64 = 1 << 47;

/// The memory of this machine in bytes: physical memory plus swap (`MemTotal + SwapTotal` of
/// `/proc/meminfo` on Linux), or [`UNKNOWN_MACHINE_BYTES`] where that cannot be read. Read once
/// per process.
pub fn machine_bytes() -> u64 {
    static BYTES: OnceLock<u64> = OnceLock::new();
    *BYTES.get_or_init(|| meminfo().unwrap_or(UNKNOWN_MACHINE_BYTES))
}

/// `MemTotal + SwapTotal` of `/proc/meminfo`, in bytes.
fn meminfo() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
    };
    kib("MemTotal:")?
        .checked_add(kib("SwapTotal:").unwrap_or(0))?
        .checked_mul(1024)
}

/// `elem * counts[0] * counts[1] * ...` bytes, or `None` when the product overflows a `u64`.
pub fn bytes(counts: &[usize], elem: usize) -> Option<u64> {
    counts.iter().try_fold(elem as u64, |acc, &c| acc.checked_mul(c as u64))
}

/// Refuses an allocation of `needed` bytes (`None`: more than a `u64` can count) that is larger
/// than [`machine_bytes`]. `what` names the allocation ("100000000 samples of shape [3, 64, 64]")
/// and is only built on failure.
///
/// # Errors
/// [`Error::TooLarge`].
pub fn check(what: impl FnOnce() -> String, needed: Option<u64>) -> Result<()> {
    let available = machine_bytes();
    match needed {
        Some(b) if b <= available => Ok(()),
        _ => Err(Error::TooLarge {
            what: what(),
            needed,
            available,
        }),
    }
}

/// A byte count for people: "812 B", "3.5 KiB", "48.0 GiB"; `None` is "more than 16 EiB".
pub fn show(bytes: Option<u64>) -> String {
    let Some(b) = bytes else {
        return "more than 16 EiB".to_string();
    };
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_and_shown() {
        assert_eq!(bytes(&[3, 4], 8), Some(96));
        assert_eq!(bytes(&[usize::MAX, 3], 8), None);
        assert!(check(|| "small".into(), Some(1024)).is_ok());
        let e = check(|| "a huge buffer".into(), Some(u64::MAX)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("a huge buffer needs 16.0 EiB") && msg.contains("this machine has"),
            "{msg}"
        );
        let e = check(|| "an overflow".into(), None).unwrap_err();
        assert!(e.to_string().contains("more than 16 EiB"), "{e}");
        assert_eq!(show(Some(812)), "812 B");
        assert_eq!(show(Some(3 << 30)), "3.0 GiB");
        assert!(machine_bytes() >= 1 << 20);
    }
}
