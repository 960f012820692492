import Foundation
import Testing
import UsageBilling

/// `Hedged.deliver`: a second attempt after the delay, the first settling answer wins, the other
/// attempt is cancelled.
@Suite("Hedged delivery", .timeLimit(.minutes(1)))
struct HedgedTests {
    /// Counts attempts and cancellations; attempt `n` (1-based) behaves as `behaviour(n)` says.
    final class Attempts: @unchecked Sendable {
        private let lock = NSLock()
        private var counts = (started: 0, cancelled: 0)
        var started: Int { lock.withLock { counts.started } }
        var cancelled: Int { lock.withLock { counts.cancelled } }

        func run(_ behaviour: @Sendable (Int) async throws -> [DeliveryOutcome]) async throws -> [DeliveryOutcome] {
            let n = lock.withLock {
                counts.started += 1; return counts.started
            }
            do {
                return try await behaviour(n)
            } catch is CancellationError {
                lock.withLock { counts.cancelled += 1 }
                throw CancellationError()
            }
        }
    }

    static let retryable = DeliveryOutcome.retryable(
        RetryableReason(.serverError, httpStatus: 500, message: "try again"), retryAfter: nil)

    @Test func aHungFirstAttemptIsOvertakenByTheHedgeAndCancelled() async throws {
        let attempts = Attempts()
        let answer = try await Hedged.deliver(after: .milliseconds(50)) {
            try await attempts.run { n in
                if n == 1 { try await Task.sleep(for: .seconds(3600)) }  // accepted, never answered
                return [.duplicate, .duplicate]  // the provider had applied the first
            }
        }
        #expect(answer.hedged && answer.hedgeWon)
        #expect(answer.outcomes == [.duplicate, .duplicate])
        #expect(attempts.started == 2 && attempts.cancelled == 1, "the hung attempt was cancelled, not left running")
    }

    @Test func anAnswerBeforeTheDelayIsNeverHedged() async throws {
        let attempts = Attempts()
        let answer = try await Hedged.deliver(after: .seconds(30)) { try await attempts.run { _ in [Self.retryable] } }
        #expect(
            !answer.hedged && answer.outcomes == [Self.retryable],
            "a retryable answer goes to the retry engine, not to a hedge")
        #expect(attempts.started == 1)
    }

    @Test func aRetryableAnswerWaitsForTheOtherAttemptsFinalOne() async throws {
        let attempts = Attempts()
        let answer = try await Hedged.deliver(after: .milliseconds(50)) {
            try await attempts.run { n in
                if n == 1 {
                    try await Task.sleep(for: .milliseconds(300))
                    return [.accepted, Self.retryable]
                }
                try await Task.sleep(for: .milliseconds(600))
                return [Self.retryable, .accepted]
            }
        }
        #expect(answer.hedged && answer.hedgeWon)
        #expect(answer.outcomes == [.accepted, .accepted], "each event keeps the final outcome either attempt had")
    }

    /// The first attempt hangs; the hedge answers "retry": the batch ends with that answer at
    /// once (its events go again with the same ids), not after the hung request's timeout.
    @Test func aHedgeThatAnswersRetryableEndsTheWaitForAHungFirstAttempt() async throws {
        let attempts = Attempts()
        let started = ContinuousClock.now
        let answer = try await Hedged.deliver(after: .milliseconds(50)) {
            try await attempts.run { n in
                if n == 1 { try await Task.sleep(for: .seconds(120)) }
                return [Self.retryable]
            }
        }
        #expect(answer.hedged && answer.outcomes == [Self.retryable])
        // Far under the first attempt's 120 s, with room for a suite that keeps both cores busy.
        #expect(ContinuousClock.now - started < .seconds(60), "not held until the first attempt gives up")
    }

    @Test func noDelayMeansOneAttempt() async throws {
        let attempts = Attempts()
        let answer = try await Hedged.deliver(after: nil) { try await attempts.run { _ in [.accepted] } }
        #expect(!answer.hedged && attempts.started == 1 && answer.outcomes == [.accepted])
    }
}
