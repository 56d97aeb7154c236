#!/bin/bash
# Regenerates a golden model with `elliott make-model`, as tests/data/golden-models.txt
# records it, and checks that the file is byte for byte the one the goldens were computed
# on (its SHA-256). With --record it prints the SHA-256 instead of checking it (for
# scripts/make-goldens.sh). Run from the repository root.
# usage: golden-model.sh [--record] ELLIOTT NAME OUT.gguf
set -euo pipefail
record=0
if [ "${1:-}" = --record ]; then record=1; shift; fi
elliott=${1:?usage: golden-model.sh [--record] ELLIOTT NAME OUT.gguf} name=${2:?name} out=${3:?output file}
manifest=tests/data/golden-models.txt
line=$(awk -v n="$name" '$1 == n { print; exit }' "$manifest")
[ -n "$line" ] || { echo "golden-model.sh: $name is not in $manifest" >&2; exit 1; }
read -r _ arch shape type seed vocab want <<<"$line"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$elliott" make-model --arch "$arch" --shape "$shape" --type "$type" --seed "$seed" --vocab "$vocab" "$tmp"
got=$(sha256sum "$tmp" | cut -c1-64)
if [ $record = 1 ]; then
    echo "$got"
elif [ "$got" != "$want" ]; then
    echo "golden-model.sh: make-model wrote $name with SHA-256 $got; its goldens were computed on $want" >&2
    exit 1
fi
mv "$tmp" "$out"
