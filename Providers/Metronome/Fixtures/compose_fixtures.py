#!/usr/bin/env python3
"""Composes the Metronome conformance fixtures (no Metronome account is reachable from CI).

Requests match what the official SDK metronome-sdk 4.12.0 sends for the same events (captured with
an httpx MockTransport): POST {base}/v1/ingest, Authorization: Bearer, Content-Type
application/json, Accept */*, no Idempotency-Key, body a bare JSON array of
{transaction_id, customer_id, event_type, timestamp, properties} with string property values.
Responses follow shared/providers/metronome.md: empty 200 on success (duplicates included),
{"message": ...} on 4xx, X-Metronome-Rate-Limit-Type on 429.
Run: python3 compose_fixtures.py
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request shape per a metronome-sdk 4.12.0 capture; bodies per shared/providers/metronome.md")
BASE = "https://api.metronome.com"
KEY = "metronome_REDACTED"
SETTINGS = {"api_key": KEY, "customers": {"acme": "acme-alias"}}


def m_event(e, strings=True):
    props = {k: (str(v).lower() if isinstance(v, bool) else str(v)) if strings else v for k, v in e.get("properties", {}).items()}
    props["quantity"] = e["quantity"] if strings else number(e["quantity"])
    return {"transaction_id": e["id"], "customer_id": SETTINGS["customers"].get(e["customer"], e["customer"]),
            "event_type": e["name"], "timestamp": e["timestamp"], "properties": props}


def ingest(events, key=KEY):
    return {"method": "POST", "url": BASE + "/v1/ingest",
            "headers": {"Authorization": "Bearer " + key, "Content-Type": "application/json", "Accept": "*/*"},
            "json": [m_event(e) for e in events]}


OK = {"status": 200, "headers": {}}


def err(status, message, headers=None):
    return {"status": status, "headers": headers or {}, "json": {"message": message}}


def main():
    e1 = event(1, props={"region": "eu-west", "cached": True})
    W.write("single_event_accepted", {"scenario": "single_event_accepted",
            "description": "one event in a bare array, properties as strings; an empty 200 is success",
            "settings": SETTINGS, "events": [e1], "exchanges": [{"request": ingest([e1]), "response": OK}],
            "expected": {e1["id"]: [{"outcome": "accepted"}]}})
    many = [event(100 + i, customer=["acme", "globex"][i % 2], qty=str(i % 9 + 1), ts=NOW_UNIX - 3600 + i) for i in range(101)]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "101 events: Metronome takes at most 100 per request, so 100 + 1",
            "settings": SETTINGS, "events": many,
            "exchanges": [{"request": ingest(many[:100]), "response": OK}, {"request": ingest(many[100:]), "response": OK}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in many}})
    e2 = event(2)
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "429 client rate limit with Retry-After: 2 (not documented by Metronome; honoured when sent), then 200",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": err(429, "Too many requests", {"X-Metronome-Rate-Limit-Type": "client", "Retry-After": "2"})},
                          {"request": ingest([e2]), "response": OK}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 2, "message_contains": "client rate limit"},
                                    {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 customer rate limit, no Retry-After: the reason says only this customer is throttled; back off, then 200",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": err(429, "Too many requests", {"X-Metronome-Rate-Limit-Type": "customer"})},
                          {"request": ingest([e2]), "response": OK}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "message_contains": "customer rate limit"},
                                    {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "500 (some events of the batch may be in): resend the whole batch; transaction_id dedupes",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": err(500, "Internal server error")}, {"request": ingest([e2]), "response": OK}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried", "description": "reset after sending: resent",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "failure": "connection_reset"}, {"request": ingest([e2]), "response": OK}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered", "description": "timeout after sending: resent",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "failure": "timeout_after_send"}, {"request": ingest([e2]), "response": OK}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    e3 = event(3, customer="")
    e3["customer"] = "acme"
    e3["properties"] = {"region": "eu-west"}
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected",
            "description": "400 with Metronome's message: rejected, never retried",
            "settings": SETTINGS, "events": [e3],
            "exchanges": [{"request": ingest([e3]), "response": err(400, "body/0/timestamp must be a valid RFC 3339 timestamp")}],
            "expected": {e3["id"]: [{"outcome": "rejected", "code": "http_400", "origin": "provider", "message_contains": "RFC 3339"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error", "description": "401: .configuration",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": ingest([e2]), "response": err(401, "Unauthorized")}], "expected_error": "configuration"})
    old = event(6, ts=NOW_UNIX - 35 * 86400)
    W.write("too_old_timestamp_rejected_locally", {"scenario": "too_old_timestamp_rejected_locally", "description": "35 days old: Metronome takes 34",
            "settings": SETTINGS, "events": [old], "exchanges": [],
            "expected": {old["id"]: [{"outcome": "rejected", "code": "timestamp_too_old", "origin": "local", "field": "timestamp"}]}})
    future = event(7, ts=NOW_UNIX + 25 * 3600)
    W.write("future_timestamp_rejected_locally", {"scenario": "future_timestamp_rejected_locally", "description": "25 hours ahead: Metronome allows 24",
            "settings": SETTINGS, "events": [future], "exchanges": [],
            "expected": {future["id"]: [{"outcome": "rejected", "code": "timestamp_in_future", "origin": "local", "field": "timestamp"}]}})
    big = event(8, qty="12345678901234567890.5")
    long_id = event(9, id="t" * 129)
    W.write("unsupported_value_rejected_locally", {"scenario": "unsupported_value_rejected_locally",
            "description": "properties_as_strings false: a quantity a JSON number cannot carry; and a 129-character transaction_id (limit 128)",
            "settings": dict(SETTINGS, properties_as_strings=False), "events": [big, long_id], "exchanges": [],
            "expected": {big["id"]: [{"outcome": "rejected", "code": "value_not_representable", "origin": "local", "field": "quantity"}],
                         long_id["id"]: [{"outcome": "rejected", "code": "transaction_id_too_long", "origin": "local", "field": "transaction_id"}]}})
    # Metronome-specific.
    d = event(30)
    W.write("duplicate_is_a_silent_empty_200", {
            "description": "an event re-sent after an earlier delivery (as after a crash): Metronome ignores the repeated transaction_id and answers the same empty 200, so it reads as accepted; both mean billed once",
            "settings": SETTINGS, "events": [d],
            "exchanges": [{"request": ingest([d]), "response": OK}],
            "expected": {d["id"]: [{"outcome": "accepted"}]}})
    c = event(31)
    W.write("conflict_409_is_not_retried", {
            "description": "Metronome: never auto-retry a 4xx other than 429; a 409 goes to dead letters",
            "settings": SETTINGS, "events": [c],
            "exchanges": [{"request": ingest([c]), "response": err(409, "Conflict")}],
            "expected": {c["id"]: [{"outcome": "rejected", "code": "http_409", "origin": "provider"}]}})
    # A Stripe secret key authenticates the Metronome API (docs.stripe.com/billing/secret-keys,
    # checked 2026-12-07), sent as the bearer token; the Stripe customer id is the ingest alias.
    sk = "sk_test_REDACTED"
    s1 = event(32, customer="cus_StripeCustomer1")
    W.write("single_event_accepted--stripe_secret_key", {"scenario": "single_event_accepted",
            "description": "secret_key: a Stripe sk_ key as the bearer token; the Stripe customer id as the ingest alias (a Stripe to Metronome migration)",
            "settings": {"secret_key": sk}, "events": [s1], "exchanges": [{"request": ingest([s1], key=sk), "response": OK}],
            "expected": {s1["id"]: [{"outcome": "accepted"}]}})


def api():
    day = NOW_UNIX - 12 * 3600  # 2026-11-20T00:00:00Z
    hdr = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json", "Accept": "application/json"}
    body = {"starting_on": iso(day - 2 * 86400), "ending_before": iso(day), "window_size": "day"}
    row = lambda cust, start, value: {"customer_id": cust, "billable_metric_id": "5bb6c6a6-7a5c-4bf4-8a2d-0c3d4e5f6a7b",
                                      "billable_metric_name": "API requests", "start_timestamp": iso(start), "end_timestamp": iso(start + 86400), "value": value}
    write_api(W.folder, "usage_paginated", "POST /v1/usage, day windows, two pages via next_page", W.source, [
        {"request": {"method": "POST", "url": BASE + "/v1/usage", "headers": hdr, "json": body},
         "response": {"status": 200, "headers": {}, "json": {"data": [row("0e5b8609-d901-4992-b394-c3c2e3f37b1c", day - 2 * 86400, 120),
                                                                    row("0e5b8609-d901-4992-b394-c3c2e3f37b1c", day - 86400, None)],
                                                           "next_page": "cursor_page_2"}}},
        {"request": {"method": "POST", "url": BASE + "/v1/usage?next_page=cursor_page_2", "headers": hdr, "json": body},
         "response": {"status": 200, "headers": {}, "json": {"data": [row("6a37bb88-8538-48c5-b37b-a41c836328bd", day - 2 * 86400, 7.5)],
                                                           "next_page": None}}}])


def api_aliases():
    hdr = {"Authorization": "Bearer " + KEY, "Accept": "application/json"}
    customer = {"id": "0e5b8609-d901-4992-b394-c3c2e3f37b1c", "external_id": "cus_StripeCustomer1", "name": "Acme",
                "ingest_aliases": ["cus_StripeCustomer1"], "custom_fields": {}, "created_at": "2026-01-14T00:00:00Z"}
    write_api(W.folder, "customer_by_ingest_alias", "GET /v1/customers?ingest_alias=: the Metronome id behind an alias, for the usage read-back", W.source, [
        {"request": {"method": "GET", "url": BASE + "/v1/customers?ingest_alias=cus_StripeCustomer1", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"data": [customer], "next_page": None}}}])
    write_api(W.folder, "customer_by_unknown_ingest_alias", "GET /v1/customers?ingest_alias=: no customer has it", W.source, [
        {"request": {"method": "GET", "url": BASE + "/v1/customers?ingest_alias=cus_Unknown", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"data": [], "next_page": None}}}])


if __name__ == "__main__":
    main()
    api()
    api_aliases()
