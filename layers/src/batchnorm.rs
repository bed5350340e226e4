//! RealNVP's batch normalization as an invertible layer, in training and inference mode.
//!
//! # Formula
//! Statistics are per feature for samples `[D]` and per channel (over the batch and the pixels,
//! as PyTorch's `BatchNorm2d`) for samples `[C, H, W]`; a vector sample is read as `C = D`
//! channels of one pixel. Forward (data -> latent), with mean `mu[c]` and variance `var[c]`:
//!
//! `z[n, c, p] = exp(log_gamma[c]) * (x[n, c, p] - mu[c]) / sqrt(var[c] + eps) + beta[c]`,
//! `log|det dz/dx| = H * W * sum_c (log_gamma[c] - ln(var[c] + eps) / 2)` for every sample,
//!
//! with [`BATCHNORM_EPS`] = 1e-5 (PyTorch's default). Inverse (latent -> data):
//! `x = (z - beta) * exp(-log_gamma) * sqrt(var + eps) + mu`, log-det the negative.
//!
//! # Training mode: `forward_train(x, Pass::Train)`
//! `mu` and `var` are the statistics of the batch itself: the mean and the *biased* variance
//! `(1/M) sum (x - mu)^2` over the `M = N * H * W` values of each channel (two passes, so no
//! cancellation). The batch must hold at least 2 samples. The log-det returned per sample is that
//! of the map above with the batch statistics held fixed, as in RealNVP (section 3.6). The map of
//! the whole batch, statistics included, is *not* invertible: it is invariant to shifting a
//! channel of the whole batch (and sees scaling it about its mean only through `eps`), so its
//! `N*D x N*D` Jacobian is singular. The per-sample log-det is the change of density of each
//! sample under the normalization the batch selected.
//!
//! [`Bijector::backward`] of a training pass is the full batch-statistics backward: gradients flow
//! through `mu` and `var` into every sample of the batch, including the log-det's dependence on
//! `var`. Per channel, with `r = (var + eps)^(-1/2)`, `xh = (x - mu) r`, `g = exp(log_gamma)`,
//! `G = sum_n dlogdet_n` and means over the channel's `M` values,
//!
//! `dL/dx = r (g dz - mean(g dz) - xh mean(g dz xh) - G xh / N)`,
//! `dL/dbeta = sum dz`, `dL/dlog_gamma = g sum(dz xh) + H W G`.
//!
//! Each training pass updates the running statistics with momentum [`BATCHNORM_MOMENTUM`] = 0.1,
//! as PyTorch: `running = (1 - m) running + m batch`, using the *unbiased* batch variance
//! `var * M / (M - 1)` for `running_var` (as PyTorch, so weights carry across), and remembers the
//! batch statistics it used. `forward_train(x, Pass::Replay)` and [`Bijector::inverse_replay`]
//! apply that remembered map, without updating anything, so a memory-efficient backward recomputes
//! exactly the activations of the training pass; its backward is the batch-statistics backward of
//! the replayed pass (its input must be that pass's batch, as `inverse_replay` recomputes it).
//! The remembered statistics are transient: they are not parameters and are not saved.
//!
//! # Inference mode: `forward` and `inverse`
//! `mu = running_mean`, `var = running_var`: a fixed per-channel affine map, the same for every
//! batch size (a batch of one sample is fine), with the constant log-det above.
//!
//! # Parameters
//! `log_gamma` `[C]` (init 0) and `beta` `[C]` (init 0) are trainable; `running_mean` `[C]`
//! (init 0) and `running_var` `[C]` (init 1) are buffers, saved with the model and not trained.
//! Statistics and buffers are computed in the layer's scalar type; for dual numbers the buffers
//! keep only the values (the update is state, not part of the differentiated map).

use exactflow_kernels::{Error, Real, Result};

use crate::actnorm::channels_and_pixels;
use crate::bijector::{Bijector, Cache, InputGrad, Mapped, Pass, check_grads, check_input};
use crate::ctx::Ctx;
use crate::params::{Param, Params, join};
use crate::tensor::Tensor;

