#!/bin/bash
# Runs test programs and end-to-end scripts; prints one line per test and a summary.
# usage: run-tests.sh BUILD_DIR TEST...   (a TEST is a binary, or a tests/e2e/*.sh script
# that receives the path of the elliott binary as $1)
set -u
build=$1; shift
pass=0; fail=0; failed=()
for t in "$@"; do
    name=${t#"$build"/tests/}
    start=$(date +%s%N)
    if [[ $t == *.sh ]]; then
        log=$(bash "$t" "$build/elliott" 2>&1); rc=$?
    else
        log=$("$t" 2>&1); rc=$?
    fi
    ms=$(( ($(date +%s%N) - start) / 1000000 )); secs=$((ms / 1000)).$(( (ms % 1000) / 100 ))
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); printf 'PASS  %-45s %6ss\n' "$name" "$secs"
        grep -E '^SKIP' <<<"$log" | sed 's/^/      /'
    else
        fail=$((fail + 1)); failed+=("$name")
        printf 'FAIL  %-45s %6ss (exit %d)\n' "$name" "$secs" "$rc"
        tail -n 60 <<<"$log" | sed 's/^/      /'
    fi
done
echo "---- $pass passed, $fail failed"
[ $fail -eq 0 ] || { printf 'failed: %s\n' "${failed[@]}"; exit 1; }
