#!/usr/bin/env python3
"""Composes the Chargebee conformance fixtures (no Chargebee site is reachable from CI).

Requests match what the official SDK chargebee 3.29.0 sends for the same input (captured by
replacing httpx.Client.send): Usage.create posts form fields id, item_price_id, quantity,
usage_date, dedupe_option, note to https://{site}.chargebee.com/api/v2/subscriptions/{id}/usages
with Basic auth, Accept application/json; UsageEvent.batch_ingest posts
{"events": [{deduplication_id, subscription_id, usage_timestamp, properties}]} as
application/json;charset=UTF-8 to https://{site}.ingest.chargebee.com/api/v2/batch/usage_events.
We add chargebee-idempotency-key (the SDK adds one only with retries enabled).
Response and error bodies follow shared/providers/chargebee.md and the spec's Usage and 4xx/5xx
schemas. The shape of failed_events entries is not documented (the spec says
additionalProperties: true); the fixtures assume {deduplication_id, error_code, error_message}.
Run: python3 compose_fixtures.py
"""
import base64, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request shape per a chargebee 3.29.0 capture; bodies per shared/providers/chargebee.md and the spec")
KEY = "cb_test_REDACTED"
AUTH = "Basic " + base64.b64encode((KEY + ":").encode()).decode()
BASE = "https://acme-test.chargebee.com/api/v2"
INGEST = "https://acme-test.ingest.chargebee.com/api/v2"
SETTINGS = {"api_key": KEY, "site": "acme-test", "item_price_id": "api-calls-USD-monthly", "customers": {"acme": "AzZjGqTQ1xxK0Ezc"}}
EVENTS = dict(SETTINGS, mode="usage_events")
LANE = "chargebee#0"
DAY = NOW_UNIX - 12 * 3600 - 86400  # 2026-11-19T00:00:00Z: yesterday's day window


def record(n=0, qty="42", customer="acme", revision=0, events=7, meter="api_request"):
    start = DAY - n * 86400
    return window_record(LANE, customer, meter, start, start + 86400, qty, events=events, revision=revision)


def note(r):
    p = r["properties"]
    text = "usage-billing: %s from %s to %s, %d events" % (r["name"], p["ub_window_start"], p["ub_window_end"], p["ub_events"])
    return text + (", revision %d" % p["ub_revision"] if p["ub_revision"] else "")


def form(fields):
    from urllib.parse import quote
    return "&".join("%s=%s" % (quote(k, safe="[]"), quote(str(v), safe="")) for k, v in fields)


def usage_req(r, subscription="AzZjGqTQ1xxK0Ezc", item="api-calls-USD-monthly", dedupe=None):
    date = unix(r["properties"]["ub_window_start"]) + r["properties"]["ub_revision"]
    fields = [("id", r["id"]), ("item_price_id", item), ("quantity", r["quantity"]), ("usage_date", date)]
    if dedupe:
        fields.append(("dedupe_option", dedupe))
    fields.append(("note", note(r)))
    return {"method": "POST", "url": "%s/subscriptions/%s/usages" % (BASE, subscription),
            "headers": {"Authorization": AUTH, "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
                        "chargebee-idempotency-key": r["id"]},
            "form": form(fields)}


def usage_ok(r, subscription="AzZjGqTQ1xxK0Ezc", headers=None):
    date = unix(r["properties"]["ub_window_start"]) + r["properties"]["ub_revision"]
    return {"status": 200, "headers": headers or {},
            "json": {"usage": {"id": r["id"], "usage_date": date, "subscription_id": subscription, "item_price_id": "api-calls-USD-monthly",
                               "quantity": r["quantity"], "source": "api", "note": note(r), "object": "usage", "resource_version": (NOW_UNIX) * 1000,
                               "updated_at": NOW_UNIX, "created_at": NOW_UNIX}}}


def err(status, code, message, type_="invalid_request", param=None, headers=None):
    body = {"message": message, "type": type_, "api_error_code": code}
    if param:
        body["param"] = param
    return {"status": status, "headers": headers or {}, "json": body}


