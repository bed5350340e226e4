//! A fixed permutation of features (`[N, D]`) or channels (`[N, C, H, W]`).
//!
//! # Formula
//! Forward (data -> latent): `z[:, i] = x[:, perm[i]]` (output channel i is input channel
//! `perm[i]`, every pixel alike); inverse: `x[:, perm[i]] = z[:, i]`. A permutation matrix has
//! determinant +-1, so `log|det dz/dx| = 0` in both directions.
//!
//! RealNVP and Glow's "reverse" is `perm[i] = C - 1 - i`; Glow's "shuffle" is a fixed random
//! permutation, here drawn by Fisher-Yates ([`rand::seq::SliceRandom::shuffle`]) from
//! `ChaCha8Rng::seed_from_u64(seed)`, so a seed names the permutation on every platform.
//!
//! The indices are stored as the buffer parameter `perm` (`[C]`, the indices as values of the
//! scalar type), so checkpoints carry them. Integers are exact in a float up to `2 / eps`
//! (2^24 for f32), which bounds `C`; a loaded `perm` that is not a permutation of `0..C` is an
//! error at the next pass.

use exactflow_kernels::{Error, Real, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::actnorm::channels_and_pixels;
use crate::bijector::{Bijector, Cache, Mapped, Pass, check_grads, check_input};
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// Fails unless every index below `n` is exactly representable in `T` (`n <= 2 / eps`, 2^24 for
/// f32), so that a permutation stored as `T` values survives a round trip.
///
/// # Errors
/// [`Error::Config`] naming `op`.
pub(crate) fn check_index_exact<T: Real>(op: &str, n: usize) -> Result<()> {
    let limit = 2.0 / T::epsilon().as_f64();
    if n as f64 > limit {
        return Err(Error::Config(format!(
            "{op}: {n} channels cannot be stored exactly as {} indices (at most {limit})",
            T::NAME
        )));
    }
    Ok(())
}

/// Reads a permutation of `0..values.len()` stored as scalar values.
///
/// # Errors
/// [`Error::InvalidArgument`] when a value is not an integer in range or an index repeats.
pub(crate) fn read_permutation<T: Real>(op: &'static str, values: &[T]) -> Result<Vec<usize>> {
    let n = values.len();
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(n);
    for (i, v) in values.iter().enumerate() {
        let f = v.as_f64();
        if !(f >= 0.0 && f < n as f64 && f.fract() == 0.0) {
            return Err(Error::invalid(
                op,
                "permutation buffer",
                format!("entry {i} is {f}, expected an integer in 0..{n}"),
            ));
        }
        let k = f as usize;
        if std::mem::replace(&mut seen[k], true) {
            return Err(Error::invalid(
                op,
                "permutation buffer",
                format!("index {k} appears twice (entry {i})"),
            ));
        }
        out.push(k);
    }
    Ok(out)
}

/// Validates a permutation of `0..n` given as indices.
fn check_permutation(op: &str, perm: &[usize], n: usize) -> Result<()> {
    let mut seen = vec![false; n];
    if perm.len() != n || perm.iter().any(|&k| k >= n || std::mem::replace(&mut seen[k], true)) {
        return Err(Error::Config(format!("{op}: {perm:?} is not a permutation of 0..{n}")));
    }
    Ok(())
}

/// `out[:, i] = x[:, perm[i]]` on samples laid out as `[C, pixels]` (gather), or
/// `out[:, perm[i]] = x[:, i]` (scatter).
fn permute_channels<T: Real>(x: &Tensor<T>, perm: &[usize], pixels: usize, gather: bool) -> Tensor<T> {
    let mut out = x.zeros_like();
    let m = x.sample_len().max(1);
    for (os, xs) in out.as_mut_slice().chunks_exact_mut(m).zip(x.as_slice().chunks_exact(m)) {
        for (i, &p) in perm.iter().enumerate() {
            let (dst, src) = if gather { (i, p) } else { (p, i) };
            os[dst * pixels..(dst + 1) * pixels].copy_from_slice(&xs[src * pixels..(src + 1) * pixels]);
        }
    }
    out
}

/// A fixed channel (or feature) permutation `z[:, i] = x[:, perm[i]]`, log-det 0. Its only
/// parameter is the buffer `perm` (`[C]`).
#[derive(Clone, Debug)]
pub struct Permutation<T: Real> {
    /// `[C]`, buffer: the indices `perm[i]` as scalar values.
    pub perm: Param<T>,
    sample_shape: Vec<usize>,
    pixels: usize,
}

impl<T: Real> Permutation<T> {
    /// The permutation `z[:, i] = x[:, perm[i]]` of samples of shape `[C]` or `[C, H, W]`.
    ///
    /// # Errors
    /// [`Error::Config`] for another rank, a zero extent, a `perm` that is not a permutation of
    /// `0..C`, or `C` above the exact-integer range of `T`.
    pub fn new(sample_shape: &[usize], perm: &[usize]) -> Result<Self> {
        let (c, pixels) = channels_and_pixels("Permutation", sample_shape)?;
        check_index_exact::<T>("Permutation", c)?;
        check_permutation("Permutation", perm, c)?;
        Ok(Permutation {
            perm: Param::buffer(Tensor::from_fn(&[c], |i| T::lit(perm[i] as f64))?),
            sample_shape: sample_shape.to_vec(),
            pixels,
        })
    }

    /// The reversal `perm[i] = C - 1 - i` (RealNVP's and Glow's "reverse").
    ///
    /// # Errors
    /// As [`Permutation::new`].
    pub fn reverse(sample_shape: &[usize]) -> Result<Self> {
        let (c, _) = channels_and_pixels("Permutation::reverse", sample_shape)?;
        Self::new(sample_shape, &(0..c).rev().collect::<Vec<_>>())
    }

    /// A fixed random permutation (Glow's "shuffle"): Fisher-Yates on `0..C` driven by
    /// `ChaCha8Rng::seed_from_u64(seed)`.
    ///
    /// # Errors
    /// As [`Permutation::new`].
    pub fn shuffle(sample_shape: &[usize], seed: u64) -> Result<Self> {
        let (c, _) = channels_and_pixels("Permutation::shuffle", sample_shape)?;
        let mut perm: Vec<usize> = (0..c).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Self::new(sample_shape, &perm)
    }

    /// The indices `perm[i]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the buffer (e.g. loaded from a checkpoint) is not a
    /// permutation of `0..C`.
    pub fn indices(&self) -> Result<Vec<usize>> {
        read_permutation("Permutation", self.perm.values())
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Permutation<U> {
        Permutation {
            perm: self.perm.cast(),
            sample_shape: self.sample_shape.clone(),
            pixels: self.pixels,
        }
    }
}

impl<T: Real> Params<T> for Permutation<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "perm"), &self.perm);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "perm"), &mut self.perm);
    }
}

