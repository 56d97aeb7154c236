#!/bin/bash
# Aggregate decode tokens/s, time to first token and inter-token latency for 1, 4 and 8
# concurrent streams against one `elliott serve --parallel N -t THREADS`, and the same
# against llama.cpp's `llama-server -np N -t THREADS` on the same file (the peer chroot, as
# bench/compare-llamacpp.sh runs llama-bench). Both are started afresh for each N, one after
# the other, and get the same requests (bench/concurrency_client.py: N streams at once,
# distinct prompts, temperature 0, TOKENS each, REPS rounds).
#
# usage: bench/concurrency.sh [-t THREADS] [-n TOKENS] [-r REPS] [-s "1 4 8"] [-c CTX]
#                             [--long WORDS] [--long-streams N] [--long-tokens T]
#                             [--llama-variant avx2|best] [--llama-arg ARG]... [--no-llama]
#                             MODEL.gguf
#
# --long WORDS adds the long-prompt interference case: N streams (--long-streams, default 4)
# of T tokens each (--long-tokens, default 160) and, once all have their first token, one
# request whose prompt is a document of WORDS words; it reports that request's time to
# first token and the streams' inter-token gaps while it was read (p50, p99, max). Both
# servers get one slot more than N, for the long request.
#
# --llama-arg adds an option to llama-server's command line (by default it gets --poll 0; why: in the script).
# CTX (default 1024) is the context of one slot: both servers get `-c CTX*N`, the KV pool their
# N slots share (llama-server's -c is shared by its slots, as elliott's is); with --long,
# CTX is raised to hold the document. With the llama.cpp peer absent, or without
# root (chroot), elliott's numbers alone. Output: one line per run, then a table.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
threads=2 tokens=64 reps=2 levels="1 4 8" ctx=1024 variant=avx2 llama=1 model=
long_words=0 long_streams=4 long_tokens=160
# llama.cpp's threads poll for work by default; on a machine shared with other work
# (where these numbers are taken) the polling threads lose their time slices and its decode
# ran 2-3x slower than with --poll 0 (polling off), so it gets --poll 0 unless told otherwise.
llama_args=(--poll 0)
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        -n) tokens=$2; shift 2 ;;
        -r) reps=$2; shift 2 ;;
        -s) levels=$2; shift 2 ;;
        -c) ctx=$2; shift 2 ;;
        --llama-variant) variant=$2; shift 2 ;;
        --long) long_words=$2; shift 2 ;;
        --long-streams) long_streams=$2; shift 2 ;;
        --long-tokens) long_tokens=$2; shift 2 ;;
        --no-llama) llama=0; shift ;;
        --llama-arg) llama_args+=("$2"); shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "concurrency.sh: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$model" ] || { echo "concurrency.sh: one model" >&2; exit 2; }; model=$1; shift ;;
    esac
done
[ -n "$model" ] && [ -r "$model" ] || { echo "concurrency.sh: no readable model given (see --help)" >&2; exit 2; }
case $variant in avx2|best) ;; *) echo "concurrency.sh: --llama-variant is avx2 or best" >&2; exit 2 ;; esac
model=$(readlink -f "$model")

elliott=${ELLIOTT_BIN:-$here/build/elliott}
[ -x "$elliott" ] || { echo "concurrency.sh: $elliott not built (run make)" >&2; exit 1; }
peer=${ELLIOTT_PEER:-/var/tmp/elliott-peer}
sid=$peer/sid
backends=usr/lib/x86_64-linux-gnu/ggml/backends0
avx2_dir=$peer/avx2-only
if [ $llama = 1 ] && [ ! -x "$sid/usr/bin/llama-server" ]; then
    llama=0; echo "llama.cpp peer absent ($sid/usr/bin/llama-server): elliott numbers only" >&2
elif [ $llama = 1 ] && [ "$(id -u)" -ne 0 ]; then
    llama=0; echo "llama.cpp peer present but running it needs root (chroot): elliott numbers only" >&2
fi
if [ $llama = 1 ] && [ $variant = avx2 ]; then
    mkdir -p "$avx2_dir"
    cp -u "$sid/$backends/libggml-cpu-haswell.so" "$avx2_dir/"
fi

