//! The one-op BCE-with-logits equals the chain of candle ops it replaces, values and gradients, on threads or
//! not; a target that needs a gradient still gets one.

use candle_core::{Device, Tensor, Var};
use vaelab_models::losses;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn fused_bce_with_logits_equals_the_chain() {
    let dev = Device::Cpu;
    for (shape, threads) in [((5, 1, 4, 4), "1"), ((64, 1, 28, 28), "1"), ((64, 1, 28, 28), "2")] {
        // The ops split rows over candle's threads when it has several (read from RAYON_NUM_THREADS each
        // call); this binary's only test, so nothing else reads the variable meanwhile.
        std::env::set_var("RAYON_NUM_THREADS", threads);
        assert_eq!(candle_core::utils::get_num_threads().to_string(), threads);
        // Logits up to ±40 (exp overflows without the stable form), binary and fractional targets.
        let l = Var::from_tensor(&(Tensor::randn(0f32, 1f32, shape, &dev).unwrap() * 8.0).unwrap().clamp(-40f32, 40f32).unwrap()).unwrap();
        let u = Tensor::rand(0f32, 1f32, shape, &dev).unwrap();
        for t in [u.ge(0.5).unwrap().to_dtype(candle_core::DType::F32).unwrap(), u.clone()] {
            let ours = losses::bce_with_logits(&l, &t).unwrap();
            let chain = losses::bce_with_logits_chain(&l, &t).unwrap();
            assert_eq!(ours.dims(), &[shape.0]);
            let scale = chain.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(max_diff(&ours, &chain) < 1e-5 * scale, "forward {shape:?}: {} of {scale}", max_diff(&ours, &chain));
            // Each example's loss weighted differently, so the per-row gradient factor is exercised.
            let w = Tensor::randn(0f32, 1f32, shape.0, &dev).unwrap();
            let ga = (&ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&chain * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (ga.get(l.as_tensor()).unwrap(), gb.get(l.as_tensor()).unwrap());
            assert_eq!(a.dims(), l.dims());
            assert!(max_diff(a, b) < 1e-5, "gradient {shape:?}: {}", max_diff(a, b));
        }
    }
    // A target that is itself trained (e.g. a feature-space target) gets its gradient, −l per element.
    let l = Var::from_tensor(&Tensor::randn(0f32, 1f32, (3, 7), &dev).unwrap()).unwrap();
    let t = Var::from_tensor(&Tensor::rand(0f32, 1f32, (3, 7), &dev).unwrap()).unwrap();
    let g = losses::bce_with_logits(&l, &t).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(max_diff(g.get(t.as_tensor()).unwrap(), &l.as_tensor().neg().unwrap()) < 1e-6);
}
