import Foundation
import Testing
@testable import UsageBilling
import UsageBillingTesting

@Suite("Events and ids")
struct EventTests {
    @Test func uuidV7IdsAreWellFormedAndTimeOrdered() {
        let earlier = EventID.generate(at: Date(timeIntervalSince1970: 1_764_000_000))
        let later = EventID.generate(at: Date(timeIntervalSince1970: 1_764_000_000.002))
        let pattern = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/
        #expect(earlier.wholeMatch(of: pattern) != nil)
        #expect(later.wholeMatch(of: pattern) != nil)
        #expect(earlier < later)
        #expect(EventID.generate() != EventID.generate())
    }

    @Test func uuidV7LayoutIsExact() {
        // Two fixed 64-bit draws: the expected string was worked out by hand (Python) from the
        // layout: 48 bits of milliseconds, version 7, variant 10, then the random bytes.
        struct Fixed: RandomNumberGenerator {
            var values: [UInt64] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]
            mutating func next() -> UInt64 { values.isEmpty ? 0 : values.removeFirst() }
        }
        var rng = Fixed()
        #expect(
            EventID.generate(at: Date(timeIntervalSince1970: 1_764_000_000), using: &rng)
                == "019ab697-e800-7301-afcd-ab7698badcfe")
    }

    @Test func derivedIdsAreDeterministicAndSeparatorSafe() {
        let a = EventID.derived(from: ["stripe", "acme", "api", "2026-11-20T00:00:00Z"])
        #expect(a == EventID.derived(from: ["stripe", "acme", "api", "2026-11-20T00:00:00Z"]))
        #expect(a != EventID.derived(from: ["stripe", "acme", "api", "2026-11-21T00:00:00Z"]))
        #expect(EventID.derived(from: ["a\u{1F}b", "c"]) != EventID.derived(from: ["a", "b\u{1F}c"]))
        // Stable across versions (window records and stream batch keys are persisted and sent):
        // SHA-256 over the parts' UTF-8 joined by 0x1F, each 0x1F in a part doubled (values
        // computed independently with Python's hashlib).
        #expect(a == "ub_10e433195321f78edc5011bc038db650")
        #expect(EventID.derived(from: ["a\u{1F}b", "c"]) == "ub_4d047566f08c14bbb44b7889155ee5e2")
        #expect(EventID.derived(from: ["cliënt-ø", "日本"]) == "ub_e8c81a56a00368fba2ce4b420281bde1")
        #expect(a.hasPrefix("ub_") && a.count == 35)
    }

    @Test func sha256MatchesKnownVectors() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let long = Array(String(repeating: "a", count: 1000).utf8)
        #expect(SHA256.hex(long) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test func eventJSONKeepsDecimalPrecisionAndNamesBadFields() throws {
        let json =
            #"{"id":"e1","name":"api","customer":"acme","timestamp":"2026-11-20T11:59:00.250Z","quantity":"0.1","properties":{"ok":true,"n":3,"s":"x"}}"#
        let event = try JSONDecoder().decode(UsageEvent.self, from: Data(json.utf8))
        #expect(event.quantity == Decimal(string: "0.1"))
        #expect(event.properties == ["ok": .bool(true), "n": .number(3), "s": .string("x")])
        #expect(abs(event.timestamp.timeIntervalSince1970 - 1_795_175_940.25) < 0.001)
        let again = try JSONDecoder().decode(UsageEvent.self, from: JSONEncoder().encode(event))
        #expect(again == event)

        let bad = #"{"name":"api","customer":"acme","timestamp":"yesterday"}"#
        #expect {
            try JSONDecoder().decode(UsageEvent.self, from: Data(bad.utf8))
        } throws: { error in
            "\(error)".contains("timestamp") && "\(error)".contains("RFC 3339")
        }
        let nested = #"{"name":"api","customer":"acme","timestamp":"2026-11-20T11:59:00Z","properties":{"a":{"b":1}}}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(UsageEvent.self, from: Data(nested.utf8)) }
    }

    @Test func decimalHelpers() {
        #expect(DecimalFormat.plain(Decimal(string: "1500")!) == "1500")
        #expect(DecimalFormat.plain(Decimal(string: "-0.25")!) == "-0.25")
        #expect(DecimalFormat.isWhole(Decimal(string: "42")!))
        #expect(!DecimalFormat.isWhole(Decimal(string: "42.5")!))
        #expect(DecimalFormat.significantDigits(Decimal(string: "1500")!) == 2)
        #expect(DecimalFormat.significantDigits(Decimal(string: "1500.25")!) == 6)
        #expect(DecimalFormat.significantDigits(Decimal(string: "1234567890123456")!) == 16)
    }
}

