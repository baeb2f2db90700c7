#!/bin/sh
# check_layers_test.sh -- shows scripts/check_layers.py fails on a wrong-way include: copies the sources to a
# temporary tree, checks the copy passes, then plants each kind of offence (hub including an MQTT header, one
# front including another, a lower subsystem including a higher one, an include circle) and expects a failure
# naming the file. Exit 0 when every planted offence was caught.
set -u
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0
fresh() {
    rm -rf "$tmp/t" && mkdir -p "$tmp/t"
    (cd "$root" && tar -cf - common emulator device service) | tar -xf - -C "$tmp/t"
}
expect_fail() { # file, line to add, what
    fresh
    printf '%s\n' "$2" >> "$tmp/t/$1"
    if out=$(python3 "$root/scripts/check_layers.py" "$tmp/t"); then
        echo "NOT CAUGHT: $3"; fail=1
    elif ! echo "$out" | grep -q "$1:"; then
        echo "caught, but without naming $1: $3"; echo "$out"; fail=1
    else
        echo "caught: $3"
    fi
}
fresh
python3 "$root/scripts/check_layers.py" "$tmp/t" >/dev/null || { echo "the unmodified tree fails"; fail=1; }
expect_fail emulator/hub/hub.c '#include "session.h"' "hub includes the MQTT session"
expect_fail emulator/hub/hub.c '#include "mqtt.h"' "hub includes the MQTT codec"
expect_fail emulator/http/rest.c '#include "session.h"' "a front includes another front"
expect_fail emulator/io/net.c '#include "hub.h"' "io includes hub"
expect_fail emulator/store/registry.c '#include "auth.h"' "store includes auth"
expect_fail service/service_response.c '#include "service_client.h"' "an include circle in service/"
expect_fail device/login.c '#include "hub.h"' "device/ includes the emulator"
[ $fail -eq 0 ] && echo "check_layers_test: every planted offence was caught"
exit $fail
