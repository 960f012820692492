#!/usr/bin/env python3
"""Composes the conformance fixtures of `paddle_usage`, Paddle's usage events (early access, beta).

No SDK sends them yet (paddle-python-sdk 1.16.1 and its GitHub HEAD have no usage-events client),
so the requests follow Paddle's docs as checked on 2026-12-07 (developer.paddle.com
api-reference/usage-events/create-usage-events, usage-balances, meters): POST {base}/usage-events
with {"events": [{event_key, customer_id, action, quantity, occurred_at}]}, up to 100 events;
Authorization: Bearer, Paddle-Version: 1. A batch with an invalid event is refused whole (400
bad_request, errors naming events[i].field); a 2xx lists each event's status in order. Error
bodies have Paddle's usual shape. Run: python3 compose_fixtures.py
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request and answer shapes per Paddle's usage-events docs (beta, checked 2026-12-07)")
KEY = "pdl_sdbx_apikey_REDACTED"
BASE = "https://sandbox-api.paddle.com"
CTM = {"acme": "ctm_01hv8wt8nffez4p2t6typn4a5j", "globex": "ctm_01hv8x2k4mq7c9d3e5f6g7h8j9"}
SETTINGS = {"api_key": KEY, "customers": CTM, "event_names": {"api_request": "api_call"}}
HDR = {"Authorization": "Bearer " + KEY, "Paddle-Version": "1", "Content-Type": "application/json", "Accept": "application/json"}


def usage_event(e):
    return {"event_key": e["id"], "customer_id": CTM.get(e["customer"], e["customer"]),
            "action": SETTINGS["event_names"].get(e["name"], e["name"]), "quantity": number(e["quantity"]), "occurred_at": e["timestamp"]}


def post(events):
    return {"method": "POST", "url": BASE + "/usage-events", "headers": HDR, "json": {"events": [usage_event(e) for e in events]}}


def meta():
    return {"request_id": "%s-0000-4000-8000-000000000000" % W.rid("0000")[-8:]}


def created(events, rejected=None):
    rejected = rejected or {}
    data = []
    for e in events:
        item = {"event_key": e["id"], "status": "accepted"}
        if e["id"] in rejected:
            item = {"event_key": e["id"], "status": "rejected", "error": {"code": rejected[e["id"]][0], "detail": rejected[e["id"]][1]}}
        data.append(item)
    return {"status": 201, "headers": {}, "json": {"data": data, "meta": meta()}}


def error(status, type_, code, detail, errors=None, headers=None):
    e = {"type": type_, "code": code, "detail": detail, "documentation_url": "https://developer.paddle.com/v1/errors/shared/" + code}
    if errors:
        e["errors"] = [{"field": f, "message": m} for f, m in errors]
    return {"status": status, "headers": headers or {}, "json": {"error": e, "meta": meta()}}


def main():
    e1 = event(1)
    W.write("single_event_accepted", {"scenario": "single_event_accepted",
            "description": "one usage event; event_key = the event id, occurred_at = its timestamp; 201 with its status",
            "settings": SETTINGS, "events": [e1], "exchanges": [{"request": post([e1]), "response": created([e1])}],
            "expected": {e1["id"]: [{"outcome": "accepted"}]}})
    five = [event(10 + i, customer=["acme", "globex"][i % 2], qty=str(i + 1)) for i in range(5)]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "max_batch_size 2: five events go as requests of 2, 2 and 1",
            "settings": dict(SETTINGS, max_batch_size=2), "events": five,
            "exchanges": [{"request": post(five[0:2]), "response": created(five[0:2])}, {"request": post(five[2:4]), "response": created(five[2:4])},
                          {"request": post(five[4:]), "response": created(five[4:])}],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in five}})
    e2 = event(2)
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "429 too_many_requests with Retry-After: 5, then the same body again",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": post([e2]), "response": error(429, "api_error", "too_many_requests", "IP address exceeded the allowed rate limit.", headers={"Retry-After": "5"})},
                          {"request": post([e2]), "response": created([e2])}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 5}, {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 without Retry-After: back off, then the same body again",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": post([e2]), "response": error(429, "api_error", "too_many_requests", "IP address exceeded the allowed rate limit.")},
                          {"request": post([e2]), "response": created([e2])}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "500: retryable; the resend keeps event_key and occurred_at, so Paddle counts the event once",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": post([e2]), "response": error(500, "api_error", "internal_error", "An internal error occurred.")},
                          {"request": post([e2]), "response": created([e2])}],
            "expected": {e2["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried", "description": "reset after sending: resent unchanged",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": post([e2]), "failure": "connection_reset"}, {"request": post([e2]), "response": created([e2])}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered",
            "description": "timeout after sending: possibly delivered, resent with the same event_key and occurred_at",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": post([e2]), "failure": "timeout_after_send"}, {"request": post([e2]), "response": created([e2])}],
            "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    e3 = event(3)
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected",
            "description": "a lone event Paddle refuses (400 bad_request naming events[0].action): rejected with Paddle's message",
            "settings": SETTINGS, "events": [e3],
            "exchanges": [{"request": post([e3]), "response": error(400, "request_error", "bad_request", "Invalid request.",
                                                                    [("events[0].action", "action must be 1 to 200 characters")])}],
            "expected": {e3["id"]: [{"outcome": "rejected", "code": "bad_request", "origin": "provider", "message_contains": "action"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error",
            "description": "401 authentication_malformed: .configuration",
            "settings": SETTINGS, "events": [e2],
            "exchanges": [{"request": post([e2]), "response": error(401, "request_error", "authentication_malformed", "Authentication header included, but incorrectly formatted")}],
            "expected_error": "configuration"})
    stranger = event(4, customer="ctm_01hv8zzzzzzzzzzzzzzzzzzzzz")
    W.write("unknown_meter_or_customer", {"scenario": "unknown_meter_or_customer",
            "description": "a customer Paddle does not have: the 400 names events[0].customer_id and the event is rejected with it",
            "settings": SETTINGS, "events": [stranger],
            "exchanges": [{"request": post([stranger]), "response": error(400, "request_error", "bad_request", "Invalid request.",
                                                                          [("events[0].customer_id", "customer not found")])}],
            "expected": {stranger["id"]: [{"outcome": "rejected", "code": "bad_request", "origin": "provider", "message_contains": "customer not found"}]}})
    a, b, c = event(20), event(21, customer="ctm_01hv8yyyyyyyyyyyyyyyyyyyyy"), event(22, customer="globex")
    W.write("partial_batch_failure", {"scenario": "partial_batch_failure",
            "description": "Paddle refuses the whole batch for one unknown customer (events[1]): that event is rejected, the other two are sent again at once, unchanged",
            "settings": SETTINGS, "events": [a, b, c],
            "exchanges": [{"request": post([a, b, c]), "response": error(400, "request_error", "bad_request", "Invalid request.",
                                                                         [("events[1].customer_id", "customer not found")])},
                          {"request": post([a, c]), "response": created([a, c])}],
            "expected": {a["id"]: [{"outcome": "accepted"}], b["id"]: [{"outcome": "rejected", "code": "bad_request", "origin": "provider", "message_contains": "customer not found"}],
                         c["id"]: [{"outcome": "accepted"}]}})
    old = event(5, ts=NOW_UNIX - 61 * 86400)
    W.write("too_old_timestamp_rejected_locally", {"scenario": "too_old_timestamp_rejected_locally",
            "description": "61 days old: Paddle takes 60 days back", "settings": SETTINGS, "events": [old], "exchanges": [],
            "expected": {old["id"]: [{"outcome": "rejected", "code": "timestamp_too_old", "origin": "local", "field": "timestamp"}]}})
    future = event(6, ts=NOW_UNIX + 25 * 3600)
    W.write("future_timestamp_rejected_locally", {"scenario": "future_timestamp_rejected_locally",
            "description": "25 hours ahead: Paddle takes 24", "settings": SETTINGS, "events": [future], "exchanges": [],
            "expected": {future["id"]: [{"outcome": "rejected", "code": "timestamp_in_future", "origin": "local", "field": "timestamp"}]}})
    negative, big = event(7, qty="-3"), event(8, qty="12345678901234567890.5")
    W.write("unsupported_value_rejected_locally", {"scenario": "unsupported_value_rejected_locally",
            "description": "a negative quantity (usage events draw a balance down) and one a JSON number cannot carry",
            "settings": SETTINGS, "events": [negative, big], "exchanges": [],
            "expected": {negative["id"]: [{"outcome": "rejected", "code": "quantity_negative", "origin": "local", "field": "quantity"}],
                         big["id"]: [{"outcome": "rejected", "code": "value_not_representable", "origin": "local", "field": "quantity"}]}})
    # Paddle usage events only.
    late, ok = event(30), event(31)
    W.write("rejected_status_in_a_2xx", {
            "description": "a 201 whose status list rejects one event (Paddle's own clock found it too old): that one is rejected with Paddle's code, the other accepted",
            "settings": SETTINGS, "events": [late, ok],
            "exchanges": [{"request": post([late, ok]), "response": created([late, ok], {late["id"]: ("usage_event_timestamp_too_old", "occurred_at must be no more than 60 days in the past")})}],
            "expected": {late["id"]: [{"outcome": "rejected", "code": "usage_event_timestamp_too_old", "origin": "provider"}], ok["id"]: [{"outcome": "accepted"}]}})
    x, y = event(40), event(41)
    W.write("refused_batch_naming_no_event_is_split", {
            "description": "a 400 for the batch that names no event index: each event is sent alone, so each gets its own answer",
            "settings": SETTINGS, "events": [x, y],
            "exchanges": [{"request": post([x, y]), "response": error(400, "request_error", "bad_request", "Invalid request.", [("events", "invalid usage event")])},
                          {"request": post([x]), "response": created([x])},
                          {"request": post([y]), "response": error(400, "request_error", "bad_request", "Invalid request.", [("events[0].quantity", "quantity is too large")])}],
            "expected": {x["id"]: [{"outcome": "accepted"}], y["id"]: [{"outcome": "rejected", "code": "bad_request", "origin": "provider", "message_contains": "too large"}]}})


def api():
    hdr = {"Authorization": "Bearer " + KEY, "Paddle-Version": "1", "Accept": "application/json"}
    stamp = "2026-11-01T00:00:00.000Z"
    unit = "ubu_01kw8ta2j8x5t7q4v9m1kd6phz"
    meter = {"id": "mtr_01kw8tb3k9y6u8r5w0n2le7qja", "action": "api_call", "usage_balance_unit_id": unit, "rate": "1",
             "aggregation": "sum", "status": "active", "created_at": stamp, "updated_at": stamp}
    page = {"per_page": 200, "next": BASE + "/meters?after=mtr_01kw8tb3k9y6u8r5w0n2le7qja&per_page=200", "has_more": False, "estimated_total": 1}
    balance = {"id": "ubl_01h9zx4p8q2r5t7v9w1y3z5b7d", "customer_id": CTM["acme"], "usage_balance_unit_id": unit,
               "balance": {"used": {"total": "7500"}, "remaining": {"total": "2500"}, "overage": {"total": "0"}}}
    write_api(W.folder, "meters_and_usage_balances", "GET /meters, then GET /customers/{id}/usage-balances: what api_call used this period", W.source, [
        {"request": {"method": "GET", "url": BASE + "/meters?per_page=200", "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"data": [meter], "meta": dict(meta(), pagination=page)}}},
        {"request": {"method": "GET", "url": BASE + "/customers/%s/usage-balances?per_page=200" % CTM["acme"], "headers": hdr},
         "response": {"status": 200, "headers": {}, "json": {"data": [balance], "meta": dict(meta(), pagination=dict(page, next=BASE + "/customers/%s/usage-balances?after=ubl_01h9zx4p8q2r5t7v9w1y3z5b7d&per_page=200" % CTM["acme"]))}}}])


if __name__ == "__main__":
    main()
    api()