@Suite("Retry, rate limiting, batching")
struct DeliveryTests {
    @Test func retryCeilingsFollowTheDocumentedCurve() {
        let policy = RetryPolicy()
        let ceilings = (1...8).map { policy.ceiling(forRetry: $0).seconds }
        #expect(ceilings == [0.5, 1, 2, 4, 8, 16, 30, 30])
    }

    @Test func retryDelaysAreFullJitterWithinTheCeiling() {
        let policy = RetryPolicy()
        var rng = SeededGenerator(seed: 7)
        var seen: [Double] = []
        for attempt in 1...6 {
            for _ in 0..<50 {
                let d = policy.delay(attemptsMade: attempt, elapsed: .zero, retryAfter: nil, using: &rng)
                let s = d?.seconds ?? -1
                #expect(s >= 0 && s <= policy.ceiling(forRetry: attempt).seconds)
                seen.append(s)
            }
        }
        // Full jitter spreads waits: some near zero, some near the ceiling.
        #expect(seen.contains { $0 < 0.1 })
        #expect(seen.contains { $0 > 10 })
    }

    /// A chain of 3 backoffs starts again at the first retry's ceiling twice, then the curve
    /// goes on to the cap; Retry-After still wins; the attempt cap still ends it.
    @Test func aRetryChainIsBoundedThenTheCurveGoesOn() {
        let policy = RetryPolicy(maxAttempts: 16, maxElapsed: .seconds(3600), chainLength: 3, chainRestarts: 2)
        #expect((1...14).map { policy.curveIndex(forRetry: $0) } == [1, 2, 3, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8])
        var rng = SeededGenerator(seed: 3)
        for retry in 1...15 {
            for _ in 0..<20 {
                let wait =
                    policy.delay(attemptsMade: retry, elapsed: .zero, retryAfter: nil, using: &rng)?.seconds ?? -1
                #expect(
                    wait >= 0 && wait <= policy.ceiling(forRetry: policy.curveIndex(forRetry: retry)).seconds,
                    "retry \(retry): \(wait)")
                if [4, 7].contains(retry) {
                    #expect(wait <= 0.5, "a restarted chain waits at most the first retry's ceiling")
                }
            }
        }
        #expect(
            policy.delay(attemptsMade: 4, elapsed: .zero, retryAfter: .seconds(20), using: &rng) == .seconds(20),
            "Retry-After is honoured in a restarted chain")
        #expect(policy.delay(attemptsMade: 16, elapsed: .zero, retryAfter: nil, using: &rng) == nil)
        #expect(RetryPolicy().curveIndex(forRetry: 9) == 9, "no chain length: one chain, as before")
        // The worker's restarts add the attempts they use: beyond them the waits are the single chain's.
        let single = RetryPolicy(maxAttempts: 20, maxElapsed: .seconds(24 * 3600))
        let worker = RetryPolicy.worker, taken = (worker.chainLength ?? 0) * worker.chainRestarts
        #expect(worker.maxAttempts == single.maxAttempts + taken)
        #expect(
            ((taken + 1)...worker.maxAttempts).map { worker.curveIndex(forRetry: $0) }
                == ((taken + 1)...worker.maxAttempts).map { single.curveIndex(forRetry: $0 - taken) })
    }

    @Test func retryAfterIsAFloorAndCapsStopRetrying() {
        let policy = RetryPolicy(maxAttempts: 3, maxElapsed: .seconds(60))
        var rng = SeededGenerator(seed: 1)
        let d = policy.delay(attemptsMade: 1, elapsed: .zero, retryAfter: .seconds(45), using: &rng)
        #expect(d == .seconds(45))
        #expect(policy.delay(attemptsMade: 3, elapsed: .zero, retryAfter: nil, using: &rng) == nil)
        #expect(policy.delay(attemptsMade: 1, elapsed: .seconds(30), retryAfter: .seconds(45), using: &rng) == nil)
    }

    @Test func retryAfterHeaderParsing() {
        let now = Date(timeIntervalSince1970: 1_764_072_000)  // 2025-11-25T12:00:00Z
        #expect(RetryAfter.parse("2", now: now) == .seconds(2))
        #expect(RetryAfter.parse("0.5", now: now) == .milliseconds(500))
        #expect(RetryAfter.parse("Tue, 25 Nov 2025 12:00:30 GMT", now: now) == .seconds(30))
        #expect(RetryAfter.parse("soon", now: now) == nil)
        #expect(RetryAfter.parse("-3", now: now) == nil)
    }

    @Test func tokenBucketWaitsOnTheInjectedClock() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(RateLimit(requestsPerSecond: 2, burst: 2), clock: clock)
        try await limiter.acquire()
        try await limiter.acquire()
        #expect(clock.sleeps.isEmpty)
        try await limiter.acquire()
        #expect(clock.sleeps == [.milliseconds(500)])
        clock.advance(by: .seconds(10))
        #expect(limiter.available() == 2)
    }

    /// A limit on events as well as requests: a request waits for the slower bucket, and a large
    /// batch waits for its events even when requests are plentiful.
    @Test func eventBucketPacesLargeBatches() async throws {
        let clock = TestClock()
        let limiter = RateLimiter(
            RateLimit(requestsPerSecond: 100, burst: 100, eventsPerSecond: 10, eventBurst: 20), clock: clock)
        try await limiter.acquire(events: 20)
        #expect(clock.sleeps.isEmpty)
        try await limiter.acquire(events: 5)
        #expect(clock.sleeps == [.milliseconds(500)])
        clock.advance(by: .seconds(10))
        try await limiter.acquire(events: 1)
        #expect(clock.sleeps.count == 1)
    }

    /// Callers acquiring at once each reserve a token of their own: with the clock standing
    /// still, ten callers on a bucket of 2 at 2/s wait 0, 0, 0.5, 1, … 4 seconds, each wait once.
    @Test func concurrentAcquiresReserveDistinctTokens() async throws {
        final class FrozenClock: UsageClock, @unchecked Sendable {
            let lock = NSLock()
            var sleeps: [Duration] = []
            func now() -> Date { Date(timeIntervalSince1970: 1_764_072_000) }
            func monotonicNow() -> Duration { .zero }
            func sleep(for duration: Duration) async throws { lock.withLock { sleeps.append(duration) } }
        }
        let clock = FrozenClock()
        let limiter = RateLimiter(RateLimit(requestsPerSecond: 2, burst: 2), clock: clock)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<10 { group.addTask { try await limiter.acquire() } }
            try await group.waitForAll()
        }
        #expect(clock.lock.withLock { clock.sleeps.sorted() } == (1...8).map { Duration.milliseconds(500 * $0) })
        #expect(limiter.available() == -8)
    }

    @Test func batcherSplitsInOrder() {
        let batches = Batcher.batches(Array(0..<250), maxBatchSize: 100)
        #expect(batches.map(\.count) == [100, 100, 50])
        #expect(batches.flatMap { $0 } == Array(0..<250))
        #expect(Batcher.batches([Int](), maxBatchSize: 10).isEmpty)
        #expect(Batcher.batches([1, 2], maxBatchSize: 0).map(\.count) == [1, 1])
    }

    @Test func timestampWindowIsCheckedAtItsEdges() {
        let now = Date(timeIntervalSince1970: 1_763_640_000)
        let window = AcceptedTimeWindow(maxAge: .seconds(3600), maxFutureSkew: .seconds(300))
        func check(_ offset: TimeInterval) -> String? {
            let e = UsageEvent(name: "x", customer: "c", timestamp: now.addingTimeInterval(offset))
            return LocalValidation.checkTimestamp(e, window: window, now: now, provider: "P")?.code
        }
        #expect(check(-3600) == nil)
        #expect(check(-3601) == "timestamp_too_old")
        #expect(check(300) == nil)
        #expect(check(301) == "timestamp_in_future")
    }

    /// A sink that answers from a script, per attempt.
    final class ScriptedSink: UsageSink, @unchecked Sendable {
        let name = "scripted"
        let capabilities = SinkCapabilities(maxBatchSize: 2, idempotency: .providerDeduplicates(window: nil))
        private let lock = NSLock()
        private var script: [DeliveryOutcome]
        private(set) var batches: [[String]] = []
        init(_ script: [DeliveryOutcome]) { self.script = script }
        func deliver(_ batch: [UsageEvent]) async throws -> [DeliveryOutcome] {
            lock.withLock {
                batches.append(batch.map(\.id))
                return batch.map { _ in script.isEmpty ? .accepted : script.removeFirst() }
            }
        }
    }

    @Test func retryingDelivererResendsOnlyWhatIsRetryableWithTheSameIds() async throws {
        let sink = ScriptedSink([
            .accepted, .retryable(RetryableReason(.rateLimited, message: "429"), retryAfter: .seconds(3)),
            .possiblyDelivered,
        ])
        let clock = TestClock()
        let events = (1...3).map { UsageEvent(id: "e\($0)", name: "n", customer: "c") }
        let reports = try await RetryingDeliverer(sink: sink, policy: RetryPolicy(maxAttempts: 4), clock: clock)
            .deliver(events)
        #expect(reports.map(\.final) == [.accepted, .accepted, .accepted])
        #expect(reports.map { $0.history.count } == [1, 2, 2])
        #expect(sink.batches == [["e1", "e2"], ["e3"], ["e2", "e3"]])
        #expect(clock.sleeps.count == 1)
        #expect(clock.sleeps.first.map { $0 >= .seconds(3) } == true)
    }

    @Test func retryingDelivererGivesUpAtTheAttemptCap() async throws {
        let always = DeliveryOutcome.retryable(RetryableReason(.serverError, message: "500"), retryAfter: nil)
        let sink = ScriptedSink(Array(repeating: always, count: 10))
        let reports = try await RetryingDeliverer(sink: sink, policy: RetryPolicy(maxAttempts: 3), clock: TestClock())
            .deliver([UsageEvent(id: "e", name: "n", customer: "c")])
        #expect(reports.first?.history.count == 3)
        #expect(reports.first?.final.isFinal == false)
    }
}

