//! Variational autoencoder (Kingma & Welling 2014): Gaussian q(z|x), reparameterised sampling, analytic KL
//! to N(0, I), and a Bernoulli or Gaussian decoder. Loss = reconstruction NLL + KL = negative ELBO.

use super::{recon_nll, to_data_space};
use crate::backbone::{Decoder, Encoder};
use crate::init::randn;
use crate::losses::kl_standard_normal;
use crate::model::{Batch, GenerativeModel, Losses, ModelCtx, ParamGroup};
use crate::spec::{Likelihood, ModelSpec};
use candle_core::{Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    likelihood: Likelihood,
    latent_dim: usize,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, shape: &[usize], varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Vae {
        encoder: Encoder::new(spec, shape, 0, 2 * spec.latent_dim, vb.pp("encoder"))?,
        decoder: Decoder::new(spec, shape, spec.latent_dim, vb.pp("decoder"))?,
        likelihood: spec.likelihood,
        latent_dim: spec.latent_dim,
        varmap: varmap.clone(),
    }))
}

/// Per-example terms of one pass.
struct Pass {
    recon: Tensor,
    kl: Tensor,
}

impl Vae {
    fn posterior(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.encoder.forward(x, None)?;
        Ok((h.narrow(D::Minus1, 0, self.latent_dim)?, h.narrow(D::Minus1, self.latent_dim, self.latent_dim)?))
    }

    fn pass(&self, x: &Tensor, ctx: &mut ModelCtx) -> Result<Pass> {
        let (mu, logvar) = self.posterior(x)?;
        let eps = randn(ctx.rng, mu.shape(), mu.device())?;
        let z = (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?;
        let out = self.decoder.forward(&z)?;
        Ok(Pass { recon: recon_nll(self.likelihood, &out, x)?, kl: kl_standard_normal(&mu, &logvar)? })
    }
}

impl GenerativeModel for Vae {
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![ParamGroup { name: "model", vars: self.varmap.all_vars() }]
    }

    fn loss(&self, _phase: usize, batch: &Batch, ctx: &mut ModelCtx) -> Result<Losses> {
        let p = self.pass(&batch.x, ctx)?;
        let (recon, kl) = (p.recon.mean_all()?, p.kl.mean_all()?);
        let objective = (&recon + &kl)?;
        Ok(Losses { objective: objective.clone(), terms: vec![("neg_elbo", objective), ("recon", recon), ("kl", kl)] })
    }

    fn eval(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        let p = self.pass(&batch.x, ctx)?;
        Ok(vec![("neg_elbo", (&p.recon + &p.kl)?), ("recon", p.recon), ("kl", p.kl)])
    }

    fn primary_metric(&self) -> &'static str {
        "neg_elbo"
    }

    fn reconstruct(&self, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let (mu, _) = self.posterior(&batch.x)?;
        to_data_space(self.likelihood, &self.decoder.forward(&mu)?).map(Some)
    }

    fn sample(&self, n: usize, _labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let z = randn(ctx.rng, (n, self.latent_dim), &candle_core::Device::Cpu)?;
        to_data_space(self.likelihood, &self.decoder.forward(&z)?).map(Some)
    }

    fn encode(&self, batch: &Batch) -> Result<Option<Tensor>> {
        self.posterior(&batch.x).map(|(mu, _)| Some(mu))
    }
}
