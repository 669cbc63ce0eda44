//! Conditional VAE (Sohn et al. 2015): encoder q(z|x, y) and decoder p(x|z, y) both see the one-hot label y;
//! the prior stays N(0, I). Sampling with a label gives that class; the image logs show one row per class.
//! Needs a labelled dataset (MNIST, Fashion-MNIST, CIFAR-10, dSprites shapes).

use super::vae::{KlPenalty, Vae};
use crate::model::{DataInfo, GenerativeModel};
use crate::spec::ModelSpec;
use candle_core::Result;
use candle_nn::{VarBuilder, VarMap};

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let Some(k) = data.num_classes else {
        candle_core::bail!("model `cvae` needs a dataset with class labels; this one has none");
    };
    Ok(Box::new(Vae::new(spec, data, varmap, vb, KlPenalty::Beta(spec.beta), Some(k))?))
}
