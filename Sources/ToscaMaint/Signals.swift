import Dispatch
import Foundation
import Synchronization

/// Turns SIGTERM and SIGINT into a flag that long-running loops poll, so they can stop
/// cleanly (end the session, commit, close) instead of dying mid-write.
public final class StopSignal: @unchecked Sendable {
    private let flag = Atomic<Int32>(0)
    private let lock = NSLock()
    private var sources: [any DispatchSourceSignal] = []

    public init() {}

    /// Installs the handlers; from now on the signals only set the flag.
    public func install(signals: [Int32] = [SIGTERM, SIGINT]) {
        for sig in signals {
            signal(sig, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            src.setEventHandler { self.flag.store(sig, ordering: .sequentiallyConsistent) }
            src.resume()
            lock.withLock { sources.append(src) }
        }
    }

    /// The signal received, or 0.
    public var received: Int32 { flag.load(ordering: .sequentiallyConsistent) }
    public var isSet: Bool { received != 0 }
}
