# Sourced by scripts/bench.sh and scripts/stack-bench.sh: the peer's Python (PEER_PYTHON, else .venv-peer with
# torch from PyPI, made on first use) and the vaelab binary (VAELAB_BIN, else a release build), as `$python`
# and `$bin`; `$data`, the MNIST directory under VAELAB_DATA.
data="${VAELAB_DATA:-data}/mnist"
python="${PEER_PYTHON:-.venv-peer/bin/python}"
if [ -z "${PEER_PYTHON:-}" ] && ! .venv-peer/bin/python -c "import torch, numpy" 2>/dev/null; then
  python3 -m venv .venv-peer
  .venv-peer/bin/pip install --quiet torch numpy
fi
bin="${VAELAB_BIN:-target/release/vaelab}"
[ -n "${VAELAB_BIN:-}" ] || cargo build --release --quiet --bin vaelab
