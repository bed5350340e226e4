//! RealNVP's and Glow's squeeze: 2x2 space-to-depth, and its inverse.
//!
//! # Formula
//! [`Squeeze`] maps a sample `[C, H, W]` to `[4C, H/2, W/2]`:
//!
//! `z[4c + 2 dy + dx, i, j] = x[c, 2i + dy, 2j + dx]`  for `dy, dx` in {0, 1},
//!
//! which is PyTorch's `x.reshape(C, H/2, 2, W/2, 2).permute(0, 2, 4, 1, 3).reshape(4C, H/2, W/2)`
//! and the channel order of Glow's `squeeze2d` (each input channel becomes four consecutive output
//! channels: top-left, top-right, bottom-left, bottom-right of its 2x2 blocks). It only moves
//! elements, so `log|det| = 0`. [`Unsqueeze`] is its inverse as a layer of its own (depth-to-space,
//! `[4C, H, W] -> [C, 2H, 2W]`); `Squeeze::inverse` performs the same map.

use std::marker::PhantomData;

use exactflow_kernels::{Error, Real, Result};

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::tensor::Tensor;

/// For the squeeze of `[c, h, w]`: `src[k]` is the flat input index of flat output index `k`.
fn squeeze_map(c: usize, h: usize, w: usize) -> Vec<usize> {
    let (h2, w2) = (h / 2, w / 2);
    let mut src = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        for dy in 0..2 {
            for dx in 0..2 {
                for i in 0..h2 {
                    for j in 0..w2 {
                        src.push((ch * h + 2 * i + dy) * w + 2 * j + dx);
                    }
                }
            }
        }
    }
    src
}

/// `out[k] = x[src[k]]` per sample (gather) or `out[src[k]] = x[k]` (scatter), with the output's
/// sample shape `shape`.
fn reorder<T: Real>(x: &Tensor<T>, src: &[usize], shape: &[usize], gather: bool) -> Result<Tensor<T>> {
    let m = src.len().max(1);
    let mut out = vec![T::zero(); x.len()];
    for (os, xs) in out.chunks_exact_mut(m).zip(x.as_slice().chunks_exact(m)) {
        for (k, &s) in src.iter().enumerate() {
            if gather {
                os[k] = xs[s];
            } else {
                os[s] = xs[k];
            }
        }
    }
    let mut full = vec![x.batch()];
    full.extend_from_slice(shape);
    Tensor::new(&full, out)
}

/// `[C, H, W] -> [4C, H/2, W/2]`, `z[4c + 2dy + dx, i, j] = x[c, 2i + dy, 2j + dx]`, log-det 0.
/// No parameters.
#[derive(Clone, Debug)]
pub struct Squeeze<T: Real> {
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    src: Vec<usize>,
    _scalar: PhantomData<fn() -> T>,
}

/// `[4C, H, W] -> [C, 2H, 2W]`, the inverse of [`Squeeze`]:
/// `z[c, 2i + dy, 2j + dx] = x[4c + 2dy + dx, i, j]`, log-det 0. No parameters.
#[derive(Clone, Debug)]
pub struct Unsqueeze<T: Real> {
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    src: Vec<usize>,
    _scalar: PhantomData<fn() -> T>,
}

crate::no_params!(Squeeze);
crate::no_params!(Unsqueeze);

fn chw(op: &'static str, sample_shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *sample_shape {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok((c, h, w)),
        _ => Err(Error::invalid(
            op,
            "configuration",
            format!("needs an image sample shape [C, H, W] with positive extents, found {sample_shape:?}"),
        )),
    }
}

impl<T: Real> Squeeze<T> {
    /// The squeeze of samples of shape `[C, H, W]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank, a zero extent, or an odd `H` or `W`.
    pub fn new(sample_shape: &[usize]) -> Result<Self> {
        let (c, h, w) = chw("Squeeze", sample_shape)?;
        if h % 2 != 0 || w % 2 != 0 {
            return Err(Error::invalid(
                "Squeeze",
                "configuration",
                format!("needs an even height and width, found [C, H, W] = {sample_shape:?}"),
            ));
        }
        Ok(Squeeze {
            in_shape: sample_shape.to_vec(),
            out_shape: vec![4 * c, h / 2, w / 2],
            src: squeeze_map(c, h, w),
            _scalar: PhantomData,
        })
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Squeeze<U> {
        Squeeze {
            in_shape: self.in_shape.clone(),
            out_shape: self.out_shape.clone(),
            src: self.src.clone(),
            _scalar: PhantomData,
        }
    }
}

impl<T: Real> Unsqueeze<T> {
    /// The unsqueeze of samples of shape `[4C, H, W]` (to `[C, 2H, 2W]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank, a zero extent, or a channel count that is not a
    /// multiple of 4.
    pub fn new(sample_shape: &[usize]) -> Result<Self> {
        let (c4, h, w) = chw("Unsqueeze", sample_shape)?;
        if c4 % 4 != 0 {
            return Err(Error::invalid(
                "Unsqueeze",
                "configuration",
                format!("needs a channel count divisible by 4, found [C, H, W] = {sample_shape:?}"),
            ));
        }
        Ok(Unsqueeze {
            in_shape: sample_shape.to_vec(),
            out_shape: vec![c4 / 4, 2 * h, 2 * w],
            src: squeeze_map(c4 / 4, 2 * h, 2 * w),
            _scalar: PhantomData,
        })
    }

