-- wrk body for Benchmarks/serve/run.sh: 100 events per request, every id unique (a random
-- number per wrk thread, the request counter, the position).
local counter = 0
local thread_id = 0
function setup(thread)
  thread:set("tid", math.random(1, 1000000000))
end
function init(args)
  thread_id = tid
end
request = function()
  counter = counter + 1
  local parts = {}
  for i = 1, 100 do
    parts[i] = string.format('{"id":"w%d-%d-%d","name":"api_request","customer":"c%d","timestamp":"2026-12-06T07:00:00Z","quantity":%d}', thread_id, counter, i, i % 50, i % 9 + 1)
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("INGEST_TOKEN")}, "[" .. table.concat(parts, ",") .. "]")
end
done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors %d (status %d), p50 %.2f ms, p99 %.2f ms\n", summary.requests, summary.errors.status, summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
