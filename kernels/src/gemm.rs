//! General matrix multiply on row-major data: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! Operands are strided row-major views ([`MatSlice`], [`MatSliceMut`]): element (i, j) of a view
//! with leading dimension `ld` sits at `data[i * ld + j]`, so a sub-block of a larger row-major
//! matrix is a view without a copy. `op` is the identity or the transpose ([`MatSlice::t`]).
//!
//! [`gemm`] validates the shapes and dispatches through [`Real::gemm_kernel`]: faer's gemm for
//! `f32` and `f64`, a plain loop for every other scalar (the dual numbers). Both run on one thread
//! or, with [`Parallelism::Rayon`], on rayon's pool.
//!
//! The views and [`Parallelism`] are defined in the private `view` module, below `Real`, and
//! re-exported here, where they have always been reached.

use crate::error::{Error, Result};
use crate::real::Real;

pub use crate::view::{MatSlice, MatSliceMut, Parallelism};

/// `C = alpha * op(A) * op(B) + beta * C`, row-major, with shape checks.
///
/// `op(A)` is `m x k`, `op(B)` is `k x n`, `C` is `m x n`. With `beta == 0` the old contents of
/// `C` are ignored (so NaN there does not propagate), as in BLAS.
///
/// # Errors
/// [`Error::ShapeMismatch`] when the inner dimensions or the shape of `C` disagree.
///
/// # Examples
/// ```
/// use exactflow_kernels::gemm::{gemm, MatSlice, MatSliceMut, Parallelism};
/// # fn main() -> exactflow_kernels::Result<()> {
/// let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
/// let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
/// let mut c = [0.0; 4];
/// gemm(
///     1.0,
///     MatSlice::new(&a, 2, 2)?,
///     MatSlice::new(&b, 2, 2)?.t(), // B^T = [[5, 7], [6, 8]]
///     0.0,
///     MatSliceMut::new(&mut c, 2, 2)?,
///     Parallelism::Sequential,
/// )?;
/// assert_eq!(c, [17.0, 23.0, 39.0, 53.0]);
/// # Ok(())
/// # }
/// ```
pub fn gemm<T: Real>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
) -> Result<()> {
    if a.cols() != b.rows() {
        return Err(Error::ShapeMismatch {
            op: "gemm",
            expected: vec![a.cols(), b.cols()],
            found: vec![b.rows(), b.cols()],
        });
    }
    if c.rows != a.rows() || c.cols != b.cols() {
        return Err(Error::ShapeMismatch {
            op: "gemm",
            expected: vec![a.rows(), b.cols()],
            found: vec![c.rows, c.cols],
        });
    }
    T::gemm_kernel(alpha, a, b, beta, c, par);
    Ok(())
}

/// The generic loop behind [`Real::gemm_kernel`]'s default. Shapes must already be validated.
///
/// Row i of C is computed as `beta * C[i, :] + alpha * sum_p op(A)[i, p] * op(B)[p, :]`, so the
/// inner loop runs along a row of B when B is not transposed, and as a dot product otherwise;
/// rows are independent, which is how the rayon variant splits the work. An `alpha` or `beta`
/// is skipped only when [`Real::is_exact_zero`] (for a dual number, its derivative too).
pub fn generic_gemm<T: Real>(
    alpha: T,
    a: MatSlice<'_, T>,
    b: MatSlice<'_, T>,
    beta: T,
    c: MatSliceMut<'_, T>,
    par: Parallelism,
) {
    crate::ground::gemm(alpha, a, b, beta, c, par, T::is_exact_zero);
}

#[cfg(test)]
mod tests {
    use super::*;
    use autodiff::F1;

    /// Deterministic test values in [-1, 1): a fixed linear congruential stream.
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// op(X)(i, j) for a stored rows x cols matrix with leading dimension ld.
    fn at(data: &[f64], ld: usize, transposed: bool, i: usize, j: usize) -> f64 {
        if transposed { data[j * ld + i] } else { data[i * ld + j] }
    }

