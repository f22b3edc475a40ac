#!/usr/bin/env bash
# The GPU benchmark (issue 13): on a machine with one CUDA GPU, every method's paper profile on one full
# 2457 x 1996 phantom slice (PICARD in fp32 and bf16, eager and compiled, with CUDA graphs and with the batch grown
# by --auto-batch), rows with the device name merged into leaderboards/bench.{csv,md}. Extra arguments go to
# `adbench bench` (e.g. --dry-run to check it on a CPU in seconds, --out to write elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
ADBENCH="${ADBENCH:-adbench}"
if [[ " $* " == *" --dry-run "* ]]; then
  exec "$ADBENCH" bench --suite gpu --preset tiny --device cpu "$@"
fi
exec "$ADBENCH" bench --suite gpu --preset full --device cuda --repeats 2 "$@"
