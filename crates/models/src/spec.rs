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
        if self.channels.is_empty() {
            anyhow::bail!("model.channels: the conv backbone needs at least one layer");
        }
        Ok(())
    }
}
