#!/bin/bash
# elliott run and elliott chat, end to end: the built-in model writes a readable
# story, a golden gemma model answers through its chat template, bad options are
# usage errors.   usage: run.sh ELLIOTT_BINARY
set -u
bin=${1:?usage: run.sh ELLIOTT_BINARY}
[ -x "$bin" ] || { echo "FAIL  no elliott binary at $bin"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # description, then a command that must succeed
    local what=$1; shift
    if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fail=1; fi
}

# The built-in model, greedy: the golden continuation of stories260K.
"$bin" run -p "Once upon a time" -n 20 --temp 0 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "run with the built-in model exits 0" test $rc -eq 0
check "says it uses the built-in model" grep -q "no -m given; using the built-in model stories260K" "$tmp/err"
check "prints the story" grep -q "there was a little girl named Lily" "$tmp/out"
check "prints prompt speed" grep -Eq "prompt: [0-9]+ tokens, .* tok/s" "$tmp/err"
check "prints generation speed" grep -Eq "generated: 20 tokens, .* tok/s" "$tmp/err"
check "speed figures stay off stdout" bash -c "! grep -q tok/s '$tmp/out'"

# Greedy is reproducible; the prompt can come from stdin.
echo -n "Once upon a time" | "$bin" run -p - -n 20 --temp 0 >"$tmp/out2" 2>/dev/null
check "-p - reads stdin, same greedy output" cmp -s "$tmp/out" "$tmp/out2"
check "greedy output is not empty" test -s "$tmp/out2"
"$bin" run --raw -p "Once upon a time" -n 20 --temp 0 --seed 7 -t 1 --ctx 64 >"$tmp/raw" 2>/dev/null
check "--raw with options" grep -q "little girl" "$tmp/raw"
"$bin" run -p "Once upon a time" -n 12 --temp 0.8 --top-p 0.9 --top-k 20 --seed 42 >"$tmp/s1" 2>/dev/null
"$bin" run -p "Once upon a time" -n 12 --temp 0.8 --top-p 0.9 --top-k 20 --seed 42 >"$tmp/s2" 2>/dev/null
check "the same seed gives the same sample" cmp -s "$tmp/s1" "$tmp/s2"
check "sampled output is not empty" test -s "$tmp/s1"

gemma=$tmp/gemma-tiny-q8_0.gguf
check "make-model regenerates a golden gemma model" bash tests/golden/golden-model.sh "$bin" gemma-tiny-q8_0 "$gemma"
"$bin" run -m "$gemma" -p "Hello, how are you?" -n 8 --temp 0 --system "Be brief." >"$tmp/g" 2>"$tmp/gerr"
rc=$?
check "run -m on a gemma model exits 0" test $rc -eq 0
check "gemma: generated 8 tokens or stopped" grep -Eq "generated: [1-8] tokens" "$tmp/gerr"
check "gemma: no built-in model notice" bash -c "! grep -q built-in '$tmp/gerr'"
# --cache-type q8_0: a greedy run over a Q8_0 KV cache on the golden model whose heads are
# whole Q8_0 blocks (32 values); the built-in model's (8 values) are not, so it is refused
# with a reason.
mha=$tmp/gemma-tiny-mha-f32.gguf
check "make-model regenerates gemma-tiny-mha-f32" bash tests/golden/golden-model.sh "$bin" gemma-tiny-mha-f32 "$mha"
"$bin" run -m "$mha" -p "Hello, how are you?" -n 8 --temp 0 --cache-type q8_0 >"$tmp/gq" 2>"$tmp/gqerr"
check "run --cache-type q8_0 on a gemma model exits 0" test $? -eq 0
check "  and generates" grep -Eq "generated: [1-8] tokens" "$tmp/gqerr"
printf 'Hello\n/exit\n' | "$bin" chat -m "$mha" -n 4 --temp 0 --cache-type q8_0 >"$tmp/cq" 2>"$tmp/cqerr"
check "chat --cache-type q8_0 exits 0" test $? -eq 0
"$bin" run -p hi -n 2 --cache-type q8_0 >/dev/null 2>"$tmp/bqerr"
check "q8_0 cache on the built-in model: exit 1" test $? -eq 1
check "  naming the head size" grep -q "multiple" "$tmp/bqerr"
"$bin" run -m "$mha" -p hi -n 2 --cache-type f16 >/dev/null 2>&1
check "--cache-type f16 is accepted" test $? -eq 0

