#!/usr/bin/env python3
"""How much a minibatch total-correlation estimate sees a rotation of two code dimensions: rotates the
posterior means of dimensions A and B of a `vaelab encode` file by -60..60 degrees and prints, per angle, the
correlation of the two rotated dimensions with a factor and the minibatch-weighted-sampling TC estimate
(Chen et al., without its log(N*M) constants; posterior variances kept) averaged over random batches.

    vaelab encode runs/<exp>/<sweep>/<trial> -o codes.parquet
    python3 scripts/tc_rotation.py codes.parquet A B [--batch 64] [--batches 200] [--factor pos_x]

A penalty can only prefer the angle at which its estimate is lowest, and only by as much as the estimate moves.
"""
import argparse

import numpy as np
import polars as pl


def logsumexp(a, axis):
    m = a.max(axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis, keepdims=True))).squeeze(axis)


def mws_tc(z, mu, logvar):
    lq = -0.5 * ((z[:, None, :] - mu[None]) ** 2 * np.exp(-logvar[None]) + logvar[None] + np.log(2 * np.pi))
    return float((logsumexp(lq.sum(-1), 1) - logsumexp(lq, 1).sum(-1)).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("codes")
    ap.add_argument("a", type=int)
    ap.add_argument("b", type=int)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--factor", default="pos_x")
    args = ap.parse_args()
    df = pl.read_parquet(args.codes)
    mu = df.select(pl.col("^mu_.*$")).to_numpy().astype(np.float64)
    logvar = df.select(pl.col("^logvar_.*$")).to_numpy().astype(np.float64)
    f = df[f"factor_{args.factor}"].to_numpy()
    rng = np.random.default_rng(0)
    batches = [(rng.choice(len(mu), args.batch, replace=False), rng.standard_normal((args.batch, mu.shape[1]))) for _ in range(args.batches)]
    print(f"angle  corr({args.factor}, dim {args.a}) corr({args.factor}, dim {args.b})  TC estimate")
    for deg in range(-60, 61, 10):
        t = np.deg2rad(deg)
        r = np.eye(mu.shape[1])
        r[args.a, args.a] = r[args.b, args.b] = np.cos(t)
        r[args.a, args.b], r[args.b, args.a] = -np.sin(t), np.sin(t)
        m = mu @ r.T
        tc = np.mean([mws_tc(m[i] + np.exp(0.5 * logvar[i]) * e, m[i], logvar[i]) for i, e in batches])
        print(f"{deg:+4d}   {np.corrcoef(m[:, args.a], f)[0, 1]:+.2f}  {np.corrcoef(m[:, args.b], f)[0, 1]:+.2f}  {tc:.4f}")


if __name__ == "__main__":
    main()
