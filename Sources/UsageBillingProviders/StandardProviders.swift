import ChargebeeUsage
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import PaddleUsage
import RecurlyUsage
import StripeUsage
import UsageBilling
import UsageRouting

extension ProviderRegistry {
    /// Every built-in provider kind. Adding a provider adds one line here.
    public static let standard = ProviderRegistry([
        StripeSink.kind,
        OrbSink.kind,
        MetronomeSink.kind,
        OpenMeterSink.kind,
        ChargebeeSink.kind,
        RecurlySink.kind,
        PaddleSink.kind,
    ])
}

/// The providers' own ingest APIs that `usage-billing serve` speaks (`serve.compat`), each
/// declared in its provider's folder. Adding one adds one line here.
public enum IngestDoors {
    public static let standard: [any IngestDoor] = [
        StripeDoor(),
        OrbDoor(),
        MetronomeDoor(),
    ]
}
