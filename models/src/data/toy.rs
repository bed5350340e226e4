//! Seeded 2-D toy distributions, the standard test beds of density estimation with flows.
//!
//! Definitions follow scikit-learn (`make_moons`, `make_circles`) and FFJORD's `lib/toy_data.py`
//! (Grathwohl, Chen et al. 2019; 8 Gaussians, checkerboard, pinwheel, two spirals), re-implemented
//! here; every constant is stated on its generator. Each returns exactly `n` samples as an `[n, 2]`
//! continuous [`Dataset`] (labels = the mode/arm a point was drawn from, where there is one), in a
//! shuffled order, so any prefix is itself a sample of the distribution.
//!
//! Randomness: one `ChaCha8Rng::seed_from_u64(seed)` per call; uniforms are the top 53 bits of a
//! `u64`, normals come from `rand_distr::StandardNormal`, the shuffle is our own Fisher-Yates. The
//! output is therefore bit-for-bit reproducible for a given seed on a given platform (the
//! trigonometric and exponential functions come from the platform's libm).

use std::f64::consts::PI;

use crate::error::{Error, Result};
use exactflow_layers::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::Dataset;
use super::random::{below, shuffle, uniform};

/// The names [`generate`] accepts, in the order of the docs.
pub const NAMES: [&str; 6] = ["moons", "circles", "8gaussians", "checkerboard", "pinwheel", "spirals"];

/// The largest `n` [`generate`] accepts (protects a command line from a typo'd size).
pub const MAX_SAMPLES: usize = 100_000_000;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Shuffles `(point, label)` pairs and packs them into a data set.
fn finish(name: &str, mut pts: Vec<([f64; 2], u32)>, labelled: bool, rng: &mut ChaCha8Rng) -> Dataset {
    shuffle(rng, &mut pts);
    let n = pts.len();
    let data: Vec<f64> = pts.iter().flat_map(|(p, _)| *p).collect();
    let labels = labelled.then(|| pts.iter().map(|&(_, l)| l).collect());
    // invariant: the data have 2n finite values and the labels n entries.
    let data = Tensor::new(&[n, 2], data).expect("invariant: [n, 2] tensor from 2n values");
    Dataset::new(name, data, None, labels).expect("invariant: finite [n, 2] data with n labels")
}

/// Two interleaving half circles (scikit-learn's `make_moons` geometry, raw coordinates), noise
/// standard deviation 0.05.
///
/// `n - n/2` points of the upper moon `(cos t, sin t)` and `n/2` of the lower moon
/// `(1 - cos t, 1/2 - sin t)`, with `t` evenly spaced over `[0, π]` (endpoints included) in each,
/// plus `N(0, 0.05²)` noise on both coordinates. Labels 0 (upper) and 1 (lower). Mean ≈ (0.5, 0.25);
/// the points lie in about [-1, 2] x [-0.5, 1].
pub fn moons(n: usize, seed: u64) -> Dataset {
    const NOISE: f64 = 0.05;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n_out, n_in) = (n - n / 2, n / 2);
    let angle = |i: usize, m: usize| if m > 1 { PI * i as f64 / (m - 1) as f64 } else { 0.0 };
    let mut pts = Vec::with_capacity(n);
    for i in 0..n_out {
        let t = angle(i, n_out);
        pts.push(([t.cos(), t.sin()], 0));
    }
    for i in 0..n_in {
        let t = angle(i, n_in);
        pts.push(([1.0 - t.cos(), 0.5 - t.sin()], 1));
    }
    for (p, _) in &mut pts {
        p[0] += NOISE * normal(&mut rng);
        p[1] += NOISE * normal(&mut rng);
    }
    finish("moons", pts, true, &mut rng)
}

