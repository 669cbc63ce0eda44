//! The `data:` section of an experiment spec and the loader it selects.

use crate::{dsprites, idx, toy::Toy, Binarize, Dataset, Split};
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// dSprites: procedural shapes generated in-process, or the real archive when `dir` is set
    /// (`dir/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`).
    Dsprites,
    /// CIFAR-10 binary batches from `dir` (default `${VAELAB_DATA:-data}/cifar-10-batches-bin`).
    Cifar10,
    /// MNIST IDX files from `dir` (default `${VAELAB_DATA:-data}/mnist`).
    Mnist,
    /// Fashion-MNIST IDX files from `dir` (default `${VAELAB_DATA:-data}/fashion-mnist`).
    FashionMnist,
    /// Ring of 8 Gaussians (2D).
    Ring8,
    /// 5×5 grid of Gaussians (2D).
    Grid25,
    /// Swiss roll (2D).
    SwissRoll,
    /// Two moons (2D).
    TwoMoons,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub kind: DataKind,
    /// Directory of dataset files; `${VAR}` and `${VAR:-default}` are expanded from the environment.
    #[serde(default)]
    pub dir: Option<String>,
    /// Side of generated images (dSprites: 64 or 32).
    #[serde(default = "default_image_size")]
    pub image_size: usize,
    /// Training samples: generated count for procedural data, a seeded subset for files (all if unset).
    #[serde(default)]
    pub n_train: Option<usize>,
    /// Test samples, likewise.
    #[serde(default)]
    pub n_test: Option<usize>,
    /// Training samples held out (seeded) as a validation split; 0 = none. Early stopping reads it.
    #[serde(default)]
    pub validation: usize,
    /// Where MNIST / Fashion-MNIST come from: `files` (IDX files in `dir`) or `hub` (downloaded by
    /// candle-datasets from the Hugging Face hub; needs the `hub` build feature and internet).
    #[serde(default)]
    pub source: Source,
    #[serde(default)]
    pub binarize: Binarize,
    /// Seed of generation, subsetting and the train/test split (shared by all trials of a sweep).
    #[serde(default)]
    pub split_seed: u64,
    /// 2D toy data only: points, mode centres and the mode std are divided by this (Gulrajani et al. divide the
    /// 25-Gaussian grid by 2.828 for WGAN-GP). Mode coverage is judged in the same units, so scores compare.
    #[serde(default = "default_scale")]
    pub scale: f32,
}

fn default_scale() -> f32 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Files,
    Hub,
}

fn default_image_size() -> usize {
    64
}

impl DataSpec {
    /// The directory this spec reads, with environment variables expanded.
    pub fn resolved_dir(&self) -> Option<String> {
        let default = match self.kind {
            DataKind::Mnist => Some("${VAELAB_DATA:-data}/mnist"),
            DataKind::FashionMnist => Some("${VAELAB_DATA:-data}/fashion-mnist"),
            DataKind::Cifar10 => Some("${VAELAB_DATA:-data}/cifar-10-batches-bin"),
            _ => None,
        };
        self.dir.as_deref().or(default).map(expand_env)
    }

    pub fn validate(&self) -> Result<()> {
        if self.kind == DataKind::Dsprites && self.dir.is_some() && self.image_size != 64 {
            bail!("data.image_size: the real dSprites archive is 64×64, not {}", self.image_size);
        }
        if self.kind == DataKind::Dsprites && ![32, 64].contains(&self.image_size) {
            bail!("data.image_size: dSprites renders at 32 or 64, not {}", self.image_size);
        }
        if self.source == Source::Hub && !matches!(self.kind, DataKind::Mnist | DataKind::FashionMnist) {
            bail!("data.source: `hub` serves mnist and fashion_mnist only");
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            bail!("data.scale: must be a positive number, not {}", self.scale);
        }
        for (k, v) in [("n_train", self.n_train), ("n_test", self.n_test)] {
            if v == Some(0) {
                bail!("data.{k}: must be at least 1");
            }
        }
        Ok(())
    }
}

