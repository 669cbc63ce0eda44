//! Step-dependent weights of the KL term, shared by every VAE-type model.

/// KL warm-up: the KL weight rises from 0 to 1 so the decoder learns to use z before the prior pulls it in.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KlWarmup {
    pub schedule: WarmupSchedule,
    /// Linear: steps to reach 1. Cyclical: the length of one cycle.
    pub steps: u64,
    /// Cyclical (Fu et al. 2019): the fraction of each cycle spent rising; the rest stays at 1.
    #[serde(default = "default_ratio")]
    pub ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupSchedule {
    Linear,
    Cyclical,
}

fn default_ratio() -> f64 {
    0.5
}

impl KlWarmup {
    /// The KL weight at optimizer step `step` (steps count from 1).
    pub fn weight(&self, step: u64) -> f64 {
        let n = self.steps.max(1);
        match self.schedule {
            WarmupSchedule::Linear => (step as f64 / n as f64).min(1.0),
            WarmupSchedule::Cyclical => {
                let t = (step % n) as f64 / n as f64;
                (t / self.ratio).min(1.0)
            }
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.steps == 0 {
            anyhow::bail!("model.kl_warmup.steps: must be at least 1");
        }
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            anyhow::bail!("model.kl_warmup.ratio: must be in (0, 1], got {}", self.ratio);
        }
        Ok(())
    }
}

/// β-VAE capacity (Burgess et al. 2018): the loss is γ·|KL − C| with C growing linearly from 0 to `max` nats
/// over `steps` steps, then held.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// C_max in nats (the paper uses 25 on dSprites).
    pub max: f64,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Steps over which C rises to `max`.
    pub steps: u64,
}

fn default_gamma() -> f64 {
    1000.0
}

impl Capacity {
    /// C at optimizer step `step`.
    pub fn at(&self, step: u64) -> f64 {
        self.max * (step as f64 / self.steps.max(1) as f64).min(1.0)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.max >= 0.0 && self.max.is_finite()) || !(self.gamma > 0.0 && self.gamma.is_finite()) {
            anyhow::bail!("model.capacity: max must be ≥ 0 and gamma > 0");
        }
        if self.steps == 0 {
            anyhow::bail!("model.capacity.steps: must be at least 1");
        }
        Ok(())
    }
}
