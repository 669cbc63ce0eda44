#!/usr/bin/env bash
# #8's batched-trial sweep figure: K small trials of one reference model trained at once on one device, vaelab's
# way — one process, the K trials stacked into one computation (`vaelab bench --stack K`) — against PyTorch's
# usual way, P separate processes of scripts/peer/bench.py started together. Same model, batch and data per
# trial; vaelab and the peer alternate which goes first, ROUNDS rounds; then the table (scripts/stack_report.py).
#   scripts/stack-bench.sh [ROUNDS]   (env: DEVICE, default cuda; STACKS, vaelab's K values, default "8 32 64";
#                                      PROCS, the peer's process counts, default "8"; MODELS, default "conv mlp";
#                                      BATCH, default 128; STEPS, default 200; THREADS, vaelab's kernel threads,
#                                      default all cores (each peer process gets cores / P, at least 1);
#                                      VAELAB_BIN, PEER_PYTHON, VAELAB_DATA as in scripts/bench.sh; TF32=1: vaelab
#                                      with --tf32, matmuls on TF32 tensor cores, as PyTorch runs its convolutions
#                                      by default — its linear layers stay f32)
# The peers' total is measured on the wall clock: all their timed images over the span from the first process's
# first timed step to the last one's end (their own images/s, summed, would count overlapping windows twice).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
device="${DEVICE:-cuda}"
threads="${THREADS:-$(nproc)}"
batch="${BATCH:-128}"
steps="${STEPS:-200}"
. scripts/bench-env.sh
out="runs/bench/$(date -u +%Y%m%dT%H%M%SZ)-stack.jsonl"
mkdir -p "$(dirname "$out")"
for round in $(seq 1 "$rounds"); do
  for model in ${MODELS:-conv mlp}; do
    vaelab() { for k in ${STACKS:-8 32 64}; do "$bin" bench --model "$model" --batch "$batch" --steps "$steps" --threads "$threads" --device "$device" --stack "$k" ${TF32:+--tf32} --data "$data" >> "$out"; done; }
    peers() {
      for p in ${PROCS:-8}; do
        tmp=$(mktemp -d)
        per=$(( $(nproc) / p )); (( per >= 1 )) || per=1
        for i in $(seq 1 "$p"); do
          "$python" scripts/peer/bench.py --model "$model" --batch "$batch" --steps "$steps" --threads "$per" --device "$device" --data "$data" > "$tmp/$i.json" &
        done
        wait
        "$python" - "$p" "$tmp" >> "$out" <<'PY'
import json, sys, glob
p, rows = int(sys.argv[1]), [json.loads(open(f).read()) for f in sorted(glob.glob(sys.argv[2] + "/*.json"))]
assert len(rows) == p, f"{len(rows)} of {p} peer processes reported"
span = max(r["t_end"] for r in rows) - min(r["t_start"] for r in rows)
out = {k: rows[0][k] for k in ("impl_", "model", "batch", "device", "threads", "steps")}
out.update(procs=p, images_per_sec=sum(r["steps"] * r["batch"] for r in rows) / span,
           images_per_sec_summed=sum(r["images_per_sec"] for r in rows),
           peak_rss_mib=sum(r["peak_rss_mib"] for r in rows), peak_gpu_mib=sum(r.get("peak_gpu_mib", 0.0) for r in rows))
print(json.dumps(out))
PY
        rm -r "$tmp"
      done
    }
    if (( round % 2 )); then vaelab; peers; else peers; vaelab; fi
  done
  echo "round $round/$rounds done" >&2
done
"$python" scripts/stack_report.py "$out"
