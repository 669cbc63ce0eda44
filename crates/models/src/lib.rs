//! The vaelab model zoo.
//!
//! A model is a plain struct of candle-nn layers implementing [`GenerativeModel`]: it names its parameter
//! groups (one optimizer each), computes its losses as named scalars, and can encode, reconstruct and sample.
//! The trainer only talks to that trait; it never matches on a model's name.
//!
//! Adding a model = one module under [`zoo`] plus one line in [`registry::MODELS`] (see CONTRIBUTING.md).
//! [`stacked`] trains K VAEs of one architecture as one batched computation (a sweep's trials on one GPU).
//!
//! Weights are initialised from a seeded generator ([`init::SeededInit`]) because candle's CPU RNG cannot be
//! seeded; that is what makes two runs of the same spec and seed identical.

pub mod act;
pub mod backbone;
pub mod dense;
pub mod fastconv;
pub mod init;
pub mod kernels;
pub mod losses;
pub mod norm;
pub mod model;
pub mod registry;
pub mod schedule;
pub mod sparse;
pub mod spec;
pub mod stacked;
pub mod winograd;
pub mod zoo;

pub use model::{Batch, DataInfo, GenerativeModel, Losses, ModelCtx, ParamGroup, Phase};
pub use registry::{build, kinds};
pub use spec::{Backbone, InitScheme, Likelihood, ModelSpec, TcEstimator};
