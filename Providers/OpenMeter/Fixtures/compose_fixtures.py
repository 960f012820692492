#!/usr/bin/env python3
"""Composes the OpenMeter conformance fixtures (no OpenMeter Cloud account is reachable from CI).

Requests match what the official SDK openmeter 1.0.0b236 sends for the same events (captured
through a fake corehttp transport): POST {base}/api/v1/events, Authorization: Bearer,
Content-Type exactly application/cloudevents+json for one event (ingest_event) and
application/cloudevents-batch+json for several (ingest_events), CloudEvents
{specversion, id, source, type, subject, time, data}. Responses follow
shared/providers/openmeter.md: 204 on success, RFC 7807 problem bodies, Retry-After on Cloud 429.
Run: python3 compose_fixtures.py
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request shape per an openmeter 1.0.0b236 SDK capture; bodies per shared/providers/openmeter.md")
BASE = "https://openmeter.cloud"
KEY = "om_REDACTED"
SETTINGS = {"api_key": KEY, "source": "billing-service", "customers": {"acme": "customer-acme"}}
SINGLE, BATCH = "application/cloudevents+json", "application/cloudevents-batch+json"


def ce(e):
    data = {k: (v if isinstance(v, (bool, str)) else str(v)) for k, v in e.get("properties", {}).items()}
    data["value"] = e["quantity"]
    return {"specversion": "1.0", "id": e["id"], "source": SETTINGS["source"], "type": e["name"],
            "subject": SETTINGS["customers"].get(e["customer"], e["customer"]), "time": e["timestamp"], "data": data}


def ingest(events, base=None, key=KEY):
    single = len(events) == 1
    return {"method": "POST", "url": (base + "/openmeter/events") if base else BASE + "/api/v1/events",
            "headers": {"Authorization": "Bearer " + key, "Content-Type": SINGLE if single else BATCH},
            "json": ce(events[0]) if single else [ce(e) for e in events]}


NO_CONTENT = {"status": 204, "headers": {}}


def problem(status, title, detail, headers=None):
    return {"status": status, "headers": dict({"Content-Type": "application/problem+json"}, **(headers or {})),
            "json": {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": "urn:request:" + W.rid("om")}}


def main():
    e1 = event(1, props={"region": "eu-west", "model": "large"})
    W.write("single_event_accepted", {"scenario": "single_event_accepted",
            "description": "one CloudEvent as application/cloudevents+json (exactly, no charset); 204",
            "settings": SETTINGS, "events": [e1], "exchanges": [{"request": ingest([e1]), "response": NO_CONTENT}],
            "expected": {e1["id"]: [{"outcome": "accepted"}]}})
    five = [event(10 + i, customer=["acme", "globex"][i % 2], qty=str(i + 1)) for i in range(5)]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "max_batch_size 2: five events become batches of 2 and 2 (cloudevents-batch+json) and a single event (cloudevents+json)",
            "settings": dict(SETTINGS, max_batch_size=2), "events": five,
            "exchanges": [{"request": ingest(five[0:2]), "response": NO_CONTENT}, {"request": ingest(five[2:4]), "response": NO_CONTENT},
                          {"request": ingest(five[4:]), "response": NO_CONTENT}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in five}})
    e2 = event(2)
    limits = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(NOW_UNIX + 5)}
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "Cloud 429 with Retry-After: 5 and X-RateLimit-*, then 204",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": problem(429, "Too Many Requests", "rate limit exceeded", dict(limits, **{"Retry-After": "5"}))},
                          {"request": ingest([e2]), "response": NO_CONTENT}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 5}, {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 without Retry-After (the official SDK would give up here; we back off and retry)",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": problem(429, "Too Many Requests", "rate limit exceeded")},
                          {"request": ingest([e2]), "response": NO_CONTENT}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "500 with the detail blanked (earlier events may be in); the batch is resent and (source, id) dedupes",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": problem(500, "Internal Server Error", "")},
                          {"request": ingest([e2]), "response": NO_CONTENT}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried", "description": "reset after sending: resent (the SDK would not)",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "failure": "connection_reset"}, {"request": ingest([e2]), "response": NO_CONTENT}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered", "description": "timeout after sending: resent",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "failure": "timeout_after_send"}, {"request": ingest([e2]), "response": NO_CONTENT}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    e3 = event(3)
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected", "description": "400 problem: rejected with its detail",
            "settings": SETTINGS, "events": [e3],
            "exchanges": [{"request": ingest([e3]), "response": problem(400, "Bad Request", "invalid event: data must be an object")}],
            "expected": {e3["id"]: [{"outcome": "rejected", "code": "http_400", "origin": "provider", "message_contains": "invalid event"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error", "description": "401 problem: .configuration",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": problem(401, "Unauthorized", "invalid token")}], "expected_error": "configuration"})
    # OpenMeter-specific.
    three = [event(20 + i) for i in range(3)]
    W.write("exact_content_types_and_204", {
            "description": "two events go as application/cloudevents-batch+json, a lone one as application/cloudevents+json, each exactly; 204 means accepted",
            "settings": dict(SETTINGS, max_batch_size=2), "events": three,
            "exchanges": [{"request": ingest(three[:2]), "response": NO_CONTENT}, {"request": ingest(three[2:]), "response": NO_CONTENT}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in three}})
    nosub = event(30, customer="")
    W.write("empty_subject_rejected_locally", {
            "description": "OpenMeter requires a subject: an event without a customer is rejected with no request",
            "settings": SETTINGS, "events": [nosub], "exchanges": [],
            "expected": {nosub["id"]: [{"outcome": "rejected", "code": "subject_missing", "origin": "local", "field": "customer"}]}})

    konnect()


# Kong Konnect Metering & Billing: OpenMeter's v3 API on https://{region}.api.konghq.com/v3
# (api/v3/openapi.yaml @7e57a39, vendored trimmed as Spec/openmeter-v3.openapi.json): the same
# CloudEvents and content types at /openmeter/events, 202 on success, problem+json errors with
# Konnect's kong:trace instance; the token is a Konnect system access token.
KONNECT = "https://eu.api.konghq.com/v3"
KONNECT_KEY = "spat_REDACTED"
KONNECT_SETTINGS = {"region": "eu", "api_key": KONNECT_KEY, "source": "billing-service", "customers": {"acme": "customer-acme"}}
ACCEPTED = {"status": 202, "headers": {}}


def konnect_problem(status, title, detail, headers=None, extra=None):
    body = {"type": "https://httpstatuses.com/%d" % status, "title": title, "status": status, "detail": detail,
            "instance": "kong:trace:" + W.rid("trace")}
    body.update(extra or {})
    return {"status": status, "headers": dict({"Content-Type": "application/problem+json"}, **(headers or {})), "json": body}


def konnect():
    def k(events):
        return ingest(events, base=KONNECT, key=KONNECT_KEY)
    e1 = event(40, props={"region": "eu-west", "model": "large"})
    W.write("single_event_accepted--konnect", {"scenario": "single_event_accepted",
            "description": "region: eu: one CloudEvent to Konnect's v3 /openmeter/events; 202 is success",
            "settings": KONNECT_SETTINGS, "events": [e1], "exchanges": [{"request": k([e1]), "response": ACCEPTED}],
            "expected": {e1["id"]: [{"outcome": "accepted"}]}})
    five = [event(41 + i, customer=["acme", "globex"][i % 2], qty=str(i + 1)) for i in range(5)]
    W.write("batch_split_at_provider_limit--konnect", {"scenario": "batch_split_at_provider_limit",
            "description": "v3 with max_batch_size 2: batches of 2 and 2 as cloudevents-batch+json and one cloudevents+json, each 202",
            "settings": dict(KONNECT_SETTINGS, max_batch_size=2), "events": five,
            "exchanges": [{"request": k(five[0:2]), "response": ACCEPTED}, {"request": k(five[2:4]), "response": ACCEPTED},
                          {"request": k(five[4:]), "response": ACCEPTED}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in five}})
    e2 = event(46)
    W.write("rate_limited_with_retry_after--konnect", {"scenario": "rate_limited_with_retry_after",
            "description": "v3: 429 with Retry-After: 5, then 202",
            "settings": KONNECT_SETTINGS, "events": [e2],
            "exchanges": [{"request": k([e2]), "response": konnect_problem(429, "Too Many Requests", "rate limit exceeded", {"Retry-After": "5"})},
                          {"request": k([e2]), "response": ACCEPTED}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 5}, {"outcome": "accepted"}]}})
    e3 = event(47)
    W.write("bad_request_rejected--konnect", {"scenario": "bad_request_rejected",
            "description": "v3 400 BadRequestError with invalid_parameters: rejected with its detail",
            "settings": KONNECT_SETTINGS, "events": [e3],
            "exchanges": [{"request": k([e3]), "response": konnect_problem(400, "Bad Request", "invalid event: time must be RFC 3339",
                                                                             extra={"invalid_parameters": [{"field": "time", "rule": "is_date_time", "reason": "must be RFC 3339", "source": "body"}]})}],
            "expected": {e3["id"]: [{"outcome": "rejected", "code": "http_400", "origin": "provider", "message_contains": "invalid event"}]}})
    W.write("unauthorized_is_configuration_error--konnect", {"scenario": "unauthorized_is_configuration_error",
            "description": "v3 401 UnauthorizedError: .configuration",
            "settings": KONNECT_SETTINGS, "events": [e2],
            "exchanges": [{"request": k([e2]), "response": konnect_problem(401, "Unauthorized", "Invalid credentials")}], "expected_error": "configuration"})


def konnect_api():
    start = NOW_UNIX - 3 * 3600
    hdr = {"Authorization": "Bearer " + KONNECT_KEY, "Accept": "application/json"}
    meter_id = "01JD7Z3K8Y5W2Q9N4M6P1R0T8V"
    meter = {"id": meter_id, "key": "api_requests", "name": "API requests", "aggregation": "sum", "event_type": "api_request",
             "value_property": "$.value", "created_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z"}
    rows = [{"value": v, "from": iso(start + i * 3600), "to": iso(start + (i + 1) * 3600), "dimensions": {"subject": "customer-acme"}}
            for i, v in enumerate(["12", "30.5"])]
    write_api(W.folder, "meter_query_hourly--konnect", "v3: GET /openmeter/meters by key, then POST /openmeter/meters/{id}/query per hour for one subject", W.source, [
        {"request": {"method": "GET", "url": KONNECT + "/openmeter/meters?filter%5Bkey%5D%5Beq%5D=api_requests", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"data": [meter], "meta": {"page": {"number": 1, "size": 20, "total": 1}}}}},
        {"request": {"method": "POST", "url": KONNECT + "/openmeter/meters/%s/query" % meter_id, "headers": dict(hdr, **{"Content-Type": "application/json"}),
                     "json": {"from": iso(start), "to": iso(NOW_UNIX), "granularity": "PT1H", "group_by_dimensions": ["subject"],
                              "filters": {"dimensions": {"subject": {"in": ["customer-acme"]}}}}},
         "response": {"status": 200, "headers": {}, "json": {"from": iso(start), "to": iso(NOW_UNIX), "data": rows}}}])
    write_api(W.folder, "meter_unknown_key--konnect", "v3: no meter has the key", W.source, [
        {"request": {"method": "GET", "url": KONNECT + "/openmeter/meters?filter%5Bkey%5D%5Beq%5D=gpu_seconds", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"data": [], "meta": {"page": {"number": 1, "size": 20, "total": 0}}}}}])


def api():
    start = NOW_UNIX - 3 * 3600
    rows = [{"value": v, "windowStart": iso(start + i * 3600), "windowEnd": iso(start + (i + 1) * 3600), "subject": "customer-acme", "groupBy": {}}
            for i, v in enumerate([12, 0, 30.5])]
    write_api(W.folder, "meter_query_hourly", "GET /api/v1/meters/{slug}/query per hour for one subject", W.source, [
        {"request": {"method": "GET", "url": BASE + "/api/v1/meters/api_requests/query?from=%s&to=%s&windowSize=HOUR&subject=customer-acme"
                     % (iso(start), iso(NOW_UNIX)), "headers": {"Authorization": "Bearer " + KEY, "Accept": "application/json"}},
         "response": {"status": 200, "headers": {}, "json": {"from": iso(start), "to": iso(NOW_UNIX), "windowSize": "HOUR", "data": rows}}}])
    write_api(W.folder, "meter_query_unknown_meter", "an unknown meter slug: 404 problem", W.source, [
        {"request": {"method": "GET", "url": BASE + "/api/v1/meters/gpu_seconds/query?from=%s&to=%s" % (iso(start), iso(NOW_UNIX)),
                     "headers": {"Authorization": "Bearer " + KEY, "Accept": "application/json"}},
         "response": problem(404, "Not Found", "meter not found: gpu_seconds")}])


if __name__ == "__main__":
    main()
    api()
    konnect_api()
