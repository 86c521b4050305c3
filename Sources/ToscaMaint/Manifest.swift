import Foundation
import ToscaCore

/// Backup kinds (D6): backups and safety copies.
public enum CopyKind: String, Codable, Sendable, CaseIterable {
    case daily, manual
    /// Taken by `protect` right after sessions end: a backup, named with its kind, which
    /// prune thins like dailies and never keeps more of than of the other backups.
    case session
    case preMigration = "pre-migration", preRestore = "pre-restore", preEncryption = "pre-encryption", preRekey = "pre-rekey", snapshot
    /// What a backup becomes when the live safety log does not extend the last backup's
    /// head (possible tampering): kept for its data, never a backup, never the anchor.
    case suspect

    /// `daily`, `manual` and `session` are backups; the rest are safety copies.
    public var isBackup: Bool { self == .daily || self == .manual || self == .session }
}

/// How a copy is encrypted: `none`, or SQLCipher with its settings and key id (never the key).
public struct EncryptionFacts: Codable, Sendable, Equatable {
    public var mode: String
    public var cipher: String?
    public var cipherVersion: String?
    public var keyID: String?

    public static let none = EncryptionFacts(mode: "none")
    public static func sqlcipher(version: String, keyID: String) -> EncryptionFacts {
        EncryptionFacts(mode: "sqlcipher", cipher: "AES-256-CBC, HMAC-SHA512 per page, 4096-byte pages, raw 256-bit key (no KDF)",
                        cipherVersion: version, keyID: keyID)
    }
    public var isEncrypted: Bool { mode != "none" }

    enum CodingKeys: String, CodingKey {
        case mode, cipher
        case cipherVersion = "cipher_version", keyID = "key_id"
    }
}

/// The never-changing part of a manifest (D6).
public struct ManifestFacts: Codable, Sendable, Equatable {
    public var formatVersion = 1
    public var kind: CopyKind
    public var createdUTC: String
    public var sourcePath: String
    public var toolVersion: String
    public var fileName: String
    public var sha256: String
    public var sizeBytes: Int64
    public var pageSize: Int
    public var pageCount: Int
    public var schemaVersion: Int
    public var schema: String
    public var rowCounts: [String: Int]
    public var foreignKeyViolations: Int
    public var chainHead: ChainHead?
    public var encryption: EncryptionFacts
    /// A safety copy kept as raw files because the database could not be opened.
    public var unverifiable: Bool?
    /// Why a snapshot was taken.
    public var reason: String?
    /// A pre-migration copy: the schema it was taken at and the one `migrate up` aims for.
    public var fromVersion: String?
    public var toVersion: String?
    /// SHA-256 of the canonical JSON of these facts without `digest`.
    public var digest: String

    enum CodingKeys: String, CodingKey {
        case kind, schema, encryption, unverifiable, reason, digest, sha256
        case formatVersion = "format_version", createdUTC = "created_utc", sourcePath = "source_path", toolVersion = "tool_version"
        case fileName = "file_name", sizeBytes = "size_bytes", pageSize = "page_size", pageCount = "page_count"
        case schemaVersion = "schema_version", rowCounts = "row_counts", foreignKeyViolations = "foreign_key_violations"
        case chainHead = "chain_head", fromVersion = "from_version", toVersion = "to_version"
    }

    /// The digest these facts should carry.
    public func computedDigest() throws -> String {
        guard case .object(var o) = try JSONValue.from(self) else { return "" }
        o.removeValue(forKey: "digest")
        return sha256Hex(Array(JSONValue.object(o).canonical.utf8))
    }

    /// `created_utc` as a time.
    public var created: UTCTime? { UTCTime(iso8601: createdUTC) }
}

/// One verification or drill recorded in a manifest.
public struct ManifestCheck: Codable, Sendable, Equatable {
    /// `backup` (at publication), `verify`, `drill`.
    public var level: String
    public var timeUTC: String
    /// `ok` or `failed`.
    public var result: String
    public var problems: [String]
    public var toolVersion: String
    /// What the check bound itself to: for a `restore` check, the safety-log entry the
    /// restore appended (`seq <n> hash <row_hash>`); for a `backup` check that starts a new
    /// timeline, the admin's reason. Absent otherwise.
    public var detail: String?

