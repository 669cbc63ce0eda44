//! The `model:` section of an experiment spec.
//!
//! One flat struct for every model so that a sweep can vary `model.kind` across models. Options a model does
//! not use are ignored by it; options only some models read are documented on the field.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    #[default]
    Mlp,
    Conv,
}

/// The decoder's output distribution p(x|z).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Likelihood {
    /// Bernoulli with logits: reconstruction term is BCE-with-logits (binary or [0, 1] data).
    #[default]
    Bernoulli,
    /// Gaussian with unit variance: reconstruction term is ½‖x − μ‖² + const.
    Gaussian,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A name from the registry (`vaelab validate` lists them): ae, vae, …
    pub kind: String,
    #[serde(default)]
    pub backbone: Backbone,
    #[serde(default = "default_latent_dim")]
    pub latent_dim: usize,
    /// Hidden layer widths of the MLP backbone (encoder order; the decoder mirrors them).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Channels of the conv backbone's stride-2 4×4 convolutions (the decoder mirrors them).
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    #[serde(default)]
    pub likelihood: Likelihood,
    /// β-VAE (Higgins et al.) and CVAE: weight of the KL term. The plain `vae` always uses 1.
    #[serde(default = "default_one")]
    pub beta: f64,
    /// β-VAE capacity form (Burgess et al.): replaces β·KL by γ·|KL − C| with C annealed 0 → `max`.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// KL warm-up for every VAE-type model: the KL term's weight rises from 0 to 1 (training loss only).
    #[serde(default)]
    pub kl_warmup: Option<KlWarmup>,
    /// GAN and VAE-GAN: discriminator updates per generator update.
    #[serde(default = "default_d_steps")]
    pub d_steps: usize,
    /// VAE-GAN: γ, the weight of the feature-space reconstruction in the decoder's loss (Larsen et al. §2.3:
    /// the decoder minimises γ·L_llike − L_GAN).
    #[serde(default = "default_recon_weight")]
    pub recon_weight: f64,
}

pub use crate::schedule::{Capacity, KlWarmup, WarmupSchedule};

fn default_one() -> f64 {
    1.0
}
fn default_d_steps() -> usize {
    1
}
fn default_recon_weight() -> f64 {
    1e-2
}

fn default_latent_dim() -> usize {
    16
}
fn default_hidden() -> Vec<usize> {
    vec![400]
}
fn default_channels() -> Vec<usize> {
    vec![32, 64]
}

impl ModelSpec {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !crate::registry::kinds().contains(&self.kind.as_str()) {
            anyhow::bail!("model.kind: unknown model `{}`, expected one of {}", self.kind, crate::registry::kinds().join(", "));
        }
        if self.latent_dim == 0 {
            anyhow::bail!("model.latent_dim: must be at least 1");
        }
        if self.hidden.contains(&0) || self.channels.contains(&0) {
            anyhow::bail!("model.hidden / model.channels: layer widths must be at least 1");
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            anyhow::bail!("model.beta: must be a non-negative number, got {}", self.beta);
        }
        if let Some(c) = &self.capacity {
            c.validate()?;
        }
        if let Some(w) = &self.kl_warmup {
            w.validate()?;
        }
        if self.d_steps == 0 {
            anyhow::bail!("model.d_steps: must be at least 1");
        }
        if !(self.recon_weight >= 0.0 && self.recon_weight.is_finite()) {
            anyhow::bail!("model.recon_weight: must be a non-negative number, got {}", self.recon_weight);
        }
        if self.channels.is_empty() {
            anyhow::bail!("model.channels: the conv backbone needs at least one layer");
        }
        Ok(())
    }
}
