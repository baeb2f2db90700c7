#!/bin/sh
# Sets up (Debian packages, CMake build) and runs the emulator with the well-known development credentials.
# Extra arguments go to iothub-emulator (see --help). Ports 443 and 8883 need root or CAP_NET_BIND_SERVICE.
set -eu
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec ./build/emulator/iothub-emulator "$@"
