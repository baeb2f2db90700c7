#!/bin/sh
# bench/callgrind.sh -- instructions per method call (issue 20): the emulator (and Mosquitto, the baseline)
# under valgrind's callgrind, one device, one call in flight, 16 B and 4 KiB payloads, plain and TLS. The counts
# are repeatable where wall-clock ratios on this shared machine are not, so a change's effect is measured
# without noise.
#   bench/callgrind.sh [--emulator PATH] [--bench PATH] [--payloads 16,4096] [--transports plain,tls]
#                      [--targets emulator,mosquitto] [--short S] [--long S] [--devices N] [--inflight N]
#                      [--keep] [--out FILE]
# Each case runs `iothub_bench methods` twice against the same server (short, then long measure): callgrind's
# counters are zeroed before and dumped after each run, and Ir per call = (Ir_long - Ir_short) / (calls_long -
# calls_short), so connecting the device and the caller (the TLS handshakes) and start-up cancel out. Prints one
# line per case; --keep keeps the dumps (callgrind_annotate them: the long run's dump is the profile).
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
EMU="" BENCH="" PAYLOADS="16 4096" TRANSPORTS="plain tls" TARGETS="emulator mosquitto" SHORT=2 LONG=8 KEEP=0 OUT="" DEVICES=1 INFLIGHT=1
while [ $# -gt 0 ]; do
    case "$1" in
    --emulator) EMU=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --payloads) PAYLOADS=$(echo "$2" | tr , ' '); shift ;;
    --transports) TRANSPORTS=$(echo "$2" | tr , ' '); shift ;;
    --targets) TARGETS=$(echo "$2" | tr , ' '); shift ;;
    --short) SHORT=$2; shift ;;
    --long) LONG=$2; shift ;;
    --devices) DEVICES=$2; shift ;;
    --inflight) INFLIGHT=$2; shift ;;
    --keep) KEEP=1 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "callgrind.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null ||
    { echo "callgrind.sh: valgrind not found: apt-get install valgrind" >&2; exit 77; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || TARGETS=$(echo "$TARGETS" | sed 's/mosquitto//')

if [ -z "$EMU" ] || [ -z "$BENCH" ]; then
    if [ ! -f "$REPO/build/CMakeCache.txt" ]; then
        cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
    fi
    cmake --build "$REPO/build" -j2 --target iothub-emulator iothub_bench >/dev/null
    EMU=${EMU:-$REPO/build/emulator/iothub-emulator}
    BENCH=${BENCH:-$REPO/build/bench/iothub_bench}
fi

EMU=$(realpath "$EMU") BENCH=$(realpath "$BENCH") # the runs cd into the work dir
WORK=$(mktemp -d /tmp/iothub-callgrind.XXXXXX)
SRV_PID=""
cleanup() {
    [ -n "$SRV_PID" ] && kill -KILL "$SRV_PID" 2>/dev/null || true
    if [ $KEEP = 0 ]; then rm -rf "$WORK"; else echo "callgrind.sh: dumps kept in $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Total Ir of a callgrind dump.
dump_ir() { sed -n 's/^summary: *\([0-9]*\).*/\1/p; s/^totals: *\([0-9]*\).*/\1/p' "$1" | head -1; }

# Stops the server started by start_server.
stop_server() {
    kill -TERM "$SRV_PID" 2>/dev/null || true
    i=0
    while kill -0 "$SRV_PID" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
}

# The emulator's data dir: the bench's registry and certificates made by one native start (key generation
# under valgrind takes minutes).
mkdir -p "$WORK/emu" "$WORK/mosq"
"$BENCH" gen-registry --devices "$((DEVICES > 10 ? DEVICES : 10))" --out "$WORK/emu/registry.json" >/dev/null
set -- $("$BENCH" free-ports --count 4)
P_MQTTS=$1 P_HTTPS=$2 P_MQTT=$3 P_HTTP=$4
emu_args() {
    echo --data-dir "$WORK/emu" --mqtts-port "$P_MQTTS" --https-port "$P_HTTPS" --mqtt-port "$P_MQTT" \
        --http-port "$P_HTTP" --amqps-port 0 --amqp-port 0 --log-level warn
}
"$EMU" $(emu_args) >> "$WORK/emulator.log" 2>&1 &
SRV_PID=$!
"$BENCH" wait --target emulator --port "$P_HTTP" --pid "$SRV_PID" --timeout 60
stop_server
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/mosq/server.key" -out "$WORK/mosq/server.pem" -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
cat > "$WORK/mosq/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
set_tcp_nodelay true
user $(id -un)
listener $P_MQTT 127.0.0.1
listener $P_MQTTS 127.0.0.1
certfile $WORK/mosq/server.pem
keyfile $WORK/mosq/server.key
EOF

# One measured run: $1 target, $2 transport, $3 payload, $4 seconds, $5 label. Prints "Ir calls".
one_run() {
    callgrind_control -z "$SRV_PID" >/dev/null 2>&1
    if [ "$1" = emulator ]; then
        tg="--emu-mqtts $P_MQTTS --emu-https $P_HTTPS --emu-mqtt $P_MQTT --emu-http $P_HTTP --emu-ca $WORK/emu/ca.pem"
    else
        tg="--mosq-mqtt $P_MQTT --mosq-mqtts $P_MQTTS --mosq-ca $WORK/mosq/server.pem"
    fi
    # shellcheck disable=SC2086
    "$BENCH" methods $tg --transports "$2" --devices "$DEVICES" --inflight "$INFLIGHT" --payloads "$3" --warmup 0 --measure "$4" \
        --drain 60 > "$WORK/$5.json" 2>> "$WORK/bench.log"
    callgrind_control --dump="$5" "$SRV_PID" >/dev/null 2>&1
    sleep 0.5 # the dump is written by the server's thread after the request returns
    f=$(ls -t "$WORK"/callgrind.out.* | head -1)
    mv "$f" "$WORK/$5.callgrind"
    calls=$(sed -n 's/.*"calls": *\([0-9]*\).*/\1/p' "$WORK/$5.json" | head -1)
    echo "$(dump_ir "$WORK/$5.callgrind") ${calls:-0}"
}

RESULT=$WORK/result.txt
: > "$RESULT"
printf '%-10s %-6s %8s %14s %10s\n' target trans payload Ir/call calls >> "$RESULT"
for target in $TARGETS; do
    cd "$WORK"
    if [ "$target" = emulator ]; then
        valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" "$EMU" $(emu_args) \
            >> "$WORK/emulator.log" 2>&1 &
        SRV_PID=$!
        "$BENCH" wait --target emulator --port "$P_HTTP" --pid "$SRV_PID" --timeout 300
    else
        valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" "$MOSQUITTO" -c \
            "$WORK/mosq/mosquitto.conf" >> "$WORK/mosquitto.log" 2>&1 &
        SRV_PID=$!
        "$BENCH" wait --target mosquitto --port "$P_MQTT" --pid "$SRV_PID" --timeout 300
    fi
    for tr in $TRANSPORTS; do
        for pl in $PAYLOADS; do
            set -- $(one_run "$target" "$tr" "$pl" "$SHORT" "$target-$tr-$pl-short")
            ir1=$1 c1=$2
            set -- $(one_run "$target" "$tr" "$pl" "$LONG" "$target-$tr-$pl-long")
            ir2=$1 c2=$2
            if [ "$c2" -gt "$c1" ]; then
                per=$(( (ir2 - ir1) / (c2 - c1) ))
            else
                per="?"
            fi
            printf '%-10s %-6s %8s %14s %10s\n' "$target" "$tr" "$pl" "$per" "$((c2 - c1))" >> "$RESULT"
            tail -n 1 "$RESULT" >&2
        done
    done
    stop_server
done
cat "$RESULT"
[ -z "$OUT" ] || cp "$RESULT" "$OUT"
