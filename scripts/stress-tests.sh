#!/usr/bin/env bash
# Runs the whole test suite N times after one build and reports every run and every failing test,
# to catch tests that pass or fail with the machine's speed or scheduling.
#
#   scripts/stress-tests.sh N [--hog] [-- extra swift test arguments]
#
# --hog keeps one core busy with another process for the whole stress run (as on a shared or
# noisy host). Each run's full output is kept in the log folder it prints. Exit status: 0 when
# every run passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/stress-tests.sh N [--hog] [-- swift test arguments]" >&2; exit 2; }
[ $# -ge 1 ] || usage
runs=$1; shift
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "stress-tests: N must be a whole number ≥ 1, got '$runs'" >&2; usage; }
hog=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hog) hog=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "stress-tests: unknown argument '$1'" >&2; usage ;;
  esac
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/stress-tests.XXXXXX")
echo "stress-tests: building once (logs in $logs)"
if ! swift build --build-tests >"$logs/build.log" 2>&1; then
  tail -30 "$logs/build.log" >&2
  echo "stress-tests: the build failed; see $logs/build.log" >&2
  exit 1
fi

hog_pid=""
stop_hog() { [ -n "$hog_pid" ] && kill "$hog_pid" 2>/dev/null; wait "$hog_pid" 2>/dev/null; hog_pid=""; }
trap stop_hog EXIT INT TERM
if [ "$hog" -eq 1 ]; then
  # A busy loop pinned to core 0 (where taskset exists): the suite shares the machine with it.
  if command -v taskset >/dev/null; then
    taskset -c 0 bash -c 'while :; do :; done' &
  else
    bash -c 'while :; do :; done' &
  fi
  hog_pid=$!
  echo "stress-tests: CPU hog running (pid $hog_pid)"
fi

passed=0
failed=0
declare -A failing=()
for i in $(seq 1 "$runs"); do
  log="$logs/run-$i.log"
  started=$(date +%s)
  swift test --skip-build "${extra[@]}" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - started ))
  # Swift Testing marks a failed test "✘ Test name() failed"; XCTest prints "Test Case '…' failed".
  names=$(grep -aE "✘ Test .* failed|Test Case '.*' failed" "$log" | grep -av "✘ Test run with" \
    | sed -E "s/.*✘ Test ([^ ]+( \"[^\"]*\")?).*/\1/; s/.*Test Case '([^']*)' failed.*/\1/" | sort -u)
  summary=$(grep -aE "Test run with .* (passed|failed)" "$log" | tail -1 | sed -E 's/^[^A-Za-z]*//')
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    printf 'run %d/%d: passed in %ds  %s\n' "$i" "$runs" "$took" "$summary"
  else
    failed=$((failed + 1))
    printf 'run %d/%d: FAILED (exit %d) in %ds  %s\n' "$i" "$runs" "$rc" "$took" "$summary"
    [ -n "$names" ] || names="(no failing test named: see $log)"
    while IFS= read -r name; do
      printf '    %s\n' "$name"
      failing["$name"]=$(( ${failing["$name"]:-0} + 1 ))
    done <<<"$names"
    grep -aE "recorded an issue" "$log" | head -5 | sed 's/^/      /'
  fi
done
stop_hog

echo
printf 'stress-tests: %d of %d runs passed%s\n' "$passed" "$runs" "$([ "$hog" -eq 1 ] && echo ' (with a CPU hog on one core)')"
if [ "$failed" -gt 0 ]; then
  echo "failing tests (runs failed):"
  for name in "${!failing[@]}"; do printf '  %3d  %s\n' "${failing[$name]}" "$name"; done | sort -rn
  echo "logs: $logs"
  exit 1
fi
echo "logs: $logs"
