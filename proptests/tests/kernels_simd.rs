//! The SIMD kernels against their scalar references, on every backend the CPU has.
//!
//! **exp.** At most [`EXP_ULPS`] = 4 ULP from std's exp (the bound the kernels document), ULP
//! distance counted on ordered bit patterns (+inf is one ULP above MAX; NaN must give NaN), on a
//! dense grid and on proptest samples over the whole finite range ([-746, 710] for f64,
//! [-104, 89] for f32), and on edge inputs: +-0, the subnormal-result region, the overflow
//! threshold and around it, +-inf, NaN, huge magnitudes, in every position of slices of every
//! length 0..40 (the padded tail included).
//!
//! **Coupling.** For D in 1..=40 (not a multiple of the vector width included) and N in 0..=9:
//! - forward: |y - y_ref| <= 6 eps (|x| e^s + |t|). The reference rounds x * E then adds t; the
//!   SIMD code uses an exp E' within 4 ULP (4 eps E) and a fused multiply-add. Against the exact
//!   x e^s + t: reference <= 2u |x E| + u |t|, SIMD <= (4 eps + 1.5 u) |x E| + u |t| (u = eps/2),
//!   together 5.5 eps |x| E + eps |t| to first order.
//! - inverse: |x - x_ref| <= 6 eps |y - t| e^-s (same exp error, both compute y - t identically,
//!   one product rounding each).
//! - round trip: |inverse(forward(x)) - x| <= 10 eps (|x| + |t| e^-s). Two exps of 4 ULP each and
//!   three roundings give 9.5 eps |x|; rounding y = x E + t loses u |t| absolutely, which the
//!   inverse scales by e^-s.
//! - log-det row sums: each computed `l + sum_j s_ij` (any summation order of D + 1 terms) is within
//!   gamma_D (|l| + sum |s_ij|) of the exact value (Higham, eq. 4.4), gamma_D = D u / (1 - D u).
//!   After forward then inverse, the error against the starting l is at most
//!   gamma_D (2 |l| + 3 sum |s|) (1 + gamma_D).
//! - the scalar backend is bit-for-bit the generic reference; the additive coupling is exact on
//!   every backend (one IEEE addition or subtraction per element).
//!
//! A tiny absolute term (8 times the smallest subnormal) covers results that underflow.

mod common;

use common::{close, config, ulps_f32, ulps_f64};
use exactflow_kernels::coupling::{
    additive_on, affine_forward_on, affine_inverse_on, exp_on, generic_additive_forward, generic_additive_inverse,
    generic_affine_forward, generic_affine_inverse,
};
use exactflow_kernels::simd::{Backend, SimdFloat};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The documented accuracy of the vectorized exp.
const EXP_ULPS: u64 = 4;

/// A float type under test, with its ULP distance.
trait Flt: SimdFloat + Copy + std::fmt::Debug {
    fn ulps(a: Self, b: Self) -> u64;
    fn std_exp(self) -> Self;
    /// The smallest positive subnormal, as f64.
    fn denorm_min() -> f64;
}

impl Flt for f64 {
    fn ulps(a: Self, b: Self) -> u64 {
        ulps_f64(a, b)
    }
    fn std_exp(self) -> Self {
        self.exp()
    }
    fn denorm_min() -> f64 {
        f64::from_bits(1)
    }
}

impl Flt for f32 {
    fn ulps(a: Self, b: Self) -> u64 {
        ulps_f32(a, b)
    }
    fn std_exp(self) -> Self {
        self.exp()
    }
    fn denorm_min() -> f64 {
        f32::from_bits(1) as f64
    }
}

/// Runs exp on every backend over `xs` and checks every element against std.
fn check_exp<T: Flt>(xs: &[T]) -> Result<(), TestCaseError> {
    for b in Backend::available() {
        let mut out = xs.to_vec();
        exp_on(b, &mut out);
        for (k, (&x, &y)) in xs.iter().zip(&out).enumerate() {
            let want = x.std_exp();
            let d = T::ulps(y, want);
            prop_assert!(
                d <= EXP_ULPS,
                "{} {:?}: exp({:?}) = {:?}, std {:?}: {} ulp (index {} of {})",
                T::NAME,
                b,
                x,
                y,
                want,
                d,
                k,
                xs.len()
            );
        }
    }
    Ok(())
}

