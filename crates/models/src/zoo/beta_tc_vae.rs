//! β-TCVAE (Chen et al. 2018): the ELBO's KL split into index-code MI, total correlation and dimension-wise
//! KL, with the total correlation weighted by β. As in disentanglement_lib's `BetaTCVAE`, the objective is
//! recon + KL + (β − 1)·TC, i.e. α = γ = 1 in the paper's decomposition.
//!
//! TC = E_q[log q(z) − Σ_d log q(z_d)] is estimated from the batch (`model.tc_estimator`):
//! - `mws` (default; disentanglement_lib's): minibatch-weighted sampling, log q(z_i) ≈ logsumexp_j
//!   log q(z_i | x_j) − log(N·M), and likewise per dimension. The log(N·M) constants carry no gradient and are
//!   left out, so the logged `tc` is the estimate up to the constant (d − 1)·log(N·M): compare it between runs
//!   of one dataset and batch size, not with the paper.
//! - `mss` (pythae's default): minibatch-stratified sampling, the same sum with weights that add up to 1 —
//!   1/N on the example's own posterior, (N − M)/(N·M) on one other, 1/M on the remaining M − 1 (M = B − 1).
//!   With tight posteriors MWS's sum is dominated by the example's own term; MSS weighs that term by 1/N, so
//!   log q(z) comes from the other examples.
//!
//! `model.beta` is β (β = 1: the plain VAE). `model.kl_beta` = w sets the paper's α = γ (weights of the
//! index-code MI and the dimension-wise KL) to w: recon + w·KL + (β − w)·TC, β ≥ w; w = 1 is the default.

use super::vae::{Pass, Regularizer, Vae};
use crate::model::{Batch, DataInfo, GenerativeModel, ModelCtx};
use crate::spec::{ModelSpec, TcEstimator};
use candle_core::{Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

pub struct TotalCorrelation {
    pub beta: f64,
    /// α = γ: the weight of the whole KL.
    pub kl_beta: f64,
    pub estimator: TcEstimator,
    /// N, the training set's size (MSS only).
    pub train_size: usize,
}

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    if spec.beta < spec.kl_beta {
        candle_core::bail!("beta_tc_vae: model.beta ({}) is the total-correlation term's whole weight and must be at least model.kl_beta ({})", spec.beta, spec.kl_beta);
    }
    let tc = TotalCorrelation { beta: spec.beta, kl_beta: spec.kl_beta, estimator: spec.tc_estimator, train_size: data.train_size };
    Ok(Box::new(Vae::new(spec, data, varmap, vb, tc, None)?))
}

/// The minibatch estimate of TC(z) per example, `[B]`, from codes `z` sampled from q(z|x) with posterior
/// parameters `mu`, `logvar` (all `[B, d]`), without the log(N·M) constants.
pub fn total_correlation(z: &Tensor, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let log_q = pairwise_log_density(z, mu, logvar)?;
    let log_qz = log_q.sum(D::Minus1)?.log_sum_exp(1)?; // [B]
    let log_qz_product = log_q.log_sum_exp(1)?.sum(D::Minus1)?; // [B]
    log_qz - log_qz_product
}

/// The minibatch-stratified estimate of TC(z) per example, `[B]`, for a batch drawn from `train_size`
/// examples (Chen et al.'s MSS; the weights sum to 1, so no constant is left out).
pub fn total_correlation_stratified(z: &Tensor, mu: &Tensor, logvar: &Tensor, train_size: usize) -> Result<Tensor> {
    let b = z.dim(0)?;
    if b < 2 {
        candle_core::bail!("β-TCVAE's stratified estimate needs a batch of at least 2");
    }
    let (n, m) = (train_size.max(b) as f64, (b - 1) as f64);
    // Row i weighs the posteriors of the batch for z_i: its own, the next one (the stratum's remainder), the rest.
    let mut w = vec![(1.0 / m).ln() as f32; b * b];
    for i in 0..b {
        w[i * b + i] = (1.0 / n).ln() as f32;
        w[i * b + (i + 1) % b] = ((n - m) / (n * m)).ln() as f32;
    }
    let log_w = Tensor::from_vec(w, (b, b), z.device())?.to_dtype(z.dtype())?;
    let log_q = pairwise_log_density(z, mu, logvar)?;
    let log_qz = log_q.sum(D::Minus1)?.add(&log_w)?.log_sum_exp(1)?; // [B]
    let log_qz_product = log_q.broadcast_add(&log_w.unsqueeze(2)?)?.log_sum_exp(1)?.sum(D::Minus1)?; // [B]
    log_qz - log_qz_product
}

/// log q(z_i,d | x_j) for every pair (i, j): `[B, B, d]`, the log 2π terms included.
fn pairwise_log_density(z: &Tensor, mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let (zi, mj, lj) = (z.unsqueeze(1)?, mu.unsqueeze(0)?, logvar.unsqueeze(0)?);
    let sq = zi.broadcast_sub(&mj)?.sqr()?.broadcast_mul(&lj.neg()?.exp()?)?;
    (sq.broadcast_add(&lj)? + (2.0 * std::f64::consts::PI).ln())? * -0.5
}

impl Regularizer for TotalCorrelation {
    fn objective(&self, _vae: &Vae, _batch: &Batch, p: &Pass, kl_weight: f64, _ctx: &mut ModelCtx) -> Result<(Tensor, Vec<(&'static str, Tensor)>)> {
        let tc = match self.estimator {
            TcEstimator::Mws => total_correlation(&p.z, &p.mu, &p.logvar)?,
            TcEstimator::Mss => total_correlation_stratified(&p.z, &p.mu, &p.logvar, self.train_size)?,
        }
        .mean_all()?;
        let kl = (p.kl.mean_all()? * (self.kl_beta * kl_weight))?;
        let objective = ((p.recon.mean_all()? + kl)? + (&tc * (self.beta - self.kl_beta))?)?;
        Ok((objective, vec![("tc", tc)]))
    }
}
