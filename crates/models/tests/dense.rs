//! The dense layer equals candle-nn's `Linear` on the same weights: values and gradients.

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use vaelab_models::dense;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn dense_equals_candle_linear() {
    let dev = Device::Cpu;
    // 1024 × 300 outputs: the bias add and its column sums split over the kernel threads.
    for (n, i, o) in [(5, 7, 3), (128, 784, 400), (1, 2, 1), (1024, 100, 300)] {
        let vm = VarMap::new();
        let vb = vaelab_models::init::SeededInit::var_builder(&vm, 3, &dev);
        let ours = dense::dense(i, o, vb.pp("l")).unwrap();
        let theirs = candle_nn::linear(i, o, VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev).pp("l")).unwrap();
        assert_eq!(vm.all_vars().len(), 2, "one weight and one bias, shared by both layers");
        let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, (n, i), &dev).unwrap()).unwrap();
        let (ya, yb) = (ours.forward(&x).unwrap(), theirs.forward(&x).unwrap());
        assert_eq!(ya.dims(), yb.dims());
        assert!(max_diff(&ya, &yb) < 1e-5, "forward {n}×{i}→{o}: {}", max_diff(&ya, &yb));
        let r = Tensor::randn(0f32, 1f32, ya.dims(), &dev).unwrap();
        let ga = (&ya * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&yb * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for v in vm.all_vars().iter().map(|v| v.as_tensor().clone()).chain([x.as_tensor().clone()]) {
            let (a, b) = (ga.get(&v).unwrap(), gb.get(&v).unwrap());
            assert!(max_diff(a, b) < 1e-3, "gradient {:?}: {}", v.dims(), max_diff(a, b));
        }
        // A 3-d input takes candle-nn's batched path.
        let x3 = Tensor::randn(0f32, 1f32, (2, n, i), &dev).unwrap();
        assert!(max_diff(&ours.forward(&x3).unwrap(), &theirs.forward(&x3).unwrap()) < 1e-5);
    }
}

/// A binarized batch (≈ 13% ones, as MNIST's digits) takes the sparse path (`vaelab_models::sparse`): the same
/// values and gradients as candle-nn's `Linear`, with the input a variable (its gradient too) or plain data.
#[test]
fn sparse_inputs_equal_candle_linear() {
    let dev = Device::Cpu;
    vaelab_models::sparse::set_enabled(true);
    for (n, i, o) in [(128, 784, 400), (33, 200, 77)] {
        let vm = VarMap::new();
        let vb = vaelab_models::init::SeededInit::var_builder(&vm, 5, &dev);
        let ours = dense::dense(i, o, vb.pp("l")).unwrap();
        let theirs = candle_nn::linear(i, o, VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev).pp("l")).unwrap();
        let bits = Tensor::rand(0f32, 1f32, (n, i), &dev).unwrap().lt(0.13).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let density = bits.mean_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(density > 0.1 && (density as f64) < vaelab_models::sparse::MAX_DENSITY);
        let x = Var::from_tensor(&bits).unwrap();
        for input in [x.as_tensor().clone(), bits.clone()] {
            let (ya, yb) = (ours.forward(&input).unwrap(), theirs.forward(&input).unwrap());
            assert!(max_diff(&ya, &yb) < 1e-5, "forward {n}×{i}→{o}: {}", max_diff(&ya, &yb));
            let r = Tensor::randn(0f32, 1f32, ya.dims(), &dev).unwrap();
            let ga = (&ya * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&yb * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let mut wanted: Vec<Tensor> = vm.all_vars().iter().map(|v| v.as_tensor().clone()).collect();
            if input.is_variable() {
                wanted.push(input.clone());
            }
            for v in &wanted {
                let (a, b) = (ga.get(v).unwrap(), gb.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-4, "gradient {:?}: {}", v.dims(), max_diff(a, b));
            }
            // Plain data gets no gradient, as through the gemm.
            assert_eq!(input.is_variable(), ga.get(&input).is_some());
        }
    }
    // And the gemm path when switched off gives the same numbers to rounding.
    vaelab_models::sparse::set_enabled(false);
    let vm = VarMap::new();
    let ours = dense::dense(784, 400, vaelab_models::init::SeededInit::var_builder(&vm, 5, &dev).pp("l")).unwrap();
    let bits = Tensor::rand(0f32, 1f32, (64, 784), &dev).unwrap().lt(0.13).unwrap().to_dtype(candle_core::DType::F32).unwrap();
    let gemm = ours.forward(&bits).unwrap();
    vaelab_models::sparse::set_enabled(true);
    assert!(max_diff(&ours.forward(&bits).unwrap(), &gemm) < 1e-5);
}
