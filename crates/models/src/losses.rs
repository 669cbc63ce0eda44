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
    if target.track_op() || logits.dims() != target.dims() || !crate::kernels::custom(logits) || logits.dtype() != candle_core::DType::F32 {
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
        let out = per_image(b, 1, |i, o| o[0] = bce_row(&l[i * d..(i + 1) * d], &t[i * d..(i + 1) * d]));
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
            bce_grad_row(&l[i * d..(i + 1) * d], &t[i * d..(i + 1) * d], g[i], o);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

// The two row loops below are compiled three times: for AVX-512 (16 lanes) and AVX2 (8 lanes), used where the
// CPU has them, and for the build's baseline x86-64 (SSE2, 4 lanes). Same operations in the same order each
// way — no FMA contraction — so the same bits on any machine.

fn bce_row(l: &[f32], t: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn wide(l: &[f32], t: &[f32]) -> f32 {
            bce_row_body(l, t)
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn wider(l: &[f32], t: &[f32]) -> f32 {
            bce_row_body(l, t)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { wider(l, t) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { wide(l, t) };
        }
    }
    bce_row_body(l, t)
}

fn bce_grad_row(l: &[f32], t: &[f32], g: f32, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn wide(l: &[f32], t: &[f32], g: f32, o: &mut [f32]) {
            bce_grad_row_body(l, t, g, o)
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn wider(l: &[f32], t: &[f32], g: f32, o: &mut [f32]) {
            bce_grad_row_body(l, t, g, o)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { wider(l, t, g, o) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { wide(l, t, g, o) };
        }
    }
    bce_grad_row_body(l, t, g, o)
}

/// Σ_j BCE(l_j, t_j) over one row, in sixteen running sums so the loop vectorizes (one sum in order would keep
/// it scalar), added in order at the end. Sixteen, not eight: two vectors a step whose polynomial chains run
/// side by side — one vector's chain is latency-bound (a profile had the loop waiting on its adds).
#[inline(always)]
fn bce_row_body(l: &[f32], t: &[f32]) -> f32 {
    let term = |x: f32, y: f32| x.max(0.0) - x * y + ln_1p_unit(exp(-x.abs()));
    let mut lanes = [0f32; 16];
    for (lc, tc) in l.chunks_exact(16).zip(t.chunks_exact(16)) {
        for ((s, &x), &y) in lanes.iter_mut().zip(lc).zip(tc) {
            *s += term(x, y);
        }
    }
    let rest = l.len() / 16 * 16;
    let tail: f32 = l[rest..].iter().zip(&t[rest..]).map(|(&x, &y)| term(x, y)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `o_j = g·(σ(l_j) − t_j)` over one row.
#[inline(always)]
fn bce_grad_row_body(l: &[f32], t: &[f32], g: f32, o: &mut [f32]) {
    for ((o, &x), &y) in o.iter_mut().zip(l).zip(t) {
        *o = g * (1.0 / (1.0 + exp(-x)) - y);
    }
}

/// e^x in plain arithmetic the compiler vectorizes. glibc's `expf` and `logf` are a call per element that
/// stays scalar: in the BCE op's two passes over the decoder output they were ≈ 9% of an MLP VAE step at batch
/// 1024 (perf). x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 in two parts, so r is exact), e^r by its Taylor series
/// to r⁷ (truncation < 1e-8 relative), 2ⁿ written as float bits. Inputs are clamped to [−87, 88], where 2ⁿ
/// stays a normal float; the BCE's arguments beyond that give the same losses and gradients to f32 precision.
/// Within 3e-7 relative (≈ 2 ulp) of the exact value, as is [`ln_1p_unit`] (tested in `losses::tests`).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to the nearest integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * 0.693_359_4) + n * 2.121_944_4e-4; // ln 2 = 0.693359375 − 2.12194440e-4
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n as an integer from `shifted`'s low mantissa bits (1.5·2²³ + n for |n| < 2²²): `n as i32` would be a
    // saturating conversion, which the compiler keeps scalar (a convert and NaN / range fix-ups per lane — most
    // of the BCE loop's time in a profile); integer lanes vectorize. Same value, so the same bits.
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// ln(1 + e) for 0 ≤ e ≤ 1, vectorizable (see [`exp`]): 2·atanh(s) with s = e / (2 + e) ≤ 1/3, as the odd
/// series 2s·(1 + s²/3 + … + s¹⁴/15) (truncation < 2e-9 relative). Unlike `(1 + e).ln()` it keeps a tiny e's
/// digits.
#[inline(always)]
pub(crate) fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let z = s * s;
    let series = 1.0 + z * (1.0 / 3.0 + z * (1.0 / 5.0 + z * (1.0 / 7.0 + z * (1.0 / 9.0 + z * (1.0 / 11.0 + z * (1.0 / 13.0 + z * (1.0 / 15.0)))))));
    2.0 * s * series
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

#[cfg(test)]
mod tests {
    #[test]
    fn vectorizable_exp_and_log_match_std() {
        let mut worst = (0f64, 0f64);
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            let want = (x as f64).exp();
            worst.0 = worst.0.max(((super::exp(x) as f64 - want) / want).abs());
            let e = i as f32 / 2_000_000.0;
            let want = (e as f64).ln_1p();
            if e > 0.0 {
                worst.1 = worst.1.max(((super::ln_1p_unit(e) as f64 - want) / want).abs());
            }
        }
        assert!(worst.0 < 3e-7, "exp: worst relative error {}", worst.0);
        assert!(worst.1 < 3e-7, "ln(1 + e): worst relative error {}", worst.1);
        assert_eq!(super::ln_1p_unit(0.0), 0.0);
        assert_eq!(super::ln_1p_unit(1e-30), 1e-30);
        assert!(super::exp(-200.0) < 1e-37 && super::exp(200.0) > 1e38);
    }

    /// The widest build of the row loops the CPU has (AVX-512 or AVX2) gives the baseline build's bits.
    #[test]
    fn wide_and_baseline_rows_agree_bit_for_bit() {
        let l: Vec<f32> = (0..787).map(|i| ((i * 7919) % 1000) as f32 / 12.5 - 40.0).collect();
        let t: Vec<f32> = (0..787).map(|i| ((i * 31) % 3) as f32 / 2.0).collect();
        assert_eq!(super::bce_row(&l, &t).to_bits(), super::bce_row_body(&l, &t).to_bits());
        let (mut a, mut b) = (vec![0f32; 787], vec![0f32; 787]);
        super::bce_grad_row(&l, &t, 0.37, &mut a);
        super::bce_grad_row_body(&l, &t, 0.37, &mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