@Suite("HTTP helpers and redaction")
struct HTTPHelperTests {
    @Test func formEncodingMatchesTheOfficialSDKCapture() {
        // Captured from stripe-python 16.1.0 (see Providers/Stripe/Fixtures/compose_fixtures.py).
        let fields = [
            ("event_name", "api_requests"), ("payload[stripe_customer_id]", "cus_123"), ("payload[value]", "5"),
            ("payload[region]", "eu west"), ("identifier", "019a-1"), ("timestamp", "1763640000"),
        ]
        #expect(
            FormEncoding.encode(fields)
                == "event_name=api_requests&payload[stripe_customer_id]=cus_123&payload[value]=5&payload[region]=eu+west&identifier=019a-1&timestamp=1763640000"
        )
        let tricky = [("a[b]", "x&y=z+ü/?")]
        let decoded = FormEncoding.decode(FormEncoding.encode(tricky))
        #expect(decoded.count == 1 && decoded[0].0 == "a[b]" && decoded[0].1 == "x&y=z+ü/?")
    }

    /// Pairs split on `&` and the first `=`: empty parts are skipped, a key alone has an empty
    /// value, and each side is unescaped on its own.
    @Test(arguments: [
        ("a=1&&b=&c&d=x%3Dy+z&e=%ZZ", ["a=1", "b=", "c=", "d=x=y z", "e=%ZZ"]),
        ("&", []), ("=", ["="]), ("k=v=w", ["k=v=w"]), ("%C3%A9t%C3%A9=%E2%82%AC", ["été=€"]), ("ü=ö&", ["ü=ö"]),
    ])
    func formDecodingSplitsPairs(_ body: String, _ expected: [String]) {
        #expect(FormEncoding.decode(body).map { "\($0.0)=\($0.1)" } == expected)
        #expect(
            FormEncoding.decode(Data(body.utf8)).map { "\($0.0)=\($0.1)" } == expected, "the same from the body's bytes"
        )
    }

    /// The hand-written escapes agree with Foundation's percent-encoding, malformed input included.
    @Test(arguments: [
        "plain", "a+b", "%41%42", "%c3%a9+%C3%A9", "%", "%4", "%zz", "100%", "%ff", "%C3", "a%2Bb", "ü%20x", "",
    ])
    func unescapeAgreesWithFoundation(_ text: String) {
        let plussed = text.replacingOccurrences(of: "+", with: " ")
        #expect(FormEncoding.unescape(text) == (plussed.removingPercentEncoding ?? plussed), "\(text)")
    }

    @Test func escapeAgreesWithFoundation() {
        var allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-._")
        let text = "a b:c/d?e&f=g+h[i]j~k%lü😀\u{1}"
        let foundation = (text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "").replacingOccurrences(
            of: "%20", with: "+")
        #expect(FormEncoding.escape(text, keepBrackets: false) == foundation)
        allowed.insert(charactersIn: "[]")
        let keepBrackets = (text.addingPercentEncoding(withAllowedCharacters: allowed) ?? "").replacingOccurrences(
            of: "%20", with: "+")
        #expect(FormEncoding.escape(text, keepBrackets: true) == keepBrackets)
    }

    @Test func headersAreCaseInsensitiveAndKeepRepeats() {
        var h = HeaderFields([(name: "Set-Cookie", value: "a"), (name: "set-cookie", value: "b")])
        #expect(h.values(for: "SET-COOKIE") == ["a", "b"])
        h["Retry-After"] = "2"
        #expect(h["retry-after"] == "2")
        #expect(HTTPResponse(status: 429, headers: h).retryAfter() == .seconds(2))
        h["RETRY-after"] = "3"
        #expect(h.values(for: "Retry-After") == ["3"])
    }

    /// Names match without ASCII case and only so: punctuation one bit apart, other lengths
    /// and non-ASCII letters stay different.
    @Test(arguments: [
        ("Content-Type", "content-type", true), ("X-A", "x-a", true), ("X-[", "x-{", false), ("a@", "a`", false),
        ("Idempotency-Key", "Idempotency-Ke", false), ("Ä", "ä", false), ("", "", true), ("x_y", "X_Y", true),
    ])
    func headerNamesCompareWithoutASCIICase(_ a: String, _ b: String, _ same: Bool) {
        #expect(HeaderFields.sameName(a, b) == same)
    }

    @Test func secretsNeverPrint() {
        let key = "sk_" + "live_" + String(repeating: "Ab3", count: 8)
        let secret = Secret(key)
        #expect(!"\(secret)".contains(key))
        #expect("\(secret)" == "sk_live_REDACTED")
        let headers: HeaderFields = ["Authorization": "Bearer \(key)", "Stripe-Version": "v"]
        #expect(!headers.description.contains(key))
        #expect(headers.description.contains("Bearer sk_live_REDACTED"))
        // Reflection too: dump and debuggers walk stored properties unless told otherwise.
        var dumped = ""
        dump(secret, to: &dumped)
        dump(headers, to: &dumped)
        dump(
            HTTPRequest(method: .post, url: "https://api.stripe.com/v1/billing/meter_events", headers: headers),
            to: &dumped)
        #expect(!dumped.contains(key) && !String(reflecting: headers).contains(key))
        #expect(dumped.contains("Stripe-Version"))
        let encoded = String(decoding: try! JSONEncoder().encode(secret), as: UTF8.self)
        #expect(!encoded.contains(key))
    }

    @Test func errorCodesHaveLabelSafeDescriptions() {
        let error = UsageBillingError(.transport, "reset", fix: "retry", mayHaveReachedServer: true)
        #expect(error.shortDescription == "transport")
        #expect(error.code == .transport && error.code != .timeout)
        #expect(error.description.contains("Fix: retry"))
        #expect(DeliveryOutcome.forTransportFailure(error) == .possiblyDelivered)
        #expect(
            DeliveryOutcome.forTransportFailure(UsageBillingError(.transport, "refused"))
                == .retryable(RetryableReason(.transport, message: "refused"), retryAfter: nil))
        #expect(DeliveryOutcome.forTransportFailure(UsageBillingError(.configuration, "bad key")) == nil)
    }
}

