import CLinux
import Foundation
import ToscaCore

/// Byte copies with fsync.
public enum FileCopy {
    /// Copies `source` to a new file `destination` (never over an existing one), fsynced.
    public static func copy(from source: String, to destination: String) throws {
        let inFD = open(source, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw POSIXFailure(operation: "open \(source)", code: errno) }
        defer { close(inFD) }
        let outFD = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard outFD >= 0 else { throw POSIXFailure(operation: "create \(destination)", code: errno) }
        var ok = false
        defer {
            close(outFD)
            if !ok { unlink(destination) }
        }
        // copy_file_range(2): the kernel copies without our buffers (what cp does). Where it
        // is refused (another filesystem on an old kernel, a special file), read and write.
        var copied: Int64 = 0
        while true {
            let n = tosca_copy_file_range(inFD, outFD, 1 << 30)
            if n > 0 { copied += Int64(n); continue }
            if n == 0 { guard fsync(outFD) == 0 else { throw POSIXFailure(operation: "fsync \(destination)", code: errno) }; ok = true; return }
            if errno == EINTR { continue }
            // Nothing copied yet and the call is refused: the plain loop below does it all.
            guard copied == 0, [EXDEV, ENOSYS, EINVAL, EOPNOTSUPP, EBADF].contains(errno) else {
                throw POSIXFailure(operation: errno == ENOSPC || errno == EDQUOT || errno == EFBIG ? "write \(destination)" : "copy \(source)", code: errno)
            }
            break
        }
        var buf = [UInt8](repeating: 0, count: 4 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { read(inFD, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(source)", code: errno) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { writeSome(outFD, UnsafeRawBufferPointer(rebasing: $0[..<n]), from: off) }
                if w < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "write \(destination)", code: errno) }
                off += w
            }
        }
        guard fsync(outFD) == 0 else { throw POSIXFailure(operation: "fsync \(destination)", code: errno) }
        ok = true
    }
}

/// The canonical absolute path (symlinks resolved), or the path itself when it does not exist.
public func realPath(_ p: String) -> String {
    guard let r = realpath(p, nil) else { return p }
    defer { free(r) }
    return String(cString: r)
}
