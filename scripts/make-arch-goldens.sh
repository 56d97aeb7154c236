#!/bin/bash
# Regenerates tests/data/goldens-arch/NAME.logits.json (and NAME.embed.json for embedding
# models) for the models listed in tests/data/goldens-arch/models.tsv: `elliott make-model`
# writes each model (the test writes the same bytes at run time), and llama.cpp, the peer that
# ../shared/peer/setup.sh installs in a chroot, computes the reference with its make_goldens.py
# and refdump. Only the small JSON files are kept; no weights enter the repository.
#
# usage: scripts/make-arch-goldens.sh [PEER_ROOT] [NAME...]
#   PEER_ROOT: default $ELLIOTT_PEER, else /var/tmp/elliott-peer (the chroot is PEER_ROOT/sid;
#   chroot needs root). NAME: only these models (default: all of models.tsv).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-${ELLIOTT_PEER:-/var/tmp/elliott-peer}}
[ $# -gt 0 ] && shift
sid=$root/sid
list=$repo/tests/data/goldens-arch/models.tsv
vocab=$repo/tests/data/vocab-gemma3.gguf
[ -x "$sid/ref/bin/refdump" ] || { echo "no peer at $sid (run ../shared/peer/setup.sh first)" >&2; exit 1; }
make -C "$repo" -j2 build/elliott >/dev/null
work=$(mktemp -d "$sid/tmp/arch-goldens.XXXXXX")
trap 'rm -rf "$work"' EXIT
inside=${work#"$sid"}
mkdir -p "$work/out"
grep -v '^#' "$list" | while IFS=$'\t' read -r name arch shape type seed tol; do
    [ -n "$name" ] || continue
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
    "$repo/build/elliott" make-model --arch "$arch" --shape "$shape" --type "$type" --vocab "$vocab" \
        --seed "$seed" "$work/$name.gguf"
    chroot "$sid" python3 /ref/make_goldens.py "$inside" /ref/bin/refdump "$inside/out" "$name"
    for f in "$work/out/$name".*.json; do
        # the recipe, so that the file says how to remake its model
        jq -c --arg arch "$arch" --arg shape "$shape" --arg type "$type" --argjson seed "$seed" \
            --arg vocab tests/data/vocab-gemma3.gguf \
            '. + {make_model: {arch: $arch, shape: $shape, type: $type, seed: $seed, vocab: $vocab}}' \
            "$f" >"$repo/tests/data/goldens-arch/$(basename "$f")"
    done
    rm -f "$work/$name.gguf"
done