@Suite("RFC 3339")
struct RFC3339Tests {
    /// The hand-written formatter and parser agree with Foundation over a wide range of instants.
    @Test func agreesWithFoundation() throws {
        var rng = SeededGenerator(seed: 11)
        let foundation = Date.ISO8601FormatStyle(timeZone: .gmt)
        for _ in 0..<2_000 {
            // Whole seconds plus an exact millisecond count, so the expected text is known exactly.
            let seconds = Int64.random(in: -2_000_000_000...7_000_000_000, using: &rng)
            let millis = Int64.random(in: 0...999, using: &rng)
            let whole = Date(timeIntervalSince1970: Double(seconds))
            // inside its millisecond
            let date = Date(timeIntervalSince1970: Double(seconds) + Double(millis) / 1000 + 0.0004)
            let expectedWhole = whole.formatted(foundation)
            #expect(RFC3339.format(whole) == expectedWhole)
            #expect(
                RFC3339.format(date, fractional: true) == String(expectedWhole.dropLast())
                    + String(format: ".%03dZ", millis))
            #expect(RFC3339.parse(expectedWhole) == whole)
            let back = try #require(RFC3339.parse(RFC3339.format(date, fractional: true)))
            #expect(abs(back.timeIntervalSince1970 - date.timeIntervalSince1970) < 0.001)
        }
    }

    /// Years RFC 3339 cannot write in four digits come out whole rather than cut short.
    @Test func yearsOutsideFourDigitsAreWrittenWhole() {
        #expect(RFC3339.format(Date(timeIntervalSince1970: 253_402_300_800)) == "10000-01-01T00:00:00Z")
        #expect(
            RFC3339.format(Date(timeIntervalSince1970: 253_402_300_799.5), fractional: true)
                == "9999-12-31T23:59:59.500Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -62_135_596_801)) == "0000-12-31T23:59:59Z")
        #expect(RFC3339.format(Date(timeIntervalSince1970: -62_198_755_200)) == "-0001-01-01T00:00:00Z")
    }

    @Test func parsesOffsetsAndRejectsNonsense() {
        #expect(
            RFC3339.parse("2026-11-25T13:03:00+01:00")?.timeIntervalSince1970
                == RFC3339.parse("2026-11-25T12:03:00Z")?.timeIntervalSince1970)
        #expect(RFC3339.parse("2026-02-29T00:00:00Z") == nil)
        #expect(RFC3339.parse("2024-02-29T00:00:00Z") != nil)
        #expect(RFC3339.parse("2026-13-01T00:00:00Z") == nil)
        #expect(RFC3339.parse("2026-11-25 12:03:00Z") == nil)
        #expect(RFC3339.parse("yesterday") == nil)
        #expect(RFC3339.parse("2026-11-25T12:03:00.5Z")?.timeIntervalSince1970 == 1_795_608_180.5)
    }
}

