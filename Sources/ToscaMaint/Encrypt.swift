import Foundation
import ToscaCore

/// The Phase 6 cutover: plaintext database and copies to SQLCipher (D3, D4, D6, D11, D14).
public struct EncryptJob: Sendable {
    public let dataDirectory: String
    public let key: DatabaseKey
    public var keepPlaintextCopy = false
    public var databasePath: String { dataDirectory + "/tosca.db" }

    public init(dataDirectory: String, key: DatabaseKey) {
        self.dataDirectory = dataDirectory
        self.key = key
    }

    public struct Outcome: Sendable {
        public var alreadyDone = false
        public var swapped = false
        public var safetyCopy: String?
        public var converted: [(from: String, to: String)] = []
        public var deleted: [String] = []
        public var keptPlaintext: String?
        public var skipped: [(String, String)] = []
    }

    /// Step 5: `encrypted` holds exactly what `plain` holds: same tables, same rows (a
    /// content hash per table), D12 steps 2-3, and it is not readable as plaintext SQLite.
    public func proveEqual(plain: String, encrypted: String) throws -> [String] {
        try proveEqualMeasuring(plain: plain, encrypted: encrypted).problems
    }

    /// ``proveEqual(plain:encrypted:)``, also returning the encrypted file's measurement.
    public func proveEqualMeasuring(plain: String, encrypted: String) throws -> (problems: [String], measurement: Measurement) {
        var problems: [String] = []
        if try FileHeader.classify(path: encrypted) == .plaintext { problems.append("\(encrypted) is plaintext SQLite") }
        if (try? Database(path: encrypted, options: .init(readOnly: true))) != nil { problems.append("\(encrypted) opens without a key") }
        let p = try Database(path: plain, options: .init(readOnly: true))
        let e = try Database(path: encrypted, options: .init(readOnly: true, key: key))
        let tables = try p.tableNames()
        if try e.tableNames() != tables { problems.append("tables differ: \(tables) vs \(try e.tableNames())") }
        var columns: [String: [String]] = [:]
        for t in tables { columns[t] = try p.columnNames(of: t) }
        // The encrypted side (decryption is the slow part) on a second thread.
        let key = self.key
        let cols = columns
        let other = OwnThread {
            let e2 = try Database(path: encrypted, options: .init(readOnly: true, key: key))
            return try MigrateJob.tableDigests(e2, tables: tables, columns: cols)
        }
        let mine = Result { try MigrateJob.tableDigests(p, tables: tables, columns: columns) }
        let b = try other.wait()
        let a = try mine.get()
        for t in tables where a[t]?.rows != b[t]?.rows || a[t]?.sha256 != b[t]?.sha256 {
            problems.append("table \(t) differs: \(a[t]?.rows ?? 0) rows, \(b[t]?.rows ?? 0) encrypted")
        }
        for pragma in ["user_version", "application_id"] where try p.scalar("PRAGMA \(pragma)") != e.scalar("PRAGMA \(pragma)") {
            problems.append("\(pragma) differs")
        }
        let m = try Measurement.of(path: encrypted, key: key)
        if m.integrity != ["ok"] { problems.append("integrity_check: \(m.integrity.prefix(3).joined(separator: "; "))") }
        if !m.cipherIntegrity.isEmpty { problems.append("cipher_integrity_check: \(m.cipherIntegrity.prefix(3).joined(separator: "; "))") }
        if case .broken(let br) = m.chain { problems.append(br.description) }
        let plainHead = try? SafetyChain.head(p)
        if m.hasChain && m.chain.head != plainHead ?? nil { problems.append("safety-log heads differ") }
        return (problems, m)
    }