/// Expand `${VAR}` and `${VAR:-default}` from the environment (shell style, the subset specs need).
pub fn expand_env(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => out.push_str(&v),
            _ => out.push_str(default.unwrap_or("")),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Load the dataset a spec names. `seed` fixes generation, subsetting and the split.
pub fn load(spec: &DataSpec, seed: u64) -> Result<Dataset> {
    let mut data = load_splits(spec, seed)?;
    if spec.validation > 0 {
        // Hold out a seeded subset of the training split; the rest stays in training order.
        let n = data.train.n;
        if spec.validation >= n {
            bail!("data.validation: {} held out of {n} training samples leaves none to train on", spec.validation);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a11_da7e);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let (val, rest) = order.split_at(spec.validation);
        let mut rest = rest.to_vec();
        rest.sort_unstable();
        let dim = data.dim();
        data.val = subset(&data.train, dim, val);
        data.train = subset(&data.train, dim, &rest);
    }
    Ok(data)
}

fn load_splits(spec: &DataSpec, seed: u64) -> Result<Dataset> {
    spec.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_da7a);
    match spec.kind {
        DataKind::Dsprites if spec.dir.is_some() => real_dsprites(spec, &mut rng),
        DataKind::Dsprites => Ok(procedural_dsprites(spec, &mut rng)),
        DataKind::Cifar10 => {
            let dir = PathBuf::from(spec.resolved_dir().unwrap_or_default());
            let ((trx, trl), (tex, tel)) = crate::cifar::load_dir(&dir).context("loading CIFAR-10")?;
            let dim = 3 * 32 * 32;
            let mk = |x: Vec<f32>, l: Vec<u32>, limit: Option<usize>, rng: &mut ChaCha8Rng| {
                let n = l.len();
                let mut s = Split { x, n, labels: Some(l), factors: None };
                if let Some(k) = limit.filter(|&k| k < n) {
                    let mut order: Vec<usize> = (0..n).collect();
                    order.shuffle(rng);
                    order.truncate(k);
                    s = subset(&s, dim, &order);
                }
                s
            };
            Ok(Dataset {
                name: "cifar10".into(),
                sample_shape: vec![3, 32, 32],
                num_classes: Some(10),
                factor_names: vec![],
                factor_sizes: vec![],
                modes: None,
                mode_std: None,
                train: mk(trx, trl, spec.n_train, &mut rng),
                val: Split::default(),
                test: mk(tex, tel, spec.n_test, &mut rng),
                observe: None,
            })
        }
        DataKind::Ring8 | DataKind::Grid25 | DataKind::SwissRoll | DataKind::TwoMoons => {
            let toy = match spec.kind {
                DataKind::Ring8 => Toy::Ring8,
                DataKind::Grid25 => Toy::Grid25,
                DataKind::SwissRoll => Toy::SwissRoll,
                _ => Toy::TwoMoons,
            };
            let (n_train, n_test) = (spec.n_train.unwrap_or(20_000), spec.n_test.unwrap_or(2_000));
            let s = spec.scale;
            let scaled = |v: Vec<f32>| v.into_iter().map(|x| x / s).collect::<Vec<f32>>();
            let split = |n, rng: &mut ChaCha8Rng| Split { x: scaled(toy.sample(n, rng)), n, labels: None, factors: None };
            Ok(Dataset {
                name: format!("{:?}", spec.kind).to_lowercase(),
                sample_shape: vec![2],
                num_classes: None,
                factor_names: vec![],
                factor_sizes: vec![],
                modes: Some(toy.modes().into_iter().map(|[x, y]| [x / s, y / s]).collect::<Vec<_>>()).filter(|m| !m.is_empty()),
                mode_std: Some(toy.std() / s),
                train: split(n_train, &mut rng),
                val: Split::default(),
                test: split(n_test, &mut rng),
                observe: None,
            })
        }
        DataKind::Mnist | DataKind::FashionMnist => {
            let dir = PathBuf::from(spec.resolved_dir().unwrap_or_default());
            let name = if spec.kind == DataKind::Mnist { "mnist" } else { "fashion-mnist" };
            let (train, test) = match spec.source {
                Source::Files => (
                    idx::load_split(&dir, "train").with_context(|| format!("loading {name} training split"))?,
                    idx::load_split(&dir, "t10k").with_context(|| format!("loading {name} test split"))?,
                ),
                Source::Hub => crate::hub::load(spec.kind == DataKind::Mnist)?,
            };
            if (train.rows, train.cols) != (test.rows, test.cols) {
                bail!("{}: train images are {}×{} but test images are {}×{}", dir.display(), train.rows, train.cols, test.rows, test.cols);
            }
            let shape = vec![1, train.rows, train.cols];
            let to_split = |s: idx::IdxSplit, limit: Option<usize>, rng: &mut ChaCha8Rng| {
                let dim = s.rows * s.cols;
                let full = Split { x: s.pixels, n: s.n, labels: Some(s.labels), factors: None };
                match limit.filter(|&l| l < s.n) {
                    None => full,
                    Some(l) => {
                        let mut order: Vec<usize> = (0..s.n).collect();
                        order.shuffle(rng);
                        order.truncate(l);
                        subset(&full, dim, &order)
                    }
                }
            };
            let train = to_split(train, spec.n_train, &mut rng);
            let test = to_split(test, spec.n_test, &mut rng);
            Ok(Dataset {
                name: name.into(),
                sample_shape: shape,
                num_classes: Some(10),
                factor_names: vec![],
                factor_sizes: vec![],
                modes: None,
                mode_std: None,
                train,
                val: Split::default(),
                test,
                observe: None,
            })
        }
    }
}

