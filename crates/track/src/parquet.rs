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

    /// Continue the log of a resumed trial: keep the rows already on disk up to `step` (the checkpoint's),
    /// drop later ones (they will be logged again), and go on appending.
    pub fn resume(path: PathBuf, trial_id: &str, step: u64) -> anyhow::Result<Self> {
        let mut log = Self::new(path, trial_id);
        if !log.path.exists() {
            return Ok(log);
        }
        let df = read_parquet(&log.path)?;
        let steps = df.column("step")?.u64()?.clone();
        let epochs = df.column("epoch")?.f64()?.clone();
        let splits = df.column("split")?.str()?.clone();
        let metrics = df.column("metric")?.str()?.clone();
        let values = df.column("value")?.f64()?.clone();
        let walls = df.column("wall_time")?.f64()?.clone();
        let mut offset = 0.0f64;
        for i in 0..df.height() {
            let st = steps.get(i).unwrap_or(0);
            if st > step {
                continue;
            }
            let wall_time = walls.get(i).unwrap_or(0.0);
            offset = offset.max(wall_time);
            log.rows.push(MetricRow {
                step: st,
                epoch: epochs.get(i).unwrap_or(0.0),
                split: splits.get(i).unwrap_or("").into(),
                metric: metrics.get(i).unwrap_or("").into(),
                value: values.get(i).unwrap_or(f64::NAN),
                wall_time,
            });
        }
        // Wall time keeps counting from where the kept rows end.
        log.start = Instant::now() - std::time::Duration::from_secs_f64(offset);
        Ok(log)
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
