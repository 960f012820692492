import Foundation
import ChargebeeUsage
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import PaddleUsage
import RecurlyUsage
import StripeUsage
import UsageBilling
import UsageBillingTesting

/// The repository root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func fixtures(_ provider: String) -> URL { repositoryRoot.appending(path: "Providers/\(provider)/Fixtures") }

/// Stripe supports every catalogue scenario: the ones v1 answers asynchronously (unknown meter,
/// partial failure, bad value) are recorded on the v2 synchronous API, and v1's async reports
/// are covered by StripeMeterErrorReport tests.
let stripeSubject = ConformanceSubject(provider: "Stripe", fixturesDirectory: fixtures("Stripe")) { settings, client, clock in
    try StripeMeterEventSink(settings: StripeSettings.decode(settings), client: client, clock: clock)
}

let orbSubject = ConformanceSubject(
    provider: "Orb", fixturesDirectory: fixtures("Orb"),
    unsupported: [
        .duplicateIsDuplicate: "Orb accepts a repeated idempotency_key with the same 200 and no marker (the debug duplicate list was removed in July 2026), so a duplicate cannot be told from a first delivery; both are success",
    ]
) { settings, client, clock in
    try OrbIngestSink(settings: OrbSettings.decode(settings), client: client, clock: clock)
}

let metronomeSubject = ConformanceSubject(
    provider: "Metronome", fixturesDirectory: fixtures("Metronome"),
    unsupported: [
        .duplicateIsDuplicate: "Metronome ignores a repeated transaction_id and answers the same empty 200 (see duplicate_is_a_silent_empty_200), so a duplicate reads as accepted",
        .partialBatchFailure: "Metronome has no per-event result: a 4xx refuses the whole request and a 200 takes all of it",
        .unknownMeterOrCustomer: "Metronome accepts events for customers and event types it does not know yet and matches them when the ingest alias or billable metric appears",
    ]
) { settings, client, clock in
    try MetronomeIngestSink(settings: MetronomeSettings.decode(settings), client: client, clock: clock)
}

let openMeterSubject = ConformanceSubject(
    provider: "OpenMeter", fixturesDirectory: fixtures("OpenMeter"),
    unsupported: [
        .duplicateIsDuplicate: "OpenMeter drops a repeated (source, id) silently and still answers 204, so a duplicate reads as accepted",
        .partialBatchFailure: "OpenMeter answers a request as a whole (one bad event is a 400 for all) and checks meter values later, asynchronously",
        .unknownMeterOrCustomer: "OpenMeter accepts any type and subject; meters match events later",
        .tooOldTimestampRejectedLocally: "OpenMeter applies no past bound at ingest",
        .futureTimestampRejectedLocally: "OpenMeter applies no future bound at ingest",
        .unsupportedValueRejectedLocally: "OpenMeter takes any flat value in data (numbers go as decimal strings); its local check is the required subject (empty_subject_rejected_locally)",
    ]
) { settings, client, clock in
    try OpenMeterIngestSink(settings: OpenMeterSettings.decode(settings), client: client, clock: clock)
}

/// Chargebee runs the catalogue in both modes: usages (window records) for most scenarios, usage
/// events for the batch, partial-failure and timestamp-window ones.
let chargebeeSubject = ConformanceSubject(provider: "Chargebee", fixturesDirectory: fixtures("Chargebee")) { settings, client, clock in
    try ChargebeeSink(settings: ChargebeeSettings.decode(settings), client: client, clock: clock)
}

let recurlySubject = ConformanceSubject(
    provider: "Recurly", fixturesDirectory: fixtures("Recurly"),
    unsupported: [
        .partialBatchFailure: "Recurly takes one usage record per request, so there is no batch to fail in part",
        .tooOldTimestampRejectedLocally: "Recurly takes any usage_timestamp; the subscription's billing period decides where it lands",
        .futureTimestampRejectedLocally: "Recurly takes any usage_timestamp; the subscription's billing period decides where it lands",
    ]
) { settings, client, clock in
    try RecurlySink(settings: RecurlySettings.decode(settings), client: client, clock: clock)
}

let paddleSubject = ConformanceSubject(
    provider: "Paddle", fixturesDirectory: fixtures("Paddle"),
    unsupported: [
        .partialBatchFailure: "Paddle takes one charge per request (one item), so there is no batch to fail in part",
        .tooOldTimestampRejectedLocally: "a Paddle charge carries no usage time; it is billed with the next renewal or at once",
        .futureTimestampRejectedLocally: "a Paddle charge carries no usage time; it is billed with the next renewal or at once",
    ]
) { settings, client, clock in
    try PaddleSink(settings: PaddleSettings.decode(settings), client: client, clock: clock)
}

/// Every conformance subject; a new provider adds its line here.
let allSubjects: [ConformanceSubject] = [stripeSubject, orbSubject, metronomeSubject, openMeterSubject, chargebeeSubject, recurlySubject, paddleSubject]

func findSubject(_ provider: String) -> ConformanceSubject? { allSubjects.first { $0.provider == provider } }
