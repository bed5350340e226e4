//! Glow's activation normalization: a per-channel affine map with data-dependent initialization.
//!
//! # Formula
//! On images `[N, C, H, W]` (and on vectors `[N, D]`, read as `C = D` channels of one pixel),
//! forward (data -> latent):
//!
//! `z[n, c, h, w] = (x[n, c, h, w] + bias[c]) * exp(logs[c])`,
//! `log|det dz/dx| = H * W * sum_c logs[c]` for every sample (Glow's form);
//!
//! inverse `x = z * exp(-logs) - bias`, log-det `-H * W * sum_c logs[c]`.
//!
//! # Initialization
//! The first `forward_train(x, Pass::Train)` of an uninitialized layer sets, per channel,
//! `bias = -mean` and `logs = -ln(std + eps)` over the batch and the pixels (population std,
//! [`ACTNORM_EPS`] = 1e-6 as in Glow), so that this batch leaves the layer with zero mean and a
//! variance of `(std / (std + eps))^2`, i.e. 1 up to `2 eps / std`. The statistics are computed in
//! f64 from the values alone (for dual numbers their derivative parts are ignored: the
//! initialization sets parameters, it is not part of the differentiated map). A channel that is
//! constant over the batch (e.g. a batch of one sample on `[N, D]` data) has std 0 and gets
//! `logs = -ln(eps) ~ 13.8`, a scale of 1e6, as in Glow: initialize on a representative batch.
//!
//! The flag `initialized` is a buffer parameter (`[1]`, 0 or 1) saved with the model, so loading a
//! checkpoint restores it and never re-initializes (the bug nflows, normflows and FrEIA shipped).
//! `forward` and `inverse` of an uninitialized layer use the current parameters (the identity at
//! construction), and `Pass::Replay` never initializes.

use exactflow_kernels::{Error, Real, Result};

use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::params::{IntBuffer, Param, Params, join};
use crate::tensor::Tensor;

/// The `eps` of ActNorm's initialization `logs = -ln(std + eps)` (Glow's value).
pub const ACTNORM_EPS: f64 = 1e-6;

/// `(C, pixels)` of a sample shape `[C]` (one pixel) or `[C, H, W]` (`H * W` pixels): the layout
/// the channel-wise layers (ActNorm, 1x1 convolutions, permutations) work on, each sample being a
/// row-major `[C, pixels]` block.
///
/// # Errors
/// [`Error::InvalidArgument`] for another rank or a zero extent.
pub(crate) fn channels_and_pixels(op: &'static str, sample_shape: &[usize]) -> Result<(usize, usize)> {
    let (c, hw) = match *sample_shape {
        [c] => (c, 1),
        [c, h, w] => (c, h * w),
        _ => {
            return Err(Error::invalid(
                op,
                "configuration",
                format!("needs a sample shape [C] or [C, H, W], found {sample_shape:?}"),
            ));
        }
    };
    if sample_shape.contains(&0) {
        return Err(Error::invalid(
            op,
            "configuration",
            format!("needs positive extents, found sample shape {sample_shape:?}"),
        ));
    }
    Ok((c, hw))
}

/// Per-channel affine normalization `z = (x + bias) * exp(logs)` with log-det
/// `H * W * sum(logs)` per sample (see the module documentation). Parameters: `bias` `[C]`,
/// `logs` `[C]` (trainable) and `initialized` `[1]` (buffer, 0 or 1).
#[derive(Clone, Debug)]
pub struct ActNorm<T: Real> {
    /// `[C]`, added before scaling.
    pub bias: Param<T>,
    /// `[C]`, the log of the per-channel scale.
    pub logs: Param<T>,
    /// `[1]`, flag: set once the data-dependent initialization has run (or was loaded).
    pub initialized: IntBuffer,
    sample_shape: Vec<usize>,
    channels: usize,
    pixels: usize,
}

struct ActNormCache<T> {
    z: Tensor<T>,
    scale: Vec<T>,
}

