//! A two-thread fork-join for short parallel sections: one helper thread that spins between
//! jobs instead of sleeping.
//!
//! A training step of a small model (a digits RealNVP step of 64 samples: 4 ms, about 50 matrix
//! products of 20-100 us each, with serial elementwise work in between) cannot be split with
//! rayon's `join`: its idle workers go to sleep within microseconds, and waking one costs about as
//! much as the half product it would take over (measured in BENCHMARKS.md, "f32 and two threads":
//! products split through rayon trained no faster than one thread). [`join`] hands the second
//! half of a split to a helper that keeps spinning for [`SPIN`] after each job, so that the next
//! split of the same step finds it awake; when no job comes within that window it parks, and the
//! next [`join`] unparks it. This is the wait policy of OpenMP runtimes (their block time), here
//! for one helper, which is what two cores allow.
//!
//! [`join`] is a scoped fork-join: it returns only after both closures have finished, so they may
//! borrow from the caller. One caller at a time owns the helper; a concurrent or nested caller
//! (another thread, or a closure already running on the helper) runs both closures itself, one
//! after the other. A panic in either closure is resumed in the caller after both have finished.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// The fewest multiply-adds a piece of work (a matrix product, a convolution over a batch)
/// needs before two threads split it: below (about 5 us of one core in f32), the handover costs
/// more than half the work.
pub const MIN_SPLIT_MULS: usize = 64 * 64 * 32;

/// How long the helper spins after a job before it parks: longer than the serial stretches
/// between two products of a step, far shorter than the gaps between steps that hold evaluation
/// and checkpoints.
pub const SPIN: Duration = Duration::from_micros(200);

/// A job posted to the helper: the closure, whether it has finished, and its panic if any.
struct Job<'a> {
    f: &'a (dyn Fn() + Sync),
    done: AtomicBool,
    panic: UnsafeCell<Option<Box<dyn Any + Send>>>,
}

/// The helper thread and the mailbox it watches.
struct Helper {
    /// The posted job (type-erased `*const Job`), or null.
    mailbox: AtomicPtr<()>,
    /// Whether the helper is parked (or about to park): the poster must unpark it.
    sleeping: AtomicBool,
    thread: Thread,
    /// Held by the caller that owns the helper for one `join`.
    owner: Mutex<()>,
}

static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();

/// Joins that posted their second closure to the helper (whoever ran it in the end).
static POSTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many [`join`]s of this process have posted their second closure to the helper rather
/// than run both closures on the caller: lets a test check that work it expects to be split
/// really was.
pub fn posted() -> u64 {
    POSTED.load(Ordering::Relaxed)
}

thread_local! {
    static ON_HELPER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn helper() -> Option<&'static Helper> {
    *HELPER.get_or_init(|| {
        let mailbox = AtomicPtr::new(ptr::null_mut());
        let (tx, rx) = std::sync::mpsc::channel::<&'static Helper>();
        let spawned = thread::Builder::new()
            .name("exactflow-team".into())
            .spawn(move || {
                ON_HELPER.with(|c| c.set(true));
                // invariant: the spawning thread sends the helper's address before it waits.
                let Ok(h) = rx.recv() else { return };
                helper_loop(h);
            })
            .ok()?;
        let h: &'static Helper = Box::leak(Box::new(Helper {
            mailbox,
            sleeping: AtomicBool::new(false),
            thread: spawned.thread().clone(),
            owner: Mutex::new(()),
        }));
        tx.send(h).ok()?;
        Some(h)
    })
}

