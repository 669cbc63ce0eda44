#!/usr/bin/env python3
"""The comparison table of scripts/bench.sh: per model and batch, the median over rounds of each side's
images/s, step-time percentiles and peak RSS, and the vaelab / PyTorch throughput ratio — one row per vaelab
shard count measured (`vaelab bench --shards`, data parallelism inside the step; 1: none)."""
import json, statistics, sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
for r in rows:
    side = r.get("shards", 1) if r["impl_"] == "vaelab" else "pytorch"
    by[(r.get("device", "cpu"), r["model"], r["batch"], side)].append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs)
torch_version = next((r["impl_"] for r in rows if r["impl_"] != "vaelab"), "pytorch")
print(f"| device | model | batch | threads | shards | vaelab img/s | {torch_version} img/s | ratio | vaelab step p50 / p90 ms | PyTorch step p50 / p90 ms | vaelab peak RSS MiB | PyTorch peak RSS MiB | rounds |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for device, model, batch, shards in sorted({(d, m, b, s) for d, m, b, s in by if s != "pytorch"}):
    v, p = by.get((device, model, batch, shards), []), by.get((device, model, batch, "pytorch"), [])
    if not v or not p:
        continue
    vi, pi = med(v, "images_per_sec"), med(p, "images_per_sec")
    print(f"| {device} | {model} | {batch} | {v[0]['threads']} | {shards} | {vi:,.0f} | {pi:,.0f} | {vi / pi:.2f}× | "
          f"{med(v, 'step_ms_p50'):.1f} / {med(v, 'step_ms_p90'):.1f} | {med(p, 'step_ms_p50'):.1f} / {med(p, 'step_ms_p90'):.1f} | "
          f"{med(v, 'peak_rss_mib'):.0f} | {med(p, 'peak_rss_mib'):.0f} | {min(len(v), len(p))} |")
