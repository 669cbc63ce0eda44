//! Datasets for vaelab.
//!
//! Every dataset becomes one [`Dataset`]: flat `f32` samples (images in `[0, 1]`, `C×H×W`), optional class
//! labels and optional ground-truth factors, split into train and test deterministically from a seed.
//! A dataset is loaded once per sweep and shared (behind an `Arc`) by every trial.
//!
//! - [`dsprites`]: the procedural dSprites-style shapes (no download, generated from factor indices).
//! - [`toy`]: 2D toys (ring of 8 Gaussians, 5×5 grid with their mode centres; swiss roll, two moons).
//! - [`idx`]: MNIST-format IDX files (MNIST, Fashion-MNIST, …), gzipped or raw, validated before use.
//! - [`cifar`]: CIFAR-10 binary batches; [`dsprites_npz`]: the real dSprites archive.
//! - [`hub`]: `source: hub`, candle-datasets' download path (the `hub` feature).
//! - [`batch`]: seeded shuffling into mini-batches, and binarization.

pub mod batch;
pub mod cifar;
pub mod dataset;
pub mod dsprites;
pub mod dsprites_npz;
pub mod hub;
pub mod idx;
pub mod spec;
pub mod toy;

pub use batch::{Binarize, EpochBatches};
pub use dataset::{Dataset, Observe, Split};
pub use spec::{load, DataKind, DataSpec};
