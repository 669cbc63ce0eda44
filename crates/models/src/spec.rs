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
    /// β-TCVAE and FactorVAE: the weight of the whole KL term beside the total-correlation penalty — in Chen et
    /// al.'s decomposition the weight α = γ of the index-code MI and the dimension-wise KL (β-TCVAE's objective
    /// is then recon + w·KL + (β − w)·TC, so β stays the TC term's total weight). Default 1, the papers'
    /// experiments and disentanglement_lib's.
    #[serde(default = "default_one")]
    pub kl_beta: f64,
    /// FactorVAE: γ, the weight of the discriminator's total-correlation estimate.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// FactorVAE: hidden widths of the total-correlation discriminator (the paper's 5 × 1000).
    #[serde(default = "default_disc_hidden")]
    pub disc_hidden: Vec<usize>,
    /// DIP-VAE: weight of the off-diagonal covariance penalty.
    #[serde(default = "default_lambda_od")]
    pub lambda_od: f64,
    /// DIP-VAE: weight of the diagonal penalty (default 10·λ_od for type I, λ_od for type II).
    #[serde(default)]
    pub lambda_d: Option<f64>,
    /// WAE-MMD and InfoVAE: λ, the MMD weight (defaults 10 and 1000, the papers' values).
    #[serde(default)]
    pub mmd_weight: Option<f64>,
    /// InfoVAE: α (the KL weight is 1 − α, the MMD weight α + λ − 1).
    #[serde(default)]
    pub info_alpha: f64,
    /// IWAE: importance samples per example in training.
    #[serde(default = "default_iwae_k")]
    pub iwae_k: usize,
    /// VQ-VAE: entries in the codebook.
    #[serde(default = "default_codebook_size")]
    pub codebook_size: usize,
    /// VQ-VAE: width of each code vector (the encoder emits `latent_dim` of them).
    #[serde(default = "default_code_dim")]
    pub code_dim: usize,
    /// VQ-VAE: β, the weight of the commitment loss.
    #[serde(default = "default_commitment")]
    pub commitment: f64,
    /// cgan: a projection discriminator (Miyato & Koyama 2018) instead of the label concatenated to its input.
    #[serde(default)]
    pub projection: bool,
    /// WGAN-GP: λ, the weight of the gradient penalty.
    #[serde(default = "default_gp_weight")]
    pub gp_weight: f64,
    /// Conv backbone, DCGAN's batch normalisation (Radford et al. 2016): in the decoder / generator before
    /// each hidden ReLU, in a discriminator after every conv but the first. Off by default.
    #[serde(default)]
    pub batch_norm: bool,
    /// Weight initialisation: candle-nn's layer defaults, or DCGAN's N(0, 0.02) weights and zero biases
    /// (batch-norm scales N(1, 0.02)).
    #[serde(default)]
    pub init: InitScheme,
    /// β-TCVAE: how log q(z) is estimated from the batch (Chen et al. 2018, appendix C).
    #[serde(default)]
    pub tc_estimator: TcEstimator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcEstimator {
    /// Minibatch-weighted sampling: every posterior in the batch weighted alike (disentanglement_lib's).
    #[default]
    Mws,
    /// Minibatch-stratified sampling: an example's own posterior weighted 1/N (pythae's default).
    Mss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// Each layer's candle-nn initialisation (Kaiming normal weights, uniform(±1/√fan_in) biases).
    #[default]
    Default,
    /// Radford et al.'s: every weight N(0, 0.02), biases 0, batch-norm scales N(1, 0.02).
    Dcgan,
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

fn default_gamma() -> f64 {
    10.0
}
fn default_disc_hidden() -> Vec<usize> {
    vec![1000; 5]
}
fn default_lambda_od() -> f64 {
    10.0
}
fn default_iwae_k() -> usize {
    5
}
fn default_codebook_size() -> usize {
    128
}
fn default_code_dim() -> usize {
    8
}
fn default_commitment() -> f64 {
    0.25
}
fn default_gp_weight() -> f64 {
    10.0
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
        for (name, v) in [("gamma", self.gamma), ("lambda_od", self.lambda_od), ("commitment", self.commitment), ("gp_weight", self.gp_weight)]
            .into_iter()
            .chain(self.lambda_d.map(|v| ("lambda_d", v)))
            .chain(self.mmd_weight.map(|v| ("mmd_weight", v)))
        {
            if !(v >= 0.0 && v.is_finite()) {
                anyhow::bail!("model.{name}: must be a non-negative number, got {v}");
            }
        }
        if !(self.info_alpha.is_finite() && self.info_alpha <= 1.0) {
            anyhow::bail!("model.info_alpha: must be at most 1 (the KL weight is 1 − α), got {}", self.info_alpha);
        }
        if self.iwae_k == 0 || self.codebook_size == 0 || self.code_dim == 0 || self.disc_hidden.contains(&0) {
            anyhow::bail!("model.iwae_k / codebook_size / code_dim / disc_hidden: must be at least 1");
        }
        if self.channels.is_empty() {
            anyhow::bail!("model.channels: the conv backbone needs at least one layer");
        }
        Ok(())
    }
}
