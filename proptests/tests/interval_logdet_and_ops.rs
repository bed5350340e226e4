//! Interval arithmetic and certified log-determinants against independent high-precision values.
//!
//! - Random programs of interval operations (sums, products, quotients, exp, ln, tanh, ln_1p,
//!   exp_m1, sqrt, max, abs) on random points: after every step the interval contains the
//!   double-double value of the same program (about 1e-31 relative, far inside any interval's
//!   width of a few ulps).
//! - `certify_log_det` on small integer matrices: the sign is the exact Bareiss determinant's and
//!   the interval contains its log (computed from the big integer in double-double); singular
//!   matrices are never certified. On random real matrices the interval contains the
//!   double-double LU's log|det| and the f64 one.
//! - Hilbert 8 (the f64 matrix 1/(i + j + 1)): the interval contains the exact log|det| of the
//!   f64 entries (scaled to integers, Bareiss) and is no wider than the documented width.
//! - A deliberately wrong operation (products rounded to nearest instead of outward; matrix
//!   products without their rounding-error term) makes these very checks fail.

mod common;

use common::dd::Dd;
use exactflow_kernels::gemm::MatSlice;
use exactflow_kernels::interval::fault::{self, Fault};
use exactflow_kernels::{CertifiedLogDet, Interval, bareiss_determinant, certify_log_det};
use num_bigint::{BigInt, Sign};
use num_traits::Float;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One step of a random program: an operation and the index of its second operand.
#[derive(Clone, Copy, Debug)]
struct Step {
    op: u8,
    other: usize,
}

const OPS: u8 = 12;

/// Applies a step to both arithmetics. Domains are kept by construction (`ln(|x| + 1/2)`,
/// quotients by `|y| + 1/2`, `exp(tanh x)`, `ln_1p(tanh(x) / 2)`), the same in both.
fn apply_i(step: Step, x: Interval, y: Interval) -> Interval {
    let half = Interval::point(0.5);
    match step.op {
        0 => x + y,
        1 => x - y,
        2 => x * y,
        3 => x / (Float::abs(y) + half),
        4 => Float::tanh(x).exp(),
        5 => (Float::abs(x) + half).ln(),
        6 => Float::tanh(x),
        7 => (Float::tanh(x) * half).ln_1p(),
        8 => Float::tanh(x).exp_m1(),
        9 => Float::abs(x).sqrt(),
        10 => Float::max(x, y),
        _ => x * Interval::point(3.0) + y * y,
    }
}

fn apply_d(step: Step, x: Dd, y: Dd) -> Dd {
    let half = Dd::new(0.5);
    match step.op {
        0 => x + y,
        1 => x - y,
        2 => x * y,
        3 => x / (x_abs(y) + half),
        4 => y_tanh(x).exp_(),
        5 => (x_abs(x) + half).ln_(),
        6 => y_tanh(x),
        7 => (y_tanh(x) * half).ln_1p_(),
        8 => y_tanh(x).exp_m1_(),
        9 => x_abs(x).sqrt_(),
        10 => Float::max(x, y),
        _ => x * Dd::new(3.0) + y * y,
    }
}

fn x_abs(x: Dd) -> Dd {
    Float::abs(x)
}

fn y_tanh(x: Dd) -> Dd {
    x.tanh_()
}

/// Runs a program from `inputs`; returns the first step whose interval misses the
/// double-double value, if any. Values are squashed by tanh every few steps to stay bounded.
fn first_miss(inputs: &[f64], program: &[Step]) -> Option<String> {
    let mut iv: Vec<Interval> = inputs.iter().map(|&v| Interval::point(v)).collect();
    let mut dv: Vec<Dd> = inputs.iter().map(|&v| Dd::new(v)).collect();
    for (k, &s) in program.iter().enumerate() {
        let j = s.other % iv.len();
        let (mut a, mut b) = (apply_i(s, iv[k % iv.len()], iv[j]), apply_d(s, dv[k % dv.len()], dv[j]));
        if k % 4 == 3 {
            a = Float::tanh(a);
            b = b.tanh_();
        }
        if !b.within(a.lo(), a.hi()) {
            return Some(format!("step {k} ({s:?}): {a:?} misses {}", b.to_f64()));
        }
        iv.push(a);
        dv.push(b);
    }
    None
}

