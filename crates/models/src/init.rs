//! Seeded parameter initialisation.
//!
//! candle's `VarMap` initialises through `Tensor::randn`/`rand`, which on the CPU draw from an unseeded
//! thread RNG. This backend keeps candle-nn's layer constructors (and their init schemes: Kaiming normal for
//! weights, uniform(±1/√fan_in) for biases, as PyTorch) but draws from a ChaCha generator seeded by the trial,
//! and records every variable in a `VarMap` so it can be saved and optimised. `model.init: dcgan` replaces the
//! layers' schemes with Radford et al.'s (see [`InitScheme`]).

use crate::spec::InitScheme;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{Init, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

pub struct SeededInit {
    varmap: VarMap,
    rng: Mutex<ChaCha8Rng>,
    scheme: InitScheme,
}

impl SeededInit {
    /// A VarBuilder whose new variables are drawn from `seed` and stored in `varmap`.
    pub fn var_builder(varmap: &VarMap, seed: u64, device: &Device) -> VarBuilder<'static> {
        Self::var_builder_with(varmap, seed, device, InitScheme::Default)
    }

    /// As [`SeededInit::var_builder`], with `scheme` overriding the layers' own initialisation.
    pub fn var_builder_with(varmap: &VarMap, seed: u64, device: &Device, scheme: InitScheme) -> VarBuilder<'static> {
        let backend = SeededInit { varmap: varmap.clone(), rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)), scheme };
        VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
    }

    /// The initialisation a variable gets: its layer's hint, or the scheme's rule for its kind (told apart by
    /// name and rank: layers name their parameters `weight` and `bias`, and only normalisation weights are 1-d).
    fn init_for(&self, name: &str, shape: &Shape, hint: Init) -> Init {
        match self.scheme {
            InitScheme::Default => hint,
            InitScheme::Dcgan => match (name.rsplit('.').next(), shape.rank()) {
                (Some("weight"), 1) => Init::Randn { mean: 1.0, stdev: 0.02 },
                (Some("weight"), _) => Init::Randn { mean: 0.0, stdev: 0.02 },
                (Some("bias"), _) => Init::Const(0.0),
                _ => hint,
            },
        }
    }

    fn draw(&self, shape: &Shape, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().unwrap();
        let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| (0..n).map(|_| rng.random_range(lo..up) as f32).collect();
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| {
            (0..n).map(|_| mean as f32 + std as f32 * standard_normal(rng)).collect()
        };
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        uniform(&mut rng, -b, b)
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        }
    }
}

/// Box–Muller standard normal.
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// `shape`-shaped tensor of standard normals drawn from `rng`: the draws of [`standard_normal`] one after the
/// other, the same bits. Each normal takes two words of the stream, so a large tensor is drawn in chunks, each
/// from its own place in the stream (ChaCha seeks), on candle's kernel threads — the reparameterization noise
/// of an MLP VAE at batch 1024 (20k normals, a log and a cosine each) was ≈ 1.5% of its step on one thread.
pub fn randn(rng: &mut ChaCha8Rng, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
    const CHUNK: usize = 4096;
    let shape = shape.into();
    let n = shape.elem_count();
    let base = rng.get_word_pos();
    let start = &*rng;
    let v = crate::fastconv::pieces(n, CHUNK, |c, out| {
        let mut r = start.clone();
        r.set_word_pos(base + 2 * (c * CHUNK) as u128);
        out.iter_mut().for_each(|x| *x = standard_normal(&mut r));
    });
    rng.set_word_pos(base + 2 * n as u128);
    Tensor::from_vec(v, shape, device)
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!("shape mismatch for {name}: {:?} vs {s:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let t = Tensor::from_vec(self.draw(&s, self.init_for(name, &s, h)), s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self.varmap.data().lock().unwrap();
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no variable named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().unwrap().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randn_draws_what_one_normal_after_the_other_would() {
        for (n, skip) in [(5usize, 0usize), (3 * 4096 + 17, 3), (1024 * 20, 1)] {
            let mut want_rng = ChaCha8Rng::seed_from_u64(n as u64);
            (0..skip).for_each(|_| {
                let _ = want_rng.random::<u32>();
            });
            let mut rng = want_rng.clone();
            let want: Vec<f32> = (0..n).map(|_| standard_normal(&mut want_rng)).collect();
            let got = randn(&mut rng, n, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, want, "{n} normals");
            assert_eq!(rng.random::<u64>(), want_rng.random::<u64>(), "the stream goes on where it would");
        }
    }
}
