//! `vaelab compare`: a sweep's trials grouped by hyperparameters, mean ± std of a metric over seeds, and the
//! best trial of each group — a Polars group-by over `trials.parquet`.

use crate::summary::is_hparam_column;
use polars::prelude::*;
use std::path::Path;

pub struct Comparison {
    pub metric: String,
    pub by: Vec<String>,
    pub table: DataFrame,
}

/// Group completed trials of `sweep_dir` by `by` (default: every hyperparameter but `seed`) and aggregate
/// `metric` (a column of trials.parquet such as `final_neg_elbo`; default: `final_<primary metric>`).
pub fn compare(sweep_dir: &Path, by: &[String], metric: Option<&str>) -> anyhow::Result<Comparison> {
    let path = sweep_dir.join("trials.parquet");
    let df = if path.exists() { vaelab_track::parquet::read_parquet(&path)? } else { crate::summary::collect(sweep_dir)? };
    let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
    let metric = match metric {
        Some(m) if names.iter().any(|n| n == m) => m.to_string(),
        Some(m) if names.iter().any(|n| *n == format!("final_{m}")) => format!("final_{m}"),
        Some(m) => anyhow::bail!("no metric `{m}` in {}; columns: {}", path.display(), names.join(", ")),
        None => {
            let best = names.iter().find(|n| n.starts_with("best_")).ok_or_else(|| anyhow::anyhow!("{}: no completed trial has metrics", path.display()))?;
            format!("final_{}", &best["best_".len()..])
        }
    };
    let by: Vec<String> = if by.is_empty() { names.iter().filter(|c| is_hparam_column(c) && *c != "seed").cloned().collect() } else { by.to_vec() };
    for k in &by {
        if !names.contains(k) {
            anyhow::bail!("--by {k}: not a column of {} (hyperparameters: {})", path.display(), names.iter().filter(|c| is_hparam_column(c)).cloned().collect::<Vec<_>>().join(", "));
        }
    }
    let m = col(metric.as_str());
    let higher = higher_is_better(&metric);
    let best_first = SortMultipleOptions::default().with_order_descending(higher);
    let aggs = [
        m.clone().mean().alias("mean"),
        m.clone().std(1).alias("std"),
        m.clone().count().cast(DataType::UInt64).alias("n"),
        if higher { m.clone().max() } else { m.clone().min() }.alias("best"),
        col("trial_id").sort_by([m.clone()], best_first.clone()).first().alias("best_trial"),
    ];
    let done = df.lazy().filter(col("status").eq(lit("completed")).and(m.clone().is_not_null()));
    let table = if by.is_empty() {
        done.select(aggs).collect()?
    } else {
        let keys: Vec<Expr> = by.iter().map(|k| col(k.as_str())).collect();
        done.group_by(keys).agg(aggs).sort(["mean"], best_first).collect()?
    };
    Ok(Comparison { metric, by, table })
}

/// Whether larger values of a metric column (`final_<name>` or the bare name) are better: the scores,
/// accuracies and coverage figures. Everything else (losses, bounds, distances, costs) is better smaller.
pub fn higher_is_better(metric: &str) -> bool {
    const HIGHER: [&str; 14] = [
        "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "beta_vae_score", "factor_vae_score",
        "class_accuracy", "modes_covered", "high_quality_frac", "active_units", "ssim", "precision_lenet", "recall_lenet",
        "images_per_sec",
    ];
    let name = metric.strip_prefix("final_").or_else(|| metric.strip_prefix("best_")).unwrap_or(metric);
    HIGHER.contains(&name)
}

/// The comparison as a Markdown table.
pub fn markdown(df: &DataFrame) -> String {
    let cols = df.columns();
    let mut s = format!("| {} |\n|{}\n", df.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" | "), "---|".repeat(cols.len()));
    for i in 0..df.height() {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| match c.get(i) {
                Ok(AnyValue::Null) | Err(_) => String::new(),
                Ok(AnyValue::Float64(x)) => format!("{x:.4}"),
                Ok(AnyValue::String(x)) => x.to_string(),
                Ok(v) => v.to_string(),
            })
            .collect();
        s += &format!("| {} |\n", cells.join(" | "));
    }
    s
}
