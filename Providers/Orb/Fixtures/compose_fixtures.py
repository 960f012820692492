#!/usr/bin/env python3
"""Composes the Orb conformance fixtures (no Orb account is reachable from CI).

Requests match what the official SDK orb-billing 4.90.0 sends for the same events (captured with
an httpx MockTransport): POST {base}/ingest, Authorization: Bearer, Content-Type and Accept
application/json, body {"events":[{event_name, idempotency_key, timestamp, properties, external_customer_id}]},
backfill_id in the query, quantity as a JSON number. Our Idempotency-Key differs in value only
(the SDK sends stainless-python-retry-<uuid4>; we derive it from the batch's ids so it is stable
across process restarts). Responses follow shared/providers/orb.md (RFC 7807 problem bodies with
the documented type URIs, {"validation_failed": []} on 200) and validate against the vendored specs.
Run: python3 compose_fixtures.py
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request shape per an orb-billing 4.90.0 SDK capture; bodies per shared/providers/orb.md and the vendored specs")
BASE = "https://api.withorb.com/v1"
KEY = "orb_REDACTED"
ERR = "https://docs.withorb.com/reference/error-responses"
SETTINGS = {"api_key": KEY, "customers": {"acme": "acme-external-1"}}


def orb_event(e):
    props = dict(e.get("properties", {}))
    props["quantity"] = number(e["quantity"])
    out = {"event_name": e["name"], "idempotency_key": e["id"], "timestamp": e["timestamp"], "properties": props}
    out["external_customer_id"] = SETTINGS["customers"].get(e["customer"], e["customer"])
    return out


def ingest(events, backfill=None, customer_kind="external"):
    body = [orb_event(e) for e in events]
    if customer_kind == "orb":
        for b in body:
            b["customer_id"] = b.pop("external_customer_id")
    url = BASE + "/ingest" + ("?backfill_id=" + backfill if backfill else "")
    return {"method": "POST", "url": url,
            "headers": {"Authorization": "Bearer " + KEY, "Content-Type": "application/json", "Accept": "application/json",
                        "Idempotency-Key": derived_id(["orb-ingest", backfill or ""] + [e["id"] for e in events])},
            "json": {"events": body}}


def ok(failed=None):
    return {"status": 200, "headers": {}, "json": {"validation_failed": failed or []}}


def problem(status, suffix, title, detail=None, extra=None, headers=None):
    body = {"status": status, "type": ERR + "#" + suffix, "title": title, "detail": detail}
    body.update(extra or {})
    return {"status": status, "headers": headers or {}, "json": body}


def main():
    e1 = event(1, props={"region": "eu-west", "model": "large"})
    W.write("single_event_accepted", {"scenario": "single_event_accepted", "description": "one event; properties always present; quantity a JSON number",
            "settings": SETTINGS, "events": [e1], "exchanges": [{"request": ingest([e1]), "response": ok()}],
            "expected": {e1["id"]: [{"outcome": "accepted"}]}})

    five = [event(10 + i, customer=["acme", "globex"][i % 2], qty=str(i + 1)) for i in range(5)]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "max_batch_size 2: five events become requests of 2, 2 and 1, in order",
            "settings": dict(SETTINGS, max_batch_size=2), "events": five,
            "exchanges": [{"request": ingest(five[0:2]), "response": ok()}, {"request": ingest(five[2:4]), "response": ok()},
                          {"request": ingest(five[4:]), "response": ok()}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in five}})

    e2 = event(2)
    rl = lambda h: problem(429, "429-too-many-requests", "Too many requests", "Rate limit exceeded for ingestion requests", headers=h)
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "429 with Retry-After: 3 (Orb documents none; the SDK honours it when sent), then 200 with the same Idempotency-Key",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": rl({"Retry-After": "3"})}, {"request": ingest([e2]), "response": ok()}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 3}, {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 without Retry-After (as Orb documents): back off, then 200",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": rl({})}, {"request": ingest([e2]), "response": ok()}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "500 with Transient-Error: true, then 200 on the same Idempotency-Key",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": problem(500, "500-internal-server-error", None, None, headers={"Transient-Error": "true"})},
                          {"request": ingest([e2]), "response": ok()}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried", "description": "reset after sending: possiblyDelivered, resent",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "failure": "connection_reset"}, {"request": ingest([e2]), "response": ok()}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered", "description": "timeout after sending: possiblyDelivered, resent with the same keys",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "failure": "timeout_after_send"}, {"request": ingest([e2]), "response": ok()}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})

    e3 = event(3, name="api request")
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected",
            "description": "400 request validation errors naming the event: rejected with Orb's message",
            "settings": SETTINGS, "events": [e3],
            "exchanges": [{"request": ingest([e3]), "response": problem(400, "400-request-validation-errors", "Request validation errors",
                          "The request body contains invalid events.",
                          {"validation_errors": [{"idempotency_key": e3["id"], "validation_errors": ["event_name must not contain whitespace"]}]})}],
            "expected": {e3["id"]: [{"outcome": "rejected", "code": "validation_failed", "origin": "provider", "message_contains": "whitespace"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error", "description": "401: the sink throws .configuration",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": problem(401, "401-authentication-error", "Authentication error", "Invalid API key")}],
            "expected_error": "configuration"})
    e4 = event(4, customer="cus_missing")
    W.write("unknown_meter_or_customer", {"scenario": "unknown_meter_or_customer",
            "description": "customer_id_kind orb: an Orb customer id that does not exist is a validation error for that event",
            "settings": dict(SETTINGS, customer_id_kind="orb"), "events": [e4],
            "exchanges": [{"request": ingest([e4], customer_kind="orb"), "response": problem(400, "400-request-validation-errors", "Request validation errors",
                          "The request body contains invalid events.",
                          {"validation_errors": [{"idempotency_key": e4["id"], "validation_errors": ["Customer with id cus_missing does not exist"]}]})}],
            "expected": {e4["id"]: [{"outcome": "rejected", "code": "validation_failed", "origin": "provider", "message_contains": "does not exist"}]}})
    pa, pb, pc = event(20), event(21, name="api request"), event(22, customer="globex")
    W.write("partial_batch_failure", {"scenario": "partial_batch_failure",
            "description": "400 lists one event of three; it is rejected and the valid two are sent again at once (same event keys, new request key)",
            "settings": SETTINGS, "events": [pa, pb, pc],
            "exchanges": [{"request": ingest([pa, pb, pc]), "response": problem(400, "400-request-validation-errors", "Request validation errors",
                           "The request body contains invalid events.",
                           {"validation_errors": [{"idempotency_key": pb["id"], "validation_errors": ["event_name must not contain whitespace"]}]})},
                          {"request": ingest([pa, pc]), "response": ok()}],
            "expected": {pa["id"]: [{"outcome": "accepted"}], pb["id"]: [{"outcome": "rejected", "code": "validation_failed", "origin": "provider"}],
                         pc["id"]: [{"outcome": "accepted"}]}})
    old = event(6, ts=NOW_UNIX - 2 * 86400)
    W.write("too_old_timestamp_rejected_locally", {"scenario": "too_old_timestamp_rejected_locally",
            "description": "grace_period_hours 12 without backfill: a two-day-old event is rejected locally, the message says how to backfill",
            "settings": dict(SETTINGS, grace_period_hours=12), "events": [old], "exchanges": [],
            "expected": {old["id"]: [{"outcome": "rejected", "code": "timestamp_too_old", "origin": "local", "field": "timestamp", "message_contains": "backfill: true"}]}})
    future = event(7, ts=NOW_UNIX + 10 * 60)
    W.write("future_timestamp_rejected_locally", {"scenario": "future_timestamp_rejected_locally", "description": "10 minutes ahead: Orb allows 5",
            "settings": SETTINGS, "events": [future], "exchanges": [],
            "expected": {future["id"]: [{"outcome": "rejected", "code": "timestamp_in_future", "origin": "local", "field": "timestamp"}]}})
    big, clash = event(8, qty="12345678901234567890.5"), event(9, props={"quantity": 3})
    W.write("unsupported_value_rejected_locally", {"scenario": "unsupported_value_rejected_locally",
            "description": "a quantity a JSON number cannot carry exactly, and a property that would overwrite the quantity",
            "settings": SETTINGS, "events": [big, clash], "exchanges": [],
            "expected": {big["id"]: [{"outcome": "rejected", "code": "value_not_representable", "origin": "local", "field": "quantity"}],
                         clash["id"]: [{"outcome": "rejected", "code": "property_conflicts_with_quantity", "origin": "local"}]}})

    # Orb-specific.
    va, vb = event(30), event(31, props={"region": "eu-west"})
    W.write("validation_failed_in_200", {
            "description": "a 200 whose validation_failed lists one event: it is rejected, the other accepted, nothing resent",
            "settings": SETTINGS, "events": [va, vb],
            "exchanges": [{"request": ingest([va, vb]), "response": ok([{"idempotency_key": vb["id"], "validation_errors": ["Property region is not allowed on this metric"]}])}],
            "expected": {va["id"]: [{"outcome": "accepted"}], vb["id"]: [{"outcome": "rejected", "code": "validation_failed", "message_contains": "region"}]}})
    fresh, stale = event(40), event(41, ts=NOW_UNIX - 3 * 86400 - 1800)
    bf = {"id": "bf_Tz8xR2mLp4", "status": "pending", "created_at": "2026-11-20T12:00:00Z", "timeframe_start": iso(NOW_UNIX - 3 * 86400 - 3600),
          "timeframe_end": iso(NOW_UNIX - 3 * 86400), "close_time": None, "customer_id": None, "events_ingested": 0,
          "replace_existing_events": False, "reverted_at": None, "deprecation_filter": None}
    closed = dict(bf, status="reflected", events_ingested=1, close_time="2026-11-20T12:00:00Z")
    hdr = {"Authorization": "Bearer " + KEY, "Accept": "application/json", "Content-Type": "application/json"}
    W.write("backfill_for_events_past_grace", {
            "description": "backfill: true: a current event is ingested normally; one 3 days old goes through create backfill, ingest with backfill_id, close",
            "settings": dict(SETTINGS, grace_period_hours=12, backfill=True), "events": [fresh, stale],
            "exchanges": [{"request": ingest([fresh]), "response": ok()},
                          {"request": {"method": "POST", "url": BASE + "/events/backfills",
                                       "headers": dict(hdr, **{"Idempotency-Key": derived_id(["orb-backfill", "acme-external-1", stale["id"]])}),
                                       "json": {"timeframe_start": bf["timeframe_start"], "timeframe_end": bf["timeframe_end"],
                                                "external_customer_id": "acme-external-1"}},
                           "response": {"status": 200, "headers": {}, "json": bf}},
                          {"request": ingest([stale], backfill=bf["id"]), "response": ok()},
                          {"request": {"method": "POST", "url": BASE + "/events/backfills/%s/close" % bf["id"],
                                       "headers": {"Authorization": "Bearer " + KEY, "Accept": "application/json",
                                                   "Idempotency-Key": derived_id(["orb-close-backfill", bf["id"]])}},
                           "response": {"status": 200, "headers": {}, "json": closed}}],
            "expected": {fresh["id"]: [{"outcome": "accepted"}], stale["id"]: [{"outcome": "accepted"}]}})
    four = [event(50 + i) for i in range(4)]
    W.write("payload_too_large_is_split", {
            "description": "413 on a batch of four: the sink halves it and sends two requests of two",
            "settings": SETTINGS, "events": four,
            "exchanges": [{"request": ingest(four), "response": problem(413, "413-request-too-large", "Request too large", "The request body is too large")},
                          {"request": ingest(four[:2]), "response": ok()}, {"request": ingest(four[2:]), "response": ok()}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in four}})


def api():
    day = NOW_UNIX - 12 * 3600  # 2026-11-20T00:00:00Z
    hdr = {"Authorization": "Bearer " + KEY, "Accept": "application/json"}
    usage = {"data": [{"billable_metric": {"id": "bm_api_requests", "name": "API requests"}, "view_mode": "periodic",
                       "usage": [{"quantity": 120, "timeframe_start": iso(day - 86400), "timeframe_end": iso(day)},
                                 {"quantity": 35.5, "timeframe_start": iso(day), "timeframe_end": iso(day + 86400)}]}]}
    write_api(W.folder, "subscription_usage_daily", "GET /subscriptions/{id}/usage per day, periodic", W.source, [
        {"request": {"method": "GET", "url": BASE + "/subscriptions/sub_Q8x2Lm/usage?timeframe_start=%s&timeframe_end=%s&view_mode=periodic&granularity=day"
                     % (iso(day - 86400), iso(day + 86400)), "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": usage}}])
    found = {"data": [{"id": eid(1), "event_name": "api_request", "external_customer_id": "acme-external-1", "customer_id": "cus_Orb1",
                       "deprecated": False, "properties": {"quantity": 5, "region": "eu-west"}, "timestamp": iso(NOW_UNIX - 60)}]}
    write_api(W.folder, "events_search", "POST /events/search by idempotency keys", W.source, [
        {"request": {"method": "POST", "url": BASE + "/events/search", "headers": dict(hdr, **{"Content-Type": "application/json"}),
                     "json": {"event_ids": [eid(1), eid(2)]}},
         "response": {"status": 200, "headers": {}, "json": found}}])
    # Corrections: PUT /events/{id} (amend) and PUT /events/{id}/deprecate, per an orb-billing
    # 4.90.0 capture (the SDK adds its own Idempotency-Key; Orb documents these calls as
    # idempotent by design, so we send none). Deprecate has no body.
    amended = {"event_name": "api_request", "properties": {"quantity": 3, "region": "eu-west"},
               "timestamp": iso(NOW_UNIX - 60), "external_customer_id": "acme-external-1"}
    put = dict(hdr, **{"Content-Type": "application/json"})
    write_api(W.folder, "event_amend", "PUT /events/{id} amends an event in place (same id, timestamp and customer)", W.source, [
        {"request": {"method": "PUT", "url": BASE + "/events/" + eid(1), "headers": put, "json": amended},
         "response": {"status": 200, "headers": {}, "json": {"amended": eid(1)}}}])
    write_api(W.folder, "event_amend_past_grace", "PUT /events/{id} for an event outside the billing period's grace: refused", W.source, [
        {"request": {"method": "PUT", "url": BASE + "/events/" + eid(1), "headers": put, "json": amended},
         "response": problem(400, "400-request-validation-errors", "Request validation error",
                             "The event's timestamp is not within the customer's current billing period or the previous period's grace period",
                             {"validation_errors": [{"loc": ["body", "timestamp"], "msg": "outside the amendable period"}]})}])
    write_api(W.folder, "event_deprecate", "PUT /events/{id}/deprecate: the event is no longer billed", W.source, [
        {"request": {"method": "PUT", "url": BASE + "/events/" + eid(2) + "/deprecate", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"deprecated": eid(2)}}}])


if __name__ == "__main__":
    main()
    api()
