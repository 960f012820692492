#!/usr/bin/env bash
# Installs what UsageBilling needs on a Debian/Ubuntu machine with Swift 6.1+ already present:
# libcurl's and SQLite's headers (libcurl4-openssl-dev, libsqlite3-dev), pkg-config, CA certificates, PostgreSQL (the tests run the
# shared ledger's suite against a server they start on a loopback port), Chromium (the tests load the status page and the
# reconciliation report in it, headless), and the Python packages the
# fixture validator (jsonschema), the README's ingest snippet (requests) and the tests of serve's
# doors (cloudevents, and the stripe, orb-billing and metronome-sdk SDKs) use. Installs only what
# is missing; safe to run again.
set -euo pipefail

missing=()
for pkg in libcurl4-openssl-dev libsqlite3-dev pkg-config ca-certificates python3 postgresql chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# module:package pairs; the providers' SDKs at the versions the compatibility doors are tested with.
for pair in jsonschema:jsonschema requests:requests cloudevents:cloudevents stripe:stripe==16.1.0 orb:orb-billing==4.90.0 metronome:metronome-sdk==4.12.0 \
    openmeter:openmeter==1.0.0b236 lago_python_client:lago-python-client==1.55.0 segment.analytics:segment-analytics-python==2.4.0; do
  module=${pair%%:*} package=${pair#*:}
  if ! python3 -c "import $module" 2>/dev/null; then
    echo "setup: installing the Python package $package"
    python3 -m pip install -q "$package" 2>/dev/null || python3 -m pip install -q --user "$package" \
      || python3 -m pip install -q --break-system-packages "$package"
  fi
done

command -v swift >/dev/null || { echo "setup: Swift 6.1 or later is required (https://swift.org/install)" >&2; exit 2; }
