//! The fused Adam takes the same steps as candle-nn's AdamW without weight decay.

use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer;
use vaelab_train::{Adam, AdamConfig};

#[test]
fn fused_adam_matches_candle_adamw() {
    let dev = Device::Cpu;
    let init = Tensor::new(&[[0.5f32, -1.5, 2.0], [0.1, 0.0, -0.3]], &dev).unwrap();
    let target = Tensor::new(&[[1.0f32, 1.0, -1.0], [0.0, 2.0, 0.5]], &dev).unwrap();
    let (a, b) = (Var::from_tensor(&init).unwrap(), Var::from_tensor(&init).unwrap());
    let cfg = AdamConfig { lr: 0.05, beta1: 0.5, beta2: 0.99, eps: 1e-8 };
    let mut ours = Adam::new(vec![a.clone()], cfg);
    let params = candle_nn::ParamsAdamW { lr: 0.05, beta1: 0.5, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 };
    let mut theirs = candle_nn::AdamW::new(vec![b.clone()], params).unwrap();
    for step in 0..50 {
        // A loss whose gradient changes with the parameter: Σ (θ − t)⁴.
        let loss = |v: &Var| v.as_tensor().sub(&target).unwrap().powf(4.0).unwrap().sum_all().unwrap();
        ours.backward_step(&loss(&a)).unwrap();
        theirs.backward_step(&loss(&b)).unwrap();
        let d = a.as_tensor().sub(b.as_tensor()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "step {step}: fused and candle Adam differ by {d}");
    }
    assert_eq!(ours.t, 50);
    let moved = a.as_tensor().sub(&init).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(moved > 0.5, "the optimizer moved the parameter ({moved})");
}

#[test]
fn parameters_without_gradient_are_left_alone() {
    let dev = Device::Cpu;
    let used = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &dev).unwrap()).unwrap();
    let unused = Var::from_tensor(&Tensor::new(&[3.0f32], &dev).unwrap()).unwrap();
    let mut opt = Adam::new(vec![used.clone(), unused.clone()], AdamConfig { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    opt.backward_step(&used.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
    assert_eq!(unused.as_tensor().to_vec1::<f32>().unwrap(), vec![3.0]);
    assert_ne!(used.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
}

/// `step_sum` over a batch's shard gradients takes the step of their sum: with two shards bit for bit (one
/// float addition per element either way), with three up to rounding; the same on one kernel thread or two.
#[test]
fn a_step_from_shard_gradients_is_the_step_from_their_sum() {
    let dev = Device::Cpu;
    let init = Tensor::new(&[[0.5f32, -1.5, 2.0], [0.1, 0.0, -0.3]], &dev).unwrap();
    let targets = [[[1.0f32, 1.0, -1.0], [0.0, 2.0, 0.5]], [[-1.0, 0.5, 0.0], [1.0, 1.0, 1.0]], [[0.3, 0.3, 0.3], [2.0, -2.0, 0.0]]];
    let loss = |v: &Var, t: &[[f32; 3]; 2]| v.as_tensor().sub(&Tensor::new(t, &dev).unwrap()).unwrap().powf(4.0).unwrap().sum_all().unwrap();
    for shards in [2, 3] {
        for threads in ["1", "2"] {
            std::env::set_var("RAYON_NUM_THREADS", threads);
            let (a, b) = (Var::from_tensor(&init).unwrap(), Var::from_tensor(&init).unwrap());
            let cfg = AdamConfig { lr: 0.05, beta1: 0.5, beta2: 0.99, eps: 1e-8 };
            let (mut sharded, mut whole) = (Adam::new(vec![a.clone()], cfg), Adam::new(vec![b.clone()], cfg));
            for _ in 0..20 {
                let parts: Vec<_> = targets[..shards].iter().map(|t| loss(&a, t).backward().unwrap()).collect();
                sharded.step_sum(&parts).unwrap();
                let sum = targets[..shards].iter().map(|t| loss(&b, t)).reduce(|x, y| (x + y).unwrap()).unwrap();
                whole.backward_step(&sum).unwrap();
            }
            let d = a.as_tensor().sub(b.as_tensor()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            match shards {
                2 => assert_eq!(d, 0.0, "two shards, {threads} thread(s)"),
                _ => assert!(d < 1e-5, "three shards, {threads} thread(s): {d}"),
            }
            assert!(a.as_tensor().sub(&init).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.1);
        }
    }
    std::env::remove_var("RAYON_NUM_THREADS");
}

/// A parameter large enough to be updated in pieces on several threads (50,000 elements: three whole pieces
/// and part of a fourth) takes the same steps, bit for bit, on one kernel thread and on two, from one gradient
/// store or two.
#[test]
fn a_large_parameter_steps_the_same_on_one_thread_or_two() {
    let dev = Device::Cpu;
    let n = 50_000;
    let init: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
    let init = Tensor::from_vec(init, n, &dev).unwrap();
    let target = Tensor::arange(0u32, n as u32, &dev).unwrap().to_dtype(candle_core::DType::F32).unwrap().affine(1e-4, -1.0).unwrap();
    let loss = |v: &Var, s: f64| v.as_tensor().sub(&target).unwrap().affine(s, 0.0).unwrap().powf(4.0).unwrap().sum_all().unwrap();
    for stores in [1, 2] {
        let run = |threads: usize| {
            candle_core::utils::with_num_threads(threads, || {
                let a = Var::from_tensor(&init).unwrap();
                let mut opt = Adam::new(vec![a.clone()], AdamConfig { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
                for _ in 0..5 {
                    let parts: Vec<_> = (0..stores).map(|s| loss(&a, 1.0 + s as f64).backward().unwrap()).collect();
                    opt.step_sum(&parts).unwrap();
                }
                a.as_tensor().to_vec1::<f32>().unwrap()
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.iter().zip(init.to_vec1::<f32>().unwrap()).any(|(a, b)| *a != b), "the parameter moved");
        assert!(one.iter().zip(&two).all(|(a, b)| a.to_bits() == b.to_bits()), "{stores} store(s): one thread and two differ");
    }
}
