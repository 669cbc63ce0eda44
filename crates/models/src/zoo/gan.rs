//! GAN (Goodfellow et al. 2014) with the non-saturating generator loss. With `backbone: conv` the pair is
//! DCGAN-style (Radford et al. 2016: strided convs, leaky-ReLU discriminator, transposed-conv generator);
//! with `backbone: mlp` it is the MLP pair used on 2D toy data. Generator and discriminator have their own
//! optimizers; the discriminator takes `model.d_steps` steps per generator step.

use super::{to_data_space, vars_under};
use crate::backbone::{Decoder, Encoder};
use crate::init::randn;
use crate::losses::softplus;
use crate::model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup, Phase};
use crate::spec::{Likelihood, ModelSpec};
use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub struct Gan {
    generator: Decoder,
    discriminator: Encoder,
    likelihood: Likelihood,
    latent_dim: usize,
    d_steps: usize,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Gan {
        generator: Decoder::new(spec, data.shape, spec.latent_dim, vb.pp("generator"))?,
        discriminator: Encoder::discriminator(spec, data.shape, 0, vb.pp("discriminator"))?,
        likelihood: spec.likelihood,
        latent_dim: spec.latent_dim,
        d_steps: spec.d_steps,
        varmap: varmap.clone(),
    }))
}

const D: usize = 0; // phase / group indices
const G: usize = 1;

impl Gan {
    /// `n` generated samples in data space (the discriminator sees data-space values for real and fake alike).
    fn generate(&self, n: usize, ctx: &mut ModelCtx) -> Result<Tensor> {
        let z = randn(ctx.rng, (n, self.latent_dim), &candle_core::Device::Cpu)?;
        to_data_space(self.likelihood, &self.generator.forward(&z)?)
    }

    fn critic(&self, x: &Tensor) -> Result<Tensor> {
        self.discriminator.forward(x, None)?.squeeze(1)
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
        if phase == D {
            // The fake batch is detached: this phase's gradient must not reach the generator.
            let fake = self.generate(n, ctx)?.detach();
            let (lr, lf) = (self.critic(&batch.x)?, self.critic(&fake)?);
            let d_loss = (softplus(&lr.neg()?)?.mean_all()? + softplus(&lf)?.mean_all()?)?;
            let d_real = candle_nn::ops::sigmoid(&lr)?.mean_all()?;
            let d_fake = candle_nn::ops::sigmoid(&lf)?.mean_all()?;
            Ok(Losses { objective: d_loss.clone(), terms: vec![("d_loss", d_loss), ("d_real", d_real), ("d_fake", d_fake)] })
        } else {
            // Non-saturating: the generator maximises log D(G(z)).
            let g_loss = softplus(&self.critic(&self.generate(n, ctx)?)?.neg()?)?.mean_all()?;
            Ok(Losses { objective: g_loss.clone(), terms: vec![("g_loss", g_loss)] })
        }
    }

    fn eval(&self, batch: &Batch, ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        let lr = self.critic(&batch.x)?;
        let lf = self.critic(&self.generate(batch.x.dim(0)?, ctx)?)?;
        Ok(vec![("g_loss", softplus(&lf.neg()?)?), ("d_real", softplus(&lr.neg()?)?), ("d_fake", softplus(&lf)?)])
    }

    /// The generator's loss against the current discriminator: a training signal, not a quality measure
    /// (use mode coverage on toy data, sample classifiers / FID-LeNet on images).
    fn primary_metric(&self) -> &'static str {
        "g_loss"
    }

    fn reconstruct(&self, _batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        Ok(None) // no encoder
    }

    fn sample(&self, n: usize, _labels: Option<&Tensor>, ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        self.generate(n, ctx).map(Some)
    }

    fn encode(&self, _batch: &Batch) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn decode(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        to_data_space(self.likelihood, &self.generator.forward(z)?).map(Some)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}
