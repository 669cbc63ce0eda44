//! vaelab's runner: spec → plan → trials.
//!
//! - [`spec`]: the YAML experiment spec; every error names file:line:column and the key.
//! - [`plan`]: [`SweepPlan`] expands the spec's sweep into trials with stable ids.
//! - [`trial`]: [`TrialDir`], one trial's files, and running one trial (data → model → trainer → logs).
//! - [`schedule`]: runs the plan's trials in parallel with progress bars, then writes `trials.parquet`.
//! - [`summary`]: `trials.parquet`, rebuilt from the trial directories (`vaelab collect`).
//! - [`compare`]: `vaelab compare`, mean ± std over seeds per setting with Polars.
//! - [`lock`]: one runner per sweep (or per trial with `--trial`); stale locks are taken over.
//! - [`slurm`]: an `sbatch` array script that runs one trial per task (`vaelab slurm`).
//! - [`bench`]: `vaelab bench`, training throughput of the reference models (against `scripts/peer/bench.py`).

pub mod bench;
pub mod compare;
pub mod evaluation;
pub mod inspect;
pub mod locate;
pub mod lock;
pub mod slurm;
pub mod plan;
pub mod schedule;
pub mod spec;
pub mod summary;
pub mod trial;

pub use plan::{SweepPlan, Trial};
pub use spec::{ExperimentSpec, SpecError};
pub use trial::{TrialDir, TrialStatus};