fn program() -> impl Strategy<Value = (Vec<f64>, Vec<Step>)> {
    (
        prop::collection::vec(-3.0f64..3.0, 2..5),
        prop::collection::vec((0..OPS, 0usize..64).prop_map(|(op, other)| Step { op, other }), 1..40),
    )
}

proptest! {
    #![proptest_config(common::config(256))]

    #[test]
    fn every_step_of_a_random_program_encloses_the_double_double_value((inputs, prog) in program()) {
        if let Some(miss) = first_miss(&inputs, &prog) {
            prop_assert!(false, "{miss}");
        }
    }
}

/// The same programs with products rounded to nearest (one step inside the correct bounds):
/// some enclosure misses its double-double value, so the check above would catch that bug.
#[test]
fn products_rounded_to_nearest_are_caught() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut caught = 0;
    for _ in 0..200 {
        let inputs: Vec<f64> = (0..3).map(|_| rng.random_range(-3.0..3.0)).collect();
        let prog: Vec<Step> = (0..30)
            .map(|_| Step {
                op: rng.random_range(0..OPS),
                other: rng.random_range(0..64),
            })
            .collect();
        if let Some(m) = first_miss(&inputs, &prog) {
            panic!("the correct operations must pass: {m}");
        }
        if fault::with(Fault::ProductsRoundedToNearest, || first_miss(&inputs, &prog)).is_some() {
            caught += 1;
        }
    }
    assert!(caught > 50, "only {caught} of 200 faulty programs were caught");
}

/// `ln|x|` of a big integer times `2^exp2`, in double-double: the top 106 bits of |x| as a
/// double-double (exactly), the rest a relative truncation below 2^-105.
fn dd_log_abs(x: &BigInt, exp2: i64) -> Dd {
    let mag = x.magnitude();
    let bits = mag.bits() as i64;
    let shift = (bits - 106).max(0);
    let top: BigInt = BigInt::from_biguint(Sign::Plus, mag >> (shift as usize));
    let digits = top.to_u64_digits().1;
    // top < 2^106: hi part = top >> 53, lo part = top & (2^53 - 1).
    let value: u128 = digits.iter().rev().fold(0u128, |acc, &d| (acc << 64) | d as u128);
    let hi = ((value >> 53) as f64) * 2f64.powi(53);
    let lo = (value & ((1u128 << 53) - 1)) as f64;
    let m = Dd::new(hi) + Dd::new(lo);
    m.ln_() + common::dd::LN_2 * Dd::new((shift + exp2) as f64)
}

fn certified(a: &[f64], n: usize) -> CertifiedLogDet {
    certify_log_det(&MatSlice::new(a, n, n).expect("square view")).expect("finite square matrix")
}

fn small_integer_matrix() -> impl Strategy<Value = (usize, Vec<i64>)> {
    (1usize..8).prop_flat_map(|n| (Just(n), prop::collection::vec(-20i64..=20, n * n)))
}

proptest! {
    #![proptest_config(common::config(128))]

    #[test]
    fn integer_matrices_match_the_exact_bareiss_determinant((n, a) in small_integer_matrix()) {
        let det = bareiss_determinant(&a, n).expect("bareiss");
        let af: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let c = certified(&af, n);
        if det.sign() == Sign::NoSign {
            prop_assert!(c.sign().is_none(), "a singular matrix was certified: {c:?}");
        } else if let (Some(sign), Some(i)) = (c.sign(), c.log_abs()) {
            prop_assert_eq!(sign, if det.sign() == Sign::Minus { -1.0 } else { 1.0 });
            let exact = dd_log_abs(&det, 0);
            prop_assert!(exact.within(i.lo(), i.hi()), "{i:?} misses ln|{det}| = {}", exact.to_f64());
        }
    }

    #[test]
    fn real_matrices_enclose_the_double_double_and_f64_log_det(
        (n, a) in (1usize..40).prop_flat_map(|n| (Just(n), prop::collection::vec(-1.0f64..1.0, n * n)))
    ) {
        use exactflow_kernels::{Lu, LuAlgorithm, Matrix, log_det};
        let c = certified(&a, n);
        let ad: Vec<Dd> = a.iter().map(|&v| Dd::new(v)).collect();
        let dd = Lu::factor_in_place(ad, n, LuAlgorithm::Unblocked).expect("dd lu").log_det();
        let f = log_det(&Matrix::new(n, n, a.clone()).expect("matrix")).expect("f64 log det");
        if let (Some(sign), Some(i)) = (c.sign(), c.log_abs()) {
            prop_assert_eq!(sign, dd.sign.to_f64());
            prop_assert!(dd.log_abs.within(i.lo(), i.hi()), "{i:?} misses {}", dd.log_abs.to_f64());
            prop_assert!(i.contains(f.log_abs), "{i:?} misses the f64 {}", f.log_abs);
        }
    }
}

