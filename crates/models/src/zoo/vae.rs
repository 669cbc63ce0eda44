//! Variational autoencoder (Kingma & Welling 2014): Gaussian q(z|x), reparameterised sampling, analytic KL
//! to N(0, I), and a Bernoulli or Gaussian decoder. Loss = reconstruction NLL + KL = negative ELBO.
//!
//! [`Vae`] is also the body of the β-VAE (another KL penalty), the CVAE (label-conditioned encoder and
//! decoder) and the VAE variants that change only the training objective (β-TCVAE, DIP-VAE, WAE-MMD,
//! InfoVAE, IWAE): those modules configure it with a [`Regularizer`], as pythae's variants extend its VAE.

use super::{recon_nll, to_data_space};
use crate::backbone::{Decoder, Encoder};
use crate::init::randn;
use crate::losses::kl_standard_normal;
use crate::model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup};
use crate::schedule::{Capacity, KlWarmup};
use crate::spec::{Likelihood, ModelSpec};
use candle_core::{Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

/// How the KL term enters the training objective.
#[derive(Debug, Clone)]
pub enum KlPenalty {
    /// β·KL (β = 1: the ELBO).
    Beta(f64),
    /// γ·|KL − C(step)| (Burgess et al.).
    Capacity(Capacity),
}

/// What a VAE variant puts beside the reconstruction term of its training objective.
pub trait Regularizer: Send + Sync {
    /// The training objective (a scalar, batch mean) and the named terms to log besides `loss`, `neg_elbo`,
    /// `recon` and `kl`. `kl_weight` is the KL warm-up's factor at this step (1 without warm-up).
    fn objective(&self, vae: &Vae, batch: &Batch, pass: &Pass, kl_weight: f64, ctx: &mut ModelCtx) -> Result<(Tensor, Vec<(&'static str, Tensor)>)>;

    /// Whether the objective is a batch mean of per-example terms ([`GenerativeModel::per_example_objective`]).
    /// Default: false (β-TCVAE's and WAE's estimates pair examples, DIP-VAE's uses the batch covariance).
    fn per_example(&self) -> bool {
        false
    }
}

pub struct Vae {
    encoder: Encoder,
    decoder: Decoder,
    likelihood: Likelihood,
    latent_dim: usize,
    /// Conditional (CVAE): the number of classes whose one-hot label both networks see.
    classes: Option<usize>,
    regularizer: Box<dyn Regularizer>,
    warmup: Option<KlWarmup>,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Vae::new(spec, data, varmap, vb, KlPenalty::Beta(1.0), None)?))
}

/// One reparameterised pass over a batch: posterior parameters, the sampled code and per-example terms.
pub struct Pass {
    pub mu: Tensor,
    pub logvar: Tensor,
    /// z = μ + σ·ε, `[B, latent_dim]`.
    pub z: Tensor,
    /// Reconstruction NLL per example, `[B]`.
    pub recon: Tensor,
    /// Analytic KL(q(z|x) ‖ N(0, I)) per example, `[B]`.
    pub kl: Tensor,
}

impl Regularizer for KlPenalty {
    fn per_example(&self) -> bool {
        // |mean KL − C| is not a mean of per-example terms.
        matches!(self, KlPenalty::Beta(_))
    }
    fn objective(&self, _vae: &Vae, _batch: &Batch, pass: &Pass, kl_weight: f64, ctx: &mut ModelCtx) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        let (recon, kl) = (pass.recon.mean_all()?, pass.kl.mean_all()?);
        match self {
            KlPenalty::Beta(beta) => Ok(((recon + (kl * (beta * kl_weight))?)?, vec![])),
            KlPenalty::Capacity(c) => {
                let cap = c.at(ctx.step);
                let penalty = ((&kl - cap)?.abs()? * (c.gamma * kl_weight))?;
                Ok(((recon + penalty)?, vec![("capacity", Tensor::new(cap as f32, kl.device())?)]))
            }
        }
    }
}

impl Vae {
    pub fn new(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder, regularizer: impl Regularizer + 'static, classes: Option<usize>) -> Result<Self> {
        let k = classes.unwrap_or(0);
        Ok(Vae {
            encoder: Encoder::new(spec, data.shape, k, 2 * spec.latent_dim, vb.pp("encoder"))?,
            decoder: Decoder::new(spec, data.shape, spec.latent_dim + k, vb.pp("decoder"))?,
            likelihood: spec.likelihood,
            latent_dim: spec.latent_dim,
            classes,
            regularizer: Box::new(regularizer),
            warmup: spec.kl_warmup.clone(),
            varmap: varmap.clone(),
        })
    }

    /// Decoder output (logits or means) for codes `z`; conditional models take the batch's one-hot labels.
    pub fn decode_raw(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        match labels {
            Some(l) => self.decoder.forward(&Tensor::cat(&[z, l], 1)?),
            None => self.decoder.forward(z),
        }
    }

    /// (μ, log σ²) of q(z|x), `[B, latent_dim]` each.
    pub fn posterior(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let h = self.encoder.forward(&batch.x, self.labels(batch)?)?;
        Ok((h.narrow(D::Minus1, 0, self.latent_dim)?, h.narrow(D::Minus1, self.latent_dim, self.latent_dim)?))
    }