    public init(level: String, time: UTCTime = .now(), ok: Bool, problems: [String], detail: String? = nil) {
        self.level = level
        self.timeUTC = time.iso8601
        self.result = ok ? "ok" : "failed"
        self.problems = problems
        self.toolVersion = toscaMaintVersion
        self.detail = detail
    }
    public var ok: Bool { result == "ok" }

    enum CodingKeys: String, CodingKey {
        case level, result, problems, detail
        case timeUTC = "time_utc", toolVersion = "tool_version"
    }
}

/// `F.manifest.json` of a published copy `F`.
public struct Manifest: Codable, Sendable, Equatable {
    public var facts: ManifestFacts
    public var checks: [ManifestCheck]

    public static func path(for databasePath: String) -> String { databasePath + ".manifest.json" }

    public var lastCheck: ManifestCheck? { checks.last }

    /// Reads a manifest; also returns whether `facts.digest` matches the facts as stored
    /// (computed over the file's own JSON, so an added or edited field shows).
    public static func read(path: String) throws -> (Manifest, digestMatches: Bool) {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let tree = try JSONValue.parse(data)
        guard case .object(var facts)? = tree["facts"] else { throw ManifestError.malformed(path: path, detail: "no facts object") }
        let stored = facts.removeValue(forKey: "digest")?.stringValue
        let matches = stored == sha256Hex(Array(JSONValue.object(facts).canonical.utf8))
        do {
            return (try JSONDecoder().decode(Manifest.self, from: data), matches)
        } catch {
            throw ManifestError.malformed(path: path, detail: String(describing: error))
        }
    }

    /// Writes the whole manifest atomically (D4).
    public func write(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(Array(try enc.encode(self)) + [10], to: path, mode: 0o600)
    }
}

public enum ManifestError: Error, CustomStringConvertible, Sendable {
    case malformed(path: String, detail: String)
    public var description: String {
        switch self {
        case .malformed(let p, let d): return "manifest \(p) cannot be read: \(d)"
        }
    }
}

extension UTCTime {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
    public init?(iso8601 text: String) {
        let u = Array(text.utf8)
        guard u.count >= 20, u.last == UInt8(ascii: "Z"), u[4] == 45, u[7] == 45, u[10] == 84, u[13] == 58, u[16] == 58 else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? { Int(String(decoding: u[a..<b], as: UTF8.self)) }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13), let mi = num(14, 16), let s = num(17, 19) else { return nil }
        var us = 0
        if u[19] == 46 {
            let frac = String(decoding: u[20..<(u.count - 1)], as: UTF8.self)
            guard let f = Int(frac), frac.count <= 6 else { return nil }
            us = f * Int(pow(10.0, Double(6 - frac.count)))
        }
        var t = tm()
        t.tm_year = Int32(y - 1900); t.tm_mon = Int32(mo - 1); t.tm_mday = Int32(d)
        t.tm_hour = Int32(h); t.tm_min = Int32(mi); t.tm_sec = Int32(s)
        self.init(seconds: Int64(timegm(&t)), microseconds: Int32(us))
    }
}

extension ManifestFacts {
    /// The facts of an encrypted (or re-keyed) version of this copy, published as `name`:
    /// the same kind, creation time, rows and chain head; the new file's hash, size, pages
    /// and key id; a fresh digest.
    public func encryptedVersion(name: String, digest: (hex: String, size: Int64), measurement m: Measurement,
                                 keyID: String, reason: String) throws -> ManifestFacts {
        var f = self
        f.fileName = name
        f.sha256 = digest.hex
        f.sizeBytes = digest.size
        f.pageSize = m.pageSize
        f.pageCount = m.pageCount
        f.encryption = .sqlcipher(version: (try? SQLCipherLibrary.checkVersion()) ?? "?", keyID: keyID)
        f.toolVersion = toscaMaintVersion
        f.reason = reason
        f.digest = ""
        f.digest = try f.computedDigest()
        return f
    }
}

