//! Loss terms shared by the zoo. Each returns one value per example (shape `[B]`), summed over dimensions.

use candle_core::{Result, Tensor, D};

/// Binary cross-entropy with logits, summed over all but the batch dimension:
/// `max(l, 0) − l·t + log(1 + exp(−|l|))`, the numerically stable form.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let per = ((logits.relu()? - (logits * target)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    per.flatten_from(1)?.sum(D::Minus1)
}

/// Gaussian negative log-likelihood with unit variance: `½‖x − μ‖² + ½·D·log 2π`.
pub fn gaussian_nll(mean: &Tensor, target: &Tensor) -> Result<Tensor> {
    let d = mean.flatten_from(1)?.dim(1)? as f64;
    let sq = (mean - target)?.sqr()?.flatten_from(1)?.sum(D::Minus1)?;
    (sq * 0.5)? + 0.5 * d * (2.0 * std::f64::consts::PI).ln()
}

/// KL(N(μ, σ²) ‖ N(0, I)) per example, analytic: `−½ Σ (1 + log σ² − μ² − σ²)`.
pub fn kl_standard_normal(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let inner = ((logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?;
    inner?.sum(D::Minus1)? * -0.5
}

/// `log(1 + exp(x))` elementwise, stable for large |x|. GAN losses are softplus of discriminator logits:
/// −log σ(l) = softplus(−l), −log(1 − σ(l)) = softplus(l).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}
