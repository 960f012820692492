import ChargebeeUsage
import MetronomeUsage
import OpenMeterUsage
import OrbUsage
import PaddleUsage
import RecurlyUsage
import StripeUsage
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
