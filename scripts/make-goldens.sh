#!/bin/bash
# Recomputes the logits goldens with llama.cpp: regenerates each model of
# tests/data/golden-models.txt with `elliott make-model`, has llama.cpp (the peer)
# compute tests/data/models/NAME.logits.json from it, and records the model's SHA-256
# in the list. Run by hand (root, for chroot), not by CI; see tests/data/README.md.
# With --cache-type q8_0, llama.cpp keeps keys and values in Q8_0 (type_k = type_v =
# GGML_TYPE_Q8_0, flash attention on, as `-ctk q8_0 -ctv q8_0 -fa on`), through a copy of
# refdump built with that option, and the goldens go to NAME.q8_0-cache.logits.json (the
# SHA-256s in the list are left alone: the models are the same).
# usage: scripts/make-goldens.sh [--cache-type q8_0] [NAME...]    (default: every model in the list)
set -euo pipefail
cd "$(dirname "$0")/.."
peer=${ELLIOTT_PEER:-/var/tmp/elliott-peer/sid}
cache=f16
if [ "${1:-}" = --cache-type ]; then
    cache=${2:?--cache-type needs f16 or q8_0}
    shift 2
fi
case $cache in f16 | q8_0) ;; *) echo "make-goldens.sh: --cache-type must be f16 or q8_0" >&2; exit 2 ;; esac
for f in ref/bin/refdump ref/refdump.c ref/make_goldens.py; do
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
refdump=/ref/bin/refdump
if [ "$cache" = q8_0 ]; then
    # refdump's logits and greedy contexts (the ones with n_ubatch = 512), given a Q8_0 cache
    sed 's|cp.n_ubatch = 512;|&\n    cp.type_k = GGML_TYPE_Q8_0; cp.type_v = GGML_TYPE_Q8_0; cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;|' \
        "$peer/ref/refdump.c" >"$work/refdump-q8_0.c"
    grep -q 'type_k = GGML_TYPE_Q8_0' "$work/refdump-q8_0.c" || { echo "make-goldens.sh: refdump.c changed; cannot add the Q8_0 cache" >&2; exit 1; }
    chroot "$peer" gcc -O2 -Wall -o "$inside/refdump-q8_0" "$inside/refdump-q8_0.c" -lllama -lggml -lm
    refdump=$inside/refdump-q8_0
fi
chroot "$peer" python3 /ref/make_goldens.py "$inside" "$refdump" "$inside/out" "${names[@]}"
mkdir -p tests/data/models
if [ "$cache" = q8_0 ]; then
    for name in "${names[@]}"; do
        cp "$work/out/$name.logits.json" "tests/data/models/$name.q8_0-cache.logits.json"
    done
    echo "make-goldens.sh: ${#names[@]} Q8_0-cache goldens written to tests/data/models/"
    exit 0
fi
for name in "${names[@]}"; do
    cp "$work/out/$name.logits.json" tests/data/models/
    awk -v n="$name" -v s="${sha[$name]}" '$1 == n { sub(/[^ \t]+$/, s) } { print }' "$manifest" >"$manifest.new"
    mv "$manifest.new" "$manifest"
done
echo "make-goldens.sh: ${#names[@]} goldens written to tests/data/models/; SHA-256s recorded in $manifest"