    /// The naive triple loop `alpha op(A) op(B) + beta C` in f64, on strided storage.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        (m, n, k): (usize, usize, usize),
        alpha: f64,
        a: (&[f64], usize, bool),
        b: (&[f64], usize, bool),
        beta: f64,
        c: &[f64],
        ldc: usize,
    ) -> Vec<f64> {
        let mut out = c.to_vec();
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| at(a.0, a.1, a.2, i, p) * at(b.0, b.1, b.2, p, j)).sum();
                let old = if beta == 0.0 { 0.0 } else { beta * c[i * ldc + j] };
                out[i * ldc + j] = alpha * s + old;
            }
        }
        out
    }

    /// Runs gemm for every transpose combination with padded leading dimensions, in the scalar
    /// type `T`, and compares with the naive loop (entries of op(A) op(B) are sums of k products of
    /// numbers in [-1, 1], so the rounding of either side is at most k u per entry, plus the
    /// beta C term).
    fn check_all<T: Real>(m: usize, n: usize, k: usize, eps: f64, par: Parallelism) {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2);
            let a64 = values(ar.max(1) * lda, (m * 31 + k) as u64);
            let b64 = values(br.max(1) * ldb, (n * 17 + k) as u64 + 5);
            let c64 = values(m.max(1) * ldc, 99);
            let (alpha, beta) = (0.75, -1.5);
            let expect = naive((m, n, k), alpha, (&a64, lda, ta), (&b64, ldb, tb), beta, &c64, ldc);
            let a: Vec<T> = a64.iter().map(|&v| T::lit(v)).collect();
            let b: Vec<T> = b64.iter().map(|&v| T::lit(v)).collect();
            let mut c: Vec<T> = c64.iter().map(|&v| T::lit(v)).collect();
            let av = MatSlice::strided(&a, ar, ac, lda).unwrap();
            let bv = MatSlice::strided(&b, br, bc, ldb).unwrap();
            let av = if ta { av.t() } else { av };
            let bv = if tb { bv.t() } else { bv };
            let cv = MatSliceMut::strided(&mut c, m, n, ldc).unwrap();
            gemm(T::lit(alpha), av, bv, T::lit(beta), cv, par).unwrap();
            for i in 0..m.max(1) {
                for j in 0..ldc {
                    let got = c[i * ldc + j].as_f64();
                    if i < m && j < n {
                        // |error| <= (k + 2) u (|alpha| k + |beta|) for inputs in [-1, 1].
                        let tol = (k as f64 + 2.0) * eps * (0.75 * k as f64 + 1.5);
                        assert!(
                            (got - expect[i * ldc + j]).abs() <= tol,
                            "{} {m}x{n}x{k} ta={ta} tb={tb} ({i}, {j}): {got} vs {}",
                            T::NAME,
                            expect[i * ldc + j]
                        );
                    } else {
                        // The padding between rows is never written.
                        assert_eq!(got, T::lit(c64[i * ldc + j]).as_f64(), "padding touched at ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn every_transpose_and_stride_matches_the_triple_loop() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 9, 33),
            (64, 65, 66),
            (4, 3, 0),
            (0, 3, 2),
            (2, 0, 2),
        ] {
            for par in [Parallelism::Sequential, Parallelism::Rayon(0)] {
                check_all::<f64>(m, n, k, f64::EPSILON, par);
                check_all::<f32>(m, n, k, f32::EPSILON as f64, par);
                check_all::<F1>(m, n, k, f64::EPSILON, par);
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        for par in [Parallelism::Sequential, Parallelism::Rayon(2)] {
            let mut c = [f64::NAN; 4];
            gemm(
                1.0,
                MatSlice::new(&a, 2, 2).unwrap(),
                MatSlice::new(&b, 2, 2).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
            let mut c = [f32::NAN; 4];
            let (af, bf) = (a.map(|v| v as f32), b.map(|v| v as f32));
            gemm(
                1.0f32,
                MatSlice::new(&af, 2, 2).unwrap(),
                MatSlice::new(&bf, 2, 2).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
            let mut c = [F1::cst(f64::NAN); 4];
            let (ad, bd) = (a.map(F1::cst), b.map(F1::cst));
            gemm(
                F1::cst(1.0),
                MatSlice::new(&ad, 2, 2).unwrap(),
                MatSlice::new(&bd, 2, 2).unwrap(),
                F1::cst(0.0),
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c.map(|v| v.x), [19.0, 22.0, 43.0, 50.0]);
            // An empty inner dimension with beta = 0 gives zeros, not the NaN.
            let mut c = [f64::NAN; 4];
            gemm(
                1.0,
                MatSlice::new(&[], 2, 0).unwrap(),
                MatSlice::new(&[], 0, 2).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                par,
            )
            .unwrap();
            assert_eq!(c, [0.0; 4]);
        }
    }

    #[test]
    fn rayon_equals_sequential_bit_for_bit_on_the_generic_path() {
        let (m, n, k) = (37, 29, 41);
        let a: Vec<F1> = values(m * k, 1).into_iter().map(F1::cst).collect();
        let b: Vec<F1> = values(k * n, 2).into_iter().map(F1::cst).collect();
        let c0: Vec<F1> = values(m * n, 3).into_iter().map(F1::cst).collect();
        let run = |par, tb: bool| {
            let mut c = c0.clone();
            let bv = if tb {
                MatSlice::new(&b, n, k).unwrap().t()
            } else {
                MatSlice::new(&b, k, n).unwrap()
            };
            gemm(
                F1::cst(1.25),
                MatSlice::new(&a, m, k).unwrap(),
                bv,
                F1::cst(0.5),
                MatSliceMut::new(&mut c, m, n).unwrap(),
                par,
            )
            .unwrap();
            c.iter().map(|v| v.x.to_bits()).collect::<Vec<_>>()
        };
        for tb in [false, true] {
            let seq = run(Parallelism::Sequential, tb);
            for t in [0, 1, 2, 3] {
                assert_eq!(run(Parallelism::Rayon(t), tb), seq, "Rayon({t}), tb = {tb}");
            }
        }
    }

    #[test]
    fn dual_alpha_and_beta_carry_their_derivatives() {
        // d/dt of (alpha(t) A B + beta(t) C) with alpha = 0 + t, beta = 1 + t: A B + C.
        let a = [F1::cst(2.0)];
        let b = [F1::cst(3.0)];
        let mut c = [F1::cst(5.0)];
        gemm(
            F1::var(0.0),
            MatSlice::new(&a, 1, 1).unwrap(),
            MatSlice::new(&b, 1, 1).unwrap(),
            F1::var(1.0),
            MatSliceMut::new(&mut c, 1, 1).unwrap(),
            Parallelism::Sequential,
        )
        .unwrap();
        assert_eq!((c[0].x, c[0].dx), (5.0, 11.0));
    }

    #[test]
    fn shape_errors() {
        let a = [0.0f64; 6];
        let mut c = [0.0f64; 4];
        assert!(matches!(
            gemm(
                1.0,
                MatSlice::new(&a, 2, 3).unwrap(),
                MatSlice::new(&a, 2, 3).unwrap(),
                0.0,
                MatSliceMut::new(&mut c, 2, 2).unwrap(),
                Parallelism::Sequential
            ),
            Err(Error::ShapeMismatch { op: "gemm", .. })
        ));
        assert!(matches!(
            gemm(
                1.0,
                MatSlice::new(&a, 2, 3).unwrap(),
                MatSlice::new(&a, 2, 3).unwrap().t(),
                0.0,
                MatSliceMut::new(&mut c[..3], 3, 1).unwrap(),
                Parallelism::Sequential
            ),
            Err(Error::ShapeMismatch { expected, found, .. }) if expected == vec![2, 2] && found == vec![3, 1]
        ));
        assert!(matches!(
            MatSlice::new(&a, 2, 2),
            Err(Error::LengthMismatch {
                expected: 4,
                found: 6,
                ..
            })
        ));
        assert!(matches!(
            MatSliceMut::new(&mut c, 3, 3),
            Err(Error::LengthMismatch {
                expected: 9,
                found: 4,
                ..
            })
        ));
        assert!(matches!(
            MatSlice::strided(&a, 2, 3, 2),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            MatSlice::strided(&a, 3, 2, 3),
            Err(Error::LengthMismatch {
                expected: 8,
                found: 6,
                ..
            })
        ));
        assert!(matches!(
            MatSliceMut::strided(&mut c, 2, 3, 3),
            Err(Error::LengthMismatch {
                expected: 6,
                found: 4,
                ..
            })
        ));
        // The last row of a strided view may stop at its last column.
        assert!(MatSlice::strided(&a, 2, 2, 4).is_ok());
    }

    #[test]
    fn parallelism_settings() {
        assert_eq!(Parallelism::Sequential.threads(), 1);
        assert_eq!(Parallelism::Rayon(3).threads(), 3);
        assert!(Parallelism::Rayon(0).threads() >= 1);
        assert_eq!(Parallelism::default(), Parallelism::Sequential);
    }
}