fn edge_f64() -> Vec<f64> {
    let t = 709.782712893384f64; // ~ ln(MAX) = 709.782712893384: the overflow threshold
    let mut v = vec![
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        -f64::NAN,
        1e308,
        -1e308,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        -f64::MIN_POSITIVE,
        f64::from_bits(1),
        1.0,
        -1.0,
        709.0,
        710.0,
        -708.4,
        f64::MIN_POSITIVE.ln(), // results turn subnormal below
        f64::from_bits(1).ln(), // the smallest subnormal result
        f64::MAX.ln(),
        -745.14,
        -746.0,
        -800.0,
        0.5 * std::f64::consts::LN_2,
        -0.5 * std::f64::consts::LN_2,
    ];
    // The overflow threshold and 8 neighbours on each side, bit by bit.
    for k in -8i64..=8 {
        v.push(f64::from_bits(t.to_bits().wrapping_add_signed(k)));
    }
    // The subnormal region, evenly.
    for k in 0..=64 {
        v.push(-745.13 + (745.13 - 708.4) * k as f64 / 64.0);
    }
    v
}

fn edge_f32() -> Vec<f32> {
    let t = 88.7228f32; // the overflow threshold, ~ ln(f32::MAX) = 88.72284
    let mut v = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        3e38,
        -3e38,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        1.0,
        -1.0,
        88.0,
        89.0,
        f32::MAX.ln(),
        f32::MIN_POSITIVE.ln(), // results turn subnormal below
        -87.3,
        f32::from_bits(1).ln(), // the smallest subnormal result
        -103.3,
        -103.98,
        -104.0,
        -150.0,
        0.346_573_6,
        -0.346_573_6,
    ];
    for k in -8i32..=8 {
        v.push(f32::from_bits(t.to_bits().wrapping_add_signed(k)));
    }
    for k in 0..=64 {
        v.push(-103.3 + (103.3 - 87.3) * k as f32 / 64.0);
    }
    v
}

/// Every edge value in every position of slices of every length 0..40: the vector body and the
/// padded tail of each backend see each of them.
#[test]
fn exp_edge_inputs_in_every_slice_position() {
    fn run<T: Flt>(edges: &[T]) {
        for len in 0..40 {
            for shift in 0..edges.len() {
                let xs: Vec<T> = (0..len).map(|i| edges[(i + shift) % edges.len()]).collect();
                check_exp(&xs).unwrap();
            }
        }
        check_exp(edges).unwrap();
    }
    run(&edge_f64());
    run(&edge_f32());
}

/// A dense deterministic grid over the whole finite range: 2^20 points for f64, 2^20 for f32,
/// plus every f32 in a few hundred ulps around the thresholds.
#[test]
fn exp_dense_grid_over_the_whole_range() {
    let n = 1 << 20;
    let g64: Vec<f64> = (0..=n).map(|k| -746.0 + 1456.0 * k as f64 / n as f64).collect();
    check_exp(&g64).unwrap();
    let g32: Vec<f32> = (0..=n).map(|k| (-104.0 + 193.0 * k as f64 / n as f64) as f32).collect();
    check_exp(&g32).unwrap();
    let around = |c: f32| (-300i32..=300).map(move |k| f32::from_bits(c.to_bits().wrapping_add_signed(k)));
    let near: Vec<f32> = around(f32::MAX.ln())
        .chain(around(f32::MIN_POSITIVE.ln()))
        .chain(around(f32::from_bits(1).ln()))
        .collect();
    check_exp(&near).unwrap();
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn exp_f64_over_the_finite_range(xs in prop::collection::vec(-746.0..710.0f64, 0..40)) {
        check_exp(&xs)?;
    }

    #[test]
    fn exp_f64_subnormal_and_overflow_regions(
        xs in prop::collection::vec(prop_oneof![-745.2..-708.3f64, 709.0..710.0f64], 0..40)
    ) {
        check_exp(&xs)?;
    }

    #[test]
    fn exp_f32_over_the_finite_range(xs in prop::collection::vec(-104.0..89.0f32, 0..40)) {
        check_exp(&xs)?;
    }

    #[test]
    fn exp_f32_subnormal_and_overflow_regions(
        xs in prop::collection::vec(prop_oneof![-103.4..-87.2f32, 88.0..89.0f32], 0..40)
    ) {
        check_exp(&xs)?;
    }

    #[test]
    fn exp_any_bit_pattern(bits in prop::collection::vec(any::<u64>(), 0..40), bits32 in prop::collection::vec(any::<u32>(), 0..40)) {
        // Every finite and non-finite f64/f32, overwhelmingly of huge magnitude: 0, 1 or inf.
        check_exp(&bits.iter().map(|&b| f64::from_bits(b)).collect::<Vec<_>>())?;
        check_exp(&bits32.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>())?;
    }
}

