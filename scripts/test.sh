#!/usr/bin/env bash
# Every test: install, build release and sanitizer builds, run ctest on both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh release
ctest --preset release
bash scripts/build.sh debug-asan
ctest --preset debug-asan
