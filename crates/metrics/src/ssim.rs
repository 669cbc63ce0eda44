//! Structural similarity (Wang et al. 2004) of single-channel images with values in [0, 1]: an 11×11
//! Gaussian window (σ = 1.5), K₁ = 0.01, K₂ = 0.03, computed over the 'valid' region as in the paper's
//! reference implementation, averaged over the map. Written here because the maintained Rust crates
//! (image-compare) work on 8-bit images with box windows, not this definition on float reconstructions.

const WIN: usize = 11;
const SIGMA: f64 = 1.5;

fn window() -> [f64; WIN] {
    let mut w = [0f64; WIN];
    let c = (WIN / 2) as f64;
    for (i, v) in w.iter_mut().enumerate() {
        *v = (-((i as f64 - c).powi(2)) / (2.0 * SIGMA * SIGMA)).exp();
    }
    let s: f64 = w.iter().sum();
    w.map(|v| v / s)
}

/// Separable Gaussian filtering, valid region only: (h − 10) × (w − 10).
fn filter(x: &[f64], h: usize, w: usize, g: &[f64; WIN]) -> Vec<f64> {
    let (oh, ow) = (h + 1 - WIN, w + 1 - WIN);
    let mut rows = vec![0f64; h * ow];
    for r in 0..h {
        for c in 0..ow {
            rows[r * ow + c] = (0..WIN).map(|k| g[k] * x[r * w + c + k]).sum();
        }
    }
    let mut out = vec![0f64; oh * ow];
    for r in 0..oh {
        for c in 0..ow {
            out[r * ow + c] = (0..WIN).map(|k| g[k] * rows[(r + k) * ow + c]).sum();
        }
    }
    out
}

/// Mean SSIM of two `h × w` images (each channel-plane of a multi-channel image can be passed separately).
pub fn ssim(a: &[f32], b: &[f32], h: usize, w: usize) -> f64 {
    assert!(h >= WIN && w >= WIN, "SSIM needs images of at least {WIN}×{WIN}");
    let g = window();
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let a: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let b: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let prod = |x: &[f64], y: &[f64]| -> Vec<f64> { x.iter().zip(y).map(|(p, q)| p * q).collect() };
    let (ma, mb) = (filter(&a, h, w, &g), filter(&b, h, w, &g));
    let (saa, sbb, sab) = (filter(&prod(&a, &a), h, w, &g), filter(&prod(&b, &b), h, w, &g), filter(&prod(&a, &b), h, w, &g));
    let n = ma.len();
    (0..n)
        .map(|i| {
            let (va, vb, cov) = (saa[i] - ma[i] * ma[i], sbb[i] - mb[i] * mb[i], sab[i] - ma[i] * mb[i]);
            ((2.0 * ma[i] * mb[i] + c1) * (2.0 * cov + c2)) / ((ma[i] * ma[i] + mb[i] * mb[i] + c1) * (va + vb + c2))
        })
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..28 * 28).map(|_| r.random::<f32>()).collect()
    }

    #[test]
    fn one_for_identical_images_and_lower_for_distortions() {
        let a = image(1);
        assert!((ssim(&a, &a, 28, 28) - 1.0).abs() < 1e-12);
        let noisy: Vec<f32> = a.iter().zip(image(2)).map(|(x, n)| x * 0.8 + n * 0.2).collect();
        let s = ssim(&a, &noisy, 28, 28);
        assert!(s < 0.99 && s > 0.3, "{s}");
        assert!(ssim(&a, &image(3), 28, 28) < 0.1);
    }

    #[test]
    fn a_constant_offset_lowers_only_the_luminance_term() {
        // Flat images: σ = 0 everywhere, so SSIM = (2μaμb + C1)/(μa² + μb² + C1).
        let a = vec![0.5f32; 16 * 16];
        let b = vec![0.25f32; 16 * 16];
        let want = (2.0 * 0.5 * 0.25 + 1e-4) / (0.25 + 0.0625 + 1e-4);
        assert!((ssim(&a, &b, 16, 16) - want).abs() < 1e-9);
    }
}
