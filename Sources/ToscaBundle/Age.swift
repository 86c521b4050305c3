import Crypto
import Foundation
import ToscaCore

/// The age v1 file format (age-encryption.org/v1), X25519 recipients only, written with
/// swift-crypto (D18): a header of recipient stanzas and an HMAC, then the payload in a
/// ChaCha20-Poly1305 STREAM of 64 KiB chunks. The stock `age` CLI reads what this writes
/// and the other way round; the format is a standard, not ours.
public enum Age {
    public static let intro = "age-encryption.org/v1"
    static let chunkSize = 64 * 1024

    /// An upper bound of the size of an age file of `plaintext` bytes to recipients: the
    /// header (generous for a handful of stanzas) and 16 bytes of tag per chunk.
    public static func sizeBound(plaintext: Int64) -> Int64 {
        64 << 10 + plaintext + (plaintext / Int64(chunkSize) + 1) * 16
    }

    public enum Failure: Error, CustomStringConvertible, Sendable, Equatable {
        case badRecipient(String)
        case badIdentity
        case badHeader(String)
        case noMatchingIdentity
        case badPayload(String)

        public var description: String {
            switch self {
            case .badRecipient(let r): return "not an age X25519 recipient: \(r.prefix(80))"
            case .badIdentity: return "not an age X25519 identity (AGE-SECRET-KEY-1...)"
            case .badHeader(let why): return "age header: \(why)"
            case .noMatchingIdentity: return "no identity given matches a recipient of this file"
            case .badPayload(let why): return "age payload: \(why)"
            }
        }
    }

    // MARK: - Keys

    /// An X25519 recipient: `age1...` (Bech32, HRP `age`).
    public struct Recipient: Sendable, Equatable {
        public let publicKey: [UInt8]
        public init(_ text: String) throws {
            guard let (hrp, data) = Bech32.decode(text.lowercased()), hrp == "age", data.count == 32, text == text.lowercased() else {
                throw Failure.badRecipient(text)
            }
            publicKey = data
        }
        public init(publicKey: [UInt8]) { self.publicKey = publicKey }
        public var text: String { Bech32.encode(hrp: "age", data: publicKey) }
        /// A short public fingerprint for sidecars and logs (never a key).
        public var fingerprint: String { String(sha256Hex(publicKey).prefix(16)) }
    }

