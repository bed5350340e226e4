//! The elementwise work of an optimizer step: one Adam update and the sum of squares behind a
//! gradient norm.
//!
//! Both are single passes over long parameter vectors, which a training step makes once per
//! tensor. For `f32` and `f64` they run vectorized (AVX-512 or AVX2, chosen at run time as in
//! [`crate::simd`]) and give the same bits as the scalar loops: the Adam update is a chain of
//! single IEEE operations (no fused multiply-add), and the sum of squares adds in a fixed order
//! that depends only on the length (16 partial sums, then a fixed tree).

use crate::error::{Error, Result};
use crate::real::Real;
use crate::view::Parallelism;

pub use crate::ground::{AdamCoefficients, SQUARES_LANES};

/// One Adam update of a parameter tensor in place:
/// `g = grad * grad_scale`, `m = beta1 m + (1 - beta1) g`, `v = beta2 v + ((1 - beta2) g) g`,
/// `value -= lr (m / bias1) / (sqrt(v / bias2) + eps)`, element by element, with the coefficients
/// of `k`. Returns whether every updated value is finite (a caller that must not keep a
/// non-finite parameter checks this).
///
/// # Errors
/// [`Error::LengthMismatch`] when `grad`, `m` or `v` is not as long as `value`; nothing is
/// written then.
pub fn adam_update<T: Real>(
    value: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    k: &AdamCoefficients<T>,
) -> Result<bool> {
    let expected = value.len();
    for (what, found) in [("grad", grad.len()), ("m", m.len()), ("v", v.len())] {
        if found != expected {
            return Err(Error::LengthMismatch {
                op: "adam_update",
                what,
                expected,
                found,
            });
        }
    }
    Ok(T::adam_kernel(value, grad, m, v, k))
}

/// The fewest elements a tensor needs before [`adam_update_on`] splits its update over two
/// threads (a 128 KiB f32 tensor: about 10 us of one core).
pub const MIN_SPLIT_ELEMENTS: usize = 32 * 1024;

/// [`adam_update`] with `par`: on two threads a tensor of at least [`MIN_SPLIT_ELEMENTS`]
/// elements is updated in two halves at once, one on the helper of [`crate::team`]. The update is
/// elementwise, so the result is the same bits as [`adam_update`]'s; more threads than two are
/// treated as two.
///
/// # Errors
/// As [`adam_update`].
pub fn adam_update_on<T: Real>(
    par: Parallelism,
    value: &mut [T],
    grad: &[T],
    m: &mut [T],
    v: &mut [T],
    k: &AdamCoefficients<T>,
) -> Result<bool> {
    let n = value.len();
    if par.threads() < 2 || n < MIN_SPLIT_ELEMENTS || grad.len() != n || m.len() != n || v.len() != n {
        return adam_update(value, grad, m, v, k);
    }
    // A multiple of 64 elements: both halves start on a cache line of an aligned buffer.
    let h = n.div_ceil(128) * 64;
    let (v0, v1) = value.split_at_mut(h);
    let (g0, g1) = grad.split_at(h);
    let (m0, m1) = m.split_at_mut(h);
    let (s0, s1) = v.split_at_mut(h);
    let (mut f0, mut f1) = (true, true);
    crate::team::join(
        || f0 = T::adam_kernel(v0, g0, m0, s0, k),
        || f1 = T::adam_kernel(v1, g1, m1, s1, k),
    );
    Ok(f0 && f1)
}

