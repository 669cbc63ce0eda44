//! Likelihood-side metrics: the importance-weighted NLL bound (Burda et al. 2016), KL per latent dimension
//! and active units. The model supplies log-weights and posterior parameters; these functions only reduce.

/// log((1/k) Σ exp(w_i)), computed stably (log-sum-exp around the maximum).
pub fn log_mean_exp(w: &[f64]) -> f64 {
    let m = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + (w.iter().map(|v| (v - m).exp()).sum::<f64>() / w.len() as f64).ln()
}

/// The IWAE estimate of −log p(x) for one example from its k log importance weights
/// log p(x, z_i) − log q(z_i | x): an upper bound on the NLL in expectation, tight as k → ∞.
pub fn iwae_nll(log_weights: &[f64]) -> f64 {
    -log_mean_exp(log_weights)
}

/// Mean analytic KL(q(z_j|x) ‖ N(0, 1)) of each latent dimension j over examples; `mu` and `logvar` are
/// row-major `[n, d]`.
pub fn kl_per_dim(mu: &[f32], logvar: &[f32], d: usize) -> Vec<f64> {
    let n = mu.len() / d.max(1);
    let mut kl = vec![0f64; d];
    for (m, lv) in mu.chunks(d).zip(logvar.chunks(d)) {
        for j in 0..d {
            let (m, lv) = (m[j] as f64, lv[j] as f64);
            kl[j] += 0.5 * (m * m + lv.exp() - 1.0 - lv);
        }
    }
    kl.iter().map(|v| v / n.max(1) as f64).collect()
}

/// Variance over examples of each dimension of the posterior mean E_q[z|x] (`mu` row-major `[n, d]`),
/// i.e. the activity statistic A_u = Cov_x(E_q[u|x]) of Burda et al.
pub fn posterior_mean_variance(mu: &[f32], d: usize) -> Vec<f64> {
    let n = (mu.len() / d.max(1)) as f64;
    let mut mean = vec![0f64; d];
    for row in mu.chunks(d) {
        for j in 0..d {
            mean[j] += row[j] as f64 / n;
        }
    }
    let mut var = vec![0f64; d];
    for row in mu.chunks(d) {
        for j in 0..d {
            var[j] += (row[j] as f64 - mean[j]).powi(2) / (n - 1.0).max(1.0);
        }
    }
    var
}

