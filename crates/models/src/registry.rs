//! The list of models `model.kind` can name. Adding a model adds one line here.

use crate::model::{DataInfo, GenerativeModel};
use crate::spec::ModelSpec;
use candle_core::{Device, Result};
use candle_nn::{VarBuilder, VarMap};

type Builder = fn(&ModelSpec, &DataInfo, &VarMap, VarBuilder) -> Result<Box<dyn GenerativeModel>>;

pub const MODELS: &[(&str, Builder)] = &[
    ("ae", crate::zoo::ae::build),
    ("vae", crate::zoo::vae::build),
    ("beta_vae", crate::zoo::beta_vae::build),
    ("cvae", crate::zoo::cvae::build),
    ("vae_gan", crate::zoo::vae_gan::build),
    ("gan", crate::zoo::gan::build),
    ("beta_tc_vae", crate::zoo::beta_tc_vae::build),
    ("factor_vae", crate::zoo::factor_vae::build),
    ("dip_vae_i", crate::zoo::dip_vae::build_i),
    ("dip_vae_ii", crate::zoo::dip_vae::build_ii),
    ("iwae", crate::zoo::iwae::build),
    ("wae_mmd", crate::zoo::wae_mmd::build),
    ("info_vae", crate::zoo::info_vae::build),
    ("vq_vae", crate::zoo::vq_vae::build),
    ("vq_vae_ema", crate::zoo::vq_vae::build_ema),
    ("wgan_gp", crate::zoo::wgan_gp::build),
    ("cgan", crate::zoo::cgan::build),
];

pub fn kinds() -> Vec<&'static str> {
    MODELS.iter().map(|(k, _)| *k).collect()
}

/// Build the model `spec.kind` for `data`, its weights drawn from `seed` into `varmap`.
pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, seed: u64, device: &Device) -> Result<Box<dyn GenerativeModel>> {
    let Some((_, builder)) = MODELS.iter().find(|(k, _)| *k == spec.kind) else {
        candle_core::bail!("unknown model kind `{}` (known: {})", spec.kind, kinds().join(", "));
    };
    let vb = crate::init::SeededInit::var_builder_with(varmap, seed, device, spec.init);
    builder(spec, data, varmap, vb)
}