/// The `eps` added to the variance: `sqrt(var + eps)` (PyTorch's default).
pub const BATCHNORM_EPS: f64 = 1e-5;

/// The momentum of the running statistics: `running = (1 - m) running + m batch` (PyTorch's
/// convention and default).
pub const BATCHNORM_MOMENTUM: f64 = 0.1;

/// Batch normalization as a flow layer:
/// `z = exp(log_gamma) (x - mu) / sqrt(var + eps) + beta` per channel, with batch statistics in
/// training and running averages in inference (see the module documentation). Parameters:
/// `log_gamma`, `beta` (trainable, `[C]`), `running_mean`, `running_var` (buffers, `[C]`).
#[derive(Clone, Debug)]
pub struct BatchNorm<T: Real> {
    /// `[C]`, the log of the per-channel output scale (trainable, init 0).
    pub log_gamma: Param<T>,
    /// `[C]`, the per-channel output shift (trainable, init 0).
    pub beta: Param<T>,
    /// `[C]`, buffer: the running mean used in inference (init 0).
    pub running_mean: Param<T>,
    /// `[C]`, buffer: the running (unbiased) variance used in inference (init 1).
    pub running_var: Param<T>,
    sample_shape: Vec<usize>,
    channels: usize,
    pixels: usize,
    /// The statistics of the last `Pass::Train` batch, for `Pass::Replay` and `inverse_replay`.
    last_batch: Option<BatchStats<T>>,
}

/// Batch statistics of a training pass.
#[derive(Clone, Debug)]
struct BatchStats<T> {
    mean: Vec<T>,
    var: Vec<T>,
    batch: usize,
}

/// What backward needs: the normalized input, `r = (var + eps)^(-1/2)` and `exp(log_gamma)`.
struct BatchNormCache<T> {
    xhat: Tensor<T>,
    r: Vec<T>,
    gamma: Vec<T>,
}

impl<T: Real> BatchNorm<T> {
    /// Batch normalization for samples `[D]` (per-feature statistics) or `[C, H, W]`
    /// (per-channel statistics), starting as `log_gamma = beta = running_mean = 0`,
    /// `running_var = 1`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another rank or a zero extent.
    pub fn new(sample_shape: &[usize]) -> Result<Self> {
        let (channels, pixels) = channels_and_pixels("BatchNorm", sample_shape)?;
        Ok(BatchNorm {
            log_gamma: Param::trainable(Tensor::zeros(&[channels])?),
            beta: Param::trainable(Tensor::zeros(&[channels])?),
            running_mean: Param::buffer(Tensor::zeros(&[channels])?),
            running_var: Param::buffer(Tensor::full(&[channels], T::one())?),
            sample_shape: sample_shape.to_vec(),
            channels,
            pixels,
            last_batch: None,
        })
    }

    /// The same layer (parameters, buffers and the remembered batch statistics) in another scalar
    /// type.
    pub fn cast<U: Real>(&self) -> BatchNorm<U> {
        let conv = |v: &[T]| v.iter().map(|x| U::lit(x.as_f64())).collect::<Vec<U>>();
        BatchNorm {
            log_gamma: self.log_gamma.cast(),
            beta: self.beta.cast(),
            running_mean: self.running_mean.cast(),
            running_var: self.running_var.cast(),
            sample_shape: self.sample_shape.clone(),
            channels: self.channels,
            pixels: self.pixels,
            last_batch: self.last_batch.as_ref().map(|b| BatchStats {
                mean: conv(&b.mean),
                var: conv(&b.var),
                batch: b.batch,
            }),
        }
    }

    /// The per-channel (mean, variance) of the last training batch, if a `Pass::Train` has run:
    /// the statistics `Pass::Replay` and `inverse_replay` apply (biased variance).
    pub fn batch_statistics(&self) -> Option<(&[T], &[T])> {
        self.last_batch.as_ref().map(|b| (b.mean.as_slice(), b.var.as_slice()))
    }