/// The samples of `split` at `idx`, with their labels and factors.
fn subset(split: &Split, dim: usize, idx: &[usize]) -> Split {
    let pick = |v: &Vec<u32>, w: usize| idx.iter().flat_map(|&i| v[i * w..(i + 1) * w].iter().copied()).collect::<Vec<u32>>();
    let fw = split.factors.as_ref().map(|f| f.len() / split.n.max(1)).unwrap_or(0);
    Split {
        x: crate::batch::gather(&split.x, dim, idx),
        n: idx.len(),
        labels: split.labels.as_ref().map(|l| pick(l, 1)),
        factors: split.factors.as_ref().map(|f| pick(f, fw)),
    }
}

/// The real dSprites archive: a seeded, disjoint train/test draw from its 737,280 images.
fn real_dsprites(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Result<Dataset> {
    let path = PathBuf::from(spec.resolved_dir().unwrap_or_default()).join("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz");
    let (n, size, px, factors) = crate::dsprites_npz::read(&path)?;
    let n_train = spec.n_train.unwrap_or(20_000).min(n);
    let n_test = spec.n_test.unwrap_or(2_000).min(n - n_train);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let dim = size * size;
    let take = |idx: &[usize]| Split {
        x: idx.iter().flat_map(|&i| px[i * dim..(i + 1) * dim].iter().map(|&p| p as f32)).collect(),
        n: idx.len(),
        labels: None,
        factors: Some(idx.iter().flat_map(|&i| factors[i * 5..(i + 1) * 5].iter().copied()).collect()),
    };
    let (train, test) = (take(&order[..n_train]), take(&order[n_train..n_train + n_test]));
    // The whole archive stays in memory (as disentanglement_lib keeps it) so any factor row can be looked up.
    let px = std::sync::Arc::new(px);
    let observe = crate::Observe(std::sync::Arc::new(move |f: &[u32], out: &mut [f32]| {
        let i = dsprites::combination_index([f[0], f[1], f[2], f[3], f[4]]);
        for (o, &p) in out.iter_mut().zip(&px[i * dim..(i + 1) * dim]) {
            *o = p as f32;
        }
    }));
    Ok(Dataset { observe: Some(observe), ..dsprites_dataset(size, train, test) })
}

/// A dSprites dataset (procedural or real) from its two splits. The class label is the shape (square,
/// ellipse, heart), so conditional models can be trained on it.
fn dsprites_dataset(size: usize, mut train: Split, mut test: Split) -> Dataset {
    for s in [&mut train, &mut test] {
        s.labels = s.factors.as_ref().map(|f| f.chunks(5).map(|r| r[0]).collect());
    }
    Dataset {
        name: "dsprites".into(),
        sample_shape: vec![1, size, size],
        num_classes: Some(dsprites::FACTOR_SIZES[0]),
        factor_names: dsprites::FACTOR_NAMES.iter().map(|s| s.to_string()).collect(),
        factor_sizes: dsprites::FACTOR_SIZES.to_vec(),
        modes: None,
        mode_std: None,
        train,
        val: Split::default(),
        test,
        observe: None,
    }
}

/// Draw disjoint train and test sets of factor combinations and render them.
fn procedural_dsprites(spec: &DataSpec, rng: &mut ChaCha8Rng) -> Dataset {
    let n_train = spec.n_train.unwrap_or(20_000).min(dsprites::NUM_COMBINATIONS);
    let n_test = spec.n_test.unwrap_or(2_000).min(dsprites::NUM_COMBINATIONS - n_train);
    let mut order: Vec<u32> = (0..dsprites::NUM_COMBINATIONS as u32).collect();
    order.shuffle(rng);
    let size = spec.image_size;
    let render = |combos: &[u32]| {
        let dim = size * size;
        let mut x = vec![0.0f32; combos.len() * dim];
        let mut factors = Vec::with_capacity(combos.len() * 5);
        for (i, &c) in combos.iter().enumerate() {
            let f = dsprites::combination_factors(c as usize);
            dsprites::render_into(f, size, &mut x[i * dim..(i + 1) * dim]);
            factors.extend_from_slice(&f);
        }
        Split { x, n: combos.len(), labels: None, factors: Some(factors) }
    };
    let observe = crate::Observe(std::sync::Arc::new(move |f: &[u32], out: &mut [f32]| dsprites::render_into([f[0], f[1], f[2], f[3], f[4]], size, out)));
    Dataset { observe: Some(observe), ..dsprites_dataset(size, render(&order[..n_train]), render(&order[n_train..n_train + n_test])) }
}
