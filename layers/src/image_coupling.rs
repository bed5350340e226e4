//! Coupling layers on images `[N, C, H, W]` with convolutional conditioners: RealNVP's affine
//! coupling on a [`ResNet`], and Glow's affine and additive couplings on a [`GlowNet`].
//!
//! The conditioner's shapes follow the mask's [`crate::mask::Partition`]:
//!
//! | mask | conditioner input | conditioner output (`P` values per B element) |
//! |---|---|---|
//! | spatial checkerboard | `[C, H, W]`, the image with B zeroed (`x * b`) | `[P*C, H, W]`, read at the B pixels |
//! | channel / halves / odd-even | `[C_A, H, W]`, the A channels | `[P*C_B, H, W]` |
//!
//! The layers' formulas, log-dets and parameter names are those of [`crate::coupling`]; the
//! conditioner's parameters sit under `net.` (e.g. `net.blocks.0.conv1.weight`, `net.2.bias`).

use exactflow_kernels::{Error, Real, Result};
use rand::Rng;

use crate::coupling::{Additive, AdditiveCoupling, Affine, AffineCoupling, Coupling, GlowAffine, GlowCoupling};
use crate::mask::{Mask, MaskKind};
use crate::nets::{GlowNet, ResNet, ResNetConfig};

/// `(C, H, W)` of an image sample shape.
fn chw(op: &'static str, sample_shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *sample_shape {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(Error::invalid(
            op,
            "configuration",
            format!("needs an image sample shape [C, H, W], found {sample_shape:?}"),
        )),
    }
}

/// Glow's channel split: the first `floor(C/2)` channels condition, the rest are transformed
/// (as `z1, z2 = z[:, :C//2], z[:, C//2:]` in Glow's code).
fn glow_mask() -> Mask {
    Mask::new(MaskKind::Channel, false)
}

impl<T: Real> AffineCoupling<T> {
    /// RealNVP's affine coupling on `[N, C, H, W]` images with a [`ResNet`] conditioner
    /// returning `(h, t)`: `z_B = x_B * exp(scale * tanh(h)) + t`, log-det `sum_B scale * tanh(h)`.
    /// With a checkerboard mask the ResNet maps `[C, H, W] -> [2C, H, W]`; with a channel mask
    /// `[C_A, H, W] -> [2 C_B, H, W]`. Its last convolution starts at zero, so the layer starts
    /// as the identity.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a sample shape that is not `[C, H, W]`, a mask that leaves a part
    /// empty (a channel mask on one channel), or a bad `cfg`.
    pub fn with_resnet(sample_shape: &[usize], mask: Mask, cfg: &ResNetConfig, rng: &mut impl Rng) -> Result<Self> {
        Self::with_conditional_resnet(sample_shape, mask, 0, cfg, rng)
    }

    /// The coupling of [`AffineCoupling::with_resnet`] conditioned on a vector context `c` of
    /// `context_dim` values, which the ResNet reads as constant channels after its input (see
    /// [`ResNet::conditional`]); `context_dim = 0` is [`AffineCoupling::with_resnet`].
    ///
    /// # Errors
    /// As [`AffineCoupling::with_resnet`].
    pub fn with_conditional_resnet(
        sample_shape: &[usize],
        mask: Mask,
        context_dim: usize,
        cfg: &ResNetConfig,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let (_, h, w) = chw("AffineCoupling::with_resnet", sample_shape)?;
        let p = mask.partition(sample_shape, 2)?;
        let net = ResNet::conditional(cfg, p.cond_in_shape[0], context_dim, p.cond_out_shape[0], (h, w), rng)?;
        Coupling::new(sample_shape, mask, Box::new(net), Affine::new(p.b_idx.len())?)
    }
}

impl<T: Real> GlowCoupling<T> {
    /// Glow's affine coupling on `[N, C, H, W]` images: the first `floor(C/2)` channels x_A
    /// condition, `(h, t) = GlowNet(x_A)` (`[C_A, H, W] -> [2 C_B, H, W]`, h first), and
    /// `z_B = x_B * sigmoid(h + 2) + t`, log-det `sum_B log sigmoid(h + 2)`. The GlowNet's last
    /// convolution starts at zero.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a sample shape that is not `[C, H, W]`, fewer than 2 channels, or a
    /// zero `hidden`.
    pub fn with_glow_net(sample_shape: &[usize], hidden: usize, rng: &mut impl Rng) -> Result<Self> {
        Self::with_conditional_glow_net(sample_shape, 0, hidden, rng)
    }

    /// The coupling of [`GlowCoupling::with_glow_net`] conditioned on a vector context of
    /// `context_dim` values, a per-channel bias of the GlowNet's first convolution (see
    /// [`GlowNet::conditional`]); `context_dim = 0` is [`GlowCoupling::with_glow_net`].
    ///
    /// # Errors
    /// As [`GlowCoupling::with_glow_net`].
    pub fn with_conditional_glow_net(
        sample_shape: &[usize],
        context_dim: usize,
        hidden: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let (_, h, w) = chw("GlowCoupling::with_glow_net", sample_shape)?;
        let mask = glow_mask();
        let p = mask.partition(sample_shape, 2)?;
        let net = GlowNet::conditional(
            p.cond_in_shape[0],
            context_dim,
            hidden,
            p.cond_out_shape[0],
            (h, w),
            rng,
        )?;
        Coupling::new(sample_shape, mask, Box::new(net), GlowAffine)
    }
}

