import Foundation
import Testing
import TestSupport
@testable import ToscaBundle

/// The age v1 writer and reader against the stock `age` CLI (Debian's age 1.1.1), both ways.
@Suite struct AgeTests {
    func keypair(_ dir: TempDir) throws -> (identityFile: String, recipient: String) {
        let pair = try ageKeypair(in: dir)
        return (pair.identity, pair.recipient)
    }

    /// Empty, one byte, exactly one chunk, one chunk and a byte, several chunks.
    static let sizes = [0, 1, 65_536, 65_537, 200_000]

    @Test func ageReadsWhatWeWrite() throws {
        let dir = TempDir()
        let (identityFile, recipientText) = try keypair(dir)
        let recipient = try Age.Recipient(recipientText)
        #expect(recipient.text == recipientText)
        // Our parse of age-keygen's identity gives the same recipient.
        let ids = try Age.identities(file: identityFile)
        #expect(ids.first?.recipient.text == recipientText)
        for size in Self.sizes {
            let plain = (0..<size).map { _ in UInt8.random(in: 0...255) }
            var sealed: [UInt8] = []
            let w = try Age.Writer(recipients: [recipient, Age.Identity().recipient]) { sealed += $0 }
            try plain.withUnsafeBytes { raw in
                // In uneven pieces, as libarchive hands them over.
                var off = 0
                while off < raw.count {
                    let n = min(7_000, raw.count - off)
                    try w.write(UnsafeRawBufferPointer(rebasing: raw[off..<(off + n)]))
                    off += n
                }
            }
            try w.close()
            let enc = dir.sub("ours-\(size).age")
            FileManager.default.createFile(atPath: enc, contents: Data(sealed))
            let d = try run(try #require(which("age")), ["-d", "-i", identityFile, "-o", dir.sub("plain-\(size)"), enc])
            #expect(d.status == 0, "\(size): \(d.output)")
            if size == 0 {
                // age writes its output file lazily: an empty payload leaves none (or an empty one).
                #expect(((try? Data(contentsOf: URL(fileURLWithPath: dir.sub("plain-0")))) ?? Data()).isEmpty)
            } else {
                #expect(fileSHA256(dir.sub("plain-\(size)")) == sha(plain), "\(size)")
            }
        }
    }

    @Test func weReadWhatAgeWrites() throws {
        let dir = TempDir()
        let (identityFile, recipientText) = try keypair(dir)
        let ids = try Age.identities(file: identityFile)
        for size in Self.sizes {
            let plain = (0..<size).map { _ in UInt8.random(in: 0...255) }
            FileManager.default.createFile(atPath: dir.sub("in-\(size)"), contents: Data(plain))
            let e = try run(try #require(which("age")), ["-r", recipientText, "-r", Age.Identity().recipient.text, "-o", dir.sub("in-\(size).age"), dir.sub("in-\(size)")])
            #expect(e.status == 0, "\(e.output)")
            var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: dir.sub("in-\(size).age"))))
            let reader = try Age.Reader(identities: ids) {
                let n = min(5_000, bytes.count)
                defer { bytes.removeFirst(n) }
                return Array(bytes[0..<n])
            }
            var got: [UInt8] = []
            while let chunk = try reader.next() { got += chunk }
            #expect(got == plain, "\(size)")
        }
        // A flipped byte in the payload, a truncated file, the wrong identity: each refused.
        let good = Array(try Data(contentsOf: URL(fileURLWithPath: dir.sub("in-200000.age"))))
        for (label, bad, who) in [("flip", { var b = good; b[b.count - 100] ^= 1; return b }(), ids),
                                  ("truncated", Array(good.dropLast(70_000)), ids),
                                  ("wrong identity", good, [Age.Identity()])] {
            var bytes = bad
            let attempt = Result {
                let reader = try Age.Reader(identities: who) {
                    let n = min(5_000, bytes.count)
                    defer { bytes.removeFirst(n) }
                    return Array(bytes[0..<n])
                }
                while try reader.next() != nil {}
            }
            if case .success = attempt { Issue.record("\(label) was accepted") }
        }
    }

    /// A low-order recipient key (all zeros) gives a secret anyone can compute: refused.
    @Test func aLowOrderRecipientIsRefused() throws {
        let zero = Age.Recipient(publicKey: [UInt8](repeating: 0, count: 32))
        #expect(throws: Age.Failure.self) { _ = try Age.Writer(recipients: [zero]) { _ in } }
    }

    /// Headers the spec says to reject: no stanza, a malformed X25519 stanza, a
    /// non-canonical base64 body, an empty argument.
    @Test func malformedHeadersAreRefused() throws {
        let id = Age.Identity()
        var good: [UInt8] = []
        let w = try Age.Writer(recipients: [id.recipient]) { good += $0 }
        try w.close()
        var text = String(decoding: good.prefix { $0 != 0 }, as: UTF8.self)
        text = String(text[..<(text.range(of: "\n--- ")?.upperBound ?? text.endIndex)])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let stanza = lines[1], body = lines[2]
        // The same bytes with a stray low bit in the last character (32 bytes leave 2
        // unused bits in it): non-canonical base64.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        let last = try #require(body.last.flatMap { alphabet.firstIndex(of: $0) })
        let bumped = body.dropLast() + String(alphabet[last ^ 1])
        #expect(Age.unb64(String(bumped)) == nil && Age.unb64(body) != nil)
        let cases: [(String, String)] = [
            ("no stanza", "age-encryption.org/v1\n--- AAAA\n"),
            ("short X25519", "age-encryption.org/v1\n-> X25519\n\(body)\n--- AAAA\n"),
            ("empty argument", "age-encryption.org/v1\n\(stanza.replacingOccurrences(of: "X25519 ", with: "X25519  "))\n\(body)\n--- AAAA\n"),
            ("non-canonical body", "age-encryption.org/v1\n\(stanza)\n\(bumped)\n--- AAAA\n"),
        ]
        for (label, header) in cases {
            var bytes = Array(header.utf8) + [UInt8](repeating: 0, count: 64)
            let result = Result {
                let r = try Age.Reader(identities: [id]) { defer { bytes = [] }; return bytes }
                _ = try r.next()
            }
            if case .success = result { Issue.record("\(label) was accepted") }
        }
    }

    func sha(_ b: [UInt8]) -> String {
        let f = TempDir()
        FileManager.default.createFile(atPath: f.sub("x"), contents: Data(b))
        return fileSHA256(f.sub("x"))
    }
}

