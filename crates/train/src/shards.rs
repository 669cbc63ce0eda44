//! Data parallelism inside one trial: a batch split into shards, each shard's loss and gradients computed on its
//! own thread with single-threaded kernels, the gradients summed in shard order.
//!
//! Why: at two threads every op of a step split its work over both threads and joined them again — dozens of
//! fork/joins a step, each a wake-up (perf: 5–11% of a two-thread MLP step in the scheduler) and a wait for the
//! slower half. Shards join once a step. `scripts/bench.sh 5` (two threads, `runs/bench/20261125T015537Z.jsonl`,
//! shards 1 → 2, medians): MLP VAE batch 128 27,553 → 32,758 img/s, batch 1024 36,873 → 37,565; conv VAE batch
//! 128 4,906 → 5,272 (higher in each of the 5 rounds), batch 1024 5,054 → 5,257.
//!
//! Only for objectives that are batch means of per-example terms ([`GenerativeModel::per_example_objective`]):
//! shard `s` of `n_s` examples contributes `n_s / N ·` its own mean, so the sum is the batch's objective and its
//! gradient exactly, up to float rounding. Each shard draws its noise from its own generator, seeded from the
//! step's in shard order, so results depend on the number of shards but never on the number of threads.

use candle_core::backprop::GradStore;
use candle_core::Result;
use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vaelab_models::{Batch, GenerativeModel, ModelCtx};

/// One training step's loss and gradients, from all shards.
pub struct ShardedLoss {
    /// The batch's objective (the shards' size-weighted sum).
    pub objective: f32,
    /// The model's logged terms, combined the same way.
    pub terms: Vec<(&'static str, f32)>,
    /// Each shard's gradients, in shard order, already weighted by its share of the batch: their sum is
    /// ∂objective/∂θ ([`crate::Adam::step_sum`] adds them as it updates).
    pub grads: Vec<GradStore>,
}

/// The examples `[lo, lo + n)` of each of `shards` near-equal shards of a batch of `len`.
pub fn shard_ranges(len: usize, shards: usize) -> Vec<(usize, usize)> {
    let shards = shards.clamp(1, len.max(1));
    let (base, extra) = (len / shards, len % shards);
    let mut lo = 0;
    (0..shards)
        .map(|s| {
            let n = base + usize::from(s < extra);
            lo += n;
            (lo - n, n)
        })
        .collect()
}

/// The objective of `phase` on `batch` and its gradients, computed in `shards` shards (on separate threads
/// when candle has several kernel threads).
pub fn sharded_loss(model: &dyn GenerativeModel, phase: usize, batch: &Batch, shards: usize, rng: &mut ChaCha8Rng, step: u64) -> Result<ShardedLoss> {
    let len = batch.x.dim(0)?;
    let ranges = shard_ranges(len, shards);
    let seeds: Vec<u64> = ranges.iter().map(|_| rng.next_u64()).collect();
    let threads = candle_core::utils::get_num_threads();
    let per_shard = (threads / ranges.len()).max(1);
    let one = |s: usize| -> Result<(f32, Vec<(&'static str, f32)>, GradStore)> {
        candle_core::utils::with_num_threads(per_shard, || {
            let (lo, n) = ranges[s];
            let part = Batch { x: batch.x.narrow(0, lo, n)?, labels: batch.labels.as_ref().map(|l| l.narrow(0, lo, n)).transpose()? };
            let mut noise = ChaCha8Rng::seed_from_u64(seeds[s]);
            let losses = model.loss(phase, &part, &mut ModelCtx { rng: &mut noise, step })?;
            let value = losses.objective.to_scalar::<f32>()?;
            let terms = losses.terms.iter().map(|(k, t)| Ok((*k, t.to_scalar::<f32>()?))).collect::<Result<Vec<_>>>()?;
            let grads = (losses.objective * (n as f64 / len as f64))?.backward()?;
            Ok((value, terms, grads))
        })
    };
    let parts: Vec<_> = if threads > 1 && ranges.len() > 1 {
        use rayon::prelude::*;
        (0..ranges.len()).into_par_iter().map(one).collect::<Result<_>>()?
    } else {
        (0..ranges.len()).map(one).collect::<Result<_>>()?
    };
    let weight = |s: usize| ranges[s].1 as f64 / len as f64;
    let objective = parts.iter().enumerate().map(|(s, p)| weight(s) * p.0 as f64).sum::<f64>() as f32;
    let mut terms: Vec<(&'static str, f32)> = parts[0].1.iter().map(|&(k, _)| (k, 0.0)).collect();
    for (i, (name, v)) in terms.iter_mut().enumerate() {
        *v = parts.iter().enumerate().map(|(s, p)| {
            debug_assert_eq!(p.1[i].0, *name);
            weight(s) * p.1[i].1 as f64
        }).sum::<f64>() as f32;
    }
    let grads = parts.into_iter().map(|p| p.2).collect();
    Ok(ShardedLoss { objective, terms, grads })
}

#[cfg(test)]
mod tests {
    use super::shard_ranges;

    #[test]
    fn shards_cover_the_batch_in_near_equal_parts() {
        assert_eq!(shard_ranges(128, 2), vec![(0, 64), (64, 64)]);
        assert_eq!(shard_ranges(7, 3), vec![(0, 3), (3, 2), (5, 2)]);
        assert_eq!(shard_ranges(2, 4), vec![(0, 1), (1, 1)]);
        assert_eq!(shard_ranges(5, 1), vec![(0, 5)]);
    }
}