/// Active units (Burda et al.): the dimensions whose posterior mean varies with x, A_u > `threshold`
/// (0.01 in the paper). Returns their indices.
pub fn active_units(mu: &[f32], d: usize, threshold: f64) -> Vec<usize> {
    posterior_mean_variance(mu, d).iter().enumerate().filter(|(_, &v)| v > threshold).map(|(j, _)| j).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    fn normal(rng: &mut rand_chacha::ChaCha8Rng) -> f64 {
        StandardNormal.sample(rng)
    }

    /// Linear-Gaussian model x = W z + b + ε, z ~ N(0, I₂), ε ~ N(0, σ² I₃): p(x) = N(b, W Wᵀ + σ² I) in
    /// closed form. The proposal q(z|x) is a deliberately wrong Gaussian, so k = 1 (the ELBO) is loose.
    struct LinearGaussian {
        w: [[f64; 2]; 3],
        b: [f64; 3],
        s2: f64,
    }

    impl LinearGaussian {
        fn log_px(&self, x: &[f64; 3]) -> f64 {
            // Σ = W Wᵀ + σ² I (3×3); log N(x; b, Σ) via a Cholesky factor.
            let mut s = [[0f64; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    s[i][j] = self.w[i][0] * self.w[j][0] + self.w[i][1] * self.w[j][1] + if i == j { self.s2 } else { 0.0 };
                }
            }
            let c = nalgebra::Matrix3::from_fn(|i, j| s[i][j]).cholesky().unwrap();
            let r = nalgebra::Vector3::from_fn(|i, _| x[i] - self.b[i]);
            let y = c.l().solve_lower_triangular(&r).unwrap();
            let logdet: f64 = 2.0 * (0..3).map(|i| c.l()[(i, i)].ln()).sum::<f64>();
            -0.5 * (y.dot(&y) + logdet + 3.0 * (2.0 * std::f64::consts::PI).ln())
        }

        fn log_joint(&self, x: &[f64; 3], z: &[f64; 2]) -> f64 {
            let mut lp = -0.5 * (z[0] * z[0] + z[1] * z[1]) - (2.0 * std::f64::consts::PI).ln();
            for i in 0..3 {
                let m = self.w[i][0] * z[0] + self.w[i][1] * z[1] + self.b[i];
                lp += -0.5 * ((x[i] - m).powi(2) / self.s2 + (2.0 * std::f64::consts::PI * self.s2).ln());
            }
            lp
        }

        /// k log-weights with the proposal q(z|x) = N(0.5·Wᵀ(x − b), 0.8² I).
        fn log_weights(&self, x: &[f64; 3], k: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<f64> {
            let r: Vec<f64> = (0..3).map(|i| x[i] - self.b[i]).collect();
            let m = [0.5 * (0..3).map(|i| self.w[i][0] * r[i]).sum::<f64>(), 0.5 * (0..3).map(|i| self.w[i][1] * r[i]).sum::<f64>()];
            let sd = 0.8;
            (0..k)
                .map(|_| {
                    let e = [normal(rng), normal(rng)];
                    let z = [m[0] + sd * e[0], m[1] + sd * e[1]];
                    let log_q = -0.5 * (e[0] * e[0] + e[1] * e[1]) - 2.0 * (sd as f64).ln() - (2.0 * std::f64::consts::PI).ln();
                    self.log_joint(x, &z) - log_q
                })
                .collect()
        }
    }

    #[test]
    fn iwae_converges_to_the_closed_form_likelihood_from_above() {
        let m = LinearGaussian { w: [[1.0, 0.3], [-0.5, 0.8], [0.2, -1.2]], b: [0.1, -0.2, 0.3], s2: 0.25 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let xs: Vec<[f64; 3]> = (0..20).map(|_| [normal(&mut rng) * 1.3, normal(&mut rng) * 1.1, normal(&mut rng) * 1.4]).collect();
        let true_nll: f64 = xs.iter().map(|x| -m.log_px(x)).sum::<f64>() / xs.len() as f64;
        let mut gaps = vec![];
        for k in [1usize, 10, 100, 5000] {
            // Average over repeats: the bound holds in expectation.
            let reps = 50;
            let est: f64 = (0..reps).map(|_| xs.iter().map(|x| iwae_nll(&m.log_weights(x, k, &mut rng))).sum::<f64>() / xs.len() as f64).sum::<f64>() / reps as f64;
            gaps.push(est - true_nll);
        }
        for g in &gaps {
            assert!(*g > -0.01, "IWAE below the true NLL in expectation: gaps {gaps:?}");
        }
        assert!(gaps.windows(2).all(|w| w[1] < w[0]), "the bound tightens with k: {gaps:?}");
        assert!(gaps[0] > 0.2, "the test's proposal should make the ELBO loose: {gaps:?}");
        assert!(gaps[3].abs() < 0.02, "k = 5000 within 0.02 nats: {gaps:?}");
    }

    #[test]
    fn log_mean_exp_is_stable() {
        assert!((log_mean_exp(&[1000.0, 1000.0]) - 1000.0).abs() < 1e-12);
        assert!((log_mean_exp(&[0.0, (3f64).ln()]) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(log_mean_exp(&[f64::NEG_INFINITY]), f64::NEG_INFINITY);
    }

    #[test]
    fn active_units_are_exactly_the_dimensions_the_encoder_uses() {
        // An "encoder" that ignores dims 1 and 3: their posterior means are constant (up to 1e-4 noise).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (n, d) = (500, 5);
        let mut mu = vec![0f32; n * d];
        for i in 0..n {
            let x = normal(&mut rng) as f32;
            let y = normal(&mut rng) as f32;
            mu[i * d] = x;
            mu[i * d + 1] = 0.3 + 1e-4 * normal(&mut rng) as f32;
            mu[i * d + 2] = 0.5 * y;
            mu[i * d + 3] = -1.0;
            mu[i * d + 4] = x - y;
        }
        assert_eq!(active_units(&mu, d, 0.01), vec![0, 2, 4]);
    }

    #[test]
    fn kl_per_dim_is_zero_at_the_prior() {
        let mu = [0.0f32, 1.0, 0.0, 1.0];
        let lv = [0.0f32, 0.0, 0.0, 0.0];
        let kl = kl_per_dim(&mu, &lv, 2);
        assert!(kl[0].abs() < 1e-12 && (kl[1] - 0.5).abs() < 1e-12);
    }
}
