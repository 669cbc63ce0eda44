//! Loss terms against independent formulas, and every model × backbone × image size runs a training step.

use candle_core::{Device, Tensor, D};
use candle_nn::{Optimizer, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::{losses, Batch, ModelCtx, ModelSpec};

#[test]
fn bce_with_logits_matches_the_direct_formula() {
    let logits = [-30.0f32, -2.5, -0.1, 0.0, 0.7, 4.0, 25.0];
    let target = [0.0f32, 1.0, 0.3, 1.0, 0.0, 1.0, 0.5];
    let l = Tensor::new(&logits[..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let t = Tensor::new(&target[..], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let got = losses::bce_with_logits(&l, &t).unwrap().to_vec1::<f32>().unwrap()[0] as f64;
    let want: f64 = logits
        .iter()
        .zip(target)
        .map(|(&x, y)| {
            let p = 1.0 / (1.0 + (-(x as f64)).exp());
            // log σ(x) and log(1 − σ(x)) computed without cancellation for large |x|.
            let (lp, lq) = (-(1.0 + (-(x as f64)).exp()).ln(), -(1.0 + (x as f64).exp()).ln());
            let _ = p;
            -(y as f64 * lp + (1.0 - y as f64) * lq)
        })
        .sum();
    assert!((got - want).abs() < 1e-4 * want.abs().max(1.0), "{got} vs {want}");
}

#[test]
fn analytic_kl_matches_monte_carlo() {
    let mu = [0.5f32, -1.2, 0.0, 2.0];
    let logvar = [0.0f32, -1.0, 0.8, -2.5];
    let dev = Device::Cpu;
    let kl = losses::kl_standard_normal(&Tensor::new(&mu[..], &dev).unwrap().unsqueeze(0).unwrap(), &Tensor::new(&logvar[..], &dev).unwrap().unsqueeze(0).unwrap())
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
    // E_q[log q(z) − log p(z)] by sampling.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 200_000;
    let mut acc = 0.0f64;
    for _ in 0..n {
        for d in 0..4 {
            let std = (0.5 * logvar[d] as f64).exp();
            let e = vaelab_models::init::standard_normal(&mut rng) as f64;
            let z = mu[d] as f64 + std * e;
            acc += -0.5 * e * e - std.ln() + 0.5 * z * z;
        }
    }
    let mc = acc / n as f64;
    assert!((kl - mc).abs() < 0.02, "analytic {kl} vs Monte Carlo {mc}");
}

fn spec(kind: &str, backbone: &str) -> ModelSpec {
    serde_yaml::from_str(&format!("{{kind: {kind}, backbone: {backbone}, latent_dim: 3, hidden: [32], channels: [8, 16]}}")).unwrap()
}

#[test]
fn every_model_backbone_and_size_trains_a_step() {
    let dev = Device::Cpu;
    for kind in vaelab_models::kinds() {
        for backbone in ["mlp", "conv"] {
            for (c, s) in [(1, 28), (3, 32), (1, 64)] {
                let varmap = VarMap::new();
                let model = vaelab_models::build(&spec(kind, backbone), &[c, s, s], &varmap, 1, &dev).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                let x = Tensor::rand(0f32, 1f32, (4, c, s, s), &dev).unwrap();
                let batch = Batch { x, labels: None };
                let mut ctx = ModelCtx { rng: &mut rng, step: 1 };
                let groups = model.param_groups();
                let before: Vec<Tensor> = groups[0].vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
                let mut opt = candle_nn::AdamW::new_lr(groups[0].vars.clone(), 1e-3).unwrap();
                let losses = model.loss(0, &batch, &mut ctx).unwrap();
                let v = losses.objective.to_scalar::<f32>().unwrap();
                assert!(v.is_finite(), "{kind}/{backbone}/{s}: loss {v}");
                opt.backward_step(&losses.objective).unwrap();
                let moved = groups[0].vars.iter().zip(&before).any(|(a, b)| {
                    a.as_tensor().sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0
                });
                assert!(moved, "{kind}/{backbone}/{s}: a step changes the weights");
                let rec = model.reconstruct(&batch, &mut ctx).unwrap().unwrap();
                assert_eq!(rec.dims(), &[4, c, s, s], "{kind}/{backbone}/{s}");
                if let Some(sample) = model.sample(5, None, &mut ctx).unwrap() {
                    assert_eq!(sample.dims(), &[5, c, s, s]);
                }
                let z = model.encode(&batch).unwrap().unwrap();
                assert_eq!(z.dims(), &[4, 3]);
                for (name, t) in model.eval(&batch, &mut ctx).unwrap() {
                    assert_eq!(t.dims(), &[4], "{kind}: eval metric {name} is per example");
                }
                let _ = D::Minus1;
            }
        }
    }
}

#[test]
fn init_is_seeded() {
    let dev = Device::Cpu;
    let weights = |seed| {
        let vm = VarMap::new();
        vaelab_models::build(&spec("vae", "conv"), &[1, 28, 28], &vm, seed, &dev).unwrap();
        let data = vm.data().lock().unwrap();
        data["encoder.conv0.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(weights(4), weights(4));
    assert_ne!(weights(4), weights(5));
}
