//! Convolutional conditioner networks (Conv2d, ResNet, GlowNet) and the MLP: hand-written backward
//! passes against central finite differences in f64, f32 against f64, shape errors; and the
//! image couplings built on them (RealNVP's ResNet affine coupling, Glow's affine and additive
//! couplings) against every law of `layer_harness`.
//!
//! Tolerances are `layer_harness`'s (see its module documentation): gradient mixed error
//! <= `GRAD_F64` with step `GRAD_STEP`, f32 vs f64 relative <= `F32_TOL`.

mod layer_harness;

use exactflow_layers::gradcheck::grad_check_net;
use exactflow_layers::nets::{Activation, Conditioner, Conv2d, GlowNet, Mlp, MlpConfig, ResNet, ResNetConfig};
use exactflow_layers::{AdditiveCoupling, AffineCoupling, Bijector, Ctx, GlowCoupling, Mask, MaskKind, Params, Tensor};
use layer_harness::{F32_TOL, GRAD_F64, GRAD_STEP, batch, fail, perturb, rel_err, values};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Entries checked per parameter in the networks' gradient checks.
const MAX_PER_PARAM: usize = 48;

/// Inputs of one network case: the input batch, the output weights of `L = sum(w * net(x))`,
/// the parameter perturbation and the initialization seed.
#[derive(Clone, Debug)]
struct NetData {
    x: Vec<f64>,
    w: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

fn net_data(in_len: usize, out_len: usize) -> impl Strategy<Value = NetData> {
    (values(in_len, 1.0), values(out_len, 1.0), values(17, 0.3), any::<u64>()).prop_map(|(x, w, delta, seed)| NetData {
        x,
        w,
        delta,
        seed,
    })
}

/// The gradient check in f64, the f32 network against its f64 copy (output, input and parameter
/// gradients) and the shape errors, for a network whose f64 version is `net` and f32 version is
/// `net32`.
fn check_net(
    net: &mut dyn Conditioner<f64>,
    net32: &mut dyn Conditioner<f32>,
    n: usize,
    d: &NetData,
) -> Result<(), TestCaseError> {
    let x = batch(n, &net.in_shape(), d.x.clone());
    let w = batch(n, &net.out_shape(), d.w.clone());
    // Backward vs central differences in f64.
    let rep = grad_check_net(net, &x, None, &w, GRAD_STEP, MAX_PER_PARAM).map_err(fail("grad check"))?;
    let (name, err) = rep.worst();
    prop_assert!(
        err <= GRAD_F64,
        "{}: gradient of {name}: mixed error {err:e}",
        net.kind()
    );

    // f32 against f64 with the same (f32-rounded) parameters and input.
    let x32: Tensor<f32> = x.cast();
    let mut net64 = net32.to_f64();
    let (y32, c32) = net32.forward_train(&x32, Ctx::NONE).map_err(fail("f32 forward"))?;
    let (y64, c64) = net64
        .forward_train(&x32.cast(), Ctx::NONE)
        .map_err(fail("f64 forward"))?;
    let y32f: Vec<f64> = y32.as_slice().iter().map(|&v| v as f64).collect();
    let e = rel_err(&y32f, y64.as_slice());
    prop_assert!(e <= F32_TOL, "{}: f32 vs f64 output relative error {e:e}", net.kind());
    let y64_infer = net64.forward(&x32.cast(), Ctx::NONE).map_err(fail("forward"))?;
    prop_assert_eq!(y64.as_slice(), y64_infer.as_slice(), "forward and forward_train differ");
    let dx32 = net32.backward(c32, &w.cast()).map_err(fail("f32 backward"))?.x;
    let dx64 = net64
        .backward(c64, &w.cast::<f32>().cast())
        .map_err(fail("f64 backward"))?
        .x;
    let dx32f: Vec<f64> = dx32.as_slice().iter().map(|&v| v as f64).collect();
    let e = rel_err(&dx32f, dx64.as_slice());
    prop_assert!(
        e <= F32_TOL,
        "{}: f32 vs f64 input gradient relative error {e:e}",
        net.kind()
    );
    // Parameter gradients, relative to the largest of them (a dead unit's zero gradient has no
    // relative accuracy of its own).
    let mut g32 = Vec::new();
    net32.visit_params("", &mut |_, p| g32.extend(p.grad.as_slice().iter().map(|&v| v as f64)));
    let mut g64 = Vec::new();
    net64.visit_params("", &mut |_, p| g64.extend_from_slice(p.grad.as_slice()));
    let e = rel_err(&g32, &g64);
    prop_assert!(
        e <= F32_TOL,
        "{}: f32 vs f64 parameter gradients relative error {e:e}",
        net.kind()
    );

    // Wrong shapes are errors, not panics.
    let shape = x.shape().to_vec();
    let mut bad = vec![shape.clone(), shape.clone(), vec![n, x.sample_len()]];
    *bad[0].last_mut().expect("rank >= 2") += 1;
    bad[1][1] += 1;
    if shape.len() == 4 {
        let mut b = shape.clone();
        b[2] += 1;
        bad.push(b);
    }
    for s in bad.iter().filter(|s| **s != shape) {
        let wrong = Tensor::<f64>::zeros(s).map_err(fail("zeros"))?;
        prop_assert!(
            net.forward(&wrong, Ctx::NONE).is_err(),
            "{}: forward accepted {s:?}",
            net.kind()
        );
        prop_assert!(
            net.forward_train(&wrong, Ctx::NONE).is_err(),
            "{}: forward_train accepted {s:?}",
            net.kind()
        );
    }
    let (_, cache) = net.forward_train(&x, Ctx::NONE).map_err(fail("forward_train"))?;
    let mut wrong_dy = w.shape().to_vec();
    wrong_dy[1] += 1;
    let wrong_dy = Tensor::<f64>::zeros(&wrong_dy).map_err(fail("zeros"))?;
    prop_assert!(
        net.backward(cache, &wrong_dy).is_err(),
        "{}: backward accepted a wrong dy",
        net.kind()
    );
    // A cache from another kind of network.
    let other = Tensor::<f64>::zeros(&[1, 1]).map_err(fail("zeros"))?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mlp = Mlp::<f64>::new(
        &MlpConfig {
            hidden: vec![],
            activation: Activation::Relu,
            zero_last: false,
        },
        1,
        1,
        &mut rng,
    )
    .map_err(fail("mlp"))?;
    let (_, foreign) = mlp.forward_train(&other, Ctx::NONE).map_err(fail("mlp forward"))?;
    if net.kind() != "Mlp" {
        prop_assert!(
            net.backward(foreign, &w).is_err(),
            "{}: backward accepted a foreign cache",
            net.kind()
        );
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct ConvCase {
    n: usize,
    cin: usize,
    cout: usize,
    kernel: usize,
    hw: (usize, usize),
    data: NetData,
}

prop_compose! {
    fn conv_case()(n in 1usize..=3, cin in 1usize..=4, cout in 1usize..=4, k3 in any::<bool>(),
                   h in 1usize..=6, w in 1usize..=6)
                  (data in net_data(n * cin * h * w, n * cout * h * w),
                   n in Just(n), cin in Just(cin), cout in Just(cout), k3 in Just(k3), h in Just(h), w in Just(w))
                  -> ConvCase {
        ConvCase { n, cin, cout, kernel: if k3 { 3 } else { 1 }, hw: (h, w), data }
    }
}

#[derive(Clone, Debug)]
struct ResNetCase {
    n: usize,
    cin: usize,
    cout: usize,
    cfg: ResNetConfig,
    hw: (usize, usize),
    data: NetData,
}

prop_compose! {
    fn resnet_case()(n in 1usize..=3, cin in 1usize..=4, cout in 1usize..=4, blocks in 0usize..=2,
                     features in 1usize..=4, h in 1usize..=6, w in 1usize..=6)
                    (data in net_data(n * cin * h * w, n * cout * h * w),
                     n in Just(n), cin in Just(cin), cout in Just(cout), blocks in Just(blocks),
                     features in Just(features), h in Just(h), w in Just(w))
                    -> ResNetCase {
        ResNetCase { n, cin, cout, cfg: ResNetConfig { blocks, features }, hw: (h, w), data }
    }
}

#[derive(Clone, Debug)]
struct GlowNetCase {
    n: usize,
    cin: usize,
    hidden: usize,
    cout: usize,
    hw: (usize, usize),
    data: NetData,
}

prop_compose! {
    fn glow_net_case()(n in 1usize..=3, cin in 1usize..=4, hidden in 1usize..=4, cout in 1usize..=4,
                       h in 1usize..=6, w in 1usize..=6)
                      (data in net_data(n * cin * h * w, n * cout * h * w),
                       n in Just(n), cin in Just(cin), hidden in Just(hidden), cout in Just(cout),
                       h in Just(h), w in Just(w))
                      -> GlowNetCase {
        GlowNetCase { n, cin, hidden, cout, hw: (h, w), data }
    }
}

#[derive(Clone, Debug)]
struct MlpCase {
    n: usize,
    inp: usize,
    out: usize,
    cfg: MlpConfig,
    data: NetData,
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        (0.01f64..0.5).prop_map(Activation::LeakyRelu),
        Just(Activation::Tanh)
    ]
}

prop_compose! {
    fn mlp_case()(n in 1usize..=3, inp in 1usize..=6, out in 1usize..=6,
                  hidden in proptest::collection::vec(1usize..=8, 0..=3), activation in activation(),
                  zero_last in any::<bool>())
                 (data in net_data(n * inp, n * out), n in Just(n), inp in Just(inp), out in Just(out),
                  hidden in Just(hidden.clone()), activation in Just(activation), zero_last in Just(zero_last))
                 -> MlpCase {
        MlpCase { n, inp, out, cfg: MlpConfig { hidden, activation, zero_last }, data }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(64)))]

