//! RealNVP for vector data: affine couplings `z_B = x_B * exp(s(x_A)) + t(x_A)` with
//! `s = scale * tanh(h)`, alternating masks, optional batch normalization between couplings
//! (Dinh, Sohl-Dickstein, Bengio, 2016). Standard normal prior.

use exactflow_kernels::{Real, Result};
use exactflow_layers::batchnorm::BatchNorm;
use exactflow_layers::distributions::StandardNormal;
use exactflow_layers::logit::Logit;
use exactflow_layers::{AffineCoupling, Mask};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{RealNvpConfig, check_vector, coupling_mlp};
use crate::flow::{Flow, Stage};

/// Builds a vector RealNVP from its config.
///
/// # Errors
/// [`exactflow_kernels::Error::Config`] for impossible settings.
pub fn build<T: Real>(c: &RealNvpConfig) -> Result<Flow<T>> {
    check_vector("realnvp", c.dim, c.couplings, c.logit_alpha)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages = Vec::new();
    if let Some(alpha) = c.logit_alpha {
        stages.push(Stage::Layer(Box::new(Logit::<T>::new(&[c.dim], alpha)?)));
    }
    let mlp = coupling_mlp(&c.hidden, c.activation);
    for k in 0..c.couplings {
        let mask = Mask::new(c.mask, k % 2 == 1);
        stages.push(Stage::Layer(Box::new(AffineCoupling::<T>::with_mlp(
            c.dim, mask, &mlp, &mut rng,
        )?)));
        if c.batch_norm && k + 1 < c.couplings {
            stages.push(Stage::Layer(Box::new(BatchNorm::<T>::new(&[c.dim])?)));
        }
    }
    Flow::new(stages, Box::new(StandardNormal), &[c.dim])
}
