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
            Binarize::Dynamic => dynamic(x, rng),
        }
    }
}

/// Each entry on with probability its value: the draws of `rng.random::<f32>() < v` one entry after the other
/// (a u32 of the stream per entry, its top 24 bits over 2²⁴), the same bits, taken in bulk by chunks of the
/// batch, each chunk from its own place in the stream (ChaCha seeks), so that chunks run on candle's kernel
/// threads: one draw after the other was a serial ≈ 6% of an MLP VAE step at batch 1024, the other threads waiting.
fn dynamic(x: &mut [f32], rng: &mut ChaCha8Rng) {
    const CHUNK: usize = 1 << 14;
    let base = rng.get_word_pos();
    let start = &*rng;
    let run = |(c, xs): (usize, &mut [f32])| {
        let mut r = start.clone();
        r.set_word_pos(base + (c * CHUNK) as u128);
        let mut words = vec![0u32; xs.len()];
        r.fill(&mut words[..]);
        for (v, &w) in xs.iter_mut().zip(&words) {
            let u = (w >> 8) as f32 * (1.0 / 16_777_216.0);
            *v = if u < *v { 1.0 } else { 0.0 };
        }
    };
    if x.len() >= 2 * CHUNK && candle_core::utils::get_num_threads() > 1 {
        use rayon::prelude::*;
        x.par_chunks_mut(CHUNK).enumerate().for_each(run);
    } else {
        x.chunks_mut(CHUNK).enumerate().for_each(run);
    }
    rng.set_word_pos(base + x.len() as u128);
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
    // Rows picked at random from the whole set miss the caches: a large batch's copy goes on candle's kernel
    // threads in blocks of rows (two cores keep more misses in flight), written in place, no zeroing first.
    const ROWS: usize = 64;
    let copy = |(rows, dst): (&[usize], &mut [std::mem::MaybeUninit<f32>])| {
        for (&i, d) in rows.iter().zip(dst.chunks_exact_mut(dim)) {
            d.iter_mut().zip(&x[i * dim..(i + 1) * dim]).for_each(|(d, &v)| {
                d.write(v);
            });
        }
    };
    let dst = &mut out.spare_capacity_mut()[..idx.len() * dim];
    if dim > 0 && idx.len() * dim >= 1 << 16 && candle_core::utils::get_num_threads() > 1 {
        use rayon::prelude::*;
        idx.par_chunks(ROWS).zip(dst.par_chunks_mut(ROWS * dim)).for_each(copy);
    } else if dim > 0 {
        idx.chunks(ROWS).zip(dst.chunks_mut(ROWS * dim)).for_each(copy);
    }
    // SAFETY: every row of every block was written just above (dim = 0: nothing to write).
    unsafe { out.set_len(idx.len() * dim) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dynamic_binarization_draws_what_one_draw_per_entry_would() {
        for (len, skip) in [(5usize, 0usize), (784, 3), (3 * (1 << 14) + 17, 1), (1024 * 784, 0)] {
            let x: Vec<f32> = (0..len).map(|i| (i % 256) as f32 / 255.0).collect();
            let mut want_rng = ChaCha8Rng::seed_from_u64(len as u64);
            // A stream not at a block boundary: some words already drawn.
            (0..skip).for_each(|_| {
                let _ = want_rng.random::<u32>();
            });
            let mut rng = want_rng.clone();
            let want: Vec<f32> = x.iter().map(|&v| if want_rng.random::<f32>() < v { 1.0 } else { 0.0 }).collect();
            let mut got = x.clone();
            Binarize::Dynamic.apply(&mut got, &mut rng);
            assert_eq!(got, want, "{len} entries");
            assert_eq!(rng.random::<u64>(), want_rng.random::<u64>(), "the stream goes on where it would");
            let on = got.iter().sum::<f32>() as f64 / len as f64;
            assert!(len < 1000 || (on - 0.5).abs() < 0.01, "{on} of the entries on");
        }
    }

    #[test]
    fn gathered_rows_are_the_picked_rows() {
        for (n, dim, picks) in [(10usize, 3usize, 4usize), (500, 784, 1000), (7, 0, 5)] {
            let x: Vec<f32> = (0..n * dim).map(|i| i as f32).collect();
            let idx: Vec<usize> = (0..picks).map(|k| (k * 7919) % n).collect();
            let want: Vec<f32> = idx.iter().flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied()).collect();
            assert_eq!(gather(&x, dim, &idx), want, "{picks} rows of {dim}");
        }
    }
}
