#!/usr/bin/env bash
# Two (or more) settings of one vaelab binary against each other and against PyTorch, alternating, ROUNDS rounds
# (how the README's "new / old" figures for a kernel change are measured):
#   VARIANTS="new:VAELAB_CONV=winograd,VAELAB_DENSE=sparse old:VAELAB_CONV=im2col,VAELAB_DENSE=gemm" \
#     scripts/bench-ab.sh [ROUNDS]
# Each variant is NAME:VAR=VALUE[,VAR=VALUE…], environment for `vaelab bench`; BIN=PATH runs that binary instead
# (two builds against each other: "new:BIN=target/release/vaelab old:BIN=/tmp/vaelab-old"). Env: MODELS (default "mlp conv"),
# BATCHES ("128 1024"), SHARDS ("1 2"), THREADS (all cores), VAELAB_DATA, VAELAB_BIN, PEER_PYTHON as bench.sh.
# Measures and prints medians and ratios; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
threads="${THREADS:-$(nproc)}"
: "${VARIANTS:?VARIANTS=\"name:VAR=value,… name:…\"}"
. scripts/bench-env.sh
out="runs/bench/$(date -u +%Y%m%dT%H%M%SZ)-ab.jsonl"
mkdir -p "$(dirname "$out")"
tag() { "$python" -c "import json,sys; r=json.loads(sys.stdin.read()); r['variant']=sys.argv[1]; print(json.dumps(r))" "$1"; }
for round in $(seq 1 "$rounds"); do
  for model in ${MODELS:-mlp conv}; do
    for batch in ${BATCHES:-128 1024}; do
      case "$model/$batch" in conv/128) n=300;; mlp/128) n=1200;; conv/*) n=50;; *) n=200;; esac
      ours() {
        for variant in $VARIANTS; do
          name="${variant%%:*}"; vars="${variant#*:}"
          for s in ${SHARDS:-1 2}; do
            vbin="$bin"; envs=()
            for kv in ${vars//,/ }; do case "$kv" in BIN=*) vbin="${kv#BIN=}";; *) envs+=("$kv");; esac; done
            env "${envs[@]}" "$vbin" bench --model "$model" --batch "$batch" --steps "$n" --threads "$threads" --shards "$s" --data "$data" | tag "$name" >> "$out"
          done
        done
      }
      peer() { "$python" scripts/peer/bench.py --model "$model" --batch "$batch" --steps "$n" --threads "$threads" --data "$data" | tag pytorch >> "$out"; }
      if (( round % 2 )); then ours; peer; else peer; ours; fi
    done
  done
  echo "round $round/$rounds done" >&2
done
"$python" - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
for r in rows:
    by[(r["model"], r["batch"], r["variant"], r.get("shards", 1) if r["variant"] != "pytorch" else "-")].append(r["images_per_sec"])
variants = list(dict.fromkeys(r["variant"] for r in rows if r["variant"] != "pytorch"))
print(f"| model | batch | shards | {' | '.join(f'{v} img/s' for v in variants)} | pytorch img/s | {' | '.join(f'{v} / pytorch' for v in variants)} | {variants[0]} / {variants[-1]} | rounds |")
print("|" + "---|" * (6 + 2 * len(variants)))
for model, batch, shards in sorted({(m, b, s) for m, b, v, s in by if v != "pytorch"}, key=str):
    med = {v: statistics.median(by[(model, batch, v, shards)]) for v in variants}
    torch = statistics.median(by[(model, batch, "pytorch", "-")])
    print(f"| {model} | {batch} | {shards} | {' | '.join(f'{med[v]:,.0f}' for v in variants)} | {torch:,.0f} | "
          f"{' | '.join(f'{med[v] / torch:.2f}×' for v in variants)} | {med[variants[0]] / med[variants[-1]]:.2f}× | {len(by[(model, batch, 'pytorch', '-')])} |")
print(sys.argv[1])
PY
