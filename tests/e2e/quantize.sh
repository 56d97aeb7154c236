#!/bin/bash
# elliott quantize end to end: small random f32 models (make-model) converted to Q8_0,
# Q4_0 and Q4_K_M; the written files pass inspect with the expected tensor types, logits
# runs on them and agrees with the f32 model on the top token; usage and input errors.
set -u
bin=${1:?usage: quantize.sh ELLIOTT_BINARY}
[ -x "$bin" ] || { echo "FAIL: $bin is not an executable"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # description, command...
    local what=$1; shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# "name type" per tensor, from inspect's JSON.
tensor_types() { # MODEL
    "$bin" inspect --json "$1" | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tensors"]:
    print(t["name"], t["type"])'
}
type_of() { # MODEL TENSOR
    tensor_types "$1" | awk -v n="$2" '$1 == n { print $2 }'
}
top_ids() { # MODEL -> the top id at each position
    "$bin" logits -m "$1" --tokens 1,2,3,299 --top 1 -t 2 | grep -o '"top":\[\[[0-9]*' | tr -dc '0-9\n' | tr '\n' ' '
}

ids=1,2,3,299
"$bin" make-model --arch gemma --shape tiny --type f32 --n-vocab 300 --seed 5 "$tmp/f32.gguf" 2>"$tmp/err"
check "make-model writes an f32 tiny gemma" test $? -eq 0
want=$(top_ids "$tmp/f32.gguf")
check "logits on the f32 model ($want)" test -n "$want"

for type in Q8_0 Q4_0; do
    "$bin" quantize "$tmp/f32.gguf" "$tmp/$type.gguf" $type 2>"$tmp/err"
    check "quantize to $type" test $? -eq 0
    check "$type: inspect accepts it" "$bin" inspect "$tmp/$type.gguf" >/dev/null
    check "$type: attn_q is $type" test "$(type_of "$tmp/$type.gguf" blk.0.attn_q.weight)" = $type
    check "$type: ffn_down is $type" test "$(type_of "$tmp/$type.gguf" blk.1.ffn_down.weight)" = $type
    check "$type: norms stay F32" test "$(type_of "$tmp/$type.gguf" output_norm.weight)" = F32
    got=$(top_ids "$tmp/$type.gguf")
    check "$type: logits runs and keeps the top tokens ($got)" test "$got" = "$want"
done

# Q4_K_M needs rows of 256: the tiny-256 shape. llama.cpp's mix: Q4_K matrices, Q6_K for
# the tied output embedding and for attn_v / ffn_down in the last layer of two.
"$bin" make-model --arch gemma --shape tiny-256 --type f32 --n-vocab 300 --seed 5 "$tmp/f32-256.gguf" 2>"$tmp/err"
check "make-model writes an f32 tiny-256 gemma" test $? -eq 0
want=$(top_ids "$tmp/f32-256.gguf")
"$bin" quantize "$tmp/f32-256.gguf" "$tmp/q4km.gguf" Q4_K_M 2>"$tmp/err"
check "quantize to Q4_K_M" test $? -eq 0
check "Q4_K_M: attn_q is Q4_K" test "$(type_of "$tmp/q4km.gguf" blk.0.attn_q.weight)" = Q4_K
check "Q4_K_M: ffn_gate is Q4_K" test "$(type_of "$tmp/q4km.gguf" blk.1.ffn_gate.weight)" = Q4_K
check "Q4_K_M: last attn_v is Q6_K" test "$(type_of "$tmp/q4km.gguf" blk.1.attn_v.weight)" = Q6_K
check "Q4_K_M: last ffn_down is Q6_K" test "$(type_of "$tmp/q4km.gguf" blk.1.ffn_down.weight)" = Q6_K
check "Q4_K_M: token_embd is Q6_K" test "$(type_of "$tmp/q4km.gguf" token_embd.weight)" = Q6_K
got=$(top_ids "$tmp/q4km.gguf")
check "Q4_K_M: logits runs and keeps the top tokens ($got)" test "$got" = "$want"
# Rows too short for a K-quant block fall back (tiny: 64-wide rows).
"$bin" quantize "$tmp/f32.gguf" "$tmp/q4k-short.gguf" Q4_K 2>"$tmp/err"
check "Q4_K on 64-wide rows falls back to Q5_0" test "$(type_of "$tmp/q4k-short.gguf" blk.0.attn_q.weight)" = Q5_0

# Errors: unknown type (usage, 2), absent input (1), missing arguments (2), --help (0).
"$bin" quantize "$tmp/f32.gguf" "$tmp/x.gguf" Q9 >/dev/null 2>"$tmp/err"
check "unknown type is a usage error" test $? -eq 2
check "unknown type is named" grep -q "Q9" "$tmp/err"
"$bin" quantize "$tmp/absent.gguf" "$tmp/x.gguf" Q8_0 >/dev/null 2>"$tmp/err"
check "absent input fails with exit 1" test $? -eq 1
check "absent input is named" grep -q "absent.gguf" "$tmp/err"
check "no output left for a failed run" test ! -e "$tmp/x.gguf"
"$bin" quantize "$tmp/f32.gguf" >/dev/null 2>&1
check "missing arguments are a usage error" test $? -eq 2
"$bin" quantize --help | grep -q "usage: elliott quantize"
check "--help prints usage" test $? -eq 0

exit $fail
