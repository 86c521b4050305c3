import Foundation
import ToscaCore

/// Which copy to restore.
public enum RestoreSelection: Sendable, Equatable {
    case latest
    /// The backup the live safety log was last proven against (`verify --live`'s anchor):
    /// after tampering, the state before the change.
    case anchor
    /// A calendar day `YYYY-MM-DD`, local unless `utc`.
    case date(String, utc: Bool)
    case path(String)
}

/// What a restore would do, shown before it does it.
public struct RestorePlan: Codable, Sendable {
    public let copy: String
    public let copyPath: String
    public let copyKind: String
    public let copyCreatedUTC: String
    public let copyCreatedLocal: String
    public let target: String
    /// Sessions in the current database that the copy does not hold (nil: unreadable or absent).
    public let newerSessions: Int?
    /// Safety-log rows in the current database beyond the copy's head.
    public let newerSafetyLogRows: Int?
    public let currentDatabase: String
    public let copySchemaVersion: Int
    public let buildSchemaVersion: Int

    enum CodingKeys: String, CodingKey {
        case copy, target
        case copyPath = "copy_path", copyKind = "copy_kind", copyCreatedUTC = "copy_created_utc", copyCreatedLocal = "copy_created_local"
        case newerSessions = "newer_sessions", newerSafetyLogRows = "newer_safety_log_rows", currentDatabase = "current_database"
        case copySchemaVersion = "copy_schema_version", buildSchemaVersion = "build_schema_version"
    }

    public var text: String {
        var out = """
            Restore plan
              copy            \(copy) (\(copyKind)), made \(copyCreatedLocal) = \(copyCreatedUTC)
              into            \(target)
              current file    \(currentDatabase)
            """
        if let s = newerSessions, let r = newerSafetyLogRows {
            out += "\n  will be lost    \(s) session(s) and \(r) safety-log row(s) newer than the copy (kept in a pre-restore safety copy)"
        }
        if copySchemaVersion < buildSchemaVersion {
            out += "\n  note            the copy has schema \(copySchemaVersion), this build \(buildSchemaVersion): run `tosca-maint migrate up` after the restore"
        }
        return out + "\n"
    }
}

/// `tosca-maint restore` (and `restore --drill`).
public struct RestoreJob: Sendable {
    public let folder: DataFolder
    public var key: DatabaseKey? { folder.key }
    public var databasePath: String { folder.database }

    public init(folder: DataFolder) {
        self.folder = folder
    }

    /// Finds the copy; throws 66 (with a hint) when there is none.
    public func select(_ selection: RestoreSelection, catalog: Catalog, timeZone: TimeZone = .current) throws -> CatalogEntry {
        switch selection {
        case .latest:
            guard let e = catalog.newestVerifiedBackup else {
                throw ToolFailure(.noInput, "no verified backup in \(catalog.backupsDirectory)",
                                  hint: catalog.entries.isEmpty ? "tosca-maint backup makes one; tosca-maint list shows what is there"
                                                                : "tosca-maint list; restore a named copy with --backup PATH")
            }
            return e
        case .anchor:
            let live = folder.database
            let anchor: CatalogEntry?
            do {
                let db = try Database(path: live, options: .init(readOnly: true, key: liveKey(live)))
                try db.execute("BEGIN")
                defer { try? db.execute("COMMIT") }
                anchor = try Migrator().status(db).kind == .versioned ? try LiveCheck.timelineAnchor(db, catalog: catalog) : nil
            } catch let e as DatabaseOpenError {
                throw ToolFailure(.noInput, "--anchor reads the live database's safety log, and \(live) does not open: \(e)",
                                  hint: "choose the copy with --latest, --date DAY or --backup PATH")
            }
            guard let anchor else {
                throw ToolFailure(.noInput, "the live database has no safety-log anchor (no verified backup with a chain head)", hint: "tosca-maint list")
            }
            return anchor
        case .date(let day, let utc):
            var cal = Calendar(identifier: .gregorian)
            cal.timeZone = utc ? (TimeZone(secondsFromGMT: 0) ?? timeZone) : timeZone
            func dayOf(_ e: CatalogEntry) -> String? {
                guard let d = e.created?.date else { return nil }
                let c = cal.dateComponents([.year, .month, .day], from: d)
                guard let y = c.year, let m = c.month, let dd = c.day else { return nil }
                return String(format: "%04d-%02d-%02d", y, m, dd)
            }
            if let e = catalog.backups.last(where: { $0.isVerified && dayOf($0) == day }) { return e }
            let days = Array(Set(catalog.backups.filter(\.isVerified).compactMap(dayOf))).sorted()
            let before = days.last { $0 < day }, after = days.first { $0 > day }
            let nearest = [before, after].compactMap { $0 }
            throw ToolFailure(.noInput, "no verified backup on \(day) (\(utc ? "UTC" : "local") day)",
                              hint: nearest.isEmpty ? "there are no verified backups; tosca-maint list"
                                                    : "the nearest days with one: \(nearest.joined(separator: ", ")) (tosca-maint restore --date DAY)")
        case .path(let p):
            let real = realPath(p)
            if let e = catalog.entries.first(where: { realPath($0.path) == real }) { return e }
            guard FileManager.default.fileExists(atPath: p) else { throw ToolFailure(.noInput, "no copy at \(p)", hint: "tosca-maint list") }
            guard FileManager.default.fileExists(atPath: Manifest.path(for: p)) else {
                throw ToolFailure(.dataError, "\(p) has no manifest: it is not a published copy and is never restored", hint: "tosca-maint list")
            }
            return catalog.entry(at: p)
        }
    }

