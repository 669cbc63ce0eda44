//! β-TCVAE (Chen et al. 2018): the ELBO's KL split into index-code MI, total correlation and dimension-wise
//! KL, with the total correlation weighted by β. As in disentanglement_lib's `BetaTCVAE`, the objective is
//! recon + KL + (β − 1)·TC, i.e. α = γ = 1 in the paper's decomposition.
//!
//! TC = E_q[log q(z) − Σ_d log q(z_d)] uses the minibatch-weighted-sampling estimate over the batch:
//! log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N·M), and likewise per dimension. The log(N·M) constants
//! carry no gradient and are left out (as disentanglement_lib does), so the logged `tc` is the estimate up to
//! the constant (d − 1)·log(N·M): compare it between runs of one dataset and batch size, not with the paper.
//!
//! `model.beta` is β (β = 1: the plain VAE).

use super::vae::{Pass, Regularizer, Vae};
use crate::model::{Batch, DataInfo, GenerativeModel, ModelCtx};
use crate::spec::ModelSpec;
use candle_core::{Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

pub struct TotalCorrelation {
    pub beta: f64,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Vae::new(spec, data, varmap, vb, TotalCorrelation { beta: spec.beta }, None)?))
}

/// The minibatch estimate of TC(z) per example, `[B]`, from codes `z` sampled from q(z|x) with posterior
/// parameters `mu`, `logvar` (all `[B, d]`), without the log(N·M) constants.
pub fn total_correlation(z: &Tensor, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    // log q(z_i,d | x_j) for every pair (i, j): [B, B, d], the log 2π terms included.
    let (zi, mj, lj) = (z.unsqueeze(1)?, mu.unsqueeze(0)?, logvar.unsqueeze(0)?);
    let sq = zi.broadcast_sub(&mj)?.sqr()?.broadcast_mul(&lj.neg()?.exp()?)?;
    let log_q = ((sq.broadcast_add(&lj)? + (2.0 * std::f64::consts::PI).ln())? * -0.5)?;
    let log_qz = log_q.sum(D::Minus1)?.log_sum_exp(1)?; // [B]
    let log_qz_product = log_q.log_sum_exp(1)?.sum(D::Minus1)?; // [B]
    log_qz - log_qz_product
}

impl Regularizer for TotalCorrelation {
    fn objective(&self, _vae: &Vae, _batch: &Batch, p: &Pass, kl_weight: f64, _ctx: &mut ModelCtx) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        let tc = total_correlation(&p.z, &p.mu, &p.logvar)?.mean_all()?;
        let kl = (p.kl.mean_all()? * kl_weight)?;
        let objective = ((p.recon.mean_all()? + kl)? + (&tc * (self.beta - 1.0))?)?;
        Ok((objective, vec![("tc", tc)]))
    }
}
