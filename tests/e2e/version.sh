#!/bin/bash
# The version (one place: VERSION) and the manual page: `elliott --version` and
# `elliott version` print it; man/elliott.1 is what scripts/man-page.py makes of
# docs/commands.md, and man renders it without a warning.
# usage: version.sh ELLIOTT_BINARY
set -u
bin=${1:?usage: version.sh ELLIOTT_BINARY}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # description, command...
    local what=$1; shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

version=$(cat VERSION)
"$bin" --version >"$tmp/a" 2>&1
check "--version exits 0" test $? -eq 0
"$bin" version >"$tmp/b" 2>&1
check "version exits 0" test $? -eq 0
check "--version and version agree" cmp -s "$tmp/a" "$tmp/b"
check "it is VERSION's ($version): $(cat "$tmp/a")" grep -Eq "^elliott $version( \(git [^)]+\))?$" "$tmp/a"
"$bin" version extra >/dev/null 2>"$tmp/err"
check "an argument is a usage error" test $? -eq 2
check "  with one message and the hint" test "$(wc -l <"$tmp/err")" -eq 2
"$bin" version --help >"$tmp/help"
check "version --help exits 0" test $? -eq 0
"$bin" --help | grep -q '^  version ' || { echo "FAIL --help lists version"; fail=1; }

check "man/elliott.1 is current with docs/commands.md" python3 scripts/man-page.py --check
man --warnings -l man/elliott.1 >"$tmp/man" 2>"$tmp/warnings"
check "man renders the page" test $? -eq 0 -a -s "$tmp/man"
check "  without warnings: $(head -c 300 "$tmp/warnings")" test ! -s "$tmp/warnings"
check "  titled with the version" grep -q "elliott $version" "$tmp/man"
for cmd in serve run chat pull bench inspect tokenize logits quantize make-model version; do
    grep -Eq "^   elliott $cmd\$|^       $cmd( |\$)" "$tmp/man" || { echo "FAIL the page lacks $cmd"; fail=1; }
done
exit $fail
