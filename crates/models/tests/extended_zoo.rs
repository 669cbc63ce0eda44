//! The extended zoo's pieces against independent answers: the critic's explicit input gradient against
//! candle's autograd, the estimators (TC, MMD, DIP covariance) on inputs whose answer is known, the
//! FactorVAE permutation, the IWAE bound, and the VQ-VAE's quantizer and EMA codebook.

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::backbone::Encoder;
use vaelab_models::init::randn;
use vaelab_models::zoo::{beta_tc_vae, dip_vae, factor_vae, wae_mmd};
use vaelab_models::{Batch, DataInfo, ModelCtx, ModelSpec};

fn spec(yaml: &str) -> ModelSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f32>().unwrap() as f64
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    scalar(&(a - b).unwrap().abs().unwrap().max_all().unwrap())
}

/// A loss term by name.
fn term(l: &vaelab_models::Losses, name: &str) -> f64 {
    scalar(&l.terms.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("no term {name}")).1)
}

/// `n` binary single-channel `side`×`side` images, a fixed pseudo-random pattern.
fn binary_batch(n: usize, side: usize, dev: &Device) -> Batch {
    let px: Vec<f32> = (0..n * side * side).map(|i| ((i * 7919 + i / 13) % 5 < 2) as u8 as f32).collect();
    Batch { x: Tensor::from_vec(px, (n, 1, side, side), dev).unwrap(), labels: None }
}

/// WGAN-GP's penalty rests on `Encoder::input_gradient`: it must equal the gradient candle's backward
/// computes for the input, for both backbones, with and without label planes.
#[test]
fn critic_input_gradient_matches_autograd() {
    let dev = Device::Cpu;
    for (backbone, label) in [("mlp", false), ("mlp", true), ("conv", false), ("conv", true)] {
        let s = spec(&format!("{{kind: wgan_gp, backbone: {backbone}, hidden: [24, 12], channels: [4, 8]}}"));
        let varmap = VarMap::new();
        let vb = vaelab_models::init::SeededInit::var_builder(&varmap, 9, &dev);
        let extra = if label { 3 } else { 0 };
        let critic = Encoder::discriminator(&s, &[2, 8, 8], extra, vb).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Var::from_tensor(&randn(&mut rng, (5, 2, 8, 8), &dev).unwrap()).unwrap();
        let labels = label.then(|| randn(&mut rng, (5, 3), &dev).unwrap());
        let out = critic.forward(x.as_tensor(), labels.as_ref()).unwrap().sum_all().unwrap();
        let want = out.backward().unwrap().get(x.as_tensor()).unwrap().clone();
        let got = critic.input_gradient(x.as_tensor(), labels.as_ref()).unwrap();
        assert_eq!(got.dims(), &[5, 2, 8, 8]);
        let scale = scalar(&want.abs().unwrap().max_all().unwrap());
        assert!(scale > 0.0);
        assert!(max_abs_diff(&got, &want) < 1e-4 * scale.max(1.0), "{backbone} label={label}");
    }
}