    /// D12 on the chosen copy; a failure names the newest older copy that verifies (65).
    public func verifyOrExplain(_ entry: CatalogEntry, catalog: Catalog) throws {
        if entry.manifest?.facts.unverifiable == true {
            throw ToolFailure(.dataError, "\(entry.name) is a raw safety copy kept for forensics: it cannot be verified and is not restored by this command",
                              hint: "copy its files by hand if you must inspect them")
        }
        let problems = try Verification.problems(of: entry, key: key)
        if entry.manifest != nil { try? Verification.record(ManifestCheck(level: "verify", ok: problems.isEmpty, problems: problems), for: entry) }
        guard problems.isEmpty else {
            var older: String? = nil
            for candidate in catalog.entries.reversed() where candidate.isBackup && (candidate.created ?? UTCTime(seconds: 0, microseconds: 0)) < (entry.created ?? UTCTime.now()) {
                if candidate.name == entry.name || candidate.manifest?.facts.encryption.keyID != key?.keyID && candidate.manifest?.facts.encryption.isEncrypted == true { continue }
                if (try? Verification.problems(of: candidate, key: key))?.isEmpty == true { older = candidate.path; break }
            }
            Journal.shared.log(.err, "restore refused: \(entry.path) fails verification: \(problems.joined(separator: "; "))", id: .verifyFailed,
                               fields: ["TOSCA_BACKUP_PATH": entry.path])
            throw ToolFailure(.dataError, "\(entry.name) fails verification and is not restored:\n  " + problems.joined(separator: "\n  "),
                              hint: older.map { "the newest older copy that verifies is \($0): tosca-maint restore --backup \($0)" } ?? "no older copy verifies; see tosca-maint list")
        }
    }

    /// The plan against the current database (read-only).
    public func plan(for entry: CatalogEntry, target: String) throws -> RestorePlan {
        guard let facts = entry.manifest?.facts else { throw ToolFailure(.dataError, "\(entry.name): no readable manifest", hint: "tosca-maint list") }
        let local = DateFormatter()
        local.dateFormat = "yyyy-MM-dd HH:mm:ss zzz"
        var newerSessions: Int? = nil, newerRows: Int? = nil
        var current = "absent"
        if FileManager.default.fileExists(atPath: target) {
            current = "present"
            if let live = try? Database(path: target, options: .init(readOnly: true, key: liveKey(target))),
               let copy = try? Database(path: entry.path, options: .init(readOnly: true, key: key(for: entry))) {
                let copyMaxSession = (try? copy.scalar("SELECT COALESCE(MAX(session_id), 0) FROM sessions"))??.int64 ?? 0
                newerSessions = (try? live.scalar("SELECT count(*) FROM sessions WHERE session_id > ?", [.integer(copyMaxSession)]))??.int
                let liveHead = (try? SafetyChain.head(live)) ?? nil
                newerRows = max(0, Int((liveHead?.seq ?? 0) - (facts.chainHead?.seq ?? 0)))
                // Without a chain on either side (a v0.9.12 copy, a legacy live file) the
                // rows are compared by count.
                if facts.chainHead == nil || (try? live.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'safety_log' AND sql LIKE '%seq%'"))??.int == 0 {
                    newerRows = (try? live.scalar("SELECT count(*) FROM safety_log"))??.int.map { max(0, $0 - (facts.rowCounts["safety_log"] ?? 0)) }
                }
            } else {
                current = "present but cannot be opened (it will be kept as raw files)"
            }
        }
        return RestorePlan(copy: entry.name, copyPath: entry.path, copyKind: facts.kind.rawValue, copyCreatedUTC: facts.createdUTC,
                           copyCreatedLocal: facts.created.map { local.string(from: $0.date) } ?? "?", target: target,
                           newerSessions: newerSessions, newerSafetyLogRows: newerRows, currentDatabase: current,
                           copySchemaVersion: facts.schemaVersion, buildSchemaVersion: toscaMigrations.last?.version ?? 0)
    }

