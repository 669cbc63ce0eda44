//! Trials trained together as one stacked computation (`vaelab_models::stacked`, `vaelab_train::stacked`)
//! against the same trials trained alone: bit for bit against a stack of one, and to rounding against the
//! zoo's own VAE with its usual optimizer. All on the CPU; the code is device-generic candle ops.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::stacked::StackedVae;
use vaelab_models::{Batch, DataInfo, ModelCtx, ModelSpec};
use vaelab_train::stacked::StackedAdam;
use vaelab_train::{Adam, AdamConfig};

const B: usize = 6;
const STEPS: u64 = 4;
const SHAPE: [usize; 3] = [1, 16, 16];

fn spec(yaml: &str) -> ModelSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn info() -> DataInfo<'static> {
    DataInfo { shape: &SHAPE, num_classes: Some(10), train_size: 1000 }
}

fn config(lr: f64) -> AdamConfig {
    AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
}

/// Trial `seed`'s batch (binary pixels, the same every step, so the objective falls) and its generator for
/// the reparameterisation noise at `step`.
fn batch(seed: u64, step: u64) -> (Tensor, ChaCha8Rng) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let p = 0.2 + 0.05 * seed as f64;
    let pixels: Vec<f32> = (0..B * 256).map(|_| if rand::Rng::random_bool(&mut rng, p) { 1.0 } else { 0.0 }).collect();
    (Tensor::from_vec(pixels, (B, 1, 16, 16), &Device::Cpu).unwrap(), ChaCha8Rng::seed_from_u64(seed * 1000 + step))
}

/// A trial: its spec, weight seed, learning rate and its solo model's var map (weights as `build` drew them).
struct Trial {
    spec: ModelSpec,
    seed: u64,
    lr: f64,
    varmap: VarMap,
}

fn trial(yaml: &str, seed: u64, lr: f64) -> Trial {
    let spec = spec(yaml);
    let varmap = VarMap::new();
    vaelab_models::build(&spec, &info(), &varmap, seed, &Device::Cpu).unwrap();
    Trial { spec, seed, lr, varmap }
}

