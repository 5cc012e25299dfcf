#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is missing, then builds and
# tests three ways: a Release build with warnings as errors, an AddressSanitizer +
# UndefinedBehaviorSanitizer build, and the libFuzzer targets for a short run each.
# Fails when any test fails. The fixtures come from ../shared/fixtures or $BATON_FIXTURES.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

jobs=$(nproc)
export CTEST_OUTPUT_ON_FAILURE=1

echo "== Release build (warnings are errors)"
scripts/build.sh build -DBATON_WERROR=ON
ctest --test-dir build -j "$jobs" --timeout 1500 --no-tests=error

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
scripts/build.sh build-asan -DBATON_WERROR=ON -DBATON_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan -j "$jobs" --timeout 1500 --no-tests=error -LE big

echo "== fuzz targets (clang, libFuzzer)"
CC=clang cmake -S . -B build-fuzz -DBATON_WERROR=ON -DBATON_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$jobs" --target fuzzers
ctest --test-dir build-fuzz -L fuzz --timeout 600 --no-tests=error
