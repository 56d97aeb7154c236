#!/bin/bash
# End-to-end test of `elliott pull` against tests/hub/fake_hf.py, a local stand-in
# for the Hugging Face hub: download and checksum, listing and default choice,
# resume after a dropped connection (proved by the bytes the server sent), checksum
# mismatch, token handling (401, success, never forwarded to the CDN host), 404,
# non-GGUF content, a server that ignores Range, an already complete .part (416),
# and a network failure.
# usage: bash tests/e2e/pull.sh ELLIOTT_BINARY
set -u
ELLIOTT=$(realpath "${1:-build/elliott}")
ROOT=$(pwd)
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

failures=0
checks=0
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    checks=$((checks + 1))
    if "$@"; then
        echo "  ok   $what"
    else
        echo "  FAIL $what"
        failures=$((failures + 1))
    fi
}

# ---- repositories -----------------------------------------------------------------
make_gguf() { # make_gguf PATH N_FLOATS SEED
    python3 - "$@" <<'EOF'
import random, struct, sys
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def s(b): return struct.pack("<Q", len(b)) + b
out = bytearray(b"GGUF") + struct.pack("<IQQ", 3, 1, 1)
out += s(b"general.architecture") + struct.pack("<I", 8) + s(b"llama")
out += s(b"weight") + struct.pack("<I", 1) + struct.pack("<Q", n) + struct.pack("<I", 0) + struct.pack("<Q", 0)
out += b"\0" * (-len(out) % 32)
out += random.Random(seed).randbytes(4 * n)
open(path, "wb").write(out)
EOF
}
R=$WORK/repos
mkdir -p "$R/tiny" "$R/nopref" "$R/ambiguous" "$R/bad" "$R/private"
make_gguf "$R/tiny/tiny-Q8_0.gguf" 750000 1
make_gguf "$R/tiny/tiny-Q4_K_M.gguf" 400000 2
make_gguf "$R/tiny/tiny-Q4_0.gguf" 500000 3
make_gguf "$R/tiny/tiny-00001-of-00002.gguf" 1000 4
echo "# tiny" > "$R/tiny/README.md"
make_gguf "$R/nopref/a-F16.gguf" 300000 5
make_gguf "$R/nopref/b-Q8_0.gguf" 100000 6
make_gguf "$R/ambiguous/x-Q4_K_M.gguf" 1000 7
make_gguf "$R/ambiguous/y-Q4_K_M.gguf" 1000 8
head -c 100000 /dev/urandom > "$R/bad/notgguf.gguf"
make_gguf "$R/private/secret-Q4_0.gguf" 200000 9

TOKEN=hf_e2eSecretToken123
python3 "$ROOT/tests/hub/fake_hf.py" --port-file "$WORK/port" --page-size 2 \
    --repo test/tiny-GGUF="$R/tiny" --repo test/nopref-GGUF="$R/nopref" \
    --repo test/ambiguous-GGUF="$R/ambiguous" --repo test/bad-GGUF="$R/bad" \
    --repo org/private-GGUF="$R/private" --private org/private-GGUF --token "$TOKEN" &
SERVER_PID=$!
for _ in $(seq 400); do [ -s "$WORK/port" ] && break; sleep 0.05; done
[ -s "$WORK/port" ] || { echo "fake_hf.py did not start"; exit 1; }
PORT=$(cat "$WORK/port")
export HF_ENDPOINT="http://127.0.0.1:$PORT"
unset HF_TOKEN ELLIOTT_MODELS XDG_CACHE_HOME
ctl() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "$HF_ENDPOINT/_control/$1"; }

# pull ARGS...: runs elliott pull, leaving stdout, stderr and status in OUT, ERR, RC
pull() {
    "$ELLIOTT" pull "$@" >"$WORK/out" 2>"$WORK/err"
    RC=$?
    OUT=$(cat "$WORK/out")
    ERR=$(cat "$WORK/err")
}
served_bytes() { # total body bytes the CDN sent for a file
    ctl stats | python3 -c "import json,sys; print(sum(r['bytes'] for r in json.load(sys.stdin) if r['path'].startswith('/cdn/') and r['path'].endswith('/$1')))"
}
ranges_sent() { # the Range headers of the CDN requests for a file
    ctl stats | python3 -c "import json,sys; print(' '.join(str(r['range']) for r in json.load(sys.stdin) if r['path'].startswith('/cdn/') and r['path'].endswith('/$1')))"
}

