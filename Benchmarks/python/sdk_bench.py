"""Sends N usage events to the UsageBilling emulator with a provider's official Python SDK, one
call per event as the SDK's docs show, and prints one JSON line: provider, events, seconds,
events_per_second. Used by `usage-billing-bench --adapters N --python M`.

    python3 Benchmarks/python/sdk_bench.py PROVIDER BASE_URL N

BASE_URL is the emulator's (http://127.0.0.1:PORT); each SDK is pointed at the provider's prefix
there. Keys are placeholders. Requires the SDKs: pip install stripe orb-billing metronome-sdk
openmeter==1.0.0b236 chargebee recurly paddle-python-sdk
"""
import http.client
import json
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone


def events(n):
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    for i in range(n):
        yield i, f"sdk-{uuid.uuid4()}", now - timedelta(seconds=i % 3600)


def stripe_bench(base):
    import stripe
    client = stripe.StripeClient("sk_test_REDACTED", base_addresses={"api": base + "/stripe"}, max_network_retries=0)
    def send(i, key, at):
        client.v1.billing.meter_events.create(params={
            "event_name": "api_requests", "identifier": key, "timestamp": int(at.timestamp()),
            "payload": {"stripe_customer_id": "cus_acme", "value": str(i % 9 + 1)}})
    return send


def stripe_stream_bench(base):
    import stripe
    addresses = {"api": base + "/stripe", "meter_events": base + "/stripe-meter-events"}
    client = stripe.StripeClient("sk_test_REDACTED", base_addresses=addresses, max_network_retries=0)
    session = client.v2.billing.meter_event_session.create()
    stream = stripe.StripeClient(session.authentication_token, base_addresses=addresses, max_network_retries=0)
    def send(i, key, at):
        stream.v2.billing.meter_event_stream.create(params={"events": [{
            "event_name": "api_requests", "identifier": key, "timestamp": at.isoformat(),
            "payload": {"stripe_customer_id": "cus_acme", "value": str(i % 9 + 1)}}]})
    return send


def orb_bench(base):
    import orb
    client = orb.Orb(api_key="orb_REDACTED", base_url=base + "/orb/v1", max_retries=0)
    def send(i, key, at):
        client.events.ingest(events=[{"event_name": "api_request", "external_customer_id": "acme", "idempotency_key": key,
                                      "timestamp": at.isoformat(), "properties": {"quantity": i % 9 + 1}}])
    return send


def metronome_bench(base):
    from metronome import Metronome
    client = Metronome(bearer_token="metronome_REDACTED", base_url=base + "/metronome", max_retries=0)
    def send(i, key, at):
        client.v1.usage.ingest(usage=[{"transaction_id": key, "customer_id": "acme", "event_type": "api_request",
                                       "timestamp": at.isoformat(), "properties": {"quantity": i % 9 + 1}}])
    return send


def openmeter_bench(base):
    from openmeter import Client
    client = Client(endpoint=base + "/openmeter", token="om_REDACTED")
    def send(i, key, at):
        client.events.ingest_event({"specversion": "1.0", "id": key, "source": "sdk-bench", "type": "api_request",
                                    "subject": "acme", "time": at.isoformat(), "data": {"value": i % 9 + 1}})
    return send


def chargebee_bench(base):
    from chargebee import Chargebee
    cb = Chargebee(api_key="cb_REDACTED", site="acme-test", protocol="http")
    Chargebee.verify_ca_certs = False  # the emulator speaks plain HTTP on loopback
    cb.env.api_endpoint = base + "/chargebee/api/v2"
    # A subscription of its own per run: Chargebee keeps one usage per subscription, item price
    # and usage_date, so a second run's dates (the same seconds back from a moment later) would
    # be refused as already existing.
    subscription = f"acme-{uuid.uuid4().hex[:12]}"
    def send(i, key, at):
        cb.Usage.create(subscription, {"id": key[:50], "item_price_id": "seats-USD", "quantity": str(i % 9 + 1),
                                 "usage_date": int(at.timestamp())})
    return send


def recurly_bench(base):
    import recurly
    client = recurly.Client("recurly_REDACTED")
    host, port = base.removeprefix("http://").split(":")

    class Emulated(http.client.HTTPConnection):
        def request(self, method, url, body=None, headers={}, **kw):
            super().request(method, "/recurly" + url, body, headers, **kw)

    client._BaseClient__conn = Emulated(host, int(port), timeout=10)
    def send(i, key, at):
        client.create_usage("acme", "code-seats", {"amount": i % 9 + 1, "merchant_tag": key, "usage_timestamp": at,
                                                    "recording_timestamp": at})
    return send


def paddle_bench(base):
    import paddle_billing.Client  # noqa: F401 (loads the module)
    paddle_client = sys.modules["paddle_billing.Client"]
    from paddle_billing import Client, Options
    from paddle_billing.Resources.Subscriptions.Operations import CreateOneTimeCharge
    from paddle_billing.Entities.Subscriptions import SubscriptionEffectiveFrom
    from paddle_billing.Resources.Subscriptions.Operations.Charge.SubscriptionChargeItem import SubscriptionChargeItem

    class Emulated:
        base_url = base + "/paddle"
    paddle_client.urljoin = lambda root, path: root.rstrip("/") + "/" + path.lstrip("/")
    client = Client("pdl_sdbx_apikey_REDACTED", options=Options(Emulated()))
    def send(i, key, at):
        client.subscriptions.create_one_time_charge("sub_acme", CreateOneTimeCharge(
            SubscriptionEffectiveFrom.NextBillingPeriod, [SubscriptionChargeItem(price_id="pri_01bench", quantity=i % 9 + 1)]))
    return send


BENCHES = {"stripe": stripe_bench, "stripe_stream": stripe_stream_bench, "orb": orb_bench, "metronome": metronome_bench, "openmeter": openmeter_bench,
           "chargebee": chargebee_bench, "recurly": recurly_bench, "paddle": paddle_bench}

# Rows of the benchmark that no official SDK can send, and why (checked 2026-12-07).
NO_SDK = {"paddle_usage": "paddle-python-sdk 1.16.1 has no usage-events client",
          "openmeter_v3": "openmeter 1.0.0b236 sends only to v1's /api/v1/events, not Konnect's /v3/openmeter/events"}

if __name__ == "__main__":
    provider, base, n = sys.argv[1], sys.argv[2].rstrip("/"), int(sys.argv[3])
    if provider in NO_SDK:
        print(json.dumps({"provider": provider, "no_sdk": NO_SDK[provider]}))
        sys.exit(0)
    send = BENCHES[provider](base)   # client set-up is not timed
    batch = list(events(n))
    started = time.perf_counter()
    for i, key, at in batch:
        send(i, key, at)
    seconds = time.perf_counter() - started
    print(json.dumps({"provider": provider, "events": n, "seconds": round(seconds, 3), "events_per_second": round(n / seconds, 1)}))
