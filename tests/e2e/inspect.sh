#!/bin/bash
# elliott inspect: valid files are described (text and JSON), every file of the broken
# corpus is refused with exit 1 and a message on stderr, usage errors exit 2.
set -u
elliott=${1:?usage: inspect.sh ELLIOTT_BINARY}
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

for f in tests/gguf/corpus/*.gguf; do
    "$elliott" inspect "$f" >"$out" 2>"$err"; rc=$?
    [ $rc -eq 1 ] || fail "$f: exit $rc, expected 1"
    grep -q "$f: " "$err" || fail "$f: no message naming the file on stderr: $(cat "$err")"
    [ -s "$out" ] && fail "$f: printed to stdout"
done

"$elliott" inspect /nonexistent/model.gguf >/dev/null 2>"$err"
[ $? -eq 1 ] && grep -q "cannot open" "$err" || fail "missing file: $(cat "$err")"
"$elliott" inspect >/dev/null 2>&1; [ $? -eq 2 ] || fail "no file: expected exit 2"
"$elliott" inspect --frobnicate x.gguf >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad option: expected exit 2"
"$elliott" inspect a.gguf b.gguf >/dev/null 2>&1; [ $? -eq 2 ] || fail "two files: expected exit 2"
dir=$(mktemp -d)
"$elliott" inspect "$dir" >/dev/null 2>"$err"
[ $? -eq 1 ] && [ "$(wc -l <"$err")" -eq 1 ] && grep -q "not a regular file" "$err" || fail "directory: $(cat "$err")"
rmdir "$dir"
"$elliott" inspect --json=yes x.gguf >/dev/null 2>"$err"
[ $? -eq 2 ] && grep -q "^elliott inspect: --json takes no value" "$err" || fail "flag with a value: $(cat "$err")"
"$elliott" inspect --frobnicate x.gguf >/dev/null 2>"$err"
[ "$(wc -l <"$err")" -eq 2 ] && grep -q "^elliott inspect: unknown option '--frobnicate'" "$err" ||
    fail "bad option: one message and the --help hint: $(cat "$err")"
"$elliott" inspect --help >"$out" 2>&1 && grep -q "usage: elliott inspect" "$out" || fail "--help"

# A valid file: the fuzz seed model always exists; the golden model when the shared data does.
seed=fuzz/seeds/gguf/model.gguf
"$elliott" inspect "$seed" >"$out" 2>"$err" || fail "$seed: exit $?: $(cat "$err")"
grep -q "blk.0.attn_q.weight *Q8_0 *\[32, 4\]" "$out" || fail "$seed: tensor table lacks blk.0.attn_q.weight"
grep -q "totals: 4 tensors" "$out" || fail "$seed: totals"
grep -Eq "^kernels: (scalar|avx2|avx-vnni|avx512) \(this CPU runs: scalar" "$out" || fail "$seed: kernels line"
ELLIOTT_ISA=scalar "$elliott" inspect "$seed" 2>&1 | grep -q "^kernels: scalar " || fail "ELLIOTT_ISA=scalar not shown"
ELLIOTT_ISA=avx1024 "$elliott" inspect "$seed" >"$out" 2>"$err"
[ $? -eq 2 ] && grep -q "^elliott: ELLIOTT_ISA=avx1024 is not one of" "$err" || fail "unknown ELLIOTT_ISA: $(cat "$err")"

golden=${ELLIOTT_SHARED:-../shared}/golden/models/tiny-gemma3-q8_0.gguf
if [ -r "$golden" ]; then
    "$elliott" inspect "$golden" >"$out" 2>"$err" || fail "$golden: exit $?: $(cat "$err")"
    for want in 'general.architecture +STRING +"gemma3"' 'tokenizer.ggml.tokens +STRING\[262144\]' \
                'token_embd.weight +Q8_0 +\[64, 262144\]' 'blk.1.attn_q_norm.weight' 'output_norm.weight'; do
        grep -Eq "$want" "$out" || fail "$golden: output lacks /$want/"
    done
    "$elliott" inspect --json "$golden" >"$out" 2>"$err" || fail "$golden --json: exit $?"
    python3 - "$out" <<'PY' || fail "$golden --json: unexpected JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 3 and d["alignment"] == 32
keys = {kv["key"]: kv for kv in d["metadata"]}
assert keys["general.architecture"]["value"] == "gemma3"
assert keys["tokenizer.ggml.tokens"]["length"] == 262144
names = [t["name"] for t in d["tensors"]]
assert "token_embd.weight" in names and len(names) == d["totals"]["tensors"]
assert sum(v["bytes"] for v in d["totals"]["by_type"].values()) == d["totals"]["bytes"]
assert d["kernels"]["isa"] in d["kernels"]["available"] and d["kernels"]["available"][0] == "scalar"
PY
    "$elliott" inspect --json --no-tensors "$golden" >"$out" 2>&1 || fail "--no-tensors: exit $?"
    grep -q '"tensors": \[' "$out" && fail "--no-tensors still lists tensors"
else
    echo "SKIP: $golden absent"
fi

[ $failures -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "inspect: all checks passed"