@Suite("JSONValue")
struct JSONValueTests {
    @Test func encodingRoundTripsAndIsCanonical() throws {
        let value: JSONValue = .object([
            "b": .array([.number(1), .number(0.1), .number(-2.5e-7), .number(1e21), .bool(true), .null]),
            "a": .string("quote \" backslash \\ slash / newline \n tab \t bell \u{07} é 🚀"),
            "c": .object(["z": .string(""), "y": .number(9_007_199_254_740_991)]),
        ])
        let data = value.encoded()
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.hasPrefix(#"{"a":"quote \" backslash \\ slash / newline \n tab \t bell \u0007 é 🚀","b":[1,0.1,"#))
        #expect(try JSONDecoder().decode(JSONValue.self, from: data) == value)
        #expect(try JSONSerialization.jsonObject(with: data) is [String: Any])
        #expect(JSONValue.number(.nan).encoded() == Data("null".utf8))
    }

    /// Keys come out in UTF-8 byte order: a prefix before its extensions, upper case before lower,
    /// multi-byte characters after ASCII, long (heap) keys as small (inline) ones.
    @Test func keysAreInUTF8ByteOrder() {
        let keys = [
            "", "B", "a", "ab", "abc", "b", "z", "é", "顧客", String(repeating: "k", count: 40),
            String(repeating: "k", count: 41),
        ]
        let value = JSONValue.object(Dictionary(uniqueKeysWithValues: keys.shuffled().map { ($0, JSONValue.null) }))
        let expected = keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        let body = expected.map { "\"\($0)\":null" }.joined(separator: ",")
        #expect(String(decoding: value.encoded(), as: UTF8.self) == "{\(body)}")
    }

    /// Objects written member by member are byte for byte the dictionary's canonical form, with
    /// the members in order, out of order, or with a key given twice (the last one counts).
    @Test(arguments: [
        [("a", "1"), ("b", "2"), ("é", "3")],
        [("time", "t"), ("id", "x"), ("data", "d"), ("subject", "s")],
        [("k", "first"), ("a", "a"), ("k", "last")],
        [],
    ])
    func objectsWrittenByMemberMatchTheDictionary(members: [(String, String)]) {
        let written = JSONValue.encodeObject(members.map { (key: $0.0, value: JSONValue.string($0.1)) })
        let dictionary = JSONValue.object(
            Dictionary(members.map { ($0.0, JSONValue.string($0.1)) }, uniquingKeysWith: { $1 }))
        #expect(written.data == dictionary.encoded())
        let array = JSONValue.encodeArray([written, written])
        #expect(array == JSONValue.array([dictionary, dictionary]).encoded())
        #expect(
            JSONValue.encodeObject(key: "events", array: [written])
                == JSONValue.object(["events": .array([dictionary])]).encoded())
        #expect(JSONValue.encodeObject(key: "events", array: []) == Data(#"{"events":[]}"#.utf8))
    }
}

