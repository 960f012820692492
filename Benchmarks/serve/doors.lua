-- wrk body for Benchmarks/serve/run.sh's door rows, every id unique (a random number per wrk
-- thread, the request counter, the position). SHAPE picks the request:
--   events1  POST /v1/events, one event per request (JSON);
--   stripe   POST /stripe/v1/billing/meter_events, one event, form-encoded as stripe-python sends it;
--   orb      POST /orb/v1/ingest, 100 events per request, as orb-billing sends them.
local counter = 0
local thread_id = 0
local shape = os.getenv("SHAPE") or "events1"
local token = os.getenv("INGEST_TOKEN")
local when = os.time() - 60
function setup(thread)
  thread:set("tid", math.random(1, 1000000000))
end
function init(args)
  thread_id = tid
end
request = function()
  counter = counter + 1
  if shape == "stripe" then
    local body = string.format("event_name=api_request&identifier=s%d-%d&timestamp=%d&payload%%5Bstripe_customer_id%%5D=c%d&payload%%5Bvalue%%5D=%d",
                               thread_id, counter, when, counter % 50, counter % 9 + 1)
    return wrk.format("POST", "/stripe/v1/billing/meter_events", {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = "Bearer " .. token}, body)
  elseif shape == "orb" then
    local stamp = os.date("!%Y-%m-%dT%H:%M:%SZ", when)
    local parts = {}
    for i = 1, 100 do
      parts[i] = string.format('{"event_name":"api_request","idempotency_key":"o%d-%d-%d","external_customer_id":"c%d","timestamp":"%s","properties":{"value":%d}}', thread_id, counter, i, i % 50, stamp, i % 9 + 1)
    end
    return wrk.format("POST", "/orb/v1/ingest", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, '{"events":[' .. table.concat(parts, ",") .. "]}")
  end
  local body = string.format('{"id":"e%d-%d","name":"api_request","customer":"c%d","timestamp":"2026-12-06T07:00:00Z","quantity":%d}', thread_id, counter, counter % 50, counter % 9 + 1)
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors %d (status %d), p50 %.2f ms, p99 %.2f ms\n", summary.requests, summary.errors.status, summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
