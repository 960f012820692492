import Foundation
import ServiceLifecycle
import UsageBilling

/// The delivery worker as a swift-service-lifecycle `Service`: run it in a `ServiceGroup` with
/// SIGTERM as a graceful-shutdown signal, and on SIGTERM each lane finishes and marks the batch it
/// is delivering, then the service returns.
public struct DeliveryService: Service {
    /// The worker.
    public let worker: DeliveryWorker
    /// Return once nothing is queued.
    public let untilEmpty: Bool
    /// Emit aggregation windows with new events at once (see ``DeliveryWorker/run(untilEmpty:closeOpenWindows:)``).
    public let closeOpenWindows: Bool

    /// A service running `worker`.
    public init(worker: DeliveryWorker, untilEmpty: Bool = false, closeOpenWindows: Bool = false) {
        self.worker = worker
        self.untilEmpty = untilEmpty
        self.closeOpenWindows = closeOpenWindows
    }

    public func run() async throws {
        let worker = self.worker, untilEmpty = self.untilEmpty, closeOpenWindows = self.closeOpenWindows
        try await withGracefulShutdownHandler {
            try await worker.run(untilEmpty: untilEmpty, closeOpenWindows: closeOpenWindows)
        } onGracefulShutdown: {
            worker.stop()
        }
    }
}
