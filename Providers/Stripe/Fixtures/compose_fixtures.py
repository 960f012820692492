#!/usr/bin/env python3
"""Composes the Stripe conformance fixtures.

No Stripe sandbox is reachable from CI, so these fixtures are composed, not recorded:
- request bodies follow the official SDK's encoding, checked by capturing `stripe` 16.1.0's
  requests (form: bracket keys kept literal, space as '+'; v2: JSON, RFC 3339 with milliseconds);
- response bodies are shaped from Stripe's official fixtures (stripe/openapi fixtures3.json) and
  API-reference examples (shared/specs/stripe-fixtures.json), with this scenario's values;
- error bodies use the codes of the trimmed spec (v2.error.<code>) and, for v1's reused
  identifier, the answer users report (langfuse/langfuse PR #16292: 400 invalid_request_error,
  "An event already exists with identifier ...", stripe-should-retry: false).
Every body is checked against shared/specs/stripe-metering.openapi.json by
scripts/validate_fixtures.py. Re-run after changing this file: python3 compose_fixtures.py
When a sandbox is available, RecordingHTTPClient records the same scenarios for real.
"""
import hashlib, json, os

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = "2026-11-20T12:00:00Z"
NOW_UNIX = 1795176000
API = "https://api.stripe.com"
STREAM = "https://meter-events.stripe.com"
VERSION = "2026-11-18.endive"
KEY = "sk_test_REDACTED"
SOURCE = ("composed by compose_fixtures.py: request encoding per the stripe 16.1.0 SDK capture, "
          "bodies shaped from stripe/openapi fixtures3.json and the API reference; see the script's header")


def eid(n):
    return "019aa0f4-7c00-7000-8000-%012d" % n


def event(n, name="api_request", customer="acme", ts=NOW_UNIX - 60, qty="5", props=None):
    e = {"id": eid(n), "name": name, "customer": customer, "timestamp": iso(ts), "quantity": qty}
    if props:
        e["properties"] = props
    return e


def iso(ts, ms=False):
    import datetime
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (".000Z" if ms else "Z")


CUSTOMERS = {"acme": "cus_QrAcme0001", "globex": "cus_QrGlobex002"}
BASE_SETTINGS = {"secret_key": KEY, "customers": CUSTOMERS}


def v1_form(e, event_name="api_requests"):
    fields = [("event_name", event_name),
              ("payload[stripe_customer_id]", CUSTOMERS.get(e["customer"], e["customer"])),
              ("payload[value]", e["quantity"])]
    for k in sorted(e.get("properties", {})):
        v = e["properties"][k]
        fields.append(("payload[%s]" % k, "true" if v is True else "false" if v is False else str(v)))
    fields += [("identifier", e["id"]), ("timestamp", str(unix(e["timestamp"])))]
    from urllib.parse import quote_plus
    return "&".join(quote_plus(k, safe="[]") + "=" + quote_plus(v) for k, v in fields)


def unix(text):
    import datetime
    return int(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())


def v2_json(e, event_name="api_requests"):
    payload = {"stripe_customer_id": CUSTOMERS.get(e["customer"], e["customer"]), "value": e["quantity"]}
    for k, v in e.get("properties", {}).items():
        payload[k] = str(v)
    return {"event_name": event_name, "identifier": e["id"], "payload": payload,
            "timestamp": iso(unix(e["timestamp"]), ms=True)}


def v1_request(e, event_name="api_requests"):
    return {"method": "POST", "url": API + "/v1/billing/meter_events",
            "headers": {"Authorization": "Bearer " + KEY, "Stripe-Version": VERSION, "Idempotency-Key": e["id"],
                        "Content-Type": "application/x-www-form-urlencoded"},
            "form": v1_form(e, event_name)}


def v2_request(e, event_name="api_requests"):
    return {"method": "POST", "url": API + "/v2/billing/meter_events",
            "headers": {"Authorization": "Bearer " + KEY, "Stripe-Version": VERSION, "Idempotency-Key": e["id"],
                        "Content-Type": "application/json"},
            "json": v2_json(e, event_name)}


def session_exchange(token, created=NOW):
    return {"request": {"method": "POST", "url": API + "/v2/billing/meter_event_session",
                        "headers": {"Authorization": "Bearer " + KEY, "Stripe-Version": VERSION, "Idempotency-Key": "*",
                                    "Content-Type": "application/json"}, "json": {}},
            "response": ok({"id": "mtr_sess_61RCjiqdTDC91zgip41IqPCzPnxq", "object": "v2.billing.meter_event_session",
                            "authentication_token": token, "livemode": False,
                            "created": "2026-11-20T12:00:00.000Z", "expires_at": "2026-11-20T12:15:00.000Z"})}


