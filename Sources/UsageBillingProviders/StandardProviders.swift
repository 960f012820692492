import ChargebeeUsage
import LagoDoor
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import PaddleUsage
import RecurlyUsage
import SegmentDoor
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
        PaddleUsageSink.kind,
    ])
}

/// The ingest APIs that `usage-billing serve` speaks (`serve.compat`): each provider's own,
/// declared in its provider's folder, and those of tools that are not destinations (Lago,
/// Segment), each in its `Doors/` folder. Adding one adds one line here.
public enum IngestDoors {
    public static let standard: [any IngestDoor] = [
        StripeDoor(),
        OrbDoor(),
        MetronomeDoor(),
        OpenMeterDoor(),
        ChargebeeDoor(),
        LagoDoor(),
        SegmentDoor(),
    ]
}
