//! Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017), and precision/recall
//! of generated samples (Kynkäänniemi et al. 2019). vaelab computes both in the feature space of its own
//! LeNet-style classifier ([`crate::FeatureNet`]), so they are reported as FID-LeNet / precision-LeNet and
//! are not comparable with Inception-based FID figures.

use nalgebra::{DMatrix, DVector};

/// Mean and (unbiased) covariance of `n` feature rows of width `d` (row-major).
pub fn moments(features: &[f32], d: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = features.len() / d;
    let x = DMatrix::from_row_iterator(n, d, features.iter().map(|&v| v as f64));
    let mean = DVector::from_iterator(d, x.column_iter().map(|c| c.mean()));
    let mut centred = x;
    for (j, mut c) in centred.column_iter_mut().enumerate() {
        c.add_scalar_mut(-mean[j]);
    }
    let cov = centred.transpose() * &centred / (n as f64 - 1.0).max(1.0);
    (mean, cov)
}

/// Symmetric positive semi-definite square root (eigenvalues clamped at 0 against round-off).
fn sqrt_psd(a: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (a + a.transpose()) * 0.5;
    let e = sym.symmetric_eigen();
    let s = DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt()));
    &e.eigenvectors * s * e.eigenvectors.transpose()
}

/// d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½). The trace of (Σ₁Σ₂)^½ is taken as that of the symmetric
/// (Σ₁^½ Σ₂ Σ₁^½)^½, which has the same eigenvalues, so only symmetric eigendecompositions are needed.
pub fn frechet_distance(mu1: &DVector<f64>, cov1: &DMatrix<f64>, mu2: &DVector<f64>, cov2: &DMatrix<f64>) -> f64 {
    let s1 = sqrt_psd(cov1);
    let inner = &s1 * cov2 * &s1;
    let tr_sqrt: f64 = ((&inner + inner.transpose()) * 0.5).symmetric_eigenvalues().iter().map(|v| v.max(0.0).sqrt()).sum();
    ((mu1 - mu2).norm_squared() + cov1.trace() + cov2.trace() - 2.0 * tr_sqrt).max(0.0)
}

/// Fréchet distance between two feature sets (rows of width `d`).
pub fn frechet_distance_of(a: &[f32], b: &[f32], d: usize) -> f64 {
    let (m1, c1) = moments(a, d);
    let (m2, c2) = moments(b, d);
    frechet_distance(&m1, &c1, &m2, &c2)
}

fn sq_dists(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    // ‖a−b‖² = ‖a‖² + ‖b‖² − 2 a·b, with one matrix product.
    let an: Vec<f64> = a.row_iter().map(|r| r.norm_squared()).collect();
    let bn: Vec<f64> = b.row_iter().map(|r| r.norm_squared()).collect();
    let mut d = a * b.transpose() * -2.0;
    for i in 0..d.nrows() {
        for j in 0..d.ncols() {
            d[(i, j)] = (d[(i, j)] + an[i] + bn[j]).max(0.0);
        }
    }
    d
}

/// Squared distance of each row to its k-th nearest other row (the radius of its k-NN ball).
fn knn_radii(x: &DMatrix<f64>, k: usize) -> Vec<f64> {
    let d = sq_dists(x, x);
    d.row_iter()
        .map(|r| {
            let mut v: Vec<f64> = r.iter().cloned().collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[k.min(v.len() - 1)] // v[0] is the row itself
        })
        .collect()
}

/// The share of `query` rows inside at least one k-NN ball of `support`.
fn coverage(support: &DMatrix<f64>, radii: &[f64], query: &DMatrix<f64>) -> f64 {
    let d = sq_dists(query, support);
    let inside = d.row_iter().filter(|r| r.iter().zip(radii).any(|(v, r)| v <= r)).count();
    inside as f64 / query.nrows().max(1) as f64
}

