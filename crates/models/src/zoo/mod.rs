//! One module per model. Each exposes `build(spec, shape, vb)`; the registry lists them.

pub mod ae;
pub mod vae;

use crate::losses;
use crate::spec::Likelihood;
use candle_core::{Result, Tensor};

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