    /// Per-channel mean and biased variance over the batch and pixels (two passes).
    fn statistics(&self, x: &Tensor<T>) -> (Vec<T>, Vec<T>) {
        let (c, hw) = (self.channels, self.pixels);
        let count = T::lit((x.batch() * hw) as f64);
        let mut mean = vec![T::zero(); c];
        for s in x.samples() {
            for (ch, row) in s.chunks_exact(hw).enumerate() {
                mean[ch] += row.iter().fold(T::zero(), |acc, &v| acc + v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= count);
        let mut var = vec![T::zero(); c];
        for s in x.samples() {
            for (ch, row) in s.chunks_exact(hw).enumerate() {
                let m = mean[ch];
                var[ch] += row.iter().fold(T::zero(), |acc, &v| acc + (v - m) * (v - m));
            }
        }
        var.iter_mut().for_each(|v| *v /= count);
        (mean, var)
    }

    /// `r = (var + eps)^(-1/2)` per channel.
    fn inv_std(var: &[T]) -> Vec<T> {
        let eps = T::lit(BATCHNORM_EPS);
        var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect()
    }

    /// `H * W * sum_c (log_gamma[c] + ln r[c])`.
    fn log_det(&self, r: &[T]) -> T {
        let s = self
            .log_gamma
            .values()
            .iter()
            .zip(r)
            .fold(T::zero(), |acc, (&lg, &rc)| acc + lg + rc.ln());
        T::lit(self.pixels as f64) * s
    }

    /// The forward map with statistics `(mean, r)`: returns `xhat`, `z`, the log-dets and
    /// `exp(log_gamma)`.
    fn forward_map(&self, x: &Tensor<T>, mean: &[T], r: &[T]) -> (Tensor<T>, Tensor<T>, Vec<T>, Vec<T>) {
        let gamma: Vec<T> = self.log_gamma.values().iter().map(|v| v.exp()).collect();
        let beta = self.beta.values();
        let hw = self.pixels;
        let m = x.sample_len().max(1);
        let mut xhat = x.clone();
        let mut z = x.clone();
        for (hs, zs) in xhat
            .as_mut_slice()
            .chunks_exact_mut(m)
            .zip(z.as_mut_slice().chunks_exact_mut(m))
        {
            for (ch, (hrow, zrow)) in hs.chunks_exact_mut(hw).zip(zs.chunks_exact_mut(hw)).enumerate() {
                for (h, zv) in hrow.iter_mut().zip(zrow) {
                    *h = (*h - mean[ch]) * r[ch];
                    *zv = gamma[ch] * *h + beta[ch];
                }
            }
        }
        (xhat, z, vec![self.log_det(r); x.batch()], gamma)
    }

    /// The inverse map with statistics `(mean, r)`: `x = (z - beta) / (gamma r) + mean`.
    fn inverse_map(&self, z: &Tensor<T>, mean: &[T], r: &[T]) -> Mapped<T> {
        let beta = self.beta.values();
        let inv: Vec<T> = self
            .log_gamma
            .values()
            .iter()
            .zip(r)
            .map(|(&lg, &rc)| (-lg).exp() / rc)
            .collect();
        let hw = self.pixels;
        let m = z.sample_len().max(1);
        let mut x = z.clone();
        for s in x.as_mut_slice().chunks_exact_mut(m) {
            for (ch, row) in s.chunks_exact_mut(hw).enumerate() {
                for v in row {
                    *v = (*v - beta[ch]) * inv[ch] + mean[ch];
                }
            }
        }
        (x, vec![-self.log_det(r); z.batch()])
    }

    /// The remembered statistics of the last training pass.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no `Pass::Train` has run, or (when `batch` is given) the
    /// replayed batch has another size than the training batch.
    fn remembered(&self, op: &'static str, batch: Option<usize>) -> Result<&BatchStats<T>> {
        let stats = self.last_batch.as_ref().ok_or_else(|| {
            Error::invalid(
                op,
                "pass",
                "a replay needs the batch statistics of an earlier forward_train(.., Pass::Train), found none",
            )
        })?;
        if let Some(n) = batch
            && n != stats.batch
        {
            return Err(Error::invalid(
                op,
                "input",
                format!(
                    "a replay applies the map of the last training batch of {} samples, found a batch of {n}",
                    stats.batch
                ),
            ));
        }
        Ok(stats)
    }
}

impl<T: Real> Params<T> for BatchNorm<T> {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Param<T>)) {
        f(&join(prefix, "log_gamma"), &self.log_gamma);
        f(&join(prefix, "beta"), &self.beta);
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param<T>)) {
        f(&join(prefix, "log_gamma"), &mut self.log_gamma);
        f(&join(prefix, "beta"), &mut self.beta);
        f(&join(prefix, "running_mean"), &mut self.running_mean);
        f(&join(prefix, "running_var"), &mut self.running_var);
    }
}

