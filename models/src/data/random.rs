//! Seeded randomness for data: epoch orders, dequantization noise, derived seeds.
//!
//! Everything here draws from the raw `u64` stream of a `ChaCha8Rng` through small functions of
//! our own (uniforms from the top 53 bits, Fisher-Yates with rejection-sampled bounded integers),
//! so the results depend only on the ChaCha8 stream, not on the `rand` crate's algorithms.

use crate::error::{Error, Result};
use exactflow_layers::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A uniform draw from `[0, 1)`: the top 53 bits of one `u64`, times 2^-53.
pub(crate) fn uniform<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `0..bound` (`bound > 0`), unbiased by rejection.
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    debug_assert!(bound > 0, "invariant: callers pass a positive bound");
    // 2^64 mod bound: rejecting draws below it leaves a multiple of `bound` values.
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let v = rng.next_u64();
        if v >= threshold {
            return v % bound;
        }
    }
}

/// Shuffles `v` in place (Fisher-Yates, from the back).
pub(crate) fn shuffle<R: Rng + ?Sized, T>(rng: &mut R, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// A seeded random permutation of `0..n`.
pub(crate) fn permutation<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    shuffle(rng, &mut v);
    v
}

/// A new seed derived from `seed` and a `tag`, by two rounds of SplitMix64: distinct tags give
/// unrelated seeds, so train/validation/test generators seeded with `derive_seed(seed, 1..=3)` never
/// coincide with each other or with those of a neighbouring `seed`.
pub fn derive_seed(seed: u64, tag: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    splitmix(splitmix(seed) ^ tag)
}

/// The order in which epoch `epoch` visits `n` samples: a permutation of `0..n`, drawn by
/// Fisher-Yates from `ChaCha8Rng::seed_from_u64(seed)` on stream `epoch`.
///
/// Deterministic: the same `(n, seed, epoch)` always gives the same order (on every platform, and
/// independently of the `rand` version), so a resumed run visits exactly the batches it would have.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    permutation(&mut rng, n)
}

/// Dequantizes discrete data: `u = (x + e) / K` with `e ~ U[0,1)` drawn per element, so that
/// integers `x` in `0..K` become continuous values in `[0, 1)` (uniform dequantization).
///
/// A density `p_u` of `u` gives `log p(x) >= E_e[log p_u(u)] - D ln K` for `D` elements per sample.
/// A value that rounds up to exactly 1 (possible for large K) is replaced by the largest `f64`
/// below 1, so that a following logit stays finite.
///
/// # Errors
/// [`exactflow_kernels::Error::InvalidArgument`] when `levels == 0` or when an element is not an integer in
/// `0..=K-1`, naming its (sample, offset in the sample) and value.
pub fn dequantize<R: Rng + ?Sized>(x: &Tensor<f64>, levels: u32, rng: &mut R) -> Result<Tensor<f64>> {
    if levels == 0 {
        return Err(Error::invalid("dequantize", "levels", "need at least 1 level, found 0"));
    }
    let k = f64::from(levels);
    let m = x.sample_len().max(1);
    if let Some(i) = x
        .as_slice()
        .iter()
        .position(|&v| !(v.is_finite() && v == v.trunc() && v >= 0.0 && v < k))
    {
        let v = x.as_slice()[i];
        return Err(Error::invalid(
            "dequantize",
            "data",
            format!(
                "element {} of sample {} is {v}, expected an integer in 0..={} for {levels} levels",
                i % m,
                i / m,
                levels - 1
            ),
        ));
    }
    // invariant: 1 - 2^-53 is the largest f64 below 1.
    let below_one = 1.0 - f64::EPSILON / 2.0;
    let u: Vec<f64> = x
        .as_slice()
        .iter()
        .map(|&v| ((v + uniform(rng)) / k).min(below_one))
        .collect();
    Ok(Tensor::new(x.shape(), u)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let n = 1000;
        let a = epoch_order(n, 7, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(n, 7, 0), "deterministic");
        assert_ne!(a, epoch_order(n, 8, 0), "seed-dependent");
        assert_ne!(a, epoch_order(n, 7, 1), "epoch-dependent");
        assert_ne!(a, (0..n).collect::<Vec<_>>(), "actually shuffled");
        assert!(epoch_order(0, 1, 2).is_empty());
        assert_eq!(epoch_order(1, 1, 2), vec![0]);
    }

    #[test]
    fn epoch_order_is_pinned() {
        // The order must never change between versions: resumed runs depend on it.
        assert_eq!(
            epoch_order(10, 42, 0),
            [1, 5, 9, 6, 3, 2, 0, 8, 4, 7],
            "epoch_order(10, 42, 0) changed"
        );
    }

    #[test]
    fn shuffle_is_roughly_uniform() {
        // Each of the 6 permutations of 3 elements appears about 1/6 of the time.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = std::collections::HashMap::new();
        let trials = 60_000;
        for _ in 0..trials {
            *counts.entry(permutation(&mut rng, 3)).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 6);
        for (p, c) in counts {
            assert!((c as f64 - 10_000.0).abs() < 500.0, "{p:?} appeared {c} times");
        }
    }

    #[test]
    fn dequantize_range_and_mean() {
        let x = Tensor::from_fn(&[1000, 4], |k| (k % 17) as f64).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let u = dequantize(&x, 17, &mut rng).unwrap();
        assert_eq!(u.shape(), x.shape());
        for (&xv, &uv) in x.as_slice().iter().zip(u.as_slice()) {
            assert!((0.0..1.0).contains(&uv));
            assert!(uv >= xv / 17.0 && uv < (xv + 1.0) / 17.0, "x={xv} u={uv}");
        }
        let noise_mean = x
            .as_slice()
            .iter()
            .zip(u.as_slice())
            .map(|(&xv, &uv)| uv * 17.0 - xv)
            .sum::<f64>()
            / x.len() as f64;
        assert!((noise_mean - 0.5).abs() < 0.02, "noise mean {noise_mean}");
        let mut rng2 = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(dequantize(&x, 17, &mut rng2).unwrap(), u, "seeded");
    }

    #[test]
    fn dequantize_top_level_stays_below_one() {
        let x = Tensor::full(&[64, 1], 4_294_967_294.0).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let u = dequantize(&x, u32::MAX, &mut rng).unwrap();
        assert!(u.as_slice().iter().all(|&v| v < 1.0));
    }

    #[test]
    fn dequantize_rejects_bad_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for (bad, what) in [(17.0, "17"), (-1.0, "-1"), (2.5, "2.5"), (f64::NAN, "NaN")] {
            let mut x = Tensor::zeros(&[3, 4]).unwrap();
            x.as_mut_slice()[6] = bad;
            let e = dequantize(&x, 17, &mut rng).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("element 2 of sample 1") && msg.contains(what), "{msg}");
        }
        assert!(dequantize(&Tensor::zeros(&[1, 1]).unwrap(), 0, &mut rng).is_err());
    }

    #[test]
    fn derived_seeds_differ() {
        let s: Vec<u64> = (0..4).map(|t| derive_seed(5, t)).collect();
        for i in 0..4 {
            for j in 0..i {
                assert_ne!(s[i], s[j]);
            }
        }
        assert_ne!(derive_seed(5, 1), derive_seed(6, 1));
        assert_eq!(derive_seed(5, 1), derive_seed(5, 1));
    }
}
