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
//! The indices are stored as the integer buffer `perm` (`[C]`, an [`IntBuffer`]), so checkpoints
//! carry them exactly; a loaded `perm` that is not a permutation of `0..C` is refused when it is
//! set, never at a later pass.

use exactflow_kernels::{Error, Real, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::actnorm::channels_and_pixels;
use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::params::{IntBuffer, Param, Params, join};
use crate::tensor::Tensor;

/// Validates a permutation of `0..n` given as indices.
fn check_permutation(op: &'static str, perm: &[usize], n: usize) -> Result<()> {
    let mut seen = vec![false; n];
    if perm.len() != n || perm.iter().any(|&k| k >= n || std::mem::replace(&mut seen[k], true)) {
        return Err(Error::invalid(
            op,
            "configuration",
            format!("{perm:?} is not a permutation of 0..{n}"),
        ));
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
/// state is the integer buffer `perm` (`[C]`).
#[derive(Clone, Debug)]
pub struct Permutation<T: Real> {
    /// `[C]`: the indices `perm[i]`.
    pub perm: IntBuffer,
    sample_shape: Vec<usize>,
    pixels: usize,
    _scalar: std::marker::PhantomData<fn() -> T>,
}

impl<T: Real> Permutation<T> {
    /// The permutation `z[:, i] = x[:, perm[i]]` of samples of shape `[C]` or `[C, H, W]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank, a zero extent, a `perm` that is not a permutation of
    /// `0..C`.
    pub fn new(sample_shape: &[usize], perm: &[usize]) -> Result<Self> {
        let (c, pixels) = channels_and_pixels("Permutation", sample_shape)?;
        check_permutation("Permutation", perm, c)?;
        Ok(Permutation {
            perm: IntBuffer::permutation(perm)?,
            sample_shape: sample_shape.to_vec(),
            pixels,
            _scalar: std::marker::PhantomData,
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
    pub fn indices(&self) -> Vec<usize> {
        self.perm.indices()
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Permutation<U> {
        Permutation {
            perm: self.perm.clone(),
            sample_shape: self.sample_shape.clone(),
            pixels: self.pixels,
            _scalar: std::marker::PhantomData,
        }
    }
}

impl<T: Real> Params<T> for Permutation<T> {
    fn visit_params(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Param<T>)) {}

    fn visit_params_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Param<T>)) {}

    fn visit_int(&self, prefix: &str, f: &mut dyn FnMut(&str, &IntBuffer)) {
        f(&join(prefix, "perm"), &self.perm);
    }

    fn visit_int_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut IntBuffer)) {
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
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Permutation::forward", x, cx, &self.sample_shape)?;
        let perm = self.indices();
        Ok((
            permute_channels(x, &perm, self.pixels, true),
            vec![T::zero(); x.batch()],
        ))
    }

    /// `x[:, perm[i]] = z[:, i]`, log-det 0.
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "Permutation::inverse", z, cx, &self.sample_shape)?;
        let perm = self.indices();
        Ok((
            permute_channels(z, &perm, self.pixels, false),
            vec![T::zero(); z.batch()],
        ))
    }

    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, _pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, "Permutation::forward_train", x, cx, &self.sample_shape)?;
        let perm = self.indices();
        let z = permute_channels(x, &perm, self.pixels, true);
        let cache = PermutationCache {
            perm,
            shape: x.shape().to_vec(),
        };
        Ok((z, vec![T::zero(); x.batch()], Cache::new("Permutation", cache)))
    }

    /// `dL/dx[:, perm[i]] = dL/dz[:, i]` (the transpose of a permutation is its inverse).
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let c: PermutationCache = cache.take("Permutation")?;
        check_grads("Permutation::backward", dz, dlogdet, &c.shape)?;
        Ok(InputGrad::input(permute_channels(dz, &c.perm, self.pixels, false)))
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
        let (z, ld) = p.forward(&x, Ctx::NONE).unwrap();
        assert_eq!(
            z.as_slice(),
            &[4.0, 5.0, 2.0, 3.0, 0.0, 1.0, 10.0, 11.0, 8.0, 9.0, 6.0, 7.0]
        );
        assert_eq!(ld, vec![0.0, 0.0]);
        assert_eq!(p.inverse(&z, Ctx::NONE).unwrap().0, x);

        let a = Permutation::<f32>::shuffle(&[16], 7).unwrap().indices();
        let b = Permutation::<f64>::shuffle(&[16], 7).unwrap().indices();
        assert_eq!(a, b, "a seed names one permutation whatever the scalar type");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
        assert_ne!(a, (0..16).collect::<Vec<_>>());
        assert_ne!(a, Permutation::<f64>::shuffle(&[16], 8).unwrap().indices());
    }

    #[test]
    fn corrupt_buffer_and_bad_config_are_errors() {
        assert!(Permutation::<f64>::new(&[3], &[0, 1, 1]).is_err());
        assert!(Permutation::<f64>::new(&[3], &[0, 1]).is_err());
        assert!(Permutation::<f64>::new(&[3, 2], &[0, 1, 2]).is_err());
        let mut p = Permutation::<f64>::new(&[3], &[2, 0, 1]).unwrap();
        let x = Tensor::new(&[1, 3], vec![1.0, 2.0, 3.0]).unwrap();
        assert_eq!(p.forward(&x, Ctx::NONE).unwrap().0.as_slice(), &[3.0, 1.0, 2.0]);
        // A corrupt buffer (e.g. from a checkpoint) is refused when set and leaves the layer as
        // it was.
        for bad in [vec![0, 0, 1], vec![0, 1, 3], vec![-1, 1, 2], vec![0, 1]] {
            assert!(p.perm.set(bad.clone()).is_err(), "{bad:?}");
            assert_eq!(p.forward(&x, Ctx::NONE).unwrap().0.as_slice(), &[3.0, 1.0, 2.0]);
        }
    }
}
