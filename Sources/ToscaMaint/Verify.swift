import Foundation
import ToscaCore

/// What D12 steps 2 and 3 find in one database file.
public struct Measurement: Sendable {
    public var integrity: [String] = []
    /// `PRAGMA cipher_integrity_check` rows (encrypted files only; empty = sound).
    public var cipherIntegrity: [String] = []
    public var chain: ChainVerification = .intact(head: nil, rows: 0)
    public var rowCounts: [String: Int] = [:]
    public var foreignKeyViolations = 0
    public var pageSize = 0
    public var pageCount = 0
    public var schemaVersion = 0
    public var schema = ""
    public var hasChain = false

    /// Measures `path` and hashes it, on three threads (two cores): one connection runs
    /// `integrity_check`, the row counts and the chain; a second connection runs
    /// `cipher_integrity_check` and `foreign_key_check`; the third thread hashes the file.
    public static func withDigest(path: String, key: DatabaseKey?) throws -> (Measurement, (hex: String, size: Int64)) {
        let (m, digest, _) = try withDigest(path: path, key: key, alsoFinding: nil)
        return (m, digest)
    }

    /// ``withDigest(path:key:)``, and `alsoFinding` run on the second thread's connection
    /// after its own checks (`integrity_check` is the longer pass: what the second thread
    /// does meanwhile costs no wall time). Returns what it found.
    ///
    /// `onOneCore` (a recorder is running): the same work on the calling thread alone, so
    /// the recorder always has a core. Three threads on the two cores raised its p99 commit
    /// latency to 1.4-4.8 ms during backups; one thread 1.26-1.43 ms, against 1.76 ms idle
    /// (`tosca-sim` at 1 kHz, 20 s windows of back-to-back nice-19 backups of 1 GiB).
    public static func withDigest(path: String, key: DatabaseKey?, alsoFinding extra: (@Sendable (Database) throws -> String?)?,
                                  onOneCore: Bool = false) throws
        -> (Measurement, (hex: String, size: Int64), String?) {
        if onOneCore {
            let m = try Measurement.of(path: path, key: key, sideChecks: true)
            let digest = try FileDigest.sha256(path: path)
            let found = try extra.map { try $0(try Database(path: path, options: .init(readOnly: true, key: key, oneThread: true))) } ?? nil
            return (m, digest, found)
        }
        // The file's SHA-256 on a third thread: the second thread's checks take longer than
        // integrity_check on an encrypted file with sealed sessions, and hashing is the part
        // that moves without splitting a pass.
        let hashing = OwnThread { try FileDigest.sha256(path: path) }
        let other = OwnThread { () throws -> ((cipher: [String], fk: Int), String?) in
            let db = try Database(path: path, options: .init(readOnly: true, key: key, oneThread: true))
            let cipher = key == nil ? [] : try db.cipherIntegrityProblems()
            let fk = try db.foreignKeyViolationCount()
            return ((cipher, fk), try extra?(db))
        }
        let main = Result { try Measurement.of(path: path, key: key, sideChecks: false) }
        let digested = Result { try hashing.wait() }
        let (side, found) = try other.wait()
        let digest = try digested.get()
        var m = try main.get()
        m.cipherIntegrity = side.cipher
        m.foreignKeyViolations = side.fk
        return (m, digest, found)
    }

    /// Reads everything from `path` over one read-only connection, in one read transaction
    /// (`sideChecks: false` leaves out `cipher_integrity_check` and `foreign_key_check`).
    public static func of(path: String, key: DatabaseKey?, sideChecks: Bool = true) throws -> Measurement {
        let db = try Database(path: path, options: .init(readOnly: true, key: key, oneThread: true))
        var m = Measurement()
        try db.execute("BEGIN")
        defer { try? db.execute("COMMIT") }
        m.integrity = try db.integrityCheck()
        if key != nil && sideChecks { m.cipherIntegrity = try db.cipherIntegrityProblems() }
        m.pageSize = try db.integerPragma("page_size") ?? 0
        m.pageCount = try db.scalar("PRAGMA page_count")?.int ?? 0
        for t in try db.tableNames() { m.rowCounts[t] = try db.scalar("SELECT count(*) FROM \(quoteIdentifier(t))")?.int ?? 0 }
        if sideChecks { m.foreignKeyViolations = try db.foreignKeyViolationCount() }
        if let status = try? Migrator().status(db) {
            m.schemaVersion = status.version
            m.schema = status.versionDescription
            m.hasChain = status.kind == .versioned && status.applied.contains { $0.id == "0006_safety_log_chain" }
        } else {
            m.schema = "unrecognised"
        }
        if m.hasChain { m.chain = try SafetyChain.verify(db) }
        return m
    }
}