impl<T: Real> Bijector<T> for BatchNorm<T> {
    fn kind(&self) -> &'static str {
        "BatchNorm"
    }

    fn sample_shapes(&self) -> (Vec<usize>, Vec<usize>) {
        (self.sample_shape.clone(), self.sample_shape.clone())
    }

    /// Inference mode (data -> latent): `z = exp(log_gamma) (x - running_mean) /
    /// sqrt(running_var + eps) + beta`, log-det `H W sum(log_gamma - ln(running_var + eps) / 2)`.
    ///
    /// # Errors
    /// Also when a running variance is not above `-eps` (a corrupt buffer).
    fn forward(&self, x: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "BatchNorm::forward", x, cx, &self.sample_shape)?;
        let r = running_inv_std(self, "BatchNorm::forward")?;
        let (_, z, ld, _) = self.forward_map(x, self.running_mean.values(), &r);
        Ok((z, ld))
    }

    /// Inference mode (latent -> data): `x = (z - beta) exp(-log_gamma) sqrt(running_var + eps) +
    /// running_mean`, log-det the negative of the forward one.
    ///
    /// # Errors
    /// As [`Bijector::forward`].
    fn inverse(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Mapped<T>> {
        check_input(self, "BatchNorm::inverse", z, cx, &self.sample_shape)?;
        let r = running_inv_std(self, "BatchNorm::inverse")?;
        Ok(self.inverse_map(z, self.running_mean.values(), &r))
    }

    /// `Pass::Train`: batch statistics (at least 2 samples), updates the running statistics and
    /// remembers the batch statistics. `Pass::Replay`: the remembered map of the last training
    /// pass on a batch of the same size, no state change.
    ///
    /// # Errors
    /// Besides shape and finiteness: a training batch of fewer than 2 samples; a replay before
    /// any training pass or on a batch of another size.
    fn forward_train(&mut self, x: &Tensor<T>, cx: Ctx<'_, T>, pass: Pass) -> Result<(Tensor<T>, Vec<T>, Cache)> {
        check_input(self, "BatchNorm::forward_train", x, cx, &self.sample_shape)?;
        let (mean, r) = match pass {
            Pass::Train => {
                if x.batch() < 2 {
                    return Err(Error::invalid(
                        "BatchNorm::forward_train",
                        "input",
                        format!(
                            "training-mode batch normalization needs a batch of at least 2 samples, found {}",
                            x.batch()
                        ),
                    ));
                }
                let (mean, var) = self.statistics(x);
                if let Some(ch) = var.iter().position(|v| !v.is_finite_value()) {
                    return Err(Error::invalid(
                        "BatchNorm::forward_train",
                        "input",
                        format!("the batch variance of channel {ch} overflows this precision (inputs too large)"),
                    ));
                }
                let r = Self::inv_std(&var);
                let mom = BATCHNORM_MOMENTUM;
                let count = (x.batch() * self.pixels) as f64;
                let unbias = count / (count - 1.0);
                let rm = self.running_mean.value.as_mut_slice();
                for (run, m) in rm.iter_mut().zip(&mean) {
                    *run = T::lit((1.0 - mom) * run.as_f64() + mom * m.as_f64());
                }
                let rv = self.running_var.value.as_mut_slice();
                for (run, v) in rv.iter_mut().zip(&var) {
                    *run = T::lit((1.0 - mom) * run.as_f64() + mom * unbias * v.as_f64());
                }
                self.last_batch = Some(BatchStats {
                    mean: mean.clone(),
                    var,
                    batch: x.batch(),
                });
                (mean, r)
            }
            Pass::Replay => {
                let stats = self.remembered("BatchNorm::forward_train", Some(x.batch()))?;
                (stats.mean.clone(), Self::inv_std(&stats.var))
            }
        };
        let (xhat, z, ld, gamma) = self.forward_map(x, &mean, &r);
        Ok((z, ld, Cache::new("BatchNorm", BatchNormCache { xhat, r, gamma })))
    }

    /// The inverse of the last training pass's map (its batch statistics), no state change.
    ///
    /// # Errors
    /// Besides shape and finiteness: no training pass has run.
    fn inverse_replay(&self, z: &Tensor<T>, cx: Ctx<'_, T>) -> Result<Tensor<T>> {
        check_input(self, "BatchNorm::inverse_replay", z, cx, &self.sample_shape)?;
        let stats = self.remembered("BatchNorm::inverse_replay", None)?;
        let r = Self::inv_std(&stats.var);
        Ok(self.inverse_map(z, &stats.mean, &r).0)
    }

    /// The batch-statistics backward (see the module documentation): per channel
    /// `dL/dx = r (g dz - mean(g dz) - xh mean(g dz xh) - G xh / N)`, `dL/dbeta = sum dz`,
    /// `dL/dlog_gamma = g sum(dz xh) + H W G`, with `G = sum_n dlogdet_n`.
    fn backward(&mut self, cache: Cache, dz: &Tensor<T>, dlogdet: &[T]) -> Result<InputGrad<T>> {
        let BatchNormCache { xhat, r, gamma } = cache.take::<BatchNormCache<T>>("BatchNorm")?;
        check_grads("BatchNorm::backward", dz, dlogdet, xhat.shape())?;
        let (c, hw) = (self.channels, self.pixels);
        let n = xhat.batch();
        let m = (c * hw).max(1);
        let total = dlogdet.iter().fold(T::zero(), |acc, &g| acc + g);
        // Per channel: sum dz, sum dz * xhat.
        let mut sum_dz = vec![T::zero(); c];
        let mut sum_dz_xh = vec![T::zero(); c];
        for (ds, hs) in dz.as_slice().chunks_exact(m).zip(xhat.as_slice().chunks_exact(m)) {
            for (ch, (drow, hrow)) in ds.chunks_exact(hw).zip(hs.chunks_exact(hw)).enumerate() {
                for (&g, &h) in drow.iter().zip(hrow) {
                    sum_dz[ch] += g;
                    sum_dz_xh[ch] += g * h;
                }
            }
        }
        let hw_t = T::lit(hw as f64);
        let dbeta = sum_dz.clone();
        let dlg: Vec<T> = (0..c).map(|ch| gamma[ch] * sum_dz_xh[ch] + hw_t * total).collect();
        let count = T::lit((n * hw) as f64);
        let n_t = T::lit(n as f64);
        // mean(g dz), and mean(g dz xh) + G / N (the log-det's pull through var).
        let a: Vec<T> = (0..c).map(|ch| gamma[ch] * sum_dz[ch] / count).collect();
        let b: Vec<T> = (0..c)
            .map(|ch| gamma[ch] * sum_dz_xh[ch] / count + total / n_t)
            .collect();
        let mut dx = dz.clone();
        for (ds, hs) in dx
            .as_mut_slice()
            .chunks_exact_mut(m)
            .zip(xhat.as_slice().chunks_exact(m))
        {
            for (ch, (drow, hrow)) in ds.chunks_exact_mut(hw).zip(hs.chunks_exact(hw)).enumerate() {
                for (g, &h) in drow.iter_mut().zip(hrow) {
                    *g = r[ch] * (gamma[ch] * *g - a[ch] - h * b[ch]);
                }
            }
        }
        self.beta.accumulate(&dbeta);
        self.log_gamma.accumulate(&dlg);
        Ok(InputGrad::input(dx))
    }

    crate::impl_cast!();
}