impl<T: Real> ActNorm<T> {
    /// An uninitialized ActNorm (the identity: `bias = 0`, `logs = 0`, `initialized = 0`) for
    /// samples of shape `[C]` or `[C, H, W]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank or a zero extent.
    pub fn new(sample_shape: &[usize]) -> Result<Self> {
        let (channels, pixels) = channels_and_pixels("ActNorm", sample_shape)?;
        Ok(ActNorm {
            bias: Param::trainable(Tensor::zeros(&[channels])?),
            logs: Param::trainable(Tensor::zeros(&[channels])?),
            initialized: IntBuffer::flag(false),
            sample_shape: sample_shape.to_vec(),
            channels,
            pixels,
        })
    }

    /// Whether the data-dependent initialization has run (or a checkpoint set the flag).
    pub fn is_initialized(&self) -> bool {
        self.initialized.is_set()
    }

    /// Runs the data-dependent initialization on `x` now: per channel `bias = -mean`,
    /// `logs = -ln(std + ACTNORM_EPS)` over the batch and pixels, and sets `initialized = 1`.
    /// Called by the first `forward_train(x, Pass::Train)` of an uninitialized layer.
    ///
    /// # Errors
    /// A wrong shape or non-finite input; [`Error::Empty`] for an empty batch.
    pub fn initialize(&mut self, x: &Tensor<T>) -> Result<()> {
        x.expect_sample_shape("ActNorm::initialize", &self.sample_shape)?;
        x.check_finite("ActNorm::initialize", "input")?;
        if x.batch() == 0 {
            return Err(Error::Empty {
                op: "ActNorm::initialize",
                what: "batch (the data-dependent initialization needs at least one sample)",
            });
        }
        let (c, hw) = (self.channels, self.pixels);
        let count = (x.batch() * hw) as f64;
        let mut sum = vec![0.0f64; c];
        for s in x.samples() {
            for (ch, row) in s.chunks_exact(hw).enumerate() {
                sum[ch] += row.iter().map(|v| v.as_f64()).sum::<f64>();
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        // Two-pass variance: the mean is subtracted first, so no cancellation.
        let mut sq = vec![0.0f64; c];
        for s in x.samples() {
            for (ch, row) in s.chunks_exact(hw).enumerate() {
                sq[ch] += row.iter().map(|v| (v.as_f64() - mean[ch]).powi(2)).sum::<f64>();
            }
        }
        for ch in 0..c {
            let std = (sq[ch] / count).sqrt();
            self.bias.value.as_mut_slice()[ch] = T::lit(-mean[ch]);
            self.logs.value.as_mut_slice()[ch] = T::lit(-(std + ACTNORM_EPS).ln());
        }
        self.initialized = IntBuffer::flag(true);
        Ok(())
    }

    /// The same layer (parameters and flag) in another scalar type.
    pub fn cast<U: Real>(&self) -> ActNorm<U> {
        ActNorm {
            bias: self.bias.cast(),
            logs: self.logs.cast(),
            initialized: self.initialized.clone(),
            sample_shape: self.sample_shape.clone(),
            channels: self.channels,
            pixels: self.pixels,
        }
    }

    /// `H * W * sum(logs)`.
    fn log_det(&self) -> T {
        let s = self.logs.values().iter().fold(T::zero(), |acc, &v| acc + v);
        T::lit(self.pixels as f64) * s
    }

    /// `out = (x + shift) * scale` per channel.
    fn apply(&self, x: &Tensor<T>, shift: &[T], scale: &[T], add_first: bool) -> Tensor<T> {
        let mut out = x.clone();
        let hw = self.pixels;
        let m = x.sample_len().max(1);
        for s in out.as_mut_slice().chunks_exact_mut(m) {
            for (ch, row) in s.chunks_exact_mut(hw).enumerate() {
                let (b, e) = (shift[ch], scale[ch]);
                for v in row {
                    *v = if add_first { (*v + b) * e } else { *v * e + b };
                }
            }
        }
        out
    }

    fn forward_map(&self, x: &Tensor<T>) -> (Tensor<T>, Vec<T>, Vec<T>) {
        let scale: Vec<T> = self.logs.values().iter().map(|v| v.exp()).collect();
        let z = self.apply(x, self.bias.values(), &scale, true);
        (z, vec![self.log_det(); x.batch()], scale)
    }
}

impl<T: Real> Params<T> for ActNorm<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "bias"), &self.bias);
        f(&join(prefix, "logs"), &self.logs);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "bias"), &mut self.bias);
        f(&join(prefix, "logs"), &mut self.logs);
    }

    fn visit_int(&self, prefix: &str, f: &mut dyn FnMut(&str, &IntBuffer)) {
        f(&join(prefix, "initialized"), &self.initialized);
    }

    fn visit_int_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut IntBuffer)) {
        f(&join(prefix, "initialized"), &mut self.initialized);
    }
}