extension Database {
    /// `PRAGMA cipher_integrity_check`, one line a problem (empty: every page's HMAC holds).
    func cipherIntegrityProblems() throws -> [String] {
        try rows("PRAGMA cipher_integrity_check").map { $0.values.map(\.description).joined(separator: " ") }
    }
}

/// D12 on published copies.
public enum Verification {
    /// The problems D12 finds in `entry` (empty: verified). Throws only when the copy
    /// cannot be checked at all (an encrypted copy and no key, or the wrong key: 77).
    /// `measuring`: a byte copy of the file to read instead (a restore's staged file: its
    /// SHA-256 equal to the manifest's proves it is the copy).
    public static func problems(of entry: CatalogEntry, key: DatabaseKey?, measuring copy: String? = nil, onOneCore: Bool = false) throws -> [String] {
        let path = copy ?? entry.path
        guard let manifest = entry.manifest else {
            return ["\(entry.name): \(entry.manifestError ?? "manifest missing")"]
        }
        let facts = manifest.facts
        if facts.unverifiable == true { return [] }
        var problems: [String] = []
        // 1. The file.
        if !entry.digestMatches { problems.append("manifest facts were changed after publication (digest does not match)") }
        guard FileManager.default.fileExists(atPath: path) else { return problems + ["database file is missing"] }
        // Hash and measure together (two threads); a file that will not open still gets hashed.
        let measured: Result<(Measurement, (hex: String, size: Int64)), any Error>
        let header = try FileHeader.classify(path: path)
        var useKey: DatabaseKey? = nil
        if facts.encryption.isEncrypted {
            guard let key else {
                throw ToolFailure(.noPermission, "\(entry.name) is encrypted (key id \(facts.encryption.keyID ?? "?")): its key is needed to verify it",
                                  hint: "pass --key-file with that key")
            }
            guard key.keyID == facts.encryption.keyID else {
                throw ToolFailure(.noPermission, "\(entry.name) was made with key id \(facts.encryption.keyID ?? "?"), the key given has id \(key.keyID)",
                                  hint: "pass --key-file with the key whose id is \(facts.encryption.keyID ?? "?")")
            }
            if header == .plaintext { problems.append("manifest says encrypted but the file is plaintext SQLite") }
            useKey = key
        } else if header != .plaintext {
            problems.append("manifest says plaintext but the file is not plaintext SQLite")
        }
        measured = Result { let (m, d, _) = try Measurement.withDigest(path: path, key: useKey, alsoFinding: nil, onOneCore: onOneCore); return (m, d) }
        let (sha, size): (String, Int64)
        switch measured {
        case .success(let (_, d)): (sha, size) = (d.hex, d.size)
        case .failure: (sha, size) = try FileDigest.sha256(path: path)
        }
        if size != facts.sizeBytes { problems.append("size is \(size) bytes, manifest says \(facts.sizeBytes)") }
        if sha != facts.sha256 { problems.append("SHA-256 differs from the manifest: the file changed after publication") }
        // 2 and 3.
        let m: Measurement
        switch measured {
        case .success(let (measurement, _)): m = measurement
        case .failure(let error): return problems + ["cannot be read as a database: \(error)"]
        }
        problems += compare(m, with: facts)
        return problems
    }

    /// What a measured file must match for D12 steps 2-3; `nil` fields are not checked.
    public struct Expected: Sendable {
        /// Who says so, in the wording: "manifest", "the source snapshot", "the database before".
        public var source: String
        public var chainHead: ChainHead??
        public var pageCount: Int?
        public var rowCounts: [String: Int]?
        public var foreignKeyViolations: Int?

        public init(source: String, chainHead: ChainHead?? = nil, pageCount: Int? = nil, rowCounts: [String: Int]? = nil,
                    foreignKeyViolations: Int? = nil) {
            self.source = source
            self.chainHead = chainHead
            self.pageCount = pageCount
            self.rowCounts = rowCounts
            self.foreignKeyViolations = foreignKeyViolations
        }

        /// Everything a manifest's facts record.
        public static func facts(_ facts: ManifestFacts) -> Expected {
            Expected(source: "manifest", chainHead: .some(facts.chainHead), rowCounts: facts.rowCounts,
                     foreignKeyViolations: facts.foreignKeyViolations)
        }
    }