    /// The key for a copy (D14, ``DataFolder/key(for:)``).
    func key(for entry: CatalogEntry) -> DatabaseKey? { folder.key(for: entry) }

    /// The key for a live file judged by its header (``DataFolder/key(forFileAt:)``).
    func liveKey(_ path: String) -> DatabaseKey? { folder.key(forFileAt: path) }

    /// Errors that mean "this file is damaged", as opposed to busy, locked or keyed wrongly.
    static func isDamage(_ error: any Error) -> Bool {
        switch error {
        case let e as DatabaseOpenError:
            switch e {
            // Not SQLite and no key given: damaged, or encrypted with a key we were not
            // handed. Its raw files keep it either way, byte for byte.
            case .notADatabase, .notPlaintext: return true
            default: return false
            }
        case let e as SQLiteError: return e.isAny(of: .corrupt, .notadb)
        case let e as ToolFailure: return e.status == .dataError
        case is MigrationError: return true
        default: return false
        }
    }

    /// Keeps the current database as a `pre-restore` safety copy (D6): through the backup
    /// API when it opens and verifies; its raw `db`, `-wal`, `-shm` files (marked
    /// unverifiable) when it is damaged, or when only its journals are left. Busy, locked
    /// or key problems stop the restore here, before anything changes.
    public func keepCurrent(caller holdsLocks: Bool) throws -> String? {
        let fm = FileManager.default
        let present = ["", "-wal", "-shm", "-journal"].filter { fm.fileExists(atPath: databasePath + $0) }
        if present.isEmpty { return nil }
        guard present.contains("") else {
            Journal.shared.log(.warning, "\(databasePath) is missing but its journal files are there: keeping them for forensics")
            return try keepRawFiles(reason: "tosca.db was missing; its journal files are kept")
        }
        do {
            var job = CopyJob(folder: folder.with(key: liveKey(databasePath)), kind: .preRestore, reason: "before restore")
            job.showProgress = true
            return try job.makeCopy().path
        } catch where Self.isDamage(error) {
            Journal.shared.log(.warning, "current database cannot be copied through SQLite (\(error)): keeping its raw files for forensics")
            return try keepRawFiles(reason: String(describing: error))
        }
    }