    #[test]
    fn conv2d_backward_f32_and_shapes(c in conv_case()) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.data.seed);
        let mut net = Conv2d::<f64>::new(c.cin, c.cout, c.kernel, c.hw, false, &mut rng).map_err(fail("new"))?;
        perturb(&mut net, &c.data.delta, 1.0);
        let mut net32 = net.cast::<f32>();
        check_net(&mut net, &mut net32, c.n, &c.data)?;
    }

    #[test]
    fn resnet_backward_f32_and_shapes(c in resnet_case()) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.data.seed);
        let mut net = ResNet::<f64>::new(&c.cfg, c.cin, c.cout, c.hw, &mut rng).map_err(fail("new"))?;
        perturb(&mut net, &c.data.delta, 1.0);
        let mut net32 = net.cast::<f32>();
        check_net(&mut net, &mut net32, c.n, &c.data)?;
    }

    #[test]
    fn glow_net_backward_f32_and_shapes(c in glow_net_case()) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.data.seed);
        let mut net = GlowNet::<f64>::new(c.cin, c.hidden, c.cout, c.hw, &mut rng).map_err(fail("new"))?;
        perturb(&mut net, &c.data.delta, 1.0);
        let mut net32 = net.cast::<f32>();
        check_net(&mut net, &mut net32, c.n, &c.data)?;
    }

    #[test]
    fn mlp_backward_f32_and_shapes(c in mlp_case()) {
        let mut rng = ChaCha8Rng::seed_from_u64(c.data.seed);
        let mut net = Mlp::<f64>::new(&c.cfg, c.inp, c.out, &mut rng).map_err(fail("new"))?;
        perturb(&mut net, &c.data.delta, 1.0);
        let mut net32 = net.cast::<f32>();
        check_net(&mut net, &mut net32, c.n, &c.data)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Image couplings.

/// Inputs of one coupling case: the input batch (values in [-2, 2]), the gradient weights, the
/// parameter perturbation and the seed.
#[derive(Clone, Debug)]
struct CouplingData {
    x: Vec<f64>,
    wz: Vec<f64>,
    wld: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

fn coupling_data(n: usize, d: usize) -> impl Strategy<Value = CouplingData> {
    (
        values(n * d, 2.0),
        values(n * d, 1.0),
        values(n, 1.0),
        values(13, 0.3),
        any::<u64>(),
    )
        .prop_map(|(x, wz, wld, delta, seed)| CouplingData {
            x,
            wz,
            wld,
            delta,
            seed,
        })
}

/// An image coupling case: batch size, sample shape `[C, H, W]` and the data.
#[derive(Clone, Debug)]
struct ImageCase {
    n: usize,
    shape: [usize; 3],
    data: CouplingData,
}

prop_compose! {
    /// Images with C in `c`, H in 1..=4 and W in `w` (so C*H*W <= 64), N in 1..=3.
    fn image_case(c: std::ops::RangeInclusive<usize>, w: std::ops::RangeInclusive<usize>)
                 (n in 1usize..=3, c in c, h in 1usize..=4, w in w)
                 (data in coupling_data(n, c * h * w), n in Just(n), c in Just(c), h in Just(h), w in Just(w))
                 -> ImageCase {
        ImageCase { n, shape: [c, h, w], data }
    }
}

/// Every law, f32 and the error cases for a coupling built by `build` (in f64 and f32 from the
/// same seed and perturbation).
fn check_coupling<L64: Bijector<f64>, L32: Bijector<f32>>(
    case: &ImageCase,
    build64: impl Fn(&mut ChaCha8Rng) -> exactflow_kernels::Result<L64>,
    build32: impl Fn(&mut ChaCha8Rng) -> exactflow_kernels::Result<L32>,
) -> Result<(), TestCaseError> {
    let d = &case.data;
    let mut layer = build64(&mut ChaCha8Rng::seed_from_u64(d.seed)).map_err(fail("build f64"))?;
    perturb(&mut layer, &d.delta, 1.0);
    let x = batch(case.n, &case.shape, d.x.clone());
    layer_harness::check_laws(&mut layer, &x, &d.wz, &d.wld)?;
    let mut layer32 = build32(&mut ChaCha8Rng::seed_from_u64(d.seed)).map_err(fail("build f32"))?;
    perturb(&mut layer32, &d.delta, 1.0);
    layer_harness::check_f32(&layer32, &x)?;
    layer_harness::check_errors(&mut layer, &x)
}

fn resnet_cfg() -> impl Strategy<Value = ResNetConfig> {
    (0usize..=1, 1usize..=3).prop_map(|(blocks, features)| ResNetConfig { blocks, features })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(32)))]

    /// Checkerboard: W >= 2 so both parts are non-empty for every H.
    #[test]
    fn affine_resnet_checkerboard(case in image_case(1..=4, 2..=4), flip in any::<bool>(), cfg in resnet_cfg()) {
        let mask = Mask::new(MaskKind::Checkerboard, flip);
        let shape = case.shape;
        check_coupling(
            &case,
            |rng| AffineCoupling::<f64>::with_resnet(&shape, mask, &cfg, rng),
            |rng| AffineCoupling::<f32>::with_resnet(&shape, mask, &cfg, rng),
        )?;
    }

    /// Channel masks: C >= 2 so both parts are non-empty.
    #[test]
    fn affine_resnet_channel(case in image_case(2..=4, 1..=4), flip in any::<bool>(), cfg in resnet_cfg()) {
        let mask = Mask::new(MaskKind::Channel, flip);
        let shape = case.shape;
        check_coupling(
            &case,
            |rng| AffineCoupling::<f64>::with_resnet(&shape, mask, &cfg, rng),
            |rng| AffineCoupling::<f32>::with_resnet(&shape, mask, &cfg, rng),
        )?;
    }

    #[test]
    fn glow_coupling_glow_net(case in image_case(2..=4, 1..=4), hidden in 1usize..=4) {
        let shape = case.shape;
        check_coupling(
            &case,
            |rng| GlowCoupling::<f64>::with_glow_net(&shape, hidden, rng),
            |rng| GlowCoupling::<f32>::with_glow_net(&shape, hidden, rng),
        )?;
    }

    #[test]
    fn additive_coupling_glow_net(case in image_case(2..=4, 1..=4), hidden in 1usize..=4) {
        let shape = case.shape;
        check_coupling(
            &case,
            |rng| AdditiveCoupling::<f64>::with_glow_net(&shape, hidden, rng),
            |rng| AdditiveCoupling::<f32>::with_glow_net(&shape, hidden, rng),
        )?;
    }
}

