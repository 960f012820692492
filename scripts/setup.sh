#!/usr/bin/env bash
# Installs what UsageBilling needs on a Debian/Ubuntu machine with Swift 6.1+ already present:
# libcurl's and SQLite's headers (libcurl4-openssl-dev, libsqlite3-dev), pkg-config, CA certificates, PostgreSQL (the tests run the
# shared ledger's suite against a server they start on a loopback port), and the Python package the
# fixture validator uses (jsonschema). Installs only what is missing; safe to run again.
set -euo pipefail

missing=()
for pkg in libcurl4-openssl-dev libsqlite3-dev pkg-config ca-certificates python3 postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c "import jsonschema" 2>/dev/null; then
  echo "setup: installing the Python package jsonschema"
  python3 -m pip install -q jsonschema 2>/dev/null || python3 -m pip install -q --user jsonschema \
    || python3 -m pip install -q --break-system-packages jsonschema
fi

command -v swift >/dev/null || { echo "setup: Swift 6.1 or later is required (https://swift.org/install)" >&2; exit 2; }
