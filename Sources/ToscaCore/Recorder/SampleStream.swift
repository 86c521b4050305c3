import Crypto
import Foundation

/// One value of a sample field.
public enum SampleValue: Sendable, Equatable {
    case double(Double)
    case int(Int64)
    case bool(Bool)
    case string(String)
    case null
}

/// When a stream's buffered lines reach the disk. The recorder's background flusher also
/// applies the time limits to idle streams.
public struct StreamFlushPolicy: Sendable, Equatable {
    /// `write(2)` once this many bytes are buffered.
    public var bufferBytes = 64 * 1024
    /// ... or once the oldest buffered line is this old.
    public var writeIntervalNanoseconds: UInt64 = 250_000_000
    /// `fsync(2)` at least this often while lines arrive, and always at session end.
    public var syncIntervalNanoseconds: UInt64 = 1_000_000_000

    public init() {}

    /// "written every 64 KiB or 250 ms, fsynced every 1000 ms and at session end".
    public var summary: String {
        "written every \(bufferBytes / 1024) KiB or \(writeIntervalNanoseconds / 1_000_000) ms, fsynced every \(syncIntervalNanoseconds / 1_000_000) ms and at session end"
    }
}

/// What a closed stream holds, for `session.json`.
public struct StreamSummary: Sendable, Codable, Equatable {
    public let name: String
    public let file: String
    public let fields: [String]
    public let lines: Int
    public let bytes: Int
    public let sha256: String
}

/// A JSONL file of samples: one JSON object a line, `{"t":"<UTC ISO-8601>", field: value, ...}`.
///
/// Lines are built into a buffer by hand (no `JSONSerialization`: 100 Hz+ streams) and
/// written per ``StreamFlushPolicy``; the SHA-256 and line count are kept as bytes go out.
/// Thread-safe.
public final class SampleStream: @unchecked Sendable {
    public let name: String
    public let fields: [String]
    /// Path relative to the session folder.
    public let relativePath: String
    let path: String
    private let policy: StreamFlushPolicy
    private let lock = NSLock()
    private var fd: Int32
    private var buffer: [UInt8] = []
    private var fieldPrefixes: [[UInt8]]
    private var hasher = SHA256()
    private var lines = 0
    private var bytesOut = 0
    private var firstBufferedAt: UInt64 = 0
    private var lastSyncAt: UInt64
    private var unsynced = false
    private var cachedSecond: Int64 = .min
    private var cachedPrefix: [UInt8] = []
    private var closed = false

