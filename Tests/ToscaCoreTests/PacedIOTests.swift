import Foundation
import Testing
import TestSupport
@testable import ToscaCore

/// The writer and reader bundles use to stay out of the recorder's way: whatever path they
/// take (direct I/O, or the page cache where a filesystem refuses it), the bytes on disk
/// are exactly the bytes given, and the sizes and digests are the stock tools'.
@Suite struct PacedIOTests {
    /// Odd-sized pieces (so the 1 MiB buffer fills across calls and the tail is not a
    /// multiple of 4096), with and without a preallocation larger than the output.
    static func write(_ path: String, expected: Int64, direct: Bool, seed: UInt64) throws -> [UInt8] {
        var rng = Xorshift(state: seed)
        var all: [UInt8] = []
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXFailure(operation: "create", code: errno) }
        defer { close(fd) }
        let w = PacedWriter(fd: fd, path: path, expectedBytes: expected, allowDirect: direct)
        for size in [1, 4095, 700_001, 1 << 20, 3, 2_500_000, 12_345] {
            let piece = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            all += piece
            try piece.withUnsafeBytes { try w.write($0) }
        }
        try w.finish()
        #expect(w.offset == Int64(all.count))
        #expect(fsync(fd) == 0)
        return all
    }

    @Test(arguments: [true, false])
    func writtenBytesAreExactlyTheBytesGiven(direct: Bool) throws {
        let dir = TempDir()
        for (i, expected) in [Int64(0), 64 << 20].enumerated() {
            let path = dir.sub("f\(i)")
            let bytes = try Self.write(path, expected: expected, direct: direct, seed: UInt64(i + 1))
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == Data(bytes))
            #expect(try stockSHA256(path) == sha256Hex(bytes))
            // The preallocation is trimmed: the file holds no blocks beyond its size.
            var st = stat()
            #expect(stat(path, &st) == 0)
            #expect(Int64(st.st_size) == Int64(bytes.count))
            #expect(Int64(st.st_blocks) * 512 < Int64(bytes.count) + (1 << 20), "\(st.st_blocks) blocks for \(bytes.count) bytes")
        }
    }

    @Test(arguments: [(true, true), (true, false), (false, false)])
    func theReaderGivesEveryByteAndTheStockDigest(gently: Bool, direct: Bool) throws {
        let dir = TempDir()
        for size in [0, 1, 4096, (1 << 20) + 17, 3 << 20] {
            let path = dir.sub("r\(size)")
            var rng = Xorshift(state: UInt64(size) + 7)
            let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let reader = try DiskReader(path: path, gently: gently, allowDirect: direct)
            var got: [UInt8] = []
            while let chunk = try reader.next() { got += chunk }
            #expect(got == bytes)
            let again = try DiskReader(path: path, gently: gently, allowDirect: direct)
            let (hex, total) = try again.digest()
            #expect(total == Int64(size))
            #expect(hex == (try stockSHA256(path)))
        }
    }
}

/// Test bytes: xorshift64*, seeded.
struct Xorshift {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 2685821657736338717
    }
}
