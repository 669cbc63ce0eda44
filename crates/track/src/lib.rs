//! Experiment tracking: what a trial leaves behind for people and tools to read.
//!
//! - [`tensorboard::EventWriter`]: TensorBoard event files (scalars, images) that TensorBoard itself reads.
//! - [`parquet`]: the long-form per-trial `metrics.parquet`, written atomically with Polars.
//! - [`hparams`]: the HParams dashboard's experiment and session summaries.
//! - [`image`]: image grids encoded as PNG (reconstructions, samples).
//! - [`TrialLog`]: one call per scalar that feeds both TensorBoard and the Parquet log.

pub mod fsutil;
pub mod hparams;
pub mod image;
pub mod parquet;
pub mod tensorboard;

pub use parquet::{MetricRow, MetricsLog};
pub use tensorboard::EventWriter;

use std::path::Path;

/// A trial's scalar and image sink: TensorBoard events plus the Parquet metrics log.
pub struct TrialLog {
    pub events: EventWriter,
    pub metrics: MetricsLog,
}

impl TrialLog {
    pub fn create(dir: &Path, trial_id: &str) -> anyhow::Result<Self> {
        Ok(Self { events: EventWriter::create(dir)?, metrics: MetricsLog::new(dir.join("metrics.parquet"), trial_id) })
    }

    /// A resumed trial's log: a new event file (TensorBoard reads every file in the directory) and the
    /// Parquet rows up to `step` kept.
    pub fn resume(dir: &Path, trial_id: &str, step: u64) -> anyhow::Result<Self> {
        Ok(Self { events: EventWriter::create(dir)?, metrics: MetricsLog::resume(dir.join("metrics.parquet"), trial_id, step)? })
    }

    /// Log `value` as TensorBoard tag `split/metric` and as a Parquet row.
    pub fn scalar(&mut self, split: &str, metric: &str, step: u64, epoch: f64, value: f64) -> anyhow::Result<()> {
        self.events.scalar(&format!("{split}/{metric}"), value as f32, step)?;
        self.metrics.push(step, epoch, split, metric, value);
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.events.flush()?;
        self.metrics.write()?;
        Ok(())
    }
}