/// Two concentric circles (scikit-learn's `make_circles`, `factor = 0.5`, `noise = 0.08`, raw
/// coordinates).
///
/// `n - n/2` points on the unit circle (label 0) and `n/2` on the circle of radius 0.5 (label 1),
/// angles evenly spaced over `[0, 2π)` on each, plus `N(0, 0.08²)` noise on both coordinates.
/// Mean ≈ (0, 0). (FFJORD multiplies this by 3.)
pub fn circles(n: usize, seed: u64) -> Dataset {
    const FACTOR: f64 = 0.5;
    const NOISE: f64 = 0.08;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n_out, n_in) = (n - n / 2, n / 2);
    let mut pts = Vec::with_capacity(n);
    for i in 0..n_out {
        let t = 2.0 * PI * i as f64 / n_out as f64;
        pts.push(([t.cos(), t.sin()], 0));
    }
    for i in 0..n_in {
        let t = 2.0 * PI * i as f64 / n_in as f64;
        pts.push(([FACTOR * t.cos(), FACTOR * t.sin()], 1));
    }
    for (p, _) in &mut pts {
        p[0] += NOISE * normal(&mut rng);
        p[1] += NOISE * normal(&mut rng);
    }
    finish("circles", pts, true, &mut rng)
}

/// A mixture of 8 Gaussians on a circle, as in FFJORD: centre `k` (the label, `k = 0..8`, drawn
/// uniformly) is `4 (cos kπ/4, sin kπ/4)`, a point is `(centre + 0.5·N(0, I)) / 1.414`.
///
/// So the centres lie at radius 4/1.414 ≈ 2.83 and each component has standard deviation
/// 0.5/1.414 ≈ 0.354. Mean ≈ (0, 0).
pub fn eight_gaussians(n: usize, seed: u64) -> Dataset {
    const SCALE: f64 = 4.0;
    const STD: f64 = 0.5;
    const DIVISOR: f64 = 1.414;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pts = Vec::with_capacity(n);
    for _ in 0..n {
        let zx = normal(&mut rng);
        let zy = normal(&mut rng);
        let k = below(&mut rng, 8) as u32;
        let t = f64::from(k) * PI / 4.0;
        let p = [
            (SCALE * t.cos() + STD * zx) / DIVISOR,
            (SCALE * t.sin() + STD * zy) / DIVISOR,
        ];
        pts.push((p, k));
    }
    finish("8gaussians", pts, true, &mut rng)
}

/// FFJORD's checkerboard: uniform on the 8 black squares of a 4x4 board of 2x2 squares covering
/// `[-4, 4)²`.
///
/// `x1 ~ U[-2, 2)`, `x2 = U[0, 1) - 2B + (floor(x1) mod 2)` with `B ~ Bernoulli(1/2)`, and the
/// point is `2 (x1, x2)`; so `floor(x/2) + floor(y/2)` is always even. No labels. Mean ≈ (0, 0).
pub fn checkerboard(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pts = Vec::with_capacity(n);
    for _ in 0..n {
        let x1 = uniform(&mut rng) * 4.0 - 2.0;
        let b = below(&mut rng, 2) as f64;
        let x2 = uniform(&mut rng) - 2.0 * b + x1.floor().rem_euclid(2.0);
        pts.push(([2.0 * x1, 2.0 * x2], 0));
    }
    finish("checkerboard", pts, false, &mut rng)
}

/// FFJORD's pinwheel: 5 curved arms.
///
/// Arm `c = i mod 5` (the label; the arms are equally filled) starts at angle `2πc/5`. A point
/// draws `r = 1 + 0.3·N(0,1)` (radial) and `s = 0.1·N(0,1)` (tangential), turns by
/// `θ = 2πc/5 + 0.25·exp(r)`, and is `2 (r cos θ + s sin θ, -r sin θ + s cos θ)`. Mean ≈ (0, 0).
pub fn pinwheel(n: usize, seed: u64) -> Dataset {
    const ARMS: usize = 5;
    const RADIAL_STD: f64 = 0.3;
    const TANGENTIAL_STD: f64 = 0.1;
    const RATE: f64 = 0.25;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pts = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % ARMS;
        let r = 1.0 + RADIAL_STD * normal(&mut rng);
        let s = TANGENTIAL_STD * normal(&mut rng);
        let theta = 2.0 * PI * c as f64 / ARMS as f64 + RATE * r.exp();
        let (sin, cos) = theta.sin_cos();
        pts.push(([2.0 * (r * cos + s * sin), 2.0 * (-r * sin + s * cos)], c as u32));
    }
    finish("pinwheel", pts, true, &mut rng)
}