struct PermutationCache {
    perm: Vec<usize>,
    shape: Vec<usize>,
}

impl<T: Real> Bijector<T> for Permutation<T> {
    fn kind(&self) -> &'static str {
        "Permutation"
    }

    fn constant_log_det(&self) -> bool {
        true
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// `z[:, i] = x[:, perm[i]]`, log-det 0.
    fn forward(&self, x: &Tensor<T>) -> Result<Mapped<T>> {
        check_input(self, "Permutation::forward", x, &self.sample_shape)?;
        let perm = self.indices()?;
        Ok((
            permute_channels(x, &perm, self.pixels, true),
            vec![T::zero(); x.batch()],
        ))
    }

    /// `x[:, perm[i]] = z[:, i]`, log-det 0.
    fn inverse(&self, z: &Tensor<T>) -> Result<Mapped<T>> {
        check_input(self, "Permutation::inverse", z, &self.sample_shape)?;
        let perm = self.indices()?;
        Ok((
            permute_channels(z, &perm, self.pixels, false),
            vec![T::zero(); z.batch()],
        ))
    }

    fn forward_train(&mut self, x: &Tensor<T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, "Permutation::forward_train", x, &self.sample_shape)?;
        let perm = self.indices()?;
        let z = permute_channels(x, &perm, self.pixels, true);
        let cache = PermutationCache {
            perm,
            shape: x.shape().to_vec(),
        };
        Ok((z, vec![T::zero(); x.batch()], Cache::new("Permutation", cache)))
    }

    /// `dL/dx[:, perm[i]] = dL/dz[:, i]` (the transpose of a permutation is its inverse).
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<Tensor<T>> {
        let c: PermutationCache = cache.take("Permutation")?;
        check_grads("Permutation::backward", dz, dlogdet, &c.shape)?;
        Ok(permute_channels(dz, &c.perm, self.pixels, false))
    }

    crate::impl_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_and_shuffle_permute_channels() {
        let x = Tensor::from_fn(&[2, 3, 1, 2], |k| k as f64).unwrap();
        let p = Permutation::<f64>::reverse(&[3, 1, 2]).unwrap();
        let (z, ld) = p.forward(&x).unwrap();
        assert_eq!(
            z.as_slice(),
            &[4.0, 5.0, 2.0, 3.0, 0.0, 1.0, 10.0, 11.0, 8.0, 9.0, 6.0, 7.0]
        );
        assert_eq!(ld, vec![0.0, 0.0]);
        assert_eq!(p.inverse(&z).unwrap().0, x);

        let a = Permutation::<f32>::shuffle(&[16], 7).unwrap().indices().unwrap();
        let b = Permutation::<f64>::shuffle(&[16], 7).unwrap().indices().unwrap();
        assert_eq!(a, b, "a seed names one permutation whatever the scalar type");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
        assert_ne!(a, (0..16).collect::<Vec<_>>());
        assert_ne!(a, Permutation::<f64>::shuffle(&[16], 8).unwrap().indices().unwrap());
    }

    #[test]
    fn corrupt_buffer_and_bad_config_are_errors() {
        assert!(Permutation::<f64>::new(&[3], &[0, 1, 1]).is_err());
        assert!(Permutation::<f64>::new(&[3], &[0, 1]).is_err());
        assert!(Permutation::<f64>::new(&[3, 2], &[0, 1, 2]).is_err());
        let mut p = Permutation::<f64>::new(&[3], &[2, 0, 1]).unwrap();
        let x = Tensor::new(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap();
        assert_eq!(p.forward(&x).unwrap().0.as_slice(), &[3.0, 1.0, 2.0]);
        for bad in [[0.0, 0.0, 1.0], [0.5, 1.0, 2.0], [0.0, 1.0, 3.0], [-1.0, 1.0, 2.0]] {
            p.perm.value.as_mut_slice().copy_from_slice(&bad);
            assert!(p.forward(&x).is_err(), "{bad:?}");
        }
        assert!(check_index_exact::<f32>("t", 1 << 24).is_ok());
        assert!(check_index_exact::<f32>("t", (1 << 24) + 1).is_err());
    }
}
