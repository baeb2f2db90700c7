#!/bin/sh
# bench/run.sh -- runs the benchmarks of issue 8 and writes RESULTS.md + results.json: method-call round trips,
# connection scale and start-up of the emulator, each next to Mosquitto (Debian's `mosquitto`, started here
# on free ports with a generated config and an openssl-made certificate) measured in the same run; then the
# emulator alone beside noisy neighbours and under half-open TLS handshakes (issue 23: noisy.py, tls_halfopen.py).
#   bench/run.sh            full run (< 30 min on 2 cores), writes bench/RESULTS.md and bench/results.json
#                           (then bench/store_bench.py adds its section to RESULTS.md)
#   bench/run.sh --quick    smoke run (< 2 min): small matrix, outputs in a new temp dir (path printed)
# Options: --out DIR, --out-tmp (temp dir removed at exit: CI), --emulator PATH, --bench PATH, --keep (keep
# the work dir). Fails (exit 1) only when something breaks, never on a timing; exit 77 without mosquitto.
# A reduced method matrix: --devices 1,1000 --inflight 16 --payloads 16 --transports tls (lists), and
# --methods-only (no scale, start-up, noisy-neighbour or store runs); RESULTS.md then says "reduced".
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0 OUT="" OUT_TMP=0 EMU="" BENCH="" KEEP=0 METHODS_ONLY=0 O_DEVICES="" O_INFLIGHT="" O_PAYLOADS="" O_TRANSPORTS=tls,plain
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT=$2; shift ;;
    --out-tmp) OUT_TMP=1 ;;
    --emulator) EMU=$2; shift ;;
    --bench) BENCH=$2; shift ;;
    --keep) KEEP=1 ;;
    --methods-only) METHODS_ONLY=1 ;;
    --devices) O_DEVICES=$2; shift ;;
    --inflight) O_INFLIGHT=$2; shift ;;
    --payloads) O_PAYLOADS=$2; shift ;;
    --transports) O_TRANSPORTS=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