    /// An X25519 identity: `AGE-SECRET-KEY-1...`.
    public struct Identity: Sendable {
        /// The secret scalar (held as bytes: swift-crypto's key type is not Sendable).
        let raw: [UInt8]
        var key: Curve25519.KeyAgreement.PrivateKey {
            // Checked at init: 32 bytes always make a key.
            (try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw)) ?? Curve25519.KeyAgreement.PrivateKey()
        }
        public init(_ text: String) throws {
            guard let (hrp, data) = Bech32.decode(text.lowercased()), hrp == "age-secret-key-", data.count == 32,
                  (try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: data)) != nil else { throw Failure.badIdentity }
            raw = data
        }
        public init() { raw = Array(Curve25519.KeyAgreement.PrivateKey().rawRepresentation) }
        public var recipient: Recipient { Recipient(publicKey: Array(key.publicKey.rawRepresentation)) }
        public var text: String { Bech32.encode(hrp: "age-secret-key-", data: Array(key.rawRepresentation)).uppercased() }
    }

    /// The recipients in a file: one `age1...` a line; `#` comments and blank lines skipped.
    public static func recipients(file path: String) throws -> [Recipient] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }.map(Recipient.init)
    }

    /// The identities in a file: `AGE-SECRET-KEY-1...` lines.
    public static func identities(file path: String) throws -> [Identity] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let ids = try text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }.map(Identity.init)
        guard !ids.isEmpty else { throw Failure.badIdentity }
        return ids
    }

    // MARK: - Primitives

    static func hkdf(_ ikm: [UInt8], salt: [UInt8], info: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: ikm), salt: salt, info: Array(info.utf8), outputByteCount: 32)
    }

    static func random(_ n: Int) -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// Unpadded standard base64, as age writes it.
    static func b64(_ bytes: [UInt8]) -> String {
        var s = Data(bytes).base64EncodedString()
        while s.hasSuffix("=") { s.removeLast() }
        return s
    }

    static func unb64(_ s: String) -> [UInt8]? {
        guard !s.contains("=") else { return nil } // age uses no padding
        var t = s
        while t.count % 4 != 0 { t += "=" }
        // Canonical only (no stray bits in the last character), as age requires.
        guard let bytes = Data(base64Encoded: t).map(Array.init), b64(bytes) == s else { return nil }
        return bytes
    }

    // MARK: - Header

    /// The header for `fileKey` wrapped to each recipient, MAC included.
    static func header(fileKey: [UInt8], recipients: [Recipient]) throws -> [UInt8] {
        var text = intro + "\n"
        for r in recipients {
            let ephemeral = Curve25519.KeyAgreement.PrivateKey()
            let share = Array(ephemeral.publicKey.rawRepresentation)
            let theirs = try Curve25519.KeyAgreement.PublicKey(rawRepresentation: r.publicKey)
            let shared = try ephemeral.sharedSecretFromKeyAgreement(with: theirs).withUnsafeBytes { Array($0) }
            // A low-order recipient key gives an all-zero secret anyone can compute: refused,
            // as age does (swift-crypto does not check it).
            guard shared.contains(where: { $0 != 0 }) else { throw Failure.badRecipient(r.text) }
            let wrapKey = hkdf(shared, salt: share + r.publicKey, info: "age-encryption.org/v1/X25519")
            let box = try ChaChaPoly.seal(fileKey, using: wrapKey, nonce: ChaChaPoly.Nonce(data: [UInt8](repeating: 0, count: 12)))
            text += "-> X25519 \(b64(share))\n\(b64(Array(box.ciphertext) + Array(box.tag)))\n"
        }
        text += "---"
        let mac = HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: hkdf(fileKey, salt: [], info: "header"))
        text += " \(b64(Array(mac)))\n"
        return Array(text.utf8)
    }

    /// Parses a header from the start of `bytes`; returns the file key (unwrapped with one
    /// of `identities`, or `fileKey` when the caller already holds it) and the header's
    /// length. Stanzas of other types are skipped, as the spec says.
    static func openHeader(_ bytes: [UInt8], identities: [Identity], fileKey known: [UInt8]? = nil) throws -> (fileKey: [UInt8], length: Int) {
        var lines: [(text: String, end: Int)] = []
        var start = 0
        while let nl = bytes[start...].firstIndex(of: 10) {
            let line = String(decoding: bytes[start..<nl], as: UTF8.self)
            lines.append((line, nl + 1))
            start = nl + 1
            if line.hasPrefix("---") { break }
            guard lines.count < 1000 else { throw Failure.badHeader("too long") }
        }
        guard let first = lines.first, first.text == intro else { throw Failure.badHeader("not an age v1 file") }
        guard let last = lines.last, last.text.hasPrefix("--- ") else { throw Failure.badHeader("no MAC line") }
        var stanzas: [(args: [String], body: [UInt8])] = []
        var i = 1
        while i < lines.count - 1 {
            let l = lines[i].text
            guard l.hasPrefix("-> ") else { throw Failure.badHeader("a stanza does not start with ->") }
            let args = l.dropFirst(3).split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard !args.isEmpty, !args.contains(where: \.isEmpty) else { throw Failure.badHeader("a stanza has an empty argument") }
            var body: [UInt8] = []
            var ended = false
            i += 1
            while i < lines.count - 1 {
                let b = lines[i].text
                guard let chunk = unb64(b), b.count <= 64 else { throw Failure.badHeader("a stanza body is not canonical base64") }
                body += chunk
                i += 1
                if b.count < 64 { ended = true; break }
            }
            // A body ends with a line shorter than 64 characters (an empty one after a full one).
            guard ended else { throw Failure.badHeader("a stanza body does not end with a short line") }
            stanzas.append((args, body))
        }
        guard !stanzas.isEmpty else { throw Failure.badHeader("no recipient stanza") }
        // A malformed X25519 stanza is an error, not a stanza to skip (the spec's MUST).
        for s in stanzas where s.args.first == "X25519" {
            guard s.args.count == 2, unb64(s.args[1])?.count == 32, s.body.count == 32 else { throw Failure.badHeader("a malformed X25519 stanza") }
        }
        let headerEnd = last.end
        let macText = Array(bytes[0..<(headerEnd - last.text.utf8.count - 1)]) + Array("---".utf8)
        guard let mac = unb64(String(last.text.dropFirst(4))), mac.count == 32 else { throw Failure.badHeader("bad MAC encoding") }
        var fileKey = known
        if fileKey == nil {
            outer: for s in stanzas where s.args.first == "X25519" && s.args.count == 2 && s.body.count == 32 {
                guard let share = unb64(s.args[1]), share.count == 32,
                      let sharePK = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: share) else { continue }
                for id in identities {
                    guard let shared = try? id.key.sharedSecretFromKeyAgreement(with: sharePK).withUnsafeBytes({ Array($0) }) else { continue }
                    guard shared.contains(where: { $0 != 0 }) else { throw Failure.badHeader("an X25519 share gives an all-zero secret") }
                    let ours = Array(id.key.publicKey.rawRepresentation)
                    let wrapKey = hkdf(shared, salt: share + ours, info: "age-encryption.org/v1/X25519")
                    if let box = try? ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(data: [UInt8](repeating: 0, count: 12)),
                                                          ciphertext: s.body.prefix(16), tag: s.body.suffix(16)),
                       let key = try? ChaChaPoly.open(box, using: wrapKey), key.count == 16 {
                        fileKey = Array(key)
                        break outer
                    }
                }
            }
        }
        guard let fileKey else { throw Failure.noMatchingIdentity }
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: macText, using: hkdf(fileKey, salt: [], info: "header")) else {
            throw Failure.badHeader("the header MAC does not verify (wrong key, or the header was changed)")
        }
        return (fileKey, headerEnd)
    }

    // MARK: - Payload

    /// Streams a payload out: 16-byte nonce, then 64 KiB chunks sealed with the STREAM
    /// nonce (11-byte big-endian counter, then 1 for the last chunk, else 0).
    public final class Writer {
        let key: SymmetricKey
        var counter: UInt64 = 0
        var pending: [UInt8] = []
        let out: ([UInt8]) throws -> Void
        /// The file key, kept so the writer of a bundle can read it back at publication.
        public let fileKey: [UInt8]

        /// Writes the header for `recipients` and the payload nonce through `out`.
        public init(recipients: [Recipient], out: @escaping ([UInt8]) throws -> Void) throws {
            precondition(!recipients.isEmpty, "at least one recipient")
            fileKey = Age.random(16)
            let nonce = Age.random(16)
            key = Age.hkdf(fileKey, salt: nonce, info: "payload")
            self.out = out
            try out(try Age.header(fileKey: fileKey, recipients: recipients) + nonce)
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            pending.append(contentsOf: bytes)
            // Keep at least one byte back: the last chunk is only known at close.
            var sealedUpTo = 0
            while pending.count - sealedUpTo > Age.chunkSize {
                try seal(pending[sealedUpTo..<(sealedUpTo + Age.chunkSize)], last: false)
                sealedUpTo += Age.chunkSize
            }
            if sealedUpTo > 0 { pending.removeFirst(sealedUpTo) }
        }

        public func close() throws {
            try seal(pending[...], last: true)
            pending = []
        }

        func seal(_ chunk: ArraySlice<UInt8>, last: Bool) throws {
            let box = try ChaChaPoly.seal(chunk, using: key, nonce: ChaChaPoly.Nonce(data: Age.streamNonce(counter, last: last)))
            counter += 1
            try out(Array(box.ciphertext) + Array(box.tag))
        }
    }

    static func streamNonce(_ counter: UInt64, last: Bool) -> [UInt8] {
        var n = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { n[3 + i] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(7 - i))) }
        n[11] = last ? 1 : 0
        return n
    }

    /// Reads an age file chunk by chunk: the header is opened (with one of `identities`,
    /// or the `fileKey` the writer still holds), then each ``next()`` gives one decrypted
    /// 64 KiB chunk, `nil` at the end. A truncated, reordered or altered file throws.
    public final class Reader {
        let readMore: () throws -> [UInt8]
        var buffer: [UInt8] = []
        /// Where the unread bytes of `buffer` start.
        var start = 0
        var key: SymmetricKey
        var counter: UInt64 = 0
        var ended = false, done = false

        public init(identities: [Identity], fileKey: [UInt8]? = nil, readMore: @escaping () throws -> [UInt8]) throws {
            self.readMore = readMore
            while Age.findHeaderEnd(buffer) == nil {
                // A header is a few hundred bytes; 1 MiB without its end is not an age file.
                guard buffer.count < 1 << 20 else { throw Failure.badHeader("too long") }
                let more = try readMore()
                guard !more.isEmpty else { throw Failure.badHeader("truncated, or not an age file") }
                buffer += more
            }
            let (fk, length) = try Age.openHeader(buffer, identities: identities, fileKey: fileKey)
            start = length
            while buffer.count - start < 16 {
                let more = try readMore()
                guard !more.isEmpty else { throw Failure.badPayload("truncated before the nonce") }
                buffer += more
            }
            key = Age.hkdf(fk, salt: Array(buffer[start..<(start + 16)]), info: "payload")
            start += 16
        }

        /// The next plaintext chunk, or `nil` after the last one.
        public func next() throws -> [UInt8]? {
            guard !done else { return nil }
            let sealed = Age.chunkSize + 16
            while buffer.count - start <= sealed, !ended {
                // What was consumed goes before more is appended (no copy per chunk).
                if start > 0 { buffer.removeFirst(start); start = 0 }
                let more = try readMore()
                if more.isEmpty { ended = true } else { buffer += more }
            }
            let available = buffer.count - start
            let last = available <= sealed
            let take = min(sealed, available)
            guard take >= 16 else { throw Failure.badPayload("truncated") }
            let chunk = buffer[start..<(start + take)]
            guard let box = try? ChaChaPoly.SealedBox(nonce: ChaChaPoly.Nonce(data: Age.streamNonce(counter, last: last)),
                                                      ciphertext: chunk.dropLast(16), tag: chunk.suffix(16)),
                  let plain = try? ChaChaPoly.open(box, using: key) else {
                throw Failure.badPayload("chunk \(counter) does not authenticate (damaged, truncated or reordered)")
            }
            if last && plain.isEmpty && counter > 0 { throw Failure.badPayload("an empty last chunk after data") }
            start += take
            counter += 1
            if last { done = true }
            return Array(plain)
        }
    }

    static func findHeaderEnd(_ b: [UInt8]) -> Int? {
        // "\n---" then the MAC line's newline.
        let marker = Array("\n--- ".utf8)
        guard b.count > marker.count else { return nil }
        for i in 0...(b.count - marker.count) where b[i] == 10 && Array(b[i..<(i + marker.count)]) == marker {
            if b[(i + marker.count)...].contains(10) { return i }
            return nil
        }
        return nil
    }
}