# ---- a plain download ----------------------------------------------------------------
echo "download"
D=$WORK/d1
pull test/tiny-GGUF tiny-Q8_0.gguf -o "$D"
check "exit 0" [ "$RC" -eq 0 ]
check "prints the final path on stdout" [ "$OUT" = "$D/tiny-Q8_0.gguf" ]
check "file identical to the server's" cmp -s "$D/tiny-Q8_0.gguf" "$R/tiny/tiny-Q8_0.gguf"
check "no .part left" [ ! -e "$D/tiny-Q8_0.gguf.part" ]
check "checksum verified" grep -q "sha256 $(sha256sum "$R/tiny/tiny-Q8_0.gguf" | cut -c1-64) verified" "$WORK/err"
check "followed the redirect to /cdn/" grep -q '/cdn/test/tiny-GGUF/tiny-Q8_0.gguf' <(ctl stats)
check "plain progress lines on a non-terminal" grep -q '100.0%  3.0 MB / 3.0 MB' "$WORK/err"
check "  no carriage returns" bash -c '! grep -q $'"'"'\r'"'"' "$0"' "$WORK/err"
pull test/tiny-GGUF tiny-Q8_0.gguf -o "$WORK/d1rev" --revision refs/pr/1
check "--revision goes into the URL, escaped" grep -q '/test/tiny-GGUF/resolve/refs%2Fpr%2F1/tiny-Q8_0.gguf' <(ctl stats)
pull test/tiny-GGUF tiny-Q8_0.gguf -o "$D"
check "second pull: already there, exit 0" [ "$RC" -eq 0 ]
check "second pull says so" grep -q "already there" "$WORK/err"

echo "default directory"
HOME=$WORK/home "$ELLIOTT" pull test/nopref-GGUF b-Q8_0.gguf >"$WORK/out" 2>"$WORK/err"
check "  lands in \$HOME/.cache/elliott/models" [ "$(cat "$WORK/out")" = "$WORK/home/.cache/elliott/models/b-Q8_0.gguf" ]
XDG_CACHE_HOME=$WORK/xdg HOME=$WORK/home2 "$ELLIOTT" pull test/nopref-GGUF b-Q8_0.gguf >"$WORK/out" 2>"$WORK/err"
check "  or in \$XDG_CACHE_HOME/elliott/models" [ "$(cat "$WORK/out")" = "$WORK/xdg/elliott/models/b-Q8_0.gguf" ]
XDG_CACHE_HOME=relative/cache HOME=$WORK/home3 "$ELLIOTT" pull test/nopref-GGUF b-Q8_0.gguf >"$WORK/out" 2>"$WORK/err"
check "  a relative XDG_CACHE_HOME is ignored" [ "$(cat "$WORK/out")" = "$WORK/home3/.cache/elliott/models/b-Q8_0.gguf" ]
ELLIOTT_MODELS=$WORK/models "$ELLIOTT" pull test/nopref-GGUF b-Q8_0.gguf >"$WORK/out" 2>"$WORK/err"
check "  ELLIOTT_MODELS wins" [ "$(cat "$WORK/out")" = "$WORK/models/b-Q8_0.gguf" ]

# ---- listing and default choice ---------------------------------------------------------
echo "listing"
pull test/tiny-GGUF --list
check "list exit 0" [ "$RC" -eq 0 ]
check "lists the three loadable .gguf files (pages followed)" [ "$(grep -c '\.gguf' <<<"$OUT")" -eq 3 ]
check "sizes are the LFS sizes" grep -q "3.0 MB  tiny-Q8_0.gguf" <<<"$OUT"
check "split parts and README left out" bash -c '! grep -q "00001-of\|README" <<<"$0"' "$OUT"
pull test/tiny-GGUF -o "$WORK/d2"
check "default prefers Q4_K_M" [ "$OUT" = "$WORK/d2/tiny-Q4_K_M.gguf" ]
check "  and says which it chose" grep -q "choosing tiny-Q4_K_M.gguf" "$WORK/err"
pull test/nopref-GGUF -o "$WORK/d2"
check "without Q4_K_M/Q4_0 the smallest" [ "$OUT" = "$WORK/d2/b-Q8_0.gguf" ]
pull test/ambiguous-GGUF -o "$WORK/d2"
check "ambiguous choice fails" [ "$RC" -eq 1 ]
check "  naming the candidates" grep -q "x-Q4_K_M.gguf, y-Q4_K_M.gguf" "$WORK/err"

