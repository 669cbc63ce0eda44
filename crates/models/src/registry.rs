//! The list of models `model.kind` can name. Adding a model adds one line here.

use crate::model::GenerativeModel;
use crate::spec::ModelSpec;
use candle_core::{Device, Result};
use candle_nn::{VarBuilder, VarMap};

type Builder = fn(&ModelSpec, &[usize], &VarMap, VarBuilder) -> Result<Box<dyn GenerativeModel>>;

pub const MODELS: &[(&str, Builder)] = &[
    ("ae", crate::zoo::ae::build),
    ("vae", crate::zoo::vae::build),
];

pub fn kinds() -> Vec<&'static str> {
    MODELS.iter().map(|(k, _)| *k).collect()
}

/// Build the model `spec.kind` for samples of `shape`, its weights drawn from `seed` into `varmap`.
pub fn build(spec: &ModelSpec, shape: &[usize], varmap: &VarMap, seed: u64, device: &Device) -> Result<Box<dyn GenerativeModel>> {
    let Some((_, builder)) = MODELS.iter().find(|(k, _)| *k == spec.kind) else {
        candle_core::bail!("unknown model kind `{}` (known: {})", spec.kind, kinds().join(", "));
    };
    let vb = crate::init::SeededInit::var_builder(varmap, seed, device);
    builder(spec, shape, varmap, vb)
}