fn params(varmap: &VarMap) -> Vec<(String, Vec<f32>)> {
    let data = varmap.data().lock().unwrap();
    let mut named: Vec<_> = data.iter().map(|(n, v)| (n.clone(), v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Train `trials` as one stack for `STEPS` steps: each trial's objective per step, then each trial's weights
/// (written back into its var map).
fn train_stacked(trials: &[Trial]) -> (Vec<Vec<f32>>, Vec<Vec<(String, Vec<f32>)>>) {
    let specs: Vec<ModelSpec> = trials.iter().map(|t| t.spec.clone()).collect();
    let maps: Vec<&VarMap> = trials.iter().map(|t| &t.varmap).collect();
    let stack = StackedVae::new(&specs, &SHAPE, &maps, &Device::Cpu).unwrap();
    let mut adam = StackedAdam::new(stack.vars(), trials.len(), config(0.0)).unwrap();
    let lrs: Vec<f64> = trials.iter().map(|t| t.lr).collect();
    let mut objectives = vec![vec![]; trials.len()];
    for step in 1..=STEPS {
        let (mut xs, mut eps) = (vec![], vec![]);
        for t in trials {
            let (x, mut rng) = batch(t.seed, step);
            xs.push(x);
            if let Some(l) = stack.noise_dim() {
                eps.push(vaelab_models::init::randn(&mut rng, (B, l), &Device::Cpu).unwrap());
            }
        }
        let eps = (!eps.is_empty()).then(|| Tensor::stack(&eps, 0).unwrap());
        let losses = stack.loss(&Tensor::stack(&xs, 0).unwrap(), eps.as_ref()).unwrap();
        for (o, v) in objectives.iter_mut().zip(losses.objective.to_vec1::<f32>().unwrap()) {
            o.push(v);
        }
        adam.step(&losses.objective.sum_all().unwrap().backward().unwrap(), &lrs, &vec![true; trials.len()]).unwrap();
    }
    let weights = trials
        .iter()
        .enumerate()
        .map(|(j, t)| {
            stack.write_back(j, &t.varmap).unwrap();
            params(&t.varmap)
        })
        .collect();
    (objectives, weights)
}

/// The same trial trained alone by the zoo's model and the project's Adam (its CPU kernels).
fn train_solo(t: &Trial) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let net = vaelab_models::build(&t.spec, &info(), &t.varmap, t.seed, &Device::Cpu).unwrap();
    let mut adam = Adam::new(net.param_groups().remove(0).vars, config(t.lr));
    let mut objectives = vec![];
    for step in 1..=STEPS {
        let (x, mut rng) = batch(t.seed, step);
        let losses = net.loss(0, &Batch { x, labels: None }, &mut ModelCtx { rng: &mut rng, step }).unwrap();
        objectives.push(losses.objective.to_scalar::<f32>().unwrap());
        adam.backward_step(&losses.objective).unwrap();
    }
    (objectives, params(&t.varmap))
}

const MLP: &str = "{kind: vae, backbone: mlp, hidden: [32], latent_dim: 4}";
const MLP_BETA: &str = "{kind: beta_vae, beta: 4.0, backbone: mlp, hidden: [32], latent_dim: 4}";
const CONV: &str = "{kind: vae, backbone: conv, channels: [4, 8], latent_dim: 4}";
const CONV_BETA: &str = "{kind: beta_vae, beta: 0.5, backbone: conv, channels: [4, 8], latent_dim: 4}";
const GAUSS: &str = "{kind: vae, likelihood: gaussian, backbone: mlp, hidden: [32, 16], latent_dim: 4}";
const GAUSS_BETA: &str = "{kind: beta_vae, beta: 2.0, likelihood: gaussian, backbone: mlp, hidden: [32, 16], latent_dim: 4}";
const AE: &str = "{kind: ae, backbone: conv, channels: [4, 8], latent_dim: 4}";
const AE_GAUSS: &str = "{kind: ae, likelihood: gaussian, backbone: mlp, hidden: [32], latent_dim: 4}";
/// Pairs of specs that share a stack: VAEs and β-VAEs (MLP, conv, Gaussian likelihood with two hidden layers),
/// and AEs.
const STACKS: [(&str, &str); 5] = [(MLP, MLP_BETA), (CONV, CONV_BETA), (GAUSS, GAUSS_BETA), (AE, AE), (AE_GAUSS, AE_GAUSS)];

/// Three trials (seeds, β and learning rates differing) in one stack, each against itself alone.
fn three(a: &str, b: &str) -> Vec<Trial> {
    vec![trial(a, 1, 1e-3), trial(b, 2, 3e-3), trial(a, 3, 5e-4)]
}

#[test]
fn a_trial_in_a_stack_trains_bit_for_bit_as_in_a_stack_of_one() {
    for (a, b) in STACKS {
        let trials = three(a, b);
        let initial: Vec<_> = trials.iter().map(|t| params(&t.varmap)).collect();
        let (objectives, weights) = train_stacked(&trials);
        for (j, t) in three(a, b).into_iter().enumerate() {
            let (alone_obj, alone_w) = train_stacked(std::slice::from_ref(&t));
            assert_eq!(objectives[j], alone_obj[0], "{a}: trial {j}'s objectives");
            assert_eq!(weights[j], alone_w[0], "{a}: trial {j}'s weights");
        }
        // Every weight of every trial moved (a slice the stack failed to update would still be equal).
        for (j, (w, w0)) in weights.iter().zip(&initial).enumerate() {
            for ((name, now), (_, then)) in w.iter().zip(w0) {
                assert!(now.iter().zip(then).any(|(x, y)| x != y), "{a}: trial {j}'s {name} did not move");
            }
        }
    }
}

#[test]
fn a_stacked_trial_trains_as_the_zoo_model_does_alone() {
    for (a, b) in STACKS {
        let (objectives, weights) = train_stacked(&three(a, b));
        for (j, t) in three(a, b).into_iter().enumerate() {
            let (solo_obj, solo_w) = train_solo(&t);
            for (s, (g, w)) in objectives[j].iter().zip(&solo_obj).enumerate() {
                assert!((g - w).abs() <= 1e-4 * w.abs(), "{a}, trial {j}, step {}: objective {g} stacked vs {w} alone", s + 1);
            }
            for ((name, g), (_, w)) in weights[j].iter().zip(&solo_w) {
                let scale = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
                let diff = g.iter().zip(w).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                // Adam moves a weight by ≈ lr a step; the two must agree far closer than that.
                assert!(diff / scale < 1e-4, "{a}, trial {j}, {name}: relative difference {}", diff / scale);
            }
        }
    }
}

#[test]
fn a_diverging_trial_leaves_the_others_in_its_stack_untouched() {
    let trials = three(CONV, CONV_BETA);
    // Trial 1's encoder head poisoned: its posterior, and so its objective, is NaN from the first step.
    {
        let data = trials[1].varmap.data().lock().unwrap();
        let w = &data["encoder.out.bias"];
        w.set(&(w.as_tensor() * f64::NAN).unwrap()).unwrap();
    }
    let (objectives, weights) = train_stacked(&trials);
    assert!(objectives[1].iter().all(|o| o.is_nan()), "{:?}", objectives[1]);
    for j in [0, 2] {
        let (alone_obj, alone_w) = train_stacked(std::slice::from_ref(&three(CONV, CONV_BETA).remove(j)));
        assert_eq!(objectives[j], alone_obj[0], "trial {j}");
        assert_eq!(weights[j], alone_w[0], "trial {j}");
    }
}

#[test]
fn what_cannot_be_stacked_is_refused_by_name() {
    let refuse = |yamls: &[&str]| {
        let trials: Vec<Trial> = yamls.iter().enumerate().map(|(i, y)| trial(y, i as u64, 1e-3)).collect();
        let specs: Vec<ModelSpec> = trials.iter().map(|t| t.spec.clone()).collect();
        let maps: Vec<&VarMap> = trials.iter().map(|t| &t.varmap).collect();
        match StackedVae::new(&specs, &SHAPE, &maps, &Device::Cpu) {
            Ok(_) => panic!("{yamls:?} stacked"),
            Err(e) => e.to_string(),
        }
    };
    let e = refuse(&["{kind: factor_vae, backbone: mlp, hidden: [32], latent_dim: 4}"]);
    assert!(e.contains("factor_vae"), "{e}");
    let e = refuse(&[MLP, "{kind: vae, backbone: mlp, hidden: [16], latent_dim: 4}"]);
    assert!(e.contains("same architecture"), "{e}");
    let e = refuse(&["{kind: vae, backbone: conv, channels: [4, 8], latent_dim: 4, batch_norm: true}"]);
    assert!(e.contains("batch_norm"), "{e}");
    let e = refuse(&[AE, CONV]);
    assert!(e.contains("same architecture"), "an AE and a VAE in one stack: {e}");
    let e = refuse(&[GAUSS, "{kind: vae, backbone: mlp, hidden: [32, 16], latent_dim: 4}"]);
    assert!(e.contains("same architecture"), "two likelihoods in one stack: {e}");
}
