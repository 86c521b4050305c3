import Foundation

/// Runs work on a thread of its own and hands its result back on ``wait()``.
///
/// Not a libdispatch worker: those set their priority from a QoS class, and under the units'
/// `Nice=19` raising it fails and libdispatch logs "Failed to set thread priority" to the
/// journal on every run. A plain thread inherits the process's nice value and stays quiet.
public final class OwnThread<T>: @unchecked Sendable {
    private var result: Result<T, any Error>?
    private let done = DispatchSemaphore(value: 0)

    public init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Waits for the work to end; rethrows its error.
    public func wait() throws -> T {
        done.wait()
        guard let result else { throw OwnThreadError.noResult }
        return try result.get()
    }
}

/// A thread that ended without setting its result (cannot happen: the body always does).
enum OwnThreadError: Error { case noResult }