def ue(e, subscription="AzZjGqTQ1xxK0Ezc"):
    props = dict(e.get("properties", {}))
    props["quantity"] = number(e["quantity"])
    return {"deduplication_id": e["id"], "subscription_id": subscription, "usage_timestamp": unix(e["timestamp"]) * 1000, "properties": props}


def batch_req(events):
    return {"method": "POST", "url": INGEST + "/batch/usage_events",
            "headers": {"Authorization": AUTH, "Accept": "application/json", "Content-Type": "application/json;charset=UTF-8"},
            "json": {"events": [ue(e) for e in events]}}


def batch_ok(failed=None, n=1):
    return {"status": 200, "headers": {}, "json": {"batch_id": "batch_%05d" % n, "failed_events": failed or []}}


def main():
    r = record()
    W.write("single_event_accepted", {"scenario": "single_event_accepted",
            "description": "usages mode: one day window's record; id = the aggregate id (also the idempotency key), usage_date = window start",
            "settings": SETTINGS, "events": [r], "exchanges": [{"request": usage_req(r), "response": usage_ok(r)}],
            "expected": {r["id"]: [{"outcome": "accepted"}]}})
    many = [event(100 + i, customer="acme", qty=str(i % 9 + 1), ts=NOW_UNIX - 3600 + i) for i in range(501)]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "usage_events mode: 501 events; Chargebee takes at most 500 per batch, so 500 + 1",
            "settings": EVENTS, "events": many,
            "exchanges": [{"request": batch_req(many[:500]), "response": batch_ok(n=1)}, {"request": batch_req(many[500:]), "response": batch_ok(n=2)}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in many}})
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "429 api_request_limit_exceeded with Retry-After: 2 (the SDK honours it when sent), then 200 with the same id and key",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "response": err(429, "api_request_limit_exceeded", "Sorry, access has been blocked temporarily due to request count exceeding acceptable limits. Please try after some time.", type_="operation_failed", headers={"Retry-After": "2"})},
                          {"request": usage_req(r), "response": usage_ok(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 2, "message_contains": "api_request_limit_exceeded"},
                                   {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 lock_timeout without Retry-After: back off, then 200",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "response": err(429, "lock_timeout", "The site is processing another request. Please retry.", type_="operation_failed")},
                          {"request": usage_req(r), "response": usage_ok(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "503 internal_temporary_error, then 200; the same id and chargebee-idempotency-key",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "response": err(503, "internal_temporary_error", "Sorry, something went wrong when trying to process the request.", type_="operation_failed")},
                          {"request": usage_req(r), "response": usage_ok(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried", "description": "reset after sending: resent with the same id",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "failure": "connection_reset"}, {"request": usage_req(r), "response": usage_ok(r)}],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered",
            "description": "timeout after sending; the resend within 30 minutes is answered from Chargebee's idempotency cache (chargebee-idempotency-replayed: true): a duplicate, billed once",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "failure": "timeout_after_send"},
                          {"request": usage_req(r), "response": usage_ok(r, headers={"chargebee-idempotency-replayed": "true"})}],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "duplicate"}]}})
    bad = record(qty="1.5")
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected",
            "description": "400 param_wrong_value on quantity (the item price takes whole units): rejected with Chargebee's code and param",
            "settings": SETTINGS, "events": [bad],
            "exchanges": [{"request": usage_req(bad), "response": err(400, "param_wrong_value", "quantity : should be a whole number", param="quantity")}],
            "expected": {bad["id"]: [{"outcome": "rejected", "code": "param_wrong_value", "origin": "provider", "field": "quantity", "message_contains": "whole number"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error", "description": "401 api_authentication_failed: .configuration",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "response": {"status": 401, "headers": {}, "json": {
                "message": "Sorry, authentication failed. Invalid api key", "type": "untyped", "api_error_code": "api_authentication_failed"}}}],
            "expected_error": "configuration"})
    ghost = record(customer="ghost")
    W.write("unknown_meter_or_customer", {"scenario": "unknown_meter_or_customer",
            "description": "404 resource_not_found: the subscription does not exist",
            "settings": SETTINGS, "events": [ghost],
            "exchanges": [{"request": usage_req(ghost, subscription="ghost"), "response": {"status": 404, "headers": {}, "json": {
                "message": "Sorry, we couldn't find that resource", "type": "invalid_request", "api_error_code": "resource_not_found"}}}],
            "expected": {ghost["id"]: [{"outcome": "rejected", "code": "resource_not_found", "origin": "provider"}]}})
    trio = [event(40 + i, qty=str(i + 1), ts=NOW_UNIX - 600 + i) for i in range(3)]
    W.write("partial_batch_failure", {"scenario": "partial_batch_failure",
            "description": "usage_events mode: failed_events names one event of three; it is rejected with its message, the other two accepted",
            "settings": EVENTS, "events": trio,
            "exchanges": [{"request": batch_req(trio), "response": batch_ok(failed=[{"deduplication_id": trio[1]["id"], "error_code": "invalid_properties",
                                                                                    "error_message": "properties.quantity must be a number"}])}],
            "expected": {trio[0]["id"]: [{"outcome": "accepted"}],
                         trio[1]["id"]: [{"outcome": "rejected", "code": "invalid_properties", "origin": "provider", "message_contains": "must be a number"}],
                         trio[2]["id"]: [{"outcome": "accepted"}]}})
    W.write("duplicate_is_duplicate", {"scenario": "duplicate_is_duplicate",
            "description": "a window record re-sent after 30 minutes (idempotency cache gone): Chargebee refuses the existing id with duplicate_entry on id; that is success",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": usage_req(r), "response": err(400, "duplicate_entry", "The value ub_… is already present.", param="id")}],
            "expected": {r["id"]: [{"outcome": "duplicate"}]}})
    old = event(6, ts=NOW_UNIX - 13 * 3600)
    W.write("too_old_timestamp_rejected_locally", {"scenario": "too_old_timestamp_rejected_locally",
            "description": "usage_events mode: 13 hours old; Chargebee takes usage events from the last 12 hours",
            "settings": EVENTS, "events": [old], "exchanges": [],
            "expected": {old["id"]: [{"outcome": "rejected", "code": "timestamp_too_old", "origin": "local", "field": "timestamp"}]}})
    future = event(7, ts=NOW_UNIX + 3600)
    W.write("future_timestamp_rejected_locally", {"scenario": "future_timestamp_rejected_locally",
            "description": "usage_events mode: an hour ahead (5 minutes of clock skew allowed)",
            "settings": EVENTS, "events": [future], "exchanges": [],
            "expected": {future["id"]: [{"outcome": "rejected", "code": "timestamp_in_future", "origin": "local", "field": "timestamp"}]}})
    negative = record(qty="-3")
    W.write("unsupported_value_rejected_locally", {"scenario": "unsupported_value_rejected_locally",
            "description": "usages mode: a negative quantity (a 'last' window that went down) is refused before sending",
            "settings": SETTINGS, "events": [negative], "exchanges": [],
            "expected": {negative["id"]: [{"outcome": "rejected", "code": "quantity_negative", "origin": "local", "field": "quantity"}]}})
    # Chargebee-specific.
    big = event(8, ts=NOW_UNIX - 60, props={"note": "x" * 1100})
    W.write("usage_event_over_1kb_rejected_locally", {
            "description": "usage_events mode: properties over Chargebee's 1 KB per event are refused before sending",
            "settings": EVENTS, "events": [big], "exchanges": [],
            "expected": {big["id"]: [{"outcome": "rejected", "code": "properties_too_large", "origin": "local", "field": "properties"}]}})
    pair = [event(50 + i, ts=NOW_UNIX - 300 + i) for i in range(2)]
    W.write("usage_events_batch_invalid", {
            "description": "usage_events mode: 400 ubb_batch_ingestion_invalid_request with failed_events: the named event is rejected, the other accepted",
            "settings": EVENTS, "events": pair,
            "exchanges": [{"request": batch_req(pair), "response": {"status": 400, "headers": {}, "json": {
                "message": "One or more events are invalid", "type": "ubb_batch_ingestion_invalid_request", "api_error_code": "invalid_request",
                "batch_id": "batch_00009", "failed_events": [{"deduplication_id": pair[0]["id"], "error_code": "invalid_subscription",
                                                            "error_message": "subscription_id is not valid"}]}}}],
            "expected": {pair[0]["id"]: [{"outcome": "rejected", "code": "invalid_subscription", "origin": "provider"}],
                         pair[1]["id"]: [{"outcome": "accepted"}]}})
    resent = event(60, ts=NOW_UNIX - 120)
    W.write("usage_events_resend_is_deduplicated", {
            "description": "usage_events mode: the answer is lost after sending; the resend carries the same (usage_timestamp, subscription_id, deduplication_id), the triple Chargebee keeps unique, so it answers 200 with no failed event and bills it once",
            "settings": EVENTS, "events": [resent],
            "exchanges": [{"request": batch_req([resent]), "failure": "timeout_after_send"},
                          {"request": batch_req([resent]), "response": batch_ok(n=10)}],
            "expected": {resent["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    late = record(qty="5", revision=1, events=9)
    W.write("late_events_revision_has_its_own_usage_date", {
            "description": "a window's second record (late events, revision 1) carries the increment with usage_date = window start + 1 s, so it does not collide with the first record (one record per subscription, item price and date); dedupe_option skip as configured",
            "settings": dict(SETTINGS, dedupe_option="skip"), "events": [late],
            "exchanges": [{"request": usage_req(late, dedupe="skip"), "response": usage_ok(late)}],
            "expected": {late["id"]: [{"outcome": "accepted"}]}})
    limit = record(n=1)
    W.write("lifetime_limit_explained", {
            "description": "400 resource_limit_exceeded (5,000 usages per subscription): rejected, and the message says how to fix it",
            "settings": SETTINGS, "events": [limit],
            "exchanges": [{"request": usage_req(limit), "response": err(400, "resource_limit_exceeded", "Usages limit for the subscription has been reached")}],
            "expected": {limit["id"]: [{"outcome": "rejected", "code": "resource_limit_exceeded", "origin": "provider", "message_contains": "aggregate.window"}]}})


def api():
    hdr = {"Authorization": AUTH, "Accept": "application/json"}
    rows = [record(n=i) for i in range(3)]
    def item(r):
        return {"usage": usage_ok(r)["json"]["usage"]}
    q = "limit=100&usage_date%5Bbetween%5D=%5B" + str(DAY - 2 * 86400) + "%2C" + str(DAY + 86400) + "%5D&sort_by%5Basc%5D=usage_date&subscription_id%5Bis%5D=AzZjGqTQ1xxK0Ezc"
    write_api(W.folder, "usages_paginated", "GET /api/v2/usages with filters, two pages via next_offset", W.source, [
        {"request": {"method": "GET", "url": BASE + "/usages?" + q, "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"list": [item(rows[2]), item(rows[1])], "next_offset": "[\"1795046400000\",\"230000000031\"]"}}},
        {"request": {"method": "GET", "url": BASE + "/usages?" + q + "&offset=%5B%221795046400000%22%2C%22230000000031%22%5D", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"list": [item(rows[0])]}}}])
    # Corrections: Chargebee corrects a usage by deleting it and adding it again
    # (POST /subscriptions/{id}/delete_usage, form id; idempotency supported, per the SDK).
    gone = rows[0]
    write_api(W.folder, "usage_delete", "POST /api/v2/subscriptions/{id}/delete_usage deletes one usage record by id", W.source, [
        {"request": {"method": "POST", "url": BASE + "/subscriptions/AzZjGqTQ1xxK0Ezc/delete_usage",
                     "headers": dict(hdr, **{"Content-Type": "application/x-www-form-urlencoded",
                                             "chargebee-idempotency-key": "delete-" + gone["id"]}),
                     "form": form([("id", gone["id"])])},
         "response": usage_ok(gone)}])


if __name__ == "__main__":
    main()
    api()
