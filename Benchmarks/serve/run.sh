#!/usr/bin/env bash
# Load on `usage-billing serve` from a separate process (wrk, Debian's package, with a Lua body of
# 100 events per request, every id unique), SQLite spool, its worker delivering to the emulator
# (a process of its own), on this machine:
#   1. full load (32 connections, 2 wrk threads): events/s, requests/s, p50/p99 latency;
#   2. lighter load (4 connections, about half of it): p50/p99 latency;
#   3. the provider APIs at full load, each against `/v1/events` with the same events per request
#      in the same run: Stripe v1 meter events (form-encoded, 1 per request) against 1-event JSON,
#      Orb's batch ingest (100 per request) against 100-event JSON;
#   4. overload: serve.max_backlog 50,000 with a provider that is down, so the backlog fills
#      and requests are answered 503; the server's RSS before and after 15 s of it;
# and `Spool.record` in-process (16 writers × 100 events per call, the spool benchmark) in the
# same run, for the ratio. Prints a table; writes Benchmarks/results/serve.json with --json.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"; $sudo apt-get install -y -qq wrk >/dev/null; }
swift build -c release --product usage-billing >/dev/null
swift build --package-path Benchmarks -c release --product usage-billing-bench >/dev/null
bin=.build/release
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
export INGEST_TOKEN=bench-token-$(date +%s%N)
# The provider: the emulator in a process of its own, so serve's worker delivers as it ingests.
$bin/usage-billing emulate --port 0 > "$dir/emulate.log" 2>&1 &
for _ in $(seq 100); do grep -q "openmeter: {" "$dir/emulate.log" && break; sleep 0.1; done
om=$(grep -o 'openmeter: { endpoint: [^ }]*' "$dir/emulate.log" | awk '{print $4}')
config() {  # $1: max_backlog, $2: the provider's endpoint
  cat > "$dir/load.yaml" <<YAML
version: 1
providers:
  openmeter: { kind: openmeter, api_key: om_REDACTED, endpoint: "$2" }
routes:
  - { events: [api_request], to: openmeter }
serve:
  tokens: [\${INGEST_TOKEN}]
  max_backlog: $1
  compat: { stripe: {}, orb: {} }
YAML
}
serve() {  # starts serve on a fresh spool; sets pid and port
  rm -f "$dir"/s.spool*
  $bin/usage-billing serve -c "$dir/load.yaml" --spool "$dir/s.spool" --port 0 > "$dir/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$dir/serve.log" && break; sleep 0.1; done
  port=$(grep -o "127.0.0.1:[0-9]*" "$dir/serve.log" | head -1 | cut -d: -f2)
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
load() {  # $1 connections, $2 seconds[, $3 lua script]: "requests/s p50_ms p99_ms non2xx"
  wrk -t2 -c"$1" -d"$2"s --latency -s "${3:-Benchmarks/serve/events.lua}" "http://127.0.0.1:$port" > "$dir/wrk.txt" 2>&1
  rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")
  line=$(grep "^requests " "$dir/wrk.txt")
  p50=$(echo "$line" | sed -E 's/.*p50 ([0-9.]+) ms.*/\1/'); p99=$(echo "$line" | sed -E 's/.*p99 ([0-9.]+) ms.*/\1/')
  non2xx=$(awk '/Non-2xx/ {print $5}' "$dir/wrk.txt"); echo "$rps $p50 $p99 ${non2xx:-0}"
}

config 1000000000 "$om"; serve
read -r full_rps full_p50 full_p99 _ <<< "$(load 32 15)"
kill -TERM $pid; wait $pid || true
serve
read -r half_rps half_p50 half_p99 _ <<< "$(load 4 15)"
kill -TERM $pid; wait $pid || true
door() {  # $1 shape: requests/s at full load on a fresh spool
  serve
  SHAPE=$1 load 32 15 Benchmarks/serve/doors.lua | awk '{print $1}'
  kill -TERM $pid; wait $pid || true
}
json1_rps=$(door events1); stripe_rps=$(door stripe); orb_rps=$(door orb)
serve; read -r json100_rps _ _ _ <<< "$(load 32 15)"; kill -TERM $pid; wait $pid || true
config 50000 "http://127.0.0.1:9/openmeter"; serve  # the provider down: the backlog only grows
load 32 5 > /dev/null   # fills the backlog
before=$(rss $pid)
read -r over_rps _ _ over_503 <<< "$(load 32 15)"
after=$(rss $pid)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill -TERM $pid; wait $pid || true
inproc=$(Benchmarks/.build/release/usage-billing-bench --spool 300000 --record-only --record-cases 16x100 --durability normal --ids sequences 2>/dev/null \
  | awk -F'|' '/^\| record, normal, 16 writer/ {gsub(/ /,"",$3); print $3; exit}')

events=$(awk -v r="$full_rps" 'BEGIN {printf "%.0f", r * 100}')
echo "serve load ($(nproc) cores, release build, SQLite spool, wrk from a separate process, 100 events per request)"
echo "| measurement | value |"
echo "|---|---:|"
echo "| full load (32 connections): events/s | $events |"
echo "| full load: requests/s | $full_rps |"
echo "| full load: p50 / p99 latency | $full_p50 ms / $full_p99 ms |"
echo "| 4 connections: requests/s | $half_rps |"
echo "| 4 connections: p50 / p99 latency | $half_p50 ms / $half_p99 ms |"
echo "| Spool.record in-process, 16 writers × 100: events/s | ${inproc:-?} |"
echo "| serve ÷ in-process record | $(awk -v a="$events" -v b="${inproc:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "–"}') |"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "–"}'; }
echo "| /v1/events, 1 event per request: requests/s | $json1_rps |"
echo "| Stripe v1 meter events (form, 1 per request): requests/s, ÷ /v1/events 1 per request | $stripe_rps, $(ratio "$stripe_rps" "$json1_rps") |"
echo "| /v1/events, 100 events per request (again, beside Orb): requests/s | $json100_rps |"
echo "| Orb batch ingest (100 per request): requests/s, ÷ /v1/events 100 per request | $orb_rps, $(ratio "$orb_rps" "$json100_rps") |"
echo "| overload (backlog full): requests/s, answered 503 | $over_rps, $over_503 |"
echo "| overload: RSS before → after 15 s, peak | ${before} KiB → ${after} KiB, ${peak} KiB |"
if [ "${1:-}" = "--json" ]; then
  cat > Benchmarks/results/serve.json <<JSON
{"events_per_second": $events, "requests_per_second": $full_rps, "p50_ms": $full_p50, "p99_ms": $full_p99,
 "light_requests_per_second": $half_rps, "light_p50_ms": $half_p50, "light_p99_ms": $half_p99,
 "in_process_record_events_per_second": ${inproc:-null}, "overload_requests_per_second": $over_rps, "overload_503": ${over_503:-0},
 "json1_requests_per_second": $json1_rps, "stripe_v1_requests_per_second": $stripe_rps, "stripe_v1_ratio": $(ratio "$stripe_rps" "$json1_rps"),
 "json100_requests_per_second": $json100_rps, "orb_batch_requests_per_second": $orb_rps, "orb_batch_ratio": $(ratio "$orb_rps" "$json100_rps"),
 "overload_rss_before_kib": $before, "overload_rss_after_kib": $after, "peak_rss_kib": $peak}
JSON
  echo "wrote Benchmarks/results/serve.json"
fi
