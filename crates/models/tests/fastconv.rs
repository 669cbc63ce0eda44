//! The gemm-based stride-2 convolutions (im2col and, on wide layers, Winograd) equal candle's conv2d /
//! conv_transpose2d, values and gradients.

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Conv2dConfig, ConvTranspose2dConfig, VarBuilder, VarMap};
use vaelab_models::fastconv;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The largest difference relative to the largest magnitude of `b` (at least 1): the Winograd path's rounding
/// (≈ 2e-5 of a tensor's scale, its transforms having entries up to 5) grows with the scale; im2col's is ≈ 1e-6.
fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
    max_diff(a, b) / scale
}

/// Our layer and candle's, sharing the weights in `vm`, give the same output and the same gradients (w.r.t.
/// input and weights) of a random projection of it.
fn assert_same(ours: &dyn Module, theirs: &dyn Module, vm: &VarMap, x: &Var, case: (usize, usize, usize, usize, usize)) {
    let (ya, yb) = (ours.forward(x).unwrap(), theirs.forward(x).unwrap());
    assert_eq!(ya.dims(), yb.dims());
    eprintln!("forward {case:?}: {} abs, {} rel", max_diff(&ya, &yb), rel_diff(&ya, &yb));
    assert!(rel_diff(&ya, &yb) < 1e-4, "forward {case:?}: {}", rel_diff(&ya, &yb));
    let r = Tensor::randn(0f32, 1f32, ya.dims(), x.device()).unwrap();
    let ga = (ya * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gb = (yb * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for v in vm.all_vars().iter().map(|v| v.as_tensor().clone()).chain([x.as_tensor().clone()]) {
        let (a, b) = (ga.get(&v).unwrap(), gb.get(&v).unwrap());
        eprintln!("gradient {:?}: {} abs, {} rel", v.dims(), max_diff(a, b), rel_diff(a, b));
        assert!(rel_diff(a, b) < 1e-4, "gradient {:?}: {}", v.dims(), rel_diff(a, b));
    }
}

/// One test, so that nothing else in this binary reads RAYON_NUM_THREADS while it changes: the layers split
/// images over candle's kernel threads when it has several (read each call), and sum weight gradients over
/// groups of 16 images (the batches of 20 and 37 cross a group boundary).
#[test]
fn stride2_convs_equal_candles_on_one_and_two_threads() {
    for threads in ["1", "2"] {
        std::env::set_var("RAYON_NUM_THREADS", threads);
        assert_eq!(candle_core::utils::get_num_threads().to_string(), threads);
        down_equals_candle_conv2d();
        up_equals_candle_conv_transpose2d();
    }
}

fn down_equals_candle_conv2d() {
    let dev = Device::Cpu;
    let winograd = [(5, 32, 64, 14, 14), (3, 8, 16, 28, 28), (2, 8, 8, 64, 64), (20, 9, 8, 14, 10)];
    for &(_, c, o, h, w) in &winograd {
        assert!(vaelab_models::winograd::applies(c, o, h / 2, w / 2), "{c}→{o} at {h}×{w} should take the Winograd path");
    }
    // (2, 1, 32, 28, 28): the conv VAE's first layer.
    for (b, c, o, h, w) in [(3, 1, 8, 28, 28), (2, 1, 32, 28, 28), (2, 5, 4, 14, 6), (1, 3, 2, 2, 2), (20, 3, 5, 8, 8), (37, 2, 3, 4, 6)].into_iter().chain(winograd) {
        let vm = VarMap::new();
        let vb = vaelab_models::init::SeededInit::var_builder(&vm, 1, &dev);
        let ours = fastconv::down(c, o, vb.pp("l")).unwrap();
        let cfg = Conv2dConfig { padding: 1, stride: 2, dilation: 1, groups: 1, cudnn_fwd_algo: None };
        let theirs = candle_nn::conv2d(c, o, 4, cfg, VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev).pp("l")).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap()).unwrap();
        assert_same(&ours, &theirs, &vm, &x, (b, c, o, h, w));
    }
}

fn up_equals_candle_conv_transpose2d() {
    let dev = Device::Cpu;
    let winograd = [(5, 64, 32, 7, 7), (3, 16, 8, 14, 14), (2, 8, 8, 32, 32), (20, 9, 8, 7, 5)];
    for &(_, c, o, h, w) in &winograd {
        assert!(vaelab_models::winograd::applies(o, c, h, w), "{c}→{o} at {h}×{w} should take the Winograd path");
    }
    // One output channel, in image groups (7×7) and one image a gemm (14×14, the conv VAE's last layer).
    for (b, c, o, h, w) in [(3, 8, 1, 7, 7), (2, 32, 1, 14, 14), (2, 4, 5, 3, 6), (1, 2, 3, 1, 1), (20, 3, 5, 4, 4), (37, 2, 3, 3, 2)].into_iter().chain(winograd) {
        let vm = VarMap::new();
        let vb = vaelab_models::init::SeededInit::var_builder(&vm, 2, &dev);
        let ours = fastconv::up(c, o, vb.pp("l")).unwrap();
        let cfg = ConvTranspose2dConfig { padding: 1, output_padding: 0, stride: 2, dilation: 1 };
        let theirs = candle_nn::conv_transpose2d(c, o, 4, cfg, VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev).pp("l")).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap()).unwrap();
        assert_same(&ours, &theirs, &vm, &x, (b, c, o, h, w));
    }
}
