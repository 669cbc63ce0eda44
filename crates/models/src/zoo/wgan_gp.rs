//! WGAN-GP (Gulrajani et al. 2017): the GAN's networks with a Wasserstein critic (no sigmoid) and the gradient
//! penalty λ·(‖∇D(x̂)‖₂ − 1)² on random interpolates of real and generated samples; the generator minimises
//! −D(G(z)). The paper's settings: `model.d_steps: 5`, `model.gp_weight: 10` (default), Adam lr 1e-4,
//! β₁ 0.5 (or 0), β₂ 0.9.
//!
//! The penalty needs the critic's input gradient as a differentiable function of its weights;
//! [`crate::backbone::Encoder::input_gradient`] builds it with forward ops (candle has no double backprop).

use super::gan::{Gan, GanObjective};
use crate::model::{DataInfo, GenerativeModel};
use crate::spec::ModelSpec;
use candle_core::Result;
use candle_nn::{VarBuilder, VarMap};

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    Ok(Box::new(Gan::new(spec, data, varmap, vb, GanObjective::WassersteinGp { gp_weight: spec.gp_weight }, None)?))
}
