#!/usr/bin/env python3
"""The table of scripts/stack-bench.sh: per device, model and batch, the median over rounds of vaelab's total
images/s with K trials stacked in one process (`vaelab bench --stack K`) and of PyTorch's with P processes at
once, and each vaelab row's ratio to each peer row."""
import json, statistics, sys
from collections import defaultdict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
vaelab, peer = defaultdict(list), defaultdict(list)
for r in rows:
    key = (r.get("device", "cpu"), r["model"], r["batch"])
    if r["impl_"] == "vaelab":
        vaelab[key + (r["stack"],)].append(r)
    else:
        peer[key + (r["procs"],)].append(r)
med = lambda rs, k: statistics.median(r.get(k, 0.0) for r in rs)
torch_version = next((r["impl_"] for r in rows if r["impl_"] != "vaelab"), "pytorch")
print(f"| device | model | batch | vaelab trials stacked | vaelab img/s (all trials) | {torch_version} processes | PyTorch img/s (all, wall clock) | ratio | vaelab peak RSS MiB | PyTorch peak RSS MiB (sum) | PyTorch peak GPU MiB (sum) | rounds |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for (device, model, batch, k), v in sorted(vaelab.items()):
    for (pd, pm, pb, procs), p in sorted(peer.items()):
        if (pd, pm, pb) != (device, model, batch):
            continue
        vi, pi = med(v, "images_per_sec"), med(p, "images_per_sec")
        print(f"| {device} | {model} | {batch} | {k} | {vi:,.0f} | {procs} | {pi:,.0f} | {vi / pi:.2f}× | "
              f"{med(v, 'peak_rss_mib'):.0f} | {med(p, 'peak_rss_mib'):.0f} | {med(p, 'peak_gpu_mib'):.0f} | {min(len(v), len(p))} |")
