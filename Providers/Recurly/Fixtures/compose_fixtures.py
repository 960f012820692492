#!/usr/bin/env python3
"""Composes the Recurly conformance fixtures (no Recurly site is reachable from CI).

Requests match what the official SDK recurly 4.79.0 sends for the same input (captured by
replacing http.client.HTTPSConnection): create_usage posts JSON {amount, merchant_tag,
usage_timestamp, recording_timestamp} to https://v3.recurly.com/subscriptions/{id}/add_ons/{id}/usage
with Basic auth, Accept application/vnd.recurly.v2021-02-25 and Content-Type application/json;
list_usage sends the same headers with the filters as query parameters. (The SDK writes datetimes
as 2026-11-20T00:00:00+00:00; we write the equivalent 2026-11-20T00:00:00Z.)
Response and error bodies follow shared/providers/recurly.md and the spec's Usage, UsageList and
Error schemas ({"error": {...}} on the wire).
Run: python3 compose_fixtures.py
"""
import base64, os, sys
from urllib.parse import quote
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request shape per a recurly 4.79.0 capture; bodies per shared/providers/recurly.md and the spec")
KEY = "recurly_REDACTED"
AUTH = "Basic " + base64.b64encode((KEY + ":").encode()).decode()
BASE = "https://v3.recurly.com"
SUB = "uuid-6f2c1d5e8a9b4c3d2e1f0a9b8c7d6e5f"
ADDON = "code-api-calls"
SETTINGS = {"api_key": KEY, "add_on_id": ADDON, "customers": {"acme": SUB}}
LANE = "recurly#0"
DAY = NOW_UNIX - 12 * 3600 - 86400  # 2026-11-19T00:00:00Z
HDR = {"Authorization": AUTH, "Accept": "application/vnd.recurly.v2021-02-25"}


def record(n=0, qty="42", customer="acme", events=7):
    start = DAY - n * 86400
    return window_record(LANE, customer, "api_request", start, start + 86400, qty, events=events)


def path(sub=SUB):
    return "%s/subscriptions/%s/add_ons/%s/usage" % (BASE, sub, ADDON)


def create(r, sub=SUB):
    p = r["properties"]
    return {"method": "POST", "url": path(sub), "headers": dict(HDR, **{"Content-Type": "application/json"}),
            "json": {"amount": number(r["quantity"]), "merchant_tag": r["id"], "usage_timestamp": p["ub_window_start"],
                     "recording_timestamp": p["ub_window_end"]}}


def usage(r, n=1):
    p = r["properties"]
    return {"id": "ufy8p0zl9x%02d" % n, "object": "usage", "merchant_tag": r["id"], "amount": number(r["quantity"]),
            "usage_type": "price", "tier_type": "flat", "tiers": [], "measured_unit_id": "u1x6n5pn9ydw",
            "recording_timestamp": p["ub_window_end"], "usage_timestamp": p["ub_window_start"], "unit_amount": 0.01,
            "unit_amount_decimal": "0.01", "created_at": iso(NOW_UNIX), "updated_at": iso(NOW_UNIX)}


def created(r):
    return {"status": 201, "headers": {"Recurly-Version": "recurly.v2021-02-25"}, "json": usage(r)}


def lookup(r, found):
    at = r["properties"]["ub_window_start"]
    q = "billing_status=all&sort=usage_timestamp&order=asc&limit=200&begin_time=%s&end_time=%s" % (quote(at, safe=""), quote(at, safe=""))
    return {"request": {"method": "GET", "url": path() + "?" + q, "headers": HDR},
            "response": {"status": 200, "headers": {"Recurly-Version": "recurly.v2021-02-25"},
                         "json": {"object": "list", "has_more": False, "data": [usage(r)] if found else []}}}


def err(status, type_, message, params=None, headers=None):
    e = {"type": type_, "message": message}
    if params:
        e["params"] = params
    return {"status": status, "headers": dict({"X-Request-Id": "5b8d1f0c9e2a7b3c-SJC"}, **(headers or {})), "json": {"error": e}}


