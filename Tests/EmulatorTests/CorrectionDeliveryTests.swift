import Foundation
import Testing
import UsageBilling
import UsageBillingCurl
import UsageEmulator
import UsageRouting
import UsageSpool

/// Voids delivered to every provider of the registry its own way, against the emulator: a void
/// before delivery is never sent, a void after it is applied once (or dead with the manual fix
/// where the provider has no way), and voiding twice is voiding once.
@Suite("Corrections on every provider", .timeLimit(.minutes(2)))
struct CorrectionDeliveryTests {
    /// The net quantity the provider bills for `customer`, by what the emulator holds.
    static func net(_ emulator: UsageEmulator, _ kind: String) async -> Decimal {
        await emulator.accepted(kind).reduce(Decimal(0)) { $0 + $1.quantity }
    }

    @Test(arguments: UsageEmulator.kinds)
    func aVoidIsWithheldBeforeDeliveryAndAppliedOnceAfter(_ kind: String) async throws {
        let emulator = try await UsageEmulator.start()
        let probe = try emulatorConfig(emulator, routes: "  - { events: [api_request], to: \(kind) }\n")
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let lane = Lane(provider: kind, route: "api_request")
        // Providers that bill per window get one-minute windows, so the test can bill one.
        let windowed = try Router(config: probe, client: client).sink(for: lane)?.capabilities.aggregation != nil
        let config =
            windowed
            ? try emulatorConfig(
                emulator, routes: "  - { events: [api_request], to: \(kind) }\n",
                extra: [kind: "aggregate: { window: 1m, grace: 1m }"]) : probe
        let spool = FileManager.default.temporaryDirectory.appending(
            path: "ub-void-\(kind)-\(UUID().uuidString.prefix(8)).spool"
        ).path
        let pipeline = try UsagePipeline(config: config, spoolPath: spool, client: client)
        let sink = try #require(pipeline.router.sink(for: lane))
        let minute = (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 120
        let events = [2, 3, 5].enumerated().map { i, q in
            UsageEvent(
                id: "void-\(kind)-\(i)", name: "api_request", customer: "acme",
                timestamp: Date(timeIntervalSince1970: minute + Double(i)), quantity: Decimal(q))
        }
        try await pipeline.record(events)

        // Before delivery: withheld, never sent.
        let before = try await pipeline.void([events[0].id], reason: "duplicate from a retry loop")
        #expect(before.first?.correction.lanes[lane.name] == .withheld)
        try await pipeline.flush()
        #expect(await Self.net(emulator, kind) == 8, "\(kind): only the two events not voided are billed")

        // After delivery: pending, then applied (or dead where the provider has no way).
        let after = try await pipeline.void([events[1].id], reason: "test customer")
        #expect(after.first?.correction.lanes[lane.name] == .pending)
        try await pipeline.flush()
        let state = try #require(try await pipeline.spool.corrections(of: [events[1].id]).first?.lanes[lane.name])
        if sink is any CorrectionSink || windowed {
            #expect(state == .applied, "\(kind): \(state.label)")
            let laneStatus = try #require(try await pipeline.spool.status().first)
            if laneStatus.dead.isEmpty {
                #expect(await Self.net(emulator, kind) == 5, "\(kind): the voided event no longer counts")
            } else {
                // A provider that takes no negative amount refuses the window's lowered revision:
                // a dead letter that says what to do by hand.
                #expect(windowed, "\(kind): \(laneStatus.dead)")
                let letters = try await pipeline.spool.deadLetters()
                #expect(
                    letters.allSatisfy { $0.code == "quantity_negative" && $0.message.contains("By hand") },
                    "\(kind): \(letters.map(\.message))")
            }
        } else {
            #expect(state == .dead, "\(kind): a provider with no way to void gets a dead correction")
        }

        // Amend after delivery: the event is taken back as a void is, and its replacement with
        // the new quantity is delivered; an amend after an amend supersedes it.
        if (sink is any CorrectionSink || windowed), try await pipeline.spool.status().first?.dead.isEmpty == true {
            let first = try await pipeline.amend(events[2].id, quantity: 7, reason: "metered in the wrong unit")
            #expect(first.correction.kind == .amend && !first.alreadyAmended && first.replacement.quantity == 7)
            try await pipeline.flush()
            #expect(await Self.net(emulator, kind) == 7, "\(kind): the amended quantity replaces the original")
            let second = try await pipeline.amend(events[2].id, quantity: 4, reason: "and again")
            #expect(second.replacement.id != first.replacement.id)
            try await pipeline.flush()
            #expect(await Self.net(emulator, kind) == 4, "\(kind): the second amend supersedes the first")
            let same = try await pipeline.amend(events[2].id, quantity: 4, reason: "retried")
            #expect(same.alreadyAmended && same.replacement.id == second.replacement.id)
            let replaced = try await pipeline.spool.corrections(of: [first.replacement.id]).first
            #expect(
                replaced?.kind == .void && replaced?.lanes[lane.name] == .applied,
                "\(kind): \(String(describing: replaced))")
        }

