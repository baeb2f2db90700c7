#!/bin/sh
# Runs one libFuzzer harness for a fixed time on a scratch copy of its seed corpus (the repo is never written).
# usage: run_fuzzer.sh FUZZER CORPUS SECONDS [MAX_LEN (default 70000)]
set -eu
fuzzer=$1; corpus=$2; seconds=$3; max_len=${4:-70000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -d "$corpus" ]; then cp -r "$corpus"/. "$work"/; fi
"$fuzzer" -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 "$work"