/// FFJORD's two spirals ("2spirals"): two interleaved arms, point-symmetric about the origin.
///
/// For arm 0 (`n - n/2` points): `t = sqrt(U) · 3π` (540 degrees), the point is
/// `(-t cos t + 0.5 U', t sin t + 0.5 U'')` with independent uniforms; arm 1 (`n/2` points) is
/// the negation of such a point. Then everything is divided by 3 and `N(0, 0.1²)` noise is added
/// to both coordinates. Labels are the arm. Mean ≈ (0, 0); radius up to about 3.3.
pub fn spirals(n: usize, seed: u64) -> Dataset {
    const TURN: f64 = 3.0 * PI;
    const JITTER: f64 = 0.5;
    const DIVISOR: f64 = 3.0;
    const NOISE: f64 = 0.1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_first = n - n / 2;
    let mut pts = Vec::with_capacity(n);
    for i in 0..n {
        let t = uniform(&mut rng).sqrt() * TURN;
        let x = -t.cos() * t + JITTER * uniform(&mut rng);
        let y = t.sin() * t + JITTER * uniform(&mut rng);
        let (sign, arm) = if i < n_first { (1.0, 0) } else { (-1.0, 1) };
        let p = [
            sign * x / DIVISOR + NOISE * normal(&mut rng),
            sign * y / DIVISOR + NOISE * normal(&mut rng),
        ];
        pts.push((p, arm));
    }
    finish("spirals", pts, true, &mut rng)
}