/// Replaces the published copy `entry` by the verified `partial` under the same name
/// (encrypt, rekey: anything that names a copy by path keeps working). The new manifest is
/// written first beside it as `<name>.pending.manifest.json`, then the new file is renamed
/// over the old one, then the pending manifest over the old manifest, each made durable.
/// A run interrupted between the two renames is finished by the next housekeeping
/// (``finishPendingReplacements(in:)``): the pending manifest goes in when the file on disk
/// is the one it describes, and is dropped otherwise.
public func replacePublished(_ entry: CatalogEntry, with partial: String, facts: ManifestFacts, level: String) throws {
    let carried = entry.manifest?.checks.filter { $0.level == LiveCheck.restoreCheckLevel } ?? []
    let pending = pendingManifestPath(for: entry.path)
    try Manifest(facts: facts, checks: carried + [ManifestCheck(level: level, ok: true, problems: [])]).write(path: pending)
    for suffix in ["-wal", "-shm", "-journal"] { unlink(entry.path + suffix) }
    guard rename(partial, entry.path) == 0 else {
        let e = errno
        unlink(pending)
        throw POSIXFailure(operation: "replace \(entry.path)", code: e)
    }
    try AtomicFile.syncDirectory(PathName.parent(entry.path))
    guard rename(pending, entry.manifestPath) == 0 else { throw POSIXFailure(operation: "replace \(entry.manifestPath)", code: errno) }
    try AtomicFile.syncDirectory(PathName.parent(entry.path))
}

/// Where ``replacePublished(_:with:facts:level:)`` writes a copy's next manifest.
public func pendingManifestPath(for databasePath: String) -> String { databasePath + ".pending.manifest.json" }

/// Finishes or drops the replacements an interrupted run left (see
/// ``replacePublished(_:with:facts:level:)``); the caller holds `.maint.lock`.
public func finishPendingReplacements(in catalog: Catalog) throws {
    for pending in catalog.pendingManifests {
        let db = String(pending.dropLast(".pending.manifest.json".count))
        guard let (m, _) = try? Manifest.read(path: pending),
              FileManager.default.fileExists(atPath: db),
              let (sha, size) = try? FileDigest.sha256(path: db), sha == m.facts.sha256, size == m.facts.sizeBytes else {
            unlink(pending)
            Journal.shared.log(.notice, "dropped \(pending): the interrupted replacement of \(db) never happened", fields: ["TOSCA_PATH": pending])
            continue
        }
        guard rename(pending, Manifest.path(for: db)) == 0 else { throw POSIXFailure(operation: "replace \(Manifest.path(for: db))", code: errno) }
        try AtomicFile.syncDirectory(PathName.parent(db))
        Journal.shared.log(.notice, "finished the interrupted replacement of \(db): its new manifest is in place", fields: ["TOSCA_BACKUP_PATH": db])
    }
}

/// Publishes a verified `partial` as `final` (D4): the database under its name (never over
/// an existing file), the folder fsynced, then its manifest with one check of `level`.
///
/// `carrying` is the manifest of the copy this one replaces (encrypt, rekey): its `restore`
/// checks come along, so a restore from the old copy stays confirmed (``LiveCheck``).
public func publishVerified(partial: String, final: String, facts: ManifestFacts, level: String, carrying old: Manifest? = nil) throws {
    guard link(partial, final) == 0 else { throw POSIXFailure(operation: "publish \(final)", code: errno) }
    unlink(partial)
    try AtomicFile.syncDirectory(PathName.parent(final))
    let carried = old?.checks.filter { $0.level == LiveCheck.restoreCheckLevel } ?? []
    try Manifest(facts: facts, checks: carried + [ManifestCheck(level: level, ok: true, problems: [])]).write(path: Manifest.path(for: final))
}
