#!/usr/bin/env python3
"""Analyse a vaelab sweep with Python Polars: the notebook cell users write, as a script.

  python3 scripts/analyze.py runs/<experiment>/<sweep-id> [--by KEY ...] [--metric final_neg_elbo] [--plots DIR]

Prints the same table as `vaelab compare SWEEP --format csv` (mean ± std of the metric over seeds for each
hyperparameter setting, and the best trial of each), and with --plots writes two PNGs: the metric against each
hyperparameter, and the test learning curve of every trial (from the per-trial metrics.parquet files).
"""
import argparse, glob, os, sys

import polars as pl

BOOKKEEPING = {"trial_id", "index", "status", "steps", "wall_time_s", "step_time_s", "eval_time_s", "other_time_s", "images_per_sec", "pruned_at", "resumed_from", "reason"}


HIGHER_IS_BETTER = {"mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "beta_vae_score",
                    "factor_vae_score", "class_accuracy", "modes_covered", "high_quality_frac", "active_units", "ssim",
                    "precision_lenet", "recall_lenet", "images_per_sec"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sweep")
    ap.add_argument("--by", nargs="*", default=None)
    ap.add_argument("--metric", default=None)
    ap.add_argument("--plots", default=None)
    a = ap.parse_args()

    trials = pl.read_parquet(os.path.join(a.sweep, "trials.parquet"))
    hparams = [c for c in trials.columns if c not in BOOKKEEPING and not c.startswith(("final_", "best_"))]
    metric = a.metric or "final_" + next(c for c in trials.columns if c.startswith("best_"))[len("best_"):]
    if metric not in trials.columns:
        metric = "final_" + metric
    by = a.by if a.by else [h for h in hparams if h != "seed"]
    # Scores, accuracies and coverage are better larger (as in `vaelab compare`); losses and distances smaller.
    higher = (metric[len("final_"):] if metric.startswith("final_") else metric) in HIGHER_IS_BETTER

    done = trials.filter((pl.col("status") == "completed") & pl.col(metric).is_not_null())
    aggs = [
        pl.col(metric).mean().alias("mean"),
        pl.col(metric).std(ddof=1).alias("std"),
        pl.col(metric).count().cast(pl.UInt64).alias("n"),
        (pl.col(metric).max() if higher else pl.col(metric).min()).alias("best"),
        pl.col("trial_id").sort_by(metric, descending=higher).first().alias("best_trial"),
    ]
    table = done.group_by(by).agg(aggs).sort("mean", descending=higher) if by else done.select(aggs)
    sys.stdout.write(table.write_csv())

    if a.plots:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        os.makedirs(a.plots, exist_ok=True)
        fig, axes = plt.subplots(1, max(len(hparams), 1), figsize=(4 * max(len(hparams), 1), 3.2), squeeze=False)
        for ax, h in zip(axes[0], hparams):
            d = done.select(h, metric)
            x = d[h].to_list()
            if d[h].dtype == pl.String:
                cats = sorted(set(x))
                x = [cats.index(v) for v in x]
                ax.set_xticks(range(len(cats)), cats)
            ax.scatter(x, d[metric].to_list())
            ax.set_xlabel(h)
            ax.set_ylabel(metric)
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, "metric_vs_hparams.png"), dpi=100)
        curves = pl.concat([pl.read_parquet(p) for p in sorted(glob.glob(os.path.join(a.sweep, "*", "metrics.parquet")))])
        name = metric[len("final_"):]
        fig, ax = plt.subplots(figsize=(6, 4))
        for (tid,), d in curves.filter((pl.col("split") == "test") & (pl.col("metric") == name)).sort("step").group_by(["trial_id"], maintain_order=True):
            ax.plot(d["step"].to_list(), d["value"].to_list(), label=tid)
        ax.set_xlabel("step")
        ax.set_ylabel(f"test {name}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(a.plots, "learning_curves.png"), dpi=100)


if __name__ == "__main__":
    main()