MOSQUITTO=$(command -v mosquitto || true)
[ -n "$MOSQUITTO" ] || { [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto; } || true
if [ -z "$MOSQUITTO" ]; then
    echo "run.sh: mosquitto not found (the baseline): apt-get install mosquitto" >&2
    exit 77
fi
command -v openssl >/dev/null || { echo "run.sh: openssl not found: apt-get install openssl" >&2; exit 2; }

# ---- what to run ----
if [ $QUICK = 1 ]; then
    DEVICES=1,100 INFLIGHT=1,16 PAYLOADS=16,4096 WARMUP=0.2 MEASURE=0.5 DRAIN=20
    SCALE_TLS=300 SCALE_PLAIN=1000 IDLE=1 START_RUNS=2 MODE=quick METHODS_LIMIT=100
else
    DEVICES=1,100,1000 INFLIGHT=1,16,64 PAYLOADS=16,4096,102400 WARMUP=0.5 MEASURE=3 DRAIN=30
    SCALE_TLS=10000 SCALE_PLAIN=50000 IDLE=5 START_RUNS=5 MODE=full METHODS_LIMIT=900
fi
START_REGISTRY=10000
[ -z "$O_DEVICES$O_INFLIGHT$O_PAYLOADS" ] && [ "$O_TRANSPORTS" = tls,plain ] || MODE="$MODE, reduced method matrix"
DEVICES=${O_DEVICES:-$DEVICES} INFLIGHT=${O_INFLIGHT:-$INFLIGHT} PAYLOADS=${O_PAYLOADS:-$PAYLOADS}

# ---- binaries ----
if [ -z "$EMU" ] || [ -z "$BENCH" ]; then
    if [ ! -f "$REPO/build/CMakeCache.txt" ]; then
        cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
    fi
    cmake --build "$REPO/build" -j"$(nproc)" --target iothub-emulator iothub_bench >/dev/null
    EMU=${EMU:-$REPO/build/emulator/iothub-emulator}
    BENCH=${BENCH:-$REPO/build/bench/iothub_bench}
fi

# ---- work dir, outputs, clean-up ----
WORK=$(mktemp -d /tmp/iothub-bench.XXXXXX)
if [ $OUT_TMP = 1 ]; then
    OUT=$WORK/out
elif [ -z "$OUT" ]; then
    if [ $QUICK = 1 ]; then OUT=$(mktemp -d /tmp/iothub-bench-quick.XXXXXX); else OUT=$REPO/bench; fi
fi
mkdir -p "$OUT"
PIDS=""
cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    if [ $KEEP = 0 ]; then rm -rf "$WORK"; else echo "run.sh: work dir kept: $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
FAILED=0
fail() { echo "run.sh: FAILED: $*" >&2; FAILED=1; }

# Descriptors: the scale runs hold one per device in the bench and one in the server.
ulimit -n "$(ulimit -H -n)" 2>/dev/null || true
NOFILE=$(ulimit -n)
NOTES=$WORK/notes.txt
: > "$NOTES"
if [ "$NOFILE" != unlimited ] && [ $((SCALE_PLAIN + 1000)) -gt "$NOFILE" ]; then
    echo "plain scale: asked for $SCALE_PLAIN devices, ran $((NOFILE - 1000)): the hard RLIMIT_NOFILE here is" \
         "$NOFILE (ulimit -Hn; raising it needs CAP_SYS_RESOURCE)" >> "$NOTES"
    SCALE_PLAIN=$((NOFILE - 1000))
fi
MAXCONN=$((SCALE_PLAIN + 2000))
JSONL=$WORK/results.jsonl
: > "$JSONL"

# ---- servers ----
# Mosquitto's certificate: a CA and a server certificate made by openssl, RSA 2048 like the emulator's.
mosq_certs() {
    d=$WORK/mosq
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
        -subj /CN=bench-mosquitto-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" -subj /CN=localhost 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
        -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
}

# Mosquitto's config: $1 plain port, $2 TLS port, $3 file.
mosq_conf() {
    cat > "$3" <<EOF
per_listener_settings false
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
set_tcp_nodelay true
max_keepalive 65535
user $(id -un)
listener $1 127.0.0.1
listener $2 127.0.0.1
certfile $WORK/mosq/server.pem
keyfile $WORK/mosq/server.key
EOF
}

# Sets MOSQ_PID, MOSQ_MQTT, MOSQ_MQTTS.
start_mosquitto() {
    set -- $("$BENCH" free-ports --count 2)
    MOSQ_MQTT=$1 MOSQ_MQTTS=$2
    mosq_conf "$MOSQ_MQTT" "$MOSQ_MQTTS" "$WORK/mosq/mosquitto.conf"
    "$MOSQUITTO" -c "$WORK/mosq/mosquitto.conf" >> "$WORK/mosquitto.log" 2>&1 &
    MOSQ_PID=$!
    PIDS="$PIDS $MOSQ_PID"
    "$BENCH" wait --target mosquitto --port "$MOSQ_MQTT" --pid "$MOSQ_PID" --timeout 30
}

# Sets EMU_PID and EMU_MQTTS, EMU_HTTPS, EMU_MQTT, EMU_HTTP. $1: data dir.
start_emulator() {
    set -- "$1" $("$BENCH" free-ports --count 4)
    EMU_MQTTS=$2 EMU_HTTPS=$3 EMU_MQTT=$4 EMU_HTTP=$5
    "$EMU" --data-dir "$1" --mqtts-port "$EMU_MQTTS" --https-port "$EMU_HTTPS" --mqtt-port "$EMU_MQTT" --amqps-port 0 --amqp-port 0 \
        --http-port "$EMU_HTTP" --max-connections "$MAXCONN" --log-level warn >> "$WORK/emulator.log" 2>&1 &
    EMU_PID=$!
    PIDS="$PIDS $EMU_PID"
    "$BENCH" wait --target emulator --port "$EMU_HTTP" --pid "$EMU_PID" --timeout 60
}

# Stops a server started above; complains when it is already gone (it crashed).
stop_server() {
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    if [ -z "$state" ] || [ "$state" = Z ]; then
        fail "$2 (pid $1) died during the run; see its log"
        return 0
    fi
    kill -TERM "$1"
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

start_both() {
    start_emulator "$WORK/emu" || { fail "emulator did not start"; return 1; }
    start_mosquitto || { fail "mosquitto did not start"; return 1; }
}

stop_both() {
    stop_server "$EMU_PID" emulator
    stop_server "$MOSQ_PID" mosquitto
}

targets() {
    echo --emu-mqtts "$EMU_MQTTS" --emu-https "$EMU_HTTPS" --emu-mqtt "$EMU_MQTT" --emu-http "$EMU_HTTP" \
        --emu-ca "$WORK/emu/ca.pem" --emu-pid "$EMU_PID" --mosq-mqtt "$MOSQ_MQTT" --mosq-mqtts "$MOSQ_MQTTS" \
        --mosq-ca "$WORK/mosq/ca.pem" --mosq-pid "$MOSQ_PID"
}

# ---- the runs ----
machine() {
    echo "nproc: $(nproc)"
    lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Hypervisor vendor|CPU max MHz)' || true
    free -m
    echo "kernel: $(uname -srm)"
    echo "emulator: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown) ($EMU)"
    echo "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1)"
    echo "openssl: $(openssl version)"
    echo "RLIMIT_NOFILE: $NOFILE"
    echo "load average at start (other work shares this machine): $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); mode: $MODE"
}

echo "run.sh: $MODE run, work dir $WORK, outputs in $OUT" >&2
machine > "$WORK/machine.txt"
mosq_certs
mkdir -p "$WORK/emu"
REG_DEVICES=$(( SCALE_PLAIN > 1000 ? SCALE_PLAIN : 1000 ))
"$BENCH" gen-registry --devices "$REG_DEVICES" --out "$WORK/emu/registry.json" || fail "gen-registry"

echo "== method calls ==" >&2
if start_both; then
    timeout "$METHODS_LIMIT" "$BENCH" methods $(targets) --devices $DEVICES --inflight $INFLIGHT \
        --payloads $PAYLOADS --transports "$O_TRANSPORTS" --warmup $WARMUP --measure $MEASURE --drain $DRAIN >> "$JSONL" || fail "methods"
    stop_both
fi

[ $METHODS_ONLY = 1 ] && echo "methods only: no connection scale, start-up, noisy-neighbour or store runs" >> "$NOTES"
for tr in tls plain; do
    [ $METHODS_ONLY = 1 ] && break
    if [ $tr = tls ]; then n=$SCALE_TLS; else n=$SCALE_PLAIN; fi
    echo "== connection scale: $n $tr devices ==" >&2
    for tg in emulator mosquitto; do
        # Fresh servers per measurement, so freed memory of an earlier run does not hide this one's.
        start_both || continue
        timeout 600 "$BENCH" scale $(targets) --target $tg --transport $tr --devices "$n" --idle "$IDLE" \
            >> "$JSONL" || fail "scale $tg $tr"
        stop_both
    done
done

if [ $METHODS_ONLY = 0 ]; then
echo "== start-up ==" >&2
for d in start-empty start-registry; do
    mkdir -p "$WORK/$d"
    # The certificates the runs above generated, so start-up is not timing key generation (when they are
    # missing the warm-up start generates them).
    cp "$WORK/emu/ca.pem" "$WORK/emu/ca.key" "$WORK/emu/server.pem" "$WORK/emu/server.key" "$WORK/$d/" 2>/dev/null ||
        true
done
"$BENCH" gen-registry --devices $START_REGISTRY --out "$WORK/start-registry/registry.json" || fail "gen-registry"
set -- $("$BENCH" free-ports --count 4)
startup() { # label desc data-dir
    "$BENCH" startup --target emulator --port "$4" --label "$1" --desc "$2" --runs $START_RUNS \
        --log "$WORK/startup.log" -- "$EMU" --data-dir "$3" --mqtts-port "$5" --https-port "$6" \
        --mqtt-port "$7" --http-port "$4" --amqps-port 0 --amqp-port 0 --log-level warn >> "$JSONL" || fail "start-up $1"
}
startup empty "empty registry" "$WORK/start-empty" "$4" "$1" "$2" "$3"
startup registry "$START_REGISTRY-device registry" "$WORK/start-registry" "$4" "$1" "$2" "$3"
mosq_conf "$1" "$2" "$WORK/mosq/startup.conf"
"$BENCH" startup --target mosquitto --port "$1" --label baseline --desc "no registry" --runs $START_RUNS \
    --log "$WORK/startup.log" -- "$MOSQUITTO" -c "$WORK/mosq/startup.conf" >> "$JSONL" || fail "start-up mosquitto"

# ---- noisy neighbours and half-open TLS handshakes (issue 23; emulator only) ----
echo "== noisy neighbours ==" >&2
NOISY_MEASURE=3 NOISY_REPEAT=3 HALFOPEN_TOTAL=20000
[ $QUICK = 1 ] && NOISY_MEASURE=0.5 NOISY_REPEAT=1 HALFOPEN_TOTAL=2000
PY=/usr/bin/python3
"$PY" "$REPO/bench/noisy.py" --emulator "$EMU" --bench "$BENCH" --measure $NOISY_MEASURE --repeat $NOISY_REPEAT \
    --jsonl "$WORK/noisy.jsonl" \
    --md "$WORK/noisy.md" >/dev/null || fail "noisy neighbours"
"$PY" "$REPO/bench/tls_halfopen.py" --emulator "$EMU" --total $HALFOPEN_TOTAL --concurrent 5000 \
    --jsonl "$WORK/halfopen.jsonl" >/dev/null || fail "half-open TLS handshakes"
fi

# ---- report ----
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$NOTES"
"$BENCH" report --jsonl "$JSONL" --machine "$WORK/machine.txt" --notes "$NOTES" --mode "$MODE" \
    --md-out "$OUT/RESULTS.md" --json-out "$OUT/results.json" || fail "report"
[ $METHODS_ONLY = 1 ] || {
    echo
    echo "## Noisy neighbours (issue 23)"
    echo
    echo "\`bench/noisy.py\`: one plain-HTTP caller invoking one plain-MQTT device, one call in flight, 16 B, while one"
    echo "attacker runs (each from its own process); idle and attacked runs alternate, the median ratio of 3 pairs."
    echo "Goal: p50 during every attack <= 2x the idle p50. The machine is shared: idle p50 itself moves 0.05-0.14 ms."
    echo
    cat "$WORK/noisy.md" 2>/dev/null || echo "(not measured)"
    echo
    echo "\`bench/tls_halfopen.py\`: rounds of 5,000 connections that each send one ClientHello and nothing more; the"
    echo "emulator's VmRSS while they are open and after they close:"
    echo
    echo '```json'
    cat "$WORK/halfopen.jsonl" 2>/dev/null || echo "(not measured)"
    echo '```'
} >> "$OUT/RESULTS.md"
# The store benchmark (issue 12): SQLite against the JSON-file registry of 0.1.0, a section of RESULTS.md.
if [ $QUICK = 0 ] && [ $METHODS_ONLY = 0 ]; then
    echo "== store ==" >&2
    python3 "$REPO/bench/store_bench.py" --emulator "$EMU" --out "$OUT/RESULTS.md" > "$WORK/store.log" 2>&1 ||
        { fail "store bench"; tail -n 20 "$WORK/store.log" >&2; }
fi
if [ $FAILED = 1 ]; then
    echo "run.sh: something broke; logs:" >&2
    tail -n 20 "$WORK/emulator.log" "$WORK/mosquitto.log" "$WORK/startup.log" 2>/dev/null >&2 || true
    exit 1
fi
echo "run.sh: done: $OUT/RESULTS.md, $OUT/results.json" >&2
