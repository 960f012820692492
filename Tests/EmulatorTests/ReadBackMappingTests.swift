import Foundation
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import StripeUsage
import Testing
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageTestSupport

// Read-backs against small fake servers: what each provider bills by (Orb subscriptions,
// Metronome billable metrics, OpenMeter meters, Stripe's active meter), beyond what the emulator
// models.

/// Orb's read-back finds a customer's subscriptions instead of taking the customer id for one.
@Suite("Orb read-back: subscriptions")
struct OrbSubscriptionReadBackTests {
    /// A fake Orb with two subscriptions for acme (one ended on June 1, one running since), none
    /// for globex; it notes every usage request's subscription and timeframe.
    private func fakeOrb(_ asked: Locked<[String]>) async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { request in
            let q = Dictionary(request.query, uniquingKeysWith: { $1 })
            if request.path == "/v1/subscriptions" {
                guard q["external_customer_id[]"] == "acme" else {
                    return .respond(
                        .json(
                            200,
                            .object([
                                "data": .array([]),
                                "pagination_metadata": .object(["has_more": .bool(false), "next_cursor": .null]),
                            ])))
                }
                // Two pages, newest first, as Orb lists them.
                let old = JSONValue.object([
                    "id": .string("sub_old"), "status": .string("ended"), "start_date": .string("2026-01-01T00:00:00Z"),
                    "end_date": .string("2026-06-01T00:00:00Z"),
                ])
                let new = JSONValue.object([
                    "id": .string("sub_new"), "status": .string("active"),
                    "start_date": .string("2026-06-01T00:00:00Z"), "end_date": .null,
                ])
                let second = q["cursor"] == "page2"
                return .respond(
                    .json(
                        200,
                        .object([
                            "data": .array([second ? old : new]),
                            "pagination_metadata": .object([
                                "has_more": .bool(!second), "next_cursor": second ? .null : .string("page2"),
                            ]),
                        ])))
            }
            guard request.path.hasPrefix("/v1/subscriptions/"), let start = q["timeframe_start"],
                let end = q["timeframe_end"]
            else {
                return .respond(.json(404, .object(["status": .number(404), "title": .string("Not found")])))
            }
            let id = request.path.split(separator: "/")[2]
            asked.with { $0.append("\(id) \(start) \(end)") }
            return .respond(
                .json(
                    200,
                    .object([
                        "data": .array([
                            .object([
                                "billable_metric": .object(["id": .string("bm_1"), "name": .string("api_request")]),
                                "view_mode": .string("periodic"),
                                "usage": .array([
                                    .object([
                                        "quantity": .number(id == "sub_old" ? 5 : 7), "timeframe_start": .string(start),
                                        "timeframe_end": .string(end),
                                    ])
                                ]),
                            ])
                        ])
                    ])))
        }
    }

    @Test func usageComesFromEverySubscriptionOverlappingTheRange() async throws {
        let asked = Locked<[String]>([])
        let server = try await fakeOrb(asked)
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let readBack = try OrbReadBack(
            settings: OrbSettings(apiKey: "orb_REDACTED", endpoint: server.baseURL + "/v1"), client: http)
        let from = try #require(RFC3339.parse("2026-05-01T00:00:00Z")),
            to = try #require(RFC3339.parse("2026-07-01T00:00:00Z"))
        let usage = try await readBack.usage(
            customer: "acme", meters: ["api_request"], from: from, to: to, granularity: .day)
        #expect(usage.map(\.value).reduce(0, +) == 12)
        #expect(
            asked.with { $0 }.sorted() == [
                "sub_new 2026-06-01T00:00:00Z 2026-07-01T00:00:00Z",
                "sub_old 2026-05-01T00:00:00Z 2026-06-01T00:00:00Z",
            ],
            "each subscription is read over its overlap with the range")

        // A customer with no subscription: said, with the fix, not reported as zero usage.
        await #expect {
            _ = try await readBack.usage(customer: "globex", meters: [], from: from, to: to, granularity: .day)
        } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.message.contains("no subscription for customer globex") && e.field == "subscriptions"
                && e.fix != nil
        }

        // Named in the settings: read as it is, no lookup.
        asked.with { $0 = [] }
        var settings = OrbSettings(apiKey: "orb_REDACTED", endpoint: server.baseURL + "/v1")
        settings.subscriptions = ["globex": "sub_globex"]
        let named = try await OrbReadBack(settings: settings, client: http).usage(
            customer: "globex", meters: [], from: from, to: to, granularity: .day)
        #expect(
            named.map(\.value) == [7] && asked.with { $0 } == ["sub_globex 2026-05-01T00:00:00Z 2026-07-01T00:00:00Z"])
        await server.shutdown()
    }
}

