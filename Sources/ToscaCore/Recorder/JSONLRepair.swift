import Crypto
import Foundation

/// Crash repair of JSONL stream files.
public enum JSONLRepair {
    public struct Result: Sendable {
        /// Bytes removed after the last complete line.
        public let bytesCut: Int
        /// Complete lines kept.
        public let lines: Int
        /// Bytes kept.
        public let bytes: Int
        /// SHA-256 of the kept bytes.
        public let sha256: String
        /// Field names of the first line, in order, without `t`.
        public let fields: [String]
    }

    /// Cuts everything after the last newline of `path` (a line torn by a crash: the
    /// writer only ever appends whole lines, so only the tail can be torn), fsyncs, and
    /// returns what the file now holds. With `dryRun` nothing is cut: the result says what
    /// would be (so the cut can be recorded before it is made).
    public static func cutTornTail(path: String, dryRun: Bool = false) throws -> Result {
        let fd = open(path, (dryRun ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw POSIXFailure(operation: "open \(path)", code: errno) }
        defer { close(fd) }
        var hasher = SHA256()
        var lines = 0
        var lastNewlineEnd = 0
        var total = 0
        var firstLine: [UInt8] = []
        var firstDone = false
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(path)", code: errno) }
            if n == 0 { break }
            for i in 0..<n where chunk[i] == 10 {
                lines += 1
                lastNewlineEnd = total + i + 1
            }
            if !firstDone {
                if let nl = chunk[0..<n].firstIndex(of: 10) { firstLine += chunk[0..<nl]; firstDone = true } else { firstLine += chunk[0..<n] }
            }
            total += n
        }
        let cut = total - lastNewlineEnd
        if cut > 0 && !dryRun {
            guard ftruncate(fd, off_t(lastNewlineEnd)) == 0 else { throw POSIXFailure(operation: "truncate \(path)", code: errno) }
            guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync \(path)", code: errno) }
        }
        // Hash what is kept.
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw POSIXFailure(operation: "seek \(path)", code: errno) }
        var remaining = lastNewlineEnd
        while remaining > 0 {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, remaining)) }
            if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(path)", code: errno) }
            if n == 0 { break }
            chunk.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            remaining -= n
        }
        return Result(bytesCut: cut, lines: lines, bytes: lastNewlineEnd, sha256: hexString(hasher.finalize()),
                      fields: firstDone ? fieldNames(of: firstLine) : [])
    }

    /// Keys of one JSON object line in the order they appear, without `t`.
    static func fieldNames(of line: [UInt8]) -> [String] {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return [] }
        let text = String(decoding: line, as: UTF8.self)
        return obj.keys.filter { $0 != "t" }.sorted {
            (text.range(of: "\"\($0)\":")?.lowerBound ?? text.endIndex) < (text.range(of: "\"\($1)\":")?.lowerBound ?? text.endIndex)
        }
    }
}