scratch=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap 'stop_server; rm -rf "$scratch"' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_healthy() { # PORT: both servers answer /health 200 once the model is loaded
    for _ in $(seq 1 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.25
    done
    echo "concurrency.sh: the server did not become ready; its log:" >&2
    tail -n 20 "$scratch/server.log" >&2
    return 1
}

start_elliott() { # N PORT
    "$elliott" serve -m "$model" --port "$2" -t "$threads" --parallel "$1" -c $((ctx * $1)) \
        --max-tokens "$tokens" > "$scratch/server.log" 2>&1 &
    server_pid=$!
}

# The model's folder bound into the chroot in a private mount namespace; for the AVX2
# comparison the CPU backend folder is replaced by one holding only haswell. `exec` all the
# way down, so that $! is llama-server itself.
start_llama() { # N PORT
    unshare -m bash -c '
        set -e
        sid=$1 dir=$2 base=$3 variant=$4 avx2_dir=$5 backends=$6; shift 6
        mkdir -p "$sid/mnt/elliott-models"
        mount --bind "$dir" "$sid/mnt/elliott-models"
        [ "$variant" = avx2 ] && mount --bind "$avx2_dir" "$sid/$backends"
        for d in proc sys dev; do mountpoint -q "$sid/$d" || mount --bind /$d "$sid/$d"; done
        exec chroot "$sid" llama-server -m "/mnt/elliott-models/$base" "$@"
    ' _ "$sid" "$(dirname "$model")" "$(basename "$model")" "$variant" "$avx2_dir" "$backends" \
        --host 127.0.0.1 --port "$2" -t "$threads" -np "$1" -c $((ctx * $1)) ${llama_args[@]+"${llama_args[@]}"} \
        > "$scratch/server.log" 2>&1 &
    server_pid=$!
}

results=$scratch/results.jsonl
measure() { # SERVER N
    local port
    port=$(free_port)
    "start_$1" "$2" "$port"
    wait_healthy "$port"
    python3 "$here/bench/concurrency_client.py" --port "$port" --streams "$2" --tokens "$tokens" \
        --rounds "$reps" --label "$1" | tee -a "$results"
    stop_server
}

echo "model $(basename "$model"), $threads threads, $tokens tokens per stream, $reps rounds; $(uptime)"
for n in $levels; do
    measure elliott "$n"
    [ $llama = 1 ] && measure llama "$n"
done
if [ "$long_words" -gt 0 ]; then
    long_results=$scratch/long.jsonl
    tokens_main=$tokens ctx_main=$ctx
    tokens=$long_tokens
    # per slot: the document (about 1.3 tokens a word) spread over the slots, or a stream
    ctx=$(( (long_words * 3 / 2 + 64) / (long_streams + 1) + long_tokens + 64 ))
    [ $ctx -ge "$ctx_main" ] || ctx=$ctx_main
    for server in elliott llama; do
        [ $server = llama ] && [ $llama = 0 ] && continue
        port=$(free_port)
        "start_$server" $((long_streams + 1)) "$port"
        wait_healthy "$port"
        python3 "$here/bench/concurrency_client.py" --port "$port" --streams "$long_streams" --tokens "$tokens" \
            --rounds "$reps" --label "$server" --long-words "$long_words" | tee -a "$long_results"
        stop_server
    done
    tokens=$tokens_main ctx=$ctx_main
fi
echo "load after: $(uptime)"

[ -s "$results" ] && python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["label"], r["streams"]): r for r in rows}
one = by.get(("elliott", 1))
print("| server | streams | decode tok/s (aggregate) | vs 1 stream | vs llama-server | TTFT p50 / p99 ms | ITL p50 / p99 ms |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    base = by.get((r["label"], 1))
    peer = by.get(("llama", r["streams"]))
    scale = "%.2fx" % (r["decode_tps"] / base["decode_tps"]) if base and base["decode_tps"] else "-"
    vs = "%.2fx" % (r["decode_tps"] / peer["decode_tps"]) if r["label"] == "elliott" and peer and peer["decode_tps"] else "-"
    print("| %s | %d | %.1f | %s | %s | %s / %s | %s / %s |" % (
        "elliott" if r["label"] == "elliott" else "llama-server", r["streams"], r["decode_tps"], scale, vs,
        r["ttft_ms_p50"], r["ttft_ms_p99"], r["itl_ms_p50"], r["itl_ms_p99"]))
EOF
if [ "$long_words" -gt 0 ] && [ -s "$scratch/long.jsonl" ]; then
    echo
    python3 - "$scratch/long.jsonl" <<'EOF'
import json, sys
print("| server | streams + long prompt | its TTFT p50 ms | streams' ITL while it is read: p50 / p99 / max ms (gaps) | ITL overall p50 / p99 ms | decode tok/s |")
print("|---|---|---|---|---|---|")
for l in open(sys.argv[1]):
    r = json.loads(l)
    print("| %s | %d + %d words | %s | %s / %s / %s (%d) | %s / %s | %.1f |" % (
        "elliott" if r["label"] == "elliott" else "llama-server", r["streams"], r["long_words"],
        r["long_ttft_ms_p50"], r["itl_during_long_ms_p50"], r["itl_during_long_ms_p99"],
        r["itl_during_long_ms_max"], r["gaps_during_long"], r["itl_ms_p50"], r["itl_ms_p99"], r["decode_tps"]))
EOF
fi
