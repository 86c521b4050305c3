import Foundation

/// An exclusive `flock(2)` on a file (ARCHITECTURE D5). The kernel releases it when the
/// process dies, so a held lock always means a live holder. Non-blocking: a held lock is
/// reported at once as ``FileLockError/held(path:holder:)``.
public final class FileLock: @unchecked Sendable {
    public let path: String
    private var fd: Int32

    /// Takes the lock, creating the file (mode 0600) when needed, and writes this
    /// process's pid into it for diagnostics.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw FileLockError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            let holder = Self.readHolder(fd: fd)
            close(fd)
            if e == EWOULDBLOCK || e == EAGAIN { throw FileLockError.held(path: path, holder: holder) }
            throw FileLockError.cannotOpen(path: path, reason: String(cString: strerror(e)))
        }
        self.fd = fd
        ftruncate(fd, 0)
        let text = Array("\(getpid())\n".utf8)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    private static func readHolder(fd: Int32) -> String? {
        var buf = [UInt8](repeating: 0, count: 32)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 32, 0) }
        guard n > 0 else { return nil }
        let s = String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? nil : s
    }

    /// Whether some process holds a `flock` on `path`, found without touching the lock
    /// (taking it even for an instant could make a recorder that starts at that moment give
    /// up): from `/proc/locks`; where that is hidden (a unit with `ProcSubset=pid`), from
    /// the holder's pid written in the file, alive or not (`kill(pid, 0)`). `false` when
    /// the file cannot be read.
    /// `byOthers`: a lock this process holds does not count (a restore or the cutover
    /// holds `tosca.lock` itself while it copies the database).
    public static func isHeld(path: String, procLocks: String = "/proc/locks", byOthers: Bool = false) -> Bool {
        let me = getpid()
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        guard let text = try? String(contentsOfFile: procLocks, encoding: .utf8) else {
            guard let data = FileManager.default.contents(atPath: path),
                  let pid = Int32(String(decoding: data.prefix(32), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else { return false }
            if byOthers && pid == me { return false }
            return kill(pid, 0) == 0 || errno == EPERM
        }
        // "1: FLOCK  ADVISORY  WRITE 1234 fe:01:5678 0 EOF": device as hex major:minor.
        // glibc's major(3)/minor(3), macros Swift does not see.
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        let id = String(format: "%02llx:%02llx:%llu", major, minor, UInt64(st.st_ino))
        return text.split(separator: "\n").contains { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            return f.count >= 6 && f[1] == "FLOCK" && f[5] == Substring(id) && !(byOthers && f[4] == Substring(String(me)))
        }
    }

    /// Releases the lock (also done when the object is released).
    public func unlock() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { unlock() }
}

public enum FileLockError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Another live process holds it (exit 75).
    case held(path: String, holder: String?)
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .held(let p, let h): return "\(p) is held by another process\(h.map { " (pid \($0))" } ?? ""): retry when it has finished"
        case .cannotOpen(let p, let r): return "cannot open lock \(p): \(r)"
        }
    }
}
