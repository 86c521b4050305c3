import Crypto
import Foundation

/// A raw 256-bit SQLCipher key (ARCHITECTURE D8), held as the text `x'<64 hex>'` that
/// SQLCipher takes as a raw key (no KDF). The buffer is zeroed when the key is released.
/// Never printed, logged or put in SQL text.
/// See <https://www.zetetic.net/sqlcipher/sqlcipher-api/#key>.
public final class DatabaseKey: @unchecked Sendable, CustomStringConvertible {
    private static let length = 67
    private let buffer: UnsafeMutablePointer<UInt8>   // "x'" + 64 hex + "'"

    /// Builds a key from 64 hexadecimal characters.
    public init(hex: some Collection<UInt8>) throws {
        guard hex.count == 64, hex.allSatisfy({ Self.isHex($0) }) else { throw KeyFileError.badFormat(path: "(key)") }
        buffer = .allocate(capacity: Self.length)
        buffer[0] = UInt8(ascii: "x"); buffer[1] = UInt8(ascii: "'")
        for (i, c) in hex.enumerated() { buffer[2 + i] = Self.lower(c) }
        buffer[66] = UInt8(ascii: "'")
    }

    deinit {
        // explicit_bzero: a store the optimizer may not drop before the free.
        explicit_bzero(buffer, Self.length)
        buffer.deallocate()
    }

    public var description: String { "DatabaseKey(redacted)" }

    static func isHex(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
    }
    static func lower(_ c: UInt8) -> UInt8 { (c >= 65 && c <= 70) ? c + 32 : c }

    /// Calls `body` with the key text for `sqlite3_key_v2`.
    func withSQLCipherKey<T>(_ body: (UnsafeRawPointer, Int32) throws -> T) rethrows -> T {
        try body(UnsafeRawPointer(buffer), Int32(Self.length))
    }

    /// A public identifier of the key: HMAC-SHA256 of a fixed label under the key's 32
    /// bytes, first 16 hex digits. It cannot reveal the key (D6).
    public var keyID: String {
        var raw = [UInt8](repeating: 0, count: 32)
        defer { zeroize(&raw) }
        for i in 0..<32 {
            raw[i] = Self.nibble(buffer[2 + 2 * i]) << 4 | Self.nibble(buffer[3 + 2 * i])
        }
        let mac = HMAC<SHA256>.authenticationCode(for: Array("tosca-maint key id v1".utf8), using: SymmetricKey(data: raw))
        return hexString(Array(mac).prefix(8))
    }

    static func nibble(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
}

/// A key file that fails the checks of D8 (exit 77).
public enum KeyFileError: Error, CustomStringConvertible, Sendable, Equatable {
    case unreadable(path: String, reason: String)
    case notRegularFile(path: String)
    case badOwner(path: String, uid: UInt32)
    case tooOpen(path: String, mode: UInt32)
    case badFormat(path: String)

    public var description: String {
        switch self {
        case .unreadable(let p, let r): return "key file \(p): \(r)"
        case .notRegularFile(let p): return "key file \(p) is not a regular file (symbolic links are refused)"
        case .badOwner(let p, let uid): return "key file \(p) is owned by uid \(uid), not by this user or root"
        case .tooOpen(let p, let mode): return "key file \(p) has mode \(String(mode & 0o777, radix: 8)): group and others must have no access (chmod 0400)"
        case .badFormat(let p): return "key file \(p) must hold exactly 64 hexadecimal characters (a trailing newline is allowed)"
        }
    }
}

/// A secret file read by the D8 rules (a key file, the export repository's password):
/// opened without following a link and without blocking (a FIFO or a device named as the
/// file must not hang the open), then, on the open descriptor, a regular file owned by
/// this user or root, with none of `forbiddenModeBits`; at most `limit` bytes are read.
public enum SecretFile {
    public static func read(path: String, limit: Int, forbiddenModeBits: mode_t) throws -> (bytes: [UInt8], mode: mode_t) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            if e == ELOOP { throw KeyFileError.notRegularFile(path: path) }
            throw KeyFileError.unreadable(path: path, reason: String(cString: strerror(e)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw KeyFileError.unreadable(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw KeyFileError.notRegularFile(path: path) }
        guard st.st_uid == geteuid() || st.st_uid == 0 else { throw KeyFileError.badOwner(path: path, uid: st.st_uid) }
        guard st.st_mode & forbiddenModeBits == 0 else { throw KeyFileError.tooOpen(path: path, mode: UInt32(st.st_mode)) }
        var buf = [UInt8](repeating: 0, count: limit)
        var total = 0
        while total < buf.count {
            let n = buf.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Glibc.read(fd, base + total, raw.count - total)
            }
            if n < 0 {
                zeroize(&buf)
                throw KeyFileError.unreadable(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            total += n
        }
        let bytes = Array(buf[0..<total])
        zeroize(&buf)
        return (bytes, st.st_mode & 0o7777)
    }
}

/// Where keys come from (D8).
public enum KeySource {
    /// The systemd credential name the units load.
    public static let credentialName = "tosca-db-key"

    /// What the units' `SetCredential=tosca-db-key:none` fallback holds when no sealed key
    /// exists (a plaintext device): read as "no credential".
    public static let noCredentialMarker = "none"

    /// The key from `--key-file`, else from `$CREDENTIALS_DIRECTORY/tosca-db-key`, else `nil`.
    /// A credential holding only ``noCredentialMarker`` counts as absent.
    public static func resolve(keyFile: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DatabaseKey? {
        if let keyFile { return try read(path: keyFile) }
        if let dir = environment["CREDENTIALS_DIRECTORY"], !dir.isEmpty {
            let path = PathName.join(dir, credentialName)
            if FileManager.default.fileExists(atPath: path) { return try read(path: path, markerMeansAbsent: true, isCredential: true) }
        }
        return nil
    }

    /// Reads and checks one key file: no symlink, a regular file, owned by the caller or
    /// root, no group or other bits, 64 hex characters and an optional newline.
    public static func read(path: String) throws -> DatabaseKey {
        guard let key = try read(path: path, markerMeansAbsent: false) else { throw KeyFileError.badFormat(path: path) }
        return key
    }

    /// `isCredential`: a file systemd placed in `$CREDENTIALS_DIRECTORY`. Where systemd
    /// keeps it root's and grants the unit's user read access by an ACL (on tmpfs), stat
    /// shows the ACL mask as group read: allowed there, never for a key file named on the
    /// command line.
    static func read(path: String, markerMeansAbsent: Bool, isCredential: Bool = false) throws -> DatabaseKey? {
        var buf = try SecretFile.read(path: path, limit: 80, forbiddenModeBits: isCredential ? 0o037 : 0o077).bytes
        defer { zeroize(&buf) }
        let total = buf.count
        var length = total
        // The marker is 4 bytes: a key (64 or 65 bytes) is never copied here.
        if markerMeansAbsent && total <= noCredentialMarker.utf8.count + 1 {
            var content = Array(buf[0..<total])
            if content.last == UInt8(ascii: "\n") { content.removeLast() }
            if content == Array(noCredentialMarker.utf8) { return nil }
        }
        if length == 65 && buf[64] == UInt8(ascii: "\n") { length = 64 }
        guard length == 64 else { throw KeyFileError.badFormat(path: path) }
        do { return try DatabaseKey(hex: buf[0..<64]) } catch { throw KeyFileError.badFormat(path: path) }
    }
}