    func keepRawFiles(reason: String) throws -> String {
        let dir = folder.backups
        let now = UTCTime.now()
        let name = Catalog.freeName(in: dir, kind: .preRestore, time: now)
        let dest = dir + "/" + name
        // Under .partial names first, renamed into place: a crash leaves only partials.
        var moved: [(String, String)] = []
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let from = databasePath + suffix
            let staged = dest + ".partial" + suffix
            if FileManager.default.fileExists(atPath: from) {
                try FileCopy.copy(from: from, to: staged)
            } else if suffix.isEmpty {
                guard FileManager.default.createFile(atPath: staged, contents: Data()) else {
                    throw POSIXFailure(operation: "create \(staged)", code: errno)
                }
            } else { continue }
            moved.append((staged, dest + suffix))
        }
        for (staged, final) in moved.reversed() { // the database file last
            guard rename(staged, final) == 0 else { throw POSIXFailure(operation: "rename \(staged)", code: errno) }
        }
        try AtomicFile.syncDirectory(dir)
        let (sha, size) = try FileDigest.sha256(path: dest)
        let header = (try? FileHeader.classify(path: dest)) ?? .empty
        var facts = ManifestFacts(kind: .preRestore, createdUTC: now.iso8601, sourcePath: databasePath, toolVersion: toscaMaintVersion,
                                  fileName: name, sha256: sha, sizeBytes: size, pageSize: 0, pageCount: 0, schemaVersion: 0,
                                  schema: "unknown", rowCounts: [:], foreignKeyViolations: 0, chainHead: nil,
                                  encryption: header == .other ? EncryptionFacts(mode: "unknown (not plaintext SQLite)") : .none,
                                  unverifiable: true, reason: "raw db, -wal and -shm files kept for forensics: \(reason)", fromVersion: nil, toVersion: nil, digest: "")
        facts.digest = try facts.computedDigest()
        try Manifest(facts: facts, checks: []).write(path: Manifest.path(for: dest))
        return dest
    }

    /// Copies `entry` into `<target>.restore-partial`, checks D12 steps 2-3 on it (and that
    /// its SHA-256 is the copy's), lets `prepare` change it (the maintenance entry), gives
    /// it the old file's owner and mode, then swaps it in: the live WAL is checkpointed
    /// to empty first, the stale `-wal`/`-shm` removed, the file renamed, the folder
    /// fsynced. `journalsKept`: the live journals are in a raw safety copy, so they may
    /// go even when the live file cannot be opened to checkpoint them.
    public func restoreFile(_ entry: CatalogEntry, to target: String, replace: Bool, journalsKept: Bool = false,
                            encryptWith: DatabaseKey? = nil, prepare: ((String) throws -> Void)? = nil) throws {
        guard let facts = entry.manifest?.facts else { throw ToolFailure(.dataError, "\(entry.name): no readable manifest", hint: "tosca-maint list") }
        let copyKey = key(for: entry)
        let dir = PathName.parent(target)
        let temp = target + ".restore-partial"
        removeDatabaseFiles(temp)
        var done = false
        defer { if !done { removeDatabaseFiles(temp) } }
        do {
            try FileCopy.copy(from: entry.path, to: temp)
        } catch let e as POSIXFailure {
            if e.operation.hasPrefix("open \(entry.path)") || e.operation.hasPrefix("read \(entry.path)") {
                throw ToolFailure(e.code == ENOENT ? .noInput : .ioError, "cannot read the copy: \(e)", hint: "tosca-maint list")
            }
            throw ToolFailure(e.code == ENOSPC || e.code == EFBIG || e.code == EDQUOT || e.code == EIO ? .ioError : .cantCreate,
                              "cannot write \(temp): \(e)", hint: "the current database is untouched; free space or fix permissions in \(dir)")
        }
        let (m, digest) = try Measurement.withDigest(path: temp, key: copyKey)
        var problems = Verification.compare(m, with: facts)
        if digest.hex != facts.sha256 { problems.append("the restored file's SHA-256 differs from the copy's manifest") }
        guard problems.isEmpty else {
            throw ToolFailure(.dataError, "the restored file fails verification; the current database is untouched:\n  " + problems.joined(separator: "\n  "))
        }
        try prepare?(temp)
        if let encryptWith {
            // A plaintext copy going into an encrypted device: exported encrypted on the way
            // in, proven equal, so no plaintext database ever comes back (Phase 6).
            let encrypted = target + ".restore-encrypted"
            removeDatabaseFiles(encrypted)
            do {
                let plain = try Database(path: temp, options: .init())
                try SQLCipherExport.encrypt(source: plain, into: encrypted, key: encryptWith)
            }
            let problems = try EncryptJob(folder: folder, key: encryptWith).proveEqual(plain: temp, encrypted: encrypted)
            guard problems.isEmpty else {
                unlink(encrypted)
                throw ToolFailure(.dataError, "the encrypted restore differs from the copy; the current database is untouched:\n  " + problems.joined(separator: "\n  "))
            }
            guard rename(encrypted, temp) == 0 else { throw POSIXFailure(operation: "rename \(encrypted)", code: errno) }
        }
        // The recorder must be able to open it: the old file's owner and mode (kept as they
        // were), else the folder's owner and 0600.
        var st = stat()
        if stat(target, &st) == 0 {
            chown(temp, st.st_uid, st.st_gid)
            chmod(temp, (st.st_mode & 0o777) & ~0o111 | 0o600)
        } else if stat(dir.isEmpty ? "." : dir, &st) == 0 {
            chown(temp, st.st_uid, st.st_gid)
            chmod(temp, 0o600)
        }
        if replace {
            // D2: the live database runs in WAL mode (a published copy is written with its
            // journal off). Set on the staged file, before the swap, so that nothing can
            // fail after it; closing the connection leaves no -wal behind.
            do { _ = try Database(path: temp, options: .init(key: encryptWith ?? copyKey, walMode: true)) }
            for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: temp + suffix) {
                throw ToolFailure(.ioError, "\(temp + suffix) is left after switching the staged file to WAL; nothing was swapped")
            }
        }
        try FileDigest.fsyncFile(temp)
        if replace {
            if FileManager.default.fileExists(atPath: target) {
                do {
                    let live = try Database(path: target, options: .init(key: liveKey(target)))
                    let r = try live.rows("PRAGMA wal_checkpoint(TRUNCATE)").first
                    if let busy = r?[0].int, busy != 0 {
                        throw ToolFailure(.tempFail, "something still reads \(target): its WAL cannot be emptied; nothing was swapped",
                                          hint: "stop every program that has the database open, then retry")
                    }
                } catch let f as ToolFailure {
                    throw f
                } catch {
                    guard journalsKept else {
                        throw ToolFailure(.dataError, "\(target) cannot be opened to empty its WAL and its journals were not kept: nothing was swapped (\(error))")
                    }
                }
            }
            for suffix in ["-wal", "-shm", "-journal"] {
                if unlink(target + suffix) != 0 && errno != ENOENT { throw POSIXFailure(operation: "remove \(target + suffix)", code: errno) }
            }
            guard rename(temp, target) == 0 else { throw POSIXFailure(operation: "rename \(temp) to \(target)", code: errno) }
        } else {
            guard link(temp, target) == 0 else {
                throw ToolFailure(.cantCreate, "cannot create \(target): \(String(cString: strerror(errno)))", hint: "--to never overwrites; name a new file")
            }
            unlink(temp)
        }
        done = true
        try AtomicFile.syncDirectory(dir.isEmpty ? "." : dir)
    }

    /// A copy named by a path outside `backups/` (an off-device copy) is brought into the
    /// catalog before an in-place restore: the restore's binding goes into the manifest of
    /// the restored copy, and only manifests in the catalog confirm a restore (``LiveCheck``).
    /// The catalog's own copy is used when it holds the same file (same SHA-256); else the
    /// file is published beside the others (D4: copied to a partial, checked against its
    /// manifest's SHA-256, linked, then its manifest), under its own name when free.
    public func importIntoCatalog(_ entry: CatalogEntry, catalog: Catalog) throws -> CatalogEntry {
        guard let manifest = entry.manifest,
              !catalog.entries.contains(where: { realPath($0.path) == realPath(entry.path) }) else { return entry }
        if let same = catalog.entries.first(where: { $0.manifest?.facts.sha256 == manifest.facts.sha256 }) { return same }
        let dir = catalog.backupsDirectory
        func taken(_ n: String) -> Bool {
            [dir + "/" + n, Manifest.path(for: dir + "/" + n), dir + "/" + n + ".partial",
             catalog.quarantineDirectory + "/" + n].contains { FileManager.default.fileExists(atPath: $0) }
        }
        let name = taken(entry.name) ? Catalog.freeName(in: dir, kind: manifest.facts.kind, time: manifest.facts.created ?? .now()) : entry.name
        let final = dir + "/" + name
        let partial = final + ".partial"
        do {
            try FileCopy.copy(from: entry.path, to: partial)
        } catch let e as POSIXFailure {
            throw ToolFailure(e.code == ENOSPC ? .ioError : .cantCreate, "cannot bring \(entry.path) into \(dir): \(e)", hint: "free space in \(dir)")
        }
        var published = false
        defer { if !published { unlink(partial) } }
        let (sha, size) = try FileDigest.sha256(path: partial)
        guard sha == manifest.facts.sha256, size == manifest.facts.sizeBytes else {
            throw ToolFailure(.dataError, "\(entry.path) changed while it was copied into \(dir): nothing restored", hint: "run the restore again")
        }
        guard link(partial, final) == 0 else { throw ToolFailure(.cantCreate, "cannot publish \(final): \(String(cString: strerror(errno)))") }
        unlink(partial)
        published = true
        try AtomicFile.syncDirectory(dir)
        var imported = manifest
        imported.checks.append(ManifestCheck(level: "import", ok: true, problems: [], detail: "brought in from \(entry.path)"))
        do { try imported.write(path: Manifest.path(for: final)) } catch { unlink(final); throw error }
        Journal.shared.log(.notice, "brought \(entry.path) into the catalog as \(final) before restoring it", fields: ["TOSCA_BACKUP_PATH": final])
        return CatalogEntry(name: name, path: final, manifest: imported, digestMatches: entry.digestMatches, manifestError: nil)
    }

    /// Appends the `maintenance` safety-log entry to a restored (staged) file and returns it
    /// (its seq and row hash); `nil` when the schema has no chain yet.
    public func recordRestore(into target: String, copy: CatalogEntry, preRestore: String?) throws -> ChainHead? {
        let db = try Database(path: target, options: .init(key: key(for: copy)))
        guard try Migrator().status(db).applied.contains(where: { $0.id == "0006_safety_log_chain" }) else { return nil }
        let user = restoringUser()
        let details = JSONValue.object([
            "restored_from": .string(copy.name), "copy_created_utc": .string(copy.manifest?.facts.createdUTC ?? ""),
            "copy_sha256": .string(copy.manifest?.facts.sha256 ?? ""), "pre_restore_copy": preRestore.map { .string(PathName.name($0)) } ?? .null,
            "user": .string(user), "tool_version": .string(toscaMaintVersion),
        ]).canonical
        return try db.transaction {
            try SafetyChain.append(SafetyLogEntry(eventType: "maintenance", severity: .warning,
                                                  description: "database restored from \(copy.name) by \(user)",
                                                  actionTaken: "tosca-maint restore", details: details), to: db)
        }
    }

    /// D12's drill: verifies the copy, restores it into a scratch folder in `backups/`,
    /// runs steps 2-3 on the result, records the result in the copy's manifest. Changes
    /// nothing else.
    public func drill(_ entry: CatalogEntry) throws -> [String] {
        guard entry.manifest != nil else { return ["\(entry.name): no manifest"] }
        var problems = try Verification.problems(of: entry, key: key)
        if problems.isEmpty {
            // A scratch folder beside the copies (same filesystem, so the space is known);
            // leftovers of an interrupted drill go first. The caller holds .maint.lock.
            let backups = folder.backups
            for n in (try? FileManager.default.contentsOfDirectory(atPath: backups)) ?? [] where n.hasPrefix(".drill-") {
                try? FileManager.default.removeItem(atPath: backups + "/" + n)
            }
            let scratch = backups + "/.drill-\(getpid())"
            try AtomicFile.makeDirectory(scratch)
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            do {
                // Copies, then runs D12 steps 2-3 on the restored file against the facts.
                try restoreFile(entry, to: scratch + "/tosca.db", replace: false)
            } catch let f as ToolFailure {
                problems.append(f.message)
            }
        }
        try Verification.record(ManifestCheck(level: "drill", ok: problems.isEmpty, problems: problems), for: entry)
        return problems
    }
}

