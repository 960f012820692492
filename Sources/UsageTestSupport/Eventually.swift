@_exported import LoopbackHTTP
/// Polls `condition` until it holds or `ceiling` passes, and says which: a test's way to wait for
/// something it cannot await (a lane catching up, a child process writing its log). The ceiling
/// guards against a hang and sits far above any expected wait, so a slow or loaded machine only
/// waits longer; it is never what the test measures.
public func eventually(
    within ceiling: Duration = .seconds(60), every interval: Duration = .milliseconds(10),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + ceiling
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: interval)
    }
}