/// The bundle writer's own guards, driven in-process: a file that grows or changes between
/// the scan and the write stops the bundle.
@Suite struct BundleWriterGuardTests {
    @Test func aFileThatChangesAfterTheScanStopsTheBundle() throws {
        let dir = TempDir()
        let folder = dir.sub("session")
        try FileManager.default.createDirectory(atPath: folder + "/streams", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: folder + "/streams/a.jsonl", contents: Data("{\"t\":1}\n".utf8))
        FileManager.default.createFile(atPath: folder + "/session.json", contents: Data("{}".utf8))
        for change in ["grow", "same size"] {
            let (folders, files) = try SessionBundle.scan(folder: folder)
            let manifest = BundleManifest(sessionID: 1, startTime: "t", endTime: nil, folders: folders,
                                          files: files.map { .init(path: $0.path, size: $0.size, sha256: $0.sha256) })
            let h = try #require(FileHandle(forWritingAtPath: folder + "/streams/a.jsonl"))
            if change == "grow" { h.seekToEndOfFile(); h.write(Data("{\"t\":2}\n".utf8)) } else { h.write(Data("{".utf8)); h.write(Data("\"u\":1}\n".utf8)) }
            try h.close()
            let out = open(dir.sub("out-\(change)"), O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            defer { close(out) }
            do {
                try SessionBundle.write(folder: folder, manifest: manifest, scanned: files, manifestTime: 0, level: 3, to: out)
                Issue.record("\(change): a file changed after the scan was bundled")
            } catch let e as BundleError {
                guard case .source(let path, let reason) = e else { Issue.record("\(change): \(e)"); continue }
                #expect(path.hasSuffix("streams/a.jsonl") && (reason.contains("grew") || reason.contains("changed")), "\(change): \(e)")
            }
        }
    }
}