def main():
    r = record()
    W.write("single_event_accepted", {"scenario": "single_event_accepted",
            "description": "one day window's record: amount, merchant_tag = the aggregate id, usage_timestamp = window start, recording_timestamp = window end; 201",
            "settings": SETTINGS, "events": [r], "exchanges": [{"request": create(r), "response": created(r)}],
            "expected": {r["id"]: [{"outcome": "accepted"}]}})
    two = [record(n=1, qty="10"), record(n=0, qty="12")]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "two window records: Recurly takes one usage record per request",
            "settings": SETTINGS, "events": two,
            "exchanges": [{"request": create(e), "response": created(e)} for e in two],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in two}})
    reset = NOW_UNIX + 30
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "429 rate_limited: Recurly sends no Retry-After, so the wait is X-RateLimit-Reset (epoch seconds) minus now = 30 s; a 429 was refused, so no lookup before the resend",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "response": err(429, "rate_limited", "You have made too many API requests in the last hour. Future API requests will be ignored until the beginning of the next hour.",
                                                                 headers={"X-RateLimit-Limit": "400", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})},
                          {"request": create(r), "response": created(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 30}, {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 rate_limited without rate-limit headers: back off by the policy, then 201",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "response": err(429, "rate_limited", "Too many requests")}, {"request": create(r), "response": created(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "500 internal_server_error (Recurly may have stored the record): look the merchant_tag up first; not there, so post again",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "response": err(500, "internal_server_error", "An internal server error has occurred. Please try again later.")},
                          lookup(r, found=False), {"request": create(r), "response": created(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried",
            "description": "reset after sending: the lookup finds nothing, so the record is posted again",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "failure": "connection_reset"}, lookup(r, found=False), {"request": create(r), "response": created(r)}],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered",
            "description": "ambiguous failure then verify, no second charge: the POST timed out after Recurly stored it; the lookup finds the merchant_tag, so nothing is posted again",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "failure": "timeout_after_send"}, lookup(r, found=True)],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "duplicate"}]}})
    neg = record(qty="-2000000000000")
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected",
            "description": "422 validation naming amount: rejected with Recurly's type and param",
            "settings": SETTINGS, "events": [neg],
            "exchanges": [{"request": create(neg), "response": err(422, "validation", "Amount must be greater than or equal to -999999999", [{"param": "amount", "message": "must be greater than or equal to -999999999"}])}],
            "expected": {neg["id"]: [{"outcome": "rejected", "code": "validation", "origin": "provider", "field": "amount"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error", "description": "401 unauthorized: .configuration",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "response": err(401, "unauthorized", "Please provide a valid API key.")}],
            "expected_error": "configuration"})
    ghost = record(customer="ghost")
    W.write("unknown_meter_or_customer", {"scenario": "unknown_meter_or_customer",
            "description": "404 not_found: the subscription does not exist",
            "settings": SETTINGS, "events": [ghost],
            "exchanges": [{"request": create(ghost, sub="ghost"), "response": err(404, "not_found", "Couldn't find Subscription with uuid = ghost")}],
            "expected": {ghost["id"]: [{"outcome": "rejected", "code": "not_found", "origin": "provider"}]}})
    W.write("duplicate_is_duplicate", {"scenario": "duplicate_is_duplicate",
            "description": "Recurly has no dedup: after a reset the lookup finds the merchant_tag, which reads as a duplicate and posts nothing",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "failure": "connection_reset"}, lookup(r, found=True)],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "duplicate"}]}})
    frac = record(qty="12.5")
    W.write("unsupported_value_rejected_locally", {"scenario": "unsupported_value_rejected_locally",
            "description": "12.5 without decimal_quantity: Recurly would drop the .5, so it is refused before sending",
            "settings": SETTINGS, "events": [frac], "exchanges": [],
            "expected": {frac["id"]: [{"outcome": "rejected", "code": "amount_not_whole", "origin": "local", "field": "quantity"}]}})
    # Recurly-specific.
    W.write("decimal_quantity_keeps_decimals", {
            "description": "decimal_quantity: true (the site's Decimal Quantity feature): 12.5 goes as it is",
            "settings": dict(SETTINGS, decimal_quantity=True), "events": [frac],
            "exchanges": [{"request": create(frac), "response": created(frac)}],
            "expected": {frac["id"]: [{"outcome": "accepted"}]}})
    W.write("simultaneous_request_is_retried", {
            "description": "422 simultaneous_request (a concurrent write on the subscription): retried after a second; it was refused, so no lookup",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": create(r), "response": err(422, "simultaneous_request", "A change to this subscription is already in progress")},
                          {"request": create(r), "response": created(r)}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "conflict", "retry_after": 1}, {"outcome": "accepted"}]}})


def api():
    rows = [record(n=i) for i in range(3)]
    begin, end = iso(DAY - 2 * 86400), iso(DAY)
    q = "billing_status=all&sort=usage_timestamp&order=asc&limit=200&begin_time=%s&end_time=%s" % (quote(begin, safe=""), quote(end, safe=""))
    nxt = "/subscriptions/%s/add_ons/%s/usage?cursor=ufy8p0zl9x02%%3A1795046400.0&%s" % (SUB, ADDON, q)
    write_api(W.folder, "usage_paginated", "GET the add-on's usage list, billing_status=all, ascending usage_timestamp, two pages via next", W.source, [
        {"request": {"method": "GET", "url": path() + "?" + q, "headers": HDR},
         "response": {"status": 200, "headers": {}, "json": {"object": "list", "has_more": True, "next": nxt, "data": [usage(rows[2], 1), usage(rows[1], 2)]}}},
        {"request": {"method": "GET", "url": BASE + nxt, "headers": HDR},
         "response": {"status": 200, "headers": {}, "json": {"object": "list", "has_more": False, "data": [usage(rows[0], 3)]}}}])
    # Corrections before billing: DELETE /usage/{usage_id}, answered 204 with no body.
    write_api(W.folder, "usage_delete", "DELETE /usage/{usage_id} removes a usage record not yet billed", W.source, [
        {"request": {"method": "DELETE", "url": BASE + "/usage/ufy8p0zl9x01", "headers": HDR},
         "response": {"status": 204, "headers": {}}}])


if __name__ == "__main__":
    main()
    api()
