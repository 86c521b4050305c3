#!/usr/bin/env bash
# Benchmarks (release build): prints ratios against baselines run side by side.
source "$(dirname "$0")/common.sh"
swift build -c release --product tosca-bench >/dev/null
"$(swift build -c release --show-bin-path)/tosca-bench" "$@"