# Usage errors exit 2; failures exit 1; --help exits 0.
for args in "" "-p" "-p x -n 0" "-p x -n abc" "-p x --temp -1" "-p x --top-p 2" "-p x --bogus" "-p x extra" "-p x --ctx 1"; do
    # shellcheck disable=SC2086
    "$bin" run $args >/dev/null 2>"$tmp/uerr"
    rc=$?
    check "run $args: exit 2" test $rc -eq 2
done
"$bin" run --help >"$tmp/help" 2>/dev/null
rc=$?
check "run --help exits 0" test $rc -eq 0
check "run --help names --raw" grep -q -- "--raw" "$tmp/help"
"$bin" run -m /nonexistent.gguf -p hi >/dev/null 2>"$tmp/merr"
rc=$?
check "missing model exits 1" test $rc -eq 1
check "missing model is explained" grep -q "cannot load the model" "$tmp/merr"
"$bin" run -p "$(printf 'Once upon a time %.0s' $(seq 1 200))" -n 4 --ctx 64 >/dev/null 2>"$tmp/cerr"
rc=$?
check "prompt beyond the context exits 1" test $rc -eq 1
check "context error is explained" grep -q "context" "$tmp/cerr"

# Bad input: one clear message on stderr (a usage error adds the "Try --help"
# line), exit 1 for failures and 2 for usage errors, never a crash.
one_message() { # description, expected exit, expected stderr lines, command...
    local what=$1 want_rc=$2 want_lines=$3; shift 3
    "$@" </dev/null >"$tmp/out1" 2>"$tmp/err1"
    local rc=$?
    check "$what: exit $want_rc" test $rc -eq "$want_rc"
    check "$what: $want_lines line(s) on stderr" test "$(wc -l <"$tmp/err1")" -eq "$want_lines"
    check "$what: says elliott ..." grep -q "^elliott " "$tmp/err1"
}
mkdir -p "$tmp/dir"
for c in run chat; do
    p=; [ $c = run ] && p="-p hi"
    # shellcheck disable=SC2086
    {
        one_message "$c -m missing" 1 1 "$bin" $c -m "$tmp/none.gguf" $p
        one_message "$c -m directory" 1 1 "$bin" $c -m "$tmp/dir" $p
        one_message "$c -m damaged" 1 1 "$bin" $c -m tests/gguf/corpus/offset-past-end.gguf $p
        one_message "$c unknown option" 2 2 "$bin" $c --frobnicate $p
        one_message "$c flag given a value" 2 2 "$bin" $c --help=yes $p
        one_message "$c -m without a value" 2 2 "$bin" $c $p -m
        one_message "$c --threads 0" 2 1 "$bin" $c --threads 0 $p
        one_message "$c --top-k -1" 2 1 "$bin" $c --top-k -1 $p
        one_message "$c --cache-type q4_0" 2 1 "$bin" $c --cache-type q4_0 $p
        grep -q -- "--cache-type: 'q4_0' is not a KV cache type (f16 or q8_0)" "$tmp/err1" ||
            { echo "FAIL  $c --cache-type q4_0: the message names the option"; fail=1; }
    }
done
grep -q "no -m given" "$tmp/err1" && { echo "FAIL  the built-in model notice before a usage error"; fail=1; }

# chat: a conversation from stdin, /reset and /exit.
printf 'Once upon a time\n/reset\nLily and Tom\n/exit\nnever read\n' |
    "$bin" chat -n 10 --temp 0 >"$tmp/chat" 2>"$tmp/chaterr"
rc=$?
check "chat exits 0" test $rc -eq 0
check "chat answers each turn" test "$(grep -c . "$tmp/chat")" -ge 2
check "chat /reset is acknowledged" grep -q "new conversation" "$tmp/chaterr"
"$bin" chat --bogus </dev/null >/dev/null 2>&1
rc=$?
check "chat --bogus exits 2" test $rc -eq 2

exit $fail
