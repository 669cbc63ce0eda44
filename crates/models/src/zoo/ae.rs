//! Deterministic autoencoder: x → z → x̂, trained on the reconstruction term alone.

use super::{recon_nll, to_data_space};
use crate::backbone::{Decoder, Encoder};
use crate::model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup};
use crate::spec::{Likelihood, ModelSpec};
use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub struct Ae {
    encoder: Encoder,
    decoder: Decoder,
    likelihood: Likelihood,
    latent_dim: usize,
    varmap: VarMap,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Ae {
        encoder: Encoder::new(spec, data.shape, 0, spec.latent_dim, vb.pp("encoder"))?,
        decoder: Decoder::new(spec, data.shape, spec.latent_dim, vb.pp("decoder"))?,
        likelihood: spec.likelihood,
        latent_dim: spec.latent_dim,
        varmap: varmap.clone(),
    }))
}

impl Ae {
    fn recon(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.decoder.forward(&self.encoder.forward(x, None)?)?;
        recon_nll(self.likelihood, &out, x)
    }
}

impl GenerativeModel for Ae {
    fn param_groups(&self) -> Vec<ParamGroup> {
        vec![ParamGroup { name: "model", vars: super::vars_under(&self.varmap, "") }]
    }

    fn loss(&self, _phase: usize, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Losses> {
        let recon = self.recon(&batch.x)?.mean_all()?;
        Ok(Losses { objective: recon.clone(), terms: vec![("recon", recon)] })
    }

    fn per_example_objective(&self) -> bool {
        true
    }

    fn eval(&self, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Vec<(&'static str, Tensor)>> {
        Ok(vec![("recon", self.recon(&batch.x)?)])
    }

    fn primary_metric(&self) -> &'static str {
        "recon"
    }

    fn reconstruct(&self, batch: &Batch, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        let out = self.decoder.forward(&self.encoder.forward(&batch.x, None)?)?;
        to_data_space(self.likelihood, &out).map(Some)
    }

    fn sample(&self, _n: usize, _labels: Option<&Tensor>, _ctx: &mut ModelCtx) -> Result<Option<Tensor>> {
        Ok(None) // no prior over codes
    }

    fn encode(&self, batch: &Batch) -> Result<Option<Tensor>> {
        self.encoder.forward(&batch.x, None).map(Some)
    }

    fn decode(&self, z: &Tensor, _labels: Option<&Tensor>) -> Result<Option<Tensor>> {
        to_data_space(self.likelihood, &self.decoder.forward(z)?).map(Some)
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}
