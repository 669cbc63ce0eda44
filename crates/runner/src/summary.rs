//! `trials.parquet`: one row per trial, rebuilt from the trial directories (so it can be rebuilt after a
//! crash or on another machine).
//!
//! Columns: `trial_id: str`, `index: u64`, `status: str`, one typed column per swept key (named as the key,
//! e.g. `model.latent_dim: i64`, `seed: i64`), `final_<metric>: f64` for every test metric at the last
//! evaluation, `best_<primary>: f64`, `steps: u64`, `wall_time_s: f64` (a resumed trial's earlier runs included), `images_per_sec: f64` (its last run's), `pruned_at: u64` (null unless pruned), `resumed_from: u64` (null unless
//! the last run continued from a checkpoint), `reason: str`.

use crate::trial::TrialStatus;
use polars::prelude::*;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Read every `*/status.yaml` under `sweep_dir`, ordered by trial index.
pub fn read_statuses(sweep_dir: &Path) -> anyhow::Result<Vec<TrialStatus>> {
    let mut out = vec![];
    for entry in std::fs::read_dir(sweep_dir)? {
        let p = entry?.path().join("status.yaml");
        if let Ok(text) = std::fs::read_to_string(&p) {
            match serde_yaml::from_str::<TrialStatus>(&text) {
                Ok(s) => out.push(s),
                Err(e) => eprintln!("warning: skipping unreadable {}: {e}", p.display()),
            }
        }
    }
    out.sort_by_key(|s| s.index);
    Ok(out)
}

fn hparam_column(name: &str, vals: &[Option<&Value>]) -> Column {
    let all = |f: fn(&Value) -> bool| vals.iter().all(|v| v.is_none_or(f));
    if all(|v| v.is_i64() || v.is_u64()) {
        Column::new(name.into(), vals.iter().map(|v| v.and_then(|v| v.as_i64())).collect::<Vec<_>>())
    } else if all(|v| v.is_number()) {
        Column::new(name.into(), vals.iter().map(|v| v.and_then(|v| v.as_f64())).collect::<Vec<_>>())
    } else if all(|v| v.is_bool()) {
        Column::new(name.into(), vals.iter().map(|v| v.and_then(|v| v.as_bool())).collect::<Vec<_>>())
    } else {
        Column::new(name.into(), vals.iter().map(|v| v.map(crate::plan::value_flow)).collect::<Vec<_>>())
    }
}

pub fn trials_frame(statuses: &[TrialStatus]) -> PolarsResult<DataFrame> {
    let mut keys: Vec<String> = vec![];
    for s in statuses {
        for k in s.hparams.keys().filter_map(|k| k.as_str()) {
            if !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        }
    }
    let metrics: BTreeSet<&String> = statuses.iter().flat_map(|s| s.final_metrics.keys()).collect();
    let primaries: BTreeSet<&String> = statuses.iter().filter_map(|s| s.primary_metric.as_ref()).collect();

    let mut cols = vec![
        Column::new("trial_id".into(), statuses.iter().map(|s| s.trial_id.as_str()).collect::<Vec<_>>()),
        Column::new("index".into(), statuses.iter().map(|s| s.index as u64).collect::<Vec<_>>()),
        Column::new("status".into(), statuses.iter().map(|s| serde_yaml::to_string(&s.status).unwrap().trim().to_string()).collect::<Vec<_>>()),
    ];
    for k in &keys {
        let vals: Vec<Option<&Value>> = statuses.iter().map(|s| s.hparams.get(k.as_str())).collect();
        cols.push(hparam_column(k, &vals));
    }
    for m in &metrics {
        cols.push(Column::new(format!("final_{m}").into(), statuses.iter().map(|s| s.final_metrics.get(*m).copied()).collect::<Vec<_>>()));
    }
    for p in &primaries {
        let vals: Vec<Option<f64>> = statuses.iter().map(|s| s.best_primary.filter(|_| s.primary_metric.as_ref() == Some(*p))).collect();
        cols.push(Column::new(format!("best_{p}").into(), vals));
    }
    cols.push(Column::new("steps".into(), statuses.iter().map(|s| s.steps).collect::<Vec<_>>()));
    cols.push(Column::new("wall_time_s".into(), statuses.iter().map(|s| s.wall_time_s).collect::<Vec<_>>()));
    cols.push(Column::new("images_per_sec".into(), statuses.iter().map(|s| s.images_per_sec).collect::<Vec<_>>()));
    // Where the last run of each trial spent its time (see TimeSplit).
    cols.push(Column::new("step_time_s".into(), statuses.iter().map(|s| s.time_split.map(|t| t.steps_s)).collect::<Vec<_>>()));
    cols.push(Column::new("eval_time_s".into(), statuses.iter().map(|s| s.time_split.map(|t| t.eval_s)).collect::<Vec<_>>()));
    cols.push(Column::new("other_time_s".into(), statuses.iter().map(|s| s.time_split.map(|t| t.other_s)).collect::<Vec<_>>()));
    cols.push(Column::new("pruned_at".into(), statuses.iter().map(|s| s.pruned_at).collect::<Vec<_>>()));
    cols.push(Column::new("resumed_from".into(), statuses.iter().map(|s| s.resumed_from).collect::<Vec<_>>()));
    cols.push(Column::new("reason".into(), statuses.iter().map(|s| s.reason.clone()).collect::<Vec<_>>()));
    DataFrame::new_infer_height(cols)
}

