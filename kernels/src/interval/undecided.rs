//! The per-thread log of what interval arithmetic could not decide.
//!
//! A comparison of intervals that straddle each other (`[-1e-17, 1e-17] >= [0, 0]`), an integer
//! conversion of an interval that spans two integers, a divisor containing 0, the logarithm or
//! square root of an interval reaching below 0: each is *undecided*, because different points of
//! the operands give different answers (or no answer). The operation still returns something (a
//! comparison answers for the midpoints), so that the computation runs to its end, but it leaves
//! an entry here, and a computation that left one has not been certified.
//!
//! [`watch`] runs a closure and returns what it left undecided on the calling thread; watches
//! nest (an inner watch's entries are also seen by the outer one).

use std::cell::RefCell;

/// How many undecided operations a [`Decisions`] keeps verbatim (the count covers all of them).
pub const KEPT: usize = 8;

/// One operation the intervals could not decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecided {
    /// The operation: `"<"`, `">="`, `"=="`, `"partial_cmp"`, `"/"`, `"ln"`, `"sqrt"`,
    /// `"to_i64"`, `"is_sign_positive"`, ...
    pub op: &'static str,
    /// The operands and why they do not decide it, e.g. `[-1e-17, 2e-17] >= [0.0, 0.0]`.
    pub detail: String,
    /// Where it happened, when the caller said ([`in_scope`]): e.g. `flow.3 (AffineCoupling)`.
    pub scope: Option<String>,
}

impl std::fmt::Display for Undecided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.scope {
            Some(s) => write!(f, "{s}: {} undecided ({})", self.op, self.detail),
            None => write!(f, "{} undecided ({})", self.op, self.detail),
        }
    }
}

/// What a computation left undecided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// How many operations were undecided.
    pub count: u64,
    /// The first [`KEPT`] of them, in order.
    pub first: Vec<Undecided>,
}

impl Decisions {
    /// True when every operation was decided.
    pub fn all_decided(&self) -> bool {
        self.count == 0
    }

    fn push(&mut self, u: Undecided) {
        self.count += 1;
        if self.first.len() < KEPT {
            self.first.push(u);
        }
    }

    fn absorb(&mut self, other: Decisions) {
        self.count += other.count;
        for u in other.first {
            if self.first.len() >= KEPT {
                break;
            }
            self.first.push(u);
        }
    }
}

thread_local! {
    static LOG: RefCell<Decisions> = RefCell::new(Decisions::default());
    static SCOPE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with `label()` as the scope of what it leaves undecided (the outer scope is restored
/// afterwards, also on a panic). The label is built once, on entry.
pub fn in_scope<R>(label: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
    struct Back(Option<String>);
    impl Drop for Back {
        fn drop(&mut self) {
            let outer = self.0.take();
            SCOPE.with(|s| *s.borrow_mut() = outer);
        }
    }
    let outer = SCOPE.with(|s| s.borrow_mut().replace(label()));
    let _back = Back(outer);
    f()
}

/// Records an undecided operation on this thread's log; `detail` is only formatted when called.
pub(crate) fn record(op: &'static str, detail: impl FnOnce() -> String) {
    LOG.with(|log| {
        let mut log = log.borrow_mut();
        // Past the kept entries only the count grows: no text is formatted.
        if log.first.len() >= KEPT {
            log.count += 1;
        } else {
            let scope = SCOPE.with(|s| s.borrow().clone());
            log.push(Undecided {
                op,
                detail: detail(),
                scope,
            });
        }
    });
}

/// Puts the outer log back (with the inner entries added) even if the watched closure panics.
struct Restore(Option<Decisions>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            LOG.with(|log| {
                let inner = std::mem::replace(&mut *log.borrow_mut(), outer);
                log.borrow_mut().absorb(inner);
            });
        }
    }
}

/// Runs `f` and returns its result with the operations it left undecided on this thread.
///
/// ```
/// use exactflow_kernels::{Interval, interval::watch};
/// use num_traits::Float;
/// # fn main() -> exactflow_kernels::Result<()> {
/// let x = Interval::new(-1e-17, 1e-17)?;
/// let (positive, log) = watch(|| x >= Interval::point(0.0));
/// assert_eq!(log.count, 1); // the sign of x is not known
/// let _ = positive; // the midpoint's answer, not a certified one
/// let (relu, log) = watch(|| x.max(Interval::point(0.0)));
/// assert!(log.all_decided()); // max has a hull: [0, 1e-17]
/// assert_eq!((relu.lo(), relu.hi()), (0.0, 1e-17));
/// # Ok(())
/// # }
/// ```
pub fn watch<R>(f: impl FnOnce() -> R) -> (R, Decisions) {
    let outer = LOG.with(|log| std::mem::take(&mut *log.borrow_mut()));
    let restore = Restore(Some(outer));
    let r = f();
    let inner = LOG.with(|log| log.borrow().clone());
    drop(restore);
    (r, inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_nest_and_count_past_the_kept_entries() {
        let ((), outer) = watch(|| {
            record("a", || "first".into());
            let ((), inner) = watch(|| {
                for _ in 0..20 {
                    record("b", || "inner".into());
                }
            });
            assert_eq!(inner.count, 20);
            assert_eq!(inner.first.len(), KEPT);
        });
        assert_eq!(outer.count, 21);
        assert_eq!(outer.first[0].op, "a");
        assert_eq!(outer.first.len(), KEPT);
    }

    #[test]
    fn a_panicking_watch_restores_the_outer_log() {
        let ((), outer) = watch(|| {
            record("before", String::new);
            let r = std::panic::catch_unwind(|| {
                watch(|| {
                    record("inside", String::new);
                    panic!("deliberate");
                })
            });
            assert!(r.is_err());
        });
        assert_eq!(outer.count, 2);
    }
}
