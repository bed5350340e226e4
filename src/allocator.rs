//! Process-wide allocator settings for training programs.
//!
//! A training step allocates its activation and gradient buffers fresh and frees them before the
//! next step. With glibc's defaults, blocks above the (dynamic) mmap threshold are mapped and
//! unmapped on every step, and freed memory at the top of the heap is trimmed back to the kernel,
//! so the next step page-faults the same buffers in again. On an MNIST-sized Glow in
//! memory-efficient mode that is 1.2 million page faults and a third of the run time.
//! [`keep_freed_buffers`] keeps those blocks in the process instead (BENCHMARKS.md has the
//! measurement).
//!
//! The library never calls it: allocator settings belong to the program, not to a dependency.

/// The mmap threshold [`keep_freed_buffers`] sets: 32 MiB, the largest glibc accepts on 64-bit
/// targets. Larger blocks are still mapped, and their page faults are small against their compute.
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// The trim threshold [`keep_freed_buffers`] sets: free memory at the top of the heap is returned
/// to the kernel only once it exceeds 512 MiB.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Whether the environment already tunes glibc's malloc (`GLIBC_TUNABLES` naming a
/// `glibc.malloc.` tunable); then [`keep_freed_buffers`] leaves the user's settings alone.
pub fn user_tunes_malloc() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
}

/// Keeps freed buffers in the process so that the next training step reuses them without page
/// faults: on Linux with glibc, sets malloc's mmap threshold to [`MMAP_THRESHOLD`] and its trim
/// threshold to [`TRIM_THRESHOLD`].
///
/// Call it once, at the start of a program that trains or evaluates flows, before other threads
/// allocate. The peak resident memory stays the same (the buffers are resident at the peak
/// anyway); memory freed after the peak is returned to the kernel later or not at all.
///
/// Returns whether the settings were applied: `false` on other platforms and C libraries, when
/// glibc refuses a value, and when [`user_tunes_malloc`] (the user's own settings win).
pub fn keep_freed_buffers() -> bool {
    if user_tunes_malloc() {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // Both constants fit a C int (checked by the test below).
    let (mmap, trim) = (MMAP_THRESHOLD as libc::c_int, TRIM_THRESHOLD as libc::c_int);
    // SAFETY: mallopt only changes malloc's parameters; it takes no pointers, and glibc
    // serializes it against concurrent allocations with the main arena's lock.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_fit_a_c_int() {
        assert!(i32::try_from(MMAP_THRESHOLD).is_ok() && i32::try_from(TRIM_THRESHOLD).is_ok());
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings_unless_the_user_tunes_malloc() {
        assert_eq!(keep_freed_buffers(), !user_tunes_malloc());
        // Allocation still works across the new thresholds.
        let big = vec![1u8; 2 * MMAP_THRESHOLD];
        let small = vec![2u8; MMAP_THRESHOLD / 2];
        assert_eq!(big[big.len() - 1] as usize + small[0] as usize, 3);
    }
}
