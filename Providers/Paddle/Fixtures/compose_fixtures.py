#!/usr/bin/env python3
"""Composes the Paddle Billing conformance fixtures (no Paddle account is reachable from CI).

Requests match what the official SDK paddle-python-sdk 1.16.1 sends for the same input (captured
by replacing requests.Session.send): create_one_time_charge posts
{"effective_from": "next_billing_period", "items": [{"price_id", "quantity"}]} to
https://sandbox-api.paddle.com/subscriptions/{id}/charge with Authorization: Bearer,
Content-Type application/json, Paddle-Version: 1 and a per-request X-Transaction-ID (we send the
charge key there instead of a random UUID). Response and error bodies follow
shared/providers/paddle.md and the spec's subscription, transaction and error schemas.
Run: python3 compose_fixtures.py
"""
import os, sys
from urllib.parse import quote
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from fixturekit import *  # noqa: E402,F403

W = Writer(os.path.dirname(os.path.abspath(__file__)),
           "composed by compose_fixtures.py: request shape per a paddle-python-sdk 1.16.1 capture; bodies per shared/providers/paddle.md and the spec")
KEY = "pdl_sdbx_apikey_REDACTED"
BASE = "https://sandbox-api.paddle.com"
SUB = "sub_01hv8y5ehszzq0yv20ttx3166y"
CTM = "ctm_01hv8wt8nffez4p2t6typn4a5j"
PRICE = "pri_01gsz8x8sawmvhz1pv30nge1ke"
SETTINGS = {"api_key": KEY, "price_id": PRICE, "max_quantity": 100000, "customers": {"acme": SUB}}
LANE = "paddle#0"
MONTH = unix("2026-10-01T00:00:00Z")
MONTH_END = unix("2026-11-01T00:00:00Z")
HDR = {"Authorization": "Bearer " + KEY, "Paddle-Version": "1"}


def record(qty="420", customer="acme", events=42, start=MONTH, end=MONTH_END):
    return window_record(LANE, customer, "api_request", start, end, qty, events=events)


def charge(r, quantity=None, sub=SUB, effective="next_billing_period"):
    q = quantity if quantity is not None else number(r["quantity"])
    return {"method": "POST", "url": "%s/subscriptions/%s/charge" % (BASE, sub),
            "headers": dict(HDR, **{"Content-Type": "application/json", "X-Transaction-ID": r["id"]}),
            "json": {"effective_from": effective, "items": [{"price_id": PRICE, "quantity": q}]}}


