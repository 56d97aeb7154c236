#!/bin/bash
# elliott tokenize end to end: ids of the golden Gemma vocabulary with and without special
# tokens, BOS on request, text from stdin and from a file, and usage errors.
set -u
bin=${1:?usage: tokenize.sh ELLIOTT_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # description, expected stdout, command...
    local what=$1 want=$2; shift 2
    local got
    got=$("$@" 2>"$tmp/err")
    if [ $? -eq 0 ] && [ "$got" = "$want" ]; then echo "ok   $what"
    else echo "FAIL $what: got '$got', want '$want' ($(head -c 300 "$tmp/err"))"; fail=1; fi
}
exit_code() { # description, expected exit code, command...
    local what=$1 want=$2; shift 2
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq "$want" ] && [ -s "$tmp/err" ]; then echo "ok   $what"
    else echo "FAIL $what: exit $rc, want $want"; fail=1; fi
}

"$bin" tokenize --help | grep -q "usage: elliott tokenize" && echo "ok   --help" || { echo "FAIL --help"; fail=1; }
exit_code "no model" 2 "$bin" tokenize "hello"
exit_code "missing model file" 1 "$bin" tokenize -m "$tmp/none.gguf" "hello"
printf 'not a gguf' >"$tmp/bad.gguf"
exit_code "damaged model file" 1 "$bin" tokenize -m "$tmp/bad.gguf" "hello"

# Bad input: exactly one message (plus "Try --help" for usage errors), no getopt noise.
lines() { # description, expected exit, expected stderr lines, command...
    local what=$1 want_rc=$2 want_lines=$3; shift 3
    "$@" </dev/null >/dev/null 2>"$tmp/err"
    local rc=$? n
    n=$(wc -l <"$tmp/err")
    if [ $rc -eq "$want_rc" ] && [ "$n" -eq "$want_lines" ] && grep -q "^elliott tokenize: " "$tmp/err"; then
        echo "ok   $what"
    else echo "FAIL $what: exit $rc, $n line(s): $(head -c 300 "$tmp/err")"; fail=1; fi
}
mkdir -p "$tmp/dir"
lines "model is a directory" 1 1 "$bin" tokenize -m "$tmp/dir" "hello"
lines "damaged model" 1 1 "$bin" tokenize -m tests/gguf/corpus/truncated-header.gguf "hello"
lines "missing --text-file" 1 1 "$bin" tokenize -m models/stories260K.gguf --text-file "$tmp/none.txt"
lines "--text-file is a directory" 1 1 "$bin" tokenize -m models/stories260K.gguf --text-file "$tmp/dir"
lines "unknown option" 2 2 "$bin" tokenize -m models/stories260K.gguf --frobnicate "hello"
lines "unknown short option in a group" 2 2 "$bin" tokenize -m models/stories260K.gguf -sq "hello"
lines "-m without a value" 2 2 "$bin" tokenize -m
lines "TEXT and --text-file" 2 2 "$bin" tokenize -m models/stories260K.gguf -f "$tmp/dir" "hello"

vocab=tests/data/vocab-gemma.gguf
text=$'<start_of_turn>user\nHello, how are you?'
# With special parsing the turn marker is one token; without, it is plain text.
expect "special tokens with --special --bos" "[2,106,1645,108,4521,235269,1368,708,692,235336]" \
    "$bin" tokenize -m "$vocab" --special --bos "$text"
plain=$("$bin" tokenize -m "$vocab" "$text")
case $plain in *"106,"*) echo "FAIL plain text matched <start_of_turn>"; fail=1 ;; *) echo "ok   plain text stays plain" ;; esac
expect "stdin" "[4521,235269,1368,708,692,235336]" bash -c "printf 'Hello, how are you?' | '$bin' tokenize -m '$vocab'"
printf 'Hello, how are you?' >"$tmp/text"
expect "--text-file" "[4521,235269,1368,708,692,235336]" "$bin" tokenize -m "$vocab" --text-file "$tmp/text"
# The bundled model (llama SentencePiece, leading space added): the greedy reference's prompt ids.
expect "stories260K prompt ids" "[1,403,407,261,378]" "$bin" tokenize -m models/stories260K.gguf --bos "Once upon a time"
exit $fail
