import Foundation
import ToscaBundle
import ToscaCore

/// The Phase 6 cutover: plaintext database and copies to SQLCipher (D3, D4, D6, D11, D14).
public struct EncryptJob: Sendable {
    /// The data folder, holding the new key.
    public let folder: DataFolder
    public let key: DatabaseKey
    public var keepPlaintextCopy = false
    /// The age recipients the plaintext bundles are converted to (D18).
    public var recipientsFile = BundleJob.defaultRecipients
    public var databasePath: String { folder.database }

    public init(folder: DataFolder, key: DatabaseKey) {
        self.folder = folder.with(key: key)
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
        /// The drill that ends the cutover: the copy and what failed (empty: passed).
        public var drill: (copy: String, problems: [String])?
        /// Plaintext session bundles replaced by encrypted ones.
        public var convertedBundles: [String] = []
    }

    /// Step 5: `encrypted` holds exactly what `plain` holds: same tables, same rows (a
    /// content hash per table), D12 steps 2-3, and it is not readable as plaintext SQLite.
    public func proveEqual(plain: String, encrypted: String) throws -> [String] {
        try proveEqualMeasuring(plain: plain, encrypted: encrypted).problems
    }

    /// ``proveEqual(plain:encrypted:)``, also returning the encrypted file's measurement and
    /// SHA-256.
    public func proveEqualMeasuring(plain: String, encrypted: String, plainSide: PlainSide? = nil) throws -> (problems: [String], measurement: Measurement, digest: (hex: String, size: Int64)) {
        var problems: [String] = []
        if try FileHeader.classify(path: encrypted) == .plaintext { problems.append("\(encrypted) is plaintext SQLite") }
        if (try? Database(path: encrypted, options: .init(readOnly: true))) != nil { problems.append("\(encrypted) opens without a key") }
        let p = try Database(path: plain, options: .init(readOnly: true, oneThread: true))
        let e = try Database(path: encrypted, options: .init(readOnly: true, key: key, oneThread: true))
        let tables = try p.tableNames()
        if try e.tableNames() != tables { problems.append("tables differ: \(tables) vs \(try e.tableNames())") }
        var columns: [String: [String]] = [:]
        for t in tables { columns[t] = try p.columnNames(of: t) }
        // Two threads, each with about half the work (decryption is the slow part): this one
        // runs integrity_check, the row counts and the chain of the encrypted file, then hashes
        // the plaintext tables (unless the caller measured that side before, `plainSide`);
        // the other hashes the encrypted tables, then the file, then runs
        // cipher_integrity_check. The foreign-key violations are counted on the
        // plaintext side, which needs no decryption: the table hashes prove both sides hold
        // the same rows, so they have the same violations.
        let key = self.key
        let cols = columns
        let other = OwnThread { () throws -> ([String: (rows: Int, sha256: String)], (hex: String, size: Int64), [String]) in
            let e2 = try Database(path: encrypted, options: .init(readOnly: true, key: key, oneThread: true))
            let digests = try MigrateJob.tableDigests(e2, tables: tables, columns: cols)
            let file = try FileDigest.sha256(path: encrypted)
            return (digests, file, try e2.cipherIntegrityProblems())
        }
        let measured = Result { try Measurement.of(path: encrypted, key: key, sideChecks: false) }
        let mine = Result { try plainSide ?? Self.measurePlainSide(p) }
        let (b, digest, cipher) = try other.wait()
        let a = try mine.get().digests
        var m = try measured.get()
        m.cipherIntegrity = cipher
        m.foreignKeyViolations = try mine.get().foreignKeyViolations
        for t in tables where a[t]?.rows != b[t]?.rows || a[t]?.sha256 != b[t]?.sha256 {
            problems.append("table \(t) differs: \(a[t]?.rows ?? 0) rows, \(b[t]?.rows ?? 0) encrypted")
        }
        for pragma in ["user_version", "application_id"] where try p.scalar("PRAGMA \(pragma)") != e.scalar("PRAGMA \(pragma)") {
            problems.append("\(pragma) differs")
        }
        let plainHead = try? SafetyChain.head(p)
        problems += Verification.steps2and3(m, expected: .init(source: "the plaintext database", chainHead: m.hasChain ? .some(plainHead ?? nil) : nil))
        return (problems, m, digest)
    }