def subscription(next_lines=None):
    sub = {"id": SUB, "status": "active", "customer_id": CTM, "address_id": "add_01hv8y4jk511j9g2n9a2mexjbx", "business_id": None,
           "currency_code": "USD", "created_at": "2026-04-12T10:38:00.761Z", "updated_at": iso(NOW_UNIX), "started_at": "2026-04-12T10:37:59.556997Z",
           "first_billed_at": "2026-04-12T10:37:59.556997Z", "next_billed_at": "2026-12-12T10:37:59.556997Z", "paused_at": None, "canceled_at": None,
           "collection_mode": "automatic", "billing_details": None,
           "current_billing_period": {"starts_at": "2026-11-12T10:37:59.556997Z", "ends_at": "2026-12-12T10:37:59.556997Z"},
           "billing_cycle": {"frequency": 1, "interval": "month"}, "scheduled_change": None,
           "items": [{"status": "active", "quantity": 1, "recurring": True, "created_at": "2026-04-12T10:38:00.761Z", "updated_at": "2026-04-12T10:38:00.761Z",
                      "previously_billed_at": "2026-11-12T10:37:59.556997Z", "next_billed_at": "2026-12-12T10:37:59.556997Z", "trial_dates": None,
                      "price": {"id": "pri_01gsz8ntc6z7npqqp6j4ys0w1w", "product_id": "pro_01gsz4t5hdjse780zja8vvr7jg", "description": "Monthly plan", "type": "standard",
                                "name": None, "billing_cycle": {"interval": "month", "frequency": 1}, "trial_period": None, "tax_mode": "account_setting",
                                "unit_price": {"amount": "3000", "currency_code": "USD"}, "unit_price_overrides": [], "quantity": {"minimum": 1, "maximum": 100},
                                "status": "active", "custom_data": None, "import_meta": None, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
                      "product": {"id": "pro_01gsz4t5hdjse780zja8vvr7jg", "name": "API platform", "description": None, "type": "standard", "tax_category": "standard",
                                  "image_url": None, "custom_data": None, "status": "active", "import_meta": None, "created_at": "2026-01-01T00:00:00Z",
                                  "updated_at": "2026-01-01T00:00:00Z"}}],
           "custom_data": None, "management_urls": {"update_payment_method": None, "cancel": "https://buyer-portal.paddle.com/subscriptions/sub_01hv8y5ehszzq0yv20ttx3166y/cancel"},
           "discount": None, "import_meta": None}
    if next_lines is not None:
        sub["next_transaction"] = {"billing_period": {"starts_at": "2026-12-12T10:37:59.556997Z", "ends_at": "2027-01-12T10:37:59.556997Z"},
                                   "details": {"tax_rates_used": [], "totals": {}, "line_items": next_lines}, "adjustments": []}
    return sub


def ok_charge():
    return {"status": 201, "headers": {}, "json": {"data": subscription(), "meta": {"request_id": "8ab1a4f5-2a4c-4a4c-9d52-d2e5c5b1a001"}}}


def line(price, quantity):
    return {"price_id": price, "quantity": quantity, "tax_rate": "0", "unit_totals": {"subtotal": "1", "discount": "0", "tax": "0", "total": "1"},
            "totals": {"subtotal": str(quantity), "discount": "0", "tax": "0", "total": str(quantity)},
            "product": {"id": "pro_01gsz4t5hdjse780zja8vvr7jg", "name": "API requests", "description": None, "type": "standard",
                        "tax_category": "standard", "image_url": None, "custom_data": None, "status": "active", "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z", "import_meta": None}, "proration": None}


def lookup(found_quantity=None):
    lines = [line("pri_01gsz8ntc6z7npqqp6j4ys0w1w", 1)] + ([line(PRICE, found_quantity)] if found_quantity else [])
    return {"request": {"method": "GET", "url": "%s/subscriptions/%s?include=next_transaction" % (BASE, SUB), "headers": HDR},
            "response": {"status": 200, "headers": {}, "json": {"data": subscription(lines), "meta": {"request_id": "8ab1a4f5-2a4c-4a4c-9d52-d2e5c5b1a002"}}}}


def err(status, type_, code, detail, errors=None, headers=None):
    e = {"type": type_, "code": code, "detail": detail, "documentation_url": "https://developer.paddle.com/v1/errors/shared/" + code}
    if errors:
        e["errors"] = errors
    return {"status": status, "headers": headers or {}, "json": {"error": e, "meta": {"request_id": "8ab1a4f5-2a4c-4a4c-9d52-d2e5c5b1a0ff"}}}


def main():
    r = record()
    W.write("single_event_accepted", {"scenario": "single_event_accepted",
            "description": "one month window's record becomes a one-time charge added to the next renewal; 201 with the subscription",
            "settings": SETTINGS, "events": [r], "exchanges": [{"request": charge(r), "response": ok_charge()}],
            "expected": {r["id"]: [{"outcome": "accepted"}]}})
    two = [record(qty="10", customer="acme"), record(qty="12", customer="acme", start=MONTH_END, end=unix("2026-12-01T00:00:00Z"))]
    W.write("batch_split_at_provider_limit", {"scenario": "batch_split_at_provider_limit",
            "description": "two window records: one charge per request, so two requests",
            "settings": SETTINGS, "events": two,
            "exchanges": [{"request": charge(e), "response": ok_charge()} for e in two],
            "expected": {e["id"]: [{"outcome": "accepted"}] for e in two}})
    W.write("rate_limited_with_retry_after", {"scenario": "rate_limited_with_retry_after",
            "description": "429 too_many_requests with Retry-After: 60 (Paddle's per-IP limit); refused, so the charge is sent again without a lookup",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "response": err(429, "api_error", "too_many_requests", "IP address exceeded the allowed rate limit. Retry after the number of seconds in the Retry-After header.", headers={"Retry-After": "60"})},
                          {"request": charge(r), "response": ok_charge()}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 60}, {"outcome": "accepted"}]}})
    W.write("rate_limited_without_retry_after", {"scenario": "rate_limited_without_retry_after",
            "description": "429 without Retry-After: back off by the policy, then 201",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "response": err(429, "api_error", "too_many_requests", "IP address exceeded the allowed rate limit.")},
                          {"request": charge(r), "response": ok_charge()}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited"}, {"outcome": "accepted"}]}})
    W.write("server_error_then_accepted", {"scenario": "server_error_then_accepted",
            "description": "500 internal_error (the charge may have been added): the next transaction has no line with this price and quantity, so charge again",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "response": err(500, "api_error", "internal_error", "An internal error occurred.")},
                          lookup(), {"request": charge(r), "response": ok_charge()}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "server_error"}, {"outcome": "accepted"}]}})
    W.write("connection_reset_retried", {"scenario": "connection_reset_retried",
            "description": "reset after sending: the lookup finds no such line, so charge again",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "failure": "connection_reset"}, lookup(), {"request": charge(r), "response": ok_charge()}],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "accepted"}]}})
    W.write("timeout_is_possibly_delivered", {"scenario": "timeout_is_possibly_delivered",
            "description": "ambiguous failure then verify, no second charge: the POST timed out after Paddle added the charge; the next transaction shows the one-time line (price, quantity 420), so nothing is charged again",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "failure": "timeout_after_send"}, lookup(found_quantity=420)],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "duplicate"}]}})
    W.write("bad_request_rejected", {"scenario": "bad_request_rejected",
            "description": "400 transaction_item_quantity_out_of_range (the price's own range is smaller than max_quantity): rejected with the fix",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "response": err(400, "request_error", "transaction_item_quantity_out_of_range", "Item quantity 420 is not within the range of 1 and 100",
                                                                 errors=[{"field": "items[0].quantity", "message": "quantity is not within the price's range"}])}],
            "expected": {r["id"]: [{"outcome": "rejected", "code": "transaction_item_quantity_out_of_range", "origin": "provider", "field": "items[0].quantity", "message_contains": "max_quantity"}]}})
    W.write("unauthorized_is_configuration_error", {"scenario": "unauthorized_is_configuration_error", "description": "401 authentication_malformed: .configuration",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "response": err(401, "request_error", "authentication_malformed", "Authentication header included, but incorrectly formatted")}],
            "expected_error": "configuration"})
    ghost = record(customer="sub_01ghost00000000000000000")
    W.write("unknown_meter_or_customer", {"scenario": "unknown_meter_or_customer",
            "description": "404 not_found: the subscription does not exist",
            "settings": SETTINGS, "events": [ghost],
            "exchanges": [{"request": charge(ghost, sub="sub_01ghost00000000000000000"), "response": err(404, "request_error", "not_found", "Entity sub_01ghost00000000000000000 not found")}],
            "expected": {ghost["id"]: [{"outcome": "rejected", "code": "not_found", "origin": "provider"}]}})
    W.write("duplicate_is_duplicate", {"scenario": "duplicate_is_duplicate",
            "description": "Paddle has no idempotency: after a reset the next transaction already has the line, which reads as a duplicate and charges nothing",
            "settings": SETTINGS, "events": [r],
            "exchanges": [{"request": charge(r), "failure": "connection_reset"}, lookup(found_quantity=420)],
            "expected": {r["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "duplicate"}]}})
    frac, above = record(qty="12.5"), record(qty="150", customer="globex")
    W.write("unsupported_value_rejected_locally", {"scenario": "unsupported_value_rejected_locally",
            "description": "quantity rules (rounding: reject, max_quantity 100): 12.5 is fractional and 150 is above the price's range; both refused before sending, each naming the fix",
            "settings": dict(SETTINGS, max_quantity=100), "events": [frac, above], "exchanges": [],
            "expected": {frac["id"]: [{"outcome": "rejected", "code": "quantity_not_whole", "origin": "local", "field": "quantity", "message_contains": "rounding"}],
                         above["id"]: [{"outcome": "rejected", "code": "quantity_above_price_range", "origin": "local", "field": "quantity", "message_contains": "max_quantity"}]}})
    # Paddle-specific.
    tokens, zero = record(qty="1500"), record(qty="0.4", customer="globex")
    W.write("quantity_scaled_and_rounded", {
            "description": "units_per_quantity 1000, rounding down: 1,500 units bill quantity 1; 0.4 units scale to 0.0004, round down to 0, and the period is skipped with no request",
            "settings": dict(SETTINGS, units_per_quantity=1000, rounding="down", customers={"acme": SUB, "globex": SUB}), "events": [tokens, zero],
            "exchanges": [{"request": charge(tokens, quantity=1), "response": ok_charge()}],
            "expected": {tokens["id"]: [{"outcome": "accepted"}], zero["id"]: [{"outcome": "accepted"}]}})
    W.write("immediate_charge_limit", {
            "description": "effective_from immediately: 429 subscription_immediate_charge_hour_limit_exceeded asks for an hour's wait (no Retry-After) and says how to avoid it; the in-memory policy (5 attempts) does not wait that long, the spool's worker does",
            "settings": dict(SETTINGS, effective_from="immediately"), "events": [r],
            "exchanges": [{"request": charge(r, effective="immediately"), "response": err(429, "request_error", "subscription_immediate_charge_hour_limit_exceeded",
                                                                                          "Subscription immediate charge limit exceeded. Limit: 20 per hour")}],
            "expected": {r["id"]: [{"outcome": "retryable", "kind": "rate_limited", "retry_after": 3600, "message_contains": "next_billing_period"}]}})
    tx_settings = dict(SETTINGS, mode="transaction", customers={"acme": CTM})
    t = record()
    tx_body = {"items": [{"price_id": PRICE, "quantity": 420}], "customer_id": CTM, "collection_mode": "manual",
               "custom_data": {"ub_charge_key": t["id"], "ub_meter": "api_request", "ub_window_start": iso(MONTH), "ub_window_end": iso(MONTH_END)},
               "billing_details": {"payment_terms": {"interval": "day", "frequency": 30}}}
    tx_req = {"method": "POST", "url": BASE + "/transactions", "headers": dict(HDR, **{"Content-Type": "application/json", "X-Transaction-ID": t["id"]}), "json": tx_body}
    q = "customer_id=%s&origin=api&%s=%s&per_page=30" % (CTM, quote("created_at[GTE]", safe=""), quote(iso(MONTH), safe=""))
    tx = {"id": "txn_01hv8wptq8987qeep44cyrewp9", "status": "billed", "customer_id": CTM, "address_id": None, "business_id": None,
          "custom_data": tx_body["custom_data"], "currency_code": "USD", "origin": "api", "subscription_id": None, "invoice_id": "inv_01hv8wq6qcd4sa0k9hm1e0m8pb",
          "invoice_number": "325-10566", "collection_mode": "manual", "discount_id": None, "billing_details": {"enable_checkout": False, "payment_terms": {"interval": "day", "frequency": 30},
          "additional_information": None}, "billing_period": None,
          "items": [{"price": {"id": PRICE, "product_id": "pro_01gsz4t5hdjse780zja8vvr7jg", "description": "API requests", "type": "standard", "name": None,
                               "billing_cycle": None, "trial_period": None, "tax_mode": "account_setting", "unit_price": {"amount": "1", "currency_code": "USD"},
                               "unit_price_overrides": [], "quantity": {"minimum": 1, "maximum": 999999999}, "status": "active", "custom_data": None,
                               "import_meta": None, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
                     "quantity": 420, "proration": None}],
          "details": {"tax_rates_used": [], "line_items": []}, "payments": [], "checkout": None, "created_at": iso(NOW_UNIX - 60), "updated_at": iso(NOW_UNIX - 60), "billed_at": iso(NOW_UNIX - 60)}
    W.write("transaction_mode_verified_by_custom_data", {
            "description": "mode transaction: POST /transactions with the charge key in custom_data; after a timeout the customer's transactions are listed and the key is found, so nothing is billed twice",
            "settings": tx_settings, "events": [t],
            "exchanges": [{"request": tx_req, "failure": "timeout_after_send"},
                          {"request": {"method": "GET", "url": BASE + "/transactions?" + q, "headers": HDR},
                           "response": {"status": 200, "headers": {}, "json": {"data": [tx], "meta": {"request_id": "8ab1a4f5-2a4c-4a4c-9d52-d2e5c5b1a003",
                                        "pagination": {"per_page": 30, "next": BASE + "/transactions?after=txn_01hv8wptq8987qeep44cyrewp9", "has_more": False, "estimated_total": 1}}}}}],
            "expected": {t["id"]: [{"outcome": "possibly_delivered"}, {"outcome": "duplicate"}]}})


if __name__ == "__main__":
    main()