@Suite("JSON parser")
struct JSONParserTests {
    /// The old reading (JSONDecoder over JSONValue), kept here as the reference.
    static func reference(_ data: Data) -> JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: data) }

    /// Every fixture and spec file of the repository parses to the same value as JSONDecoder's.
    @Test func agreesWithJSONDecoderOnEveryFixture() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var checked = 0
        for folder in ["Providers", "Benchmarks/results"] {
            guard
                let e = FileManager.default.enumerator(
                    at: root.appending(path: folder), includingPropertiesForKeys: nil)
            else { continue }
            for case let url as URL in e where url.pathExtension == "json" {
                let data = try Data(contentsOf: url)
                #expect(JSONValue.parse(data) == Self.reference(data), "\(url.lastPathComponent)")
                checked += 1
            }
        }
        #expect(checked > 100)
    }

    @Test(arguments: [
        #"{"a":[1,-2.5,3e2,0.0001,-0,true,false,null],"b":{"c":"d\u00e9\ud83d\ude00\n\t\"\\\/"},"":""}"#,
        #"  [ ]  "#, #"{}"#, #""plain""#, "123", "-0.5E-3", #"["é", "顧客"]"#, #"{"dup":1,"dup":2}"#,
    ])
    func parsesValidJSON(_ text: String) {
        let data = Data(text.utf8)
        #expect(JSONValue.parse(data) != nil)
        #expect(JSONValue.parse(data) == Self.reference(data))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "+1", "1e", "tru", "nul", "\"unterminated",
        "\"bad \\x escape\"",
        "\"\\ud800\"", "\"\\udc00\"", "[1] [2]", "{\"a\" 1}", "\"tab\there\"", "1e999", "NaN", "{'a':1}",
    ])
    func rejectsInvalidJSON(_ text: String) {
        #expect(JSONValue.parse(Data(text.utf8)) == nil, "\(text)")
    }

    @Test func invalidUTF8IsRefused() {
        #expect(JSONValue.parse(Data([0x22, 0xFF, 0x22])) == nil)
        #expect(JSONValue.parse(Data([0x22, 0xC3, 0x22])) == nil, "a truncated sequence")
        #expect(JSONValue.parse(Data([0x22, 0xC3, 0xA9, 0x22])) == .string("é"))
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(JSONValue.parse(Data(deep.utf8)) == nil)
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(JSONValue.parse(Data(fine.utf8)) != nil)
    }

    @Test func roundTripsThroughTheSerializer() {
        let value: JSONValue = .object([
            "s": .string("a\"b\\c\u{1}é😀"), "n": .number(12.5), "a": .array([.null, .bool(true), .number(-3)]),
            "o": .object([:]),
        ])
        #expect(JSONValue.parse(value.encoded()) == value)
    }
}

