#!/bin/bash
# Builds the Debian package (dpkg-buildpackage -us -uc -b) from a copy of this source tree,
# so that nothing is written beside the repository, and moves the .deb into OUT_DIR.
# DEB_BUILD_OPTIONS passes through (nocheck skips the package build's short tests).
# Needs: bash scripts/install-deps.sh --package
# usage: scripts/build-deb.sh [OUT_DIR]    (default: build-deb/); prints the .deb's path
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-build-deb}" && cd "${1:-build-deb}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/elliott"
# The source without build outputs or installed test tools.
tar --exclude='./build*' --exclude='./.git' --exclude='node_modules' --exclude='./debian/elliott' \
    --exclude='./debian/.debhelper' -cf - . | tar -C "$work/elliott" -xf -
(cd "$work/elliott" && dpkg-buildpackage -us -uc -b) >"$out/dpkg-buildpackage.log" 2>&1 ||
    { tail -n 40 "$out/dpkg-buildpackage.log" >&2; exit 1; }
mv "$work"/elliott_*.deb "$out/"
ls "$out"/elliott_*.deb
