//! NICE for vector data: additive couplings with alternating partitions, then the diagonal
//! scaling layer (Dinh, Krueger, Bengio, 2014).
//!
//! `z = exp(s) * g_K(...g_1(x))` with `g_k` additive couplings (log-det 0 each) and the scaling's
//! log-det `sum(s)`; so `log p(x) = sum_d log pi(z_d) + sum(s)`. Without the scaling, NICE would
//! be volume preserving.

use exactflow_kernels::{Real, Result};
use exactflow_layers::distributions::{Distribution, StandardLogistic, StandardNormal};
use exactflow_layers::logit::Logit;
use exactflow_layers::scaling::Scaling;
use exactflow_layers::{AdditiveCoupling, Mask};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{NiceConfig, Prior, check_vector, coupling_mlp};
use crate::flow::{Flow, Stage};

/// Builds NICE from its config.
///
/// # Errors
/// [`exactflow_kernels::Error::Config`] for impossible settings.
pub fn build<T: Real>(c: &NiceConfig) -> Result<Flow<T>> {
    check_vector("nice", c.dim, c.couplings, c.logit_alpha)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
    let mut stages = Vec::new();
    if let Some(alpha) = c.logit_alpha {
        stages.push(Stage::Layer(Box::new(Logit::<T>::new(&[c.dim], alpha)?)));
    }
    let mlp = coupling_mlp(&c.hidden, c.activation);
    for k in 0..c.couplings {
        let mask = Mask::new(c.mask, k % 2 == 1);
        stages.push(Stage::Layer(Box::new(AdditiveCoupling::<T>::with_mlp(
            c.dim, mask, &mlp, &mut rng,
        )?)));
    }
    stages.push(Stage::Layer(Box::new(Scaling::<T>::new(&[c.dim])?)));
    let base: Box<dyn Distribution<T>> = match c.prior {
        Prior::Normal => Box::new(StandardNormal),
        Prior::Logistic => Box::new(StandardLogistic),
    };
    Flow::new(stages, base, &[c.dim])
}