/// `sum_i x_i^2` in f64 (of the values, [`Real::as_f64`]): NaN if any `x_i` is NaN, infinite if
/// any is infinite, so a finite result says every entry is finite (for `f32` input the f64 sum
/// cannot overflow). The order of the additions is fixed by the length alone: 16 partial sums
/// ([`SQUARES_LANES`]), element `i` of each full block of 16 into sum `i mod 16`, the tail into
/// its own, then a fixed tree.
pub fn sum_of_squares<T: Real>(xs: &[T]) -> f64 {
    T::sum_of_squares_kernel(xs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ground;
    use crate::vectorized::{Backend, VectorKernels};

    /// SplitMix64: enough randomness for test vectors without a dependency.
    struct Mix(u64);

    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn coefficients<T: Real>(t: i32, scale: f64) -> AdamCoefficients<T> {
        let (b1, b2) = (0.9f64, 0.999f64);
        AdamCoefficients {
            lr: T::lit(1e-3),
            beta1: T::lit(b1),
            one_minus_beta1: T::lit(1.0 - b1),
            beta2: T::lit(b2),
            one_minus_beta2: T::lit(1.0 - b2),
            bias1: T::lit(1.0 - b1.powi(t)),
            bias2: T::lit(1.0 - b2.powi(t)),
            eps: T::lit(1e-8),
            grad_scale: T::lit(scale),
        }
    }

    /// Random vectors with every length from 0 to 70 (tails of every size around the 16 lanes)
    /// and a few specials: zeros, huge and tiny magnitudes, and (when `specials`) NaN and inf.
    fn vectors(seed: u64, specials: bool) -> Vec<Vec<f64>> {
        let mut rng = Mix(seed);
        (0..=70usize)
            .chain([1000, 4099])
            .map(|n| {
                (0..n)
                    .map(|_| match rng.below(20) {
                        0 => 0.0,
                        1 => rng.uniform(-1.0, 1.0) * 1e30,
                        2 => rng.uniform(-1.0, 1.0) * 1e-30,
                        3 if specials => [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.below(3) as usize],
                        _ => rng.uniform(-3.0, 3.0),
                    })
                    .collect()
            })
            .collect()
    }

    /// Runs the update on every backend the CPU has and checks each against the scalar loop,
    /// bit for bit (values, both moments and the finiteness flag).
    fn adam_backends_agree<T: Real + VectorKernels>(to_t: impl Fn(f64) -> T, bits: impl Fn(T) -> u64) {
        for (case, g) in vectors(1, true).into_iter().enumerate() {
            let n = g.len();
            let g: Vec<T> = g.into_iter().map(&to_t).collect();
            let start: Vec<T> = (0..n).map(|i| to_t((i as f64 * 0.37).sin())).collect();
            let m0: Vec<T> = (0..n).map(|i| to_t((i as f64 * 0.11).cos() * 1e-2)).collect();
            let v0: Vec<T> = (0..n).map(|i| to_t((i as f64 * 0.05).sin().abs() * 1e-4)).collect();
            let k = coefficients::<T>(1 + case as i32 % 7, if case % 3 == 0 { 0.25 } else { 1.0 });
            let (mut w_ref, mut m_ref, mut v_ref) = (start.clone(), m0.clone(), v0.clone());
            let ok_ref = ground::adam(&mut w_ref, &g, &mut m_ref, &mut v_ref, &k);
            for backend in Backend::available() {
                let (mut w, mut m, mut v) = (start.clone(), m0.clone(), v0.clone());
                let ok = T::adam(backend, &mut w, &g, &mut m, &mut v, &k);
                assert_eq!(ok, ok_ref, "{backend:?}, n = {n}");
                for (what, got, want) in [("value", &w, &w_ref), ("m", &m, &m_ref), ("v", &v, &v_ref)] {
                    let got: Vec<u64> = got.iter().map(|&x| bits(x)).collect();
                    let want: Vec<u64> = want.iter().map(|&x| bits(x)).collect();
                    assert_eq!(got, want, "{what} on {backend:?}, n = {n}");
                }
            }
        }
    }

    #[test]
    fn adam_is_the_same_bits_on_every_backend() {
        adam_backends_agree::<f64>(|x| x, f64::to_bits);
        adam_backends_agree::<f32>(|x| x as f32, |x| u64::from(x.to_bits()));
    }

    /// The scalar loop is the formula of the documentation, evaluated here step by step in the
    /// same order; three steps with the bias corrections of steps 1 to 3.
    #[test]
    fn adam_update_follows_the_formula_and_reports_non_finite_values() {
        let (mut w, mut m, mut v) = (vec![0.5f64, -1.0, 2.0], vec![0.0; 3], vec![0.0; 3]);
        let g = [0.1, -0.2, 0.3];
        let (mut w2, mut m2, mut v2) = (w.clone(), m.clone(), v.clone());
        for t in 1..=3 {
            let k = coefficients::<f64>(t, 0.5);
            assert!(adam_update(&mut w, &g, &mut m, &mut v, &k).expect("equal lengths"));
            for i in 0..3 {
                let gi = g[i] * 0.5;
                m2[i] = 0.9 * m2[i] + (1.0 - 0.9) * gi;
                v2[i] = 0.999 * v2[i] + (1.0 - 0.999) * gi * gi;
                w2[i] -= 1e-3 * (m2[i] / (1.0 - 0.9f64.powi(t))) / ((v2[i] / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8);
            }
            assert_eq!((&w, &m, &v), (&w2, &m2, &v2));
        }
        // 3e38 + 1e38 overflows f32.
        let mut bad = vec![3e38f32, 2.0];
        let k = AdamCoefficients {
            lr: 1e38f32,
            ..coefficients::<f32>(1, 1.0)
        };
        let (mut m, mut v) = (vec![0.0f32; 2], vec![0.0f32; 2]);
        assert!(!adam_update(&mut bad, &[-1.0, 1.0], &mut m, &mut v, &k).expect("equal lengths"));
        assert_eq!(bad[0], f32::INFINITY);
        let e = adam_update(
            &mut [1.0f64; 3],
            &[1.0; 2],
            &mut [0.0; 3],
            &mut [0.0; 3],
            &coefficients(1, 1.0),
        );
        assert!(matches!(
            e,
            Err(Error::LengthMismatch {
                what: "grad",
                expected: 3,
                found: 2,
                ..
            })
        ));
    }

    /// Every backend gives the scalar order's bits; the value is within the usual summation
    /// bound of the exact sum (computed in f64 pairs with an error term, i.e. to ~1e-32
    /// relative): n * 2^-53 relative for non-negative terms; NaN and inf propagate.
    #[test]
    fn sum_of_squares_is_the_same_bits_on_every_backend() {
        for xs in vectors(2, true) {
            let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
            let want64 = ground::sum_of_squares(&xs, |x| x);
            let want32 = ground::sum_of_squares(&xs32, f64::from);
            for backend in Backend::available() {
                assert_eq!(
                    f64::sum_of_squares(backend, &xs).to_bits(),
                    want64.to_bits(),
                    "{backend:?}"
                );
                assert_eq!(
                    f32::sum_of_squares(backend, &xs32).to_bits(),
                    want32.to_bits(),
                    "{backend:?}"
                );
            }
            assert_eq!(sum_of_squares(&xs).to_bits(), want64.to_bits());
            let has_nan = xs.iter().any(|x| x.is_nan());
            let has_inf = xs.iter().any(|x| x.is_infinite());
            if has_nan {
                assert!(want64.is_nan());
            } else if has_inf {
                assert_eq!(want64, f64::INFINITY);
            }
        }
        for xs in vectors(3, false) {
            let n = xs.len() as f64;
            // A compensated (TwoSum/TwoProduct-free, as every term is exact in f64 for f32
            // inputs) reference: f32 squares are exact in f64, so sum them in pairs of f64
            // with Neumaier's correction.
            let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
            let (mut s, mut c) = (0.0f64, 0.0f64);
            for &x in &xs32 {
                let t = f64::from(x) * f64::from(x);
                let u = s + t;
                c += if s.abs() >= t.abs() { (s - u) + t } else { (t - u) + s };
                s = u;
            }
            let exact = s + c;
            let got = sum_of_squares(&xs32);
            assert!(
                (got - exact).abs() <= n * f64::EPSILON * exact,
                "n = {n}: {got} vs {exact}"
            );
        }
    }

    /// The two-thread update gives the one-thread bits, at and around the split threshold and
    /// with a non-finite value in either half.
    #[test]
    fn split_update_gives_the_sequential_bits() {
        let mut rng = Mix(9);
        for n in [
            MIN_SPLIT_ELEMENTS - 1,
            MIN_SPLIT_ELEMENTS,
            MIN_SPLIT_ELEMENTS + 17,
            100_003,
        ] {
            for bad in [None, Some(3), Some(n - 5)] {
                let mut g: Vec<f32> = (0..n).map(|_| rng.uniform(-3.0, 3.0) as f32).collect();
                if let Some(i) = bad {
                    g[i] = f32::INFINITY;
                }
                let start: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
                let k = coefficients::<f32>(3, 0.5);
                let mut want = (start.clone(), vec![0.01f32; n], vec![1e-4f32; n]);
                let ok_want = adam_update(&mut want.0, &g, &mut want.1, &mut want.2, &k).expect("lengths");
                let mut got = (start.clone(), vec![0.01f32; n], vec![1e-4f32; n]);
                let ok =
                    adam_update_on(Parallelism::Rayon(2), &mut got.0, &g, &mut got.1, &mut got.2, &k).expect("lengths");
                assert_eq!(ok, ok_want, "n = {n}, bad = {bad:?}");
                assert_eq!(ok, bad.is_none(), "n = {n}, bad = {bad:?}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.0), bits(&want.0), "values, n = {n}");
                assert_eq!(bits(&got.1), bits(&want.1), "m, n = {n}");
                assert_eq!(bits(&got.2), bits(&want.2), "v, n = {n}");
            }
        }
        let mut short = vec![0.0f32; MIN_SPLIT_ELEMENTS];
        let e = adam_update_on(
            Parallelism::Rayon(2),
            &mut short,
            &[0.0; 3],
            &mut vec![0.0; MIN_SPLIT_ELEMENTS],
            &mut vec![0.0; MIN_SPLIT_ELEMENTS],
            &coefficients::<f32>(1, 1.0),
        );
        assert!(e.is_err());
    }
}
