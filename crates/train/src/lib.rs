//! The vaelab trainer: `train(model, data) → logs`.
//!
//! One Adam optimizer per parameter group the model declares; each step runs the model's phases in order.
//! Every random draw (shuffling, binarization, reparameterisation noise) comes from generators seeded by the
//! trial seed, so the same spec and seed give the same numbers on CPU. Evaluation runs on the whole test split
//! every `eval_every` steps and at the end; a non-finite loss stops the trial with [`TrainError::Diverged`].
//! With `train.shards`, models whose objective is a per-example mean split each batch over threads
//! ([`shards`]): one join a step instead of one per op. With [`Control::stack`], a trial is one of a [`stacked`]
//! computation: K trials of one architecture take each step together (on a GPU), each keeping its own loop.

pub mod checkpoint;
mod spec;
mod trainer;

pub mod adam;
pub mod figures;
pub mod shards;
pub mod stacked;
pub use adam::{Adam, AdamConfig};
pub use checkpoint::{load_checkpoint, save_checkpoint, TrainState};
pub use spec::TrainSpec;
pub use trainer::{make_batch, train, Control, ExtraMetrics, Progress, TrainError, TrainOutcome};
