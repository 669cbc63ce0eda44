//! The path other devices (CUDA) take — candle's stock ops for the conv and dense layers, activations, batch
//! norm, the BCE, and Adam's update from tensor ops — run here on the CPU (`kernels::set_stock_ops_on_cpu`) and
//! compared with the project's CPU kernels. No GPU is needed to check the arithmetic of that path; what stays
//! untested without one is candle's own CUDA kernels.

use candle_core::{DType, Device, Module, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::{kernels, winograd, Batch, DataInfo, ModelCtx, ModelSpec};
use vaelab_train::{Adam, AdamConfig};

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = a.sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let s = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-12);
    d / s
}

/// `steps` Adam steps of a model on a fixed batch: the objective at each step and the parameters at the end.
fn train(yaml: &str, stock: bool, steps: u64) -> (Vec<f32>, Vec<Tensor>) {
    train_resumed(yaml, stock, steps, None)
}

/// [`train`], the optimizer replaced after `resume_at` steps by a new one given the old one's saved state (as
/// a checkpoint restores it).
fn train_resumed(yaml: &str, stock: bool, steps: u64, resume_at: Option<u64>) -> (Vec<f32>, Vec<Tensor>) {
    kernels::set_stock_ops_on_cpu(stock);
    let spec: ModelSpec = serde_yaml::from_str(yaml).unwrap();
    let info = DataInfo { shape: &[1, 28, 28], num_classes: Some(10), train_size: 1000 };
    let net = vaelab_models::build(&spec, &info, &candle_nn::VarMap::new(), 7, &Device::Cpu).unwrap();
    let vars = net.param_groups().remove(0).vars;
    let mut adam = Adam::new(vars.clone(), AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    let mut data = ChaCha8Rng::seed_from_u64(3);
    let pixels: Vec<f32> = (0..16 * 784).map(|_| if rand::Rng::random_bool(&mut data, 0.3) { 1.0 } else { 0.0 }).collect();
    let batch = Batch { x: Tensor::from_vec(pixels, (16, 1, 28, 28), &Device::Cpu).unwrap(), labels: None };
    let mut objectives = vec![];
    for step in 1..=steps {
        let mut rng = ChaCha8Rng::seed_from_u64(step);
        let losses = net.loss(0, &batch, &mut ModelCtx { rng: &mut rng, step }).unwrap();
        objectives.push(losses.objective.to_scalar::<f32>().unwrap());
        adam.backward_step(&losses.objective).unwrap();
        if resume_at == Some(step) {
            let moments = adam.state().map(|(_, m)| m).collect();
            let t = adam.t;
            adam = Adam::new(vars.clone(), adam.config);
            adam.set_state(t, moments).unwrap();
        }
    }
    kernels::set_stock_ops_on_cpu(false);
    (objectives, vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect())
}

/// One test: the switch is process-wide.
#[test]
fn stock_ops_train_like_the_cpu_kernels() {
    // The benchmark's two reference models (`vaelab bench`), smaller: dense, conv, transposed conv, ReLU, BCE,
    // Gaussian noise, Adam. Against the kernels' direct convolutions (im2col): the Winograd path's rounding
    // (≈ 2e-5 of a tensor's scale) flips the sign of near-zero gradients, which Adam's first steps turn into
    // whole ±lr moves — it is held to the direct path on its own below.
    winograd::set_enabled(false);
    for yaml in ["{kind: vae, backbone: mlp, hidden: [64], latent_dim: 8}", "{kind: vae, backbone: conv, channels: [8, 16], latent_dim: 8}"] {
        let (want_obj, want_params) = train(yaml, false, 4);
        let (got_obj, got_params) = train(yaml, true, 4);
        for (s, (g, w)) in got_obj.iter().zip(&want_obj).enumerate() {
            assert!((g - w).abs() <= 1e-4 * w.abs(), "{yaml}, step {}: objective {g} (stock) vs {w}", s + 1);
        }
        // Adam moved the parameters (by ≈ lr a step): they must agree far more closely than that.
        for (g, w) in got_params.iter().zip(&want_params) {
            assert!(max_rel_diff(g, w) < 1e-4, "{yaml}, {:?}: {}", w.dims(), max_rel_diff(g, w));
        }
        assert!(want_obj[3] < want_obj[0], "{yaml}: the objective did not fall: {want_obj:?}");
        // The stock path's moments (kept on the device) go to the host for a checkpoint and back: a resumed
        // optimizer continues exactly.
        let (resumed_obj, resumed_params) = train_resumed(yaml, true, 4, Some(2));
        assert_eq!(resumed_obj, got_obj, "{yaml}: resumed objectives");
        assert!(resumed_params.iter().zip(&got_params).all(|(a, b)| max_rel_diff(a, b) == 0.0), "{yaml}: resumed parameters differ");
    }

    // The Winograd convolutions (the kernels' default where ≥ 8 channels meet 7×7 maps) train like the direct
    // ones: the conv VAE of `vaelab bench`, 20 Adam steps each way.
    let bench_conv = "{kind: vae, backbone: conv, channels: [32, 64], latent_dim: 16}";
    let (direct_obj, direct_params) = train(bench_conv, false, 20);
    winograd::set_enabled(true);
    let (wino_obj, wino_params) = train(bench_conv, false, 20);
    // Measured: within 4e-5 at every step. The weights are not compared: where a gradient is near zero its sign
    // differs between the two roundings and Adam moves that weight by ±lr either way (up to 4% of a layer's
    // largest weight after 20 steps), while the objective follows the same path.
    for (s, (g, w)) in wino_obj.iter().zip(&direct_obj).enumerate() {
        assert!((g - w).abs() <= 1e-4 * w.abs(), "step {}: objective {g} (Winograd) vs {w} (im2col)", s + 1);
    }
    assert_eq!(wino_params.len(), direct_params.len());
    assert!(direct_obj[19] < direct_obj[0] * 0.9, "the objective did not fall: {direct_obj:?}");

    // Leaky ReLU and batch norm (the GAN discriminators'), values and gradients.
    let x = Var::from_tensor(&Tensor::randn(0.5f32, 2.0, (4, 3, 6, 6), &Device::Cpu).unwrap()).unwrap();
    let r = Tensor::randn(0f32, 1.0, (4, 3, 6, 6), &Device::Cpu).unwrap();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let bn = vaelab_models::norm::batch_norm2d(3, vb).unwrap();
    for v in varmap.all_vars() {
        // γ and β away from their initial 1 and 0, so a wrong broadcast would show.
        v.set(&Tensor::randn(0.5f32, 1.0, 3, &Device::Cpu).unwrap()).unwrap();
    }
    let run = |stock: bool| {
        kernels::set_stock_ops_on_cpu(stock);
        let y = bn.forward(&vaelab_models::act::leaky_relu(x.as_tensor(), 0.2).unwrap()).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        kernels::set_stock_ops_on_cpu(false);
        let mut all = vec![y];
        all.extend(std::iter::once(x.clone()).chain(varmap.all_vars()).map(|v| grads.get(v.as_tensor()).unwrap().clone()));
        all
    };
    for (i, (g, w)) in run(true).iter().zip(&run(false)).enumerate() {
        assert!(max_rel_diff(g, w) < 1e-4, "leaky ReLU + batch norm, output {i}: {}", max_rel_diff(g, w));
    }
}