    /// D12 steps 2-3 of one measured file, worded once for backup, verify, restore, encrypt
    /// and rekey: `integrity_check`, `cipher_integrity_check`, the chain from seq 1, then
    /// what `expected` names.
    public static func steps2and3(_ m: Measurement, expected e: Expected) -> [String] {
        var problems: [String] = []
        if m.integrity != ["ok"] { problems.append("integrity_check: \(m.integrity.prefix(5).joined(separator: "; "))") }
        if !m.cipherIntegrity.isEmpty { problems.append("cipher_integrity_check: \(m.cipherIntegrity.prefix(5).joined(separator: "; "))") }
        if case .broken(let b) = m.chain { problems.append(b.description) }
        if let head = e.chainHead, m.chain.head != head {
            problems.append("safety-log head is \(m.chain.head.map(\.description) ?? "none"), \(e.source) says \(head.map(\.description) ?? "none")")
        }
        if let pages = e.pageCount, m.pageCount != pages {
            problems.append("page count is \(m.pageCount), \(e.source) says \(pages)")
        }
        if let rows = e.rowCounts, m.rowCounts != rows {
            let diffs = Set(m.rowCounts.keys).union(rows.keys).sorted().compactMap { t -> String? in
                m.rowCounts[t] == rows[t] ? nil : "\(t) \(m.rowCounts[t].map(String.init) ?? "absent") (\(e.source) \(rows[t].map(String.init) ?? "absent"))"
            }
            problems.append("row counts differ: \(diffs.joined(separator: ", "))")
        }
        if let fk = e.foreignKeyViolations, m.foreignKeyViolations != fk {
            problems.append("foreign_key_check finds \(m.foreignKeyViolations) violations, \(e.source) says \(fk)")
        }
        return problems
    }

    /// D12 steps 2-3 against a manifest's facts.
    public static func compare(_ m: Measurement, with facts: ManifestFacts) -> [String] {
        steps2and3(m, expected: .facts(facts))
    }

    /// Removes a check recorded by ``record(_:for:)`` (a restore whose swap did not happen).
    public static func remove(_ check: ManifestCheck, from entry: CatalogEntry) throws {
        guard var manifest = (try? Manifest.read(path: entry.manifestPath).0) ?? entry.manifest else { return }
        manifest.checks.removeAll { $0 == check }
        try manifest.write(path: entry.manifestPath)
    }

    /// Appends a check to a copy's manifest (the whole file rewritten atomically). The
    /// manifest is read again first, so checks recorded since `entry` was scanned stay.
    public static func record(_ check: ManifestCheck, for entry: CatalogEntry) throws {
        guard var manifest = (try? Manifest.read(path: entry.manifestPath).0) ?? entry.manifest else { return }
        manifest.checks.append(check)
        try manifest.write(path: entry.manifestPath)
    }
}

/// `verify --live`: the live database checked without blocking the recorder.
public struct LiveCheck: Sendable {
    public let quickCheck: [String]
    public let chain: ChainVerification
    /// The backup whose head the live chain must extend, and whether it does.
    public let anchorName: String?
    public let anchorProblem: String?
    /// Safety-log rows inserted without chain columns and not sealed yet (a warning).
    public var unsealed: (count: Int, oldest: String?) = (0, nil)
    /// Sessions whose treatment events no longer match their seal (65).
    public var sealProblems: [String] = []
    /// Age of the oldest unsealed row (its stamp read as legacy local time).
    public var oldestUnsealedAgeSeconds: Int64?
    public var notes: [String] {
        guard unsealed.count > 0 else { return [] }
        let age = oldestUnsealedAgeSeconds.map { String(format: ", about %.1f h old", Double($0) / 3600) } ?? ""
        return ["\(unsealed.count) safety-log row(s) not sealed into the chain yet (inserted by another program; oldest stamped \(unsealed.oldest ?? "?")\(age)): the recorder or the next maintenance run seals them"]
    }

    public var problems: [String] {
        var p: [String] = []
        if quickCheck != ["ok"] { p.append("quick_check: \(quickCheck.prefix(5).joined(separator: "; "))") }
        if case .broken(let b) = chain { p.append("live \(b.description)") }
        if let anchorProblem { p.append("live " + anchorProblem) }
        p += sealProblems.map { "live " + $0 }
        return p
    }

    /// The last `maintenance` entry of a restore (`restored_from` in its details): its place
    /// in the chain and its time.
    static func lastRestore(_ db: Database) throws -> (head: ChainHead, time: UTCTime?)? {
        guard let row = try db.rows("""
            SELECT seq, row_hash, timestamp FROM safety_log WHERE event_type = 'maintenance' AND details LIKE '%"restored_from"%'
            ORDER BY seq DESC LIMIT 1
            """).first, let seq = row[0].int64, let hash = row[1].bytes else { return nil }
        return (ChainHead(seq: seq, hash: hexString(hash)), row[2].string.flatMap { UTCTime(sqlDateTime: $0) })
    }