    /// The same layer in another scalar type.
    pub fn cast<U: Real>(&self) -> Unsqueeze<U> {
        Unsqueeze {
            in_shape: self.in_shape.clone(),
            out_shape: self.out_shape.clone(),
            src: self.src.clone(),
            _scalar: PhantomData,
        }
    }
}

/// The common body of the two layers: `gather_forward` is true for [`Squeeze`] (whose forward
/// gathers through the squeeze map) and false for [`Unsqueeze`] (whose forward scatters).
macro_rules! reorder_bijector {
    ($ty:ident, $name:literal, $gather_forward:expr) => {
        impl<T: Real> Bijector<T> for $ty<T> {
            fn kind(&self) -> &'static str {
                $name
            }

            fn constant_log_det(&self) -> bool {
                true
            }

            fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
                (self.in_shape.clone(), self.out_shape.clone())
            }

            fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
                check_input(self, concat!($name, "::forward"), x, cx, &self.in_shape)?;
                let z = reorder(x, &self.src, &self.out_shape, $gather_forward)?;
                Ok((z, vec![T::zero(); x.batch()]))
            }

            fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
                check_input(self, concat!($name, "::inverse"), z, cx, &self.out_shape)?;
                let x = reorder(z, &self.src, &self.in_shape, !$gather_forward)?;
                Ok((x, vec![T::zero(); z.batch()]))
            }

            fn forward_train(
                &mut self,
                x: &Tensor<T>,
                cx: Ctx<'_, T>,
                _pass: Pass,
            ) -> Result<(Tensor<T>, Vec<T>, Cache)> {
                let (z, ld) = self.forward(x, cx)?;
                let shape = z.shape().to_vec();
                Ok((z, ld, Cache::new($name, shape)))
            }

            /// A permutation's transpose is its inverse: `dL/dx` is `dL/dz` moved back.
            fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
                let shape: Vec<usize> = cache.take($name)?;
                check_grads(concat!($name, "::backward"), dz, dlogdet, &shape)?;
                Ok(InputGrad::input(reorder(
                    dz,
                    &self.src,
                    &self.in_shape,
                    !$gather_forward,
                )?))
            }

            crate::impl_cast!();
        }
    };
}

reorder_bijector!(Squeeze, "Squeeze", true);
reorder_bijector!(Unsqueeze, "Unsqueeze", false);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_ordering_by_hand() {
        // One channel, 4 x 4, values 0..16 row-major:
        //  0  1  2  3
        //  4  5  6  7
        //  8  9 10 11
        // 12 13 14 15
        let x = Tensor::from_fn(&[1, 1, 4, 4], |k| k as f64).unwrap();
        let s = Squeeze::<f64>::new(&[1, 4, 4]).unwrap();
        let (z, ld) = s.forward(&x, Ctx::NONE).unwrap();
        assert_eq!(z.shape(), &[1, 4, 2, 2]);
        assert_eq!(ld, vec![0.0]);
        #[rustfmt::skip]
        let expected = [
            0.0, 2.0, 8.0, 10.0, // (dy, dx) = (0, 0): top-left of each 2x2 block
            1.0, 3.0, 9.0, 11.0, // (0, 1): top-right
            4.0, 6.0, 12.0, 14.0, // (1, 0): bottom-left
            5.0, 7.0, 13.0, 15.0, // (1, 1): bottom-right
        ];
        assert_eq!(z.as_slice(), &expected);
        assert_eq!(s.inverse(&z, Ctx::NONE).unwrap().0, x);
    }

    #[test]
    fn two_channels_follow_pytorch_order() {
        // z[4c + 2dy + dx, i, j] = x[c, 2i + dy, 2j + dx] on [2, 2, 4].
        let (c, h, w) = (2, 2, 4);
        let x = Tensor::from_fn(&[1, c, h, w], |k| k as f64).unwrap();
        let s = Squeeze::<f64>::new(&[c, h, w]).unwrap();
        let (z, _) = s.forward(&x, Ctx::NONE).unwrap();
        for ch in 0..c {
            for dy in 0..2 {
                for dx in 0..2 {
                    for j in 0..w / 2 {
                        let got = z.get(&[0, 4 * ch + 2 * dy + dx, 0, j]).unwrap();
                        assert_eq!(got, x.get(&[0, ch, dy, 2 * j + dx]).unwrap());
                    }
                }
            }
        }
        let u = Unsqueeze::<f64>::new(&[4 * c, h / 2, w / 2]).unwrap();
        assert_eq!(u.sample_shapes(), (vec![8, 1, 2], vec![2, 2, 4]));
        assert_eq!(u.forward(&z, Ctx::NONE).unwrap().0, x);
        assert_eq!(u.inverse(&x, Ctx::NONE).unwrap().0, z);
    }

    #[test]
    fn bad_shapes_are_config_errors() {
        assert!(matches!(
            Squeeze::<f64>::new(&[1, 3, 4]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Squeeze::<f64>::new(&[1, 4, 5]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Squeeze::<f64>::new(&[4, 4]),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            Unsqueeze::<f64>::new(&[6, 2, 2]),
            Err(Error::InvalidArgument { .. })
        ));
        let s = Squeeze::<f64>::new(&[1, 2, 2]).unwrap();
        assert!(s.forward(&Tensor::zeros(&[1, 1, 2, 4]).unwrap(), Ctx::NONE).is_err());
    }
}