/// The sweep-level HParams experiment (hyperparameters with their values, metrics to show), rewritten as the
/// only event file in the sweep directory itself.
fn write_hparams_experiment(sweep_dir: &Path, statuses: &[TrialStatus]) -> anyhow::Result<()> {
    let mut keys: Vec<String> = vec![];
    for s in statuses {
        for (k, _) in &s.hparams {
            let k = k.as_str().unwrap_or_default().to_string();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let hp: Vec<(String, Vec<vaelab_track::hparams::HValue>)> = keys
        .iter()
        .map(|k| (k.clone(), statuses.iter().filter_map(|s| s.hparams.get(k.as_str())).map(crate::trial::hvalue).collect()))
        .collect();
    let metrics: BTreeSet<String> = statuses
        .iter()
        .flat_map(|s| s.final_metrics.keys())
        .map(|m| match m.strip_prefix("val_") {
            Some(v) => format!("val/{v}"),
            None => format!("test/{m}"),
        })
        .collect();
    for e in std::fs::read_dir(sweep_dir)?.flatten() {
        if e.file_name().to_string_lossy().starts_with("events.out.tfevents.") && e.path().is_file() {
            std::fs::remove_file(e.path())?;
        }
    }
    let created = statuses.iter().map(|s| s.started_at).fold(f64::INFINITY, f64::min);
    let mut w = vaelab_track::EventWriter::create(sweep_dir)?;
    w.summary(vaelab_track::hparams::experiment(&hp, &metrics.into_iter().collect::<Vec<_>>(), if created.is_finite() { created } else { 0.0 })?, 0)?;
    w.flush()?;
    Ok(())
}

/// The columns `trials_frame` writes besides the hyperparameters and the `final_*` / `best_*` metrics.
const TRIAL_COLUMNS: &[&str] = &["trial_id", "index", "status", "steps", "wall_time_s", "step_time_s", "eval_time_s", "other_time_s", "images_per_sec", "pruned_at", "resumed_from", "reason"];

/// Whether a column of trials.parquet is a swept hyperparameter.
pub fn is_hparam_column(c: &str) -> bool {
    !(TRIAL_COLUMNS.contains(&c) || c.starts_with("final_") || c.starts_with("best_"))
}

/// Rebuild `sweep_dir/trials.parquet` (and the HParams experiment summary) from the trial directories;
/// returns the frame.
pub fn collect(sweep_dir: &Path) -> anyhow::Result<DataFrame> {
    let statuses = read_statuses(sweep_dir)?;
    write_hparams_experiment(sweep_dir, &statuses)?;
    let mut df = trials_frame(&statuses)?;
    vaelab_track::parquet::write_parquet(&mut df, &sweep_dir.join("trials.parquet"))?;
    Ok(df)
}

/// The summary table printed at the end of a run: hyperparameters, final metrics, status, wall time.
pub fn render_table(df: &DataFrame) -> String {
    let keep: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .filter(|c| !matches!(c.as_str(), "index" | "images_per_sec" | "reason" | "resumed_from" | "step_time_s" | "eval_time_s" | "other_time_s"))
        // MIG's per-factor terms (ten columns on dSprites) stay in the Parquet file and TensorBoard.
        .filter(|c| !(c.starts_with("final_mig_gap_") || c.starts_with("final_mig_top_")))
        .filter(|c| c != "pruned_at" || df.column(c).is_ok_and(|col| col.null_count() < col.len()))
        .collect();
    let view = df.select(keep).unwrap_or_else(|_| df.clone());
    // Polars reads its table layout from the environment; this process prints no other tables.
    std::env::set_var("POLARS_FMT_MAX_COLS", "-1");
    std::env::set_var("POLARS_FMT_MAX_ROWS", "-1");
    std::env::set_var("POLARS_FMT_STR_LEN", "60");
    std::env::set_var("POLARS_TABLE_WIDTH", "250");
    std::env::set_var("POLARS_FMT_TABLE_HIDE_DATAFRAME_SHAPE_INFORMATION", "1");
    std::env::set_var("POLARS_FMT_TABLE_HIDE_COLUMN_DATA_TYPES", "1");
    format!("{view}")
}
