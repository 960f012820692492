import Foundation
import Testing
import UsageBilling

/// What the core gives every ingest door: form bodies as Stripe's SDKs send them, and CloudEvents.
@Suite("Ingest door parsing")
struct IngestDoorCoreTests {
    @Test func formBodiesDecodeAsStripesSDKsEncodeThem() throws {
        let pairs = try #require(
            FormEncoding.decodeStrict(
                Data("event_name=api+request&payload%5Bvalue%5D=5&e=%E2%82%AC&empty=&flag&&x=a%3Db".utf8)))
        #expect(pairs.map(\.0) == ["event_name", "payload[value]", "e", "empty", "flag", "x"])
        #expect(pairs.map(\.1) == ["api request", "5", "€", "", "", "a=b"])
        #expect(FormEncoding.decodeStrict(Data()).map(\.isEmpty) == true)
        for broken in ["a=%4", "a=%ZZ", "a=%FF", "%=1"] {
            #expect(FormEncoding.decodeStrict(Data(broken.utf8)) == nil, "\(broken) is refused")
        }
    }

    @Test func cloudEventsReadTheirQuantityAndRefuseNamingTheField() throws {
        let event = JSONValue.object([
            "specversion": .string("1.0"), "id": .string("e1"), "source": .string("app"),
            "type": .string("api_request"),
            "subject": .string("acme"), "time": .string("2026-12-07T12:03:00Z"),
            "data": .object(["tokens": .number(7), "model": .string("m")]),
        ])
        let read = try CloudEventDecoding.event(event, quantityProperty: "tokens").get()
        #expect(
            read.event.quantity == 7 && read.event.customer == "acme"
                && read.event.properties == ["model": .string("m")] && !read.missingQuantity)
        #expect(try CloudEventDecoding.event(event, quantityProperty: "value").get().missingQuantity)
        guard case .object(var bad) = event else { return }
        bad["subject"] = nil
        if case .failure(let problem) = CloudEventDecoding.event(.object(bad), quantityProperty: "tokens") {
            #expect(problem.field == "subject" && problem.id == "e1")
        } else {
            Issue.record("an event without a subject is refused")
        }
    }
}
