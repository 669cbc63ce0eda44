//! Evaluation metrics for vaelab.
//!
//! Every metric is a plain function over numbers (codes, log-weights, features, pixels), so each is tested
//! against a known answer; the runner feeds them from the model and the data.
//! - [`likelihood`]: IWAE NLL bound, KL per latent dimension, active units.
//! - [`frechet`]: Fréchet distance and precision/recall, in the feature space of [`FeatureNet`] (FID-LeNet).
//! - [`disentangle`]: BetaVAE and FactorVAE scores, MIG, DCI (disentanglement_lib's protocols).
//! - [`ssim`]: structural similarity of reconstructions.
//! - [`mode_coverage`]: VEEGAN's modes covered and high-quality share on 2D toys.
//!
//! The trainer averages per-example model metrics with [`MeanOf`].

pub mod disentangle;
pub mod feature_net;
pub mod frechet;
pub mod likelihood;
pub mod ssim;
pub use feature_net::FeatureNet;

/// Running means of named per-example values over a whole split.
#[derive(Debug, Default, Clone)]
pub struct MeanOf {
    sums: Vec<(String, f64, usize)>,
}

impl MeanOf {
    pub fn add(&mut self, name: &str, values: &[f32]) {
        let s: f64 = values.iter().map(|&v| v as f64).sum();
        match self.sums.iter_mut().find(|(n, _, _)| n == name) {
            Some(e) => {
                e.1 += s;
                e.2 += values.len();
            }
            None => self.sums.push((name.to_string(), s, values.len())),
        }
    }

    /// `(name, mean)` in first-seen order.
    pub fn means(&self) -> Vec<(String, f64)> {
        self.sums.iter().map(|(n, s, c)| (n.clone(), s / (*c).max(1) as f64)).collect()
    }
}

/// Mode coverage of 2D samples (VEEGAN, Srivastava et al. 2017): a sample is high quality when it lies within
/// `3·std` of its nearest mode; a mode is covered when at least `min_count` high-quality samples are nearest to it.
/// Returns (modes covered, fraction of high-quality samples).
pub fn mode_coverage(samples: &[[f32; 2]], modes: &[[f32; 2]], std: f32, min_count: usize) -> (usize, f64) {
    let mut counts = vec![0usize; modes.len()];
    let mut good = 0usize;
    for s in samples {
        let (best, d2) = modes
            .iter()
            .enumerate()
            .map(|(i, m)| (i, (s[0] - m[0]).powi(2) + (s[1] - m[1]).powi(2)))
            .fold((0, f32::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        if d2.sqrt() <= 3.0 * std {
            good += 1;
            counts[best] += 1;
        }
    }
    let covered = counts.iter().filter(|&&c| c >= min_count.max(1)).count();
    (covered, good as f64 / samples.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_averages_across_batches() {
        let mut m = MeanOf::default();
        m.add("a", &[1.0, 2.0]);
        m.add("b", &[10.0]);
        m.add("a", &[6.0]);
        assert_eq!(m.means(), vec![("a".to_string(), 3.0), ("b".to_string(), 10.0)]);
    }

    #[test]
    fn mode_coverage_counts_modes_and_quality() {
        let modes = [[0.0, 0.0], [2.0, 0.0]];
        let s = [[0.01, 0.0], [0.0, 0.02], [5.0, 5.0], [1.99, 0.0]];
        let (covered, hq) = mode_coverage(&s, &modes, 0.02, 1);
        assert_eq!(covered, 2);
        assert!((hq - 0.75).abs() < 1e-9);
        let (covered, _) = mode_coverage(&s[..2], &modes, 0.02, 1);
        assert_eq!(covered, 1);
    }
}