@Suite("Decimal text")
struct DecimalTextTests {
    static let posix = Locale(identifier: "en_US_POSIX")

    /// The fast paths give what Foundation gives.
    @Test(arguments: [
        "0", "-0", "7", "150", "-42", "999999999999999999", "9223372036854775807", "-9223372036854775808",
        "12345678901234567890123",
        "0.1", "-0.25", "1.50", "1e3", "2.5E-3", "+5", "", "abc", "1.2.3", "NaN", " 1", "00012",
    ])
    func parseAgreesWithFoundation(_ text: String) {
        let reference = Decimal(string: text, locale: Self.posix).flatMap { $0.isNaN ? nil : $0 }
        #expect(DecimalFormat.parse(text) == reference, "\(text)")
    }

    /// A typed value is the whole text or nothing.
    @Test(
        arguments: [
            ("150", "150"), ("-0.25", "-0.25"), ("1e3", "1000"), ("2.5E-3", "0.0025"), (".5", "0.5"), ("3x", nil),
            ("1.2.3", nil), (" 1", nil), ("+5", nil), ("", nil), ("-", nil), ("1e", nil), ("e3", nil), ("NaN", nil),
        ] as [(String, String?)])
    func parseExactlyTakesOnlyAWholeNumber(_ text: String, _ expected: String?) {
        #expect(
            DecimalFormat.parseExactly(text) == expected.flatMap { Decimal(string: $0, locale: Self.posix) }, "\(text)")
    }

    @Test(arguments: [
        "0", "7", "-42", "9223372036854775807", "-9223372036854775808", "12345678901234567890123", "0.1", "-0.25",
        "1.5", "0.000001", "100000000000000000000",
    ])
    func plainAgreesWithFoundation(_ text: String) throws {
        var value = try #require(Decimal(string: text, locale: Self.posix))
        let reference = NSDecimalString(&value, Self.posix)
        #expect(DecimalFormat.plain(value) == reference, "\(text)")
        #expect(DecimalFormat.parse(DecimalFormat.plain(value)) == value)
    }

    @Test func exactDoubleAndInt() {
        #expect(DecimalFormat.exactInt64(Decimal(150)) == 150)
        #expect(DecimalFormat.exactInt64(Decimal(string: "1.5") ?? 0) == nil)
        #expect(DecimalFormat.exactInt64(Decimal(string: "12345678901234567890123") ?? 0) == nil)
        #expect(DecimalFormat.exactDouble(Decimal(150)) == 150)
        #expect(DecimalFormat.exactDouble(Decimal(string: "0.1") ?? 0) == 0.1)
        #expect(DecimalFormat.exactDouble(Decimal(string: "0.12345678901234567890123") ?? 0) == nil)
        #expect(Decimal(reported: 35.5) == Decimal(string: "35.5"))
        #expect(Decimal(reported: 120) == 120)
    }
}

@Suite("Header names")
struct HeaderNameTests {
    @Test func caseInsensitiveInASCIIOnly() {
        var h: HeaderFields = ["Content-Type": "application/json", "X-[a]": "1"]
        #expect(h["content-type"] == "application/json" && h["CONTENT-TYPE"] == "application/json")
        #expect(h["X-{A}"] == nil, "[ and { differ by the same bit as letters do, but are not letters")
        #expect(h["x-[A]"] == "1")
        #expect(h["Content-Typ"] == nil && h["Content-Types"] == nil)
        h["CONTENT-type"] = "text/plain"
        #expect(h.values(for: "content-type") == ["text/plain"])
    }
}
