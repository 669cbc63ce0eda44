//! Loss terms shared by the zoo. Each returns one value per example (shape `[B]`), summed over dimensions.

use crate::dense::contiguous_f32;
use crate::fastconv::per_image;
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, D};

/// Binary cross-entropy with logits, summed over all but the batch dimension:
/// `max(l, 0) − l·t + log(1 + exp(−|l|))`, the numerically stable form.
///
/// One custom op each way on the CPU (forward one pass per example, backward `g·(σ(l) − t)` in one pass):
/// as a chain of candle ops it was nine passes over the decoder's output, each with a fresh buffer, plus as
/// many in the backward — perf put candle's element-wise maps, expf/logf and memset at ≈ 25% of an MLP VAE
/// step. A target that needs a gradient (or another device, or broadcast shapes) takes the chain.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if target.track_op() || logits.dims() != target.dims() || !logits.device().is_cpu() || logits.dtype() != candle_core::DType::F32 {
        return bce_with_logits_chain(logits, target);
    }
    let (l, t) = (logits.flatten_from(1)?.contiguous()?, target.flatten_from(1)?.contiguous()?.to_dtype(logits.dtype())?);
    l.apply_op2_arc(&t, std::sync::Arc::new(Box::new(BceWithLogits)))
}

/// [`bce_with_logits`] as candle ops (differentiable in both arguments, any device).
pub fn bce_with_logits_chain(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    let per = ((logits.relu()? - (logits * target)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    per.flatten_from(1)?.sum(D::Minus1)
}

/// `(l [B, D], t [B, D]) → [B]`, the summed BCE of each row.
struct BceWithLogits;
/// `(l [B, D], t [B, D], g [B]) → g_i·(σ(l_ij) − t_ij)`, the logits' gradient.
struct BceWithLogitsGrad;

impl candle_core::CustomOp2 for BceWithLogits {
    fn name(&self) -> &'static str {
        "bce-with-logits"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (l, t) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?);
        let &[b, d] = l1.dims() else { candle_core::bail!("bce-with-logits: rank-2 logits, not {:?}", l1.dims()) };
        if l2.dims() != l1.dims() {
            candle_core::bail!("bce-with-logits: logits {:?}, targets {:?}", l1.dims(), l2.dims());
        }
        let out = per_image(b, 1, |i, o| {
            let (li, ti) = (&l[i * d..(i + 1) * d], &t[i * d..(i + 1) * d]);
            // ln(1 + e) rather than ln_1p(e): e ≤ 1, so nothing is lost that f32 sums keep, and glibc's log1pf is
            // several times slower than its logf (≈ 10% of an MLP VAE step in perf).
            o[0] = li.iter().zip(ti).map(|(&x, &y)| x.max(0.0) - x * y + (1.0 + (-x.abs()).exp()).ln()).sum();
        });
        Ok((CpuStorage::F32(out), Shape::from(b)))
    }
    fn bwd(&self, l: &Tensor, t: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        Ok((Some(l.apply_op3_no_bwd(t, &g, &BceWithLogitsGrad)?), None))
    }
}

impl candle_core::CustomOp3 for BceWithLogitsGrad {
    fn name(&self) -> &'static str {
        "bce-with-logits-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (l, t, g) = (contiguous_f32(s1, l1)?, contiguous_f32(s2, l2)?, contiguous_f32(s3, l3)?);
        let &[b, d] = l1.dims() else { candle_core::bail!("bce-with-logits-grad: rank-2 logits, not {:?}", l1.dims()) };
        if t.len() != l.len() || g.len() != b {
            candle_core::bail!("bce-with-logits-grad: {} logits, {} targets, {} row gradients", l.len(), t.len(), g.len());
        }
        let out = per_image(b * d, d, |i, o| {
            let (li, ti, gi) = (&l[i * d..(i + 1) * d], &t[i * d..(i + 1) * d], g[i]);
            for ((o, &x), &y) in o.iter_mut().zip(li).zip(ti) {
                *o = gi * (1.0 / (1.0 + (-x).exp()) - y);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
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