    /// Steps 3-5 into a scratch folder: reports, changes nothing (`--rehearse`).
    public func rehearse() throws -> [String] {
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        guard try FileHeader.classify(path: databasePath) == .plaintext else {
            return ["\(databasePath) is not plaintext SQLite: already encrypted, nothing to rehearse"]
        }
        let scratch = Catalog.backupsDirectory(of: dataDirectory) + "/.rehearse-\(getpid())"
        let lock = try takeMaintenanceLock(dataDirectory: dataDirectory)
        defer { lock.unlock() }
        try AtomicFile.makeDirectory(scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let source = try Database(path: databasePath, options: .init(readOnly: true))
        try source.execute("BEGIN")
        try OnlineBackup.copy(source: source, destinationPath: scratch + "/plain.db", key: nil)
        try source.execute("COMMIT")
        let plain = try Database(path: scratch + "/plain.db", options: .init())
        try SQLCipherExport.encrypt(source: plain, into: scratch + "/encrypted.db", key: key)
        return try proveEqual(plain: scratch + "/plain.db", encrypted: scratch + "/encrypted.db")
    }

    /// Steps 1-6.
    public func run(confirm: () throws -> Void) throws -> Outcome {
        var outcome = Outcome()
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        let locks = try ExclusiveLocks(dataDirectory: dataDirectory, what: "the cutover")
        defer { locks.unlock() }
        try Housekeeping.run(try Catalog.scan(dataDirectory: dataDirectory))
        let live = databasePath
        if try FileHeader.classify(path: live) == .plaintext {
            try confirm()
            // 3. A verified plaintext pre-encryption safety copy.
            var copyJob = CopyJob(dataDirectory: dataDirectory, key: nil, kind: .preEncryption, reason: "before the encryption cutover")
            copyJob.showProgress = true
            outcome.safetyCopy = try copyJob.makeCopy().path
            // 4. Export beside the database.
            let temp = live + ".encrypt-partial"
            removeDatabaseFiles(temp)
            var swapped = false
            defer { if !swapped { removeDatabaseFiles(temp) } }
            do {
                let source = try Database(path: live, options: .init())
                let r = try source.rows("PRAGMA wal_checkpoint(TRUNCATE)").first
                if let busy = r?[0].int, busy != 0 { throw ToolFailure(.tempFail, "something still reads \(live): retry when it has finished") }
                try SQLCipherExport.encrypt(source: source, into: temp, key: key)
            }
            try FileDigest.fsyncFile(temp)
            // 5. Prove it equal, then swap.
            let problems = try proveEqual(plain: live, encrypted: temp)
            guard problems.isEmpty else {
                throw ToolFailure(.dataError, "the encrypted copy differs from the database; nothing was changed:\n  " + problems.joined(separator: "\n  "))
            }
            var st = stat()
            if stat(live, &st) == 0 { chown(temp, st.st_uid, st.st_gid) }
            for s in ["-wal", "-shm", "-journal"] {
                if unlink(live + s) != 0 && errno != ENOENT { throw POSIXFailure(operation: "remove \(live + s)", code: errno) }
            }
            guard rename(temp, live) == 0 else { throw POSIXFailure(operation: "rename \(temp) to \(live)", code: errno) }
            swapped = true
            try AtomicFile.syncDirectory(dataDirectory)
            // WAL mode, which export leaves out (D11), set on the file under its own name so
            // that its -wal is tosca.db-wal; the connection's close leaves no journal behind.
            do { _ = try Database(path: live, options: .init(key: key, walMode: true)) }
            outcome.swapped = true
            Journal.shared.log(.notice, "\(live) is now encrypted (key id \(key.keyID))", id: .encrypted, fields: ["TOSCA_DATABASE": live])
        } else {
            // Already encrypted: it must open with this key.
            _ = try Database(path: live, options: .init(readOnly: true, key: key))
        }
        // 6. Every plaintext copy in the catalog becomes an encrypted one.
        try convertCatalog(&outcome)
        outcome.alreadyDone = !outcome.swapped && outcome.converted.isEmpty && outcome.deleted.isEmpty
        return outcome
    }

    func convertCatalog(_ outcome: inout Outcome) throws {
        let catalog = try Catalog.scan(dataDirectory: dataDirectory)
        let dir = catalog.backupsDirectory
        // Leftovers of interrupted rehearsals hold plaintext copies: remove them (we hold .maint.lock).
        for n in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where n.hasPrefix(".rehearse-") {
            try? FileManager.default.removeItem(atPath: dir + "/" + n)
        }
        // Plaintext files the catalog does not list are never deleted silently: reported.
        for q in catalog.quarantined where (try? FileHeader.classify(path: q)) == .plaintext {
            outcome.skipped.append((q, "plaintext file in quarantine: examine it, then remove it by hand"))
        }
        for entry in catalog.entries {
            guard let facts = entry.manifest?.facts else {
                outcome.skipped.append((entry.name, "manifest unreadable: \(entry.manifestError ?? "?"); not converted"))
                continue
            }
            guard !facts.encryption.isEncrypted else { continue }
            let isKeptCopy = keepPlaintextCopy && facts.kind == .preEncryption
            if facts.unverifiable == true {
                // A raw forensic copy (a damaged database's files) may be the only record of
                // some sessions: never deleted by the cutover.
                outcome.skipped.append((entry.name, "raw forensic copy kept as it is (plaintext): examine it, then destroy it by hand"))
                continue
            }
            let reason = "encrypted copy of \(entry.name)"
            if !catalog.entries.contains(where: { $0.manifest?.facts.reason == reason && $0.manifest?.facts.encryption.keyID == key.keyID }) {
                // D12 step 1: the file is the one verified at publication (steps 2-3 run
                // on the encrypted export below, against this file's content).
                let (sha, size) = try FileDigest.sha256(path: entry.path)
                guard entry.digestMatches, sha == facts.sha256, size == facts.sizeBytes else {
                    outcome.skipped.append((entry.name, "changed since publication (SHA-256, size or manifest digest)")); continue
                }
                let name = Catalog.freeName(in: dir, kind: facts.kind, time: facts.created ?? .now())
                let final = dir + "/" + name
                let partial = final + ".partial"
                var published = false
                defer { if !published { removeDatabaseFiles(partial) } }
                do {
                    let plain = try Database(path: entry.path, options: .init())
                    try SQLCipherExport.encrypt(source: plain, into: partial, key: key)
                }
                try FileDigest.fsyncFile(partial)
                let (problemsEnc, m) = try proveEqualMeasuring(plain: entry.path, encrypted: partial)
                guard problemsEnc.isEmpty else { outcome.skipped.append((entry.name, problemsEnc.joined(separator: "; "))); continue }
                let digest = try FileDigest.sha256(path: partial)
                let newFacts = try facts.encryptedVersion(name: name, digest: digest, measurement: m, keyID: key.keyID, reason: reason)
                try publishVerified(partial: partial, final: final, facts: newFacts, level: "encrypt", carrying: entry.manifest)
                published = true
                outcome.converted.append((entry.name, name))
            }
            if isKeptCopy { outcome.keptPlaintext = entry.path } else { try deletePlaintext(entry, &outcome) }
        }
    }

    func deletePlaintext(_ entry: CatalogEntry, _ outcome: inout Outcome) throws {
        for p in [entry.path, entry.path + "-wal", entry.path + "-shm", entry.path + "-journal", entry.manifestPath] {
            if unlink(p) != 0 && errno != ENOENT { throw POSIXFailure(operation: "remove \(p)", code: errno) }
        }
        outcome.deleted.append(entry.name)
        Journal.shared.log(.notice, "removed plaintext copy \(entry.path) (removal does not erase it from ext4 or flash media)", id: .plaintextRemoved,
                           fields: ["TOSCA_BACKUP_PATH": entry.path])
    }
}

/// `tosca-maint keygen`: 32 random bytes from the kernel as 64 hex characters, mode 0400.
public enum KeyGen {
    public static func write(to path: String) throws -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        defer { bytes.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        let rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard rnd >= 0 else { throw POSIXFailure(operation: "open /dev/urandom", code: errno) }
        let n = bytes.withUnsafeMutableBytes { read(rnd, $0.baseAddress, 32) }
        close(rnd)
        guard n == 32 else { throw POSIXFailure(operation: "read /dev/urandom", code: errno) }
        var text = Array(hexString(bytes).utf8) + [10]
        defer { text.withUnsafeMutableBytes { explicit_bzero($0.baseAddress!, $0.count) } }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o400)
        guard fd >= 0 else {
            let e = errno
            throw ToolFailure(e == EEXIST ? .cantCreate : (e == ENOSPC ? .ioError : .cantCreate),
                              "cannot create \(path): \(String(cString: strerror(e)))", hint: e == EEXIST ? "keygen never overwrites: name a new file" : nil)
        }
        defer { close(fd) }
        fchmod(fd, 0o400)
        let w = text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard w == text.count, fsync(fd) == 0 else { throw POSIXFailure(operation: "write \(path)", code: errno) }
        return try KeySource.read(path: path).keyID
    }
}