/// One coupling case: rows of width d, n rows, values drawn in the given ranges.
#[derive(Clone, Debug)]
struct Case<T> {
    d: usize,
    x: Vec<T>,
    s: Vec<T>,
    t: Vec<T>,
    l: Vec<T>,
}

prop_compose! {
    fn case_f64(s_max: f64)(d in 1usize..=40, n in 0usize..=9)(
        x in prop::collection::vec(-100.0..100.0f64, n * d),
        s in prop::collection::vec(-s_max..s_max, n * d),
        t in prop::collection::vec(-100.0..100.0f64, n * d),
        l in prop::collection::vec(-100.0..100.0f64, n),
        d in Just(d),
    ) -> Case<f64> {
        Case { d, x, s, t, l }
    }
}

prop_compose! {
    fn case_f32(s_max: f32)(d in 1usize..=40, n in 0usize..=9)(
        x in prop::collection::vec(-100.0..100.0f32, n * d),
        s in prop::collection::vec(-s_max..s_max, n * d),
        t in prop::collection::vec(-100.0..100.0f32, n * d),
        l in prop::collection::vec(-100.0..100.0f32, n),
        d in Just(d),
    ) -> Case<f32> {
        Case { d, x, s, t, l }
    }
}

fn check_coupling<T: Flt>(c: &Case<T>) -> Result<(), TestCaseError> {
    let Case { d, x, s, t, l } = c;
    let (d, n) = (*d, l.len());
    let len = n * d;
    let eps = T::epsilon().as_f64();
    let u = eps / 2.0;
    let gamma = d as f64 * u / (1.0 - d as f64 * u);
    let tiny = 8.0 * T::denorm_min();
    let f = |v: T| v.as_f64();

    // References.
    let (mut y_ref, mut l_ref) = (vec![T::zero(); len], l.clone());
    generic_affine_forward(x, s, t, &mut y_ref, &mut l_ref);
    let (mut xi_ref, mut li_ref) = (vec![T::zero(); len], l.clone());
    generic_affine_inverse(x, s, t, &mut xi_ref, &mut li_ref);
    let (mut add_ref, mut sub_ref) = (vec![T::zero(); len], vec![T::zero(); len]);
    generic_additive_forward(x, t, &mut add_ref);
    generic_additive_inverse(x, t, &mut sub_ref);
    // Row sums as if in twice the f64 precision (Dot2), so that the reference's own error (at most
    // u |result| after the final rounding) is negligible; it is added to the bounds anyway.
    let row = |i: usize, sign: f64| -> (f64, f64) {
        let srow = &s[i * d..(i + 1) * d];
        let terms = std::iter::once((f(l[i]), 1.0)).chain(srow.iter().map(|&v| (f(v), sign)));
        (common::dot2(terms), srow.iter().map(|&v| f(v).abs()).sum::<f64>())
    };

    for b in Backend::available() {
        let tag = |what: &str, k: usize| format!("{} {b:?} d={d} n={n} {what}[{k}]", T::NAME);
        let (mut y, mut ly) = (vec![T::zero(); len], l.clone());
        affine_forward_on(b, d, x, s, t, &mut y, &mut ly).unwrap();
        let (mut xi, mut li) = (vec![T::zero(); len], l.clone());
        affine_inverse_on(b, d, x, s, t, &mut xi, &mut li).unwrap();
        let (mut back, mut lb) = (vec![T::zero(); len], ly.clone());
        affine_inverse_on(b, d, &y, s, t, &mut back, &mut lb).unwrap();

        if b == Backend::Scalar {
            prop_assert_eq!(&y, &y_ref, "scalar backend = generic reference");
            prop_assert_eq!(&ly, &l_ref);
            prop_assert_eq!(&xi, &xi_ref);
            prop_assert_eq!(&li, &li_ref);
        }
        for k in 0..len {
            let e = f(s[k]).exp();
            let fwd_tol = 6.0 * eps * (f(x[k]).abs() * e + f(t[k]).abs()) + tiny;
            prop_assert!(
                (f(y[k]) - f(y_ref[k])).abs() <= fwd_tol,
                "{}: {:?} vs {:?}",
                tag("y", k),
                y[k],
                y_ref[k]
            );
            let inv_tol = 6.0 * eps * (f(x[k]) - f(t[k])).abs() * (-f(s[k])).exp() + tiny;
            prop_assert!(
                (f(xi[k]) - f(xi_ref[k])).abs() <= inv_tol,
                "{}: {:?} vs {:?}",
                tag("x", k),
                xi[k],
                xi_ref[k]
            );
            let rt_tol = 10.0 * eps * (f(x[k]).abs() + f(t[k]).abs() * (-f(s[k])).exp()) + tiny;
            prop_assert!(
                (f(back[k]) - f(x[k])).abs() <= rt_tol,
                "{}: {:?} vs {:?}",
                tag("round trip", k),
                back[k],
                x[k]
            );
        }
        for i in 0..n {
            let ((fwd, abs_sum), (inv, _)) = (row(i, 1.0), row(i, -1.0));
            let l0 = f(l[i]);
            let bound = gamma * (l0.abs() + abs_sum);
            close(&tag("forward log-det", i), f(ly[i]), fwd, bound + eps * fwd.abs())?;
            close(&tag("inverse log-det", i), f(li[i]), inv, bound + eps * inv.abs())?;
            let rt = gamma * (2.0 * l0.abs() + 3.0 * abs_sum) * (1.0 + gamma);
            close(&tag("round-trip log-det", i), f(lb[i]), l0, rt)?;
        }

        let (mut add, mut sub) = (vec![T::zero(); len], vec![T::zero(); len]);
        additive_on(b, true, x, t, &mut add).unwrap();
        additive_on(b, false, x, t, &mut sub).unwrap();
        prop_assert_eq!(&add, &add_ref, "{:?} additive forward", b);
        prop_assert_eq!(&sub, &sub_ref, "{:?} additive inverse", b);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn coupling_f64_moderate_scales(c in case_f64(5.0)) {
        check_coupling(&c)?;
    }

    #[test]
    fn coupling_f64_wide_scales(c in case_f64(60.0)) {
        check_coupling(&c)?;
    }

    #[test]
    fn coupling_f32_moderate_scales(c in case_f32(5.0)) {
        check_coupling(&c)?;
    }

    #[test]
    fn coupling_f32_wide_scales(c in case_f32(30.0)) {
        check_coupling(&c)?;
    }
}

/// Every width 1..=40 and row count 0..=9 with fixed values, so that each remainder of each vector
/// width is covered on every run, whatever proptest draws.
#[test]
fn coupling_every_width_and_row_count() {
    for d in 1..=40usize {
        for n in 0..=9usize {
            let len = n * d;
            let v = |k: usize, a: f64, w: f64| (k as f64 * w).sin() * a;
            let c64 = Case {
                d,
                x: (0..len).map(|k| v(k, 50.0, 0.37)).collect(),
                s: (0..len).map(|k| v(k, 8.0, 0.91)).collect(),
                t: (0..len).map(|k| v(k, 20.0, 1.3)).collect(),
                l: (0..n).map(|k| v(k, 3.0, 2.1)).collect(),
            };
            check_coupling(&c64).unwrap();
            let c32 = Case {
                d,
                x: c64.x.iter().map(|&a| a as f32).collect(),
                s: c64.s.iter().map(|&a| a as f32).collect(),
                t: c64.t.iter().map(|&a| a as f32).collect(),
                l: c64.l.iter().map(|&a| a as f32).collect(),
            };
            check_coupling(&c32).unwrap();
        }
    }
}
