//! GAN (Goodfellow et al. 2014) with the non-saturating generator loss. With `backbone: conv` the pair is
//! DCGAN-style (Radford et al. 2016: strided convs, leaky-ReLU discriminator, transposed-conv generator);
//! with `backbone: mlp` it is the MLP pair used on 2D toy data. Generator and discriminator have their own
//! optimizers; the discriminator takes `model.d_steps` steps per generator step.
//!
//! [`Gan`] is also the body of WGAN-GP (another objective) and the conditional GAN (label-conditioned
//! generator and discriminator): those modules only configure it.

use super::{to_data_space, vars_under};
use crate::backbone::{Decoder, Encoder};
use crate::init::randn;
use crate::losses::softplus;
use crate::model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup, Phase};
use crate::spec::{Likelihood, ModelSpec};
use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// What the discriminator and generator minimise.
#[derive(Debug, Clone, Copy)]
pub enum GanObjective {
    /// Goodfellow et al.'s discriminator loss with the non-saturating generator loss.
    NonSaturating,
    /// Wasserstein critic with the gradient penalty λ·(‖∇D(x̂)‖₂ − 1)² on random interpolates x̂ of real
    /// and generated samples (Gulrajani et al. 2017).
    WassersteinGp { gp_weight: f64 },
}

pub struct Gan {
    generator: Decoder,
    discriminator: Encoder,
    likelihood: Likelihood,
    latent_dim: usize,
    d_steps: usize,
    objective: GanObjective,
    /// Conditional GAN: the number of classes whose one-hot label both networks see.
    classes: Option<usize>,
    /// Projection discriminator (Miyato & Koyama 2018): D(x, y) = ψ(φ(x)) + ⟨V·y, φ(x)⟩ instead of the label
    /// concatenated to the input. `V` maps a one-hot label to the feature space.
    projection: Option<candle_nn::Linear>,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Gan::new(spec, data, varmap, vb, GanObjective::NonSaturating, None)?))
}

const D: usize = 0; // phase / group indices
const G: usize = 1;

impl Gan {
    pub fn new(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder, objective: GanObjective, classes: Option<usize>) -> Result<Self> {
        let k = classes.unwrap_or(0);
        let project = spec.projection && k > 0;
        if spec.batch_norm && matches!(objective, GanObjective::WassersteinGp { .. }) {
            candle_core::bail!("model.batch_norm: not with the gradient penalty (each example's critic value would depend on its batch)");
        }
        if project && !matches!(objective, GanObjective::NonSaturating) {
            candle_core::bail!("model.projection: only for the non-saturating conditional GAN (cgan)");
        }
        let discriminator = Encoder::discriminator(spec, data.shape, if project { 0 } else { k }, vb.pp("discriminator"))?;
        let projection = match project {
            true => Some(candle_nn::linear_no_bias(k, discriminator.feature_dim(), vb.pp("discriminator").pp("projection"))?),
            false => None,
        };
        Ok(Gan {
            generator: Decoder::new(spec, data.shape, spec.latent_dim + k, vb.pp("generator"))?,
            discriminator,
            projection,
            likelihood: spec.likelihood,
            latent_dim: spec.latent_dim,
            d_steps: spec.d_steps,
            objective,
            classes,
            varmap: varmap.clone(),
        })
    }

    /// The one-hot labels a conditional GAN trains on (`None` for an unconditional one).
    fn labels<'a>(&self, batch: &'a Batch) -> Result<Option<&'a Tensor>> {
        super::batch_labels(self.classes, batch)
    }

    /// Labels for `n` samples: the given ones, or classes 0, 1, …, K−1 in turn.
    fn sample_labels(&self, n: usize, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        super::sample_labels(self.classes, n, labels)
    }

    fn generate_from(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let input = match labels {
            Some(l) => Tensor::cat(&[z, l], 1)?,
            None => z.clone(),
        };
        to_data_space(self.likelihood, &self.generator.forward(&input)?)
    }

    /// `n` generated samples in data space (the discriminator sees data-space values for real and fake alike).
    fn generate(&self, n: usize, labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Tensor> {
        let z = randn(ctx.rng, (n, self.latent_dim), &candle_core::Device::Cpu)?;
        self.generate_from(&z, labels)
    }

    fn critic(&self, x: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        match (&self.projection, labels) {
            (Some(v), Some(y)) => {
                let phi = self.discriminator.features(x, None)?;
                let proj = (candle_nn::Module::forward(v, y)? * &phi)?.sum(1)?;
                self.discriminator.head(&phi)?.squeeze(1)? + proj
            }
            _ => self.discriminator.forward(x, labels)?.squeeze(1),
        }
    }

    /// λ·mean_b (‖∇ₓ D(x̂_b)‖₂ − 1)², x̂ = ε·real + (1 − ε)·fake, ε ~ U(0, 1) per example.
    fn gradient_penalty(&self, real: &Tensor, fake: &Tensor, labels: Option<&Tensor>, gp_weight: f64, ctx: &mut ModelCtx) -> Result<Tensor> {
        use rand::Rng;
        let n = real.dim(0)?;
        let eps: Vec<f32> = (0..n).map(|_| ctx.rng.random::<f32>()).collect();
        let mut shape = vec![n];
        shape.extend(std::iter::repeat(1).take(real.rank() - 1));
        let eps = Tensor::from_vec(eps, shape, real.device())?;
        let mix = (real.broadcast_mul(&eps)? + fake.broadcast_mul(&(1.0 - &eps)?)?)?;
        let g = self.discriminator.input_gradient(&mix, labels)?.flatten_from(1)?;
        let norm = (g.sqr()?.sum(1)? + 1e-12)?.sqrt()?;
        (norm - 1.0)?.sqr()?.mean_all()? * gp_weight
    }
}

