//! Conditional GAN (Mirza & Osindero 2014): generator and discriminator both see the one-hot label — the
//! generator as extra inputs beside z, the discriminator by concatenation (MLP: beside the flattened sample;
//! conv: as constant image planes), or with `model.projection: true` through a projection discriminator
//! (Miyato & Koyama 2018: the inner product of a label embedding with D's last features). Non-saturating loss; `sample` cycles through the classes, so the image
//! logs show one row per class and class accuracy of samples applies.

use super::gan::{Gan, GanObjective};
use crate::model::{DataInfo, GenerativeModel};
use crate::spec::ModelSpec;
use candle_core::Result;
use candle_nn::{VarBuilder, VarMap};

pub fn build(spec: &ModelSpec, data: &DataInfo, varmap: &VarMap, vb: VarBuilder) -> Result<Box<dyn GenerativeModel>> {
    let Some(k) = data.num_classes else {
        candle_core::bail!("model `cgan` needs a dataset with class labels; this one has none");
    };
    Ok(Box::new(Gan::new(spec, data, varmap, vb, GanObjective::NonSaturating, Some(k))?))
}
