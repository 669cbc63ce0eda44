//! Loss terms against independent formulas, and every model × backbone × image size runs a training step.

use candle_core::{Device, Tensor};
use candle_nn::{Optimizer, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::{losses, Batch, DataInfo, ModelCtx, ModelSpec};

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

fn onehot(labels: &[usize], k: usize) -> Tensor {
    let mut v = vec![0f32; labels.len() * k];
    for (i, &l) in labels.iter().enumerate() {
        v[i * k + l] = 1.0;
    }
    Tensor::from_vec(v, (labels.len(), k), &Device::Cpu).unwrap()
}

fn snapshot(vars: &[candle_core::Var]) -> Vec<Tensor> {
    vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect()
}

fn changed(vars: &[candle_core::Var], before: &[Tensor]) -> bool {
    vars.iter().zip(before).any(|(a, b)| a.as_tensor().sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 0.0)
}

#[test]
fn every_model_backbone_and_size_trains_a_step() {
    let dev = Device::Cpu;
    for kind in vaelab_models::kinds() {
        for backbone in ["mlp", "conv"] {
            for (c, s) in [(1, 28), (3, 32), (1, 64)] {
                let what = format!("{kind}/{backbone}/{c}×{s}×{s}");
                let varmap = VarMap::new();
                let info = DataInfo { shape: &[c, s, s], num_classes: Some(10), train_size: 0 };
                let model = vaelab_models::build(&spec(kind, backbone), &info, &varmap, 1, &dev).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(0);
                let x = Tensor::rand(0f32, 1f32, (4, c, s, s), &dev).unwrap();
                let batch = Batch { x, labels: Some(onehot(&[0, 3, 9, 3], 10)) };
                let mut ctx = ModelCtx { rng: &mut rng, step: 1 };
                let groups = model.param_groups();
                let all: usize = groups.iter().map(|g| g.vars.len()).sum::<usize>() + model.buffers().len();
                assert_eq!(all, varmap.all_vars().len(), "{what}: every parameter is in exactly one group or a buffer");
                for (pi, phase) in model.phases().iter().enumerate() {
                    let vars = &groups[phase.group].vars;
                    let before = snapshot(vars);
                    let mut opt = candle_nn::AdamW::new_lr(vars.clone(), 1e-3).unwrap();
                    let losses = model.loss(pi, &batch, &mut ctx).unwrap();
                    let v = losses.objective.to_scalar::<f32>().unwrap();
                    assert!(v.is_finite(), "{what}: phase {pi} loss {v}");
                    for (name, t) in &losses.terms {
                        assert!(t.to_scalar::<f32>().unwrap().is_finite(), "{what}: term {name} is a finite scalar");
                    }
                    opt.backward_step(&losses.objective).unwrap();
                    assert!(changed(vars, &before), "{what}: phase {pi} changes its group's weights");
                }
                if let Some(rec) = model.reconstruct(&batch, &mut ctx).unwrap() {
                    assert_eq!(rec.dims(), &[4, c, s, s], "{what}");
                    let z = model.encode(&batch).unwrap().unwrap();
                    assert_eq!(z.dims(), &[4, model.latent_dim()], "{what}");
                    let back = model.decode(&z, batch.labels.as_ref()).unwrap().unwrap();
                    assert_eq!(back.dims(), &[4, c, s, s], "{what}: decode takes what encode gives");
                }
                if let Some(sample) = model.sample(5, None, &mut ctx).unwrap() {
                    assert_eq!(sample.dims(), &[5, c, s, s], "{what}");
                }
                for (name, t) in model.eval(&batch, &mut ctx).unwrap() {
                    assert_eq!(t.dims(), &[4], "{what}: eval metric {name} is per example");
                }
            }
        }
    }
}

#[test]
fn gan_mlp_pair_on_2d_points() {
    let varmap = VarMap::new();
    let spec: ModelSpec = serde_yaml::from_str("{kind: gan, latent_dim: 2, hidden: [16, 16], likelihood: gaussian, d_steps: 3}").unwrap();
    let model = vaelab_models::build(&spec, &DataInfo { shape: &[2], num_classes: None, train_size: 0 }, &varmap, 3, &Device::Cpu).unwrap();
    let phases = model.phases();
    assert_eq!((phases[0].group, phases[0].repeats), (0, 3), "d_steps discriminator steps first");
    assert_eq!((phases[1].group, phases[1].repeats), (1, 1));
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let s = model.sample(7, None, &mut ModelCtx { rng: &mut rng, step: 0 }).unwrap().unwrap();
    assert_eq!(s.dims(), &[7, 2]);
}

/// A discriminator step leaves the generator unchanged, a generator step leaves the discriminator unchanged;
/// for VAE-GAN each of the three phases moves only its own network; WGAN-GP's critic step (with its gradient
/// penalty), the conditional GAN's and FactorVAE's discriminator step likewise.
#[test]
fn adversarial_updates_touch_only_their_own_parameters() {
    // The DCGAN recipe's batch-norm parameters must land in their own network's group too.
    let dcgan = |kind: &str| {
        let mut s = spec(kind, "conv");
        (s.batch_norm, s.init) = (true, vaelab_models::InitScheme::Dcgan);
        (format!("{kind} + batch norm"), s)
    };
    let cases = ["gan", "vae_gan", "wgan_gp", "cgan", "factor_vae"].map(|k| (k.to_string(), spec(k, "conv")));
    for (kind, s) in cases.into_iter().chain(["gan", "vae_gan", "cgan"].map(dcgan)) {
        let varmap = VarMap::new();
        let model = vaelab_models::build(&s, &DataInfo { shape: &[1, 28, 28], num_classes: Some(10), train_size: 0 }, &varmap, 5, &Device::Cpu).unwrap();
        if s.batch_norm {
            let norms = varmap.data().lock().unwrap().keys().filter(|k| k.contains(".norm")).count();
            assert!(norms >= 6, "{kind}: {norms} batch-norm variables");
            let grouped: usize = model.param_groups().iter().map(|g| g.vars.len()).sum();
            assert_eq!(grouped, varmap.all_vars().len(), "{kind}: every variable in a group");
        }
        let groups = model.param_groups();
        assert!(groups.len() >= 2, "{kind} has its own optimizer per network");
        let mut opts: Vec<_> = groups.iter().map(|g| candle_nn::AdamW::new_lr(g.vars.clone(), 1e-2).unwrap()).collect();
        let batch = Batch { x: Tensor::rand(0f32, 1f32, (6, 1, 28, 28), &Device::Cpu).unwrap(), labels: Some(onehot(&[0, 1, 2, 3, 4, 5], 10)) };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (pi, phase) in model.phases().iter().enumerate() {
            let before: Vec<Vec<Tensor>> = groups.iter().map(|g| snapshot(&g.vars)).collect();
            let losses = model.loss(pi, &batch, &mut ModelCtx { rng: &mut rng, step: 1 }).unwrap();
            opts[phase.group].backward_step(&losses.objective).unwrap();
            for (gi, g) in groups.iter().enumerate() {
                assert_eq!(changed(&g.vars, &before[gi]), gi == phase.group, "{kind}: phase {pi} vs group {}", g.name);
            }
        }
    }
}

#[test]
fn cvae_is_conditioned_on_the_label() {
    let varmap = VarMap::new();
    let model = vaelab_models::build(&spec("cvae", "mlp"), &DataInfo { shape: &[1, 28, 28], num_classes: Some(10), train_size: 0 }, &varmap, 2, &Device::Cpu).unwrap();
    assert_eq!(model.classes(), Some(10));
    let x = Tensor::rand(0f32, 1f32, (2, 1, 28, 28), &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ctx = ModelCtx { rng: &mut rng, step: 0 };
    let a = model.reconstruct(&Batch { x: x.clone(), labels: Some(onehot(&[1, 1], 10)) }, &mut ctx).unwrap().unwrap();
    let b = model.reconstruct(&Batch { x: x.clone(), labels: Some(onehot(&[7, 7], 10)) }, &mut ctx).unwrap().unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff > 1e-4, "changing the label changes the decoder output ({diff})");
    // n per class: 3 classes × 4 samples.
    let labels: Vec<usize> = (0..12).map(|i| i / 4).collect();
    let s = model.sample(12, Some(&onehot(&labels, 10)), &mut ctx).unwrap().unwrap();
    assert_eq!(s.dims(), &[12, 1, 28, 28]);
    // Without labels every class comes in turn.
    assert_eq!(model.sample(20, None, &mut ctx).unwrap().unwrap().dim(0).unwrap(), 20);
    // Unlabelled data is an error, not a silent unconditional model.
    assert!(vaelab_models::build(&spec("cvae", "mlp"), &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &VarMap::new(), 2, &Device::Cpu).is_err());
}

#[test]
fn beta_vae_capacity_reaches_c_max_at_the_configured_step() {
    let spec: ModelSpec = serde_yaml::from_str("{kind: beta_vae, latent_dim: 3, hidden: [16], capacity: {max: 25.0, gamma: 100.0, steps: 1000}}").unwrap();
    let c = spec.capacity.clone().unwrap();
    assert_eq!(c.at(0), 0.0);
    assert!((c.at(500) - 12.5).abs() < 1e-12);
    assert_eq!(c.at(1000), 25.0);
    assert_eq!(c.at(5000), 25.0);
    // The model logs the capacity it used and its objective is γ·|KL − C| + recon.
    let model = vaelab_models::build(&spec, &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &VarMap::new(), 2, &Device::Cpu).unwrap();
    let batch = Batch { x: Tensor::rand(0f32, 1f32, (4, 1, 28, 28), &Device::Cpu).unwrap(), labels: None };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let l = model.loss(0, &batch, &mut ModelCtx { rng: &mut rng, step: 1000 }).unwrap();
    let term = |n: &str| l.terms.iter().find(|t| t.0 == n).unwrap().1.to_scalar::<f32>().unwrap() as f64;
    assert_eq!(term("capacity"), 25.0);
    let want = term("recon") + 100.0 * (term("kl") - 25.0).abs();
    assert!((term("loss") - want).abs() < 1e-3 * want, "{} vs {want}", term("loss"));
}

#[test]
fn beta_weights_the_kl_and_warmup_schedules() {
    let spec: ModelSpec = serde_yaml::from_str("{kind: beta_vae, latent_dim: 3, hidden: [16], beta: 4.0, kl_warmup: {schedule: linear, steps: 100}}").unwrap();
    let model = vaelab_models::build(&spec, &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &VarMap::new(), 2, &Device::Cpu).unwrap();
    let batch = Batch { x: Tensor::rand(0f32, 1f32, (4, 1, 28, 28), &Device::Cpu).unwrap(), labels: None };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let l = model.loss(0, &batch, &mut ModelCtx { rng: &mut rng, step: 25 }).unwrap();
    let term = |n: &str| l.terms.iter().find(|t| t.0 == n).unwrap().1.to_scalar::<f32>().unwrap() as f64;
    assert_eq!(term("kl_weight"), 0.25);
    let want = term("recon") + 4.0 * 0.25 * term("kl");
    assert!((term("loss") - want).abs() < 1e-4 * want);

    let cyc: vaelab_models::schedule::KlWarmup = serde_yaml::from_str("{schedule: cyclical, steps: 100, ratio: 0.5}").unwrap();
    assert_eq!(cyc.weight(0), 0.0);
    assert_eq!(cyc.weight(25), 0.5);
    assert_eq!(cyc.weight(50), 1.0);
    assert_eq!(cyc.weight(99), 1.0);
    assert_eq!(cyc.weight(100), 0.0, "a new cycle starts from 0");
    assert_eq!(cyc.weight(125), 0.5);
}

#[test]
fn init_is_seeded() {
    let dev = Device::Cpu;
    let weights = |seed| {
        let vm = VarMap::new();
        vaelab_models::build(&spec("vae", "conv"), &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &vm, seed, &dev).unwrap();
        let data = vm.data().lock().unwrap();
        data["encoder.conv0.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(weights(4), weights(4));
    assert_ne!(weights(4), weights(5));
}

/// VAE-GAN's simultaneous update: the three objectives come from one pass; each gradient, applied to its own
/// group only, moves only that group.
#[test]
fn vae_gan_joint_update_moves_each_group_by_its_own_objective() {
    let varmap = VarMap::new();
    let model = vaelab_models::build(&spec("vae_gan", "conv"), &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &varmap, 5, &Device::Cpu).unwrap();
    let groups = model.param_groups();
    let phases = model.phases();
    let batch = Batch { x: Tensor::rand(0f32, 1f32, (6, 1, 28, 28), &Device::Cpu).unwrap(), labels: None };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let all = model.joint_losses(&batch, &mut ModelCtx { rng: &mut rng, step: 1 }).unwrap().expect("vae_gan has a joint update");
    assert_eq!(all.len(), phases.len());
    let grads: Vec<_> = all.iter().map(|l| l.objective.backward().unwrap()).collect();
    for (pi, (phase, g)) in phases.iter().zip(&grads).enumerate() {
        let before: Vec<Vec<Tensor>> = groups.iter().map(|g| snapshot(&g.vars)).collect();
        let mut opt = candle_nn::AdamW::new_lr(groups[phase.group].vars.clone(), 1e-2).unwrap();
        opt.step(g).unwrap();
        for (gi, grp) in groups.iter().enumerate() {
            assert_eq!(changed(&grp.vars, &before[gi]), gi == phase.group, "phase {pi} vs group {}", grp.name);
        }
    }
    // Models without a joint update say so.
    let vae = vaelab_models::build(&spec("vae", "mlp"), &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &VarMap::new(), 5, &Device::Cpu).unwrap();
    assert!(vae.joint_losses(&batch, &mut ModelCtx { rng: &mut rng, step: 1 }).unwrap().is_none());
}

#[test]
fn importance_weights_average_to_the_elbo_and_tighten_with_k() {
    // E_q[log w] is the ELBO, so the mean of −log w over many samples matches the analytic −ELBO that
    // `eval` reports (averaged over its own noise); log-mean-exp over k samples can only be tighter.
    let varmap = VarMap::new();
    let shape = [1usize, 28, 28];
    let info = DataInfo { shape: &shape, num_classes: None, train_size: 0 };
    let model = vaelab_models::build(&spec("vae", "mlp"), &info, &varmap, 0, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let px: Vec<f32> = (0..4 * 784).map(|i| ((i * 7919 + i / 13) % 5 < 2) as u8 as f32).collect();
    let batch = Batch { x: Tensor::from_vec(px, (4, 1, 28, 28), &Device::Cpu).unwrap(), labels: None };
    let w = model.log_importance_weights(&batch, 2000, &mut ModelCtx { rng: &mut rng, step: 0 }).unwrap().unwrap();
    assert_eq!(w.dims(), &[4, 2000]);
    let w: Vec<Vec<f32>> = w.to_vec2().unwrap();
    let mut elbo = 0.0;
    for _ in 0..1000 {
        let terms = model.eval(&batch, &mut ModelCtx { rng: &mut rng, step: 0 }).unwrap();
        let ne = terms.iter().find(|t| t.0 == "neg_elbo").unwrap().1.to_vec1::<f32>().unwrap();
        elbo += ne.iter().map(|&v| v as f64).sum::<f64>() / 4.0 / 1000.0;
    }
    let mean_neg_logw: f64 = w.iter().flatten().map(|&v| -(v as f64)).sum::<f64>() / 8000.0;
    // Both are Monte Carlo means of a quantity with a spread of tens of nats under an untrained decoder.
    assert!((mean_neg_logw - elbo).abs() < 0.02 * elbo, "−E[log w] {mean_neg_logw} vs −ELBO {elbo}");
    for row in &w {
        let lw: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let m = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let iwae = -(m + (lw.iter().map(|v| (v - m).exp()).sum::<f64>() / lw.len() as f64).ln());
        let mean = -lw.iter().sum::<f64>() / lw.len() as f64;
        assert!(iwae <= mean + 1e-9);
    }
    // Models without a likelihood have no weights.
    let gm = vaelab_models::build(&spec("gan", "mlp"), &info, &VarMap::new(), 0, &Device::Cpu).unwrap();
    assert!(gm.log_importance_weights(&batch, 2, &mut ModelCtx { rng: &mut rng, step: 0 }).unwrap().is_none());
}
