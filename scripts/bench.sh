#!/usr/bin/env bash
# vaelab vs PyTorch on the same work (issue #8): the reference MLP and conv VAEs at batch 128 and 1024, same
# MNIST data, same thread count, one after the other, alternating, ROUNDS rounds; then the table.
#   scripts/bench.sh [ROUNDS]        (env: THREADS, default all cores; STEPS, default ≈ 5–10 s of work per
#                                     run: conv 300 / 50 and MLP 1200 / 200 steps at batch 128 / 1024; VAELAB_DATA;
#                                     SHARDS, vaelab's shard counts to measure, default "1 2" ("1" on a GPU);
#                                     DEVICE, cpu (default) or cuda; VAELAB_BIN, a vaelab binary to use instead of
#                                     building one (the GPU machine has no Rust: scripts/build-cuda.sh builds it
#                                     here); PEER_PYTHON, a Python that has torch instead of .venv-peer's;
#                                     BATCHES, default "128 1024")
# Installs torch (PyPI) into .venv-peer on first use. Run it on an idle machine: it measures, it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
threads="${THREADS:-$(nproc)}"
device="${DEVICE:-cpu}"
if [ "$device" = cpu ]; then shards="${SHARDS:-1 2}"; else shards="${SHARDS:-1}"; fi
. scripts/bench-env.sh
out="runs/bench/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p "$(dirname "$out")"
for round in $(seq 1 "$rounds"); do
  for model in mlp conv; do
    for batch in ${BATCHES:-128 1024}; do
      # 50 steps of the MLP at batch 128 took 0.3 s, too short to time on a noisy machine.
      case "$model/$batch" in conv/128) n=300;; mlp/128) n=1200;; conv/*) n=50;; *) n=200;; esac
      steps="${STEPS:-$n}"
      # Alternate which side goes first, so drift in machine load hits both alike.
      vaelab() { for s in $shards; do "$bin" bench --model "$model" --batch "$batch" --steps "$steps" --threads "$threads" --shards "$s" --device "$device" --data "$data" >> "$out"; done; }
      peer() { "$python" scripts/peer/bench.py --model "$model" --batch "$batch" --steps "$steps" --threads "$threads" --device "$device" --data "$data" >> "$out"; }
      if (( round % 2 )); then vaelab; peer; else peer; vaelab; fi
    done
  done
  echo "round $round/$rounds done" >&2
done
"$python" scripts/bench_report.py "$out"
