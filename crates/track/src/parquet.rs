//! Parquet outputs, written with Polars.
//!
//! `metrics.parquet` (one per trial) is long-form, one row per logged value:
//! `trial_id: str, step: u64, epoch: f64, split: str, metric: str, value: f64, wall_time: f64` (seconds since
//! the trial started). Every write replaces the file atomically, so a reader never sees half a file.

use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct MetricRow {
    pub step: u64,
    pub epoch: f64,
    pub split: String,
    pub metric: String,
    pub value: f64,
    pub wall_time: f64,
}

pub struct MetricsLog {
    path: PathBuf,
    trial_id: String,
    start: Instant,
    rows: Vec<MetricRow>,
}

impl MetricsLog {
    pub fn new(path: PathBuf, trial_id: &str) -> Self {
        Self { path, trial_id: trial_id.to_string(), start: Instant::now(), rows: vec![] }
    }

    pub fn push(&mut self, step: u64, epoch: f64, split: &str, metric: &str, value: f64) {
        let wall_time = self.start.elapsed().as_secs_f64();
        self.rows.push(MetricRow { step, epoch, split: split.into(), metric: metric.into(), value, wall_time });
    }

    pub fn rows(&self) -> &[MetricRow] {
        &self.rows
    }

    pub fn frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.rows;
        df!(
            "trial_id" => vec![self.trial_id.as_str(); r.len()],
            "step" => r.iter().map(|x| x.step).collect::<Vec<_>>(),
            "epoch" => r.iter().map(|x| x.epoch).collect::<Vec<_>>(),
            "split" => r.iter().map(|x| x.split.as_str()).collect::<Vec<_>>(),
            "metric" => r.iter().map(|x| x.metric.as_str()).collect::<Vec<_>>(),
            "value" => r.iter().map(|x| x.value).collect::<Vec<_>>(),
            "wall_time" => r.iter().map(|x| x.wall_time).collect::<Vec<_>>(),
        )
    }

    pub fn write(&self) -> anyhow::Result<()> {
        write_parquet(&mut self.frame()?, &self.path)
    }
}

/// Write `df` to `path` atomically (temporary file, fsync, rename).
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> anyhow::Result<()> {
    let mut err = None;
    crate::fsutil::write_atomic_with(path, |f| {
        ParquetWriter::new(f).finish(df).map(|_| ()).map_err(|e| {
            err = Some(e.to_string());
            std::io::Error::other("parquet")
        })
    })
    .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), err.clone().unwrap_or_else(|| e.to_string())))
}

pub fn read_parquet(path: &Path) -> anyhow::Result<DataFrame> {
    let f = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ParquetReader::new(f).finish().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
