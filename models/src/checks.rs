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

/// The most coupling layers (or Glow steps per level) a model may have. The paper models have
/// at most 32; the limit keeps a mistyped or crafted config from building millions of layers.
pub const MAX_LAYERS: usize = 1000;
/// The most hidden layers of a coupling MLP, or residual blocks of a ResNet conditioner.
pub const MAX_DEPTH: usize = 100;

/// Checks a layer count against [`MAX_LAYERS`] and a depth against [`MAX_DEPTH`].
pub(crate) fn check_counts(model: &str, what: &str, layers: usize, depth_what: &str, depth: usize) -> Result<()> {
    if layers > MAX_LAYERS {
        return Err(Error::Config(format!(
            "{model}: {layers} {what}, more than the limit of {MAX_LAYERS}"
        )));
    }
    if depth > MAX_DEPTH {
        return Err(Error::Config(format!(
            "{model}: {depth} {depth_what}, more than the limit of {MAX_DEPTH}"
        )));
    }
    Ok(())
}

/// Validates common vector-flow settings.
pub(crate) fn check_vector(
    model: &str,
    dim: usize,
    couplings: usize,
    hidden: &[usize],
    logit: Option<f64>,
) -> Result<()> {
    check_counts(model, "coupling layers", couplings, "hidden layers", hidden.len())?;
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

/// Checked `u64` arithmetic for parameter counts: `None` on overflow.
pub(crate) mod count {
    use exactflow_layers::MaskKind;

    /// `a * b`.
    pub(crate) fn mul(a: u64, b: u64) -> Option<u64> {
        a.checked_mul(b)
    }

    /// `a + b`.
    pub(crate) fn add(a: u64, b: u64) -> Option<u64> {
        a.checked_add(b)
    }

    /// Weights and biases of the MLP `inp -> hidden... -> out` (PyTorch `Linear`s).
    pub(crate) fn mlp(inp: u64, hidden: &[usize], out: u64) -> Option<u64> {
        let widths: Vec<u64> = std::iter::once(inp)
            .chain(hidden.iter().map(|&h| h as u64))
            .chain(std::iter::once(out))
            .collect();
        widths
            .windows(2)
            .try_fold(0u64, |acc, w| add(acc, add(mul(w[0], w[1])?, w[1])?))
    }

    /// Weights and biases of a MADE on `d` inputs with `parts` outputs per input (see
    /// `exactflow_layers::nets::made`): the masked hidden layers, `blocks` residual blocks of the
    /// last hidden width (two square layers each), and the output layer. The masks are not
    /// stored, and an unconditional MADE has no context weight.
    pub(crate) fn made(d: u64, hidden: &[usize], blocks: usize, parts: u64) -> Option<u64> {
        let last = hidden.last().map_or(d, |&h| h as u64);
        let body = mlp(d, hidden, mul(parts, d)?)?;
        add(body, mul(blocks as u64, mul(2, add(mul(last, last)?, last)?)?)?)
    }

    /// The unmasked context weight `[H_0, C]` of a conditional MADE (`H_0` the first hidden
    /// width, or the output width `out` without hidden layers); 0 for `C = 0`.
    pub(crate) fn made_context(hidden: &[usize], out: u64, c: usize) -> Option<u64> {
        let first = hidden.first().map_or(out, |&h| h as u64);
        mul(first, c as u64)
    }

    /// Weight and bias of a `k x k` convolution from `inp` to `out` channels.
    pub(crate) fn conv(inp: u64, out: u64, k: u64) -> Option<u64> {
        add(mul(mul(out, inp)?, k * k)?, out)
    }

    /// `(|A|, |B|)` of a vector mask on `[d]` (see `exactflow_layers::mask`).
    pub(crate) fn vector_parts(d: u64, kind: MaskKind, flip: bool) -> (u64, u64) {
        let a = match kind {
            MaskKind::Halves | MaskKind::Channel => d / 2,
            MaskKind::OddEven | MaskKind::Checkerboard => d - d / 2,
        };
        if flip { (d - a, a) } else { (a, d - a) }
    }

    /// Pixels with `h + w` even on an `h x w` grid.
    pub(crate) fn even_pixels(h: u64, w: u64) -> Option<u64> {
        Some((mul(h, w)? + (h % 2) * (w % 2)) / 2)
    }
}