/// `(running_var + eps)^(-1/2)`, checking that the running variance keeps `var + eps` positive
/// (NaN was already rejected by `check_input`, which checks every parameter and buffer).
fn running_inv_std<T: Real>(bn: &BatchNorm<T>, op: &'static str) -> Result<Vec<T>> {
    let eps = T::lit(BATCHNORM_EPS);
    if let Some((k, v)) = bn
        .running_var
        .values()
        .iter()
        .enumerate()
        .find(|(_, v)| **v + eps <= T::zero())
    {
        return Err(Error::invalid(
            op,
            "running_var",
            format!(
                "entry {k} is {}, expected a variance > -eps = -{BATCHNORM_EPS}",
                v.as_f64()
            ),
        ));
    }
    Ok(BatchNorm::<T>::inv_std(bn.running_var.values()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Tensor<f64> {
        Tensor::new(&[3, 2], vec![1.0, 10.0, 2.0, -4.0, 6.0, 3.0]).unwrap()
    }

    fn images() -> Tensor<f64> {
        Tensor::from_fn(&[2, 2, 2, 3], |k| {
            ((k * 37 % 11) as f64) / 3.0 - 1.0 + (k / 6 % 2) as f64 * 4.0
        })
        .unwrap()
    }

    #[test]
    fn training_normalizes_and_updates_running_statistics() {
        let mut bn = BatchNorm::<f64>::new(&[2]).unwrap();
        let x = vectors();
        let (z, ld, _) = bn.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        // Feature 0: (1, 2, 6), mean 3, biased var 14/3; feature 1: (10, -4, 3), mean 3, var 98/3.
        let (mean, var) = ([3.0, 3.0], [14.0 / 3.0, 98.0 / 3.0]);
        for s in 0..3 {
            for f in 0..2 {
                let expect = (x.get(&[s, f]).unwrap() - mean[f]) / (var[f] + BATCHNORM_EPS).sqrt();
                assert!((z.get(&[s, f]).unwrap() - expect).abs() < 1e-14);
            }
        }
        let expect_ld = -0.5 * ((var[0] + BATCHNORM_EPS).ln() + (var[1] + BATCHNORM_EPS).ln());
        assert!(ld.iter().all(|&l| (l - expect_ld).abs() < 1e-14));
        // running = 0.9 running + 0.1 batch, unbiased variance (M / (M - 1) = 3 / 2).
        assert!((bn.running_mean.values()[0] - 0.3).abs() < 1e-15);
        assert!((bn.running_var.values()[0] - (0.9 + 0.1 * 7.0)).abs() < 1e-14);
        assert!((bn.running_var.values()[1] - (0.9 + 0.1 * 49.0)).abs() < 1e-14);
        assert_eq!(bn.batch_statistics().unwrap().1, &var[..]);
    }

    #[test]
    fn replay_reproduces_the_training_map_without_state_change() {
        let mut bn = BatchNorm::<f64>::new(&[2, 2, 3]).unwrap();
        bn.log_gamma.value.as_mut_slice().copy_from_slice(&[0.3, -0.2]);
        bn.beta.value.as_mut_slice().copy_from_slice(&[1.0, -0.5]);
        let x = images();
        let (z, ld, _) = bn.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        let running = (bn.running_mean.clone(), bn.running_var.clone());
        let xr = bn.inverse_replay(&z, Ctx::NONE).unwrap();
        assert!(
            xr.as_slice()
                .iter()
                .zip(x.as_slice())
                .all(|(a, b)| (a - b).abs() < 1e-13)
        );
        let (z2, ld2, _) = bn.forward_train(&xr, Ctx::NONE, Pass::Replay).unwrap();
        assert!(
            z2.as_slice()
                .iter()
                .zip(z.as_slice())
                .all(|(a, b)| (a - b).abs() < 1e-13)
        );
        assert_eq!(ld, ld2);
        assert_eq!((bn.running_mean.clone(), bn.running_var.clone()), running);
        // The training batch leaves each channel with mean beta and variance gamma^2 var/(var+eps).
        for ch in 0..2 {
            let vals: Vec<f64> = z.samples().flat_map(|s| s[ch * 6..(ch + 1) * 6].to_vec()).collect();
            let mean = vals.iter().sum::<f64>() / 12.0;
            assert!((mean - bn.beta.values()[ch]).abs() < 1e-14);
        }
        // Inference uses the running statistics: a different map.
        let (zi, _) = bn.forward(&x, Ctx::NONE).unwrap();
        assert!(zi != z);
    }

    #[test]
    fn backward_matches_central_differences_through_the_statistics() {
        let mut bn = BatchNorm::<f64>::new(&[2]).unwrap();
        bn.log_gamma.value.as_mut_slice().copy_from_slice(&[0.2, -0.4]);
        bn.beta.value.as_mut_slice().copy_from_slice(&[0.1, 0.3]);
        let x = vectors();
        let wz = Tensor::new(&[3, 2], vec![0.3, -1.0, 0.7, 0.2, -0.5, 0.9]).unwrap();
        let wld = [0.4, -0.3, 1.1];
        let (_, _, cache) = bn.forward_train(&x, Ctx::NONE, Pass::Train).unwrap();
        let dx = bn.backward(cache, &wz, &wld).unwrap().x;
        let loss = |bn: &mut BatchNorm<f64>, x: &Tensor<f64>| {
            let (z, ld, _) = bn.forward_train(x, Ctx::NONE, Pass::Train).unwrap();
            let a: f64 = z.as_slice().iter().zip(wz.as_slice()).map(|(p, q)| p * q).sum();
            a + ld.iter().zip(&wld).map(|(p, q)| p * q).sum::<f64>()
        };
        let h = 1e-6;
        for k in 0..6 {
            let (mut p, mut m) = (x.clone(), x.clone());
            p.as_mut_slice()[k] += h;
            m.as_mut_slice()[k] -= h;
            let fd = (loss(&mut bn, &p) - loss(&mut bn, &m)) / (2.0 * h);
            assert!(
                (fd - dx.as_slice()[k]).abs() < 1e-7,
                "dx[{k}]: {fd} vs {}",
                dx.as_slice()[k]
            );
        }
        let glg = bn.log_gamma.grad.as_slice().to_vec();
        for (ch, &g) in glg.iter().enumerate() {
            let mut b = bn.clone();
            b.log_gamma.value.as_mut_slice()[ch] += h;
            let lp = loss(&mut b, &x);
            b.log_gamma.value.as_mut_slice()[ch] -= 2.0 * h;
            let lm = loss(&mut b, &x);
            assert!(((lp - lm) / (2.0 * h) - g).abs() < 1e-7);
        }
    }

    #[test]
    fn errors() {
        assert!(BatchNorm::<f64>::new(&[2, 3]).is_err());
        assert!(BatchNorm::<f64>::new(&[0]).is_err());
        assert!(BatchNorm::<f64>::new(&[]).is_err());
        let mut bn = BatchNorm::<f64>::new(&[2]).unwrap();
        let one = Tensor::new(&[1, 2], vec![1.0, 2.0]).unwrap();
        let msg = bn.forward_train(&one, Ctx::NONE, Pass::Train).unwrap_err().to_string();
        assert!(msg.contains("at least 2 samples, found 1"), "{msg}");
        // Inference works on a single sample; replay needs a training pass first.
        assert!(bn.forward(&one, Ctx::NONE).is_ok());
        assert!(bn.forward_train(&one, Ctx::NONE, Pass::Replay).is_err());
        assert!(bn.inverse_replay(&one, Ctx::NONE).is_err());
        bn.forward_train(&vectors(), Ctx::NONE, Pass::Train).unwrap();
        assert!(bn.forward_train(&one, Ctx::NONE, Pass::Replay).is_err());
        assert!(bn.inverse_replay(&one, Ctx::NONE).is_ok());
        assert!(bn.forward(&Tensor::zeros(&[2, 3]).unwrap(), Ctx::NONE).is_err());
        bn.running_var.value.as_mut_slice()[1] = -1.0;
        assert!(bn.forward(&one, Ctx::NONE).is_err());
        assert!(bn.inverse(&one, Ctx::NONE).is_err());
        let (_, _, cache) = bn.forward_train(&vectors(), Ctx::NONE, Pass::Train).unwrap();
        assert!(
            bn.backward(cache, &Tensor::zeros(&[2, 2]).unwrap(), &[0.0, 0.0])
                .is_err()
        );
    }
}