/// The generator named `name` (one of [`NAMES`]; `2spirals` is accepted for `spirals`), with `n`
/// samples from `seed`.
///
/// # Errors
/// [`exactflow_kernels::Error::InvalidArgument`] for an unknown name (listing the valid ones), `n == 0` or
/// `n > MAX_SAMPLES`.
pub fn generate(name: &str, n: usize, seed: u64) -> Result<Dataset> {
    if n == 0 || n > MAX_SAMPLES {
        return Err(Error::invalid(
            "toy::generate",
            "sample count",
            format!("expected 1..={MAX_SAMPLES} samples, found {n}"),
        ));
    }
    Ok(match name {
        "moons" => moons(n, seed),
        "circles" => circles(n, seed),
        "8gaussians" => eight_gaussians(n, seed),
        "checkerboard" => checkerboard(n, seed),
        "pinwheel" => pinwheel(n, seed),
        "spirals" | "2spirals" => spirals(n, seed),
        _ => {
            return Err(Error::invalid(
                "toy::generate",
                "name",
                format!("unknown toy data set '{name}': expected one of {}", NAMES.join(", ")),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(d: &Dataset) -> [f64; 2] {
        let n = d.len() as f64;
        let mut m = [0.0; 2];
        for s in d.data.samples() {
            m[0] += s[0] / n;
            m[1] += s[1] / n;
        }
        m
    }

    fn assert_near(a: [f64; 2], b: [f64; 2], tol: f64, what: &str) {
        assert!(
            (a[0] - b[0]).abs() < tol && (a[1] - b[1]).abs() < tol,
            "{what}: {a:?} vs {b:?}"
        );
    }

    #[test]
    fn deterministic_per_seed_and_sized() {
        for name in NAMES {
            let a = generate(name, 501, 11).unwrap();
            assert_eq!(a.data.shape(), &[501, 2], "{name}");
            assert_eq!(a.name, name);
            assert_eq!(a.levels, None);
            let b = generate(name, 501, 11).unwrap();
            let bits = |d: &Dataset| d.data.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "{name}: bit-for-bit");
            assert_eq!(a.labels, b.labels);
            assert_ne!(a.data, generate(name, 501, 12).unwrap().data, "{name}: seed-dependent");
            assert!(a.data.as_slice().iter().all(|v| v.is_finite()));
            if let Some(l) = &a.labels {
                assert_eq!(l.len(), 501);
            }
            assert_eq!(generate(name, 1, 0).unwrap().len(), 1);
        }
        assert_eq!(
            generate("2spirals", 10, 0).unwrap(),
            generate("spirals", 10, 0).unwrap()
        );
    }

    #[test]
    fn generate_rejects_bad_requests() {
        let e = generate("swissroll", 10, 0).unwrap_err().to_string();
        assert!(
            e.contains("swissroll") && e.contains("8gaussians") && e.contains("pinwheel"),
            "{e}"
        );
        assert!(generate("moons", 0, 0).is_err());
        assert!(generate("moons", MAX_SAMPLES + 1, 0).is_err());
    }

    #[test]
    fn moons_geometry() {
        let d = moons(20_000, 1);
        assert_near(mean(&d), [0.5, 0.25], 0.01, "moons mean");
        let labels = d.labels.as_ref().unwrap();
        assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 10_000);
        for (s, &l) in d.data.samples().zip(labels) {
            assert!((-1.3..=2.3).contains(&s[0]) && (-0.8..=1.3).contains(&s[1]), "{s:?}");
            // Distance to the moon's own circle is noise-sized.
            let c = if l == 0 { [0.0, 0.0] } else { [1.0, 0.5] };
            let r = ((s[0] - c[0]).powi(2) + (s[1] - c[1]).powi(2)).sqrt();
            assert!((r - 1.0).abs() < 0.3, "{s:?} label {l}");
        }
    }

    #[test]
    fn circles_radii() {
        let d = circles(20_000, 2);
        assert_near(mean(&d), [0.0, 0.0], 0.01, "circles mean");
        let mut sum = [0.0; 2];
        for (s, &l) in d.data.samples().zip(d.labels.as_ref().unwrap()) {
            sum[l as usize] += (s[0] * s[0] + s[1] * s[1]).sqrt() / 10_000.0;
        }
        assert!((sum[0] - 1.0).abs() < 0.01 && (sum[1] - 0.5).abs() < 0.02, "{sum:?}");
    }

    #[test]
    fn eight_gaussians_modes() {
        let d = eight_gaussians(40_000, 3);
        assert_near(mean(&d), [0.0, 0.0], 0.03, "8gaussians mean");
        let mut counts = [0usize; 8];
        for (s, &k) in d.data.samples().zip(d.labels.as_ref().unwrap()) {
            counts[k as usize] += 1;
            let t = f64::from(k) * PI / 4.0;
            let c = [4.0 * t.cos() / 1.414, 4.0 * t.sin() / 1.414];
            let dist = ((s[0] - c[0]).powi(2) + (s[1] - c[1]).powi(2)).sqrt();
            assert!(dist < 6.0 * 0.354, "{s:?} far from centre {k}");
        }
        assert!(counts.iter().all(|&c| (c as f64 - 5000.0).abs() < 300.0), "{counts:?}");
    }

    #[test]
    fn checkerboard_squares() {
        let d = checkerboard(20_000, 4);
        assert_near(mean(&d), [0.0, 0.0], 0.05, "checkerboard mean");
        assert!(d.labels.is_none());
        let mut cells = std::collections::HashSet::new();
        for s in d.data.samples() {
            assert!((-4.0..4.0).contains(&s[0]) && (-4.0..4.0).contains(&s[1]), "{s:?}");
            let (i, j) = ((s[0] / 2.0).floor() as i64, (s[1] / 2.0).floor() as i64);
            assert_eq!((i + j).rem_euclid(2), 0, "{s:?} on a white square");
            cells.insert((i, j));
        }
        assert_eq!(cells.len(), 8);
    }

    #[test]
    fn pinwheel_arms() {
        let d = pinwheel(20_000, 5);
        assert_near(mean(&d), [0.0, 0.0], 0.05, "pinwheel mean");
        let labels = d.labels.as_ref().unwrap();
        for c in 0..5 {
            assert_eq!(labels.iter().filter(|&&l| l == c).count(), 4000);
        }
        let mean_r = d
            .data
            .samples()
            .map(|s| (s[0] * s[0] + s[1] * s[1]).sqrt())
            .sum::<f64>()
            / d.len() as f64;
        // |point| = 2 sqrt(r² + s²) with r ~ N(1, 0.3²), s ~ N(0, 0.1²): mean about 2.01.
        assert!((mean_r - 2.0).abs() < 0.05, "{mean_r}");
    }

    #[test]
    fn spirals_symmetric() {
        let d = spirals(20_000, 6);
        assert_near(mean(&d), [0.0, 0.0], 0.03, "spirals mean");
        let max_r = d
            .data
            .samples()
            .map(|s| (s[0] * s[0] + s[1] * s[1]).sqrt())
            .fold(0.0, f64::max);
        assert!(max_r > 2.8 && max_r < 4.0, "{max_r}");
        // Arm 0 at small t sits near (0.08, 0.08) on average (the jitter): the arms differ.
        let labels = d.labels.as_ref().unwrap();
        assert_eq!(labels.iter().filter(|&&l| l == 0).count(), 10_000);
    }
}
