#!/usr/bin/env bash
# Fuzz spec parsing + sweep expansion (issue #9) for a bounded time: scripts/fuzz.sh [SECONDS] (default 600).
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New interesting inputs are added to
# fuzz/corpus/spec_plan (commit them); a crash or hang lands in fuzz/artifacts/spec_plan and fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
cargo +nightly fuzz run spec_plan corpus/spec_plan -- \
  -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -dict=spec.dict -max_len=4096 -print_final_stats=1
