//! Data-parallel shards (`train.shards`): the sharded gradient is the batch's gradient, and a sharded step
//! gives the same numbers on one thread and on two.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::{Batch, DataInfo, GenerativeModel, ModelCtx, ModelSpec};
use vaelab_train::shards::sharded_loss;

fn model(yaml: &str) -> Box<dyn GenerativeModel> {
    let spec: ModelSpec = serde_yaml::from_str(yaml).unwrap();
    let info = DataInfo { shape: &[1, 28, 28], num_classes: Some(10), train_size: 1000 };
    vaelab_models::build(&spec, &info, &candle_nn::VarMap::new(), 7, &Device::Cpu).unwrap()
}

/// 11 binary 28×28 images (an odd batch: shards of unequal size) and their one-hot labels.
fn batch() -> Batch {
    let dev = Device::Cpu;
    let x = Tensor::rand(0f32, 1f32, (11, 1, 28, 28), &dev).unwrap().ge(0.7).unwrap().to_dtype(candle_core::DType::F32).unwrap();
    let labels = Tensor::eye(10, candle_core::DType::F32, &dev).unwrap().narrow(0, 0, 10).unwrap();
    let labels = Tensor::cat(&[&labels, &labels.narrow(0, 0, 1).unwrap()], 0).unwrap();
    Batch { x, labels: Some(labels) }
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = a.sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let s = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-12);
    d / s
}

/// One test: it changes RAYON_NUM_THREADS, which the kernels read on every call.
#[test]
fn sharded_gradients_are_the_batch_gradient_on_any_thread_count() {
    let b = batch();
    // An AE draws no noise, so its sharded and whole-batch gradients differ by float rounding only.
    for backbone in ["conv, channels: [8, 16]", "mlp, hidden: [32]"] {
        let ae = model(&format!("{{kind: ae, backbone: {backbone}, latent_dim: 4}}"));
        let vars = ae.param_groups().remove(0).vars;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let whole = ae.loss(0, &b, &mut ModelCtx { rng: &mut rng, step: 1 }).unwrap();
        let want = whole.objective.backward().unwrap();
        for shards in [2, 3, 11] {
            let got = sharded_loss(&*ae, 0, &b, shards, &mut rng, 1).unwrap();
            let w = whole.objective.to_scalar::<f32>().unwrap();
            assert!((got.objective - w).abs() <= 1e-5 * w.abs(), "{backbone}, {shards} shards: objective {} vs {w}", got.objective);
            assert_eq!(got.terms.len(), whole.terms.len());
            for v in &vars {
                let g = got.grads.iter().map(|s| s.get(v.as_tensor()).unwrap().clone()).reduce(|a, b| (a + b).unwrap()).unwrap();
                let (g, h) = (&g, want.get(v.as_tensor()).unwrap());
                assert!(max_rel_diff(g, h) < 1e-4, "{backbone}, {shards} shards, {:?}: {}", v.dims(), max_rel_diff(g, h));
            }
        }
    }
    // A CVAE (noise, labels): bit-identical on one thread and on two, shards running in parallel on two.
    let cvae = model("{kind: cvae, backbone: conv, channels: [8, 16], latent_dim: 4}");
    assert!(cvae.per_example_objective());
    let vars = cvae.param_groups().remove(0).vars;
    let run = |threads: &str| {
        std::env::set_var("RAYON_NUM_THREADS", threads);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let s = sharded_loss(&*cvae, 0, &b, 2, &mut rng, 3).unwrap();
        let grads: Vec<Vec<f32>> = s.grads.iter().flat_map(|g| vars.iter().map(|v| g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap())).collect();
        (s.objective, s.terms, grads)
    };
    let (one, two) = (run("1"), run("2"));
    assert_eq!(one.0.to_bits(), two.0.to_bits());
    assert_eq!(one.1, two.1);
    assert!(one.2 == two.2, "gradients differ between one and two threads");
    std::env::remove_var("RAYON_NUM_THREADS");
}

#[test]
fn only_per_example_objectives_can_be_sharded() {
    // Every model of the zoo at its defaults: those whose objective is a per-example mean, and no others.
    let shardable: Vec<&str> = vaelab_models::kinds().iter().copied().filter(|k| model(&format!("{{kind: {k}}}")).per_example_objective()).collect();
    assert_eq!(shardable, ["ae", "vae", "beta_vae", "cvae", "iwae"]);
    // β-VAE's capacity form, γ·|mean KL − C|, is not.
    assert!(!model("{kind: beta_vae, capacity: {gamma: 100, max: 25, steps: 1000}}").per_example_objective());
}
