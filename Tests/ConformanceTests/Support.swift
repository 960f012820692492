import Foundation
import StripeUsage
import UsageBilling
import UsageBillingTesting

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The Stripe adapter as a conformance subject. It supports every catalogue scenario: the ones
/// v1 answers asynchronously (unknown meter, partial failure, bad value) are recorded on the v2
/// synchronous API, and v1's async reports are covered by StripeMeterErrorReport tests.
let stripeSubject = ConformanceSubject(
    provider: "stripe",
    fixturesDirectory: repositoryRoot.appending(path: "Providers/Stripe/Fixtures"),
    unsupported: [:]
) { settings, client, clock in
    try StripeMeterEventSink(settings: StripeSettings.decode(settings), client: client, clock: clock)
}

/// Every conformance subject; a new provider adds its line here.
let allSubjects: [ConformanceSubject] = [stripeSubject]