/// Improved precision and recall (Kynkäänniemi et al.): precision is the share of generated samples inside
/// the k-NN manifold of the real ones; recall the share of real samples inside the generated manifold.
pub fn precision_recall(real: &[f32], fake: &[f32], d: usize, k: usize) -> (f64, f64) {
    let r = DMatrix::from_row_iterator(real.len() / d, d, real.iter().map(|&v| v as f64));
    let f = DMatrix::from_row_iterator(fake.len() / d, d, fake.iter().map(|&v| v as f64));
    let precision = coverage(&r, &knn_radii(&r, k), &f);
    let recall = coverage(&f, &knn_radii(&f, k), &r);
    (precision, recall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn matches_the_closed_form_for_diagonal_gaussians() {
        // Commuting (diagonal) covariances: d² = ‖Δμ‖² + Σ (σ₁ − σ₂)².
        let mu1 = DVector::from_vec(vec![0.0, 1.0, -2.0]);
        let mu2 = DVector::from_vec(vec![1.0, 1.0, 0.5]);
        let s1 = [1.0, 2.0, 0.5];
        let s2 = [3.0, 0.5, 0.5];
        let c1 = DMatrix::from_diagonal(&DVector::from_iterator(3, s1.iter().map(|s| s * s)));
        let c2 = DMatrix::from_diagonal(&DVector::from_iterator(3, s2.iter().map(|s| s * s)));
        let want = 1.0 + 0.0 + 6.25 + (1.0 - 3.0f64).powi(2) + (2.0 - 0.5f64).powi(2);
        assert!((frechet_distance(&mu1, &c1, &mu2, &c2) - want).abs() < 1e-9);
    }

    #[test]
    fn matches_the_closed_form_for_full_covariances() {
        // Σ₂ = R Σ₁ Rᵀ for a rotation R of a non-isotropic Σ₁ (the covariances do not commute); for 2×2 SPD
        // matrices Tr((Σ₁Σ₂)^½) = sqrt(Tr(Σ₁Σ₂) + 2 sqrt(det(Σ₁Σ₂))).
        let c1 = DMatrix::from_row_slice(2, 2, &[4.0, 1.0, 1.0, 1.0]);
        let (s, c) = (0.7f64.sin(), 0.7f64.cos());
        let r = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
        let c2 = &r * &c1 * r.transpose();
        let p = &c1 * &c2;
        let tr_sqrt = (p.trace() + 2.0 * p.determinant().sqrt()).sqrt();
        let mu = DVector::from_vec(vec![0.5, -0.5]);
        let z = DVector::zeros(2);
        let want = 0.5 + c1.trace() + c2.trace() - 2.0 * tr_sqrt;
        assert!((frechet_distance(&mu, &c1, &z, &c2) - want).abs() < 1e-9);
    }

    #[test]
    fn zero_for_identical_sets_and_positive_for_shifted() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let a: Vec<f32> = (0..500 * 8).map(|_| StandardNormal.sample(&mut rng)).collect();
        assert!(frechet_distance_of(&a, &a, 8) < 1e-6);
        let b: Vec<f32> = a.iter().map(|v| v + 0.5).collect();
        assert!((frechet_distance_of(&a, &b, 8) - 8.0 * 0.25).abs() < 1e-6);
    }

    #[test]
    fn precision_and_recall_see_mode_dropping_and_junk() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut blob = |cx: f32, n: usize| -> Vec<f32> {
            let mut v = Vec::with_capacity(2 * n);
            for _ in 0..n {
                let (a, b): (f32, f32) = (StandardNormal.sample(&mut rng), StandardNormal.sample(&mut rng));
                v.extend([cx + 0.1 * a, 0.1 * b]);
            }
            v
        };
        let real: Vec<f32> = [blob(0.0, 300), blob(5.0, 300)].concat();
        let same: Vec<f32> = [blob(0.0, 300), blob(5.0, 300)].concat();
        let (p, r) = precision_recall(&real, &same, 2, 3);
        assert!(p > 0.9 && r > 0.9, "{p} {r}");
        // One mode dropped: precise but half the real data uncovered.
        let (p, r) = precision_recall(&real, &blob(0.0, 600), 2, 3);
        assert!(p > 0.9 && (r - 0.5).abs() < 0.1, "{p} {r}");
        // Junk far away: neither.
        let (p, r) = precision_recall(&real, &blob(50.0, 600), 2, 3);
        assert!(p < 0.01 && r < 0.01, "{p} {r}");
    }
}