fn helper_loop(h: &'static Helper) {
    let mut last = Instant::now();
    let mut idle_polls = 0u32;
    loop {
        let p = h.mailbox.swap(ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: a poster stores a pointer to a `Job` that it keeps alive until it sees
            // `done`, which is the last thing done here with the job.
            let job = unsafe { &*(p as *const Job<'_>) };
            let result = catch_unwind(AssertUnwindSafe(|| (job.f)()));
            if let Err(e) = result {
                // SAFETY: the poster reads `panic` only after it has seen `done` (Acquire), and
                // nothing else writes it.
                unsafe { *job.panic.get() = Some(e) };
            }
            job.done.store(true, Ordering::Release);
            last = Instant::now();
            idle_polls = 0;
            continue;
        }
        // The clock is read once per 256 polls: reading it on every poll took a third of the
        // helper's time and slowed its reaction to a new job.
        idle_polls = idle_polls.wrapping_add(1);
        if !idle_polls.is_multiple_of(256) || last.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        h.sleeping.store(true, Ordering::SeqCst);
        if h.mailbox.load(Ordering::SeqCst).is_null() {
            thread::park();
        }
        h.sleeping.store(false, Ordering::SeqCst);
        last = Instant::now();
    }
}

/// Runs `a` on the calling thread and `b` on the helper, and returns when both have finished
/// (see the module documentation). Without a helper (it could not be spawned), while another
/// caller owns it, or from inside a job, runs `a` then `b` on the calling thread.
pub fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    let owned = if ON_HELPER.with(|c| c.get()) {
        None
    } else {
        helper().and_then(|h| match h.owner.try_lock() {
            Ok(g) => Some((h, g)),
            Err(TryLockError::Poisoned(p)) => Some((h, p.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        })
    };
    let Some((h, _guard)) = owned else {
        a();
        b();
        return;
    };
    // `b` is FnOnce but the helper calls through `&dyn Fn`: the cell hands it over exactly once.
    let b = Mutex::new(Some(b));
    let call_b = || {
        if let Some(b) = b.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b();
        }
    };
    let job = Job {
        f: &call_b,
        done: AtomicBool::new(false),
        panic: UnsafeCell::new(None),
    };
    POSTED.fetch_add(1, Ordering::Relaxed);
    h.mailbox.store(&job as *const Job<'_> as *mut (), Ordering::SeqCst);
    if h.sleeping.load(Ordering::SeqCst) {
        h.thread.unpark();
    }
    let mine = catch_unwind(AssertUnwindSafe(a));
    // A helper that has not taken the job yet (parked, or its core taken by another process)
    // does not hold up the caller: the caller takes the job back and runs it.
    let theirs = if h.mailbox.swap(ptr::null_mut(), Ordering::AcqRel).is_null() {
        while !job.done.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: `done` was seen (Acquire), so the helper has finished writing `panic`.
        unsafe { (*job.panic.get()).take() }
    } else {
        catch_unwind(AssertUnwindSafe(call_b)).err()
    };
    if let Err(e) = mine {
        resume_unwind(e);
    }
    if let Some(e) = theirs {
        resume_unwind(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_run_and_may_borrow() {
        let before = posted();
        let mut left = vec![0u64; 1000];
        let mut right = vec![0u64; 1000];
        for round in 0..2000u64 {
            join(
                || left.iter_mut().for_each(|v| *v += round),
                || right.iter_mut().for_each(|v| *v += 2 * round),
            );
        }
        let s: u64 = (0..2000).sum();
        assert!(left.iter().all(|&v| v == s) && right.iter().all(|&v| v == 2 * s));
        // Other tests of this binary may own the helper meanwhile (then a join runs both
        // closures here); once they are done, a join posts.
        let start = Instant::now();
        while posted() == before && start.elapsed() < Duration::from_secs(30) {
            join(|| {}, || {});
        }
        assert!(posted() > before, "the helper was used");
    }

    #[test]
    fn a_parked_helper_wakes_up() {
        let mut x = 0;
        join(|| {}, || x += 1);
        thread::sleep(SPIN * 20);
        join(|| {}, || x += 1);
        assert_eq!(x, 2);
    }

    #[test]
    fn nested_and_concurrent_callers_run_sequentially_and_finish() {
        let total = std::sync::atomic::AtomicU64::new(0);
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..500 {
                        join(
                            || {
                                total.fetch_add(1, Ordering::Relaxed);
                            },
                            || {
                                join(
                                    || {
                                        total.fetch_add(1, Ordering::Relaxed);
                                    },
                                    || {
                                        total.fetch_add(1, Ordering::Relaxed);
                                    },
                                )
                            },
                        );
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 500 * 3);
    }

    #[test]
    fn a_panic_on_either_side_reaches_the_caller_after_both_finish() {
        for side in 0..2 {
            let other_ran = AtomicBool::new(false);
            let r = catch_unwind(AssertUnwindSafe(|| {
                join(
                    || {
                        if side == 0 {
                            panic!("left");
                        }
                        other_ran.store(true, Ordering::SeqCst);
                    },
                    || {
                        if side == 1 {
                            panic!("right");
                        }
                        other_ran.store(true, Ordering::SeqCst);
                    },
                )
            }));
            assert!(r.is_err());
            assert!(other_ran.load(Ordering::SeqCst), "side {side}");
        }
        // The helper survives the panics.
        let mut x = 0;
        join(|| {}, || x = 7);
        assert_eq!(x, 7);
    }
}