def stream_key(events):
    parts = ["stripe-meter-event-stream"] + [e["id"] for e in events]
    joined = "\x1f".join(p.replace("\x1f", "\x1f\x1f") for p in parts)
    return "ub_" + hashlib.sha256(joined.encode()).hexdigest()[:32]


def stream_request(events, token):
    return {"method": "POST", "url": STREAM + "/v2/billing/meter_event_stream",
            "headers": {"Authorization": "Bearer " + token, "Stripe-Version": VERSION,
                        "Idempotency-Key": stream_key(events), "Content-Type": "application/json"},
            "json": {"events": [v2_json(e) for e in events]}}


_req = [0]


def rid():
    _req[0] += 1
    return "req_TfQzX9b2Lm%04d" % _req[0]


def ok(body, headers=None):
    h = {"Request-Id": rid()}
    h.update(headers or {})
    return {"status": 200, "headers": h, "json": body}


def err(status, body, headers=None):
    h = {"Request-Id": rid()}
    h.update(headers or {})
    return {"status": status, "headers": h, "json": body}


def v1_accepted(e, event_name="api_requests"):
    # Shape of stripe/openapi fixtures3.json "billing.meter_event", with this event's values.
    payload = {"stripe_customer_id": CUSTOMERS.get(e["customer"], e["customer"]), "value": e["quantity"]}
    for k, v in e.get("properties", {}).items():
        payload[k] = str(v)
    return ok({"object": "billing.meter_event", "created": NOW_UNIX, "event_name": event_name,
               "identifier": e["id"], "livemode": False, "payload": payload, "timestamp": unix(e["timestamp"])})


def v2_accepted(e, event_name="api_requests"):
    body = v2_json(e, event_name)
    body.update({"object": "v2.billing.meter_event", "created": "2026-11-20T12:00:00.000Z", "livemode": False})
    return ok(body)