extension OrbSubscriptionReadBackTests {
    /// With `customer_id_kind: orb` the customer is Orb's own id: its time zone comes from
    /// `GET /customers/{id}` and its subscriptions from `customer_id[]`, not the external-id forms.
    @Test func orbIdsAreLookedUpByOrbId() async throws {
        let paths = Locked<[String]>([])
        let server = try await LoopbackHTTPServer.start { request in
            paths.with { $0.append(request.target.removingPercentEncoding ?? request.target) }
            if request.path == "/v1/customers/cus_1" {
                return .respond(.json(200, .object(["id": .string("cus_1"), "timezone": .string("Asia/Tokyo")])))
            }
            if request.path == "/v1/subscriptions" {
                return .respond(
                    .json(
                        200,
                        .object([
                            "data": .array([
                                .object([
                                    "id": .string("sub_1"), "status": .string("active"),
                                    "start_date": .string("2026-01-01T00:00:00Z"), "end_date": .null,
                                ])
                            ]),
                            "pagination_metadata": .object(["has_more": .bool(false), "next_cursor": .null]),
                        ])))
            }
            return .respond(.json(200, .object(["data": .array([])])))
        }
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let readBack = try OrbReadBack(
            settings: OrbSettings(apiKey: "orb_REDACTED", endpoint: server.baseURL + "/v1", customerIDKind: .orb),
            client: http)
        guard case .aligned(let zone) = try await readBack.windowing(customer: "cus_1") else {
            Issue.record("not aligned days"); return
        }
        #expect(zone.identifier == "Asia/Tokyo")
        let from = try #require(RFC3339.parse("2026-05-01T00:00:00Z")),
            to = try #require(RFC3339.parse("2026-05-02T00:00:00Z"))
        _ = try await readBack.usage(customer: "cus_1", meters: [], from: from, to: to, granularity: .day)
        let seen = paths.with { $0 }
        #expect(seen.first == "/v1/customers/cus_1")
        #expect(
            seen.contains { $0.hasPrefix("/v1/subscriptions?customer_id[]=cus_1") }
                && seen.contains { $0.hasPrefix("/v1/subscriptions/sub_1/usage?") }, "\(seen)")
        await server.shutdown()
    }
}

/// Metronome's read-back reads each event type from the billable metric that counts it.
@Suite("Metronome read-back: billable metrics")
struct MetronomeBillableMetricTests {
    static let customerID = "0e5b8609-d901-4992-b394-c3c2e3f37b1c"

    @Test(arguments: [["api_request": "API Requests"], ["api_request": "bm-1"]])
    func eventTypesAreReadFromTheirBillableMetrics(_ map: [String: String]) async throws {
        let server = try await LoopbackHTTPServer.start { request in
            // The events name the customer by its ingest alias c-1; usage is keyed by its id.
            if request.method == "GET", request.path == "/v1/customers" {
                return .respond(
                    .json(
                        200,
                        .object([
                            "data": .array([
                                .object(["id": .string(Self.customerID), "ingest_aliases": .array([.string("c-1")])])
                            ]),
                            "next_page": .null,
                        ])))
            }
            guard request.method == "POST", request.path == "/v1/usage" else {
                return .respond(.json(404, .object(["message": .string("Not found")])))
            }
            func row(_ id: String, _ name: String, _ value: Double) -> JSONValue {
                .object([
                    "customer_id": .string(Self.customerID), "billable_metric_id": .string(id),
                    "billable_metric_name": .string(name),
                    "start_timestamp": .string("2026-11-19T00:00:00Z"),
                    "end_timestamp": .string("2026-11-20T00:00:00Z"), "value": .number(value),
                ])
            }
            return .respond(
                .json(
                    200,
                    .object([
                        "data": .array([
                            row("bm-1", "API Requests", 120), row("bm-2", "tokens", 9), row("bm-3", "Seats", 4),
                        ]),
                        "next_page": .null,
                    ])))
        }
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        var settings = MetronomeSettings(apiKey: "metronome_REDACTED", endpoint: server.baseURL)
        settings.billableMetrics = map
        let from = try #require(RFC3339.parse("2026-11-19T00:00:00Z")),
            to = try #require(RFC3339.parse("2026-11-20T00:00:00Z"))
        let rows = try await MetronomeReadBack(settings: settings, client: http).usage(
            customer: "c-1", meters: ["api_request", "tokens"], from: from, to: to, granularity: .day)
        let byMeter = Dictionary(uniqueKeysWithValues: rows.map { ($0.meter, $0.value) })
        #expect(
            byMeter == ["api_request": 120, "tokens": 9],
            "mapped by \(map), tokens by its own name, Seats not asked for")
        await server.shutdown()
    }
}