/// Bech32 (BIP 173), for age's recipient and identity strings.
enum Bech32 {
    static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)

    static func polymod(_ values: [UInt8]) -> UInt32 {
        let gen: [UInt32] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
        var chk: UInt32 = 1
        for v in values {
            let b = chk >> 25
            chk = (chk & 0x1ffffff) << 5 ^ UInt32(v)
            for i in 0..<5 where (b >> UInt32(i)) & 1 == 1 { chk ^= gen[i] }
        }
        return chk
    }

    static func expand(_ hrp: [UInt8]) -> [UInt8] { hrp.map { $0 >> 5 } + [0] + hrp.map { $0 & 31 } }

    static func convert(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var acc = 0, bits = 0
        var out: [UInt8] = []
        let maxv = (1 << to) - 1
        for v in data {
            guard Int(v) >> from == 0 else { return nil }
            acc = (acc << from) | Int(v)
            bits += from
            while bits >= to { bits -= to; out.append(UInt8((acc >> bits) & maxv)) }
        }
        if pad {
            if bits > 0 { out.append(UInt8((acc << (to - bits)) & maxv)) }
        } else if bits >= from || ((acc << (to - bits)) & maxv) != 0 {
            return nil
        }
        return out
    }

    static func encode(hrp: String, data: [UInt8]) -> String {
        let h = Array(hrp.utf8)
        let values = convert(data, from: 8, to: 5, pad: true) ?? []
        let mod = polymod(expand(h) + values + [0, 0, 0, 0, 0, 0]) ^ 1
        let checksum = (0..<6).map { UInt8((mod >> UInt32(5 * (5 - $0))) & 31) }
        return hrp + "1" + String(decoding: (values + checksum).map { charset[Int($0)] }, as: UTF8.self)
    }

    static func decode(_ s: String) -> (String, [UInt8])? {
        let b = Array(s.utf8)
        guard let sep = b.lastIndex(of: UInt8(ascii: "1")), sep > 0, b.count - sep > 6 else { return nil }
        let hrp = Array(b[0..<sep])
        var values: [UInt8] = []
        for c in b[(sep + 1)...] {
            guard let v = charset.firstIndex(of: c) else { return nil }
            values.append(UInt8(v))
        }
        guard polymod(expand(hrp) + values) == 1 else { return nil }
        guard let data = convert(Array(values.dropLast(6)), from: 5, to: 8, pad: false) else { return nil }
        return (String(decoding: hrp, as: UTF8.self), data)
    }
}
