#!/bin/bash
# Free vs constrained (JSON Schema, json_object) decoding speed on one model, through
# `elliott serve` (see bench/constrained_decoding.py).
# usage: bench/constrained-decoding.sh MODEL.gguf [-t THREADS] [--reps N] [--max-tokens N]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
model=$1; shift
threads=2
args=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
log=$(mktemp)
"$here/build/elliott" serve --port 0 -m "$model" -t "$threads" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
port=
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9][0-9]*\)$/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
    sleep 0.2
done
echo "model $model, $threads threads, load: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$here/bench/constrained_decoding.py" --port "$port" "${args[@]}"
