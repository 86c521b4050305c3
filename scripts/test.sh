#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests that run the built binaries on real
# files with the stock sqlite3 and sqlcipher CLIs as oracles, and crash tests.
source "$(dirname "$0")/common.sh"
swift build --build-tests
# The man-page generator `make install` uses (from swift-argument-parser), built once here.
swift build --product generate-manual
swift test --skip-build
