#!/bin/sh
# Sets up and runs every test: Debian packages, the official Node SDKs (npm ci), a gcc build, then a clang
# build with AddressSanitizer + UndefinedBehaviorSanitizer and the libFuzzer harnesses, and ctest over all
# of it (labels: unit, integration, sdk, fuzz, bench, docker). Extra arguments go to ctest, e.g. `-L unit`.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh --test
if [ -f tests/integration/package-lock.json ]; then
    (cd tests/integration && npm ci --no-audit --no-fund --loglevel=error)
fi
jobs=$(nproc)
# 1. The release build users get, with gcc: -Werror must hold there too.
CC=gcc cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$jobs" >/dev/null
# 2. The test build: clang, sanitizers, fuzzers.
#    The release build's emulator runs the one test a sanitizer's allocator would falsify (memory returned).
CC=clang cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON -DFUZZ=ON \
    -DFUZZ_SECONDS="${FUZZ_SECONDS:-20}" -DRELEASE_EMULATOR_BIN="$PWD/build/emulator/iothub-emulator" >/dev/null
cmake --build build-test -j"$jobs" >/dev/null
cd build-test
ctest --output-on-failure "$@"
