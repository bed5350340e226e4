//! Validation helpers shared by the model builders: shapes of vector and image models, splits,
//! and the coupling MLP every vector model uses.

use exactflow_layers::nets::{Activation, MlpConfig};

use crate::error::{Error, Result};

/// The MLP of a coupling: `hidden` widths, `activation`, last layer zero (identity at init).
pub(crate) fn coupling_mlp(hidden: &[usize], activation: Activation) -> MlpConfig {
    MlpConfig {
        hidden: hidden.to_vec(),
        activation,
        zero_last: true,
    }
}

/// Validates common vector-flow settings.
pub(crate) fn check_vector(model: &str, dim: usize, couplings: usize, logit: Option<f64>) -> Result<()> {
    if dim < 2 {
        return Err(Error::Config(format!(
            "{model}: a coupling flow needs D >= 2, found D = {dim}"
        )));
    }
    if couplings == 0 {
        return Err(Error::Config(format!("{model}: needs at least one coupling layer")));
    }
    if let Some(a) = logit
        && !(0.0..0.5).contains(&a)
    {
        return Err(Error::Config(format!(
            "{model}: logit alpha must be in [0, 0.5), found {a}"
        )));
    }
    Ok(())
}

/// Checks a logit preprocessing's alpha: in `[0, 0.5)` when set.
pub(crate) fn check_logit(model: &str, logit: Option<f64>) -> Result<()> {
    if let Some(a) = logit
        && !(0.0..0.5).contains(&a)
    {
        return Err(Error::Config(format!(
            "{model}: logit alpha must be in [0, 0.5), found {a}"
        )));
    }
    Ok(())
}

/// `(C, H, W)` of an image model's sample shape, checked: positive extents, and `H`, `W`
/// divisible by `2^squeezes`.
pub(crate) fn check_image(model: &str, shape: [usize; 3], squeezes: usize, what: &str) -> Result<()> {
    let [c, h, w] = shape;
    if c == 0 || h == 0 || w == 0 {
        return Err(Error::Config(format!(
            "{model}: the image shape [C, H, W] needs positive extents, found {shape:?}"
        )));
    }
    if squeezes >= 32 {
        return Err(Error::Config(format!(
            "{model}: {what} would halve the image {squeezes} times; at most 31 are possible"
        )));
    }
    let f = 1usize << squeezes;
    if h % f != 0 || w % f != 0 {
        return Err(Error::Config(format!(
            "{model}: {what} halve the height and width {squeezes} times, so H and W must be \
             divisible by 2^{squeezes} = {f}; found [C, H, W] = {shape:?}"
        )));
    }
    Ok(())
}

/// Checks that a split of samples `[C, H, W]` has an even channel count to halve.
pub(crate) fn check_split(model: &str, shape: &[usize]) -> Result<()> {
    match shape {
        [c, _, _] if *c >= 2 && c % 2 == 0 => Ok(()),
        _ => Err(Error::Config(format!(
            "{model}: a split factors out half of the channels and needs an even channel count, \
             found a sample shape {shape:?} at the split"
        ))),
    }
}

/// The image shape a preset needs, or a clear error.
pub(crate) fn image_shape(family: &str, preset: &str, data_shape: &[usize]) -> Result<[usize; 3]> {
    match *data_shape {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(Error::Config(format!(
            "{family} preset {preset}: image models need data of shape [C, H, W], found {data_shape:?}"
        ))),
    }
}
