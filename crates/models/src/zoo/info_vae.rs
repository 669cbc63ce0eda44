//! InfoVAE, MMD form (Zhao et al. 2019): recon + (1 − α)·KL(q(z|x) ‖ p(z)) + (α + λ − 1)·MMD(q(z), p(z)),
//! the MMD as in WAE-MMD ([`super::wae_mmd::mmd_imq`]). `model.info_alpha` is α (default 0, the paper's
//! choice), `model.mmd_weight` is λ (default 1000, the paper's value for MMD).

use super::vae::Vae;
use super::wae_mmd::MmdPenalty;
use crate::model::{DataInfo, GenerativeModel};
use crate::spec::ModelSpec;
use candle_core::Result;
use candle_nn::{VarBuilder, VarMap};

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let (alpha, lambda) = (spec.info_alpha, spec.mmd_weight.unwrap_or(1000.0));
    let pen = MmdPenalty { kl_weight: 1.0 - alpha, mmd_weight: alpha + lambda - 1.0 };
    Ok(Box::new(Vae::new(spec, data, varmap, vb, pen, None)?))
}
