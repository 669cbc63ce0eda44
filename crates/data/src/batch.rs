//! Seeded mini-batching and binarization.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How pixel intensities become the binary targets of a Bernoulli decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Binarize {
    /// Use intensities as they are (BCE against grey levels).
    #[default]
    None,
    /// Threshold at 0.5 once.
    Static,
    /// Sample each pixel ~ Bernoulli(intensity) afresh for every batch (Salakhutdinov & Murray 2008).
    Dynamic,
}

impl Binarize {
    pub fn apply(self, x: &mut [f32], rng: &mut ChaCha8Rng) {
        match self {
            Binarize::None => {}
            Binarize::Static => x.iter_mut().for_each(|v| *v = if *v > 0.5 { 1.0 } else { 0.0 }),
            Binarize::Dynamic => x.iter_mut().for_each(|v| *v = if rng.random::<f32>() < *v { 1.0 } else { 0.0 }),
        }
    }
}

/// Box–Muller standard normal from a seeded generator (candle's CPU `randn` cannot be seeded).
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// One epoch's batches: a seeded permutation of `0..n` cut into chunks of `batch_size` (the last one
/// dropped when short, so every step sees the same batch size).
pub struct EpochBatches {
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
}

impl EpochBatches {
    pub fn new(n: usize, batch_size: usize, rng: &mut ChaCha8Rng) -> Self {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        Self { order, batch_size: batch_size.min(n).max(1), pos: 0 }
    }

    pub fn batches_per_epoch(n: usize, batch_size: usize) -> usize {
        (n / batch_size.min(n).max(1)).max(1)
    }
}

impl Iterator for EpochBatches {
    type Item = Vec<usize>;
    fn next(&mut self) -> Option<Vec<usize>> {
        if self.pos + self.batch_size > self.order.len() {
            return None;
        }
        let b = self.order[self.pos..self.pos + self.batch_size].to_vec();
        self.pos += self.batch_size;
        Some(b)
    }
}

/// Gather the samples at `idx` into one contiguous buffer.
pub fn gather(x: &[f32], dim: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        out.extend_from_slice(&x[i * dim..(i + 1) * dim]);
    }
    out
}
