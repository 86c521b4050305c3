#!/usr/bin/env bash
# Benchmarks (release build): prints ratios against baselines run side by side.
#   ./scripts/bench.sh            recorder; ./scripts/bench.sh backup; ./scripts/bench.sh cutover; ./scripts/bench.sh bundle
source "$(dirname "$0")/common.sh"
swift build -c release --product tosca-bench >/dev/null
"$(swift build -c release --show-bin-path)/tosca-bench" "$@"