    /// (μ, log σ², z = μ + σ·ε): the encoder half of `pass`, drawing the same noise from `ctx.rng`.
    pub fn sample_posterior(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<(Tensor, Tensor, Tensor)> {
        let (mu, logvar) = self.posterior(batch)?;
        let eps = randn(ctx.rng, mu.shape(), mu.device())?;
        let z = (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?;
        Ok((mu, logvar, z))
    }

    pub fn pass(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Pass> {
        let (mu, logvar, z) = self.sample_posterior(batch, ctx)?;
        let out = self.decode_raw(&z, self.labels(batch)?)?;
        let (recon, kl) = (recon_nll(self.likelihood, &out, &batch.x)?, kl_standard_normal(&mu, &logvar)?);
        Ok(Pass { mu, logvar, z, recon, kl })
    }

    /// The one-hot labels of a conditional model's batch (`None` for unconditional models).
    pub fn labels<'a>(&self, batch: &'a Batch) -> Result<Option<&'a Tensor>> {
        super::batch_labels(self.classes, batch)
    }

    /// The variables of the encoder and decoder, name-sorted (one optimizer).
    pub fn vars(&self) -> Vec<candle_core::Var> {
        let mut v = super::vars_under(&self.varmap, "decoder.");
        v.extend(super::vars_under(&self.varmap, "encoder."));
        v
    }

    /// One-hot labels for `n` class-conditional samples: the given ones, or classes 0, 1, …, K−1 in turn.
    fn sample_labels(&self, n: usize, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        super::sample_labels(self.classes, n, labels)
    }
}

impl GenerativeModel for Vae {
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![ParamGroup { name: "model", vars: self.vars() }]
    }

    fn loss(&self, _phase: usize, batch: &Batch, ctx: &mut ModelCtx) -> Result<Losses> {
        let p = self.pass(batch, ctx)?;
        let warm = self.warmup.as_ref().map(|w| w.weight(ctx.step)).unwrap_or(1.0);
        let (objective, terms) = self.regularizer.objective(self, batch, &p, warm, ctx)?;
        let (recon, kl) = (p.recon.mean_all()?, p.kl.mean_all()?);
        let mut all = vec![("loss", objective.clone()), ("neg_elbo", (&recon + &kl)?), ("recon", recon), ("kl", kl)];
        all.extend(terms);
        if self.warmup.is_some() {
            all.push(("kl_weight", Tensor::new(warm as f32, objective.device())?));
        }
        Ok(Losses { objective, terms: all })
    }

    fn per_example_objective(&self) -> bool {
        self.regularizer.per_example()
    }

    fn eval(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        let p = self.pass(batch, ctx)?;
        Ok(vec![("neg_elbo", (&p.recon + &p.kl)?), ("recon", p.recon), ("kl", p.kl)])
    }

    fn primary_metric(&self) -> &'static str {
        "neg_elbo"
    }

    fn reconstruct(&self, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let (mu, _) = self.posterior(batch)?;
        to_data_space(self.likelihood, &self.decode_raw(&mu, self.labels(batch)?)?).map(Some)
    }

    fn sample(&self, n: usize, labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let z = randn(ctx.rng, (n, self.latent_dim), &candle_core::Device::Cpu)?;
        let labels = self.sample_labels(n, labels)?;
        to_data_space(self.likelihood, &self.decode_raw(&z, labels.as_ref())?).map(Some)
    }

    fn encode(&self, batch: &Batch) -> Result<Option<Tensor>> {
        self.posterior(batch).map(|(mu, _)| Some(mu))
    }

    fn decode(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        let labels = self.sample_labels(z.dim(0)?, labels)?;
        to_data_space(self.likelihood, &self.decode_raw(z, labels.as_ref())?).map(Some)
    }

    fn posterior_params(&self, batch: &Batch) -> Result<Option<(Tensor, Tensor)>> {
        self.posterior(batch).map(Some)
    }

    fn log_importance_weights(&self, batch: &Batch, k: usize, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        // log p(x|z) + log N(z; 0, I) − log N(z; μ, σ²), one decoder pass of the batch per sample; the
        // log 2π terms of prior and posterior cancel.
        let (mu, logvar) = self.posterior(batch)?;
        let labels = self.labels(batch)?;
        let half_logvar_sum = (logvar.sum(D::Minus1)? * 0.5)?;
        let mut cols = Vec::with_capacity(k);
        for _ in 0..k {
            let eps = randn(ctx.rng, mu.shape(), mu.device())?;
            let z = (&mu + (&eps * (&logvar * 0.5)?.exp()?)?)?;
            let log_px = recon_nll(self.likelihood, &self.decode_raw(&z, labels)?, &batch.x)?.neg()?;
            let log_pz = (z.sqr()?.sum(D::Minus1)? * -0.5)?;
            let log_qz = ((eps.sqr()?.sum(D::Minus1)? * -0.5)? - &half_logvar_sum)?;
            cols.push(((log_px + log_pz)? - log_qz)?);
        }
        Tensor::stack(&cols, 1).map(Some)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    fn classes(&self) -> Option<usize> {
        self.classes
    }
}
