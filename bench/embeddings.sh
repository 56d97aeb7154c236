#!/bin/bash
# Embedding throughput (inputs/s) of elliott serve against llama.cpp's llama-server
# --embeddings on the same file: an EmbeddingGemma-300M-shaped model with random
# weights (elliott make-model), Q8_0, both servers on the same threads, the same
# inputs in one request, rounds alternated between the servers.
# usage: bash bench/embeddings.sh [path/to/elliott] [INPUTS] [ROUNDS]
# The peer runs in the chroot of ../shared/peer (PEER_ROOT, default
# /var/tmp/elliott-peer/sid); without it only elliott is measured.
set -eu
ELLIOTT=${1:-build/elliott}
INPUTS=${2:-32}
ROUNDS=${3:-3}
THREADS=${THREADS:-2}
PEER_ROOT=${PEER_ROOT:-/var/tmp/elliott-peer/sid}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
    [ -n "${PEER_TMP:-}" ] && rm -rf "$PEER_TMP"
}
trap cleanup EXIT
"$ELLIOTT" make-model --arch gemma-embedding --shape embeddinggemma-300m --type q8_0 \
    --vocab "$HERE/../tests/data/vocab-gemma3.gguf" "$TMP/emb.gguf" >/dev/null
wait_health() {
    for _ in $(seq 1 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$1/health" && return 0
        sleep 0.2
    done
    echo "server on port $1 did not become ready" >&2
    exit 1
}
"$ELLIOTT" serve -m "$TMP/emb.gguf" --port 18961 -t "$THREADS" 2>"$TMP/elliott.log" &
PIDS+=($!)
SERVERS=(elliott=18961)
if [ -x "$PEER_ROOT/usr/bin/llama-server" ]; then
    PEER_TMP=$(mktemp -d "$PEER_ROOT/tmp/embbench.XXXXXX")
    cp "$TMP/emb.gguf" "$PEER_TMP/emb.gguf"
    chroot "$PEER_ROOT" llama-server -m "${PEER_TMP#"$PEER_ROOT"}/emb.gguf" --embeddings --port 18962 \
        -t "$THREADS" -b 2048 -ub 2048 2>"$TMP/llama.log" >&2 &
    PIDS+=($!)
    SERVERS+=(llama.cpp=18962)
    wait_health 18962
fi
wait_health 18961
uptime
python3 "$HERE/embed_client.py" --inputs "$INPUTS" --rounds "$ROUNDS" "${SERVERS[@]}"
