import Foundation

/// Atomic publication (ARCHITECTURE D4): write under a temporary name in the same folder,
/// fsync, rename over the final name, fsync the folder.
public enum AtomicFile {
    /// Writes `bytes` to `path` atomically with `mode`.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let dir = PathName.parent(path)
        let base = PathName.name(path)
        let tmp = (dir.isEmpty ? "." : dir) + "/.\(base).\(getpid()).tmp"
        // O_NONBLOCK: a FIFO planted under the temporary name fails (ENXIO) instead of
        // blocking the writer (the recorder writes its markers this way).
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, mode)
        guard fd >= 0 else { throw POSIXFailure(operation: "create \(tmp)", code: errno) }
        fchmod(fd, mode) // the mode asked for, whatever the umask
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            try bytes.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = writeSome(fd, raw, from: off)
                    if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "write \(tmp)", code: errno) }
                    off += n
                }
            }
            guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync \(tmp)", code: errno) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw POSIXFailure(operation: "rename \(tmp) to \(path)", code: errno) }
        ok = true
        try syncDirectory(dir.isEmpty ? "." : dir)
    }

    /// fsyncs a folder so that a rename or create in it is durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFailure(operation: "open folder \(path)", code: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync folder \(path)", code: errno) }
    }

    /// Creates a folder and its parents with `mode` (umask still applies).
    public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw POSIXFailure(operation: "create folder \(path)", code: EEXIST) }
            return
        }
        let parent = PathName.parent(path)
        if !parent.isEmpty && parent != path { try makeDirectory(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw POSIXFailure(operation: "create folder \(path)", code: errno) }
    }
}

/// Sets the process umask to 0077 (D2: files are created private). Call once at start.
public func setPrivateUmask() { umask(0o077) }

/// `write(2)` of `raw[offset...]`: the bytes written, or -1 with `errno` set (0 when
/// nothing is left).
public func writeSome(_ fd: Int32, _ raw: UnsafeRawBufferPointer, from offset: Int) -> Int {
    guard let base = raw.baseAddress, offset < raw.count else { return 0 }
    return write(fd, base + offset, raw.count - offset)
}

/// Overwrites `bytes` with zeros in a way the optimizer may not drop (key material).
public func zeroize(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { raw in
        if let base = raw.baseAddress { explicit_bzero(base, raw.count) }
    }
}
