//! The one-op (leaky) ReLU equals candle's, values and gradients.

use candle_core::{Device, Tensor, Var};
use vaelab_models::act;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn relu_and_leaky_relu_equal_candles() {
    let dev = Device::Cpu;
    // The second shape is large enough to be split over threads (blocks of 64k values; 401,408 is not a multiple).
    for (shape, slope) in [((4, 3, 5, 5), 0.0), ((4, 3, 5, 5), 0.2), ((64, 32, 14, 14), 0.0), ((64, 32, 14, 14), 0.2)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, shape, &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1f32, shape, &dev).unwrap();
        let ours = act::leaky_relu(&x, slope).unwrap();
        let theirs = if slope == 0.0 { x.relu().unwrap() } else { candle_nn::ops::leaky_relu(&x, slope).unwrap() };
        assert!(max_diff(&ours, &theirs) < 1e-7, "forward, slope {slope}");
        let ga = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (ga.get(x.as_tensor()).unwrap(), gb.get(x.as_tensor()).unwrap());
        assert!(max_diff(a, b) < 1e-6, "gradient, slope {slope}: {}", max_diff(a, b));
        // Negative inputs pass slope·∂y: not all zero for the leaky form, all zero for ReLU.
        let neg = x.as_tensor().lt(0.0).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let passed = (a * &neg).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(passed == 0.0, slope == 0.0);
    }
}
