#!/bin/bash
# Recomputes the logits goldens with llama.cpp: regenerates each model of
# tests/data/golden-models.txt with `elliott make-model`, has llama.cpp (the peer)
# compute tests/data/models/NAME.logits.json from it, and records the model's SHA-256
# in the list. Run by hand (root, for chroot), not by CI; see tests/data/README.md.
# usage: scripts/make-goldens.sh [NAME...]    (default: every model in the list)
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${ELLIOTT_PEER:-/var/tmp/elliott-peer/sid}
for f in ref/bin/refdump ref/make_goldens.py; do
    [ -e "$peer/$f" ] || { echo "make-goldens.sh: no $peer/$f: the llama.cpp peer is not installed (set ELLIOTT_PEER)" >&2; exit 1; }
done
make -s -j2 build/elliott
manifest=tests/data/golden-models.txt
names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(awk '!/^#/ && NF { print $1 }' "$manifest")

work=$(mktemp -d "$peer/tmp/elliott-goldens.XXXXXX")
trap 'rm -rf "$work"' EXIT
inside=/tmp/${work##*/}
declare -A sha
for name in "${names[@]}"; do
    sha[$name]=$(bash tests/golden/golden-model.sh --record build/elliott "$name" "$work/$name.gguf")
done
chroot "$peer" python3 /ref/make_goldens.py "$inside" /ref/bin/refdump "$inside/out" "${names[@]}"
mkdir -p tests/data/models
for name in "${names[@]}"; do
    cp "$work/out/$name.logits.json" tests/data/models/
    awk -v n="$name" -v s="${sha[$name]}" '$1 == n { sub(/[^ \t]+$/, s) } { print }' "$manifest" >"$manifest.new"
    mv "$manifest.new" "$manifest"
done
echo "make-goldens.sh: ${#names[@]} goldens written to tests/data/models/; SHA-256s recorded in $manifest"
