#!/bin/sh
# Installs what building and testing need, from Debian's packages, only when something is missing
# (so it is fast and safe to re-run). Uses sudo when not root.
set -eu
PKGS="build-essential cmake pkg-config clang libssl-dev libjansson-dev libmicrohttpd-dev libmosquitto-dev
libcurl4-openssl-dev libsqlite3-dev libcmocka-dev libqpid-proton11-dev ca-certificates curl openssl"
if [ "${1:-}" = "--test" ]; then
    # Third-party peers for the integration tests (python3-qpid-proton and python3-uamqp: independent AMQP
    # clients; python3-azure: azure-eventhub for the Event Hub-compatible endpoint), the compose-file validator,
    # and the docker-labelled test's engine (docker.io; Compose v1 as Debian bookworm has no Compose v2 plugin)
    # and base-image maker; chromium: the dashboard's browser test (headless, driven by playwright-core).
    PKGS="$PKGS mosquitto mosquitto-clients python3 python3-paho-mqtt python3-qpid-proton python3-uamqp python3-azure
docker-compose valgrind iproute2 util-linux python3-yaml docker.io debootstrap chromium"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm for the official-SDK tests: keep an existing installation, else take Debian's.
if [ "${1:-}" = "--test" ] && ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    echo "Installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
