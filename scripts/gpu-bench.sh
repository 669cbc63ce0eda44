#!/usr/bin/env bash
# #8's GPU table: run on the GPU machine (no Rust, no network there; its python3 has PyTorch) from the repository
# root, with the CUDA build and MNIST brought along. Here, first:
#   scripts/build-cuda.sh                                   # → target/cuda/vaelab.gz
#   mkdir -p .gpu-data && cp -r "$VAELAB_DATA/mnist" .gpu-data/   # ../shared does not travel
# then on the GPU machine (the device tool: carry target/cuda/vaelab.gz and .gpu-data):
#   scripts/gpu-bench.sh [ROUNDS]      (env: BATCHES, default "128 1024 8192"; STEPS, default 200;
#                                       VAELAB_GZ, the build to run, default target/cuda/vaelab.gz;
#                                       PART, "table" (default): scripts/bench.sh, one trial per process;
#                                       "stack": scripts/stack-bench.sh, K trials stacked in one vaelab process
#                                       against P PyTorch processes at once; "sweep": experiments/stack-sweep.yaml,
#                                       32 trials as one stack (SWEEP_SPEC: another spec), and images/s over the
#                                       whole sweep; "check": experiments/stack-check.yaml as stacks on the CPU and
#                                       on the device, final metrics compared (run it first) — each part fits one
#                                       device call; TF32=1: vaelab's matmuls on TF32 tensor cores)
# vaelab bench --device cuda and scripts/peer/bench.py --device cuda alternate as in scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TMPDIR:-/tmp}/vaelab-cuda
gunzip -c "${VAELAB_GZ:-target/cuda/vaelab.gz}" > "$bin"
chmod +x "$bin"
# cuBLAS / cuRAND / the CUDA runtime: the machine's CUDA 13.0 (the build linked against 13.0's sonames).
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# cuDNN 9 (the `cudnn` build): the one in the machine's PyTorch environment (nvidia-cudnn-cu13).
cudnn=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0] + '/lib')" 2>/dev/null || true)
[ -n "$cudnn" ] && export LD_LIBRARY_PATH=$cudnn:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export VAELAB_DATA=${VAELAB_DATA:-.gpu-data} DEVICE=${DEVICE:-cuda} VAELAB_BIN=$bin PEER_PYTHON=${PEER_PYTHON:-python3}
export STEPS=${STEPS:-200}
case "${PART:-table}" in
  table) BATCHES=${BATCHES:-128 1024 8192} scripts/bench.sh "${1:-3}";;
  stack) scripts/stack-bench.sh "${1:-3}";;
  sweep)
    runs=$(mktemp -d)
    "$bin" run "${SWEEP_SPEC:-experiments/stack-sweep.yaml}" --stack 32 --device "$DEVICE" ${TF32:+--tf32} --runs-dir "$runs" 2>&1 | tee "$runs/log" | grep -v "step .*loss" || true
    # All trials' training images (steps × batch, from each trial's status and spec) over the sweep's wall time,
    # evaluations and checkpoints included.
    python3 - "$runs" <<'PY'
import glob, re, sys
runs = sys.argv[1]
secs = float(re.search(r"vaelab: \d+ trials finished in ([0-9.]+)s", open(runs + "/log").read()).group(1))
images = 0
for st in glob.glob(runs + "/*/*/*/status.yaml"):
    steps = int(re.search(r"^steps: (\d+)", open(st).read(), re.M).group(1))
    batch = int(re.search(r"batch_size: (\d+)", open(st.replace("status.yaml", "spec.yaml")).read()).group(1))
    images += steps * batch
print(f"stack sweep: {images:,} training images in {secs:.1f} s = {images / secs:,.0f} images/s over all trials")
PY
    ;;
  check)
    # The same stacked sweep on the CPU and on the device, same binary: final metrics must agree to rounding.
    runs=$(mktemp -d)
    for side in host device; do
      dev=$([ $side = host ] && echo cpu || echo "$DEVICE")
      # (exit 0 or 1: a trial may fail; the comparison below says whether both sides agree)
      "$bin" run experiments/stack-check.yaml --stack 8 --device "$dev" --runs-dir "$runs/$side" > "$runs/$side.log" 2>&1 || [ $? = 1 ] || { cat "$runs/$side.log"; exit 1; }
      grep -E "stack\(s\)|finished" "$runs/$side.log"
    done
    python3 - "$runs" "$DEVICE" <<'PY'
import glob, os, re, sys
runs, dev = sys.argv[1], sys.argv[2]
def finals(d):
    out = {}
    for st in glob.glob(f"{runs}/{d}/*/*/*/status.yaml"):
        text = open(st).read()
        block = re.search(r"^final_metrics:\n((?:  .*\n)+)", text, re.M).group(1)
        out[os.path.basename(os.path.dirname(st))] = {k: float(v) for k, v in re.findall(r"  (\w+): (\S+)", block)}
    return out
a, b = finals("host"), finals("device")
assert a.keys() == b.keys() and len(a) == 6, (sorted(a), sorted(b))
worst = max(abs(a[t][m] - b[t][m]) / abs(a[t][m]) for t in a for m in a[t])
print(f"stack check: {len(a)} trials, final metrics on {dev} vs cpu: largest relative difference {worst:.2e}")
sys.exit(0 if worst < 1e-3 else 1)
PY
    ;;
  *) echo "PART=${PART}: table, stack, sweep or check" >&2; exit 2;;
esac