    /// Stream names: letters, digits, `_`, `-`, `.`; no leading dot.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && !name.hasPrefix(".") &&
            name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "_-.".unicodeScalars.contains($0) }
    }

    init(name: String, fields: [String], folder: String, policy: StreamFlushPolicy) throws {
        guard Self.isValidName(name) else { throw RecorderError.invalidArgument("stream name \(name.debugDescription)") }
        guard !fields.contains("t"), Set(fields).count == fields.count else {
            throw RecorderError.invalidArgument("stream fields must be distinct and not \"t\"")
        }
        self.name = name
        self.fields = fields
        self.policy = policy
        self.relativePath = "streams/\(name).jsonl"
        self.path = folder + "/" + relativePath
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXFailure(operation: "create \(path)", code: errno) }
        self.fd = fd
        self.fieldPrefixes = fields.map { Array(",".utf8) + Self.jsonString($0) + Array(":".utf8) }
        self.lastSyncAt = monotonicNanoseconds()
        buffer.reserveCapacity(policy.bufferBytes + 4096)
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Appends one sample; `values` pair with ``fields`` in order.
    public func append(time: UTCTime, _ values: [SampleValue]) throws {
        guard values.count == fields.count else {
            throw RecorderError.invalidArgument("stream \(name) takes \(fields.count) values, got \(values.count)")
        }
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { throw RecorderError.invalidArgument("stream \(name) is closed") }
        if buffer.isEmpty { firstBufferedAt = monotonicNanoseconds() }
        appendTimestamp(time)
        for i in 0..<values.count {
            buffer.append(contentsOf: fieldPrefixes[i])
            switch values[i] {
            case .double(let d):
                if d.isFinite { appendASCII(d.description) } else { appendASCII("null") }
            case .int(let v): appendASCII(String(v))
            case .bool(let b): appendASCII(b ? "true" : "false")
            case .string(let s): buffer.append(contentsOf: Self.jsonString(s))
            case .null: appendASCII("null")
            }
        }
        buffer.append(UInt8(ascii: "}"))
        buffer.append(UInt8(ascii: "\n"))
        lines += 1
        if buffer.count >= policy.bufferBytes {
            try writeBuffer()
            try syncIfDue(now: monotonicNanoseconds())
        }
    }

    private func appendASCII(_ s: String) {
        var s = s
        s.withUTF8 { buffer.append(contentsOf: $0) }
    }

    /// `{"t":"YYYY-MM-DDTHH:MM:SS.ffffffZ"`; the part up to the seconds is cached.
    private func appendTimestamp(_ t: UTCTime) {
        if t.seconds != cachedSecond {
            cachedSecond = t.seconds
            let iso = t.iso8601 // ...SS.ffffffZ
            cachedPrefix = Array("{\"t\":\"".utf8) + Array(iso.utf8.prefix(20)) // through "SS."
        }
        buffer.append(contentsOf: cachedPrefix)
        var us = Int(t.microseconds)
        var digits = (UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0), UInt8(0))
        digits.5 = UInt8(48 + us % 10); us /= 10
        digits.4 = UInt8(48 + us % 10); us /= 10
        digits.3 = UInt8(48 + us % 10); us /= 10
        digits.2 = UInt8(48 + us % 10); us /= 10
        digits.1 = UInt8(48 + us % 10); us /= 10
        digits.0 = UInt8(48 + us % 10)
        buffer.append(digits.0); buffer.append(digits.1); buffer.append(digits.2)
        buffer.append(digits.3); buffer.append(digits.4); buffer.append(digits.5)
        buffer.append(UInt8(ascii: "Z")); buffer.append(UInt8(ascii: "\""))
    }

    /// A JSON string literal, escaped per RFC 8259.
    static func jsonString(_ s: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [92, 34]
            case UInt8(ascii: "\\"): out += [92, 92]
            case 0x0A: out += [92, UInt8(ascii: "n")]
            case 0x0D: out += [92, UInt8(ascii: "r")]
            case 0x09: out += [92, UInt8(ascii: "t")]
            case 0..<0x20:
                out += Array("\\u00".utf8)
                out.append(Array("0123456789abcdef".utf8)[Int(b >> 4)])
                out.append(Array("0123456789abcdef".utf8)[Int(b & 0xF)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }

    private func writeBuffer() throws {
        guard !buffer.isEmpty else { return }
        var offset = 0
        var failure: Int32 = 0
        buffer.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = writeSome(fd, raw, from: offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                offset += n
            }
            // Account for exactly what reached the file, even when a write failed midway,
            // so a retry never writes those bytes twice and the hash matches the file.
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: raw[0..<offset]))
        }
        bytesOut += offset
        if offset > 0 { unsynced = true }
        if offset == buffer.count { buffer.removeAll(keepingCapacity: true) } else { buffer.removeFirst(offset) }
        if failure != 0 { throw POSIXFailure(operation: "write \(path)", code: failure) }
    }

    private func syncIfDue(now: UInt64) throws {
        if unsynced && now &- lastSyncAt >= policy.syncIntervalNanoseconds { try sync(now: now) }
    }

    private func sync(now: UInt64) throws {
        guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync \(path)", code: errno) }
        lastSyncAt = now
        unsynced = false
    }

    /// Applies the time limits of the policy (called by the background flusher).
    func flushIfDue() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        let now = monotonicNanoseconds()
        if !buffer.isEmpty && now &- firstBufferedAt >= policy.writeIntervalNanoseconds { try writeBuffer() }
        try syncIfDue(now: now)
    }

    /// Writes and fsyncs everything appended so far.
    public func flush() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        try writeBuffer()
        if unsynced { try sync(now: monotonicNanoseconds()) }
    }

    /// Flushes, fsyncs and closes; returns the line count and SHA-256.
    func close() throws -> StreamSummary {
        lock.lock()
        defer { lock.unlock() }
        if !closed {
            try writeBuffer()
            if unsynced { try sync(now: monotonicNanoseconds()) }
            Glibc.close(fd)
            fd = -1
            closed = true
        }
        return StreamSummary(name: name, file: relativePath, fields: fields, lines: lines, bytes: bytesOut,
                             sha256: hexString(hasher.finalize()))
    }
}