/// Byte copies with fsync.
public enum FileCopy {
    /// Copies `source` to a new file `destination` (never over an existing one), fsynced.
    public static func copy(from source: String, to destination: String) throws {
        let inFD = open(source, O_RDONLY | O_CLOEXEC)
        guard inFD >= 0 else { throw POSIXFailure(operation: "open \(source)", code: errno) }
        defer { close(inFD) }
        let outFD = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard outFD >= 0 else { throw POSIXFailure(operation: "create \(destination)", code: errno) }
        var ok = false
        defer {
            close(outFD)
            if !ok { unlink(destination) }
        }
        var buf = [UInt8](repeating: 0, count: 4 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { read(inFD, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(source)", code: errno) }
            if n == 0 { break }
            var off = 0
            while off < n {
                let w = buf.withUnsafeBytes { write(outFD, $0.baseAddress! + off, n - off) }
                if w < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "write \(destination)", code: errno) }
                off += w
            }
        }
        guard fsync(outFD) == 0 else { throw POSIXFailure(operation: "fsync \(destination)", code: errno) }
        ok = true
    }
}

/// The canonical absolute path (symlinks resolved), or the path itself when it does not exist.
public func realPath(_ p: String) -> String {
    guard let r = realpath(p, nil) else { return p }
    defer { free(r) }
    return String(cString: r)
}

/// Who runs a restore, for its safety-log entry: `SUDO_USER`, else the account name of the
/// real user id; never a bare number (`$USER` is unset under systemd and cron).
public func restoringUser(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
    if let sudo = environment["SUDO_USER"], !sudo.isEmpty { return sudo }
    let uid = getuid()
    if let pw = getpwuid(uid), let name = pw.pointee.pw_name { return String(cString: name) }
    return "an account without a name (uid \(uid))"
}