impl<T: Real> Bijector<T> for ActNorm<T> {
    fn kind(&self) -> &'static str {
        "ActNorm"
    }

    fn constant_log_det(&self) -> bool {
        true
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// `z = (x + bias) * exp(logs)`, log-det `H * W * sum(logs)`.
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "ActNorm::forward", x, cx, &self.sample_shape)?;
        let (z, ld, _) = self.forward_map(x);
        Ok((z, ld))
    }

    /// `x = z * exp(-logs) - bias`, log-det `-H * W * sum(logs)`.
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "ActNorm::inverse", z, cx, &self.sample_shape)?;
        let inv: Vec<T> = self.logs.values().iter().map(|v| (-*v).exp()).collect();
        let neg_bias: Vec<T> = self.bias.values().iter().map(|&b| -b).collect();
        let x = self.apply(z, &neg_bias, &inv, false);
        Ok((x, vec![-self.log_det(); z.batch()]))
    }

    /// Initializes from `x` first when `pass` is `Train` and the layer is uninitialized.
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, "ActNorm::forward_train", x, cx, &self.sample_shape)?;
        if pass == Pass::Train && !self.is_initialized() {
            self.initialize(x)?;
        }
        let (z, ld, scale) = self.forward_map(x);
        Ok((z.clone(), ld, Cache::new("ActNorm", ActNormCache { z, scale })))
    }

    /// `dL/dx = dz * exp(logs)`, `dL/dbias_c = sum dz * exp(logs_c)`,
    /// `dL/dlogs_c = sum dz * z + H * W * sum_n dlogdet_n` (sums over the batch and pixels).
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let ActNormCache { z, scale } = cache.take::<ActNormCache<T>>("ActNorm")?;
        check_grads("ActNorm::backward", dz, dlogdet, z.shape())?;
        let (c, hw) = (self.channels, self.pixels);
        let m = (c * hw).max(1);
        let mut dx = dz.clone();
        let mut dbias = vec![T::zero(); c];
        let ld_total = dlogdet.iter().fold(T::zero(), |acc, &g| acc + g);
        let mut dlogs = vec![ld_total * T::lit(hw as f64); c];
        for (ds, zs) in dx.as_mut_slice().chunks_exact_mut(m).zip(z.as_slice().chunks_exact(m)) {
            for (ch, (drow, zrow)) in ds.chunks_exact_mut(hw).zip(zs.chunks_exact(hw)).enumerate() {
                for (g, &zv) in drow.iter_mut().zip(zrow) {
                    dlogs[ch] += *g * zv;
                    *g *= scale[ch];
                    dbias[ch] += *g;
                }
            }
        }
        self.bias.accumulate(&dbias);
        self.logs.accumulate(&dlogs);
        Ok(InputGrad::input(dx))
    }

    crate::impl_cast!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_batch() -> Tensor<f64> {
        // [3, 2, 2, 3], channel 0 around 5 with spread, channel 1 around -2.
        Tensor::from_fn(&[3, 2, 2, 3], |k| {
            let ch = (k / 6) % 2;
            let v = ((k * 37 % 11) as f64) / 3.0;
            if ch == 0 { 5.0 + v } else { -2.0 + 0.1 * v }
        })
        .unwrap()
    }

    /// Per-channel mean and (population) variance of an `[N, C, H, W]` tensor.
    fn moments(z: &Tensor<f64>) -> Vec<(f64, f64)> {
        let (c, hw) = (z.shape()[1], z.shape()[2] * z.shape()[3]);
        (0..c)
            .map(|ch| {
                let vals: Vec<f64> = z.samples().flat_map(|s| s[ch * hw..(ch + 1) * hw].to_vec()).collect();
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                (mean, var)
            })
            .collect()
    }

    #[test]
    fn initialization_normalizes_each_channel() {
        let x = image_batch();
        let mut a = ActNorm::<f64>::new(&[2, 2, 3]).unwrap();
        assert!(!a.is_initialized());
        let (z, ld, _) = a.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        assert!(a.is_initialized());
        // Mean 0 to rounding; variance (std / (std + eps))^2 = 1 - O(eps / std), std >= 0.1 here.
        for (mean, var) in moments(&z) {
            assert!(mean.abs() < 1e-12, "mean {mean}");
            assert!((var - 1.0).abs() < 1e-4, "variance {var}");
        }
        let expected = 6.0 * a.logs.values().iter().sum::<f64>();
        assert!(ld.iter().all(|&l| (l - expected).abs() < 1e-12));
        // A second training batch does not re-initialize.
        let before = (a.bias.value.clone(), a.logs.value.clone());
        a.forward_train(&x.map(|v| 3.0 * v + 1.0), Ctx::NONE, Pass::Train)
            .unwrap();
        assert_eq!((a.bias.value.clone(), a.logs.value.clone()), before);
    }

    #[test]
    fn loaded_flag_prevents_reinitialization() {
        let mut a = ActNorm::<f64>::new(&[2, 2, 3]).unwrap();
        // What loading a checkpoint does: every named tensor is assigned, the flag included.
        a.visit_params_mut("", &mut |name, p| {
            let v = match name {
                "bias" => vec![0.5, -0.25],
                "logs" => vec![0.1, -0.2],
                other => panic!("unexpected parameter {other}"),
            };
            p.value.as_mut_slice().copy_from_slice(&v);
        });
        a.visit_int_mut("", &mut |name, b| {
            assert_eq!(name, "initialized");
            b.set(vec![1]).unwrap();
        });
        let x = image_batch();
        let (z, _, _) = a.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        assert_eq!(a.bias.values(), &[0.5, -0.25]);
        assert_eq!(a.logs.values(), &[0.1, -0.2]);
        let (z_inf, _) = a.forward(&x, Ctx::NONE).unwrap();
        assert_eq!(z, z_inf);
    }

    #[test]
    fn uninitialized_is_identity_and_replay_does_not_initialize() {
        let x = image_batch();
        let mut a = ActNorm::<f64>::new(&[2, 2, 3]).unwrap();
        let (z, ld) = a.forward(&x, Ctx::NONE).unwrap();
        assert_eq!(z, x);
        assert_eq!(ld, vec![0.0; 3]);
        let (z, _, _) = a.forward_train(&x, Ctx::NONE, Pass::Replay).unwrap();
        assert_eq!(z, x);
        assert!(!a.is_initialized());
    }

    #[test]
    fn vectors_and_errors() {
        let mut a = ActNorm::<f64>::new(&[3]).unwrap();
        let x = Tensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 3.0, 6.0, -3.0]).unwrap();
        a.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        // std of (1, 3) is 1, of (2, 6) is 2, of (3, -3) is 3.
        assert_eq!(a.bias.values(), &[-2.0, -4.0, 0.0]);
        for (l, s) in a.logs.values().iter().zip([1.0f64, 2.0, 3.0]) {
            assert!((l + (s + ACTNORM_EPS).ln()).abs() < 1e-15);
        }
        assert!(ActNorm::<f64>::new(&[2, 3]).is_err());
        assert!(ActNorm::<f64>::new(&[0]).is_err());
        let mut empty = ActNorm::<f64>::new(&[3]).unwrap();
        assert!(
            empty
                .forward_train(&Tensor::zeros(&[0, 3]).unwrap(), Ctx::NONE, Pass::Train)
                .is_err()
        );
        assert!(a.forward(&Tensor::zeros(&[2, 4]).unwrap(), Ctx::NONE).is_err());
    }
}
