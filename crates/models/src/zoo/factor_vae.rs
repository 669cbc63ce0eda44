//! FactorVAE (Kim & Mnih 2018): the ELBO plus γ·TC(z), the total correlation estimated by a discriminator
//! that tells codes z ~ q(z) from codes whose dimensions were permuted independently across the batch
//! (samples of Π_d q(z_d)): TC ≈ E[logit D(z)]. The discriminator is an MLP (`model.disc_hidden`, default
//! 5 × 1000 leaky-ReLU layers as in the paper) with its own optimizer. Both losses come from one forward
//! pass (`joint_losses`): the discriminator learns from the very codes the VAE phase sampled, and both
//! optimizers step from the same parameters — disentanglement_lib's update, and one encoder pass per step
//! instead of two. `model.gamma` is γ (default 10); `model.kl_beta` weighs the KL term (default 1, the
//! paper's ELBO).

use super::vae::{KlPenalty, Vae};
use super::vars_under;
use crate::model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup, Phase};
use crate::losses::softplus;
use crate::spec::ModelSpec;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use rand::seq::SliceRandom;

pub struct FactorVae {
    vae: Vae,
    disc: Vec<Linear>,
    gamma: f64,
    /// The KL term's weight in the VAE phase (`model.kl_beta`).
    kl_beta: f64,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let vae = Vae::new(spec, data, varmap, vb.clone(), KlPenalty::Beta(1.0), None)?;
    let mut disc = vec![];
    let mut d = spec.latent_dim;
    for (i, &h) in spec.disc_hidden.iter().chain(std::iter::once(&1)).enumerate() {
        disc.push(candle_nn::linear(d, h, vb.pp("tc_discriminator").pp(format!("fc{i}")))?);
        d = h;
    }
    Ok(Box::new(FactorVae { vae, disc, gamma: spec.gamma, kl_beta: spec.kl_beta, varmap: varmap.clone() }))
}

const VAE: usize = 0; // phase / group indices
const DISC: usize = 1;

impl FactorVae {
    /// logit D(z): > 0 where the discriminator takes z for a sample of q(z) rather than of Π_d q(z_d).
    fn logit(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = z.clone();
        for (i, l) in self.disc.iter().enumerate() {
            h = l.forward(&h)?;
            if i + 1 < self.disc.len() {
                h = candle_nn::ops::leaky_relu(&h, 0.2)?;
            }
        }
        h.squeeze(1)
    }
}

/// Each column of `z` (`[B, d]`) permuted on its own across the batch: a sample of Π_d q(z_d).
pub fn permute_dims(z: &Tensor, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    let (b, d) = z.dims2()?;
    let mut idx = vec![0u32; b * d];
    for j in 0..d {
        let mut perm: Vec<u32> = (0..b as u32).collect();
        perm.shuffle(rng);
        for (i, p) in perm.into_iter().enumerate() {
            idx[i * d + j] = p;
        }
    }
    z.gather(&Tensor::from_vec(idx, (b, d), z.device())?, 0)
}

impl FactorVae {
    /// recon + w·KL + γ·TC, TC ≈ E[logit D(z)] on the pass's sampled codes.
    fn vae_losses(&self, p: &super::vae::Pass) -> Result<Losses> {
        let (recon, kl) = (p.recon.mean_all()?, p.kl.mean_all()?);
        let tc = self.logit(&p.z)?.mean_all()?;
        let objective = ((&recon + (&kl * self.kl_beta)?)? + (&tc * self.gamma)?)?;
        let terms = vec![("loss", objective.clone()), ("neg_elbo", (&recon + &kl)?), ("recon", recon), ("kl", kl), ("tc", tc)];
        Ok(Losses { objective, terms })
    }

    /// The discriminator's logistic loss: codes `z` (detached here) against their dimension-permuted copy.
    fn disc_losses(&self, z: &Tensor, ctx: &mut ModelCtx) -> Result<Losses> {
        let z = z.detach();
        let zp = permute_dims(&z, ctx.rng)?;
        let (lz, lp) = (self.logit(&z)?, self.logit(&zp)?);
        let d_loss = ((softplus(&lz.neg()?)?.mean_all()? + softplus(&lp)?.mean_all()?)? * 0.5)?;
        let acc = ((lz.ge(0.0)?.to_dtype(candle_core::DType::F32)?.mean_all()? + lp.lt(0.0)?.to_dtype(candle_core::DType::F32)?.mean_all()?)? * 0.5)?;
        Ok(Losses { objective: d_loss.clone(), terms: vec![("d_loss", d_loss), ("d_accuracy", acc)] })
    }
}

impl GenerativeModel for FactorVae {
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup { name: "vae", vars: self.vae.vars() },
            ParamGroup { name: "tc_discriminator", vars: vars_under(&self.varmap, "tc_discriminator.") },
        ]
    }

    fn phases(&self) -> Vec<Phase> {
        vec![Phase { group: VAE, repeats: 1 }, Phase { group: DISC, repeats: 1 }]
    }

    fn loss(&self, phase: usize, batch: &Batch, ctx: &mut ModelCtx) -> Result<Losses> {
        // Phase by phase (only where a trainer runs them in turn): each phase draws its own codes.
        if phase == VAE {
            self.vae_losses(&self.vae.pass(batch, ctx)?)
        } else {
            // Detached codes: this phase trains only the discriminator, so it needs no decoder pass.
            let z = self.vae.sample_posterior(batch, ctx)?.2;
            self.disc_losses(&z, ctx)
        }
    }

    fn joint_losses(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Option<Vec<Losses>>> {
        let p = self.vae.pass(batch, ctx)?;
        let vae = self.vae_losses(&p)?;
        Ok(Some(vec![vae, self.disc_losses(&p.z, ctx)?]))
    }

    fn eval(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        self.vae.eval(batch, ctx)
    }

    fn primary_metric(&self) -> &'static str {
        self.vae.primary_metric()
    }

    fn reconstruct(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        self.vae.reconstruct(batch, ctx)
    }

    fn sample(&self, n: usize, labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        self.vae.sample(n, labels, ctx)
    }

    fn encode(&self, batch: &Batch) -> Result<Option<Tensor>> {
        self.vae.encode(batch)
    }

    fn decode(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        GenerativeModel::decode(&self.vae, z, labels)
    }

    fn posterior_params(&self, batch: &Batch) -> Result<Option<(Tensor, Tensor)>> {
        self.vae.posterior_params(batch)
    }

    fn log_importance_weights(&self, batch: &Batch, k: usize, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        self.vae.log_importance_weights(batch, k, ctx)
    }

    fn latent_dim(&self) -> usize {
        self.vae.latent_dim()
    }
}