# ---- resume -----------------------------------------------------------------------------
echo "resume"
ctl reset >/dev/null
ctl "set?drop_once=1" >/dev/null
D=$WORK/d3
pull test/tiny-GGUF tiny-Q4_0.gguf -o "$D" --retries 0
size=$(stat -c %s "$R/tiny/tiny-Q4_0.gguf")
check "dropped connection fails with --retries 0" [ "$RC" -eq 1 ]
check "  keeps the .part" [ -s "$D/tiny-Q4_0.gguf.part" ]
part=$(stat -c %s "$D/tiny-Q4_0.gguf.part" 2>/dev/null || echo 0)
check "  which is partial ($part of $size)" [ "$part" -gt 0 -a "$part" -lt "$size" ]
check "  and says how to resume" grep -q "run again to resume" "$WORK/err"
check "  no final file" [ ! -e "$D/tiny-Q4_0.gguf" ]
pull test/tiny-GGUF tiny-Q4_0.gguf -o "$D"
check "second run completes" [ "$RC" -eq 0 ]
check "  byte-identical" cmp -s "$D/tiny-Q4_0.gguf" "$R/tiny/tiny-Q4_0.gguf"
check "  asked for the rest with a Range" [ "$(ranges_sent tiny-Q4_0.gguf)" = "None bytes=$part-" ]
check "  server sent the file exactly once in total" [ "$(served_bytes tiny-Q4_0.gguf)" -eq "$size" ]

ctl reset >/dev/null
ctl "set?drop_once=1" >/dev/null
pull test/tiny-GGUF tiny-Q4_0.gguf -o "$WORK/d4"
check "automatic retry resumes in one run" [ "$RC" -eq 0 ]
check "  says it retried" grep -q "retrying" "$WORK/err"
check "  byte-identical" cmp -s "$WORK/d4/tiny-Q4_0.gguf" "$R/tiny/tiny-Q4_0.gguf"
check "  server sent the file exactly once in total" [ "$(served_bytes tiny-Q4_0.gguf)" -eq "$size" ]

echo "server that ignores Range"
ctl reset >/dev/null
ctl "set?no_range=1" >/dev/null
D=$WORK/d5
mkdir -p "$D"
head -c 1000 /dev/urandom > "$D/tiny-Q4_0.gguf.part" # wrong bytes: must be discarded
pull test/tiny-GGUF tiny-Q4_0.gguf -o "$D"
check "200 instead of 206 starts over" [ "$RC" -eq 0 ]
check "  byte-identical" cmp -s "$D/tiny-Q4_0.gguf" "$R/tiny/tiny-Q4_0.gguf"

echo "complete .part (416)"
ctl reset >/dev/null
D=$WORK/d6
mkdir -p "$D"
cp "$R/tiny/tiny-Q4_0.gguf" "$D/tiny-Q4_0.gguf.part"
pull test/tiny-GGUF tiny-Q4_0.gguf -o "$D"
check "416 with a matching checksum finishes" [ "$RC" -eq 0 ]
check "  byte-identical" cmp -s "$D/tiny-Q4_0.gguf" "$R/tiny/tiny-Q4_0.gguf"
check "  nothing was sent again" [ "$(served_bytes tiny-Q4_0.gguf)" -eq 0 ]
cat "$R/tiny/tiny-Q4_0.gguf" "$R/tiny/tiny-Q4_0.gguf" > "$D/tiny-Q4_K_M.gguf.part" # too long
pull test/tiny-GGUF tiny-Q4_K_M.gguf -o "$D"
check "416 with a wrong .part downloads afresh" [ "$RC" -eq 0 ]
check "  byte-identical" cmp -s "$D/tiny-Q4_K_M.gguf" "$R/tiny/tiny-Q4_K_M.gguf"

# ---- rejections ---------------------------------------------------------------------------
echo "checksum mismatch"
ctl "set?bad_sha=1" >/dev/null
D=$WORK/d7
pull test/tiny-GGUF tiny-Q8_0.gguf -o "$D"
check "exit 1" [ "$RC" -eq 1 ]
check "says checksum mismatch" grep -q "checksum mismatch" "$WORK/err"
check "no final file" [ ! -e "$D/tiny-Q8_0.gguf" ]
check "no .part either" [ ! -e "$D/tiny-Q8_0.gguf.part" ]
ctl reset >/dev/null