RATE_LIMIT = {"error": {"type": "invalid_request_error", "code": "rate_limit",
                        "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                        "doc_url": "https://stripe.com/docs/error-codes/rate-limit"}}
SERVER_ERROR = {"error": {"type": "api_error",
                          "message": "An unknown error occurred. Please retry or contact support with the request id."}}


def write(name, fixture):
    fixture.setdefault("now", NOW)
    fixture.setdefault("source", SOURCE)
    path = os.path.join(HERE, name + ".json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=2, sort_keys=True)
        f.write("\n")


def settings(**extra):
    s = dict(BASE_SETTINGS)
    s["event_name"] = "api_requests"
    s.update(extra)
    return s


def main():
    e1 = event(1, props={"region": "eu west", "model": "large"})
    write("single_event_accepted", {
        "scenario": "single_event_accepted",
        "description": "v1: one event, form-encoded with payload[...] keys, identifier = event id = Idempotency-Key",
        "settings": settings(), "events": [e1],
        "exchanges": [{"request": v1_request(e1), "response": v1_accepted(e1)}],
        "expected": {e1["id"]: [{"outcome": "accepted"}]}})

    write("single_event_accepted--v2_stream", {
        "scenario": "single_event_accepted",
        "description": "v2 stream: a session token from api.stripe.com, then one event to meter-events.stripe.com with that token",
        "settings": settings(api="v2_stream"), "events": [e1],
        "exchanges": [session_exchange("mes_tok_REDACTED_1"),
                      {"request": stream_request([e1], "mes_tok_REDACTED_1"), "response": ok({})}],
        "expected": {e1["id"]: [{"outcome": "accepted"}]}})

    three = [event(10 + i, customer=["acme", "globex", "acme"][i], qty=str(i + 1)) for i in range(3)]
    write("batch_split_at_provider_limit", {
        "scenario": "batch_split_at_provider_limit",
        "description": "v1 takes one event per request: a batch of three becomes three requests",
        "settings": settings(), "events": three,
        "exchanges": [{"request": v1_request(e), "response": v1_accepted(e)} for e in three],
        "expected": {e["id"]: [{"outcome": "accepted"}] for e in three}})

    many = [event(100 + i, customer="acme" if i % 2 else "globex", qty=str(i % 7 + 1), ts=NOW_UNIX - 3600 + i) for i in range(150)]
    write("batch_split_at_provider_limit--v2_stream", {
        "scenario": "batch_split_at_provider_limit",
        "description": "v2 stream takes at most 100 events per request: 150 events become 100 + 50 on one session",
        "settings": settings(api="v2_stream"), "events": many,
        "exchanges": [session_exchange("mes_tok_REDACTED_1"),
                      {"request": stream_request(many[:100], "mes_tok_REDACTED_1"), "response": ok({})},
                      {"request": stream_request(many[100:], "mes_tok_REDACTED_1"), "response": ok({})}],
        "expected": {e["id"]: [{"outcome": "accepted"}] for e in many}})

    e2 = event(2)
    write("rate_limited_with_retry_after", {
        "scenario": "rate_limited_with_retry_after",
        "description": "429 rate_limit with Retry-After: 2, then 200; the retry carries the same identifier and Idempotency-Key",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2), "response": err(429, RATE_LIMIT, {"Retry-After": "2"})},
                      {"request": v1_request(e2), "response": v1_accepted(e2)}],
        "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 2}, {"outcome": "accepted"}]}})

    write("rate_limited_without_retry_after", {
        "scenario": "rate_limited_without_retry_after",
        "description": "429 without Retry-After (stripe-python does not read it and Stripe need not send it): back off, retry, 200",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2), "response": err(429, RATE_LIMIT)},
                      {"request": v1_request(e2), "response": v1_accepted(e2)}],
        "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})

    write("rate_limited_with_retry_after--v2_stream", {
        "scenario": "rate_limited_with_retry_after",
        "description": "v2 stream 429 with Retry-After: 1; the batch is resent with the same Idempotency-Key on the same session",
        "settings": settings(api="v2_stream"), "events": [e2],
        "exchanges": [session_exchange("mes_tok_REDACTED_1"),
                      {"request": stream_request([e2], "mes_tok_REDACTED_1"),
                       "response": err(429, {"error": {"type": "rate_limit", "code": "rate_limit",
                                                       "message": "Too many requests hit the API too quickly."}}, {"Retry-After": "1"})},
                      {"request": stream_request([e2], "mes_tok_REDACTED_1"), "response": ok({})}],
        "expected": {e2["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 1}, {"outcome": "accepted"}]}})

    write("server_error_then_accepted", {
        "scenario": "server_error_then_accepted",
        "description": "500 api_error then 200 on the same Idempotency-Key",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2), "response": err(500, SERVER_ERROR)},
                      {"request": v1_request(e2), "response": v1_accepted(e2)}],
        "expected": {e2["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})

    write("connection_reset_retried", {
        "scenario": "connection_reset_retried",
        "description": "the connection resets after the request went out: possibly delivered, resent with the same keys",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2), "failure": "connection_reset"},
                      {"request": v1_request(e2), "response": v1_accepted(e2)}],
        "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})

    write("timeout_is_possibly_delivered", {
        "scenario": "timeout_is_possibly_delivered",
        "description": "no answer in time after sending: possiblyDelivered; the retry with the same Idempotency-Key gets Stripe's replayed 200",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2), "failure": "timeout_after_send"},
                      {"request": v1_request(e2), "response": v1_accepted(e2)}],
        "expected": {e2["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})

    e3 = event(3, qty="2.5")
    write("bad_request_rejected", {
        "scenario": "bad_request_rejected",
        "description": "v2 (synchronous validation) with allow_fractional_values: Stripe answers 400 payload_invalid_value; rejected with its message",
        "settings": settings(api="v2", allow_fractional_values=True), "events": [e3],
        "exchanges": [{"request": v2_request(e3),
                       "response": err(400, {"error": {"type": "invalid_request_error", "code": "payload_invalid_value",
                                                       "message": "The value for payload key 'value' must be a positive integer."}})}],
        "expected": {e3["id"]: [{"outcome": "rejected", "code": "payload_invalid_value", "origin": "provider",
                                 "message_contains": "positive integer"}]}})

    write("unauthorized_is_configuration_error", {
        "scenario": "unauthorized_is_configuration_error",
        "description": "401 on a revoked key: the sink throws .configuration naming secret_key; the key never appears in the message",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2),
                       "response": err(401, {"error": {"type": "invalid_request_error",
                                                       "message": "Invalid API Key provided: sk_test_********************DACTED"}})}],
        "expected_error": "configuration"})

    e4 = event(4, name="gpu_seconds")
    write("unknown_meter_or_customer", {
        "scenario": "unknown_meter_or_customer",
        "description": "v2: an event name with no meter answers 400 no_meter (v1 reports this later, asynchronously: see StripeMeterErrorReport)",
        "settings": settings(api="v2", event_name=None), "events": [e4],
        "exchanges": [{"request": v2_request(e4, "gpu_seconds"),
                       "response": err(400, {"error": {"type": "invalid_request_error", "code": "no_meter",
                                                       "message": "No active meter was found for event_name 'gpu_seconds'."}})}],
        "expected": {e4["id"]: [{"outcome": "rejected", "code": "no_meter", "origin": "provider"}]}})

    pa, pb, pc = event(20), event(21, name="gpu_seconds"), event(22, customer="globex")
    write("partial_batch_failure", {
        "scenario": "partial_batch_failure",
        "description": "v2: a batch of three where the middle event's meter does not exist; only it is rejected",
        "settings": settings(api="v2", event_name=None, event_names={"api_request": "api_requests"}),
        "events": [pa, pb, pc],
        "exchanges": [{"request": v2_request(pa), "response": v2_accepted(pa)},
                      {"request": v2_request(pb, "gpu_seconds"),
                       "response": err(400, {"error": {"type": "invalid_request_error", "code": "no_meter",
                                                       "message": "No active meter was found for event_name 'gpu_seconds'."}})},
                      {"request": v2_request(pc), "response": v2_accepted(pc)}],
        "expected": {pa["id"]: [{"outcome": "accepted"}],
                     pb["id"]: [{"outcome": "rejected", "code": "no_meter", "origin": "provider"}],
                     pc["id"]: [{"outcome": "accepted"}]}})

    e5 = event(5)
    write("duplicate_is_duplicate", {
        "scenario": "duplicate_is_duplicate",
        "description": "v1: a reused identifier answers 400 'An event already exists with identifier ...' and stripe-should-retry: false (as reported in langfuse PR #16292); that is .duplicate, a success",
        "settings": settings(), "events": [e5],
        "exchanges": [{"request": v1_request(e5),
                       "response": err(400, {"error": {"type": "invalid_request_error",
                                                       "message": "An event already exists with identifier %s." % e5["id"]}},
                                       {"Stripe-Should-Retry": "false"})}],
        "expected": {e5["id"]: [{"outcome": "duplicate"}]}})

    write("duplicate_is_duplicate--v2", {
        "scenario": "duplicate_is_duplicate",
        "description": "v2: a reused identifier answers 400 duplicate_meter_event; that is .duplicate",
        "settings": settings(api="v2"), "events": [e5],
        "exchanges": [{"request": v2_request(e5),
                       "response": err(400, {"error": {"type": "invalid_request_error", "code": "duplicate_meter_event",
                                                       "message": "An event with identifier %s was already submitted." % e5["id"]}})}],
        "expected": {e5["id"]: [{"outcome": "duplicate"}]}})

    old = event(6, ts=NOW_UNIX - 36 * 86400)
    write("too_old_timestamp_rejected_locally", {
        "scenario": "too_old_timestamp_rejected_locally",
        "description": "36 days old: Stripe accepts at most 35 days back, so no request is made",
        "settings": settings(), "events": [old], "exchanges": [],
        "expected": {old["id"]: [{"outcome": "rejected", "code": "timestamp_too_old", "origin": "local", "field": "timestamp"}]}})

    future = event(7, ts=NOW_UNIX + 10 * 60)
    write("future_timestamp_rejected_locally", {
        "scenario": "future_timestamp_rejected_locally",
        "description": "10 minutes ahead: Stripe allows 5 minutes of clock drift, so no request is made",
        "settings": settings(), "events": [future], "exchanges": [],
        "expected": {future["id"]: [{"outcome": "rejected", "code": "timestamp_in_future", "origin": "local", "field": "timestamp"}]}})

    frac, digits, clash = event(8, qty="2.5"), event(9, qty="1234567890123456"), event(30, props={"value": 3})
    write("unsupported_value_rejected_locally", {
        "scenario": "unsupported_value_rejected_locally",
        "description": "a fractional quantity, a 16-significant-digit quantity, and a property that would overwrite the value key: all rejected with no request",
        "settings": settings(), "events": [frac, digits, clash], "exchanges": [],
        "expected": {frac["id"]: [{"outcome": "rejected", "code": "value_not_whole", "origin": "local", "field": "quantity"}],
                     digits["id"]: [{"outcome": "rejected", "code": "meter_event_value_too_many_digits", "origin": "local", "field": "quantity"}],
                     clash["id"]: [{"outcome": "rejected", "code": "property_conflicts_with_meter_key", "origin": "local"}]}})

    # Provider-specific: the stream session expires mid-run.
    write("stream_session_expired_is_refreshed", {
        "description": "v2 stream: 401 billing_meter_event_session_expired makes the sink create a new session and resend the same batch at once",
        "settings": settings(api="v2_stream"), "events": [e2],
        "exchanges": [session_exchange("mes_tok_REDACTED_1"),
                      {"request": stream_request([e2], "mes_tok_REDACTED_1"),
                       "response": err(401, {"error": {"type": "temporary_session_expired", "code": "billing_meter_event_session_expired",
                                                       "message": "The meter event session has expired. Create a new session.",
                                                       "doc_url": "https://docs.stripe.com/api/v2/billing-meter-stream"}})},
                      session_exchange("mes_tok_REDACTED_2"),
                      {"request": stream_request([e2], "mes_tok_REDACTED_2"), "response": ok({})}],
        "expected": {e2["id"]: [{"outcome": "accepted"}]}})

    write("stripe_should_retry_false_on_500_is_rejected", {
        "description": "Stripe-Should-Retry: false overrides the status: a 500 so marked is not retried but dead-lettered with the reason",
        "settings": settings(), "events": [e2],
        "exchanges": [{"request": v1_request(e2), "response": err(500, SERVER_ERROR, {"Stripe-Should-Retry": "false"})}],
        "expected": {e2["id"]: [{"outcome": "rejected", "origin": "provider", "message_contains": "Stripe-Should-Retry: false"}]}})

    write("conflict_409_is_retryable", {
        "description": "409 too_many_concurrent_requests (one concurrent call per customer per meter) is retried",
        "settings": settings(api="v2"), "events": [e2],
        "exchanges": [{"request": v2_request(e2),
                       "response": err(409, {"error": {"type": "invalid_request_error", "code": "too_many_concurrent_requests",
                                                       "message": "Too many concurrent requests for this customer and meter."}})},
                      {"request": v2_request(e2), "response": v2_accepted(e2)}],
        "expected": {e2["id"]: [{"outcome": "retryable", "kind": "conflict"}, {"outcome": "accepted"}]}})

    api_fixtures()


def api_fixtures():
    auth = {"Authorization": "Bearer " + KEY, "Stripe-Version": VERSION}

    def meter(mid, name, status="active", deactivated=None):
        # Shape of stripe/openapi fixtures3.json "billing.meter".
        return {"id": mid, "object": "billing.meter", "created": NOW_UNIX - 86400, "updated": NOW_UNIX - 86400,
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "default_aggregation": {"formula": "sum"}, "display_name": name.replace("_", " ").title(),
                "event_name": name, "event_time_window": None, "livemode": False, "status": status,
                "status_transitions": {"deactivated_at": deactivated}, "value_settings": {"event_payload_key": "value"}}

    def api(name, description, exchanges):
        with open(os.path.join(HERE, "api", name + ".json"), "w") as f:
            json.dump({"description": description, "source": SOURCE, "exchanges": exchanges}, f, indent=2, sort_keys=True)
            f.write("\n")

    m1 = meter("mtr_test_61Q8nQMqIFK9fRQmr41CMAXJrFdZ5MnA", "api_requests")
    api("meter_create", "POST /v1/billing/meters with customer and value keys", [{
        "request": {"method": "POST", "url": API + "/v1/billing/meters",
                    "headers": dict(auth, **{"Idempotency-Key": "*", "Content-Type": "application/x-www-form-urlencoded"}),
                    "form": "display_name=Api+Requests&event_name=api_requests&default_aggregation[formula]=sum"
                            "&customer_mapping[event_payload_key]=stripe_customer_id&customer_mapping[type]=by_id"
                            "&value_settings[event_payload_key]=value"},
        "response": ok(m1)}])
    m2 = meter("mtr_test_61Q8nQMqIFK9fRQmr41CMAXJrFdZ5MnB", "storage_gb")
    m3 = meter("mtr_test_61Q8nQMqIFK9fRQmr41CMAXJrFdZ5MnC", "seats")
    api("meters_list_paginated", "GET /v1/billing/meters over two pages (has_more, starting_after = last id)", [
        {"request": {"method": "GET", "url": API + "/v1/billing/meters?limit=2", "headers": auth},
         "response": ok({"object": "list", "data": [m1, m2], "has_more": True, "url": "/v1/billing/meters"})},
        {"request": {"method": "GET", "url": API + "/v1/billing/meters?limit=2&starting_after=" + m2["id"], "headers": auth},
         "response": ok({"object": "list", "data": [m3], "has_more": False, "url": "/v1/billing/meters"})}])
    api("meter_deactivate_reactivate", "deactivate then reactivate a meter", [
        {"request": {"method": "POST", "url": API + "/v1/billing/meters/%s/deactivate" % m1["id"],
                     "headers": dict(auth, **{"Idempotency-Key": "*"})},
         "response": ok(meter(m1["id"], "api_requests", "inactive", NOW_UNIX))},
        {"request": {"method": "POST", "url": API + "/v1/billing/meters/%s/reactivate" % m1["id"],
                     "headers": dict(auth, **{"Idempotency-Key": "*"})},
         "response": ok(m1)}])
    api("meter_not_found", "GET /v1/billing/meters/{id} for an unknown id: 404 resource_missing", [
        {"request": {"method": "GET", "url": API + "/v1/billing/meters/mtr_missing", "headers": auth},
         "response": err(404, {"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "id",
                                         "message": "No such billing meter: 'mtr_missing'",
                                         "doc_url": "https://stripe.com/docs/error-codes/resource-missing"}})}])

    def summary(sid, value, start, end):
        return {"id": sid, "object": "billing.meter_event_summary", "aggregated_value": value, "start_time": start,
                "end_time": end, "livemode": False, "meter": m1["id"]}
    day = 1795132800  # 2026-11-20T00:00:00Z
    base = API + "/v1/billing/meters/%s/event_summaries?customer=cus_QrAcme0001&start_time=%d&end_time=%d&value_grouping_window=hour&limit=2" % (m1["id"], day, day + 3 * 3600)
    api("event_summaries_paginated", "hourly summaries over three hours, newest first, two pages", [
        {"request": {"method": "GET", "url": base, "headers": auth},
         "response": ok({"object": "list", "url": "/v1/billing/meters/%s/event_summaries" % m1["id"], "has_more": True,
                         "data": [summary("mtrusg_test_3", 15, day + 7200, day + 10800), summary("mtrusg_test_2", 10, day + 3600, day + 7200)]})},
        {"request": {"method": "GET", "url": base + "&starting_after=mtrusg_test_2", "headers": auth},
         "response": ok({"object": "list", "url": "/v1/billing/meters/%s/event_summaries" % m1["id"], "has_more": False,
                         "data": [summary("mtrusg_test_1", 7.5, day, day + 3600)]})}])
    ident = eid(1)
    cancel_key = "ub_" + hashlib.sha256("\x1f".join(["stripe-cancel", "api_requests", ident]).encode()).hexdigest()[:32]
    api("adjustment_cancel_v1", "POST /v1/billing/meter_event_adjustments cancels by identifier", [
        {"request": {"method": "POST", "url": API + "/v1/billing/meter_event_adjustments",
                     "headers": dict(auth, **{"Idempotency-Key": cancel_key, "Content-Type": "application/x-www-form-urlencoded"}),
                     "form": "event_name=api_requests&type=cancel&cancel[identifier]=" + ident},
         "response": ok({"object": "billing.meter_event_adjustment", "cancel": {"identifier": ident}, "event_name": "api_requests",
                         "livemode": False, "status": "pending", "type": "cancel"})}])
    api("adjustment_cancel_v2", "POST /v2/billing/meter_event_adjustments cancels by identifier", [
        {"request": {"method": "POST", "url": API + "/v2/billing/meter_event_adjustments",
                     "headers": dict(auth, **{"Idempotency-Key": cancel_key, "Content-Type": "application/json"}),
                     "json": {"event_name": "api_requests", "type": "cancel", "cancel": {"identifier": ident}}},
         "response": ok({"object": "v2.billing.meter_event_adjustment", "id": "mtr_event_adj_61RCjiqdTDC91zgi",
                         "livemode": False, "created": "2026-11-20T12:00:00.000Z", "status": "pending",
                         "event_name": "api_requests", "type": "cancel", "cancel": {"identifier": ident}})}])


if __name__ == "__main__":
    main()
