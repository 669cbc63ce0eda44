//! DIP-VAE (Kumar et al. 2018): the ELBO plus a penalty that pushes the covariance of the aggregate
//! posterior towards the identity — off-diagonal entries to 0 (weight `model.lambda_od`), diagonal entries
//! to 1 (weight `model.lambda_d`).
//! - `dip_vae_i`: the covariance of the posterior means, Cov_x[μ(x)];
//! - `dip_vae_ii`: the covariance of z itself, Cov_x[μ(x)] + E_x[diag σ²(x)].
//!
//! Defaults as disentanglement_lib's: λ_od = 10, λ_d = 10·λ_od for type I and λ_od for type II.

use super::vae::{Pass, Regularizer, Vae};
use crate::model::{Batch, DataInfo, GenerativeModel, ModelCtx};
use crate::spec::ModelSpec;
use candle_core::{Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub struct DipPenalty {
    pub second_type: bool,
    pub lambda_od: f64,
    pub lambda_d: f64,
}

pub fn build_i(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let pen = DipPenalty { second_type: false, lambda_od: spec.lambda_od, lambda_d: spec.lambda_d.unwrap_or(10.0 * spec.lambda_od) };
    Ok(Box::new(Vae::new(spec, data, varmap, vb, pen, None)?))
}

pub fn build_ii(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let pen = DipPenalty { second_type: true, lambda_od: spec.lambda_od, lambda_d: spec.lambda_d.unwrap_or(spec.lambda_od) };
    Ok(Box::new(Vae::new(spec, data, varmap, vb, pen, None)?))
}

/// The batch covariance of the rows of `x` (`[B, d]` → `[d, d]`, divided by B).
pub fn covariance(x: &Tensor) -> Result<Tensor> {
    let b = x.dim(0)? as f64;
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    centred.t()?.matmul(&centred)? / b
}

impl DipPenalty {
    /// λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)² for the covariance C this type regularises.
    pub fn penalty(&self, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
        let mut cov = covariance(mu)?;
        let d = cov.dim(0)?;
        let eye = Tensor::eye(d, cov.dtype(), cov.device())?;
        if self.second_type {
            let mean_var = logvar.exp()?.mean(0)?; // [d]
            cov = (cov + eye.broadcast_mul(&mean_var.unsqueeze(0)?)?)?;
        }
        let diag = (&cov * &eye)?.sum(1)?;
        let off = (&cov - (&cov * &eye)?)?;
        (off.sqr()?.sum_all()? * self.lambda_od)? + ((diag - 1.0)?.sqr()?.sum_all()? * self.lambda_d)?
    }
}

impl Regularizer for DipPenalty {
    fn objective(&self, _vae: &Vae, _batch: &Batch, p: &Pass, kl_weight: f64, _ctx: &mut ModelCtx) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        let dip = self.penalty(&p.mu, &p.logvar)?;
        let objective = ((p.recon.mean_all()? + (p.kl.mean_all()? * kl_weight)?)? + &dip)?;
        Ok((objective, vec![("dip", dip)]))
    }
}
