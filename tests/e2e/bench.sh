#!/bin/bash
# elliott bench end to end: both output formats on a small model written by make-model (the
# JSON lines carry llama-bench's field names, which bench/compare-llamacpp.sh reads), and
# usage errors. Speed itself is never asserted here.
set -u
bin=${1:?usage: bench.sh ELLIOTT_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

"$bin" make-model --arch gemma2 --shape tiny --type q4_0 --n-vocab 512 --seed 3 "$tmp/m.gguf" 2>/dev/null \
    || { echo "FAIL make-model"; exit 1; }

"$bin" bench -m "$tmp/m.gguf" -p 16 -n 4 -r 2 -t 2 >"$tmp/md" 2>"$tmp/err" && ok "markdown run" || bad "markdown run: $(cat "$tmp/err")"
grep -qE '^\| m\.gguf .* pp16 +\| +[0-9.]+ ± [0-9.]+ \|$' "$tmp/md" && ok "pp16 row" || bad "pp16 row: $(cat "$tmp/md")"
grep -qE '^\| m\.gguf .* tg4 +\| +[0-9.]+ ± [0-9.]+ \|$' "$tmp/md" && ok "tg4 row" || bad "tg4 row"

"$bin" bench -m "$tmp/m.gguf" -p 16 -n 4 -r 2 -t 1 -o jsonl >"$tmp/jsonl" 2>"$tmp/err" && ok "jsonl run" || bad "jsonl run"
python3 - "$tmp/jsonl" <<'PY' && ok "jsonl fields" || bad "jsonl fields: $(cat "$tmp/jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2
pp, tg = rows
assert (pp["n_prompt"], pp["n_gen"], tg["n_prompt"], tg["n_gen"]) == (16, 0, 0, 4)
for r in rows:
    assert r["n_threads"] == 1 and r["avg_ts"] > 0 and r["stddev_ts"] >= 0 and len(r["samples_ts"]) == 2
    assert r["model_filename"].endswith("m.gguf") and r["model_size"] > 0 and r["model_n_params"] > 0
PY
"$bin" bench -m "$tmp/m.gguf" -p 0 -n 2 -r 1 | grep -q 'tg2' && ok "-p 0 skips the prompt test" || bad "-p 0"

# -d: the tests run after that many cached tokens (llama-bench's n_depth field and "@ dN" label)
"$bin" bench -m "$tmp/m.gguf" -p 8 -n 2 -d 40 -r 1 -o jsonl >"$tmp/depth" 2>"$tmp/err" && ok "-d run" || bad "-d run: $(cat "$tmp/err")"
python3 - "$tmp/depth" <<'PY' && ok "-d jsonl n_depth" || bad "-d jsonl: $(cat "$tmp/depth")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["n_depth"] for r in rows] == [40, 40] and rows[0]["n_prompt"] == 8 and rows[1]["n_gen"] == 2
PY
"$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -d 600 -r 1 | grep -qE '\| +pp8 @ d600 \|' && ok "-d markdown label (depth over one batch)" || bad "-d markdown"
"$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 -o jsonl | grep -q '"n_depth":0' && ok "n_depth 0 by default" || bad "n_depth default"

# --cache-type: the KV cache type that ran, in llama-bench's type_k/type_v fields and columns
# (a Q8_0 cache needs heads of whole Q8_0 blocks: the tiny-mha shape's 32)
"$bin" make-model --arch gemma2 --shape tiny-mha --type q4_0 --n-vocab 512 --seed 3 "$tmp/mha.gguf" 2>/dev/null \
    || { echo "FAIL make-model tiny-mha"; exit 1; }
"$bin" bench -m "$tmp/mha.gguf" -p 8 -n 2 -d 40 -r 1 --cache-type q8_0 -o jsonl >"$tmp/q8" 2>"$tmp/err" \
    && [ "$(grep -c '"type_k":"q8_0","type_v":"q8_0"' "$tmp/q8")" -eq 2 ] && ok "--cache-type q8_0: jsonl type_k/type_v" \
    || bad "--cache-type q8_0: $(cat "$tmp/q8" "$tmp/err")"
"$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 -o jsonl | grep -q '"type_k":"f16","type_v":"f16"' && ok "f16 cache by default" || bad "type_k default"
"$bin" bench -m "$tmp/mha.gguf" -p 8 -n 0 -r 1 --cache-type q8_0 | grep -qE '^\| mha\.gguf .*\| q8_0 +\| q8_0 +\| +pp8 \|' \
    && ok "--cache-type q8_0: markdown columns" || bad "--cache-type markdown"
"$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 --cache-type q5 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q -- "--cache-type: 'q5' is not a KV cache type" "$tmp/err" && ok "bad --cache-type: exit 2 naming it" \
    || bad "bad --cache-type: $(cat "$tmp/err")"

usage() { # description, args...
    local what=$1; shift
    "$bin" bench "$@" >/dev/null 2>"$tmp/err"
    [ $? -eq 2 ] && [ -s "$tmp/err" ] && ok "$what" || bad "$what"
}
usage "no model" -p 8
usage "nothing to measure" -m "$tmp/m.gguf" -p 0 -n 0
usage "bad -r" -m "$tmp/m.gguf" -r 0
usage "bad -d" -m "$tmp/m.gguf" -d -1
usage "bad -o" -m "$tmp/m.gguf" -o csv
usage "unknown option" -m "$tmp/m.gguf" --bogus
"$bin" bench -m "$tmp/missing.gguf" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q missing.gguf "$tmp/err" && ok "missing model: exit 1" || bad "missing model"
"$bin" bench --help | grep -q '^usage: elliott bench' && ok "--help" || bad "--help"

# ELLIOTT_ISA forces a kernel path (the output names it); one this CPU cannot run, or an
# unknown name, is refused at startup with exit status 2.
ELLIOTT_ISA=scalar "$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 -o jsonl >"$tmp/isa" 2>"$tmp/err" \
    && grep -q '"isa":"scalar"' "$tmp/isa" && ok "ELLIOTT_ISA=scalar: jsonl isa" || bad "ELLIOTT_ISA=scalar: $(cat "$tmp/isa" "$tmp/err")"
ELLIOTT_ISA=scalar "$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 | grep -qE '^\| m\.gguf .*\| scalar +\|' \
    && ok "ELLIOTT_ISA=scalar: markdown isa" || bad "ELLIOTT_ISA=scalar markdown"
ELLIOTT_ISA=sse9 "$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q 'ELLIOTT_ISA=sse9' "$tmp/err" && ok "unknown ELLIOTT_ISA: exit 2" || bad "unknown ELLIOTT_ISA: $(cat "$tmp/err")"
for isa in avx2 avx-vnni avx512; do
    if ELLIOTT_ISA=$isa "$bin" bench -m "$tmp/m.gguf" -p 8 -n 0 -r 1 -o jsonl >"$tmp/isa" 2>"$tmp/err"; then
        grep -q "\"isa\":\"$isa\"" "$tmp/isa" && ok "ELLIOTT_ISA=$isa runs" || bad "ELLIOTT_ISA=$isa: $(cat "$tmp/isa")"
    else
        [ $? -eq 2 ] && grep -q "cannot run" "$tmp/err" && ok "ELLIOTT_ISA=$isa refused here" || bad "ELLIOTT_ISA=$isa: $(cat "$tmp/err")"
    fi
done
exit $fail
