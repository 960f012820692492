import Foundation
import MetronomeUsage
import Testing
import UsageBilling
import UsageBillingTesting

/// A Stripe secret key authenticates the Metronome API, and during a Stripe→Metronome migration
/// the Stripe customer id stays the key as a Metronome ingest alias.
@Suite("Metronome with a Stripe secret key and ingest aliases")
struct MetronomeStripeKeyTests {
    static func settings(_ json: String) throws -> MetronomeSettings {
        try MetronomeSettings.decode(#require(JSONValue.parse(Data(json.utf8))))
    }

    @Test func aStripeSecretKeyIsTheBearerTokenAndPrintsMasked() throws {
        let settings = try Self.settings(#"{"secret_key": "sk_test_REDACTED_51Abc"}"#)
        try settings.validate()
        #expect(settings.credentialField == "secret_key")
        #expect(!"\(settings)".contains("51Abc"), "the key never prints")
        #expect(MetronomeSink.kind.secretKeys.contains("secret_key"))
    }

    @Test(arguments: [
        (#"{"secret_key": "rk_live_51Abc"}"#, "secret_key", "restricted"),
        (#"{"secret_key": "pk_test_51Abc"}"#, "secret_key", "sk_"),
        (#"{"secret_key": "sk_test_1", "api_key": "metronome_token"}"#, "secret_key", "both"),
        (#"{"endpoint": "https://api.metronome.com"}"#, "api_key", "credential"),
    ])
    func aWrongCredentialNamesItsKeyAndTheFix(_ json: String, _ field: String, _ says: String) throws {
        #expect {
            try Self.settings(json).validate()
        } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.field == field && e.message.contains(says) && e.fix?.isEmpty == false
                && !e.message.contains("51Abc")
        }
    }

    @Test func theReadBackLooksUpTheCustomerBehindAnIngestAlias() async throws {
        let client = try replay("Metronome", "customer_by_ingest_alias")
        let id = try await MetronomeClient(settings: MetronomeSettings(apiKey: "metronome_REDACTED"), client: client)
            .customerID(forAlias: "cus_StripeCustomer1")
        #expect(id == "0e5b8609-d901-4992-b394-c3c2e3f37b1c")
        #expect(client.failures.isEmpty && client.unconsumed.isEmpty)
    }

    @Test func anAliasNoCustomerHasIsNamedWithTheFix() async throws {
        let client = try replay("Metronome", "customer_by_unknown_ingest_alias")
        await #expect {
            _ = try await MetronomeClient(settings: MetronomeSettings(apiKey: "metronome_REDACTED"), client: client)
                .customerID(forAlias: "cus_Unknown")
        } throws: { error in
            guard let e = error as? UsageBillingError else { return false }
            return e.message.contains("cus_Unknown") && e.fix?.contains("ingest_aliases") == true
        }
    }

    @Test func aCustomerIDNeedsNoLookup() {
        #expect(MetronomeClient.isCustomerID("0e5b8609-d901-4992-b394-c3c2e3f37b1c"))
        #expect(!MetronomeClient.isCustomerID("cus_StripeCustomer1"))
    }
}