/// A conditional convolutional network case: batch, input channels, context width, output
/// channels, inner width, residual blocks (ResNet), image size, input, context, output weights,
/// parameter perturbation and seed.
#[derive(Clone, Debug)]
struct ConditionalConvCase {
    n: usize,
    cin: usize,
    cw: usize,
    cout: usize,
    width: usize,
    blocks: usize,
    hw: (usize, usize),
    x: Vec<f64>,
    c: Vec<f64>,
    w: Vec<f64>,
    delta: Vec<f64>,
    seed: u64,
}

impl ConditionalConvCase {
    fn x(&self) -> Tensor<f64> {
        batch(self.n, &[self.cin, self.hw.0, self.hw.1], self.x.clone())
    }

    fn c(&self) -> Tensor<f64> {
        batch(self.n, &[self.cw], self.c.clone())
    }

    fn w(&self) -> Tensor<f64> {
        batch(self.n, &[self.cout, self.hw.0, self.hw.1], self.w.clone())
    }
}

prop_compose! {
    fn conditional_conv_case()(n in 1usize..=3, cin in 1usize..=3, cw in 1usize..=3, cout in 1usize..=3,
                               width in 1usize..=4, blocks in 0usize..=1, h in 1usize..=5, w in 1usize..=5)
                              (x in values(n * cin * h * w, 1.0), c in values(n * cw, 2.0),
                               wt in values(n * cout * h * w, 1.0), delta in values(17, 0.3), seed in any::<u64>(),
                               n in Just(n), cin in Just(cin), cw in Just(cw), cout in Just(cout),
                               width in Just(width), blocks in Just(blocks), h in Just(h), w in Just(w))
                              -> ConditionalConvCase {
        ConditionalConvCase { n, cin, cw, cout, width, blocks, hw: (h, w), x, c, w: wt, delta, seed }
    }
}

