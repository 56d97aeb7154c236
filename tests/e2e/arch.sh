#!/bin/bash
# The newer architectures through the commands: make-model writes gemma4 (MoE) and
# gemma-embedding models, quantize converts the matrices and experts but keeps routers
# and vectors, inspect names each tensor's part and says the model runs, logits runs the
# quantized gemma4 and refuses the embedding model with a clear message.
set -u
elliott=${1:?usage: arch.sh ELLIOTT_BINARY}
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$elliott" make-model --arch gemma4 --shape tiny-gemma4-moe --type f32 --n-vocab 300 --seed 3 "$dir/moe.gguf" ||
    fail "make-model gemma4"
"$elliott" quantize "$dir/moe.gguf" "$dir/moe-q8.gguf" q8_0 2>/dev/null || fail "quantize gemma4 to q8_0"
"$elliott" inspect "$dir/moe-q8.gguf" >"$dir/out" 2>&1 || fail "inspect: exit $?"
for want in 'blk.0.ffn_gate_inp.weight +F32 +\[64, 4\] .* router' \
            'blk.0.ffn_gate_up_exps.weight +Q8_0 +\[64, 64, 4\] .* matrix' \
            'blk.0.ffn_down_exps.scale +F32 .* vector' 'rope_freqs.weight +F32' \
            '^model: runs here: gemma4, 6 layers.*4 experts \(2 per token\)'; do
    grep -Eq "$want" "$dir/out" || fail "inspect of the quantized gemma4 lacks /$want/"
done
"$elliott" logits -m "$dir/moe-q8.gguf" --tokens 1,2,3 --top 3 -t 1 >"$dir/out" 2>&1 || fail "logits gemma4: $(cat "$dir/out")"
grep -q '"pos":2' "$dir/out" || fail "logits gemma4: no third position"
"$elliott" make-model --arch gemma4 --shape tiny --type f32 --n-vocab 300 "$dir/x.gguf" 2>"$dir/err"
[ $? -ne 0 ] && grep -q "not for gemma4" "$dir/err" || fail "make-model gemma4 with a classic shape: $(cat "$dir/err")"

"$elliott" make-model --arch gemma-embedding --shape tiny-gemma-embedding --type q8_0 --n-vocab 300 "$dir/emb.gguf" ||
    fail "make-model gemma-embedding"
"$elliott" inspect --json "$dir/emb.gguf" >"$dir/out" 2>&1 || fail "inspect --json embedding: exit $?"
python3 - "$dir/out" <<'PY' || fail "inspect --json of the embedding model"
import json, sys
d = json.load(open(sys.argv[1]))
m = d["model"]
assert m["runs"] and m["arch"] == "gemma-embedding" and m["embedding_model"], m
parts = {t["name"]: t["part"] for t in d["tensors"]}
assert parts["dense_2.weight"] == "matrix" and parts["token_embd.weight"] == "table", parts
PY
"$elliott" logits -m "$dir/emb.gguf" --tokens 1,2 >"$dir/out" 2>&1
[ $? -ne 0 ] && grep -q "embedding model" "$dir/out" || fail "logits on an embedding model: $(cat "$dir/out")"
"$elliott" inspect tests/data/vocab-gemma3.gguf --no-tensors >"$dir/out" 2>&1 || fail "inspect vocab: exit $?"
grep -q "^model: elliott does not run this file" "$dir/out" || fail "inspect of a vocabulary-only file: $(tail -2 "$dir/out")"

[ $failures -eq 0 ] && echo "arch: all passed"
exit $((failures > 0))