/// OpenMeter's read-back reads each event type from the meter that aggregates it.
@Suite("OpenMeter read-back: meter slugs")
struct OpenMeterMeterSlugTests {
    @Test func eventTypesAreReadFromTheirMeters() async throws {
        let asked = Locked<[String]>([])
        let server = try await LoopbackHTTPServer.start { request in
            asked.with { $0.append(request.path) }
            let value: Double = request.path == "/api/v1/meters/api_requests_total/query" ? 42 : 5
            return .respond(
                .json(
                    200,
                    .object([
                        "windowSize": .string("DAY"),
                        "data": .array([
                            .object([
                                "subject": .string("customer-acme"), "value": .number(value),
                                "windowStart": .string("2026-11-19T00:00:00Z"),
                                "windowEnd": .string("2026-11-20T00:00:00Z"),
                            ])
                        ]),
                    ])))
        }
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        var settings = OpenMeterSettings(apiKey: "om_REDACTED", endpoint: server.baseURL)
        settings.meterSlugs = ["api_request": "api_requests_total"]
        let from = try #require(RFC3339.parse("2026-11-19T00:00:00Z")),
            to = try #require(RFC3339.parse("2026-11-20T00:00:00Z"))
        let rows = try await OpenMeterReadBack(settings: settings, client: http)
            .usage(
                customer: "customer-acme", meters: ["api_request", "storage"], from: from, to: to, granularity: .day)
        #expect(
            Dictionary(uniqueKeysWithValues: rows.map { ($0.meter, $0.value) }) == ["api_request": 42, "storage": 5])
        #expect(
            asked.with { $0 }.sorted() == ["/api/v1/meters/api_requests_total/query", "/api/v1/meters/storage/query"])
        await server.shutdown()
    }
}

/// Stripe's read-back reads the active meter of an event name, not a deactivated one sharing it,
/// and lists the meters once however many customers it reads.
@Suite("Stripe read-back: meters")
struct StripeReadBackMeterTests {
    @Test func theActiveMeterOfAnEventNameIsRead() async throws {
        let asked = Locked<[String]>([])
        let lists = Locked(0)
        let server = try await LoopbackHTTPServer.start { request in
            if request.path == "/v1/billing/meters" {
                lists.with { $0 += 1 }
                func meter(_ id: String, _ status: String) -> JSONValue {
                    .object([
                        "id": .string(id), "object": .string("billing.meter"), "event_name": .string("api_requests"),
                        "display_name": .string(id),
                        "status": .string(status), "livemode": .bool(false), "created": .number(0),
                        "event_time_window": .null,
                        "customer_mapping": .object([
                            "event_payload_key": .string("stripe_customer_id"), "type": .string("by_id"),
                        ]),
                        "value_settings": .object(["event_payload_key": .string("value")]),
                        "default_aggregation": .object(["formula": .string("sum")]),
                    ])
                }
                return .respond(
                    .json(
                        200,
                        .object([
                            "object": .string("list"),
                            "data": .array([meter("mtr_old", "inactive"), meter("mtr_new", "active")]),
                            "has_more": .bool(false), "url": .string("/v1/billing/meters"),
                        ])))
            }
            asked.with { $0.append(request.path) }
            return .respond(
                .json(
                    200,
                    .object([
                        "object": .string("list"), "data": .array([]), "has_more": .bool(false),
                        "url": .string(request.path),
                    ])))
        }
        let http = try CurlHTTPClient()
        defer { http.shutdown() }
        let readBack = try StripeReadBack(
            settings: StripeSettings(secretKey: "sk_test_REDACTED", endpoint: server.baseURL), client: http)
        let from = try #require(RFC3339.parse("2026-11-19T00:00:00Z")),
            to = try #require(RFC3339.parse("2026-11-20T00:00:00Z"))
        _ = try await readBack.usage(customer: "cus_1", meters: ["api_requests"], from: from, to: to, granularity: .day)
        _ = try await readBack.usage(customer: "cus_2", meters: ["api_requests"], from: from, to: to, granularity: .day)
        #expect(
            asked.with { $0 } == [
                "/v1/billing/meters/mtr_new/event_summaries", "/v1/billing/meters/mtr_new/event_summaries",
            ])
        #expect(lists.with { $0 } == 1, "the meters are listed once per read-back, not per customer")
        await server.shutdown()
    }
}
