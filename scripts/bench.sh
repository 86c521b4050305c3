#!/usr/bin/env bash
# Benchmarks (release build): prints ratios against baselines run side by side.
#   ./scripts/bench.sh            recorder; ./scripts/bench.sh backup; ./scripts/bench.sh cutover; ./scripts/bench.sh bundle; ./scripts/bench.sh export
source "$(dirname "$0")/common.sh"
# tosca-bench runs tosca-maint and tosca-sim from its own folder: all three, release.
for p in tosca-bench tosca-maint tosca-sim; do swift build -c release --product "$p" >/dev/null; done
"$(swift build -c release --show-bin-path)/tosca-bench" "$@"
