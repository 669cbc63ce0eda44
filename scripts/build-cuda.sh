#!/usr/bin/env bash
# Build vaelab with candle's CUDA backend (`--features cuda`, or `FEATURES=cudnn`) on a machine that has no
# CUDA toolkit and no GPU, for a GPU machine with NVIDIA driver 580 / CUDA 13.0 (H100, H200: compute 9.0).
#
#   scripts/build-cuda.sh            # → target/cuda/release/vaelab (stripped) and target/cuda/vaelab.gz
#   FEATURES=cudnn scripts/build-cuda.sh                   # → … and target/cuda/vaelab-cudnn.gz
#   then on the GPU machine, from the repository root:  scripts/gpu-bench.sh
#
# What it does, and why:
# - the toolkit (nvcc, headers, cuBLAS, cuRAND, NVRTC, and cuDNN for `cudnn`) comes from NVIDIA's PyPI wheels,
#   pinned to CUDA 13.0: PTX from a newer nvcc would not load under the GPU machines' 13.0 driver;
# - libcuda.so (the driver) is only needed to link: a stub with soname libcuda.so.1 exporting the driver
#   symbols cudarc declares is generated, so at run time the GPU machine's real driver is loaded. (So a `cuda`
#   build needs libcuda.so.1 to start even on the CPU path: keep `cuda` opt-in, as Cargo.toml does);
# - its own target directory, so the CPU build in target/release stays as it is (the first build takes ≈ 30
#   min on 2 cores: candle-kernels' nvcc step, polars).
set -euo pipefail
cd "$(dirname "$0")/.."
features=${FEATURES:-cuda}
cache=${VAELAB_CUDA_HOME:-$HOME/.cache/vaelab-cuda}
venv=$cache/venv
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}

wheels=("nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
        "nvidia-nvvm==13.0.*" "nvidia-cublas==13.0.*" "nvidia-curand" "nvidia-cuda-nvrtc==13.0.*")
[ "$features" = cudnn ] && wheels+=("nvidia-cudnn-cu13")
stamp=$venv/.installed-$features
if [ ! -f "$stamp" ]; then
  echo "installing the CUDA 13.0 toolkit wheels into $venv (≈ 1.2 GB)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "${wheels[@]}"
  touch "$stamp"
fi
cu=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cu13 | head -1)

# The libraries the link step names, under their unversioned names.
link=$cache/link
mkdir -p "$link"
for n in cublas cublasLt curand nvrtc cudart; do
  ln -sf "$(ls "$cu"/lib/lib$n.so.* | grep -v -e builtins -e '\.alt\.' | head -1)" "$link/lib$n.so"
done
if [ "$features" = cudnn ]; then
  cudnn=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cudnn | head -1)
  ln -sf "$(ls "$cudnn"/lib/libcudnn.so.* | head -1)" "$link/libcudnn.so"
  export CUDNN_LIB=$cudnn CPATH=$cudnn/include${CPATH:+:$CPATH}
fi

# The driver stub: every `cu*` function cudarc's driver bindings declare, as an empty function.
cargo fetch --quiet
sys=$(ls -d "$HOME"/.cargo/registry/src/*/cudarc-*/src/driver/sys/mod.rs 2>/dev/null | sort -V | tail -1)
[ -n "$sys" ] || { echo "cudarc's sources are not in the cargo registry (cargo fetch failed?)" >&2; exit 1; }
if [ ! -f "$link/libcuda.so" ] || [ "$sys" -nt "$link/libcuda.so" ]; then
  grep -hoE "pub (unsafe )?fn cu[A-Za-z0-9_]+" "$sys" | awk '{print $NF}' | sort -u |
    awk '{print "void " $1 "(void) {}"}' > "$link/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$link/libcuda.so" "$link/cuda_stub.c"
fi

export CUDA_ROOT=$cu CUDA_PATH=$cu CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$link${LIBRARY_PATH:+:$LIBRARY_PATH}
export PATH=$cu/bin:$PATH
cargo build --release --bin vaelab --features "$features"
strip "$CARGO_TARGET_DIR/release/vaelab"
# What travels to the GPU machine must fit in 64 MiB with the rest: stripped, the binary is ≈ 120 MB (polars,
# candle's PTX kernels as text); gzipped ≈ 34 MB.
gz=$CARGO_TARGET_DIR/vaelab$([ "$features" = cuda ] || echo "-$features").gz
gzip -9 -c "$CARGO_TARGET_DIR/release/vaelab" > "$gz"
ls -l "$CARGO_TARGET_DIR/release/vaelab" "$gz"
echo "on the GPU machine, from the repository root: VAELAB_GZ=$gz scripts/gpu-bench.sh (carry $gz and .gpu-data)" >&2
