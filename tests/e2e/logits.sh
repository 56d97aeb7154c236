#!/bin/bash
# elliott logits and make-model end to end: golden top ids from a golden model, usage
# errors (exit 2 with a message) for bad --tokens, and a model written by make-model
# that logits can read.
set -u
bin=${1:?usage: logits.sh ELLIOTT_BINARY}
shared=${ELLIOTT_SHARED:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # description, command...
    local what=$1; shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

# Usage errors: exit 2 and a message naming the option.
usage_error() { # expected-substring, args...
    local want=$1; shift
    "$bin" logits "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ $rc -eq 2 ] && grep -q -- "$want" "$tmp/err" && [ ! -s "$tmp/out" ]
}

model=$shared/golden/models/tiny-gemma-q8_0.gguf
check "bad --tokens: letters" usage_error --tokens -m "$model" --tokens 2,abc
check "bad --tokens: empty" usage_error --tokens -m "$model" --tokens ""
check "bad --tokens: negative" usage_error --tokens -m "$model" --tokens 2,-5
check "bad --tokens: trailing comma" usage_error --tokens -m "$model" --tokens 2,3,
check "bad --tokens: huge" usage_error --tokens -m "$model" --tokens 99999999999
check "missing --tokens" usage_error --tokens -m "$model"
check "bad --top" usage_error --top -m "$model" --tokens 2 --top 0
"$bin" logits --help | grep -q "usage: elliott logits" || { echo "FAIL --help"; fail=1; }

if [ -r "$model" ]; then
    check "id beyond the vocabulary" usage_error vocabulary -m "$model" --tokens 2,256000
    # The chat-hello prompt of the golden file: the top id at every position must match.
    ids=2,106,1645,108,4521,235269,1368,708,692,235336,107,108,106,2516,108
    "$bin" logits -m "$model" --tokens "$ids" --top 1 -t 2 >"$tmp/logits.json" 2>"$tmp/err"
    check "logits on a golden model" test $? -eq 0
    want=$(grep -o '"top":\[\[[0-9]*' "$shared/golden/models/tiny-gemma-q8_0.logits.json" | head -15 | tr -dc '0-9\n' | tr '\n' ' ')
    got=$(grep -o '"top":\[\[[0-9]*' "$tmp/logits.json" | tr -dc '0-9\n' | tr '\n' ' ')
    check "golden top ids ($got)" test "$got" = "$want"
else
    echo "SKIP: golden models absent at $shared"
fi

# make-model -> logits, without a tokenizer file.
"$bin" make-model --arch gemma2 --shape tiny --type q8_0 --n-vocab 300 --seed 7 "$tmp/tiny.gguf" 2>"$tmp/err"
check "make-model writes a tiny gemma2" test $? -eq 0
"$bin" logits -m "$tmp/tiny.gguf" --tokens 1,2,3,299 --top 5 >"$tmp/tiny.json" 2>"$tmp/err"
check "logits reads the written model" test $? -eq 0
check "four positions" test "$(grep -c '"pos"' "$tmp/tiny.json")" -eq 4
"$bin" make-model --arch gemma2 --shape tiny --type q8_0 --n-vocab 300 --seed 7 "$tmp/again.gguf" 2>/dev/null
check "make-model is deterministic" cmp -s "$tmp/tiny.gguf" "$tmp/again.gguf"
"$bin" make-model --arch gemma --shape nope --type q8_0 --n-vocab 300 "$tmp/x.gguf" 2>"$tmp/err"
check "unknown shape is a usage error" test $? -eq 2
check "  with a message" grep -q "unknown shape 'nope'" "$tmp/err"
mkdir -p "$tmp/dir"
"$bin" make-model --arch gemma --shape tiny --type q8_0 --n-vocab 300 "$tmp/dir" 2>"$tmp/err"
check "make-model onto a directory fails" test $? -eq 1
check "  with one message" test "$(wc -l <"$tmp/err")" -eq 1
"$bin" make-model --arch gemma --shape tiny --type q8_0 --n-vocab 300 "$tmp/none/x.gguf" 2>"$tmp/err"
check "make-model into a missing directory fails" test $? -eq 1
check "  with one message" test "$(wc -l <"$tmp/err")" -eq 1
"$bin" make-model --frobnicate 2>"$tmp/err"
check "make-model unknown option: exit 2" test $? -eq 2
check "  one message and the --help hint" test "$(wc -l <"$tmp/err")" -eq 2

# logits on bad files: exit 1, one message.
for m in "$tmp/none.gguf" "$tmp/dir" tests/gguf/corpus/overlapping-tensors.gguf; do
    "$bin" logits -m "$m" --tokens 1,2 >"$tmp/out" 2>"$tmp/err"
    check "logits -m $m: exit 1" test $? -eq 1
    check "  one message" test "$(wc -l <"$tmp/err")" -eq 1
done
"$bin" logits --frobnicate 2>"$tmp/err"
check "logits unknown option: exit 2" test $? -eq 2
check "  one message and the --help hint" test "$(wc -l <"$tmp/err")" -eq 2
"$bin" make-model --arch gemma --shape tiny --type q8_0 --vocab "$tmp/absent.gguf" "$tmp/x.gguf" 2>"$tmp/err"
check "absent vocabulary fails with a message" grep -q "absent.gguf" "$tmp/err"
"$bin" make-model --arch nope --shape tiny --type q8_0 "$tmp/x.gguf" 2>/dev/null
check "unknown arch is a usage error" test $? -eq 2
exit $fail
