#!/usr/bin/env bash
# Builds the package with ThreadSanitizer (in .build-tsan) and runs the suites where threads and
# processes meet: the ledger contract on SQLite and PostgreSQL, the worker and its hedges, the
# shutdown and crash tests, serve as a live process, and the fleet on one PostgreSQL ledger
# killed and restarted at random. The CLI binary they start is the instrumented one too.
# Exits non-zero on any ThreadSanitizer report (in the tests or in a child process) or any
# failing test. Findings that are not races in this code are suppressed in scripts/tsan.supp,
# each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."

suites='LedgerTests|SpoolTests|WorkerTests|HedgeTests|ShutdownTests|CrashTests|ServeCLITests|ServeDoorsTests|ProviderDoorsTests|FleetCLITests'
export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=1 exitcode=66 second_deadlock_stack=1"
log=$(mktemp /tmp/usage-billing-tsan.XXXXXX.log)

swift build --build-tests --sanitize=thread --scratch-path .build-tsan
status=0
# One test at a time: under ThreadSanitizer everything runs several times slower, and the suites
# in parallel on 2 cores (each with its own PostgreSQL server) miss the ledger's 15 s connection
# deadline and the tests' time limits, which would be failures of the machine, not of the code.
swift test --skip-build --no-parallel --sanitize=thread --scratch-path .build-tsan --filter "$suites" >"$log" 2>&1 || status=$?
reports=$(grep -c "WARNING: ThreadSanitizer" "$log" || true)
grep -E "Test run with|✘" "$log" | tail -20
if [ "$reports" -gt 0 ]; then
  echo "tsan: $reports ThreadSanitizer report(s); the first:" >&2
  grep -m1 -A40 "WARNING: ThreadSanitizer" "$log" >&2
  echo "tsan: the whole log is $log" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "tsan: the suites failed under ThreadSanitizer (exit $status); the log is $log" >&2
  exit "$status"
fi
echo "tsan: clean ($suites)"
rm -f "$log"
