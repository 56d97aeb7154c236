#!/bin/bash
# Installs the Debian 12 packages elliott needs to build (and, with --test, to run its
# test suite). Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
pkgs=(build-essential make pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev ca-certificates)
if [ "${1:-}" = --test ]; then
    pkgs+=(clang curl python3 python3-jsonschema)
    # The OpenAI client test runs on Node.js; keep a newer Node already on the machine.
    command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