echo "token"
D=$WORK/d8
pull org/private-GGUF secret-Q4_0.gguf -o "$D"
check "401 without HF_TOKEN" [ "$RC" -eq 1 ]
check "  message says 401 and HF_TOKEN" grep -q "401.*HF_TOKEN" "$WORK/err"
pull org/private-GGUF --list
check "  listing 401 too" grep -q "401.*HF_TOKEN" "$WORK/err"
HF_TOKEN=hf_wrong pull org/private-GGUF secret-Q4_0.gguf -o "$D"
check "wrong token: 401 saying it was refused" grep -q "401.*refused" "$WORK/err"
HF_TOKEN=$TOKEN pull org/private-GGUF -o "$D"
check "success with HF_TOKEN (listing and download)" [ "$RC" -eq 0 ]
check "  byte-identical" cmp -s "$D/secret-Q4_0.gguf" "$R/private/secret-Q4_0.gguf"
check "  token sent to the endpoint" grep -q '"path": "/org/private-GGUF/resolve/main/secret-Q4_0.gguf", "range": null, "bytes": 0, "auth": true' <(ctl stats)
check "  token not forwarded to the CDN host" bash -c '! grep -q "\"/cdn/[^\"]*\", \"range\": [^,]*, \"bytes\": [0-9]*, \"auth\": true" <<<"$0"' "$(ctl stats)"
check "  token never printed" bash -c '! grep -rq "$0" "$1/out" "$1/err"' "$TOKEN" "$WORK"

echo "not found"
pull test/tiny-GGUF missing.gguf -o "$WORK/d9"
check "404 for a missing file: exit 1" [ "$RC" -eq 1 ]
check "  message" grep -q "404 Not Found: file missing.gguf in repository test/tiny-GGUF at revision main does not exist" "$WORK/err"
check "  no .part left" [ ! -e "$WORK/d9/missing.gguf.part" ]
pull test/nothere-GGUF -o "$WORK/d9"
check "404 for a missing repository" grep -q "404 Not Found: repository test/nothere-GGUF" "$WORK/err"

echo "not GGUF"
pull test/bad-GGUF notgguf.gguf -o "$WORK/d10"
check "exit 1" [ "$RC" -eq 1 ]
check "says not GGUF" grep -q "not GGUF" "$WORK/err"
check "no final file" [ ! -e "$WORK/d10/notgguf.gguf" ]

echo "arguments and network"
pull
check "no REPO: usage error 2" [ "$RC" -eq 2 ]
pull --help
check "--help exit 0" [ "$RC" -eq 0 ]
check "  usage on stdout" grep -q "usage: elliott pull" "$WORK/out"
pull noslash file.gguf -o "$WORK/d11"
check "bad repo name: exit 1" [ "$RC" -eq 1 ]
check "  message" grep -q "OWNER/NAME" "$WORK/err"
pull test/tiny-GGUF ../escape.gguf -o "$WORK/d11"
check "'..' in FILE rejected" [ "$RC" -eq 1 ]
check "  message" grep -q "'..'" "$WORK/err"
pull test/tiny-GGUF x.gguf --retries -1
check "bad --retries: usage error 2" [ "$RC" -eq 2 ]
pull test/tiny-GGUF x.gguf --frobnicate
check "unknown option: usage error 2" [ "$RC" -eq 2 ]
check "  one message and the --help hint" [ "$(wc -l <"$WORK/err")" -eq 2 ]
check "  naming the option" grep -q "^elliott pull: unknown option '--frobnicate'" "$WORK/err"
pull test/tiny-GGUF sub/dir/ -o "$WORK/d11"
check "FILE ending in '/' rejected" [ "$RC" -eq 1 ]
HF_ENDPOINT=ftp://example.org pull test/tiny-GGUF x.gguf -o "$WORK/d11"
check "non-http HF_ENDPOINT rejected" [ "$RC" -eq 1 ]
check "  message" grep -q "HF_ENDPOINT" "$WORK/err"
HF_ENDPOINT=http://127.0.0.1:1 pull test/tiny-GGUF tiny-Q8_0.gguf -o "$WORK/d11" --retries 0
check "connection refused: exit 1" [ "$RC" -eq 1 ]
check "  network error" grep -q "network error" "$WORK/err"

echo "$checks checks, $failures failures"
[ "$failures" -eq 0 ]
