#!/usr/bin/env bash
# The code's format, by the toolchain's `swift format` and the checked-in .swift-format
# (120 columns, 4 spaces; layout rules only). `scripts/format.sh` rewrites the sources in place;
# `scripts/format.sh --lint` only checks them and fails on any difference (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
paths=(Package.swift Sources Providers Doors Tests Benchmarks/Package.swift Benchmarks/Sources)
if [ "${1:-}" = "--lint" ]; then
  swift format lint --strict --recursive --parallel "${paths[@]}" \
    || { echo "format: run scripts/format.sh to apply the format, then commit" >&2; exit 1; }
else
  swift format format --in-place --recursive --parallel "${paths[@]}"
fi
