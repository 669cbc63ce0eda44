//! IWAE (Burda et al. 2016): the VAE's networks trained on the k-sample importance-weighted bound
//! log (1/k) Σ_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x) reparameterised — tighter than the ELBO (k = 1).
//! `model.iwae_k` is k (default 5). Evaluation reports the usual ELBO terms; the `iwae_nll` metric gives
//! the bound at any k.

use super::vae::{KlPenalty, Pass, Regularizer, Vae};
use crate::model::{Batch, DataInfo, GenerativeModel, ModelCtx};
use crate::spec::ModelSpec;
use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub struct IwaeBound {
    pub k: usize,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Vae::new(spec, data, varmap, vb, IwaeBound { k: spec.iwae_k }, None)?))
}

impl Regularizer for IwaeBound {
    fn per_example(&self) -> bool {
        true // each example's bound uses only its own k samples
    }
    fn objective(&self, vae: &Vae, batch: &Batch, p: &Pass, kl_weight: f64, ctx: &mut ModelCtx) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        if self.k == 1 {
            // k = 1 is the ELBO; the analytic KL has less variance than the one-sample estimate.
            return KlPenalty::Beta(1.0).objective(vae, batch, p, kl_weight, ctx);
        }
        let log_w = GenerativeModel::log_importance_weights(vae, batch, self.k, ctx)?.expect("a VAE has importance weights");
        let bound = (log_w.log_sum_exp(1)? - (self.k as f64).ln())?.mean_all()?.neg()?;
        Ok((bound.clone(), vec![("iwae_bound", bound)]))
    }
}
