#!/bin/bash
# Time to first token of a long conversation's second turn against its first
# (bench/prefix_reuse.py: a document of WORDS words as the first message, OTHERS short
# conversations in between, then the whole history plus a question), against one
# `elliott serve --parallel SLOTS -t THREADS`, with the prefix cache and, for reference,
# with --no-prefix-cache (where turn 2 reads everything again).
#
# usage: bench/prefix-reuse.sh [-t THREADS] [-p SLOTS] [-w WORDS] [-r ROUNDS] [-o OTHERS] MODEL.gguf
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
threads=2 slots=4 words=1200 rounds=3 others=3 model=
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        -p) slots=$2; shift 2 ;;
        -w) words=$2; shift 2 ;;
        -r) rounds=$2; shift 2 ;;
        -o) others=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "prefix-reuse.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$model" ] || { echo "prefix-reuse.sh: one model" >&2; exit 2; }; model=$1; shift ;;
    esac
done
[ -n "$model" ] && [ -r "$model" ] || { echo "prefix-reuse.sh: no readable model given (see --help)" >&2; exit 2; }
elliott=${ELLIOTT_BIN:-$here/build/elliott}
[ -x "$elliott" ] || { echo "prefix-reuse.sh: $elliott not built (run make)" >&2; exit 1; }

scratch=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap 'stop_server; rm -rf "$scratch"' EXIT

measure() { # LABEL [EXTRA SERVE ARGS]
    local label=$1; shift
    "$elliott" serve -m "$model" --port 0 -t "$threads" --parallel "$slots" "$@" > "$scratch/server.log" 2>&1 &
    server_pid=$!
    local port=
    for _ in $(seq 1 1200); do
        port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$scratch/server.log")
        [ -n "$port" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$scratch/server.log" >&2; exit 1; }
        sleep 0.25
    done
    python3 "$here/bench/prefix_reuse.py" --port "$port" --words "$words" --rounds "$rounds" --others "$others" \
        --label "$label"
    stop_server
}

echo "model $(basename "$model"), $threads threads, --parallel $slots, $words words, $rounds rounds; $(uptime)"
measure "prefix cache"
measure "no prefix cache" --no-prefix-cache
echo "load after: $(uptime)"