        // Twice is once: the second void answers the first and sends nothing.
        let requests = emulator.requests(kind)
        let again = try await pipeline.void([events[1].id], reason: "again")
        #expect(again.first?.alreadyVoid == true)
        try await pipeline.flush()
        #expect(emulator.requests(kind) == requests, "\(kind): a second void sends nothing")
        await emulator.shutdown()
    }

    /// Stripe cancels only within 24 hours of receiving an event: a void the ledger knows to be
    /// later is refused before any request, one Stripe refuses is refused the same way, both with
    /// the manual fix; within the window it is one adjustment.
    @Test func aLateStripeCancelIsRefusedWithTheFix() async throws {
        let emulator = try await UsageEmulator.start()
        let config = try emulatorConfig(emulator, routes: "  - { events: [api_request], to: stripe }\n")
        let client = try CurlHTTPClient()
        defer { client.shutdown() }
        let router = try Router(config: config, client: client)
        let sink = try #require(router.sink(for: Lane(provider: "stripe", route: "api_request")) as? any CorrectionSink)
        let event = UsageEvent(
            id: "late-cancel", name: "api_request", customer: "acme", timestamp: Date().addingTimeInterval(-60),
            quantity: 4)
        #expect(try await sink.deliver([event]) == [.accepted])
        let late = try await sink.void(
            event, deliveredAt: Date().addingTimeInterval(-25 * 3600), correctionID: "c-late")
        guard case .rejected(let reason) = late else {
            Issue.record("a late cancel must be refused: \(late)")
            return
        }
        #expect(reason.code == "cancel_window_passed" && reason.origin == .local && reason.message.contains("By hand"))
        #expect(await emulator.accepted("stripe").count == 1, "the late cancel sent nothing")
        #expect(try await sink.void(event, deliveredAt: Date(), correctionID: "c-now") == .accepted)
        #expect(await emulator.accepted("stripe").isEmpty, "the cancel within the window took it back")

        // Stripe received an event earlier than the ledger's mark says (the mark recorded a
        // duplicate answer, say): the local check passes, Stripe refuses, and the refusal is as final.
        let earlier = UsageEvent(
            id: "received-earlier", name: "api_request", customer: "acme", timestamp: Date().addingTimeInterval(-60),
            quantity: 6)
        #expect(try await sink.deliver([earlier]) == [.accepted])
        emulator.advanceClock(by: .seconds(25 * 3600))
        let refused = try await sink.void(earlier, deliveredAt: Date(), correctionID: "c-refused")
        guard case .rejected(let byStripe) = refused else {
            Issue.record("Stripe's refusal of a late cancel must be final: \(refused)")
            return
        }
        #expect(
            byStripe.code == "cancel_window_passed" && byStripe.origin == .provider && byStripe.httpStatus == 400
                && byStripe.message.contains("By hand"), "\(byStripe)")
        #expect(await emulator.accepted("stripe").map(\.quantity) == [6], "the refused cancel took nothing back")
        await emulator.shutdown()
    }
}
