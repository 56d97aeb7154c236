#!/bin/bash
# Installs the Debian 12 packages elliott needs to build; with --test also what its test
# suite needs, with --package what building, checking and installing the Debian package
# needs (both may be given). Safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
pkgs=(build-essential make pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev ca-certificates)
for arg in "$@"; do
    case $arg in
    --test)
        # haproxy: the load-balancer test; python3-yaml: the Kubernetes manifests' test.
        pkgs+=(clang curl python3 python3-jsonschema python3-yaml haproxy man-db openssl)
        # The OpenAI client test runs on Node.js; keep a newer Node already on the machine.
        command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
        ;;
    --package) pkgs+=(debhelper dpkg-dev fakeroot lintian man-db systemd curl) ;;
    *) echo "install-deps.sh: unknown option $arg (--test, --package)" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
