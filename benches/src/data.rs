//! Seeded random inputs for the benchmarks: a small xorshift generator and the matrices built
//! from it. No external crate, so the inputs are the same on every machine and every version.

use exactflow_kernels::{Matrix, Real};

/// The seed every bench starts from (offset by the size, so each size gets its own matrix).
pub const SEED: u64 = 0x5eed_e8ac_7f10;

/// Marsaglia's xorshift64* generator: fast, reproducible, good enough for benchmark inputs
/// (not for statistics).
#[derive(Clone, Debug)]
pub struct XorShift {
    state: u64,
}

impl XorShift {
    /// A generator from a seed; the seed is scrambled by splitmix64 so that nearby seeds (and 0)
    /// give unrelated streams.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift {
            state: if z == 0 { 1 } else { z },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A dense `n x n` matrix with independent entries uniform in `[-1, 1)`: the usual LU timing
/// matrix (LAPACK's timing suite uses the same). Its condition number grows roughly like n (about
/// 1e4 at n = 2048), harmless for a log-det in f64 and f32, and partial pivoting does real row
/// interchanges on it, as it would on a trained 1x1-convolution weight.
pub fn dense_matrix(n: usize, seed: u64) -> Matrix<f64> {
    let mut rng = XorShift::new(seed);
    Matrix::from_fn(n, n, |_, _| rng.uniform(-1.0, 1.0))
}

/// A lower triangular `n x n` matrix: diagonal entries of magnitude uniform in `[0.5, 2)` with a
/// random sign (so the log-det is finite and the sign non-trivial), entries below the diagonal
/// uniform in `[-1, 1)`, zeros above.
pub fn lower_triangular(n: usize, seed: u64) -> Matrix<f64> {
    let mut rng = XorShift::new(seed);
    Matrix::from_fn(n, n, |i, j| {
        if j > i {
            0.0
        } else if i == j {
            let m = rng.uniform(0.5, 2.0);
            if rng.next_u64() & 1 == 1 { -m } else { m }
        } else {
            rng.uniform(-1.0, 1.0)
        }
    })
}

/// `len` values uniform in `[lo, hi)`, converted to `T`.
pub fn uniform_vec<T: Real>(len: usize, lo: f64, hi: f64, seed: u64) -> Vec<T> {
    let mut rng = XorShift::new(seed);
    (0..len).map(|_| T::lit(rng.uniform(lo, hi))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_reproducible_and_in_range() {
        let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
        for _ in 0..1000 {
            let v = a.uniform(-1.0, 1.0);
            assert_eq!(v, b.uniform(-1.0, 1.0));
            assert!((-1.0..1.0).contains(&v));
        }
        assert_ne!(XorShift::new(0).next_u64(), XorShift::new(1).next_u64());
    }

    #[test]
    fn lower_triangular_is_lower_with_a_bounded_diagonal() {
        let l = lower_triangular(20, SEED);
        for i in 0..20 {
            assert!((0.5..2.0).contains(&l[(i, i)].abs()));
            for j in i + 1..20 {
                assert_eq!(l[(i, j)], 0.0);
            }
        }
    }
}
