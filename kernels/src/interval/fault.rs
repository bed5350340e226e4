//! Deliberately wrong interval operations, for exactflow's own tests (feature
//! `fault-injection`): a test runs a computation under a [`Fault`] and checks that its
//! containment tests fail, which shows that they would catch such a bug.

use std::cell::Cell;

/// A wrong operation to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the correct operations.
    None,
    /// Elementwise products rounded to nearest instead of outward: both bounds of `x * y` are
    /// `fl(x * y)`, one step inside the correct bounds.
    ProductsRoundedToNearest,
    /// Matrix products without their rounding-error term (`gamma_k = 0`, no underflow
    /// allowance): the midpoint product's own error is left out of the radius, in flows and in
    /// the certified log-determinant.
    NoProductError,
}

thread_local! {
    static ACTIVE: Cell<Fault> = const { Cell::new(Fault::None) };
}

/// The fault active on this thread.
pub(crate) fn active() -> Fault {
    ACTIVE.with(Cell::get)
}

/// Runs `f` with `fault` injected on this thread (restored afterwards, also on a panic).
pub fn with<R>(fault: Fault, f: impl FnOnce() -> R) -> R {
    struct Back(Fault);
    impl Drop for Back {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(self.0));
        }
    }
    let _back = Back(ACTIVE.with(|a| a.replace(fault)));
    f()
}
