import ArgumentParser
import Foundation
import StripeUsage
import UsageBilling
import UsageBillingCurl
import UsageBillingTesting
import UsageRouting

/// `usage-billing demo`: the whole Stripe path against a local Stripe fake, end to end.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send example events to a local Stripe fake through libcurl, then check the totals Stripe reports back.",
        discussion: """
            Starts a Stripe fake on 127.0.0.1 (no account, no network), delivers the example events through the
            Stripe adapter and CurlHTTPClient with retries (the fake answers some requests with 429 and 500 to show
            them), sends everything a second time to show that nothing is billed twice, and reads the totals back
            through Stripe's event summaries. Exits 0 only if every total agrees with what was recorded.

            Examples:
              usage-billing demo
              usage-billing demo --events my-events.ndjson --no-faults
            """)

    @Option(help: "NDJSON file of events ({id, name, customer, timestamp, quantity, properties}).")
    var events: String = "examples/events.ndjson"

    @Flag(help: "Do not inject 429/500 answers.")
    var noFaults = false

    func run() async throws {
        var loaded: [UsageEvent] = []
        do {
            let reader = try EventReader(path: events, format: .ndjson)
            while case let batch = reader.next(max: 1_000), !batch.isEmpty {
                for item in batch {
                    switch item {
                    case .success(let event): loaded.append(event)
                    case .failure(let bad):
                        print("error: \(events) \(bad)")
                        throw ExitCode(ExitCodes.badInput)
                    }
                }
            }
        } catch let error as UsageBillingError {
            print("error: \(error)")
            throw ExitCode(ExitCodes.badInput)
        }
        guard let latest = loaded.map(\.timestamp).max(), let earliest = loaded.map(\.timestamp).min() else {
            print("error: \(events) holds no events; add one JSON event per line")
            throw ExitCode(ExitCodes.badInput)
        }
        // Stripe accepts events up to 35 days old: move the example day to today, by whole hours.
        let shiftHours = ((Date().addingTimeInterval(-600).timeIntervalSince(latest)) / 3600).rounded(.down)
        let shift = shiftHours * 3600
        let recorded = loaded.map { event -> UsageEvent in
            var e = event
            e.timestamp = event.timestamp.addingTimeInterval(shift)
            return e
        }

        let meterNames = Array(Set(recorded.map(\.name))).sorted()
        let faults: [Int: StripeFake.Fault] = noFaults ? [:] : [3: .rateLimited(retryAfterSeconds: 1), 7: .serverError, 11: .rateLimited(retryAfterSeconds: nil)]
        let fake = StripeFake(meters: meterNames, faults: faults)
        let server = try await LoopbackHTTPServer.start { request in
            .respond(await fake.handle(method: request.method, target: request.target, headers: request.headers, body: request.body))
        }
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let customers = Dictionary(uniqueKeysWithValues: Set(recorded.map(\.customer)).map { ($0, "cus_\($0)") })
        let settings = StripeSettings(secretKey: "sk_test_emulator", endpoint: server.baseURL, customers: customers)
        let sink = try StripeMeterEventSink(settings: settings, client: client)
        let deliverer = RetryingDeliverer(sink: sink, policy: RetryPolicy(baseDelay: .milliseconds(100), maxAttempts: 6))

        print("UsageBilling demo: Stripe meter events (v1) → local Stripe fake at \(server.baseURL)")
        print("  (a stand-in for the provider emulator, which will cover all seven providers)")
        print("Loaded \(recorded.count) events from \(events); moved \(Int(shiftHours)) h later so they fall in Stripe's 35-day window.")
        if !faults.isEmpty { print("The fake answers requests \(faults.keys.sorted().map(String.init).joined(separator: ", ")) with 429/500 to show retries.") }

        let started = ContinuousClock.now
        let first: [RetryingDeliverer.Report]
        do {
            first = try await deliverer.deliver(recorded)
        } catch let error as UsageBillingError {
            print("error: \(error)")
            await server.shutdown()
            throw ExitCode(error.code == .configuration || error.code == .invalidInput ? ExitCodes.badInput : ExitCodes.unreachable)
        }
        let elapsed = ContinuousClock.now - started
        print("\nFirst pass:  \(Self.summary(first)); \(first.filter { $0.history.count > 1 }.count) event(s) needed a retry; \(String(format: "%.2f", elapsed.seconds)) s")
        let second = try await deliverer.deliver(recorded)
        print("Second pass (same events again, as after a crash): \(Self.summary(second))")

        // Read back through Stripe's own API.
        let stripe = try StripeBillingClient(settings: settings, client: client)
        let meters = try await stripe.listMeters()
        let start = Date(timeIntervalSince1970: (earliest.addingTimeInterval(shift).timeIntervalSince1970 / 3600).rounded(.down) * 3600)
        let end = Date(timeIntervalSince1970: ((latest.addingTimeInterval(shift).timeIntervalSince1970 + 1) / 3600).rounded(.up) * 3600)
        var mismatches = 0
        print("\n  \("meter".padding(toLength: 18, withPad: " ", startingAt: 0)) \("customer".padding(toLength: 10, withPad: " ", startingAt: 0)) \("recorded".leftPad(10)) \("stripe reports".leftPad(15))  agree")
        let accepted = Set(zip(recorded, first).filter { $0.1.final == .accepted || $0.1.final == .duplicate }.map { $0.0.id })
        for name in meterNames {
            guard let meter = meters.first(where: { $0.eventName == name }) else { continue }
            for customer in customers.keys.sorted() {
                let mine = recorded.filter { $0.name == name && $0.customer == customer && accepted.contains($0.id) }
                let local = mine.reduce(Decimal(0)) { $0 + $1.quantity }
                let summaries = try await stripe.eventSummaries(meterID: meter.id, customer: customers[customer] ?? customer,
                                                                start: start, end: end, window: .hour)
                let remote = summaries.reduce(0.0) { $0 + $1.aggregatedValue }
                let agree = abs(NSDecimalNumber(decimal: local).doubleValue - remote) < 1e-9
                if !agree { mismatches += 1 }
                print("  \(name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(customer.padding(toLength: 10, withPad: " ", startingAt: 0)) \(DecimalFormat.plain(local).leftPad(10)) \(String(format: "%g", remote).leftPad(15))  \(agree ? "yes" : "NO")")
            }
        }
        let stats = await fake.stats
        print("\nThe fake saw \(stats.requests) meter-event requests and kept \(stats.accepted) distinct events.")
        await server.shutdown()
        let rejected = first.filter { if case .rejected = $0.final { return true } else { return false } }
        if mismatches > 0 || rejected.count > 0 || stats.accepted != recorded.count {
            print("FAILED: \(mismatches) total(s) disagree, \(rejected.count) event(s) rejected.")
            throw ExitCode(ExitCodes.someRejected)
        }
        print("OK: every total Stripe reports matches what was recorded, and nothing was billed twice.")
    }

    static func summary(_ reports: [RetryingDeliverer.Report]) -> String {
        var counts: [String: Int] = [:]
        for r in reports { counts[r.final.label, default: 0] += 1 }
        return ["accepted", "duplicate", "rejected", "retryable", "possibly_delivered"]
            .map { "\($0) \(counts[$0] ?? 0)" }.joined(separator: ", ")
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