    public static func run(_ catalog: Catalog) throws -> LiveCheck {
        let db = try Database(path: catalog.folder.database, options: .init(readOnly: true, key: catalog.folder.key))
        try db.execute("BEGIN")
        defer { try? db.execute("COMMIT") }
        let quick = try db.integrityCheck(quick: true)
        let status = try Migrator().status(db)
        guard status.kind == .versioned else {
            return LiveCheck(quickCheck: quick, chain: .intact(head: nil, rows: 0), anchorName: nil, anchorProblem: nil)
        }
        let chain = try SafetyChain.verify(db)
        let anchor = try timelineAnchor(db, catalog: catalog)
        let problem = chain.isIntact ? try anchorProblem(db, anchor: anchor) : nil
        var check = LiveCheck(quickCheck: quick, chain: chain, anchorName: anchor?.name, anchorProblem: problem)
        check.unsealed = try SafetyChain.unsealed(db)
        check.oldestUnsealedAgeSeconds = check.unsealed.oldest.flatMap { Sealing.age(of: $0, in: db) }
        check.sealProblems = try SessionSeal.problems(db)
        return check
    }

    /// The backup whose chain head `db` must extend: the newest verified backup; after a
    /// restore, the restored copy, or a verified backup made since.
    ///
    /// A restore entry in the safety log counts only when a copy's manifest confirms it: the
    /// restore writes a `restore` check bound to that very entry (its seq and row hash) into
    /// the restored copy's manifest, and encrypt and rekey carry it to the copies they make.
    /// The chain has no secret, so an appended or rewritten entry alone proves nothing: a
    /// forged one cannot match the binding of a real restore.
    public static func timelineAnchor(_ db: Database, catalog: Catalog) throws -> CatalogEntry? {
        // A lost backup (its manifest left, its file gone) still anchors: losing the newest
        // copy must never move the anchor back to an older head.
        let verified = (catalog.backups + catalog.lostCopies.filter(\.isBackup))
            .filter { $0.isVerified && $0.manifest?.facts.chainHead != nil }
            .sorted { ($0.created ?? UTCTime(seconds: 0, microseconds: 0), $0.name) < ($1.created ?? UTCTime(seconds: 0, microseconds: 0), $1.name) }
        var anchor = verified.last
        if let restore = try lastRestore(db),
           let restored = catalog.entries.first(where: { e in
               e.manifest?.checks.contains { $0.level == restoreCheckLevel && $0.ok && $0.detail == restore.head.description } == true
           }) {
            let since = verified.filter { b in
                guard let created = b.created, let at = restore.time else { return false }
                return created > at
            }
            anchor = since.last ?? restored
        }
        return anchor
    }

    /// The anchor of the catalog's live database, or `nil` when it has none or does not
    /// open (a damaged or absent database protects nothing).
    public static func anchor(_ catalog: Catalog) -> CatalogEntry? {
        let live = catalog.folder.database
        guard FileManager.default.fileExists(atPath: live),
              let db = try? Database(path: live, options: .init(readOnly: true, key: catalog.folder.liveKey))
        else { return nil }
        guard (try? db.execute("BEGIN")) != nil else { return nil }
        defer { try? db.execute("COMMIT") }
        guard (try? Migrator().status(db).kind) == .versioned else { return nil }
        return (try? timelineAnchor(db, catalog: catalog)) ?? nil
    }

    /// The manifest check level a restore writes into the restored copy's manifest, bound
    /// to the safety-log entry it appended (``ManifestCheck/detail``).
    public static let restoreCheckLevel = "restore"

    /// Why `db`'s safety log does not extend `anchor`'s recorded head, or `nil` when it does
    /// (or there is no anchor).
    public static func anchorProblem(_ db: Database, anchor: CatalogEntry?) throws -> String? {
        guard let anchor, let head = anchor.manifest?.facts.chainHead else { return nil }
        if case .broken(let b) = try SafetyChain.verify(db, anchor: head) {
            return "safety log does not extend the head of backup \(anchor.name) (\(head)): \(b.reason) (tampering)"
        }
        return nil
    }
}

extension UTCTime {
    /// Parses TOSCA's DATETIME text `YYYY-MM-DD HH:MM:SS[.ffffff]` as UTC.
    public init?(sqlDateTime text: String) {
        self.init(iso8601: text.replacingOccurrences(of: " ", with: "T") + "Z")
    }
}