/// The gradient check of a conditional network at `(x, c)`: every parameter, dL/dx and dL/dc
/// against central differences (`GRAD_F64`), and its refusal to run without a context.
fn check_conditional_net(net: &mut dyn Conditioner<f64>, c: &ConditionalConvCase) -> Result<(), TestCaseError> {
    let rep =
        grad_check_net(net, &c.x(), Some(&c.c()), &c.w(), GRAD_STEP, MAX_PER_PARAM).map_err(fail("grad check"))?;
    let (name, err) = rep.worst();
    prop_assert!(
        err <= GRAD_F64,
        "{}: gradient of {name}: mixed error {err:e}",
        net.kind()
    );
    prop_assert!(
        rep.context_error <= GRAD_F64,
        "{}: context gradient: mixed error {:e}",
        net.kind(),
        rep.context_error
    );
    prop_assert!(
        net.forward(&c.x(), Ctx::NONE).is_err(),
        "{} ran without its context",
        net.kind()
    );
    let (_, cache) = net
        .forward_train(&c.x(), Ctx::new(Some(&c.c())))
        .map_err(fail("forward_train"))?;
    let g = net.backward(cache, &c.w()).map_err(fail("backward"))?;
    prop_assert_eq!(g.context.map(|t| t.shape().to_vec()), Some(vec![c.n, c.cw]));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(layer_harness::cases(24)))]

    /// The conditional ResNet (context as constant channels after the input, read by the 3x3
    /// input convolution): its gradients, and that it is the unconditional ResNet of `in + C`
    /// channels applied to `[x, c broadcast]` (the PyTorch `torch.cat` of FORMAT.md), bit for
    /// bit: the same products on the same numbers.
    #[test]
    fn conditional_resnet_backward_and_concatenation(c in conditional_conv_case()) {
        let cfg = ResNetConfig { blocks: c.blocks, features: c.width };
        let mut net = ResNet::<f64>::conditional(&cfg, c.cin, c.cw, c.cout, c.hw, &mut ChaCha8Rng::seed_from_u64(c.seed))
            .map_err(fail("new"))?;
        perturb(&mut net, &c.delta, 1.0);
        prop_assert_eq!(net.in_shape(), vec![c.cin, c.hw.0, c.hw.1]);
        let mut plain = ResNet::<f64>::new(&cfg, c.cin + c.cw, c.cout, c.hw, &mut ChaCha8Rng::seed_from_u64(c.seed))
            .map_err(fail("new"))?;
        perturb(&mut plain, &c.delta, 1.0);
        let pixels = c.hw.0 * c.hw.1;
        let mut joined = Vec::new();
        for i in 0..c.n {
            joined.extend_from_slice(&c.x[i * c.cin * pixels..(i + 1) * c.cin * pixels]);
            for k in 0..c.cw {
                joined.extend(std::iter::repeat_n(c.c[i * c.cw + k], pixels));
            }
        }
        let joined = batch(c.n, &[c.cin + c.cw, c.hw.0, c.hw.1], joined);
        let y = net.forward(&c.x(), Ctx::new(Some(&c.c()))).map_err(fail("forward"))?;
        let y_plain = plain.forward(&joined, Ctx::NONE).map_err(fail("forward"))?;
        prop_assert_eq!(y.as_slice(), y_plain.as_slice());
        check_conditional_net(&mut net, &c)?;
    }

    /// The conditional GlowNet (`V c` added per channel to the first convolution's output): its
    /// gradients, and, sample by sample, that it is the unconditional network whose first bias
    /// is `b_0 + V c` (relative 1e-13: the same terms, the bias added in another order).
    #[test]
    fn conditional_glow_net_backward_and_bias(c in conditional_conv_case()) {
        let mut net = GlowNet::<f64>::conditional(c.cin, c.cw, c.width, c.cout, c.hw, &mut ChaCha8Rng::seed_from_u64(c.seed))
            .map_err(fail("new"))?;
        perturb(&mut net, &c.delta, 1.0);
        let mut names = Vec::new();
        net.visit_params("net", &mut |n, p| names.push((n.to_string(), p.value.shape().to_vec())));
        prop_assert_eq!(names.last().cloned(), Some(("net.context.weight".to_string(), vec![c.width, c.cw])));
        let y = net.forward(&c.x(), Ctx::new(Some(&c.c()))).map_err(fail("forward"))?;
        let mut v = Vec::new();
        net.visit_params("", &mut |n, p| if n == "context.weight" { v = p.value.as_slice().to_vec() });
        for i in 0..c.n {
            let mut plain = GlowNet::<f64>::new(c.cin, c.width, c.cout, c.hw, &mut ChaCha8Rng::seed_from_u64(0))
                .map_err(fail("new"))?;
            let mut values = std::collections::HashMap::new();
            net.visit_params("", &mut |n, p| { values.insert(n.to_string(), p.value.as_slice().to_vec()); });
            plain.visit_params_mut("", &mut |n, p| {
                let mut src = values[n].clone();
                if n == "0.bias" {
                    for (j, b) in src.iter_mut().enumerate() {
                        *b += (0..c.cw).map(|k| v[j * c.cw + k] * c.c[i * c.cw + k]).sum::<f64>();
                    }
                }
                p.value.as_mut_slice().copy_from_slice(&src);
            });
            let xi = c.x().slice_batch(i..i + 1).map_err(fail("slice"))?;
            let yi = plain.forward(&xi, Ctx::NONE).map_err(fail("forward"))?;
            let m = yi.len();
            let e = rel_err(&y.as_slice()[i * m..(i + 1) * m], yi.as_slice());
            prop_assert!(e <= 1e-13, "sample {i}: relative error {e:e}");
        }
        check_conditional_net(&mut net, &c)?;
    }
}
