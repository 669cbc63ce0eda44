//! The `train:` section of an experiment spec.

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Length of training in passes over the training split (ignored when `steps` is set).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Length of training in optimizer steps; overrides `epochs`.
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Adam learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Adam's moment decay rates (GANs usually want beta1 = 0.5, as in DCGAN).
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Evaluate on the test split every this many steps (and at the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Also checkpoint (weights, optimizer, step) every this many steps between evaluations, so a killed run
    /// loses at most this much work. Evaluations always checkpoint.
    #[serde(default)]
    pub checkpoint_every: Option<u64>,
    /// Log training loss terms every this many steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Batch size for evaluation passes.
    #[serde(default = "default_eval_batch_size")]
    pub eval_batch_size: usize,
    /// A non-finite loss: `fail` the trial at that step (default), or `skip_batch` — apply no update from that
    /// batch and go on (counted in `train/skipped_batches`); 10 skips in a row still fail the trial.
    #[serde(default)]
    pub on_nan: OnNan,
    /// Learning-rate schedule over the run: `none` (constant), `linear` or `cosine` decay from `lr` to 0 at the
    /// last step. A function of the step alone, so a resumed run follows the same schedule.
    #[serde(default)]
    pub lr_decay: LrDecay,
    /// Optimizer settings for one parameter group, overriding `lr` / `beta1` / `beta2` there (group names as
    /// the model declares them, e.g. FactorVAE's `tc_discriminator`): Kim & Mnih train FactorVAE's
    /// discriminator at 1e-4 with β (0.5, 0.9) beside a VAE at its own rate; TTUR GANs give D and G their own
    /// rates. `lr_decay` scales every group's rate alike.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, GroupOptim>,
    /// Split every batch into this many shards whose losses and gradients are computed on separate kernel
    /// threads and summed (data parallelism inside one trial; see `shards.rs`). For models whose objective is a
    /// per-example mean (AE, VAE, β-VAE without capacity, CVAE, IWAE). The same spec gives the same numbers on
    /// any number of threads; different `shards` values differ in float rounding only.
    #[serde(default = "default_shards")]
    pub shards: usize,
}

fn default_shards() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOptim {
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub beta1: Option<f64>,
    #[serde(default)]
    pub beta2: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LrDecay {
    #[default]
    None,
    Linear,
    Cosine,
}

impl LrDecay {
    /// The factor on `lr` for the step about to be taken (`step` counts from 1 to `total`).
    pub fn factor(self, step: u64, total: u64) -> f64 {
        let done = (step.saturating_sub(1)) as f64 / total.max(1) as f64;
        match self {
            LrDecay::None => 1.0,
            LrDecay::Linear => 1.0 - done,
            LrDecay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * done).cos()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNan {
    #[default]
    Fail,
    SkipBatch,
}

/// Consecutive skipped batches after which `on_nan: skip_batch` gives up.
pub const MAX_CONSECUTIVE_SKIPS: u64 = 10;

fn default_epochs() -> usize {
    1
}
fn default_batch_size() -> usize {
    64
}
fn default_lr() -> f64 {
    1e-3
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eval_every() -> u64 {
    500
}
fn default_log_every() -> u64 {
    20
}
fn default_eval_batch_size() -> usize {
    500
}

impl TrainSpec {
    /// Adam's settings for the parameter group `group`: the spec's, with that group's overrides.
    pub fn adam_for(&self, group: &str) -> (f64, f64, f64) {
        let g = self.groups.get(group).copied().unwrap_or_default();
        (g.lr.unwrap_or(self.lr), g.beta1.unwrap_or(self.beta1), g.beta2.unwrap_or(self.beta2))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.batch_size == 0 {
            bail!("train.batch_size: must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("train.lr: must be a positive number, got {}", self.lr);
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            bail!("train.beta1 / train.beta2: must be in [0, 1)");
        }
        for (name, g) in &self.groups {
            if let Some(lr) = g.lr {
                if !(lr > 0.0 && lr.is_finite()) {
                    bail!("train.groups.{name}.lr: must be a positive number, got {lr}");
                }
            }
            if ![g.beta1, g.beta2].iter().flatten().all(|b| (0.0..1.0).contains(b)) {
                bail!("train.groups.{name}.beta1 / beta2: must be in [0, 1)");
            }
        }
        if self.steps == Some(0) || (self.steps.is_none() && self.epochs == 0) {
            bail!("train.steps / train.epochs: must train for at least one step");
        }
        if self.shards == 0 || self.shards > self.batch_size {
            bail!("train.shards: must be between 1 and batch_size ({}), got {}", self.batch_size, self.shards);
        }
        if self.checkpoint_every == Some(0) {
            bail!("train.checkpoint_every: must be at least 1");
        }
        if self.eval_every == 0 || self.log_every == 0 || self.eval_batch_size == 0 {
            bail!("train.eval_every / log_every / eval_batch_size: must be at least 1");
        }
        Ok(())
    }

    /// Total optimizer steps for a training split of `n` samples.
    pub fn total_steps(&self, n: usize) -> u64 {
        self.steps.unwrap_or_else(|| (self.epochs * vaelab_data::EpochBatches::batches_per_epoch(n, self.batch_size)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::LrDecay;

    #[test]
    fn lr_schedules_start_at_lr_and_fall_towards_zero() {
        for d in [LrDecay::Linear, LrDecay::Cosine] {
            assert_eq!(d.factor(1, 1000), 1.0);
            assert!(d.factor(1000, 1000) < 0.01 && d.factor(1000, 1000) > 0.0);
            assert!((d.factor(501, 1000) - 0.5).abs() < 1e-12, "{d:?} at the midpoint");
            assert!((1..1000).all(|s| d.factor(s + 1, 1000) < d.factor(s, 1000)), "{d:?} decreases");
        }
        assert_eq!(LrDecay::None.factor(999, 1000), 1.0);
    }
}