/// Hilbert n as f64 entries `fl(1 / (i + j + 1))`: each is an integer times a power of two, so
/// the matrix scaled by `2^60` is an integer matrix with `det = 2^(-60 n) det(int)`.
fn hilbert_exact_log_abs(n: usize) -> (Vec<f64>, Dd) {
    let a: Vec<f64> = (0..n * n).map(|k| 1.0 / ((k / n + k % n + 1) as f64)).collect();
    let scale = 2f64.powi(60);
    let ints: Vec<BigInt> = a
        .iter()
        .map(|&v| {
            let s = v * scale; // exact: a power-of-two scaling
            assert_eq!(s.fract(), 0.0, "entries need at most 60 fractional bits");
            BigInt::from(s as u64)
        })
        .collect();
    let det = bareiss_determinant(&ints, n).expect("bareiss");
    (a, dd_log_abs(&det, -60 * n as i64))
}

/// The documented width of Hilbert 8 (README, "Certified log-determinants"; BENCHMARKS.md):
/// log|det| about -75.9 (det about 3.7e-35, condition number about 1.5e10), enclosed with a
/// width of at most 1e-5 (measured: 6.2e-6).
const HILBERT8_MAX_WIDTH: f64 = 1e-5;

#[test]
fn hilbert_8_is_enclosed_within_the_documented_width() {
    let (a, exact) = hilbert_exact_log_abs(8);
    let c = certified(&a, 8);
    assert_eq!(c.sign(), Some(1.0));
    let i = c.log_abs().expect("Hilbert 8 is certified");
    assert!(exact.within(i.lo(), i.hi()), "{i:?} misses {}", exact.to_f64());
    assert!(
        i.width() <= HILBERT8_MAX_WIDTH,
        "Hilbert 8 width {:e} exceeds the documented {HILBERT8_MAX_WIDTH:e}",
        i.width()
    );
}

/// Without the products' rounding-error term the enclosures of Hilbert matrices (whose
/// products' rounding errors are large: condition numbers 1e5 to 1e10) miss the exact
/// log|det|: the checks above catch a bound that leaves it out.
#[test]
fn matrix_products_without_their_error_term_are_caught() {
    let mut caught = 0;
    for n in 4..=9 {
        let (a, exact) = hilbert_exact_log_abs(n);
        let good = certified(&a, n).log_abs().expect("certified");
        assert!(exact.within(good.lo(), good.hi()), "Hilbert {n}: {good:?}");
        let bad = fault::with(Fault::NoProductError, || certified(&a, n));
        if let Some(i) = bad.log_abs()
            && !exact.within(i.lo(), i.hi())
        {
            caught += 1;
        }
    }
    assert!(caught >= 3, "only {caught} of 6 faulty certificates were caught");
}

/// The one irrational constant of the flows' formulas, `ln(2 pi) / 2` (the normal log-density),
/// is enclosed by `Real::constant` on intervals: the true value lies inside.
#[test]
fn the_normal_constant_is_enclosed() {
    use exactflow_kernels::Real;
    let i = <Interval as Real>::constant(0.5 * (2.0 * std::f64::consts::PI).ln());
    let exact = common::dd::half_ln_2pi();
    assert!(exact.within(i.lo(), i.hi()), "{i:?} misses {exact:?}");
    assert!(i.width() <= 8.0 * f64::EPSILON);
}
