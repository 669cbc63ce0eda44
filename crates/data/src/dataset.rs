//! The in-memory dataset every loader produces.

/// One split (train or test): `n` samples of `dim` values each, stored row-major.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub x: Vec<f32>,
    pub n: usize,
    /// Class label per sample, when the dataset has classes.
    pub labels: Option<Vec<u32>>,
    /// Ground-truth factor indices per sample (`n × factor_sizes.len()`), when known.
    pub factors: Option<Vec<u32>>,
}

impl Split {
    pub fn sample(&self, i: usize, dim: usize) -> &[f32] {
        &self.x[i * dim..(i + 1) * dim]
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// Shape of one sample: `[C, H, W]` for images, `[D]` for vectors.
    pub sample_shape: Vec<usize>,
    pub num_classes: Option<usize>,
    pub factor_names: Vec<String>,
    pub factor_sizes: Vec<usize>,
    /// Mode centres of a known mixture (2D toys), for mode-coverage metrics.
    pub modes: Option<Vec<[f32; 2]>>,
    /// Standard deviation of each mixture component, when `modes` is set.
    pub mode_std: Option<f32>,
    pub train: Split,
    /// Held out from the training split when `data.validation` is set (`n = 0` otherwise).
    pub val: Split,
    pub test: Split,
    /// Renders the observation of any factor combination, where the dataset can (dSprites: the procedural
    /// renderer, or a lookup in the whole real archive). The BetaVAE and FactorVAE scores need it to draw
    /// batches that share one factor.
    pub observe: Option<Observe>,
}

/// Observation of one factor row, written into a `dim`-long buffer.
#[derive(Clone)]
pub struct Observe(pub std::sync::Arc<dyn Fn(&[u32], &mut [f32]) + Send + Sync>);

impl std::fmt::Debug for Observe {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Observe(..)")
    }
}

impl Dataset {
    /// Number of values in one sample.
    pub fn dim(&self) -> usize {
        self.sample_shape.iter().product()
    }

    pub fn is_image(&self) -> bool {
        self.sample_shape.len() == 3
    }
}