    /// The plaintext side of the proof: each table's rows and content hash, and the
    /// foreign-key violations.
    public typealias PlainSide = (digests: [String: (rows: Int, sha256: String)], foreignKeyViolations: Int)

    /// Measures the plaintext side of ``proveEqualMeasuring(plain:encrypted:plainSide:)`` on
    /// `plain` (read in one read transaction).
    public static func measurePlainSide(_ plain: Database) throws -> PlainSide {
        try plain.execute("BEGIN")
        defer { try? plain.execute("COMMIT") }
        var columns: [String: [String]] = [:]
        let tables = try plain.tableNames()
        for t in tables { columns[t] = try plain.columnNames(of: t) }
        return (try MigrateJob.tableDigests(plain, tables: tables, columns: columns), try plain.foreignKeyViolationCount())
    }

    /// Steps 3-5 into a scratch folder: reports, changes nothing (`--rehearse`).
    public func rehearse() throws -> [String] {
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DatabaseOpenError.missing(path: databasePath) }
        guard try FileHeader.classify(path: databasePath) == .plaintext else {
            return ["\(databasePath) is not plaintext SQLite: already encrypted, nothing to rehearse"]
        }
        let scratch = folder.backups + "/.rehearse-\(getpid())"
        let lock = try folder.takeMaintenanceLock()
        defer { lock.unlock() }
        try Housekeeping.run(try folder.scanCatalog())
        try LayoutFolder.make(scratch)
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
        let locks = try folder.takeExclusiveLocks(what: "the cutover")
        defer { locks.unlock() }
        try Housekeeping.run(try folder.scanCatalog())
        // Plaintext bundles need recipients: checked before anything changes (78).
        let bundles = BundleJob(folder: folder)
        var recipients: [Age.Recipient] = []
        if try !bundles.plaintextBundles().isEmpty {
            guard FileManager.default.fileExists(atPath: recipientsFile), let list = try? Age.recipients(file: recipientsFile), !list.isEmpty else {
                throw ToolFailure(.config, "plaintext session bundles are in \(folder.bundles) and \(recipientsFile) names no age recipient to encrypt them to; nothing was changed",
                                  hint: "put the clinic's age1... recipients in \(recipientsFile), or pass --recipients FILE")
            }
            recipients = list
        }
        let live = databasePath
        var prepared: [String: Prepared] = [:]
        defer { for p in prepared.values { removeDatabaseFiles(p.file) } }
        if try FileHeader.classify(path: live) == .plaintext {
            try confirm()
            // 3. A verified plaintext pre-encryption safety copy.
            var copyJob = CopyJob(folder: folder.with(key: nil), kind: .preEncryption, reason: "before the encryption cutover")
            copyJob.showProgress = true
            // 4. Export beside the database, on a second thread while the copy is made and
            // verified (both read the same unchanging database: both locks are held, and the
            // WAL is emptied first). sqlcipher_export takes one core; the copy's verification
            // leaves most of the other one.
            let temp = live + ".encrypt-partial"
            removeDatabaseFiles(temp)
            var swapped = false
            defer { if !swapped { removeDatabaseFiles(temp) } }
            try LiveSwap.emptyWAL(try Database(path: live, options: .init()), path: live, unchanged: "the database was not encrypted")
            let key = self.key
            let exporting = OwnThread {
                try SQLCipherExport.encrypt(source: try Database(path: live, options: .init()), into: temp, key: key)
                try FileDigest.fsyncFile(temp)
            }
            // The copy's side of the proof too, while the export runs: the copy is verified
            // before the export ends, and the proof below is the longer step.
            let copied = Result { () throws -> (String, PlainSide) in
                let path = try copyJob.makeCopy().path
                return (path, try Self.measurePlainSide(try Database(path: path, options: .init(readOnly: true, oneThread: true))))
            }
            try exporting.wait()
            let (safetyCopy, plainSide) = try copied.get()
            outcome.safetyCopy = safetyCopy
            // 5. Prove it equal, then swap. Equal to the verified pre-encryption copy, made from
            // the same unchanging database (both locks held) by other means (raw pages, not
            // an export): the export holds the database's content, and it is also the
            // encrypted version of that copy, made below by a byte copy instead of a second
            // export and proof.
            // The byte copy, and the SHA-256 of it and of the plaintext copy (step 6 checks
            // both), are disk work: made on a third thread while the proof reads (nothing
            // writes either file until the proof is done).
            let converted = safetyCopy + ".encrypt.partial"
            removeDatabaseFiles(converted)
            let copying = OwnThread { () throws -> (copied: (hex: String, size: Int64), plain: (hex: String, size: Int64)) in
                try FileCopy.copy(from: temp, to: converted)
                return (try FileDigest.sha256(path: converted), try FileDigest.sha256(path: safetyCopy))
            }
            let proof = Result { try proveEqualMeasuring(plain: safetyCopy, encrypted: temp, plainSide: plainSide) }
            let copy = Result { try copying.wait() }
            let (problems, measurement, digest): ([String], Measurement, (hex: String, size: Int64))
            do {
                (problems, measurement, digest) = try proof.get()
                guard problems.isEmpty else {
                    throw ToolFailure(.dataError, "the encrypted copy differs from the database; nothing was changed:\n  " + problems.joined(separator: "\n  "))
                }
                let (copied, plain) = try copy.get()
                prepared[PathName.name(safetyCopy)] = (converted, measurement, digest, copied, plain)
            } catch {
                removeDatabaseFiles(converted)
                throw error
            }
            var st = stat()
            if stat(live, &st) == 0 { chown(temp, st.st_uid, st.st_gid) }
            try LiveSwap.prepareWAL(temp, key: key)
            try FileDigest.fsyncFile(temp)
            try LiveSwap.swap(temp, into: live)
            swapped = true
            outcome.swapped = true
            Journal.shared.log(.notice, "\(live) is now encrypted (key id \(key.keyID))", id: .encrypted, fields: ["TOSCA_DATABASE": live])
        } else {
            // Already encrypted: it must open with this key.
            _ = try Database(path: live, options: .init(readOnly: true, key: key))
        }
        // 6. Every plaintext copy in the catalog becomes an encrypted one, and every
        // plaintext bundle one encrypted to the recipients.
        try convertCatalog(&outcome, prepared: prepared)
        let (convertedBundles, skippedBundles) = try bundles.encryptPlaintextBundles(to: recipients)
        outcome.convertedBundles = convertedBundles
        outcome.skipped += skippedBundles
        outcome.alreadyDone = !outcome.swapped && outcome.converted.isEmpty && outcome.deleted.isEmpty && outcome.convertedBundles.isEmpty
        // 7. A planned change ends with a drill of the newest converted backup.
        if !outcome.alreadyDone { outcome.drill = try Self.drillNewest(folder) }
        return outcome
    }

    /// An encrypted version of a plaintext copy made and proven before ``convertCatalog(_:prepared:)``
    /// runs (the cutover's pre-encryption copy): its file, the measurement and SHA-256 of the
    /// file it is a byte copy of, the SHA-256 of the byte copy as written and of the
    /// plaintext copy (taken after both files were complete).
    public typealias Prepared = (file: String, measurement: Measurement, digest: (hex: String, size: Int64),
                                 copied: (hex: String, size: Int64), plain: (hex: String, size: Int64))

    /// Step 6: every plaintext copy in the catalog becomes an encrypted one under the same
    /// name (verified, a new manifest with the key id); the plaintext file is gone with the
    /// replacement. The pre-encryption copy kept on purpose (`--keep-plaintext-copy`) goes to
    /// `backups/quarantine/` first, named in the outcome. The caller holds `.maint.lock`; the
    /// nightly backup calls this too, to finish an interrupted cutover. A copy named in
    /// `prepared` gets its prepared encrypted version instead of an export and proof.
    public func convertCatalog(_ outcome: inout Outcome, prepared: [String: Prepared] = [:]) throws {
        let catalog = try folder.scanCatalog()
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
            if facts.unverifiable == true {
                // A raw forensic copy (a damaged database's files) may be the only record of
                // some sessions: never deleted by the cutover.
                outcome.skipped.append((entry.name, "raw forensic copy kept as it is (plaintext): examine it, then set it aside (tosca-maint quarantine) or destroy it by hand"))
                continue
            }
            // D12 step 1: the file is the one verified at publication (steps 2-3 run on the
            // encrypted export below, against this file's content).
            let partial = entry.path + ".encrypt.partial"
            let ready = prepared[entry.name].flatMap { $0.file == partial && FileManager.default.fileExists(atPath: partial) ? $0 : nil }
            let (sha, size) = try ready?.plain ?? FileDigest.sha256(path: entry.path)
            guard entry.digestMatches, sha == facts.sha256, size == facts.sizeBytes else {
                outcome.skipped.append((entry.name, "changed since publication (SHA-256, size or manifest digest)")); continue
            }
            var replaced = false
            defer { if !replaced { removeDatabaseFiles(partial) } }
            let m: Measurement
            let digest: (hex: String, size: Int64)
            if let ready {
                // Proven equal to this copy already; the byte copy must be the proven file.
                let copied = ready.copied
                guard copied == ready.digest else { outcome.skipped.append((entry.name, "the copy of its encrypted version differs from the proven file")); continue }
                try FileDigest.fsyncFile(partial)
                (m, digest) = (ready.measurement, copied)
            } else {
                removeDatabaseFiles(partial)
                do {
                    let plain = try Database(path: entry.path, options: .init())
                    try SQLCipherExport.encrypt(source: plain, into: partial, key: key)
                }
                try FileDigest.fsyncFile(partial)
                let (problemsEnc, measured, _) = try proveEqualMeasuring(plain: entry.path, encrypted: partial)
                guard problemsEnc.isEmpty else { outcome.skipped.append((entry.name, problemsEnc.joined(separator: "; "))); continue }
                m = measured
                digest = try FileDigest.sha256(path: partial)
            }
            let newFacts = try facts.encryptedVersion(name: entry.name, digest: digest, measurement: m, keyID: key.keyID,
                                                      reason: "\(facts.reason.map { $0 + "; " } ?? "")encrypted in place (key id \(key.keyID))")
            if keepPlaintextCopy && facts.kind == .preEncryption {
                // Kept on purpose: out of the catalog, named, never counted as a plaintext copy.
                let target = Quarantine.freeTarget(for: entry.path, in: catalog.quarantineDirectory)
                try LayoutFolder.make(catalog.quarantineDirectory)
                guard link(entry.path, target) == 0 else { throw POSIXFailure(operation: "keep \(entry.path) in quarantine", code: errno) }
                try entry.manifest?.write(path: Manifest.path(for: target))
                try AtomicFile.syncDirectory(catalog.quarantineDirectory)
                outcome.keptPlaintext = target
            }
            try replacePublished(entry, with: partial, facts: newFacts, level: "encrypt")
            replaced = true
            outcome.converted.append((entry.name, entry.name))
            outcome.deleted.append(entry.name)
            Journal.shared.log(.notice, "replaced plaintext copy \(entry.path) by its encrypted version (removal does not erase it from ext4 or flash media)",
                               id: .plaintextRemoved, fields: ["TOSCA_BACKUP_PATH": entry.path])
        }
    }

    /// The planned change ends with a drill: the newest backup under this key, restored
    /// into a scratch folder and checked (D12), so `status` shows a fresh drill.
    public static func drillNewest(_ folder: DataFolder) throws -> (copy: String, problems: [String])? {
        guard let key = folder.key else { return nil }
        let catalog = try folder.scanCatalog()
        guard let newest = catalog.backups.last(where: { $0.manifest?.facts.encryption.keyID == key.keyID }) else { return nil }
        let problems = try RestoreJob(folder: folder).drill(newest)
        if problems.isEmpty {
            Journal.shared.log(.info, "restore drill of \(newest.path) passed", id: .drillPassed, fields: ["TOSCA_BACKUP_PATH": newest.path])
        } else {
            Journal.shared.log(.err, "restore drill of \(newest.path) FAILED: \(problems.joined(separator: "; "))", id: .drillFailed,
                               fields: ["TOSCA_BACKUP_PATH": newest.path])
        }
        return (newest.name, problems)
    }
}

/// `tosca-maint keygen`: 32 random bytes from the kernel as 64 hex characters, mode 0400.
public enum KeyGen {
    public static func write(to path: String) throws -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        defer { zeroize(&bytes) }
        let rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        guard rnd >= 0 else { throw POSIXFailure(operation: "open /dev/urandom", code: errno) }
        let n = bytes.withUnsafeMutableBytes { read(rnd, $0.baseAddress, 32) }
        close(rnd)
        guard n == 32 else { throw POSIXFailure(operation: "read /dev/urandom", code: errno) }
        var text = Array(hexString(bytes).utf8) + [10]
        defer { zeroize(&text) }
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
