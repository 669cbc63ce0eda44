//! One module per model. Each exposes `build(spec, data, varmap, vb)`; the registry lists them.

pub mod ae;
pub mod beta_tc_vae;
pub mod beta_vae;
pub mod cgan;
pub mod cvae;
pub mod dip_vae;
pub mod factor_vae;
pub mod gan;
pub mod info_vae;
pub mod iwae;
pub mod vae;
pub mod vae_gan;
pub mod vq_vae;
pub mod wae_mmd;
pub mod wgan_gp;

use crate::losses;
use crate::model::Batch;
use crate::spec::Likelihood;
use candle_core::{Result, Tensor, Var};
use candle_nn::VarMap;

/// Reconstruction negative log-likelihood per example under the decoder's likelihood.
pub(crate) fn recon_nll(likelihood: Likelihood, out: &Tensor, x: &Tensor) -> Result<Tensor> {
    match likelihood {
        Likelihood::Bernoulli => losses::bce_with_logits(out, x),
        Likelihood::Gaussian => losses::gaussian_nll(out, x),
    }
}

/// The decoder output in data space: probabilities for Bernoulli, means for Gaussian.
pub(crate) fn to_data_space(likelihood: Likelihood, out: &Tensor) -> Result<Tensor> {
    match likelihood {
        Likelihood::Bernoulli => candle_nn::ops::sigmoid(out),
        Likelihood::Gaussian => Ok(out.clone()),
    }
}

/// The variables whose names start with `prefix` (one network of a multi-network model), in name order.
pub(crate) fn vars_under(varmap: &VarMap, prefix: &str) -> Vec<Var> {
    let data = varmap.data().lock().expect("the var map lock is never poisoned");
    let mut named: Vec<(&String, &Var)> = data.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// The batch's one-hot labels for a conditional model with `classes` (`None` for an unconditional one).
pub(crate) fn batch_labels(classes: Option<usize>, batch: &Batch) -> Result<Option<&Tensor>> {
    match (classes, &batch.labels) {
        (None, _) => Ok(None),
        (Some(_), Some(l)) => Ok(Some(l)),
        (Some(_), None) => candle_core::bail!("a conditional model needs labelled data"),
    }
}

/// One-hot labels for `n` samples of a conditional model: the given ones, or classes 0, 1, …, K−1 in turn
/// (so image logs show one row per class).
pub(crate) fn sample_labels(classes: Option<usize>, n: usize, labels: Option<&Tensor>) -> Result<Option<Tensor>> {
    match (classes, labels) {
        (None, _) => Ok(None),
        (Some(_), Some(l)) => Ok(Some(l.clone())),
        (Some(k), None) => {
            let mut v = vec![0f32; n * k];
            for i in 0..n {
                v[i * k + i % k] = 1.0;
            }
            Tensor::from_vec(v, (n, k), &candle_core::Device::Cpu).map(Some)
        }
    }
}