impl<T: Real> AdditiveCoupling<T> {
    /// Glow's additive ablation on `[N, C, H, W]` images: the first `floor(C/2)` channels x_A
    /// condition and `z_B = x_B + GlowNet(x_A)` (`[C_A, H, W] -> [C_B, H, W]`), log-det 0.
    ///
    /// # Errors
    /// As [`GlowCoupling::with_glow_net`].
    pub fn with_glow_net(sample_shape: &[usize], hidden: usize, rng: &mut impl Rng) -> Result<Self> {
        Self::with_conditional_glow_net(sample_shape, 0, hidden, rng)
    }

    /// The coupling of [`AdditiveCoupling::with_glow_net`] conditioned on a vector context (as
    /// [`GlowCoupling::with_conditional_glow_net`]).
    ///
    /// # Errors
    /// As [`GlowCoupling::with_glow_net`].
    pub fn with_conditional_glow_net(
        sample_shape: &[usize],
        context_dim: usize,
        hidden: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let (_, h, w) = chw("AdditiveCoupling::with_glow_net", sample_shape)?;
        let mask = glow_mask();
        let p = mask.partition(sample_shape, 1)?;
        let net = GlowNet::conditional(
            p.cond_in_shape[0],
            context_dim,
            hidden,
            p.cond_out_shape[0],
            (h, w),
            rng,
        )?;
        Coupling::new(sample_shape, mask, Box::new(net), Additive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bijector::Bijector;
    use crate::ctx::Ctx;
    use crate::params::Params;
    use crate::tensor::Tensor;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn conditioner_shapes_follow_the_mask() {
        let mut rng = StdRng::seed_from_u64(1);
        let cfg = ResNetConfig { blocks: 1, features: 4 };
        let l =
            AffineCoupling::<f64>::with_resnet(&[3, 4, 4], Mask::new(MaskKind::Checkerboard, false), &cfg, &mut rng)
                .unwrap();
        assert_eq!(
            (l.net().in_shape(), l.net().out_shape()),
            (vec![3, 4, 4], vec![6, 4, 4])
        );
        let l =
            AffineCoupling::<f64>::with_resnet(&[3, 4, 4], Mask::new(MaskKind::Channel, true), &cfg, &mut rng).unwrap();
        assert_eq!(
            (l.net().in_shape(), l.net().out_shape()),
            (vec![2, 4, 4], vec![2, 4, 4])
        );
        let l = GlowCoupling::<f64>::with_glow_net(&[5, 2, 3], 6, &mut rng).unwrap();
        assert_eq!(
            (l.net().in_shape(), l.net().out_shape()),
            (vec![2, 2, 3], vec![6, 2, 3])
        );
        let l = AdditiveCoupling::<f64>::with_glow_net(&[4, 2, 3], 6, &mut rng).unwrap();
        assert_eq!(
            (l.net().in_shape(), l.net().out_shape()),
            (vec![2, 2, 3], vec![2, 2, 3])
        );
        let mut names = Vec::new();
        l.visit_params("c", &mut |n, _| names.push(n.to_string()));
        assert_eq!(names[0], "c.net.0.weight");
    }

    #[test]
    fn starts_as_the_identity() {
        let mut rng = StdRng::seed_from_u64(2);
        let cfg = ResNetConfig { blocks: 2, features: 3 };
        let x = Tensor::from_fn(&[2, 2, 3, 3], |k| (k as f64 * 0.3).sin()).unwrap();
        let l = AffineCoupling::<f64>::with_resnet(&[2, 3, 3], Mask::new(MaskKind::Checkerboard, true), &cfg, &mut rng)
            .unwrap();
        let (z, ld) = l.forward(&x, Ctx::NONE).unwrap();
        assert_eq!((z.as_slice(), ld.as_slice()), (x.as_slice(), &[0.0, 0.0][..]));
        let l = AdditiveCoupling::<f64>::with_glow_net(&[2, 3, 3], 4, &mut rng).unwrap();
        assert_eq!(l.forward(&x, Ctx::NONE).unwrap().0.as_slice(), x.as_slice());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let mut rng = StdRng::seed_from_u64(3);
        let cfg = ResNetConfig { blocks: 1, features: 2 };
        let cb = Mask::new(MaskKind::Checkerboard, false);
        assert!(AffineCoupling::<f64>::with_resnet(&[8], cb, &cfg, &mut rng).is_err());
        assert!(AffineCoupling::<f64>::with_resnet(&[1, 1, 1], cb, &cfg, &mut rng).is_err());
        assert!(
            AffineCoupling::<f64>::with_resnet(&[1, 2, 2], Mask::new(MaskKind::Channel, false), &cfg, &mut rng)
                .is_err()
        );
        assert!(
            AffineCoupling::<f64>::with_resnet(&[2, 2, 2], cb, &ResNetConfig { blocks: 0, features: 0 }, &mut rng)
                .is_err()
        );
        assert!(GlowCoupling::<f64>::with_glow_net(&[1, 4, 4], 3, &mut rng).is_err());
        assert!(GlowCoupling::<f64>::with_glow_net(&[2, 4, 4], 0, &mut rng).is_err());
        assert!(AdditiveCoupling::<f64>::with_glow_net(&[2, 4], 3, &mut rng).is_err());
    }
}
