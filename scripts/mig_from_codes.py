#!/usr/bin/env python3
"""MIG (Chen et al. 2018) of the codes `vaelab encode` wrote, computed with NumPy the way disentanglement_lib
does (each code dimension histogram-discretized into 20 equal-width bins over its range, discrete mutual
information with each factor, normalised by the factor's entropy): an independent check of vaelab's `mig`
metric, and a place to start when studying a trial's codes. Prints JSON: mig, and per factor the gap (its
MIG term), top (best dimension's share of the factor's entropy) and the best dimension.

    vaelab encode runs/<exp>/<sweep>/<trial> -o codes.parquet
    python3 scripts/mig_from_codes.py codes.parquet
"""
import json
import sys

import numpy as np
import polars as pl


def discrete_mi(a, b):
    """Mutual information (nats) of two integer label arrays."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def main(path, bins=20):
    df = pl.read_parquet(path)
    code_cols = [c for c in df.columns if c.startswith("mu_")] or [c for c in df.columns if c.startswith("z_")]
    factor_cols = [c for c in df.columns if c.startswith("factor_")]
    if not factor_cols:
        sys.exit(f"{path}: no factor_ columns (the data has no ground-truth factors)")
    codes = df.select(code_cols).to_numpy().astype(np.float64)
    disc = [np.digitize(c, np.histogram(c, bins)[1][:-1]) for c in codes.T]
    out = {"n": len(df), "factors": {}}
    gaps = []
    for fc in factor_cols:
        f = df[fc].to_numpy()
        h = discrete_mi(f, f)
        mi = np.array([discrete_mi(d, f) for d in disc])
        order = np.argsort(-mi)
        gap = (mi[order[0]] - mi[order[1]]) / h if h > 0 else 0.0
        gaps.append(gap)
        out["factors"][fc[len("factor_"):]] = {"gap": gap, "top": mi[order[0]] / h if h > 0 else 0.0, "dim": int(order[0])}
    out["mig"] = float(np.mean(gaps))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