impl GenerativeModel for Gan {
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![
            ParamGroup { name: "discriminator", vars: vars_under(&self.varmap, "discriminator.") },
            ParamGroup { name: "generator", vars: vars_under(&self.varmap, "generator.") },
        ]
    }

    fn phases(&self) -> Vec<Phase> {
        vec![Phase { group: D, repeats: self.d_steps }, Phase { group: G, repeats: 1 }]
    }

    fn loss(&self, phase: usize, batch: &Batch, ctx: &mut ModelCtx) -> Result<Losses> {
        let n = batch.x.dim(0)?;
        let labels = self.labels(batch)?;
        if phase == D {
            // The fake batch is detached: this phase's gradient must not reach the generator.
            let fake = self.generate(n, labels, ctx)?.detach();
            let (lr, lf) = (self.critic(&batch.x, labels)?, self.critic(&fake, labels)?);
            match self.objective {
                GanObjective::NonSaturating => {
                    let d_loss = (softplus(&lr.neg()?)?.mean_all()? + softplus(&lf)?.mean_all()?)?;
                    let d_real = candle_nn::ops::sigmoid(&lr)?.mean_all()?;
                    let d_fake = candle_nn::ops::sigmoid(&lf)?.mean_all()?;
                    Ok(Losses { objective: d_loss.clone(), terms: vec![("d_loss", d_loss), ("d_real", d_real), ("d_fake", d_fake)] })
                }
                GanObjective::WassersteinGp { gp_weight } => {
                    let gap = (lr.mean_all()? - lf.mean_all()?)?; // the critic's estimate of W(real, fake)
                    let gp = self.gradient_penalty(&batch.x, &fake, labels, gp_weight, ctx)?;
                    let d_loss = (gp.clone() - &gap)?;
                    Ok(Losses { objective: d_loss.clone(), terms: vec![("d_loss", d_loss), ("wasserstein", gap), ("gradient_penalty", gp)] })
                }
            }
        } else {
            let lf = self.critic(&self.generate(n, labels, ctx)?, labels)?;
            let g_loss = match self.objective {
                // Non-saturating: the generator maximises log D(G(z)).
                GanObjective::NonSaturating => softplus(&lf.neg()?)?.mean_all()?,
                GanObjective::WassersteinGp { .. } => lf.mean_all()?.neg()?,
            };
            Ok(Losses { objective: g_loss.clone(), terms: vec![("g_loss", g_loss)] })
        }
    }

    fn eval(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        let labels = self.labels(batch)?;
        let lr = self.critic(&batch.x, labels)?;
        let lf = self.critic(&self.generate(batch.x.dim(0)?, labels, ctx)?, labels)?;
        match self.objective {
            GanObjective::NonSaturating => Ok(vec![("g_loss", softplus(&lf.neg()?)?), ("d_real", softplus(&lr.neg()?)?), ("d_fake", softplus(&lf)?)]),
            GanObjective::WassersteinGp { .. } => Ok(vec![("g_loss", lf.neg()?), ("critic_real", lr), ("critic_fake", lf)]),
        }
    }

    /// The generator's loss against the current discriminator: a training signal, not a quality measure
    /// (use mode coverage on toy data, sample classifiers / FID-LeNet on images).
    fn primary_metric(&self) -> &'static str {
        "g_loss"
    }

    fn reconstruct(&self, _batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        Ok(None) // no encoder
    }

    fn sample(&self, n: usize, labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let labels = self.sample_labels(n, labels)?;
        self.generate(n, labels.as_ref(), ctx).map(Some)
    }

    fn encode(&self, _batch: &Batch) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn decode(&self, z: &Tensor, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        let labels = self.sample_labels(z.dim(0)?, labels)?;
        self.generate_from(z, labels.as_ref()).map(Some)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    fn classes(&self) -> Option<usize> {
        self.classes
    }
}
