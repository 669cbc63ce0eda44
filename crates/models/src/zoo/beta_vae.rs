//! β-VAE in both published forms:
//! - Higgins et al. 2017: recon + β·KL (`model.beta`, β > 1 pressures towards disentangled codes);
//! - Burgess et al. 2018: recon + γ·|KL − C| with the capacity C annealed from 0 to C_max (`model.capacity`).
//!
//! Set `capacity` for the second form; otherwise the first is used. `kl_warmup` applies to either.

use super::vae::{KlPenalty, Vae};
use crate::model::{DataInfo, GenerativeModel};
use crate::spec::ModelSpec;
use candle_core::Result;
use candle_nn::{VarBuilder, VarMap};

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let penalty = match &spec.capacity {
        Some(c) => KlPenalty::Capacity(c.clone()),
        None => KlPenalty::Beta(spec.beta),
    };
    Ok(Box::new(Vae::new(spec, data, varmap, vb, penalty, None)?))
}