/// The gradient penalty is differentiable in the critic's weights: its gradient matches a finite difference.
#[test]
fn gradient_penalty_trains_the_critic_weights() {
    let dev = Device::Cpu;
    let s = spec("{kind: wgan_gp, backbone: mlp, hidden: [6]}");
    let varmap = VarMap::new();
    let vb = vaelab_models::init::SeededInit::var_builder(&varmap, 2, &dev);
    let critic = Encoder::discriminator(&s, &[3], 0, vb).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = randn(&mut rng, (7, 3), &dev).unwrap();
    let penalty = || {
        let g = critic.input_gradient(&x, None).unwrap();
        (g.sqr().unwrap().sum(1).unwrap().sqrt().unwrap() - 1.0).unwrap().sqr().unwrap().sum_all().unwrap()
    };
    let w = varmap.data().lock().unwrap()["fc0.weight"].clone();
    let grad = penalty().backward().unwrap().get(w.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let base = w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for i in [0, 4, 11, 17] {
        let h = 1e-2f32;
        let mut v = base.clone();
        v[i] += h;
        w.set(&Tensor::from_vec(v.clone(), w.shape(), &dev).unwrap()).unwrap();
        let up = scalar(&penalty());
        v[i] -= 2.0 * h;
        w.set(&Tensor::from_vec(v, w.shape(), &dev).unwrap()).unwrap();
        let down = scalar(&penalty());
        w.set(&Tensor::from_vec(base.clone(), w.shape(), &dev).unwrap()).unwrap();
        let fd = (up - down) / (2.0 * h as f64);
        assert!((fd - grad[i] as f64).abs() < 2e-2 * fd.abs().max(0.1), "weight {i}: finite difference {fd} vs {}", grad[i]);
    }
}

type TcEstimate = dyn Fn(&Tensor, &Tensor, &Tensor) -> f64;

/// A batch of 64 codes of 4 dimensions with identical N(0, I) posteriors (zero means and log-variances), and the
/// estimate of two codes that copy one dimension against two independent ones, posteriors of std `sigma`.
fn tc_cases(estimate: &TcEstimate, sigma: f64) -> (f64, f64, f64) {
    let dev = Device::Cpu;
    let (b, d) = (64, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let z = randn(&mut rng, (b, d), &dev).unwrap();
    let zeros = Tensor::zeros((b, d), candle_core::DType::F32, &dev).unwrap();
    let identical = estimate(&z, &zeros, &zeros);
    let logvar = (Tensor::ones((b, 2), candle_core::DType::F32, &dev).unwrap() * (2.0 * sigma.ln())).unwrap();
    let m1 = randn(&mut rng, (b, 1), &dev).unwrap();
    let m2 = randn(&mut rng, (b, 1), &dev).unwrap();
    let tc_of = |mu: Tensor| {
        let eps = randn(&mut ChaCha8Rng::seed_from_u64(5), (b, 2), &dev).unwrap();
        let z = (&mu + (eps * sigma).unwrap()).unwrap();
        estimate(&z, &mu, &logvar)
    };
    (identical, tc_of(Tensor::cat(&[&m1, &m1], 1).unwrap()), tc_of(Tensor::cat(&[&m1, &m2], 1).unwrap()))
}

/// TC(z) = 0 for independent dimensions, > 0 for dependent ones. With identical posteriors the minibatch
/// estimate is exactly −(d − 1)·log B (the constants it leaves out); two copies of one code score higher
/// than two independent codes.
#[test]
fn total_correlation_estimate_tells_dependent_codes_from_independent_ones() {
    let mws = |z: &Tensor, mu: &Tensor, lv: &Tensor| scalar(&beta_tc_vae::total_correlation(z, mu, lv).unwrap().mean_all().unwrap());
    let (identical, dependent, independent) = tc_cases(&mws, 0.05);
    let want = -3.0 * 64f64.ln();
    assert!((identical - want).abs() < 1e-3, "{identical} vs {want}");
    assert!(dependent > independent + 0.5, "dependent {dependent} vs independent {independent}");
}

/// The stratified estimate's weights sum to 1: identical posteriors give exactly TC = 0 (no constant left
/// out), and it too scores two copies of one code above two independent codes.
#[test]
fn stratified_total_correlation_is_normalised_and_tells_dependence() {
    let mss = |z: &Tensor, mu: &Tensor, lv: &Tensor| scalar(&beta_tc_vae::total_correlation_stratified(z, mu, lv, 50_000).unwrap().mean_all().unwrap());
    let (identical, dependent, independent) = tc_cases(&mss, 0.3);
    assert!(identical.abs() < 1e-4, "{identical}");
    assert!(dependent > independent + 0.3, "dependent {dependent} vs independent {independent}");
    let one = Tensor::zeros((1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(beta_tc_vae::total_correlation_stratified(&one, &one, &one, 10).is_err());
}

#[test]
fn dip_penalty_is_zero_at_identity_covariance_and_counts_each_entry() {
    let dev = Device::Cpu;
    // Rows ±e_i: batch covariance (÷B) exactly the identity, mean 0.
    let mut v = vec![0f32; 6 * 3];
    for i in 0..3 {
        v[(2 * i) * 3 + i] = 3f32.sqrt();
        v[(2 * i + 1) * 3 + i] = -(3f32.sqrt());
    }
    let mu = Tensor::from_vec(v, (6, 3), &dev).unwrap();
    let cov = dip_vae::covariance(&mu).unwrap();
    assert!(max_abs_diff(&cov, &Tensor::eye(3, candle_core::DType::F32, &dev).unwrap()) < 1e-5);
    let zeros = Tensor::zeros((6, 3), candle_core::DType::F32, &dev).unwrap();
    let i = dip_vae::DipPenalty { second_type: false, lambda_od: 10.0, lambda_d: 100.0 };
    assert!(scalar(&i.penalty(&mu, &zeros).unwrap()).abs() < 1e-4);
    // Doubling the codes: diagonal 4 → 100·3·(4 − 1)² = 2700.
    assert!((scalar(&i.penalty(&(&mu * 2.0).unwrap(), &zeros).unwrap()) - 2700.0).abs() < 1e-1);
    // Type II adds E[σ²] = 1 (log σ² = 0) to the diagonal: 2 → λ_d·3·1.
    let ii = dip_vae::DipPenalty { second_type: true, lambda_od: 10.0, lambda_d: 1.0 };
    assert!((scalar(&ii.penalty(&mu, &zeros).unwrap()) - 3.0).abs() < 1e-3);
}

#[test]
fn mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift() {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = randn(&mut rng, (400, 4), &dev).unwrap();
    let y = randn(&mut rng, (400, 4), &dev).unwrap();
    let same = scalar(&wae_mmd::mmd_imq(&x, &y).unwrap());
    let shifted = scalar(&wae_mmd::mmd_imq(&x, &(&y + 1.5).unwrap()).unwrap());
    assert!(same.abs() < 0.01, "same distribution: {same}");
    assert!(shifted > 0.2, "shifted by 1.5: {shifted}");
    assert!(scalar(&wae_mmd::mmd_imq(&x, &(&y + 0.5).unwrap()).unwrap()) < shifted);
}

#[test]
fn factor_vae_permutes_each_dimension_on_its_own() {
    let dev = Device::Cpu;
    let z = Tensor::arange(0f32, 60.0, &dev).unwrap().reshape((20, 3)).unwrap();
    let p = factor_vae::permute_dims(&z, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    let (zv, pv): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (z.to_vec2().unwrap(), p.to_vec2().unwrap());
    for j in 0..3 {
        let mut a: Vec<f32> = zv.iter().map(|r| r[j]).collect();
        let mut b: Vec<f32> = pv.iter().map(|r| r[j]).collect();
        assert_ne!(a, b, "column {j} is shuffled");
        a.sort_by(f32::total_cmp);
        b.sort_by(f32::total_cmp);
        assert_eq!(a, b, "column {j} keeps its values");
    }
    // Rows are mixed: some row holds values from different rows of z.
    assert!(pv.iter().any(|r| (r[0] as usize) / 3 != (r[1] as usize) / 3));
}

/// The IWAE objective is the k-sample bound: never above the one-sample −ELBO on average, and k = 1 trains
/// exactly the VAE's objective.
#[test]
fn iwae_bound_is_tighter_than_the_elbo() {
    let dev = Device::Cpu;
    let info = DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 };
    let batch = binary_batch(8, 28, &dev);
    let model = vaelab_models::build(&spec("{kind: iwae, latent_dim: 4, hidden: [32], iwae_k: 50}"), &info, &VarMap::new(), 0, &dev).unwrap();
    let (mut bound, mut elbo) = (0.0, 0.0);
    for seed in 0..5 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let l = model.loss(0, &batch, &mut ModelCtx { rng: &mut rng, step: 1 }).unwrap();
        bound += term(&l, "iwae_bound");
        elbo += term(&l, "neg_elbo");
        assert_eq!(scalar(&l.objective), term(&l, "iwae_bound"));
    }
    assert!(bound < elbo, "IWAE (k = 50) {bound} vs −ELBO {elbo}");
    let k1 = vaelab_models::build(&spec("{kind: iwae, latent_dim: 4, hidden: [32], iwae_k: 1}"), &info, &VarMap::new(), 0, &dev).unwrap();
    let l = k1.loss(0, &batch, &mut ModelCtx { rng: &mut ChaCha8Rng::seed_from_u64(0), step: 1 }).unwrap();
    assert!((scalar(&l.objective) - term(&l, "neg_elbo")).abs() < 1e-3);
}

/// The quantizer picks the nearest entry, the straight-through estimator passes the decoder's gradient to the
/// encoder, and the EMA variant moves its codebook without an optimizer.
#[test]
fn vq_vae_quantizes_and_its_ema_codebook_moves() {
    let dev = Device::Cpu;
    let info = DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 };
    let batch = Batch { x: Tensor::rand(0f32, 1f32, (16, 1, 28, 28), &dev).unwrap(), labels: None };
    for kind in ["vq_vae", "vq_vae_ema"] {
        let varmap = VarMap::new();
        let model = vaelab_models::build(&spec(&format!("{{kind: {kind}, latent_dim: 4, code_dim: 3, codebook_size: 16, hidden: [32]}}")), &info, &varmap, 0, &dev).unwrap();
        let codebook = || varmap.data().lock().unwrap()["codebook.weight"].as_tensor().copy().unwrap();
        let cb = codebook();
        // Every code returned by `encode` is a codebook row, the nearest to the encoder's output.
        let z = model.encode(&batch).unwrap().unwrap().reshape(((), 3)).unwrap();
        let cbv: Vec<Vec<f32>> = cb.to_vec2().unwrap();
        for row in z.to_vec2::<f32>().unwrap() {
            assert!(cbv.iter().any(|e| e == &row), "{kind}: {row:?} is a codebook entry");
        }
        let groups = model.param_groups();
        let trained: Vec<Var> = groups[0].vars.clone();
        let encoder_w = varmap.data().lock().unwrap()["encoder.out.weight"].clone();
        assert!(trained.iter().any(|v| v.as_tensor().id() == encoder_w.as_tensor().id()));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let l = model.loss(0, &batch, &mut ModelCtx { rng: &mut rng, step: 1 }).unwrap();
        let grads = l.objective.backward().unwrap();
        let g = grads.get(encoder_w.as_tensor()).expect("the encoder gets a gradient through the quantizer");
        assert!(scalar(&g.abs().unwrap().max_all().unwrap()) > 0.0);
        let moved = max_abs_diff(&codebook(), &cb) > 0.0;
        assert_eq!(moved, kind == "vq_vae_ema", "{kind}: only the EMA variant moves its codebook in the loss");
        assert_eq!(model.buffers().is_empty(), kind == "vq_vae");
    }
}

/// The WGAN-GP critic, trained alone against a fixed generator, learns to score real samples above fakes
/// while its gradient norm stays near 1 (the penalty's target).
#[test]
fn wgan_gp_critic_separates_real_from_fake() {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = vaelab_models::build(&spec("{kind: wgan_gp, latent_dim: 2, hidden: [64, 64], likelihood: gaussian}"), &DataInfo { shape: &[2], num_classes: None, train_size: 0 }, &varmap, 0, &dev).unwrap();
    let groups = model.param_groups();
    let mut opt = <candle_nn::AdamW as candle_nn::Optimizer>::new(groups[0].vars.clone(), candle_nn::ParamsAdamW { lr: 1e-3, beta1: 0.5, beta2: 0.9, weight_decay: 0.0, eps: 1e-8 }).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut last = (0.0, 0.0);
    for step in 0..300 {
        let x = (randn(&mut rng, (128, 2), &dev).unwrap() * 0.1).unwrap() + 3.0;
        let batch = Batch { x: x.unwrap(), labels: None };
        let l = model.loss(0, &batch, &mut ModelCtx { rng: &mut rng, step }).unwrap();
        last = (term(&l, "wasserstein"), term(&l, "gradient_penalty"));
        candle_nn::Optimizer::backward_step(&mut opt, &l.objective).unwrap();
    }
    // The generator's untrained output sits near the origin, ≈ 4.2 from the real mode: a 1-Lipschitz critic
    // can separate them by about that much.
    assert!(last.0 > 2.0, "critic gap after 300 steps: {}", last.0);
    assert!(last.1 < 1.0, "gradient penalty {}", last.1);
}

/// The conditional GAN, like the CVAE: the label changes the generator's output for the same z, sampling
/// per class returns the requested count, and unlabelled data is refused.
#[test]
fn cgan_is_conditioned_on_the_label() {
    let dev = Device::Cpu;
    let info = DataInfo { shape: &[1, 28, 28], num_classes: Some(10), train_size: 0 };
    for (backbone, projection) in [("mlp", false), ("conv", false), ("mlp", true), ("conv", true)] {
        let varmap = VarMap::new();
        let model = vaelab_models::build(&spec(&format!("{{kind: cgan, backbone: {backbone}, latent_dim: 8, hidden: [32], channels: [8, 16], projection: {projection}}}")), &info, &varmap, 1, &dev).unwrap();
        assert_eq!(varmap.data().lock().unwrap().contains_key("discriminator.projection.weight"), projection);
        // The discriminator's score depends on the label.
        let x = Tensor::rand(0f32, 1f32, (2, 1, 28, 28), &dev).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let lbl = |k: usize| Batch { x: x.clone(), labels: Some(Tensor::from_vec((0..20).map(|i| (i % 10 == k) as u8 as f32).collect::<Vec<_>>(), (2, 10), &dev).unwrap()) };
        let ev = |b: &Batch, rng: &mut ChaCha8Rng| scalar(&model.eval(b, &mut ModelCtx { rng, step: 0 }).unwrap()[1].1.sum_all().unwrap());
        assert!((ev(&lbl(2), &mut rng) - ev(&lbl(5), &mut rng)).abs() > 1e-6, "{backbone} projection={projection}: D sees the label");
        assert_eq!(model.classes(), Some(10));
        let z = randn(&mut ChaCha8Rng::seed_from_u64(2), (2, 8), &dev).unwrap();
        let onehot = |k: usize| {
            let mut v = vec![0f32; 20];
            v[k] = 1.0;
            v[10 + k] = 1.0;
            Tensor::from_vec(v, (2, 10), &dev).unwrap()
        };
        let a = model.decode(&z, Some(&onehot(1))).unwrap().unwrap();
        let b = model.decode(&z, Some(&onehot(7))).unwrap().unwrap();
        assert!(max_abs_diff(&a, &b) > 1e-4, "{backbone}: the label changes the sample");
        let s = model.sample(30, None, &mut ModelCtx { rng: &mut ChaCha8Rng::seed_from_u64(0), step: 0 }).unwrap().unwrap();
        assert_eq!(s.dims(), &[30, 1, 28, 28]);
    }
    let unlabelled = DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 };
    assert!(vaelab_models::build(&spec("{kind: cgan}"), &unlabelled, &VarMap::new(), 1, &dev).is_err());
}

/// `model.batch_norm`: the conv decoder normalises each hidden channel over the batch (so a constant shift of
/// the first layer's bias changes nothing), its variables sit under the decoder's prefix, and without the
/// option the decoder has exactly the variables it always had (old checkpoints still load).
#[test]
fn batch_norm_in_the_conv_decoder() {
    use vaelab_models::backbone::Decoder;
    let dev = Device::Cpu;
    let names = |bn: bool| {
        let s = spec(&format!("{{kind: gan, backbone: conv, channels: [4, 8], batch_norm: {bn}}}"));
        let varmap = VarMap::new();
        let vb = vaelab_models::init::SeededInit::var_builder(&varmap, 5, &dev);
        let dec = Decoder::new(&s, &[1, 8, 8], 3, vb.pp("generator")).unwrap();
        let mut n: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        n.sort();
        (n, dec, varmap)
    };
    let (plain, _, _) = names(false);
    let (normed, dec, varmap) = names(true);
    assert!(plain.iter().all(|n| !n.contains("norm")), "{plain:?}");
    let extra: Vec<_> = normed.iter().filter(|n| !plain.contains(n)).collect();
    assert_eq!(extra.len(), 4, "two norms × (weight, bias): {extra:?}");
    assert!(extra.iter().all(|n| n.starts_with("generator.norm")));
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let z = randn(&mut rng, (16, 3), &dev).unwrap();
    let before = dec.forward(&z).unwrap();
    assert_eq!(before.dims(), &[16, 1, 8, 8]);
    // Shift the first layer's bias: batch normalisation removes it.
    let bias = varmap.data().lock().unwrap().get("generator.fc.bias").unwrap().clone();
    bias.set(&(bias.as_tensor() + 5.0).unwrap()).unwrap();
    let after = dec.forward(&z).unwrap();
    assert!(max_abs_diff(&before, &after) < 1e-4, "{}", max_abs_diff(&before, &after));
}

/// `model.batch_norm` in a conv discriminator: every conv but the first is normalised (DCGAN), so a constant
/// shift of the second conv's bias changes nothing while one of the first conv's does; a VAE encoder gets no
/// norms; and the gradient penalty refuses a batch-normalised critic instead of computing a wrong one.
#[test]
fn batch_norm_in_the_conv_discriminator() {
    let dev = Device::Cpu;
    let s = spec("{kind: gan, backbone: conv, channels: [4, 8], batch_norm: true}");
    let varmap = VarMap::new();
    let vb = vaelab_models::init::SeededInit::var_builder(&varmap, 5, &dev);
    let d = Encoder::discriminator(&s, &[1, 8, 8], 0, vb.pp("discriminator")).unwrap();
    let _enc = Encoder::new(&s, &[1, 8, 8], 0, 4, vb.pp("encoder")).unwrap();
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().filter(|n| n.contains("norm")).cloned().collect();
    names.sort();
    assert_eq!(names, ["discriminator.norm1.bias", "discriminator.norm1.weight"]);
    let x = randn(&mut ChaCha8Rng::seed_from_u64(3), (16, 1, 8, 8), &dev).unwrap();
    let before = d.forward(&x, None).unwrap();
    let shift = |name: &str| {
        let v = varmap.data().lock().unwrap().get(name).unwrap().clone();
        v.set(&(v.as_tensor() + 5.0).unwrap()).unwrap();
    };
    shift("discriminator.conv1.bias");
    assert!(max_abs_diff(&before, &d.forward(&x, None).unwrap()) < 1e-4);
    shift("discriminator.conv0.bias");
    assert!(max_abs_diff(&before, &d.forward(&x, None).unwrap()) > 1e-3);
    assert!(d.input_gradient(&x, None).is_err());
}

/// `model.init: dcgan`: every weight matrix / kernel N(0, 0.02), every bias 0, batch-norm scales N(1, 0.02);
/// the default keeps each layer's own scheme (Kaiming or uniform: wider than 0.03 at these widths).
#[test]
fn dcgan_initialisation() {
    let dev = Device::Cpu;
    let stats = |t: &Tensor| {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (m, (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32).sqrt())
    };
    for init in ["dcgan", "default"] {
        let s = spec(&format!("{{kind: gan, backbone: conv, channels: [16, 32], batch_norm: true, init: {init}}}"));
        let varmap = VarMap::new();
        vaelab_models::build(&s, &DataInfo { shape: &[1, 28, 28], num_classes: None, train_size: 0 }, &varmap, 4, &dev).unwrap();
        let vars = varmap.data().lock().unwrap().clone();
        assert!(vars.len() > 10);
        for (name, v) in &vars {
            let (m, sd) = stats(v.as_tensor());
            let norm_scale = name.contains("norm") && name.ends_with("weight");
            match (init, name.ends_with("bias"), norm_scale) {
                ("dcgan", true, _) => assert_eq!((m, sd), (0.0, 0.0), "{name}"),
                ("dcgan", false, true) => assert!((m - 1.0).abs() < 0.02 && (sd - 0.02).abs() < 0.01, "{name}: {m} {sd}"),
                ("dcgan", false, false) => assert!(m.abs() < 0.005 && (sd - 0.02).abs() < 0.003, "{name}: {m} {sd}"),
                (_, false, false) => assert!(sd > 0.03, "{name}: {sd}"),
                _ => {}
            }
        }
    }
}

/// `model.kl_beta` = w weighs the whole KL of the total-correlation models: β-TCVAE's objective is
/// recon + w·KL + (β − w)·TC (the paper's α = γ = w, β the TC term's total weight), FactorVAE's
/// recon + w·KL + γ·TC; the same weights and batch give the same terms whatever w is. β < w is refused.
#[test]
fn kl_beta_weighs_the_kl_of_the_total_correlation_models() {
    let dev = Device::Cpu;
    let info = DataInfo { shape: &[1, 8, 8], num_classes: None, train_size: 1000 };
    let batch = binary_batch(16, 8, &dev);
    let run = |yaml: &str| {
        let model = vaelab_models::build(&spec(yaml), &info, &VarMap::new(), 3, &dev).unwrap();
        let l = model.loss(0, &batch, &mut ModelCtx { rng: &mut ChaCha8Rng::seed_from_u64(5), step: 1 }).unwrap();
        (scalar(&l.objective), term(&l, "recon"), term(&l, "kl"), term(&l, "tc"))
    };
    for (kind, extra, tc_weight) in [("beta_tc_vae", "beta: 6.0", [5.0, 2.0]), ("factor_vae", "gamma: 6.0", [6.0, 6.0])] {
        let plain = run(&format!("{{kind: {kind}, latent_dim: 3, hidden: [16], disc_hidden: [8], {extra}}}"));
        let weighted = run(&format!("{{kind: {kind}, latent_dim: 3, hidden: [16], disc_hidden: [8], {extra}, kl_beta: 4.0}}"));
        assert_eq!((plain.1, plain.2, plain.3), (weighted.1, weighted.2, weighted.3), "{kind}: same terms");
        assert!(plain.2 > 0.0 && plain.3 != 0.0, "{kind}: the KL and TC terms are not trivially zero");
        for ((objective, recon, kl, tc), w, t) in [(plain, 1.0, tc_weight[0]), (weighted, 4.0, tc_weight[1])] {
            let want = recon + w * kl + t * tc;
            assert!((objective - want).abs() < 1e-4 * want.abs().max(1.0), "{kind} kl_beta {w}: {objective} vs {want}");
        }
    }
    let refused = vaelab_models::build(&spec("{kind: beta_tc_vae, latent_dim: 3, hidden: [16], beta: 2.0, kl_beta: 4.0}"), &info, &VarMap::new(), 3, &dev);
    assert!(refused.err().expect("β < kl_beta is refused").to_string().contains("kl_beta"));
}
